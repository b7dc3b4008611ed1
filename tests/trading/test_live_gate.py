"""What a live run needs whole (engine/trading/live_gate.py): the kill switch was refused only when switched off
by `exitbot.enabled: false`; every kill condition false, or only the daily-loss one, started a live run, and a
rules/preflight.yaml cut down to `system_armed` traded with no check of the quotes, the account or the day's loss."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from engine.paths import PROJECT_ROOT
from engine.trading.live_gate import SHIPPED_PREFLIGHT, live_gaps
from engine.validate import validate
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import command, without_keys

LIVE_ENV = {"ALPACA_KEY": "AKLIVEKEY00000001", "ALPACA_SECRET": "livesecret000000000", "ALPACA_PAPER": "false",
            "ALPACA_API_BASE_URL": "http://127.0.0.1:9", "ALPACA_DATA_BASE_URL": "http://127.0.0.1:9"}  # fmt: skip


def gaps(project: ProjectCopy) -> list[str]:
    report = validate(project.config, project.machines, project.rules, scenarios=False)
    assert report.ok and report.config is not None and report.book is not None, report.problems
    return live_gaps(report.config.bots, report.book)


def test_the_shipped_files_have_every_protection(project: ProjectCopy) -> None:
    assert gaps(project) == []


def test_the_required_preflight_checks_are_the_shipped_ones() -> None:
    """The list in the code and rules/preflight.yaml move together: a check added to the file is required live."""
    shipped = YAML(typ="safe").load((PROJECT_ROOT / "rules" / "preflight.yaml").read_text(encoding="utf-8"))["preflight"]
    assert tuple(shipped) == SHIPPED_PREFLIGHT


def test_a_kill_condition_switched_off_is_a_gap(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "max_daily_loss_halt: true", "max_daily_loss_halt: false")
    assert gaps(project) == [
        "every kill condition of the kill switch on: exitbot.kill_conditions.max_daily_loss_halt is false in bots.yaml"
    ]


def test_a_shipped_preflight_check_removed_is_a_gap(project: ProjectCopy) -> None:
    text = (project.rules / "preflight.yaml").read_text(encoding="utf-8")
    start = text.index("  quotes_fresh:")
    end = text.index("  quotes_usable:")
    (project.rules / "preflight.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    project.replace(
        "rules/preflight.yaml",
        "  daily_loss_ok:\n    description: The daily loss is within",
        "  day_ok:\n    description: The daily loss is within",
    )
    assert gaps(project) == [
        "every preflight check that rules/preflight.yaml ships: quotes_fresh, daily_loss_ok are not in rules/"
    ]


def test_the_daily_loss_condition_that_no_longer_closes_positions_is_a_gap(project: ProjectCopy) -> None:
    project.replace("rules/kill_conditions.yaml", "    flatten: true\n", "")
    (gap,) = gaps(project)
    assert gap.startswith(
        "the daily-loss kill switch to close every position: kill condition max_daily_loss_halt has no 'flatten: true'"
    )


def live_run(project: ProjectCopy) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(project, "run", "--live", "--once"), capture_output=True, text=True,
                          cwd=project.root, env={**without_keys(), **LIVE_ENV}, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("file", "old", "new", "said"),
    [
        (
            "config/bots.yaml",
            "    max_daily_loss_halt: true",
            "    max_daily_loss_halt: false",
            "exitbot.kill_conditions.max_daily_loss_halt is false",
        ),
        (
            "config/bots.yaml",
            "    anomaly_halt: true",
            "    anomaly_halt: false",
            "exitbot.kill_conditions.anomaly_halt is false",
        ),
        ("rules/preflight.yaml", "  system_armed:", "  system_armed_renamed:", "system_armed is not in rules/"),
    ],
)
def test_a_live_run_with_a_thinned_kill_switch_or_preflight_is_refused(
    project: ProjectCopy, file: str, old: str, new: str, said: str
) -> None:
    """Exit 2 (a setting to fix: the service does not restart on it), before anything is written, as
    `exitbot.enabled: false` is."""
    project.replace(file, old, new)
    result = live_run(project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: live trading needs ") and said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.root / "app.jsonl").exists() and not (project.root / "s.db").exists()


def test_validate_warns_of_what_a_live_run_would_refuse_and_passes(project: ProjectCopy) -> None:
    """A paper account may run a thinner set on purpose: exit 0, and the live refusal's words as a warning."""
    project.replace("config/bots.yaml", "    data_stale_halt: true", "    data_stale_halt: false")
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    result = subprocess.run([sys.executable, "-m", "engine", "--validate", *files], capture_output=True, text=True,
                            cwd=project.root, env=without_keys(), timeout=60)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("OK: "), result.stdout + result.stderr
    live, spread = result.stderr.splitlines()  # and the shipped OptionsBot's spread limit, as ever (below)
    assert live == (
        "warning: `run --live` would refuse: live trading needs every kill condition of the kill switch on: "
        "exitbot.kill_conditions.data_stale_halt is false in bots.yaml"
    )
    assert "optionsbot.chain_rules.max_spread_pct: 10 % lets in " in spread


def test_a_simulated_run_with_a_thinned_kill_switch_says_so_at_its_start(project: ProjectCopy) -> None:
    """A paper or simulated run may be given a thinner kill switch on purpose, and starts; it used to start
    silently (only `--validate` said it), so a user testing in paper learnt of the gap on the day they went live."""
    project.replace("config/bots.yaml", "    data_stale_halt: true", "    data_stale_halt: false")
    result = subprocess.run(command(project, "run", "--once"), capture_output=True, text=True, cwd=project.root,
                            env=without_keys(), timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warning: `run --live` would refuse: live trading needs every kill condition of the kill switch on: "
        "exitbot.kill_conditions.data_stale_halt is false in bots.yaml\n"
    ) in result.stderr


def test_validate_of_the_shipped_files_warns_only_of_the_options_spread_limit() -> None:
    """Nothing a live run would refuse. One warning, the truth about the shipped bots.yaml (README, "No entry starts
    at its stop"): its OptionsBot's 10 % chain_rules.max_spread_pct lets in contracts its 0.30 % stop closes the
    moment they fill; the engine passes over them, so the bot trades under a 0.3 % spread. Exit 0 all the same."""
    result = subprocess.run([sys.executable, "-m", "engine", "--validate"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, env=without_keys(), timeout=60)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("OK: "), result.stdout
    (warning,) = result.stderr.splitlines()
    said = ": optionsbot.chain_rules.max_spread_pct: 10 % lets in contracts that are at exits.stop_loss_pct (0.3 %) "
    assert warning.startswith("warning: config/bots.yaml:") and said in warning, warning


def test_validate_does_not_warn_beside_an_error_that_says_it_already(project: ProjectCopy) -> None:
    """rules/preflight.yaml deleted is an error (no preflight check at all); the warning listed its sixteen checks
    again beside it."""
    (project.rules / "preflight.yaml").unlink()
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    result = subprocess.run([sys.executable, "-m", "engine", "--validate", *files], capture_output=True, text=True,
                            cwd=project.root, env=without_keys(), timeout=60)  # fmt: skip
    assert result.returncode == 2 and "no preflight check in" in result.stdout, result.stdout
    assert result.stderr == ""  # the OptionsBot's spread limit neither (`spread_limit_warnings`): the errors first


def test_a_rules_folder_from_before_the_two_later_checks_still_runs_live(project: ProjectCopy) -> None:
    """`data_permitted` and `bot_not_paused` were shipped after the live gate: a user's rules/ copied before them
    must not refuse a live run it was allowed before. The engine holds both without them (the gate refuses a paused
    bot's entries; a refused feed leaves no price to enter on)."""
    text = (project.rules / "preflight.yaml").read_text(encoding="utf-8")
    for name in ("data_permitted", "bot_not_paused"):
        start = text.index(f"  {name}:")
        end = text.index("\n  ", text.index("\n", start) + 1)
        while text[end + 3] == " ":  # the check's own indented lines
            end = text.index("\n  ", end + 1)
        text = text[:start] + text[end + 1 :]
    (project.rules / "preflight.yaml").write_text(text, encoding="utf-8")
    assert gaps(project) == []
