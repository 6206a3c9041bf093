"""The pytest plugin that runs the claims suite (`pytest claims`), one job per module:

    options    the command-line options (--profile, --seeds, --cache-dir, --data-dir, --device)
    selection  which profile this run uses (--profile, or `-m` selecting gpu claims), in config.stash
    skipping   what is skipped or refused before anything trains: claims the profile leaves to
               another ([not_run]), designs that cannot reach alpha/m, gpu claims without CUDA,
               settings whose data are absent
    grids      the `store` and `grids` fixtures: a profile's grids trained once, through the cache
    progress   the header's plan line and the per-grid progress lines
    measure    the `measure` fixture: a measurement of a run, computed once and cached beside it

`lossscape.harness.plugin` loads them all (with the report plugin): the repository's root
conftest.py names it in `pytest_plugins`; elsewhere, `pytest -p lossscape.harness.plugin`.
"""
