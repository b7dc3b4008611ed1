"""What a halt in force makes the engine do next, said wherever the halt is shown: `status`, `why` and the status
page named a halt, its reason and its end, but never whether the kill switch was selling: a daily-loss kill (which
flattens every position) and an operator's halt (which keeps them, their exits managed) read the same, and a bot
halted on its own did not say that its positions were being closed. And "(or `python -m engine resume`)" read as
the cure for a halt whose cause the engine checks again, which halts it again at the next tick."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.brokers.base import OrderRequest
from engine.core.store import SYSTEM_SCOPE
from engine.operator.local import LocalTime
from engine.operator.status_page import status_record
from engine.operator.summary import halts_in_force
from engine.operator.why import explain, render
from engine.trading.runner import operator_halt, operator_resume, status_text
from engine.validate import load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig

FLATTENS = "the kill switch closes every position"
KEEPS = "positions are kept, their exits managed"
BOT_CLOSES = "the kill switch closes its positions"
BOT_KEEPS = "its positions are kept, managed by its exits"
HALTS_AGAIN = "ending it does not clear its cause: while that stands, the engine halts again"


def _views(project: ProjectCopy, rig: Rig, bot: str) -> tuple[str, str, list[dict[str, Any]]]:
    """status's text, why's text for `bot`, and the page's halts, all read at the state's time."""
    from engine.operator.local import LocalTime

    report = load_valid(project.config, project.machines, project.rules)
    now = rig.clock.now()
    assert report.config is not None
    local = LocalTime(report.config.settings.system.timezone)
    why = render(explain(rig.store, report, bot, now))
    page = status_record(rig.store, report, now, local)["halts"]
    return status_text(rig.store, now, local=local), why, page


def _halt_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("halted (", "HALT IN FORCE: "))]


def test_a_daily_loss_kill_is_said_to_flatten_and_an_operator_halt_to_keep_positions(project: ProjectCopy, rig: Rig) -> None:
    rig.until(lambda r: bool(r.store.positions()))
    bot = rig.store.positions()[0].bot_id
    rig.exchange.last_equity = rig.exchange.equity() * 1.05  # the account is down 5 % on the day: the kill flattens
    rig.ticks(1)
    (halt,) = rig.store.halts(SYSTEM_SCOPE)
    assert halt.flatten
    status, why, page = _views(project, rig, bot)
    assert any(FLATTENS in line and HALTS_AGAIN in line for line in _halt_lines(status)), status
    assert any(FLATTENS in line for line in _halt_lines(why)), why
    assert page[0]["flatten"] is True and FLATTENS in page[0]["effect"]

    operator_halt(rig.store, rig.engine.journal, "news at 10:00", rig.clock.now())  # beside it: no flatten of its own
    rig.store.end_halt(halt.id, rig.clock.now(), "test")
    status, why, page = _views(project, rig, bot)
    (line,) = _halt_lines(status)
    assert "news at 10:00" in line and KEEPS in line and FLATTENS not in line, status
    assert HALTS_AGAIN not in line  # the operator's own halt: `resume` ends it for good
    assert any(KEEPS in line for line in _halt_lines(why)), why
    assert page[0]["flatten"] is False and KEEPS in page[0]["effect"]


def test_a_bot_halted_on_its_own_is_said_to_have_its_positions_closed(project: ProjectCopy, rig: Rig) -> None:
    rig.until(lambda r: bool(r.store.positions()))
    bot = rig.store.positions()[0].bot_id
    now = rig.clock.now()
    rig.store.start_halt(bot, "orders rejected repeatedly", ("anomaly",), False, now, None)
    status, why, page = _views(project, rig, bot)
    line = next(line for line in status.splitlines() if line.startswith(f"HALT IN FORCE: bot {bot} "))
    assert BOT_CLOSES in line, status
    assert any(BOT_CLOSES in line for line in why.splitlines() if line.startswith(f"halted ({bot})")), why
    assert BOT_CLOSES in page[0]["effect"]
    rig.ticks(3)
    assert not rig.store.positions(bot)  # what was said is what happens


def test_a_paused_bot_is_said_to_keep_its_positions_and_keeps_them(project: ProjectCopy, rig: Rig) -> None:
    """A pause (the broker refused the bot's orders on their merits) was said, and done, as a fault's halt: "the
    kill switch closes its positions". It keeps them, managed by the bot's own exits; `status`, `why` and the page
    say so, from the rule the kill switch follows (`store.is_pause`)."""
    rig.until(lambda r: bool(r.store.positions()))
    bot = rig.store.positions()[0].bot_id
    held = rig.store.positions(bot)
    now = rig.clock.now()
    rig.store.start_halt(bot, "orders refused repeatedly (insufficient_funds)", ("refusals",), False, now,
                         now + timedelta(minutes=30))  # fmt: skip
    status, why, page = _views(project, rig, bot)
    line = next(line for line in status.splitlines() if line.startswith(f"HALT IN FORCE: bot {bot} "))
    assert BOT_KEEPS in line and BOT_CLOSES not in line, status
    assert any(BOT_KEEPS in line for line in why.splitlines() if line.startswith(f"halted ({bot})")), why
    assert BOT_KEEPS in page[0]["effect"]
    # its machine is not shown "halted ... moves at its next tick": a pause leaves it where it is, exits running
    machine = next(line for line in status.splitlines() if line.split()[1:2] == [bot])
    assert "halted" not in machine and "moves at its next tick" not in machine, status
    report = load_valid(project.config, project.machines, project.rules)
    shown = status_record(rig.store, report, now, LocalTime())["machines"]
    (record,) = [m for m in shown if m["bot"] == bot]
    assert record["state"] == record["saved_state"] != "halted" and not record["moves_at_next_tick"]
    rig.ticks(3)
    assert not [r for r in rig.store.orders(bot_id=bot) if r.reason == "bot_halted"]
    assert [p.symbol for p in rig.store.positions(bot)] == [p.symbol for p in held]  # what was said is what happens


def test_resume_is_not_offered_as_the_cure_of_an_unexplained_position(project: ProjectCopy, rig: Rig) -> None:
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))  # bought outside the engine
    rig.ticks(3)
    status, why, page = _views(project, rig, "mom_AAPL")
    (line,) = _halt_lines(status)[-1:]
    assert line.startswith("HALT IN FORCE: the system") and "reconciliation: position AAPL" in line, status
    assert HALTS_AGAIN in line and KEEPS in line, line
    assert any(HALTS_AGAIN in line for line in _halt_lines(why)) and HALTS_AGAIN in page[0]["effect"]
    operator_resume(rig.store, rig.engine.journal, rig.clock.now())
    rig.ticks(2)
    assert halts_in_force(rig.store, rig.clock.now())  # what was said is what happens
