"""The user's own signal module as hostile input: a module that cannot be imported, and one that keeps state
between calls. engine/strategy/signals.py itself is never edited here: `engine.strategy.MODULE` is pointed at a
module written into a temporary folder, and a copy of the package stands in for the commands run as processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import engine.strategy as strategy
from engine.config.errors import ConfigError
from engine.paths import PROJECT_ROOT
from engine.rules.book import load_rules
from tests.conftest import ProjectCopy

STATEFUL = """
CALLS = []


def momentum_breakout(prices, params):
    CALLS.append(1)
    return len(CALLS) % 7 == 0 and params["lookback_ticks"] > 0 and params["min_move_pct"] >= 0


SIGNALS = {"momentum_breakout": momentum_breakout}
"""


def test_a_signal_that_keeps_state_starts_afresh_for_each_rule_book(project: ProjectCopy, user_module: Path) -> None:
    """A sweep runs several backtests in one process (`--jobs 1`, and each worker of a pool): a signal counting its
    calls in a global went on counting from the run before, so the same combination gave other results with
    another --jobs (found with a counter that fired every 7th call)."""
    user_module.write_text(STATEFUL, encoding="utf-8")
    first = load_rules(project.rules).signal_functions["momentum_breakout"]
    params = {"lookback_ticks": 12, "min_move_pct": 0.1}
    answers = [first((1.0, 2.0), params) for _ in range(7)]
    second = load_rules(project.rules).signal_functions["momentum_breakout"]
    assert [second((1.0, 2.0), params) for _ in range(7)] == answers == [False] * 6 + [True]


@pytest.mark.parametrize(("source", "line", "says"), [
    ("x = 1\ndef broken(:\n    pass\n", 2, "cannot be read: "),
    ("import os\nimport no_such_module_of_the_user\n", 2, "failed to import: ModuleNotFoundError"),
    ("import sys\nsys.exit(0)\n", 2, "failed to import: SystemExit: 0"),
    ("SIGNALS = [print]\n", 0, "SIGNALS must be a dict of names to functions, not list"),
])  # fmt: skip
def test_a_signal_module_that_cannot_be_imported_is_a_problem_in_its_file(
    project: ProjectCopy, user_module: Path, source: str, line: int, says: str
) -> None:
    """A syntax error in signals.py was a traceback from the import of the engine's own modules."""
    user_module.write_text(source, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_rules(project.rules)
    (problem,) = raised.value.problems
    assert problem.file == strategy.SHOWN and problem.line == line and problem.message.startswith(says), problem


def test_halt_works_and_validate_says_where_while_signals_py_does_not_compile(tmp_path: Path) -> None:
    """From a run: with a syntax error in engine/strategy/signals.py every command, `halt` included, ended in a
    traceback (exit 1): the engine's modules imported it as they were imported. The operator's halt is the one
    command that must work while a file is half edited; --validate now places the error."""
    root = tmp_path / "copy"
    shutil.copytree(PROJECT_ROOT / "engine", root / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("config", "machines", "rules", "schemas"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder)
    signals = root / "engine" / "strategy" / "signals.py"
    signals.write_text(signals.read_text(encoding="utf-8") + "\n\ndef broken(:\n    pass\n", encoding="utf-8")
    line = len(signals.read_text(encoding="utf-8").splitlines()) - 1

    def engine(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, capture_output=True, text=True, timeout=60)

    checked = engine("--validate")
    assert checked.returncode == 2 and "Traceback" not in checked.stderr + checked.stdout
    assert f"engine/strategy/signals.py:{line}:" in checked.stdout
    halted = engine("halt", "--reason", "signals.py is broken")  # no flags: settings.yaml names the files
    assert halted.returncode == 0, halted.stderr
    assert "halted: signals.py is broken" in halted.stdout
    assert halted.stderr.startswith("warning: ") and "is a state file no run has used yet" in halted.stderr  # only that
    assert len(halted.stderr.splitlines()) == 1, halted.stderr
    status = engine("status")  # the commands that never call a signal never import it
    assert status.returncode == 0 and "system: signals.py is broken" in status.stdout, status.stderr
    assert engine("health").returncode == 1  # no tick yet: its own answer, not the broken module's
    refused = engine("run", "--ticks", "1")
    assert refused.returncode == 2 and f"engine/strategy/signals.py:{line}:" in refused.stderr


def test_an_import_error_that_quotes_a_key_shows_no_part_of_it_where_it_is_cut(
    project: ProjectCopy, user_module: Path
) -> None:
    """The message of what signals.py raised is cut to 300 characters before the command line masks the keys: a
    key across the cut kept its first characters there. The cut word is masked whole."""
    key = "AKSIGNALKEY012345678"
    prefix = "failed to import: RuntimeError: "
    user_module.write_text(f"raise RuntimeError({'m' * 275!r} + ' ' + {key!r})\n", encoding="utf-8")  # key from 290
    with pytest.raises(ConfigError) as raised:
        load_rules(project.rules)
    (problem,) = raised.value.problems
    assert problem.message.startswith(prefix) and problem.message.endswith("***..."), problem.message
    assert not any(key[i : i + 3] in problem.message for i in range(len(key) - 2)), problem.message


def test_a_module_that_changes_the_working_directory_at_import_is_refused_and_it_is_set_back(
    project: ProjectCopy, user_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a run: `os.chdir()` at the top of signals.py made every config file read after it a 'cannot read
    file: No such file or directory' (exit 2) that named settings.yaml, not the module that moved the process."""
    import os

    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    user_module.write_text(f"import os\nos.chdir({str(elsewhere)!r})\nSIGNALS = {{}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_rules(project.rules)
    (problem,) = raised.value.problems
    assert problem.file == strategy.SHOWN and problem.message == "at import, its code changed the working directory"
    assert os.getcwd() == str(tmp_path)


def test_a_module_that_forks_at_import_ends_the_child_at_once(project: ProjectCopy, user_module: Path) -> None:
    """A fork at the top of signals.py went on in the child as a second `run` (or `--validate`): the child now
    ends as the import returns (exit 70), and the command refuses the module."""
    import os

    parent = os.getpid()
    user_module.write_text("import os\nCHILD = os.fork()\nSIGNALS = {}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        try:
            load_rules(project.rules)
        finally:
            if os.getpid() != parent:  # the child went on as the command: never past here
                os._exit(99)
    (problem,) = raised.value.problems
    assert problem.message.startswith("at import, its code forked the process"), problem.message
    _, status = os.wait()  # the child's pid went with the refused module: this test's one child
    assert os.waitstatus_to_exitcode(status) == 70


def test_a_module_whose_import_never_returns_is_stopped_and_placed(
    project: ProjectCopy, user_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top level that never returned (a loop, a network call without a timeout) hung `--validate` for ever, and
    `run` before it opened anything. The import has a budget (60 s; 0.05 s here) and is stopped at its line."""
    monkeypatch.setattr(strategy, "IMPORT_SECONDS", 0.05)
    user_module.write_text("x = 0\nwhile True:\n    x += 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_rules(project.rules)
    (problem,) = raised.value.problems
    assert problem.file == strategy.SHOWN and problem.line in (2, 3), problem
    assert problem.message.startswith("failed to import: it ran past 0.05 s and was stopped"), problem.message
