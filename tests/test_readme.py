"""The README's Python runs as written: its python blocks in order, in one namespace, in an empty
folder with its own cache, and the `lossscape` commands that use the modules the README writes.

A block whose info string names a file (```python mymodels.py) is that file's contents: it is
written into the folder, not run. The other commands in the README train at full size (or need a
GPU, a cluster, a claims session) and are left to the tests of what they do."""
import re
import shlex
import sys
from pathlib import Path

import pytest

import lossscape
from lossscape.cli import main

ROOT = Path(lossscape.__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


def blocks(language: str) -> list[tuple[str, str]]:
    """(the info string after the language, code) of each fenced block in the README, in order."""
    text = (ROOT / "README.md").read_text()
    return [(info.strip(), code) for lang, info, code in FENCE.findall(text) if lang == language]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty working folder holding the files the README writes; its own cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LOSSSCAPE_CACHE", str(tmp_path / "cache"))
    written = []
    for name, code in blocks("python"):
        if name:
            (tmp_path / name).write_text(code)
            written.append(Path(name).stem)
    yield tmp_path, written
    for module in written:
        sys.modules.pop(module, None)


def test_the_readme_has_the_blocks_this_test_runs():
    assert any(name == "mymodels.py" for name, _ in blocks("python"))
    assert len([code for name, code in blocks("python") if not name]) >= 2
    assert len(readme_commands(["mymodels"])) >= 2


def test_python_blocks_run_as_written(folder):
    namespace = {"__name__": "__readme__"}
    for name, code in blocks("python"):
        if not name:
            exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["run"].config.model == "mymodels:tiny" and namespace["run"].epochs_run == 3
    assert len(namespace["runs"]) == 3


def readme_commands(modules) -> list[str]:
    """The README's `lossscape run` lines that use one of `modules` (the files it writes)."""
    lines = [line.strip() for _, code in blocks("bash") for line in code.splitlines()]
    return [line for line in lines if line.startswith("lossscape run ")
            and any(f" {m}:" in line for m in modules)]


def test_commands_with_the_readmes_own_model_run(folder, capsys):
    _, written = folder
    for line in readme_commands(written):
        assert main(shlex.split(line)[1:]) == 0, line
        assert "stopped (max_epochs) after 3 epochs" in capsys.readouterr().out, line
