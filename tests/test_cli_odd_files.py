"""Odd user files through the real commands: `--validate` and `run` on a copy of the project with one file made
strange. Each must be exit 2 with `file:line:col: path: message` lines, no traceback, and, for `run`, nothing
written (no state file, no log)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy


def engine(project: ProjectCopy, *argv: str) -> subprocess.CompletedProcess[str]:
    folders = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "engine", *argv, *folders],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def append(project: ProjectCopy, relative: str, text: str) -> None:
    path = project.root / relative
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def prepend(project: ProjectCopy, relative: str, text: str) -> None:
    path = project.root / relative
    path.write_text(text + path.read_text(encoding="utf-8"), encoding="utf-8")


EDITS = {
    # ruamel asserted on the version: AssertionError, a traceback and exit 1
    "yaml 1.3 directive": (prepend, "config/settings.yaml", "%YAML 1.3\n---\n", "config/settings.yaml:1:1: "),
    # ruamel raised TypeError ("unhashable type") building the key
    "a key holding a mapping": (append, "machines/system.yaml", "? [{a: 1}]\n: b\n", "machines/system.yaml:"),
    # read as YAML 1.1, `off` was false and validated
    "yaml 1.1 directive": (prepend, "config/bots.yaml", "%YAML 1.1\n---\n", "config/bots.yaml:1:1: "),
}


@pytest.mark.parametrize("case", sorted(EDITS))
@pytest.mark.parametrize("command", [["--validate"], ["run", "--once", "--quiet"]])
def test_an_odd_file_is_refused_in_the_contract_format_and_nothing_is_written(
    project: ProjectCopy, case: str, command: list[str]
) -> None:
    edit, relative, text, starts = EDITS[case]
    edit(project, relative, text)
    done = engine(project, *command)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "Traceback" not in said, said
    assert any(line.startswith(starts) for line in said.splitlines()), said
    assert said.strip().splitlines()[-1] == "1 error", said
    assert not (project.root / "state").exists() and not (project.root / "logs").exists()


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("2026-11-23T06:30:00+25:00", "'2026-11-23T06:30:00+25:00' is not an ISO 8601 time with its UTC offset"),
        ("2026-11-23T25:30:00-08:00", "'2026-11-23T25:30:00-08:00': hour must be in 0..23"),
        ("2026-11-23T06:30:00", "'2026-11-23T06:30:00' has no UTC offset"),
    ],
)
def test_a_start_python_cannot_read_is_said_in_plain_words(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str], start: str, says: str
) -> None:
    """An offset of +25:00 was refused with Python's own words: "offset must be a timedelta strictly between
    -timedelta(hours=24) and timedelta(hours=24), not datetime.timedelta(days=1, seconds=3600)."."""
    from engine.cli import main

    folders = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    code = main(["run", "--once", "--quiet", "--start", start, *folders])
    said = capsys.readouterr()
    assert code == 2 and said.err.startswith(f"--start: {says}") and len(said.err.strip().splitlines()) == 1, said
    assert "timedelta" not in said.err and not (project.root / "state").exists()


# Each was written over, exit 0: `report --out` of the state file lost its halts to a page of HTML, `table -o` of
# a machine file replaced the machine by its table. Given on the command line, or settings.yaml's own paths.
OUTPUT_TARGETS = {
    "the state file": "state/s.db",
    "a file beside the state file": "state/s.db.lock",
    "the log": "logs/a.jsonl",
    "settings.yaml's state file": "state/trading_state.db",
    "settings.yaml's log": "logs/app.jsonl",
    "a config file": "config/bots.yaml",
    "a machine file": "machines/momentum.yaml",
    "a scenario file through another spelling": "config/../machines/scenarios/crypto.yaml",
    "a new YAML file in rules/": "rules/extra.yaml",
    ".env": ".env",
}
GIVEN_ONLY = ("the state file", "a file beside the state file", "the log")


@pytest.mark.parametrize("target", sorted(OUTPUT_TARGETS))
@pytest.mark.parametrize("command", [["table", "momentum", "-o"], ["diagram", "momentum", "-o"], ["report", "--out"]])
def test_an_output_that_is_one_of_the_engines_own_files_is_refused_and_left_as_it_was(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: str, command: list[str]
) -> None:
    """-o and --out are refused (exit 2, one line) when they name a file the engine reads or keeps: the state file and
    its companions, the log, `.env`, a config, machine, rule or scenario file, or a new YAML file in those folders."""
    from engine.cli import main

    monkeypatch.chdir(project.root)
    db, log = project.root / "state" / "s.db", project.root / "logs" / "a.jsonl"
    folders = ["--config", "config", "--machines", "machines", "--rules", "rules"]
    db.parent.mkdir()  # a halt makes no folder a --state-db names (a mistyped path?): made as the first run would
    assert main(["halt", "--reason", "news", "--state-db", str(db), "--log", str(log), *folders]) == 0
    assert main(["halt", "--reason", "news", *folders]) == 0  # settings.yaml's state file and log
    (project.root / ".env").write_text("ALPACA_PAPER=true\n")
    path = project.root / OUTPUT_TARGETS[target]
    before = path.read_bytes() if path.exists() else None
    capsys.readouterr()
    given = ["--state-db", str(db), "--log", str(log)] if command[0] == "report" else []  # table and diagram take none
    if not given and target in GIVEN_ONLY:
        pytest.skip(f"{command[0]} takes no --state-db or --log")
    code = main([*command, OUTPUT_TARGETS[target], *given, *folders])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and OUTPUT_TARGETS[target] in err, err
    assert (path.read_bytes() if path.exists() else None) == before
