"""The JSONL log's contract as the README's "State and logs" states it: every event it names, with the fields it
names, is what the engine writes. jq one-liners, alert rules and dashboards are written from that paragraph; an
event renamed, or a field dropped, would leave them silently empty.

Each event of the paragraph is listed here with its fields; a test checks the README still names each one, and
the others that each is written with those fields: a simulated morning through `python -m engine run` (and an
operator's halt and resume), and broker failures through the real alpaca-py clients against the emulator.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.journal import read_events
from engine.paths import PROJECT_ROOT
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import OPEN, make_rig
from tests.trading.test_run_command import engine

README = PROJECT_ROOT / "README.md"

# event -> the fields the README names for it (its paragraph, and the jq lines below it that read them)
EVENTS: dict[str, set[str]] = {
    "transition": {"machine", "bot", "from", "to", "trigger", "guards"},
    "preflight": {"bot", "ok", "failed", "errors"},
    "entry_blocked": {"bot", "failed"},
    "order": {"action"},
    "fill": set(),
    "trade": {"bot", "symbol", "entry_time", "exit_time", "entry_price", "exit_price", "qty", "pnl", "fees", "exit_trigger"},
    "contract_chosen": {"quote_age_s", "spread_pct"},
    "allocation": set(),
    "halt": {"scope", "reason", "until", "by"},
    "resume": {"scope", "by"},
    "anomaly": set(),
    "broker_error": {"operation", "kind", "reason", "status", "code", "message", "held", "counted"},
    "tick": {"duration_ms", "broker_requests", "transitions", "system"},
    "run_start": set(),
    "run_end": {"reason", "ticks", "equity"},
}
# `order` events' `action`s the README names (the paragraph, and its jq line of orders held back or refused)
ORDER_ACTIONS = {"intent", "submitted", "update", "send_failed", "refused", "held", "not_sent", "cancel_requested"}
FROM_A_FAILING_BROKER = {"broker_error", "anomaly"}  # written only when something failed: the emulator test


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(OPEN)


def logs_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("`logs/app.jsonl`: one JSON object a line")
    return text[start : text.index("## Performance", start)]


def assert_fields(events: list[dict[str, Any]], name: str) -> None:
    assert events, f"no {name!r} event was written"
    for event in events:
        assert {"ts", "event"} | EVENTS[name] <= set(event), (name, sorted(EVENTS[name] - set(event)))


def test_the_readme_still_names_every_event_and_order_action_listed_here() -> None:
    section = logs_section()
    named = set(re.findall(r"`([a-z_]+)`", section))
    assert set(EVENTS) <= named, sorted(set(EVENTS) - named)
    assert named >= ORDER_ACTIONS, sorted(ORDER_ACTIONS - named)


def test_a_simulated_morning_writes_every_event_with_its_fields(project: ProjectCopy) -> None:
    run = engine(project, "run", "--ticks", "900", "--start", "2026-11-23T09:30:00-05:00")
    assert run.returncode == 0, run.stderr
    assert engine(project, "halt", "--reason", "news at 10:00").returncode == 0
    assert engine(project, "resume").returncode == 0
    events = read_events(project.root / "app.jsonl")
    for name in set(EVENTS) - FROM_A_FAILING_BROKER:
        assert_fields([e for e in events if e["event"] == name], name)
    actions = {e["action"] for e in events if e["event"] == "order"}
    assert {"intent", "submitted"} <= actions, actions  # the simulator fills at once: no `update` on its day
    assert all(isinstance(e["guards"], list) for e in events if e["event"] == "transition")
    halt = next(e for e in events if e["event"] == "halt")
    assert (halt["scope"], halt["reason"], halt["until"], halt["by"]) == ("system", "news at 10:00", None, "operator")
    assert next(e for e in events if e["event"] == "run_end")["reason"] == "completed"


def test_broker_failures_write_broker_error_and_the_kill_switchs_halt_with_their_fields(
    project: ProjectCopy, clock: ManualClock
) -> None:
    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.ticks(2)
        emulator.faults.extend(Fault(status=503, path_prefix="/v2/account") for _ in range(5))
        rig.ticks(5)
        errors = rig.events("broker_error")
        assert_fields(errors, "broker_error")
        assert {(e["operation"], e["status"]) for e in errors} == {("account", 503)}
        halts = rig.events("halt")
        assert_fields(halts, "halt")
        assert halts[0]["reason"] == "kill condition: api_failure_halt (api_failures_in_window 5, health_max_api_failures_in_window 5)" and halts[0]["until"] is not None


@pytest.mark.parametrize("action", sorted(ORDER_ACTIONS))
def test_every_order_action_the_readme_names_is_one_the_engine_writes(action: str) -> None:
    """`.action=="updates"` matches nothing: the names are checked against the engine's own source."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "engine" / "trading").glob("*.py"))
    assert f'action="{action}"' in source or f'"{action}")' in source or f'"{action}" if' in source, action
