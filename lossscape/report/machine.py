"""Under pytest-xdist, whatever a claim times runs alone on the machine.

BS-3, BS-4 (total time), DP-2, LR-2, BS-6 and FO-3 read wall times. Timed while other xdist
workers train, they measure the neighbours: BS-3 once gave a CI of [0.0139, 1.46].

Serialized, not refused. pytest-benchmark disables itself under xdist, because a benchmark is only
a timing. Here the times are the evidence of claims that sit beside untimed ones, so refusing would
drop them from every `-n` run. Refusing would also not be enough: a run whose wall time a claim
reads may be trained by an untimed test (FO-1's accuracy part trains the runs its time part reads)
and cached with polluted times. So:

- every test on a worker holds a shared lock on one file per session; the controller creates the
  file and xdist hands its path to the workers;
- a test marked `timing` holds the lock exclusively, so it starts only when no other test of the
  session runs, and no other test starts until it ends;
- `alone(config)` takes the lock exclusively inside any test, for the span of a measurement. The
  grids fixture trains single-model grids under it, whichever test asks for them.

flock (POSIX) locks die with their process, so a crashed worker never leaves the others waiting.
Without xdist, a session is one process and nothing here does anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile

import pytest

LOCK_PATH_KEY = "lossscape_machine_lock"   # workerinput key: the session's lock file
MARKER = "timing: the test reads wall time; under pytest-xdist it runs while no other test of the session runs"


class MachineLock:
    """One worker's end of the session lock: shared for every test, exclusive while timing."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDONLY)
        self._exclusive = False

    def close(self) -> None:
        os.close(self._fd)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem):
        timed = item.get_closest_marker("timing") is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX if timed else fcntl.LOCK_SH)
        self._exclusive = timed
        try:
            yield
        finally:
            self._exclusive = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self):
        if self._exclusive:  # a timing test: it holds the machine already
            yield
            return
        # flock converts shared to exclusive by releasing first, so two workers asking at once
        # queue up instead of deadlocking; each test holds at most this one lock
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._exclusive = True
        try:
            yield
        finally:
            self._exclusive = False
            fcntl.flock(self._fd, fcntl.LOCK_SH)


class LockFileMaker:
    """The controller's part: one lock file per session, its path handed to each xdist worker."""

    path: str | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        if self.path is None:  # made when the first worker starts: a run without workers makes none
            fd, self.path = tempfile.mkstemp(prefix="lossscape-machine-", suffix=".lock")
            os.close(fd)
        node.workerinput[LOCK_PATH_KEY] = self.path

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


_LOCK = pytest.StashKey[MachineLock]()


def configure(config: pytest.Config) -> None:
    """Register this session's part: the lock file on an xdist controller, the lock on a worker."""
    if hasattr(config, "workerinput"):
        path = config.workerinput.get(LOCK_PATH_KEY)
        if path:
            lock = MachineLock(path)
            config.stash[_LOCK] = lock
            config.pluginmanager.register(lock, "lossscape-machine-lock")
    elif config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(LockFileMaker(), "lossscape-machine-lock-file")


def unconfigure(config: pytest.Config) -> None:
    pm = config.pluginmanager
    lock, maker = pm.get_plugin("lossscape-machine-lock"), pm.get_plugin("lossscape-machine-lock-file")
    if lock is not None:
        pm.unregister(lock)
        lock.close()
    if maker is not None:
        pm.unregister(maker)
        maker.remove()


def alone(config: pytest.Config):
    """Context: no other test of this session runs meanwhile (a no-op outside xdist workers)."""
    lock = config.stash.get(_LOCK, None)
    return lock.alone() if lock is not None else contextlib.nullcontext()
