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
