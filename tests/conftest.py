"""Shared fixtures: a private copy of the shipped config, machines and rules for each test to edit."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.paths import PROJECT_ROOT


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker more than the cores. Many tests wait on a `python -m engine` subprocess or a server on
    loopback, and with one worker a core the cores idled a sixth of the suite (8 min 48 s of CPU in 5 min 52 s on
    2 cores); with three workers the same suite took 5 min 13 s."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores + 1


pytest_plugins = ["tests.browser"]  # the `page` fixture: a headless Chromium tab


class ProjectCopy:
    """A temporary copy of config/, machines/ and rules/, with text edits that keep line numbers readable."""

    def __init__(self, root: Path):
        self.root = root
        for folder in ("config", "machines", "rules"):
            shutil.copytree(PROJECT_ROOT / folder, root / folder)
        self.config = root / "config"
        self.machines = root / "machines"
        self.rules = root / "rules"

    def replace(self, relative: str, old: str, new: str, count: int = 1) -> Path:
        """Replace the first `count` occurrences of `old` in a file; fails if `old` is not there."""
        path = self.root / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, count), encoding="utf-8")
        return path

    def line_of(self, relative: str, needle: str) -> int:
        """1-based line of the first line containing `needle`."""
        for number, line in enumerate((self.root / relative).read_text(encoding="utf-8").splitlines(), 1):
            if needle in line:
                return number
        raise AssertionError(f"{needle!r} not in {relative}")


@pytest.fixture
def project(tmp_path: Path) -> ProjectCopy:
    return ProjectCopy(tmp_path / "project")


def read_terminal(master: int) -> str:
    """Everything a child wrote to its pseudo-terminal until it closed it (then the master is closed too)."""
    import os

    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def load_tool(name: str) -> Any:
    """tools/<name>.py, loaded by path once per process: tools/ is a folder of scripts, not a package (mypy reads each
    file as its own module). Registered before it runs, as an import is: its dataclasses look their module up."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "tools" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The path of a module the engine takes for engine/strategy/signals.py while the test runs (the test writes it)."""
    import engine.strategy as strategy

    folder = tmp_path / "user"
    folder.mkdir()
    name = f"user_signals_{abs(hash(tmp_path))}"
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(strategy, "MODULE", name)
    monkeypatch.setattr(strategy, "SHOWN", f"{name}.py")
    monkeypatch.setattr(strategy, "_handed_out", [])
    yield folder / f"{name}.py"
    sys.modules.pop(name, None)
