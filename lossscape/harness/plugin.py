"""The claims harness as one pytest plugin: `pytest_plugins = ["lossscape.harness.plugin"]` in a
root conftest.py (as this repository's), or `pytest -p lossscape.harness.plugin`.

    pytest claims                      # cpu profile (the embedded default), every claim
    pytest claims --profile smoke      # minutes; CI runs it with --report-only
    pytest claims --profile cpu-long   # what the cpu profile leaves out of its 20 minutes
    pytest claims --profile my.toml    # a profile file of your own (the schema: lossscape/profiles/cpu.toml)
    pytest claims -m gpu               # gpu profile, full scale (skipped where CUDA is absent)
    pytest claims -k GEO               # one family; trained runs come from the cache

Not a `pytest11` entry point: that would load into every pytest session of any environment where
lossscape is installed, where `--profile` clashes with other plugins' (pytest-profiling has one).
The report itself (reports/claims.{json,md,html}) is written by lossscape.report.plugin.
"""
# Each module after the ones it imports: pytest rewrites asserts only in a plugin it imports itself.
pytest_plugins = [
    "lossscape.report.plugin",
    "lossscape.harness.options",
    "lossscape.harness.selection",
    "lossscape.harness.skipping",
    "lossscape.harness.progress",
    "lossscape.harness.grids",
    "lossscape.harness.measure",
]
