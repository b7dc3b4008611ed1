"""`validate` (engine/validate.py): the checks across files run beside another file's errors where they can."""

from __future__ import annotations

import pytest

from engine.validate import validate
from tests.conftest import ProjectCopy

SETTINGS = "config/settings.yaml"


@pytest.mark.parametrize(
    ("also", "said"),
    [
        (None, True),
        (("max_orders_per_minute: 10", "max_orders_per_minute: 0"), True),  # another key of settings.yaml
        (("log_path: ./logs/app.jsonl", "log_path: 5"), False),  # a path the check reads: the schema says so
        (("log_path: ./logs/app.jsonl", "log_path: ~nosuchuser/app.jsonl"), False),  # no path: said by its check
    ],
)
def test_what_a_run_writes_is_checked_beside_a_typo_in_bots_yaml(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, also: tuple[str, str] | None, said: bool
) -> None:
    """A state file that is bots.yaml (SQLite would write into it) was said only once bots.yaml's misspelt key was
    fixed, and a problem anywhere in settings.yaml hid it too. The check of what a run writes reads settings.yaml's
    two paths alone: it waits only while one of them is itself the mistake."""
    monkeypatch.chdir(project.root)
    project.replace(SETTINGS, "state_db_path: ./state/trading_state.db", "state_db_path: ./config/bots.yaml")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.75", "stop_los_pct: 0.75")
    if also is not None:
        project.replace(SETTINGS, *also)
    problems = validate(project.config, project.machines, project.rules).problems
    paths = [p.path for p in problems]
    assert ("system.state_db_path" in paths) is said, paths
    assert {"cryptobot.exits", "cryptobot.exits.stop_los_pct"} <= set(paths)
    assert len(problems) == 2 + said + (also is not None), "\n".join(map(str, problems))


def test_a_rule_file_s_sound_rules_are_checked_beside_its_schema_errors(project: ProjectCopy) -> None:
    """A misspelt key in one guard hid a typo in another guard's expression of the same file (guards.yaml was
    left out whole until fixed). The rules the schema's errors leave alone are checked; a guard composing the
    broken one is not (its "unknown guard" would be a second problem for one mistake), nor is the broken one."""
    guards = "rules/guards.yaml"
    project.replace(
        guards, "    expr: worst_position_pnl_pct <= -exits_stop_loss_pct", "    exprr: position_pnl_pct <= -exits_stop_loss_pct"
    )
    project.replace(guards, "expr: trades_today < risk_max_trades_per_day", "expr: trades_todya < risk_max_trades_per_day")
    unused = "  my_exit:\n    description: Unused yet.\n    when: {all: [stop_loss_hit, holds_position]}\n"
    project.replace(guards, "  holds_position:\n", unused + "  holds_position:\n")
    problems = validate(project.config, project.machines, project.rules).problems
    assert [p.path for p in problems] == [
        "guards.under_trade_cap.expr",
        "guards.stop_loss_hit",
        "guards.stop_loss_hit.exprr",
    ], "\n".join(map(str, problems))
    assert problems[0].message == "unknown fact 'trades_todya' (did you mean 'trades_today'?)"


@pytest.mark.parametrize(("signals_broken", "said"), [(False, True), (True, False)])
def test_the_bots_signal_modes_are_checked_beside_a_broken_guard_file(
    project: ProjectCopy, signals_broken: bool, said: bool
) -> None:
    """A mode no signal implements was said only once guards.yaml's misspelt key was fixed: every signal is known
    while only guards are broken. While a signal is itself broken, the mode may be its: not said."""
    project.replace("rules/guards.yaml", "    expr: worst_position_pnl_pct <= -exits_stop_loss_pct", "    exprr: x")
    project.replace("config/bots.yaml", 'mode: "placeholder_momentum_v1"', 'mode: "placeholder_momentum_v2"')
    if signals_broken:
        project.replace("rules/signals.yaml", "signals:\n", "signals:\n  broken: 5\n")
    paths = [p.path for p in validate(project.config, project.machines, project.rules).problems]
    assert ("momentum_bots[0].signal.mode" in paths) is said, paths


# --- warnings: what the files let the engine do that a trader would not want -----------------------------------


def test_a_spread_limit_the_stop_loss_closes_at_once_is_warned_of_at_its_place(project: ProjectCopy) -> None:
    """The shipped OptionsBot allows 10 % spreads (chain_rules.max_spread_pct) beside a 0.30 % stop: a contract is
    bought at the ask and valued at what selling it gets, so every one over about 0.3 % wide was at its stop the
    moment it filled, and `--validate` said nothing (audit 21a s5). A warning, not an error: the files are the
    user's, and the engine skips such entries itself. It is said where the limit is written, with both figures."""
    report = validate(project.config, project.machines, project.rules)
    assert report.ok
    (warning,) = report.warnings
    assert warning.file.endswith("config/bots.yaml") and warning.path == "optionsbot.chain_rules.max_spread_pct"
    lines = (project.config / "bots.yaml").read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "max_spread_pct: 10 " in text)
    assert (warning.line, warning.col) == (line, lines[line - 1].index("10 ") + 1)
    assert warning.message.startswith("10 % lets in contracts that are at exits.stop_loss_pct (0.3 %) the moment")
    assert "the bot trades under a 0.3 % spread, not 10 %" in warning.message
    # a limit short of the stop: nothing to say
    project.replace("config/bots.yaml", "max_spread_pct: 10 ", "max_spread_pct: 0.25 ")
    assert validate(project.config, project.machines, project.rules).warnings == []


def test_a_stop_inside_half_the_health_spread_limit_is_warned_of_for_shares_and_coins(project: ProjectCopy) -> None:
    """A share or coin is valued at the mid: half its spread is lost at once. health.max_spread_pct (1 %) beside a
    stop of 0.40 % let in quotes whose entry the stop closed the next tick; the warning is at the bot's stop (the
    limit is every bot's). A disabled bot is not warned of (mom_TSLA), nor a stop wider than half the limit."""
    project.replace("config/bots.yaml", "stop_loss_pct: 0.30", "stop_loss_pct: 12")  # options: wider than 10 %
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 0.40")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.60", "stop_loss_pct: 0.10")  # mom_TSLA, disabled
    report = validate(project.config, project.machines, project.rules)
    assert report.ok
    (warning,) = report.warnings
    assert warning.file.endswith("config/bots.yaml") and warning.path == "momentum_bots[0].exits.stop_loss_pct"
    assert warning.message.startswith("'mom_AAPL': 0.4 % is lost the moment an entry fills at a spread of 0.803 % of")
    assert "health.max_spread_pct lets in 1 %" in warning.message
    project.replace("config/settings.yaml", "max_spread_pct: 1.0", "max_spread_pct: 0.5")
    assert validate(project.config, project.machines, project.rules).warnings == []
