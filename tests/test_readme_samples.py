"""The README's sample outputs are what the shipped files give: the simulated day it shows (the same date, so
the same prices), the counts docs/backtest.md quotes of that day, and `--validate`'s answers to the edits it
walks through. A reader compares their first run with these; a sample gone stale (a third error the README does
not show, a day of 46 transitions that now makes 50) reads as a broken install."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.journal import read_events
from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import without_keys

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
BACKTEST_DOC = (PROJECT_ROOT / "docs" / "backtest.md").read_text(encoding="utf-8")


def console(after: str, command: str) -> list[str]:
    """The lines a README console block shows for `command`, the first such block after the text `after`."""
    opening = README.index("```console\n", README.index(after)) + len("```console\n")
    block = README[opening : README.index("\n```", opening)]
    lines = block.splitlines()
    assert lines[0] == f"$ {command}", lines[0]
    return lines[1:]


def engine(project: ProjectCopy, *args: str) -> subprocess.CompletedProcess[str]:
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    return subprocess.run([sys.executable, "-m", "engine", *args, *files], capture_output=True, text=True,
                          cwd=project.root, env=without_keys(), timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """The README's run: the shipped config from the open of Monday 2026-11-23 to its close."""
    project = ProjectCopy(tmp_path_factory.mktemp("day") / "project")
    log = project.root / "app.jsonl"
    done = engine(project, "run", "--start", "2026-11-23T06:30:00-08:00", "--state-db", str(project.root / "s.db"), "--log", str(log))
    assert done.returncode == 0, done.stderr
    return [*done.stderr.splitlines(), *done.stdout.splitlines()], log


def test_the_readme_run_is_the_shipped_configs_day(day: tuple[list[str], Path]) -> None:
    shown, _log = day
    expected = console("this one ran on Monday\n2026-11-23", "python -m engine run")
    assert len(shown) == len(expected), shown
    assert shown[0] == expected[0]
    # the paths are the reader's own, and the time the machine's: the rest is the simulation's, to the cent
    assert shown[1].endswith(expected[1].split("; ", 1)[1]) and expected[1].split(";")[0].startswith("state ")
    assert shown[2].split(" in ")[0] == expected[2].split(" in ")[0]
    assert shown[3:] == expected[3:]


def test_the_days_counts_in_docs_backtest_md_are_those_of_the_readme_day(day: tuple[list[str], Path]) -> None:
    _shown, log = day
    events = read_events(log)
    transitions = sum(e["event"] == "transition" for e in events)
    orders = sum(e["event"] == "order" and e["action"] == "intent" for e in events)
    said = re.search(r"The replay makes the same (\d+) transitions at the same instants, the\nsame (\d+) orders", BACKTEST_DOC)
    assert said is not None
    assert (int(said.group(1)), int(said.group(2))) == (transitions, orders)


def test_the_readme_validate_samples(project: ProjectCopy) -> None:
    ok = engine(project, "--validate")
    shown = console("Check them after every edit", "python -m engine --validate")
    # the warning (stderr) first, then the summary; the rule count too, not the time it took
    said = [*ok.stderr.splitlines(), ok.stdout.rsplit(" (", 1)[0]]
    assert ok.returncode == 0 and said == [*shown[:-1], shown[-1].rsplit(" (", 1)[0]], ok.stdout + ok.stderr

    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "25:00"')
    project.replace("config/bots.yaml", "stop_loss_pct: 0.60", "stop_los_pct: 0.60")
    broken = engine(project, "--validate")
    assert broken.returncode == 2
    assert broken.stdout + broken.stderr == "\n".join(console("A broken file gets every error at once", "python -m engine --validate")) + "\n"


def test_the_readme_rule_edit_sample(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "    description: The bot's positions together gained at least exits.take_profit_pct percent.\n"
                    "    expr: position_pnl_pct >= exits_take_profit_pct",
                    "    description: The position gained half of exits.take_profit_pct.\n"
                    "    expr: position_pnl >= exits_take_profit_pct / 2")  # fmt: skip
    broken = engine(project, "--validate")
    start = README.index("2. Validate. A typo is caught")
    block = README[README.index("```console\n", start) : README.index("   ```\n", start + 40)]
    expected = [line.removeprefix("   ") for line in block.splitlines()[2:]]
    assert broken.returncode == 2 and (broken.stdout + broken.stderr).splitlines() == expected
