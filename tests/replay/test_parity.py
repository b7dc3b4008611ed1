"""A simulated day, recorded tick by tick from the engine's snapshots, replayed with `run_backtest`: the replay makes
the same transitions and sends the same orders as the run that recorded it (issue 9, item 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.brokers.base import DataNeeds, Snapshot
from engine.brokers.factory import build_sim
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.core.journal import Journal, read_events
from engine.core.store import StateStore
from engine.data.recorder import Recorder
from engine.replay.backtest import run_backtest
from engine.replay.fills import FillModel
from engine.trading.engine import Engine
from engine.validate import Report
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load

SESSION_TICKS = 4680  # 09:30 to 16:00 New York, a tick every 5 seconds


class RecordingBroker:
    """The simulated broker, recording every quote of every snapshot the engine reads (as `run --record` would)."""

    def __init__(self, broker: Any, recorder: Recorder):
        self._broker = broker
        self._recorder = recorder

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        snapshot = self._broker.snapshot(needs)
        for symbol, quote in snapshot.quotes.items():
            self._recorder.record(symbol, quote.timestamp, quote.bid, quote.ask)
        return snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def transitions(log: Path) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (e["ts"], e["machine"], e["bot"], e["from"], e["to"], e["trigger"])
        for e in read_events(log)
        if e["event"] == "transition"
    ]


def orders(store: StateStore) -> list[tuple[Any, ...]]:
    return [(o.client_order_id, o.symbol, o.side, o.qty, o.notional, o.order_type, o.limit_price, o.time_in_force, o.purpose,
             o.created_at, o.status, o.filled_qty) for o in store.orders()]  # fmt: skip


def _recording_sim(project: ProjectCopy, tmp_path: Path) -> tuple[Report, ManualClock, SimExchange, Recorder, StateStore, Engine]:
    """The project's engine on the simulator from Monday's open, its quotes recorded to tmp_path/recorded, its state
    and log in tmp_path/sim.db and sim.jsonl."""
    report = load(project)
    assert report.config is not None and report.book is not None
    clock = ManualClock(MONDAY_OPEN)
    broker, exchange = build_sim(report.config.settings, clock)
    recorder = Recorder(tmp_path / "recorded", flush_seconds=3600, fsync=False)
    store = StateStore(tmp_path / "sim.db")
    engine = Engine(report.config, report.book, report.machines, RecordingBroker(broker, recorder), store,
                    Journal(tmp_path / "sim.jsonl", clock), clock)  # fmt: skip
    return report, clock, exchange, recorder, store, engine


def test_a_recorded_simulated_day_replays_to_the_same_transitions_and_orders(project: ProjectCopy, tmp_path: Path) -> None:
    report, clock, exchange, recorder, store, engine = _recording_sim(project, tmp_path)
    assert report.config is not None
    for tick in range(SESSION_TICKS):
        engine.tick()
        if tick == SESSION_TICKS - 1:
            sim_equity = exchange.account().equity  # at the last tick, the instant of the backtest's last row
        clock.advance(report.config.settings.runner.loop_interval_seconds)
    recorder.close()
    engine.journal.close()

    result = run_backtest(report, tmp_path / "recorded", out_dir=tmp_path / "replay", cash=report.config.settings.sim.starting_cash,
                          fill_model=FillModel(timing="submit", slippage_bps=0.0), html=False)  # fmt: skip

    assert result.frames == SESSION_TICKS
    recorded, replayed = transitions(tmp_path / "sim.jsonl"), transitions(tmp_path / "replay" / "app.jsonl")
    assert len(recorded) > 30  # every bot entered and exited (the README's day: 48 transitions, 22 orders)
    assert replayed == recorded
    replay_store = StateStore(tmp_path / "replay" / "state.db")
    assert orders(replay_store) == orders(store) and len(orders(store)) > 10
    sim_trades = [(t.bot_id, t.symbol, t.opened_at, t.closed_at, t.qty, t.exit_trigger) for t in store.trades()]
    assert [(t.bot_id, t.symbol, t.opened_at, t.closed_at, t.qty, t.exit_trigger) for t in replay_store.trades()] == sim_trades
    # Prices: stocks and coins fill at the recorded bid and ask, the very prices the simulator filled at. Options are
    # priced from the underlying's recorded mid, which the quote rounded to 4 decimals, where the simulator used
    # its unrounded path; their cents agree here, so the P&L does too, to the cent.
    assert [round(t.pnl, 2) for t in replay_store.trades()] == [round(t.pnl, 2) for t in store.trades()]
    assert result.summary["total"]["final_equity"] == sim_equity


def test_quotes_that_are_not_prices_are_replayed_as_the_run_read_them(project: ProjectCopy, tmp_path: Path) -> None:
    """The stock feed goes one-sided (Alpaca's bid of 0) for a while. The run read those quotes, traded on none, and
    went on. They were not recorded, so the replay saw each stock's last two-sided quote grow old and halted the
    system on stale data (data_stale_halt), where the run had not. They are recorded apart now (unusable/), and the
    replay reads them as the run did."""
    from engine.brokers.sim.exchange import QuoteMode

    report, clock, exchange, recorder, store, engine = _recording_sim(project, tmp_path)
    assert report.config is not None
    for tick in range(200):
        for symbol in ("AAPL", "QQQ", "SPY"):
            if tick == 10:
                exchange.set_quote_mode(symbol, QuoteMode(no_bid=True))
            if tick == 150:
                exchange.set_quote_mode(symbol, None)
        engine.tick()
        clock.advance(report.config.settings.runner.loop_interval_seconds)
    recorder.close()
    engine.journal.close()
    assert recorder.unusable == 3 * 140 and not recorder.skipped

    run_backtest(report, tmp_path / "recorded", out_dir=tmp_path / "replay", cash=report.config.settings.sim.starting_cash,
                 fill_model=FillModel(timing="submit", slippage_bps=0.0), html=False)  # fmt: skip
    recorded, replayed = transitions(tmp_path / "sim.jsonl"), transitions(tmp_path / "replay" / "app.jsonl")
    assert not [t for t in recorded if t[4] == "halted"] and len(recorded) > 5
    assert replayed == recorded
    assert orders(StateStore(tmp_path / "replay" / "state.db")) == orders(store)


class DroppingBroker:
    """The simulated broker whose quotes of `gone` are left out of the snapshots while `on`, as a data API leaves
    out a symbol it has no quote for (the snapshot names them in `missing_quotes`)."""

    def __init__(self, broker: Any, gone: tuple[str, ...]):
        self._broker, self._gone, self.on = broker, gone, False

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        import dataclasses

        snapshot = self._broker.snapshot(needs)
        if not self.on:
            return snapshot
        return dataclasses.replace(snapshot, quotes={s: q for s, q in snapshot.quotes.items() if s not in self._gone},
                                   missing_quotes=tuple(sorted({*snapshot.missing_quotes, *self._gone})))  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def _recorded_session(report: Report, broker: Any, clock: ManualClock, tmp_path: Path) -> tuple[Any, Recorder]:
    """The project's engine on `broker`, recorded as `run --record` records (the runner's Session, whose
    `record_quotes` is what a run calls after each tick), its state and log in tmp_path/sim.db and sim.jsonl."""
    from engine.trading.runner import Session

    assert report.config is not None and report.book is not None
    recorder = Recorder(tmp_path / "recorded", flush_seconds=3600, fsync=False)
    store = StateStore(tmp_path / "sim.db")
    journal = Journal(tmp_path / "sim.jsonl", clock)
    engine = Engine(report.config, report.book, report.machines, broker, store, journal, clock)
    return Session(engine, clock, True, "sim", "", store, journal, recorder=recorder), recorder


def test_quotes_the_run_did_not_get_are_missing_in_the_replay_too(project: ProjectCopy, tmp_path: Path) -> None:
    """The feed leaves out every stock for ten ticks: the run sees no quote, and halts on stale data at once. The
    recording had nothing for those ticks, so the replay showed each stock's quote from before, still fresh, and
    halted 15 s later, at other instants than the run. `run --record` writes what was missing (missing/), and the
    replay's answer leaves it out at the same ticks (record_quotes is what `run --record` calls after each tick)."""
    from engine.trading.runner import record_quotes

    report = load(project)
    assert report.config is not None
    clock = ManualClock(MONDAY_OPEN)
    sim, _exchange = build_sim(report.config.settings, clock)
    broker = DroppingBroker(sim, ("AAPL", "QQQ", "SPY"))
    session, recorder = _recorded_session(report, broker, clock, tmp_path)
    for tick in range(120):
        broker.on = 50 <= tick < 60
        record_quotes(session, session.engine.tick())
        clock.advance(report.config.settings.runner.loop_interval_seconds)
    recorder.close()
    session.journal.close()
    assert recorder.missing_quotes == 30

    run_backtest(report, tmp_path / "recorded", out_dir=tmp_path / "replay", cash=report.config.settings.sim.starting_cash,
                 fill_model=FillModel(timing="submit", slippage_bps=0.0), html=False)  # fmt: skip
    recorded, replayed = transitions(tmp_path / "sim.jsonl"), transitions(tmp_path / "replay" / "app.jsonl")
    assert ("2026-11-23T14:34:10+00:00", "system", "system", "armed", "halted", "kill") in recorded
    assert replayed == recorded


class SlowReadingBroker:
    """The simulated broker, on a clock two seconds behind the engine's: its snapshot starts two seconds before the
    engine reads the tick's time (the reads took that long). Its stock quotes are stamped 1.5 s into the reads,
    after the snapshot's start and before the tick's time; its coins' clock runs `coins_ahead` seconds ahead of
    the engine's. Its prices and fills are those of the snapshot's start, which the recording holds."""

    def __init__(self, broker: Any):
        self._broker, self.coins_ahead = broker, 1.0

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        import dataclasses
        from datetime import timedelta

        snapshot = self._broker.snapshot(needs)
        start = snapshot.taken_at
        quotes = {s: dataclasses.replace(q, timestamp=start + timedelta(seconds=2 + self.coins_ahead if "/" in s else 1.5))
                  for s, q in snapshot.quotes.items()}  # fmt: skip
        return dataclasses.replace(snapshot, quotes=quotes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_a_recording_ticks_where_its_run_decided_seeing_every_quote_the_run_read(project: ProjectCopy, tmp_path: Path) -> None:
    """A real-time run's snapshot is read over time: a quote read late in it is stamped after the snapshot's start.
    The recording ticked at that start, so its replay ticked before those quotes, without them (a one-tick recording
    had no tick with data at all: 'no recorded tick between ...'). It ticks at the tick's time now, where the run
    decided. A quote stamped ahead of the engine's clock is recorded at the tick that read it (fresh, as the run read
    it); one further ahead than the staleness limit, which the run read as no fresh price, as missing there."""
    from datetime import timedelta

    from engine.trading.runner import record_quotes

    report = load(project)
    assert report.config is not None
    interval = report.config.settings.runner.loop_interval_seconds
    clock, broker_clock = ManualClock(MONDAY_OPEN + timedelta(seconds=2)), ManualClock(MONDAY_OPEN)
    sim, _exchange = build_sim(report.config.settings, broker_clock)
    broker = SlowReadingBroker(sim)
    session, recorder = _recorded_session(report, broker, clock, tmp_path)
    for tick in range(150):
        broker.coins_ahead = 60.0 if 100 <= tick < 110 else 1.0  # the coins' feed a minute ahead for ten ticks
        record_quotes(session, session.engine.tick())
        clock.advance(interval)
        broker_clock.advance(interval)
    recorder.close()
    session.journal.close()
    assert recorder.ticks == 150 and recorder.missing_quotes == 2 * 10 and not recorder.skipped

    result = run_backtest(report, tmp_path / "recorded", out_dir=tmp_path / "replay", fill_model=FillModel(timing="submit",
                          slippage_bps=0.0), cash=report.config.settings.sim.starting_cash, html=False)  # fmt: skip
    assert result.frames == 150
    recorded, replayed = transitions(tmp_path / "sim.jsonl"), transitions(tmp_path / "replay" / "app.jsonl")
    assert any(t[4] == "halted" and t[5] == "kill" for t in recorded)  # the coins' quotes a minute ahead: stale
    assert replayed == recorded and len(recorded) > 5
