"""The end-of-run summary's figures against what the broker and SQLite hold: a figure the broker could not give
is said unknown, never made up."""

from __future__ import annotations

from typing import Any

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.trading.runner import Session, format_summary, summarize
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig


def _session(rig: Rig) -> Session:
    return Session(engine=rig.engine, clock=rig.clock, simulated=False, broker_name="alpaca", notice="",
                   store=rig.store, journal=rig.engine.journal)  # fmt: skip


def test_unrealized_pnl_the_broker_cannot_price_now_is_unknown_not_zero(project: ProjectCopy, clock: ManualClock) -> None:
    """The summary priced each holding at the broker's current price, and at its own entry price when the broker
    gave none: with the positions unreadable at the run's end (a 503), an open position's unrealized P&L read
    +0.00 as if flat. It is unknown, said so, and null in the run_end record."""
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: bool(r.store.positions("crypto_core")))
        rig.ticks(30)  # the price moves away from the entry
        session = _session(rig)
        read = summarize(session, 1.0, [0.1], clock.now())
        held = read["pnl_by_bot"]["crypto_core"]["unrealized"]
        assert held is not None and held != 0.0
        emulator.faults.append(Fault(status=503, path_prefix="/v2/positions", times=0))
        unread = summarize(session, 1.0, [0.1], clock.now())
        emulator.faults.clear()
    assert unread["pnl_by_bot"]["crypto_core"]["unrealized"] is None
    assert unread["pnl_by_bot"]["mom_AAPL"]["unrealized"] == 0.0  # holds nothing: 0 is known
    text = format_summary(unread)
    line = next(line for line in text.splitlines() if line.startswith("  crypto_core:"))
    assert line.endswith("/ unknown (the broker's answer could not be read)"), line


def test_pnl_by_bot_over_the_run_is_the_runs_own_when_it_continues_a_day(project: ProjectCopy) -> None:
    """The summary's "P&L by bot over the run" summed the whole days the run touched: a run continuing the day of
    an earlier one (the next `run` after `--ticks`, a restart) showed that run's losses as its own, beside its own
    7 orders and 7 fills that closed none of them. The days' lines stay whole days; the by-bot figure is the run's."""
    from datetime import date, datetime, timezone

    from engine.trading.runner import RunOptions, close_session, open_session, run
    from engine.validate import load_valid

    report = load_valid(project.config, project.machines, project.rules)
    db, log = project.root / "s.db", project.root / "s.jsonl"
    day = date(2026, 11, 23)

    def one_run(ticks: int, start: datetime | None = None) -> tuple[dict[str, Any], dict[str, float]]:
        options = RunOptions(broker="sim", state_db=db, log=log, ticks=ticks, start=start)
        session = open_session(report, options, {}, datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc))
        try:
            summary = run(session, options)
            return summary, session.store.realized_pnl(day)
        finally:
            close_session(session)

    first, after_first = one_run(700, datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc))
    second, after_second = one_run(1200)
    assert first["pnl_by_bot"]["mom_AAPL"]["realized"] == round(after_first["mom_AAPL"], 2) != 0.0
    for bot, figures in second["pnl_by_bot"].items():
        assert figures["realized"] == round(after_second.get(bot, 0.0) - after_first.get(bot, 0.0), 2), bot
    assert second["pnl_by_bot"]["mom_AAPL"]["realized"] == 0.0  # it closed nothing in the second run
    assert second["days"]["2026-11-23"]["mom_AAPL"]["realized"] == round(after_second["mom_AAPL"], 2)  # the whole day


def test_a_run_stopped_before_its_first_tick_says_no_median(project: ProjectCopy, clock: ManualClock) -> None:
    """A SIGTERM during start-up ends the run with no tick: its first line read "0 ticks ... (median tick None ms)"."""
    rig = make_rig(project, clock)
    text = format_summary(summarize(_session(rig), 0.0, [], clock.now()))
    assert "None" not in text.splitlines()[0] and text.splitlines()[0].endswith(" in 0.0 s"), text


def test_a_bot_id_from_the_state_file_is_printed_on_one_line() -> None:
    """The P&L by bot comes from the state file's rows, which a hand edit or another tool may have written: a bot
    id holding a line end or an escape sequence forged a line of the summary (a made-up total) or reached the
    terminal raw. It is printed through one_line, as `status` and `report` print it."""
    summary: dict[str, Any] = {
        "simulated_until": "2026-11-30T21:00:00+00:00", "ticks": 1, "wall_seconds": 0.1, "tick_ms_median": 1.0,
        "transitions": 0, "orders": 0, "fills": 0, "system_state": "armed", "equity": 1000.0,
        "pnl_by_bot": {"mom_X\ntotal: +12345.67 USD\x1b[2J": {"realized": 1.0, "unrealized": 0.0}},
        "days": {}, "halts": [], "in_force": [],
    }  # fmt: skip
    text = format_summary(summary)
    assert "\x1b" not in text
    assert not any(line.startswith("total:") for line in text.splitlines()), text


def test_pnl_by_bot_over_a_run_of_two_days_adds_the_days_as_they_are_shown(project: ProjectCopy, clock: ManualClock) -> None:
    """A run over two days summed each bot's unrounded P&L across them and rounded once: +1.004 a day read +2.01
    over the run beside its days' lines of +1.00 and +1.00, which `report` adds to +2.00 for the same days. Every
    view totals P&L one way (`money.total`: each bot's day rounded once, then added)."""
    from datetime import timedelta

    from engine.operator.report import build_report

    rig = make_rig(project, clock)
    rig.ticks(1)
    started = clock.now()
    first = rig.engine.trading_date(started)
    clock.advance(timedelta(days=1).total_seconds())
    second = rig.engine.trading_date(clock.now())
    for day in (first, second):
        rig.store.add_realized_pnl(day, "mom_AAPL", 1.004)
    session = _session(rig)
    summary = summarize(session, 0.0, [], started)
    assert [summary["days"][d.isoformat()]["mom_AAPL"]["realized"] for d in (first, second)] == [1.0, 1.0]
    report = build_report(rig.store, rig.log, first, second, session.local, clock.now())
    assert summary["pnl_by_bot"]["mom_AAPL"]["realized"] == report.pnl_by_bot["mom_AAPL"] == 2.0


def test_a_halt_written_before_a_simulations_first_run_is_counted_in_its_summary_whatever_its_stamp(
    project: ProjectCopy,
) -> None:
    """`halt` before a simulation's first run stamps the wall clock's time (no simulated time exists yet), later than
    the simulated day: the run was halted throughout, yet its summary and `status`'s last run said "halts: 0" beside
    HALT IN FORCE (the halts were picked by their stamps). The halts in force as a run starts are its own."""
    from datetime import datetime, timezone

    from engine.core.clock import SystemClock
    from engine.core.journal import Journal
    from engine.core.store import StateStore
    from engine.operator.local import LocalTime
    from engine.trading.runner import RunOptions, close_session, open_session, operator_halt, run, status_text
    from engine.validate import load_valid

    report = load_valid(project.config, project.machines, project.rules)
    db, log = project.root / "s.db", project.root / "s.jsonl"
    store, wall = StateStore(db), SystemClock()
    journal = Journal(log, wall)
    try:
        operator_halt(store, journal, "before the first run", wall.now())
    finally:
        journal.close()
        store.close()
    options = RunOptions(broker="sim", state_db=db, log=log, ticks=3, start=datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc))
    session = open_session(report, options, {}, lambda: options.start)  # type: ignore[arg-type,return-value]
    try:
        summary = run(session, options)
        now = session.clock.now()
    finally:
        close_session(session)
    assert [h["reason"] for h in summary["halts"]] == ["before the first run"] and summary["system_state"] == "halted"
    assert "halts: 1" in format_summary(summary)
    store = StateStore(db)
    try:
        status = status_text(store, now, local=LocalTime())
    finally:
        store.close()
    last_run = status[status.index("last run:") :]
    assert "halts: 1" in last_run and "before the first run" in last_run, status
