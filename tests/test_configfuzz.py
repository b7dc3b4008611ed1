"""tools/configfuzz.py, the mutation fuzzer of the YAML files, kept working: a few fixed cases of each kind find
nothing, and its checks of `--validate`'s output fail what they must. The big runs are by hand (its docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_tool

configfuzz: Any = load_tool("configfuzz")


@pytest.mark.parametrize(("seed", "index", "gentle"), [(2, 210, False), (40, 1, False), (1, 5, True)])
def test_fixed_cases_find_nothing(tmp_path: Path, seed: int, index: int, gentle: bool) -> None:
    """Two sets that --validate refuses (a merge key, a scenario without its state), and (1, 5) a set that
    validates, and is run and read back by the other commands. A change to the mutations changes what a seed
    gives: the regressions the fuzzer found are tested where they were fixed (tests/config, tests/rules)."""
    notes, failures, _root, _ran = configfuzz.run_case(seed, index, tmp_path, ticks=30, gentle=gentle)
    assert notes and not failures, (notes, failures)


def test_a_sweep_case_finds_nothing(tmp_path: Path) -> None:
    notes, failures, _root = configfuzz.sweep_case(1, 0, tmp_path)
    assert not failures, (notes, failures)


def test_an_error_line_without_its_place_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "bots.yaml").write_text("a: 1\n", encoding="utf-8")
    good = f"{tmp_path}/bots.yaml:1:4: a: is wrong\n1 error\n"
    assert configfuzz.check_output(tmp_path, 2, good) == []
    for wrong in (
        "bots.yaml: a: is wrong\n1 error\n",  # no line and column
        f"{tmp_path}/bots.yaml:9:1: a: is wrong\n1 error\n",  # past the file's end
        f"{tmp_path}/bots.yaml:1:4: a: is wrong\n",  # no count
    ):
        assert configfuzz.check_output(tmp_path, 2, wrong), wrong
    assert configfuzz.check_output(tmp_path, 1, good)  # not exit 2
