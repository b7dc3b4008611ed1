"""A file that fails its schema still gets its named checks, each on what its problems leave alone.

`--validate` promises every error at once: a misspelt key hid an inverted delta range (and every other named
check of both files, and the check of the sessions against the zone) until the key was fixed. A check whose
input is itself the mistake is skipped: one mistake is said once, and never as a traceback.
"""

from __future__ import annotations

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.loader import load_config
from engine.config.model import Exits
from engine.config.partial import Watch, watched
from engine.paths import PROJECT_ROOT
from engine.rules.book import load_rules
from tests.conftest import ProjectCopy

SIGNALS = load_rules(PROJECT_ROOT / "rules").signal_specs()


def problems_of(project: ProjectCopy, *edits: tuple[str, str, str]) -> list[Problem]:
    for file, old, new in edits:
        project.replace(f"config/{file}", old, new)
    with pytest.raises(ConfigError) as caught:
        load_config(project.config, SIGNALS)
    return caught.value.problems


def said(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.file.rsplit("/", 1)[-1], p.path) for p in problems]


def test_a_misspelt_key_no_longer_hides_an_inverted_delta_range(project: ProjectCopy) -> None:
    """The audit's case: the schema's two lines and the named check's, in one run."""
    problems = problems_of(
        project,
        ("bots.yaml", "stop_loss_pct: 0.75", "stop_los_pct: 0.75"),
        ("bots.yaml", "delta_max: 0.60", "delta_max: 0.10"),
    )
    assert said(problems) == [
        ("bots.yaml", "optionsbot.chain_rules.delta_min"),
        ("bots.yaml", "cryptobot.exits"),
        ("bots.yaml", "cryptobot.exits.stop_los_pct"),
    ]
    assert problems[0].message == "delta_min 0.25 is above delta_max 0.1"


def test_every_kind_of_error_of_both_files_at_once(project: ProjectCopy) -> None:
    """A schema error and a named check's in each file, and the check across both files (the sessions against the
    zone), all in one run."""
    problems = problems_of(
        project,
        ("settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 0"),
        ("settings.yaml", "api_failure_window_seconds: 60", "api_failure_window_seconds: 1"),
        ("bots.yaml", 'trade_start: "06:35"', 'trade_start: "25:00"'),
        ("bots.yaml", "bot_id: mom_TSLA", "bot_id: mom_AAPL"),
        ("bots.yaml", "dte_min: 7", "dte_min: 700"),
    )
    assert said(problems) == [
        ("bots.yaml", "momentum_bots[0].session.trade_start"),  # schema
        ("bots.yaml", "momentum_bots[1].bot_id"),  # named
        ("bots.yaml", "optionsbot.chain_rules.dte_min"),  # named
        ("settings.yaml", "risk.max_orders_per_minute"),  # schema
        ("settings.yaml", "health.api_failure_window_seconds"),  # named
    ], "\n".join(map(str, problems))


def test_the_check_across_both_files_runs_beside_a_schema_error(project: ProjectCopy) -> None:
    problems = problems_of(
        project,
        ("settings.yaml", "America/Los_Angeles", "Asia/Tokyo"),
        ("bots.yaml", "stop_loss_pct: 0.75", "stop_los_pct: 0.75"),
    )
    assert ("settings.yaml", "system.timezone") in said(problems) and len(problems) == 3
    assert "crosses midnight in Asia/Tokyo" in problems[-1].message


@pytest.mark.parametrize(
    ("edits", "paths"),
    [
        # the window is checked against the loop's interval: an interval that is no number says so, once
        (
            [
                ("settings.yaml", "loop_interval_seconds: 5", 'loop_interval_seconds: "x"'),
                ("settings.yaml", "api_failure_window_seconds: 60", "api_failure_window_seconds: 1"),
            ],
            {"runner.loop_interval_seconds"},
        ),
        # the zone the sessions are checked in is no text: neither the zone check nor the sessions' speak
        ([("settings.yaml", "timezone: America/Los_Angeles", "timezone: 5")], {"system.timezone"}),
        # a list of bots that is no list: no bucket "without an enabled bot", no duplicate, no session
        ([("bots.yaml", "momentum_bots:", "momentum_bots: 5\nxmomentum_bots:")], {"momentum_bots", "xmomentum_bots"}),
        # a bot's block that is no mapping: the checks of its exits wait; another block's checks run
        (
            [
                (
                    "bots.yaml",
                    "    exits:\n      stop_loss_pct: 0.60\n      take_profit_pct: 1.20\n      time_stop_minutes: 25\n",
                    "    exits: 5\n",
                ),
                ("bots.yaml", "dte_min: 7", "dte_min: 700"),
            ],
            {"momentum_bots[1].exits", "optionsbot.chain_rules.dte_min"},
        ),
        # a missing block: its stand-in is never taken for the user's values
        ([("bots.yaml", "  guardrails:", "  guardrailz:")], {"portfoliobot", "portfoliobot.guardrailz"}),
    ],
)
def test_a_check_whose_input_is_the_mistake_is_skipped(
    project: ProjectCopy, edits: list[tuple[str, str, str]], paths: set[str]
) -> None:
    """Never a second, confusing problem for one mistake, nor a traceback: each of these is said at its place
    (and, for a key written wrong, at the key written), and by no named check."""
    problems = problems_of(project, *edits)
    assert {p.path for p in problems} == paths, "\n".join(map(str, problems))


def test_a_watched_object_is_still_its_class_and_says_what_a_check_read() -> None:
    """The checks tell bots apart by isinstance(); a read of a value the schema refused is noted, a read of another
    is not, and a check that raises on a value it may trust is a bug, raised. Only what leads to an untrusted
    value is watched."""
    watch = Watch()
    data = {"stop_loss_pct": "x", "take_profit_pct": 1.0}
    exits = watched(Exits, data, "f", {("stop_loss_pct",)}, watch)
    assert isinstance(exits, Exits) and exits.stop_loss_pct == 0.0  # a stand-in of its type
    assert watch.run(lambda e: [Problem("f", 1, 1, "", str(e.take_profit_pct))], exits)[0].message == "1.0"
    assert watch.run(lambda e: [Problem("f", 1, 1, "", str(1 / e.stop_loss_pct))], exits) == []
    with pytest.raises(ZeroDivisionError):
        watch.run(lambda e: [Problem("f", 1, 1, "", str(e.take_profit_pct / 0))], exits)
    # a block that holds no untrusted value is the plain class: 2,000 sound bots are checked at full speed
    assert type(watched(Exits, {"stop_loss_pct": 1.0}, "g", set(), watch)) is Exits
