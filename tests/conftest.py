"""Hypothesis profiles: "default" (quick, loaded unless told otherwise) and "thorough",
selected with `pytest --hypothesis-profile thorough`."""
from hypothesis import settings

# deadline=None: the first example pays for torch's lazy initialisation, which is not slowness.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile("default")

import torch

# One thread: the tests train tiny models, where a second OpenMP thread only adds synchronization
# (10-30x slower when the machine is busy), and results do not depend on the machine's core count.
torch.set_num_threads(1)
