"""tools/clifuzz.py, the fuzzer of the command line, kept working: a few fixed cases find nothing, and its checks
fail what they must (a traceback, an undocumented code, a refused command that changed a file). The big runs are
by hand (its docstring); the bugs it found are tested where they were fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_tool

clifuzz: Any = load_tool("clifuzz")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared project (a state file, a log and a recording from a short simulated run), made once."""
    return clifuzz.prepare(tmp_path_factory.mktemp("clifuzz") / "base")


@pytest.mark.parametrize(("seed", "index"), [(2, 47), (3, 13), (7, 200), (3, 0), (3, 1), (3, 2), (3, 8)])
def test_fixed_cases_find_nothing(base: Path, tmp_path: Path, seed: int, index: int) -> None:
    """(2, 47) is `backtest --sweep --out` of 5,000 characters, (3, 13) `report --out` a link to itself and (7, 200)
    `health` on a state file with bytes changed, tracebacks once; the others are whatever the seed gives (a change
    to the mutations changes them). None is run as a process here: that is slow."""
    case, failures = clifuzz.run_case(seed, index, base, tmp_path, share=0.0)
    assert case.notes and not failures, (case.notes, failures)


def test_a_traceback_an_undocumented_code_or_silence_is_a_failure(tmp_path: Path) -> None:
    case = clifuzz.Case(root=tmp_path, command="status", argv=["status"])
    assert clifuzz.check(case, 2, "", "error: bad\n", None) == []
    assert clifuzz.check(case, 1, "", "Traceback (most recent call last):\n  ...\nValueError: x\n", None)
    assert clifuzz.check(case, None, "", "", "Traceback ...")  # raised out of main
    assert clifuzz.check(case, 3, "", "error\n", None)  # no such exit code
    assert clifuzz.check(case, 2, "", "", None)  # refused without a word


def test_a_refused_command_that_changed_or_made_a_file_is_a_failure() -> None:
    before = {"state": "dir", "state/state.db": "file:a", "config/bots.yaml": "file:b"}
    assert clifuzz.compare(before, dict(before), 2, "run") == []
    assert clifuzz.compare(before, {**before, "state/state.db": "file:c"}, 2, "run")  # changed, though refused
    assert clifuzz.compare(before, {**before, "logs/app.jsonl": "file:d"}, 2, "run")  # made, though refused
    assert clifuzz.compare(before, {**before, "state/state.db.lock": "file:e"}, 2, "run") == []  # the lock's file
    assert clifuzz.compare(before, {**before, "state/state.db": "file:c"}, 0, "run") == []  # a run writes it
    assert clifuzz.compare(before, {**before, "config/bots.yaml": "file:c"}, 0, "run")  # never the config
