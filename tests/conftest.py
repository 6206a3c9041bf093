"""Hypothesis profiles: "default" (quick, loaded unless told otherwise) and "thorough",
selected with `pytest --hypothesis-profile thorough`."""
from hypothesis import settings

# deadline=None: the first example pays for torch's lazy initialisation, which is not slowness.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile("default")
