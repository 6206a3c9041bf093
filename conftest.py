"""pytest set-up shared by tests/ and claims/: the claims harness and the hypothesis profiles.

The harness (options, profile, grids, measure, the report) is the plugin lossscape.harness.plugin,
package code, so it works from an installed lossscape too; its docstring lists the ways to run it.
"""
from hypothesis import settings

pytest_plugins = ["lossscape.harness.plugin"]

# Hypothesis profiles for tests/ and for GEO-4's property check on real gradients: "default" is
# quick; `--hypothesis-profile thorough` draws 1000 examples. deadline=None: the first example
# pays for torch's lazy initialisation, which is not slowness.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile("default")
