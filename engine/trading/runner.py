"""Running the engine: building it from the validated files, looping, stopping cleanly, summing up.

On the sim broker the clock advances by `loop_interval_seconds` per tick with no real sleep, so a whole
trading day runs in seconds; the simulated exchange is saved in the same SQLite file inside each tick's
transaction, so a later run continues the same account (and a halt survives like it would at a real broker).
Against Alpaca the loop ticks in real time.

What a person sees while it runs (a progress bar, a status line, halts and fills as they happen) is
engine/operator/console.py's, fed by `run`'s `on_tick` and the journal's listeners; the summary at the end
covers every trading day the run touched (engine/operator/summary.py).

A run holds the state file's lock (engine/core/lock.py) from before it opens the database until it has closed
it. SIGINT (Ctrl-C) and SIGTERM (systemd, Docker, Kubernetes) both stop the loop after the tick in progress:
a tick is never cut between an order's intent and its POST, and the wait between real-time ticks ends at the
signal instead of running out. From the signal on the broker is asked no new read (`reads_stop_with`): a hung
broker holds the stop for the read in progress, not for every read the tick and the summary had left. One during
the start-up checks ends the start (RunStopped: nothing written). A second signal ends the process at once, as a
kill would.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from engine.brokers.base import Broker, BrokerError
from engine.brokers.symbols import contract_multiplier
from engine.config.model import BotsConfig
from engine.core import failpoints, jsontext
from engine.core.calendar import NEW_YORK, MarketCalendar
from engine.core.clock import Clock, ManualClock, SystemClock
from engine.core.journal import MIN_SECRET_LENGTH, Journal, JournalError, clipped
from engine.core.lock import LockHeld, RunLock, flock_holders, lock_path
from engine.core.money import cents, money, total
from engine.core.stop import stop_signals
from engine.core.store import SYSTEM_SCOPE, Halt, StateFileError, StateStore, aware_time
from engine.operator.local import LocalTime
from engine.operator.summary import (
    halt_record,
    halts_in_force,
    in_force_lines,
    one_line,
    period_lines,
    period_record,
    position_line,
    unmanaged_lines,
)
from engine.paths import PROJECT_ROOT
from engine.strategy.watchdog import watching
from engine.trading.engine import LAST_FACTS_SCOPE, Engine, StartupError, TickReport
from engine.trading.exitbot import end_halts, record_halt
from engine.trading.facts_builder import fresh_window
from engine.trading.live_gate import live_refusal
from engine.trading.startup import (
    ACCOUNT_KEY,
    MODE_KEY,
    ZONE_KEY,
    changed_zone,
    check_broker,
    other_account,
    other_account_id,
    other_mode,
    refused_keys,
)
from engine.trading.universe import data_needs
from engine.trading.unsaved import record_unsaved_halts
from engine.validate import Report

SIM_STATE_KEY = "sim_exchange"
LAST_TICK_KEY = "last_tick_at"  # a real-time run's last tick (ISO time), for `health`; a simulation's is SIM_STATE_KEY's
LAST_RUN_KEY = "last_run"  # the latest run's start (and end, once it ended) as JSON: the span `status` sums up
BACKTEST_BROKER = "backtest"  # meta broker of a backtest's state file: its time is its last tick's (state_now)
HALTS_AT_START = "halts_at_start"  # in LAST_RUN_KEY's record: the ids of the halts in force as the run started
# The values .env.example ships with: a copied .env that still holds them would be sent to Alpaca as keys.
PLACEHOLDER_VALUES = frozenset({"YOUR_KEY", "YOUR_SECRET"})


class RunError(Exception):
    """The run cannot start: say why, exit non-zero, no traceback. `invalid`: the files the user edited disagree
    with the state file (a saved state the machines no longer have, a position whose bot bots.yaml no longer
    runs), bad input to fix (exit 2) rather than a failure now (exit 1)."""

    def __init__(self, message: str, *, invalid: bool = False):
        super().__init__(message)
        self.invalid = invalid


class RunStopped(Exception):
    """A stop signal (`StopSignals`) arrived while the run was starting, before it opened its state file: the start
    ends there, nothing written, with the signal's exit code (128 + its number: 130, 143, 129). It used to go on:
    its checks waited out every read of a hung broker, then it either refused the run (exit 1, the timeout as its
    reason, and systemd started it again) or ticked once before it stopped."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}: stopped while the run was starting; nothing was written")
        self.reason = reason

    @property
    def exit_code(self) -> int:
        return 128 + signal.Signals[self.reason].value


@dataclass
class RunOptions:
    broker: str | None = None
    state_db: Path | None = None
    log: Path | None = None
    ticks: int | None = None
    once: bool = False
    until_close: bool = False
    start: datetime | None = None
    live: bool = False


@dataclass
class Session:
    engine: Engine
    clock: Clock
    simulated: bool
    broker_name: str
    notice: str
    store: StateStore
    journal: Journal
    exchange: Any = None
    close_at: datetime | None = None
    lock: RunLock | None = None
    stop_reason: str | None = field(default=None)  # set to stop the loop after the tick in progress
    recorder: Any = None  # `run --record DIR`: an engine.data.recorder.Recorder, closed by close_session
    recording_error: str | None = None  # why the recording stopped before the run did, if it did
    _recorded: Any = field(default=None, repr=False)  # the last snapshot recorded (a tick that failed reuses it)
    _recorded_halts: set[int] | None = field(default=None, repr=False)  # the halts in force at the last recorded tick
    _broker_error: dict[str, Any] | None = field(default=None, repr=False)  # the tick's first, for the recording
    _state_last_tick: datetime | None = field(default=None, repr=False)  # the state's last tick before this run
    alerts: Any = None  # an engine.operator.alerts.Alerter when settings.yaml's alerts are enabled; closed by close_session
    zone_was: str | None = None  # the zone the state file counted its days in, when this run changed it (run_start)
    halts_at_start: list[int] = field(default_factory=list)  # the halts in force as the run started (`summary.period_record`)

    @property
    def local(self) -> LocalTime:
        return LocalTime(self.engine.config.settings.system.timezone)


def paths_for(report: Report, state_db: Path | None, log: Path | None) -> tuple[Path, Path]:
    assert report.config is not None
    system = report.config.settings.system
    return state_db or report.config.resolve(system.state_db_path), log or report.config.resolve(system.log_path)


def open_session(
    report: Report,
    options: RunOptions,
    env: dict[str, str],
    default_start: datetime | Callable[[], datetime],
    stop: StopSignals | None = None,
) -> Session:
    """Everything a run needs, or RunError (the broker cannot be chosen or set up, another engine holds the state
    file, ...), StateFileError (the state file or its lock file cannot be used; engine/core/store.py) or
    JournalError (the log cannot be opened). A run refused before its state file is opened (the broker, the keys,
    the lock) leaves no state file and no log behind, and one refused because another engine holds the state
    file does not touch that file or its log; whatever was opened is closed again, and the lock released.

    `stop`: the caller's signals, held from before this call. A stop requested before the state file is opened
    ends the start with RunStopped (nothing written); the broker's reads stop with it (`reads_stop_with`), so a
    hung broker holds the start for the read in progress alone."""
    from engine.brokers.factory import choose_broker

    assert report.config is not None and report.book is not None
    try:
        name, notice = choose_broker(options.broker, report.config.settings, env)
    except BrokerError as exc:  # one Alpaca key without the other: neither broker is what the user meant
        raise RunError(exc.message) from None
    if name not in ("sim", "alpaca"):  # the command line and the schema allow only these; a library caller may not
        raise RunError(f"unknown broker {name!r}: 'sim' or 'alpaca'")
    if options.start is not None and options.start.utcoffset() is None:  # compared with aware times below
        raise RunError(f"start {options.start.isoformat()} has no UTC offset: give one (e.g. -05:00)")
    if name == "alpaca" and options.start is not None:
        # the user asked for a simulated clock and would silently get orders on the account now, in real time
        raise RunError(
            f"--start {options.start.isoformat()} sets the simulated exchange's clock; a run on Alpaca trades in real "
            "time: leave --start out, or run with --broker sim",
            invalid=True,
        )
    db_path, log_path = paths_for(report, options.state_db, options.log)
    alpaca_close: datetime | None = None
    mode: str | None = None  # an Alpaca run's 'paper' or 'live' (`other_mode`)
    account_id: str | None = None  # an Alpaca run's account (`other_account_id`)
    if name == "alpaca":
        refuse_placeholder_keys(env)
        broker, clock, exchange = _alpaca(report, options, env)
        mode = "paper" if getattr(getattr(broker, "api", None), "paper", True) else "live"
        notice += " (PAPER)" if mode == "paper" else " (LIVE: real money)"
        if stop is not None:
            reads_stop_with(broker, stop)
        try:
            _check_broker(broker, report)  # before anything is written: a refused run leaves nothing behind
            account_id = _first_read(broker, report)
            if options.until_close:
                alpaca_close = _broker_close(broker)
        except RunError:
            _stopped_at_start(stop)  # a read not asked, or cut short, because a stop came: the stop is the reason
            raise
    _stopped_at_start(stop)
    lock = RunLock(db_path)
    try:
        lock.acquire()
    except LockHeld as exc:
        raise RunError(str(exc)) from None
    store: StateStore | None = None
    journal: Journal | None = None
    alerts: Any = None
    try:
        # a real broker acts on what is committed and sent; a file cut to nothing is refused (`cut_to_nothing`)
        store = StateStore(db_path, synced=name == "alpaca", lock_made_now=not lock.used_before)
        if not lock.guards(store.file_id):  # before the run reads or writes its records: not the file locked
            raise StateFileError(db_path, f"is not the file its lock {lock.path} was taken for: the path was changed (a "
                                 "symlink replaced?) as the run started; start it again", runtime=True)  # fmt: skip
        mismatch = other_account(store.meta("broker"), name)
        if mismatch is not None:  # input to fix (exit 2)
            raise RunError(f"{db_path} {mismatch} --state-db", invalid=True)
        if mode is not None and (mismatch := other_mode(store.meta("broker"), store.meta(MODE_KEY), mode)) is not None:
            raise RunError(f"{db_path} {mismatch} --state-db", invalid=True)
        if account_id is not None and (mismatch := other_account_id(store.meta(ACCOUNT_KEY), account_id)) is not None:
            raise RunError(f"{db_path} {mismatch} --state-db", invalid=True)
        if name == "sim":
            broker, clock, exchange, resumed = _sim(report, options, store, default_start)
            if resumed:
                at = LocalTime(report.config.settings.system.timezone)(clock.now())
                notice += f"; continuing the simulation saved in {db_path} at {at}"
            closed = closed_day(exchange.calendar, clock.now(), LocalTime(report.config.settings.system.timezone))
            if closed is not None:
                notice += f"; {closed}"
        zone, zone_was = report.config.settings.system.timezone, store.meta(ZONE_KEY)
        refused = changed_zone(zone_was, zone, clock.now(), store.days_with_activity, simulated=name == "sim")
        if refused is not None:  # input to fix (exit 2), found before anything is written
            raise RunError(f"{db_path} {refused} (--state-db)", invalid=True)
        if name == "sim":
            _check_broker(broker, report)
        # The keys in use are masked in the log: Alpaca's, which the factory checked; a simulated run's environment
        # may hold keys it never uses, masked too when they could be real ones, and so is the status page's token
        keys = (env.get("ALPACA_KEY", ""), env.get("ALPACA_SECRET", "")) if name == "alpaca" else ()
        journal = Journal(log_path, clock, secrets=tuple(dict.fromkeys((*keys, *maskable_keys(env)))))
        for said in record_unsaved_halts(store, journal, log_path, clock.now()):  # before the engine reads the halts
            notice += f"; {said}"
        try:
            engine = Engine(report.config, report.book, report.machines, broker, store, journal, clock)
        except StartupError as exc:
            raise RunError(str(exc), invalid=True) from None
        store.set_meta("broker", name)
        if mode is not None:
            store.set_meta(MODE_KEY, mode)
        if account_id is not None:
            store.set_meta(ACCOUNT_KEY, account_id)
        store.set_meta(ZONE_KEY, zone)  # the zone its trading dates are counted in from now on
        if zone_was is not None and zone_was != zone:
            notice += f"; trading days are now counted in {zone} (this state file counted them in {one_line(zone_was)})"
        alerts = _start_alerts(report, env, journal, engine)
        if exchange is not None:
            from engine.brokers.sim.persist import SimPersistence

            # saved at the end of each tick (its time), and as soon as a request changed it (`SimAPI._call`)
            engine.on_persist = exchange.on_change = SimPersistence(exchange, store)
            exchange.open_paths((*engine.needs.stocks, *engine.needs.crypto))  # startup work, not the first tick's
        session = Session(engine, clock, name == "sim", name, notice, store, journal, exchange, lock=lock, alerts=alerts)
        session.zone_was = zone_was if zone_was != zone else None
        if options.until_close or (name == "sim" and options.ticks is None and not options.once):
            session.close_at = _session_close(exchange, clock) if exchange is not None else alpaca_close
    except BaseException:
        # every step runs whatever the one before it raised (a log on a full disk must not leave the database
        # open or the lock held: a library caller that tries again would find its own process holding the file);
        # the error raised is the one that refused the run
        steps: list[Callable[[], None]] = [s.close for s in (alerts, journal, store) if s is not None]
        for step in (*steps, lock.release):
            with contextlib.suppress(Exception):
                step()
        raise
    return session


def _stopped_at_start(stop: StopSignals | None) -> None:
    """RunStopped when a stop signal has arrived: the start ends before the state file is opened."""
    if stop is not None and stop.reason is not None:
        raise RunStopped(stop.reason)


def reads_stop_with(broker: Broker, stop: StopSignals) -> None:
    """From the moment `stop` has a reason, the broker asks no new read (engine/brokers/alpaca.py, `stopping`): what
    it has not read is unread, as for any failed read, and not counted as the broker's failure. A read in progress
    ends as it would (its answer, or its timeout), and writes still go (an order whose intent is committed is sent).
    Only the Alpaca adapter has reads that can hang; the simulated exchange answers at once and reads on."""
    api = getattr(broker, "api", None)
    if api is not None and hasattr(api, "stopping"):
        api.stopping = lambda: stop.reason


def maskable_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """The secrets of `env` that could be real ones (`factory.SECRET_VARIABLES`: the Alpaca keys and the status
    page's token; a value shorter than MIN_SECRET_LENGTH is not a key, and masking it would mangle ordinary words):
    what every writer of the log and the state file masks, the engine and the operator's `halt`, `resume` and the
    status page's buttons alike, and every error the command line prints. .env.example's own placeholders are no
    secret: masked, the error that says a key still holds one showed `('***', '***')` instead of the words to replace."""
    from engine.brokers.factory import SECRET_VARIABLES

    keys = (env.get(name, "").strip() for name in SECRET_VARIABLES)
    return tuple(dict.fromkeys(k for k in keys if len(k) >= MIN_SECRET_LENGTH and k not in PLACEHOLDER_VALUES))


def placeholder_keys(env: Mapping[str, str], example: Path = PROJECT_ROOT / ".env.example") -> list[str]:
    """The key variables that still hold .env.example's placeholder values (those it ships with, and whatever
    the project's own .env.example says, should it change)."""
    placeholders = set(PLACEHOLDER_VALUES)
    try:
        if example.is_file():
            from dotenv import dotenv_values

            placeholders |= {v for k, v in dotenv_values(example).items() if k in ("ALPACA_KEY", "ALPACA_SECRET") and v}
    except (OSError, ValueError):  # unreadable, or not UTF-8: the placeholders it ships with are still refused
        pass
    return [name for name in ("ALPACA_KEY", "ALPACA_SECRET") if env.get(name, "").strip().strip('"') in placeholders]


def refuse_placeholder_keys(env: Mapping[str, str], example: Path = PROJECT_ROOT / ".env.example") -> None:
    """A new user's first mistake: .env copied from .env.example and never filled in. Alpaca would answer 401;
    this says what to do instead, before anything is sent or written, as input to fix (exit 2, as for any key that
    cannot be right: exit 1 had systemd start the service again every 30 s). Only the shipped placeholders are quoted:
    a value found in .env.example alone may be a real key (written there, then the file copied to .env), and
    quoting it printed the key on the terminal and in a service's journal."""
    found = placeholder_keys(env, example)
    if found:
        values = [env[n].strip().strip(chr(34)) for n in found]
        shown = ", ".join(repr(v) if v in PLACEHOLDER_VALUES else "the value written there" for v in values)
        raise RunError(
            f"{' and '.join(found)} still hold{'s' if len(found) == 1 else ''} the placeholder of .env.example "
            f"({shown}): put your Alpaca paper account's keys in .env, "
            "or remove both lines (or run with --broker sim) to trade on the built-in simulated exchange",
            invalid=True,  # keys that cannot be right (README, exit 2): no restart of the service gets past them
        )


def _check_broker(broker: Broker, report: Report) -> None:
    assert report.config is not None
    problems = check_broker(broker, report.config.bots)
    if problems:
        raise RunError("the run cannot start:\n  " + "\n  ".join(problems))


def _start_alerts(report: Report, env: dict[str, str], journal: Journal, engine: Engine) -> Any:
    """The alerts' listener on the journal, only when settings.yaml enables them (apprise is imported only then);
    alerts that are on but cannot be sent refuse the run: an operator who asked for them counts on them. An unset
    variable or a URL apprise refuses is input to fix (exit 2), as a bad key is: a restart would refuse it again."""
    assert report.config is not None
    if not report.config.settings.alerts.enabled:
        return None
    from engine.operator.alerts import AlertSetupError, start_alerts

    try:
        return start_alerts(report.config.settings, env, journal, engine)
    except AlertSetupError as exc:
        raise RunError(str(exc), invalid=True) from None


def close_session(session: Session) -> None:
    """Close the recording, the alerts (a few seconds at most to deliver what is queued), the log and the
    database, then let another engine have the state file (in that order). Every path out of `run` (the end, a
    SIGINT or SIGTERM, an error) comes here.

    Each step runs even when one before it failed (a log on a full disk must not leave the database open or
    the lock held); the first failure is raised after the last step."""
    steps: list[Callable[[], None]] = []
    if session.recorder is not None:
        steps.append(lambda: _close_recorder(session))
    if session.alerts is not None:
        alerts, session.alerts = session.alerts, None
        steps.append(alerts.close)
    steps += [session.journal.close, session.store.close]
    if session.lock is not None:
        steps.append(session.lock.release)
    first: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


def _alpaca(report: Report, options: RunOptions, env: dict[str, str]) -> tuple[Broker, Clock, None]:
    from engine.brokers.factory import build_alpaca

    assert report.config is not None and report.book is not None
    clock = SystemClock()
    try:
        broker = build_alpaca(report.config.settings, clock, env, options.live)
    except BrokerError as exc:
        raise RunError(str(exc)) from None
    live = not getattr(getattr(broker, "api", None), "paper", True)
    refusal = live_refusal(report.config.bots, report.book) if live else None
    if refusal is not None:
        # a setting to fix, not a failure of the moment: exit 2, which the service does not restart on (a restart
        # every 30 s would refuse it again for ever). The kill switch off, one of its conditions off, or a shipped
        # preflight check gone (engine/trading/live_gate.py)
        raise RunError(refusal, invalid=True)
    return broker, clock, None


MAX_SIM_JUMP = timedelta(days=366)  # how far past its saved time a simulation may be continued by --start


def closed_day(calendar: MarketCalendar, at: datetime, local: LocalTime) -> str | None:
    """What a simulated run starting at `at` is told when the exchange does not open that day (a weekend, a
    holiday): the day and when the next session opens. Unsaid, a `--start` on Thanksgiving ticked through the
    closed stretch without a word, as if the bots had found nothing to do."""
    day = at.astimezone(NEW_YORK).date()
    if calendar.is_trading_day(day):
        return None
    opens = local(calendar.next_open(at))
    return f"the market is closed on {day:%a %Y-%m-%d} (a weekend or holiday): the next session opens {opens}"


def _sim(
    report: Report, options: RunOptions, store: StateStore, default_start: datetime | Callable[[], datetime]
) -> tuple[Broker, Clock, Any, bool]:
    """A new simulated exchange, or the one saved in the state file (a later run continues the same account)."""
    from engine.brokers.factory import build_sim
    from engine.brokers.sim.api import SimAPI
    from engine.brokers.sim.exchange import SimExchange
    from engine.brokers.sim.persist import BOOK_KEY, SimStateError, load_state
    from engine.brokers.snapshot import SnapshotBroker

    assert report.config is not None
    settings = report.config.settings
    try:
        state = load_state(store)
    except SimStateError as exc:
        # a damaged state file: input to fix, exit 2 (README), never retried by the service as a failure of the moment
        raise RunError(f"{store.path}: the saved simulation cannot be read: {exc}", invalid=True) from None
    if state is None:
        # the default start is asked for only here: a live run, or a sim resuming its saved day, never needs it
        start = options.start
        if start is None:
            try:
                start = default_start() if callable(default_start) else default_start
            except Exception as exc:  # the exchange calendar could not say: the user is told to give the start
                raise RunError(f"cannot find the next market open ({type(exc).__name__}: {exc}); give --start") from None
        clock = ManualClock(start)
        broker, exchange = build_sim(settings, clock)
        return broker, clock, exchange, False
    # the saved time is the last tick's; the simulation goes on one interval later
    resume_at = datetime.fromisoformat(state["now"]) + timedelta(seconds=settings.runner.loop_interval_seconds)
    if options.start and options.start < resume_at:
        # bad usage (exit 2): the same --start is refused again however often it is tried
        raise RunError(f"--start {options.start.isoformat()} is before the simulation's time {state['now']}", invalid=True)
    if options.start and options.start - resume_at > MAX_SIM_JUMP:
        # the saved prices are drawn step after step (5 s) up to the new time before the first tick: 12 years on
        # took minutes and gigabytes (a coin's path is 50 MB a year), and `--start 2199-...` ran out of memory
        raise RunError(
            f"--start {options.start.isoformat()} is more than {MAX_SIM_JUMP.days} days after the simulation's time "
            f"{state['now']}: its prices would be drawn step by step over the gap; give a new --state-db to start a "
            "simulation then",
            invalid=True,
        )
    clock = ManualClock(options.start or resume_at)
    try:
        exchange = SimExchange.from_state(state, clock)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # JSON that parses but holds a value of the wrong kind (a hand edit, a damaged write): not a traceback from
        # deep in the rebuild, and never a run on part of it
        raise RunError(
            f"{store.path}: the saved simulation cannot be read: {BOOK_KEY}: {type(exc).__name__}: {exc}", invalid=True
        ) from None
    return SnapshotBroker(SimAPI(exchange), clock, settings.broker), clock, exchange, True


# What a data read refused as `forbidden` at the start means, by the read: the keys' plan lacks the feed asked for.
_FEED_ADVICE = {
    "stock_quotes": "set broker.stock_feed: iex in settings.yaml (the feed every plan has), or subscribe to SIP",
    "option_chain": "set options.feed: indicative in settings.yaml (the feed every plan has), or subscribe to OPRA",
}


def _first_read(broker: Broker, report: Report) -> str:
    """One read of all the run will read each tick (account, positions, orders, the bots' quotes and chains), before
    the state file is opened. The asset check asked the trading API alone; what only this read can find refuses the
    run instead of halting its day:
    - keys refused by the account or the data API (401, or 403 as Alpaca refuses bad keys): exit 1, as when the
      trading API refuses them, not a halt for the cooloff (390 minutes) that outlived the fixed keys;
    - a data read the keys' plan does not permit (SIP, OPRA: Alpaca's "subscription does not permit", which the
      snapshot keeps apart as denied): exit 2, a setting to fix; the ticks would only ever block its bots;
    - an account that cannot be read now (a 5xx, a timeout), or whose answer names no id: exit 1, which account
      the state file is about to take being unknown (started on the file's word, every order, exits included, went
      to an account nobody identified, sized on its holdings; a restart tries again).
    Other failures of the moment (a 403 on positions, a 5xx on quotes) are the ticks' to count, as before.
    Returns the account the keys reach (its `id`: a state file holds one account's state)."""
    assert report.config is not None
    snapshot = broker.snapshot(data_needs(report.config.bots, report.config.settings))
    refused = next((e for e in snapshot.errors if e.reason == "unauthorized"), None)
    if refused is not None:  # keys the asset check passed, refused for the account or the data
        raise RunError(f"the run cannot start: {refused_keys(refused)}")
    denied = next(iter({**snapshot.quotes_denied, **snapshot.chains_denied}.values()), None)
    if denied is not None:
        advice = _FEED_ADVICE.get(denied.operation, "check the data subscription of these keys")
        raise RunError(f"the run cannot start: the broker refuses {denied.operation} for these keys "
                       f"({one_line(denied.message)}): {advice}", invalid=True)  # fmt: skip
    if snapshot.account is None:
        said = "; ".join(str(e) for e in snapshot.errors if e.operation == "account") or "no answer"
        raise RunError(f"the run cannot start: the account cannot be read, to check which account the state file holds ({said})")
    if snapshot.account.account_id is None:
        raise RunError("the run cannot start: the broker's account answer names no account id (Alpaca's `id`), so "
                       "which account the state file holds cannot be checked")  # fmt: skip
    return snapshot.account.account_id


def _broker_close(broker: Broker) -> datetime:
    """`--until-close` on Alpaca: the broker's clock's next close (the session in progress, or the next one when the
    market is closed), as `_session_close` answers on the simulated exchange. A clock that cannot be read refuses
    the run: asked to stop at the close, it would otherwise run on through the night."""
    read = getattr(broker, "market_clock", None)
    if read is None:
        raise RunError(f"--until-close: the {broker.name} broker does not say when the market closes")
    try:
        return read().next_close
    except BrokerError as exc:
        raise RunError(f"--until-close: cannot read the market clock from the broker: {exc}") from None


def _session_close(exchange: Any, clock: Clock) -> datetime:
    """The close of the session in progress, or of the next one when the market is closed."""
    return exchange.market_clock().next_close


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP (`stop.stop_signals`: a closed terminal or ssh session, which by default ended
    the engine mid-tick) as requests to stop at the next safe point; a second one ends the process at once.

    The handler only records the request: Python runs it between two bytecodes of the main thread, which may be
    in the middle of a tick, and a tick must run to its end (an intent committed is also sent and recorded).
    The loop looks at `reason` between ticks. The wait between real-time ticks watches the wakeup pipe that
    `signal.set_wakeup_fd` writes to when a signal arrives, so it ends at the signal, not when the interval
    runs out. An operator who sends a second signal wants the process gone even mid-tick: `os._exit` with
    128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a kill would; what the tick had committed
    stays committed, and the next run reconciles with the broker before it sends anything.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.ticking = False  # the loop has started (`_loop`): what a first signal stops is its tick, not the start
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._pipe: tuple[int, int] | None = None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals; a run driven from another thread is stopped by its caller
        reader, writer = os.pipe()
        os.set_blocking(reader, False)
        os.set_blocking(writer, False)
        self._pipe = (reader, writer)
        for signum in (signal.SIGINT, *stop_signals()):  # SIGHUP too, unless started under nohup
            self._previous[signum] = signal.signal(signum, self._handle)
        self._previous_wakeup = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        for fd in self._pipe:
            os.close(fd)
        self._pipe = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        """Nothing here may raise: an exception from a handler surfaces in the main thread wherever it stands,
        mid-tick included, between an order's intent and its POST. Hence os.write, never print (the main thread
        may be inside a write to sys.stderr), and a write that fails (stderr closed, a pipe nobody reads) is let go."""
        name = signal.Signals(signum).name
        if self.reason is not None:
            _say(f"{name} again: exiting at once with {128 + signum}\n")
            _show_cursor()  # a live view at a terminal hid it; os._exit skips whatever would have shown it again
            os._exit(128 + signum)
        self.reason = name
        what = "after the tick in progress" if self.ticking else "before the first tick"
        _say(f"{name}: stopping {what}; a second signal stops at once\n")

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`; return as soon as a stop is requested."""
        deadline = time.monotonic() + seconds
        while self.reason is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._pipe is None:
                time.sleep(min(left, 0.1))
                continue
            # woken by any signal with a Python handler; only a stop ends the wait
            select.select([self._pipe[0]], [], [], left)
            self._drain()

    def _drain(self) -> None:
        assert self._pipe is not None
        try:
            while os.read(self._pipe[0], 512):
                pass
        except BlockingIOError:
            pass


def _say(text: str) -> None:
    """One line on stderr from a signal handler or a failure path: os.write, and never an exception."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode(errors="backslashreplace"))  # a path may hold bytes that are no UTF-8


def _show_cursor() -> None:
    """Show the terminal's cursor again (the live view hides it while it draws), when stdout is a terminal."""
    with contextlib.suppress(OSError):
        if os.isatty(1) and os.environ.get("TERM", "") != "dumb":
            os.write(1, b"\x1b[?25h\n")


def run(
    session: Session,
    options: RunOptions,
    stop: StopSignals | None = None,
    on_tick: Callable[[TickReport], None] | None = None,
) -> dict[str, Any]:
    """The loop, then `run_end` with why it ended: "completed" (the tick limit or the close), "SIGINT", "SIGTERM",
    or "error: ..." when something escaped the tick boundary (then the error goes on up).

    `stop` is the caller's when its signals must be handled beyond the loop (the CLI holds them from before the
    session opens until the database is closed); without one the loop handles them itself. `on_tick` is told
    of each tick after it ended (the terminal's live view); it runs outside the tick, so it cannot halt it."""
    if stop is None:
        with StopSignals() as own:
            return run(session, options, own, on_tick)
    reads_stop_with(session.engine.broker, stop)  # the tick in progress and the summary read no more once stopping
    # every signal call of the loop on a time budget: a hung one halts its bot, not every exit (strategy/watchdog.py)
    with watching(session.engine.config.settings.health.max_signal_seconds):
        return _loop(session, options, stop, on_tick)


def _loop(
    session: Session, options: RunOptions, stop: StopSignals, on_tick: Callable[[TickReport], None] | None
) -> dict[str, Any]:
    engine, clock = session.engine, session.clock
    interval = engine.config.settings.runner.loop_interval_seconds
    limit = 1 if options.once else options.ticks
    started = time.perf_counter()
    started_at = clock.now()
    realized_before = session.store.realized_pnl(engine.trading_date(started_at))  # the day's, before this run
    # counted in the run's halts whatever their stamps: one written before a simulation's first run has the wall clock's
    session.halts_at_start = [h.id for h in halts_in_force(session.store, started_at)]
    begun = {"started_at": _utc(started_at), "broker": session.broker_name, HALTS_AT_START: session.halts_at_start}
    session.store.set_meta(LAST_RUN_KEY, json.dumps(begun))
    changed = {"timezone_was": session.zone_was} if session.zone_was is not None else {}
    zone = engine.config.settings.system.timezone
    engine.journal.log(
        "run_start", broker=session.broker_name, simulated=session.simulated, notice=session.notice, timezone=zone, **changed
    )
    durations: list[float] = []
    stop.ticking = True
    if session.recorder is not None:  # the broker errors the run meets, in the recording's notes
        engine.journal.subscribe(functools.partial(_note_broker_error, session))
        with contextlib.suppress(Exception):  # what it cannot read, it does not note
            previous = last_tick(session.store, datetime.now(timezone.utc))
            session._state_last_tick = previous.last if previous is not None else None
    try:
        while True:
            session.stop_reason = session.stop_reason or stop.reason
            if session.stop_reason is not None:
                break
            if limit is not None and engine.ticks >= limit:
                break
            if session.close_at is not None and clock.now() >= session.close_at:
                break
            session.store.check_at_path()  # deleted or replaced since the last tick: nothing more is decided on it
            if session.lock is not None:  # its lock file deleted during the wait, a second run may have locked it
                session.lock.keep()
            tick_started = time.perf_counter()
            report = engine.tick()
            durations.append(report.duration_ms)
            if session.recorder is not None:
                record_quotes(session, report)
            if on_tick is not None:
                on_tick(report)
            if session.lock is not None:  # locked again at once: a second run starting during the wait is refused
                session.lock.keep()
            if session.simulated:
                assert isinstance(clock, ManualClock)
                clock.advance(interval)
            else:
                # a simulation's last tick is the time saved in its own transaction; a real-time run writes it here
                try:
                    session.store.set_meta(LAST_TICK_KEY, report.at.isoformat())
                except StateFileError as exc:  # outside the tick's boundary: its halt, or what the next start records
                    engine.halt_for_state_file(exc)
                    raise
                stop.wait(interval - (time.perf_counter() - tick_started))
    except BaseException as exc:
        if isinstance(exc, JournalError):  # trading stops with the log: halted in the state file (Engine.halt_for_log)
            engine.halt_for_log(exc)
        # masked here, not only in the log: the reason goes into the state file too (`_record_run_end`)
        reason = engine.journal.scrubbed(f"error: {type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):  # the log may be what failed: the error raised is the first one
            engine.journal.log("run_end", reason=reason, ticks=engine.ticks)
            engine.journal.flush()
        _record_run_end(session, started_at, reason)
        raise
    reason = session.stop_reason or "completed"
    summary = {"reason": reason, **summarize(session, time.perf_counter() - started, durations, started_at, realized_before)}
    engine.journal.log("run_end", **summary)
    try:
        engine.journal.flush()
    except JournalError as exc:  # the last ticks' events lost with it: halted as at any tick (Engine.halt_for_log)
        engine.halt_for_log(exc)
        _record_run_end(session, started_at, engine.journal.scrubbed(f"error: {type(exc).__name__}: {exc}"))
        raise
    _record_run_end(session, started_at, reason)
    return summary


def record_quotes(session: Session, report: TickReport | None = None) -> None:
    """`run --record`: every quote of the snapshot the tick just decided on, as the engine read it.

    The Engine keeps no reference of its own to its last snapshot; `engine._view` (the last TickView, read from
    that snapshot within the tick) is the one place it stays, so the recording reads it there. A tick that
    failed before reading its view leaves the previous one, which is not recorded twice. Recording is beside
    the trading, never in its way: a recording that fails (a full disk, a folder holding other data) is
    logged, said once on stderr, and stopped, and the run goes on."""
    view = session.engine._view
    snapshot = view.snapshot if view is not None else None
    error, session._broker_error = session._broker_error, None
    if snapshot is None or snapshot is session._recorded:
        if error is not None and report is not None and session.recorder is not None:  # a tick that read nothing
            with contextlib.suppress(Exception):
                session.recorder.note("broker_error", report.at, **error)
        return
    first = session._recorded is None
    session._recorded = snapshot
    recorder = session.recorder
    # The replay ticks at the instant the run decided at, the tick's time, read once every read of the snapshot was
    # in: not the snapshot's start, which a quote read later in the same snapshot is stamped after (the replay then
    # ticked before it, without it, or found no tick at all in a one-tick recording).
    at = view.now if view is not None else snapshot.taken_at
    _cutoff, ahead = fresh_window(at, session.engine.config.settings.health.max_price_staleness_seconds)
    try:
        recorded_last = recorder.last_tick() if first else None  # before this run's first tick
        for symbol, quote in snapshot.quotes.items():
            if quote.timestamp <= at:
                recorder.record(symbol, quote.timestamp, quote.bid, quote.ask)
            elif quote.timestamp <= ahead:  # a broker's clock ahead of ours: the run read it, fresh, at this tick
                recorder.record(symbol, at, quote.bid, quote.ask)
            else:  # further ahead than the staleness limit: the run read it as no fresh price, and so does its replay
                recorder.missing(symbol, at)
        for symbol in snapshot.missing_quotes:  # asked for, not answered: the replay leaves them out at this tick too
            recorder.missing(symbol, at)
        recorder.tick(at)  # the replay ticks here, seeing these quotes (not at each quote's time)
        if error is not None:  # at the tick's recorded instant, where its replay ticks
            recorder.note("broker_error", at, **error)
        _note_context(session, snapshot, first, recorded_last, at)
    except Exception as exc:  # any failure of the recording ends the recording, not the run
        session.recorder = None  # what was flushed stays readable (engine/data/recorder.py)
        _recording_failed(session, recorder.folder, exc)


def _note_context(session: Session, snapshot: Any, first: bool, recorded_last: datetime | None, at: datetime) -> None:
    """What the recorded run met that its replay cannot have, in the recording's notes (engine/data/recorder.py):
    at its first recorded tick what it held (positions, cash, halts in force: a replay starts flat, unhalted), then
    each halt that comes into force (an operator's `halt`, one for broker errors: a replay only has those its data
    makes). A backtest of the folder compares them with its own. The first note also has the state's last tick
    before this run and the folder's last recorded tick: a state that ticked on after the recording's last tick (a
    kill lost the ticks buffered since the last flush) ran ticks no replay has."""
    recorder = session.recorder
    halts = halts_in_force(session.store, at)
    if first:
        account = snapshot.account
        recorder.note("run", at, broker=session.broker_name,
                      cash=account.cash if account is not None else None,
                      equity=account.equity if account is not None else None,
                      positions={p.symbol: p.qty for p in snapshot.positions} if snapshot.positions is not None else None,
                      halts=[{"scope": h.scope, "reason": h.reason} for h in halts],
                      state_last_tick=session._state_last_tick, recorded_last_tick=recorded_last)  # fmt: skip
    elif session._recorded_halts is not None:
        for h in halts:
            if h.id not in session._recorded_halts:
                recorder.note("halt", at, scope=h.scope, reason=h.reason, conditions=list(h.conditions))
    session._recorded_halts = {h.id for h in halts}


def _note_broker_error(session: Session, record: dict[str, Any]) -> None:
    """A journal listener: the first broker call that failed in a tick, which `record_quotes` notes in the recording
    after the tick (one a tick: an outage fails every call of every tick)."""
    if record.get("event") == "broker_error" and session._broker_error is None:
        session._broker_error = {"operation": record.get("operation"), "message": record.get("message")}


def _close_recorder(session: Session) -> None:
    recorder, session.recorder = session.recorder, None
    try:
        recorder.close()
    except Exception as exc:  # the state file and the lock must still be closed
        _recording_failed(session, recorder.folder, exc)
        return
    with contextlib.suppress(Exception):
        session.journal.log("recording_closed", folder=str(recorder.folder), quotes=recorder.recorded,
                            unusable=recorder.unusable, ticks=recorder.ticks, skipped=dict(recorder.skipped))  # fmt: skip


def _recording_failed(session: Session, folder: Path, exc: Exception) -> None:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    session.recording_error = f"{type(exc).__name__}: {text}"
    with contextlib.suppress(Exception):
        session.journal.log("recording_failed", folder=str(folder), error=f"{type(exc).__name__}: {text}")
    # os.write, as the signal handler does: this may run on the SIGTERM path, with stderr mid-write
    _say(f"recording to {folder} stopped: {type(exc).__name__}: {text}\n")


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


def _record_run_end(session: Session, started_at: datetime, reason: str) -> None:
    record = {
        "started_at": _utc(started_at),
        "ended_at": _utc(session.clock.now()),
        "reason": reason,
        "broker": session.broker_name,
        HALTS_AT_START: session.halts_at_start,
    }
    with contextlib.suppress(Exception):  # the database may be what failed; the run's end is in the JSONL already
        session.store.set_meta(LAST_RUN_KEY, json.dumps(record))


def summarize(
    session: Session,
    seconds: float,
    durations: list[float],
    started_at: datetime | None = None,
    realized_before: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The run's figures and, over every trading day from `started_at` to now, P&L per bot per day and the
    halts (engine/operator/summary.py). Instants are UTC text, like the rest of the JSONL.

    `realized_before` is what each bot had realized on the first day before the run started: the days are whole
    days, but "P&L by bot over the run" is the run's. Without it, a run continuing a day (the next `run` after
    `--ticks`, a restart) showed the earlier run's trades as its own, beside the run's own counts of orders."""
    engine, store = session.engine, session.store
    now = session.clock.now()
    bots = [b.bot_id for b in engine.bots]
    period = period_record(store, started_at or now, now, now, session.local, bots, session.halts_at_start)
    # each bot's days as recorded, unrounded (the first less what was realized before the run: a difference of
    # cents made cents of 0), totalled as every view totals P&L (`money.total`: each day rounded once, then added)
    realized: dict[str, list[float]] = {}
    for first, day in enumerate(period["days"]):
        for bot_id, pnl in store.realized_pnl(date.fromisoformat(day)).items():
            before = (realized_before or {}).get(bot_id, 0.0) if first == 0 else 0.0
            realized.setdefault(bot_id, []).append(pnl - before)
    snapshot = engine.broker.snapshot(engine.needs)
    prices = {p.symbol: p.current_price for p in snapshot.positions or ()}
    by_bot: dict[str, dict[str, float | None]] = {}
    for bot in engine.bots:
        # A holding the broker gave no price for (its positions unreadable now, or not holding the symbol) has no
        # unrealized P&L anyone knows: None, said as unknown. Priced at its entry, it read +0.00.
        unrealized: float | None = 0.0
        for p in store.positions(bot.bot_id):
            price = prices.get(p.symbol)
            if price is None or unrealized is None:
                unrealized = None
                continue
            unrealized += (price - p.avg_entry_price) * p.qty * contract_multiplier(p.symbol)
        by_bot[bot.bot_id] = {
            "realized": total(realized.get(bot.bot_id, ())),
            "unrealized": cents(unrealized) if unrealized is not None else None,
        }
    ordered = sorted(durations)
    return {
        "ticks": engine.ticks,
        "started_at": _utc(started_at or now),
        "simulated_until": _utc(now),
        "wall_seconds": round(seconds, 2),
        "tick_ms_median": round(ordered[len(ordered) // 2], 3) if ordered else None,
        "transitions": engine.transitions,
        "orders": engine.orders.sent,
        "fills": engine.orders.fills,
        "pnl_by_bot": by_bot,
        "days": period["days"],
        "halts": period["halts"],
        "in_force": period["in_force"],
        "system_state": engine.system.state,
        "equity": snapshot.account.equity if snapshot.account else None,
    }


def _known(value: float | None, *, sign: bool = True) -> str:
    """A figure the broker's last answer could not give (its positions or account unreadable) is said unknown,
    never shown as 0 or `None`."""
    return money(value, sign=sign) if value is not None else "unknown (the broker's answer could not be read)"


def format_summary(summary: dict[str, Any], local: LocalTime | None = None) -> str:
    """The summary for a person: the run's figures, P&L by bot over the run, then by day, the halts that
    touched the run, and a last line for any halt still in force. Times in `local` (system.timezone)."""
    local = local or LocalTime()
    until = local(datetime.fromisoformat(summary["simulated_until"]))
    # a run stopped before its first tick (a SIGTERM during start-up) has no median: said "(median tick None ms)"
    median = f" (median tick {summary['tick_ms_median']} ms)" if summary["tick_ms_median"] is not None else ""
    lines = [
        f"{summary['ticks']} ticks to {until} in {summary['wall_seconds']} s{median}",
        f"{summary['transitions']} transitions, {summary['orders']} orders, {summary['fills']} fills; "
        f"system {summary['system_state']}; equity {_known(summary['equity'], sign=False)}",
        "P&L by bot over the run (realized / unrealized now, USD):",
        *[f"  {one_line(bot)}: {money(v['realized'])} / {_known(v['unrealized'])}" for bot, v in summary["pnl_by_bot"].items()],
        *period_lines(summary, local),
    ]
    return "\n".join(lines)


def halt_notice(store: StateStore, now: datetime, local: LocalTime) -> list[str]:
    """What a run starting now must say at once: every halt in force, whose, why and until when."""
    return in_force_lines([halt_record(h, now) for h in halts_in_force(store, now)], local)


# --- operator commands ---------------------------------------------------------------------------------------


def state_now(store: StateStore, wall_now: datetime) -> tuple[datetime, bool]:
    """The state's own time, and whether it is simulated: a simulation's clock is the time saved with its
    exchange (its halts and ticks run on it); a backtest's (meta broker `backtest`) is its last tick's, the last
    one it committed (its halts, counters and days are the data's, not today's); anything else runs on the wall
    clock."""
    broker = store.meta("broker")
    if broker == BACKTEST_BROKER:
        return _backtest_now(store), True
    saved = store.meta(SIM_STATE_KEY) if broker == "sim" else None
    if saved is None:
        return wall_now, False
    try:
        return aware_time(jsontext.loads(saved)["now"]), True
    except (ValueError, TypeError, KeyError) as exc:  # without its time no halt of the simulation can be judged
        raise _meta_error(store, SIM_STATE_KEY, exc) from None


def _backtest_now(store: StateStore) -> datetime:
    """A backtest's last tick: written when it ended (LAST_TICK_KEY); one stopped before that committed its ticks
    with their facts, whose time is the last committed tick's; before any tick, its start (LAST_RUN_KEY)."""
    text = store.meta(LAST_TICK_KEY)
    if text is not None:
        try:
            return aware_time(text)
        except (ValueError, TypeError) as exc:
            raise _meta_error(store, LAST_TICK_KEY, exc) from None
    facts = store.last_facts(LAST_FACTS_SCOPE)
    if facts is not None:
        return facts[0]
    run = last_run(store)
    if run is None:
        raise _meta_error(store, LAST_RUN_KEY, KeyError("a backtest's state records no start"))
    return aware_time(run["started_at"])


def _meta_error(store: StateStore, key: str, exc: BaseException) -> StateFileError:
    """A `meta` value the engine did not write as it reads (a hand edit, a damaged file): said, never guessed."""
    return StateFileError(store.path, f"meta '{key}' cannot be read ({type(exc).__name__}: {exc})", runtime=False)


@dataclass(frozen=True)
class TickAge:
    last: datetime  # the last tick, on the run's own clock
    now: datetime  # the state's own time (see state_now)
    simulated: bool

    @property
    def seconds(self) -> float:
        return max(0.0, (self.now - self.last).total_seconds())


def last_tick(store: StateStore, wall_now: datetime) -> TickAge | None:
    """When the last tick ran, or None before the first. A real-time run writes LAST_TICK_KEY after each tick;
    a simulation's last tick is the time saved in that tick's transaction, which is also the simulation's now,
    so a simulation's tick age is always 0: it tells that a tick was recorded, not that a loop is alive."""
    now, simulated = state_now(store, wall_now)
    text = store.meta(LAST_TICK_KEY)
    if text is not None:
        try:
            return TickAge(aware_time(text), now, simulated)
        except (ValueError, TypeError) as exc:
            raise _meta_error(store, LAST_TICK_KEY, exc) from None
    return TickAge(now, now, simulated) if simulated else None


def max_tick_age(loop_interval_seconds: float) -> float:
    """`health`'s default max age: three loop intervals and 30 s. A real-time state last ticked longer ago than
    this is STALE wherever an operator reads it (`status`, `why`, the status page): its engine is stuck or not
    running, and what the state says is the past, not the present."""
    return 3 * loop_interval_seconds + 30


def is_stale(age: TickAge | None, max_age: float) -> bool:
    """Whether a state's last tick (`last_tick`) is older than `max_age`. A simulation's age is always 0 (its
    state is as of its own clock), and a state no run has ticked is not stale: it holds what the operator wrote."""
    return age is not None and not age.simulated and age.seconds > max_age


def operator_halt(store: StateStore, journal: Journal, reason: str, now: datetime) -> int:
    """The operator's halt, committed and on the disk before it returns. A state file that refuses the write (locked
    past the wait, read-only, a full disk) says that the halt is NOT recorded: "error: ... locked" alone left the
    operator to guess whether the emergency halt had gone in."""
    try:
        halt_id = record_halt(store, journal, scope=SYSTEM_SCOPE, reason=reason, conditions=("operator",), now=now,
                              by="operator")  # fmt: skip
    except StateFileError as exc:  # raised by the write, before its commit: nothing of it is in the file
        raise StateFileError(store.path, f"{exc.what}; the halt is NOT recorded", runtime=exc.runtime) from None
    store.sync_to_disk()  # on the disk before the operator is told it is recorded
    journal.flush()
    return halt_id


def never_run(store: StateStore) -> bool:
    """Whether no run has used the state file: no broker recorded and no machine saved (what `status` calls "no state
    yet"). False when that cannot be read: the halt's answer then adds nothing."""
    try:
        return store.meta("broker") is None and not store.machine_states()
    except (StateFileError, sqlite3.Error, ValueError):
        return False


def new_state_file(path: Path) -> str:
    """What `halt` (the command line's and the page's) adds when its halt went to a state file no run has used: the
    halt is in force for the first run on that file only. A path typed wrong got "halted ... recorded" alone, while
    the engine, running on its own file, traded on."""
    return (f"{path} is a state file no run has used yet: an engine running on another state file does not see this "
            f"halt; the first run on {path} starts halted (check --state-db, or settings.yaml's state_db_path)")  # fmt: skip


def operator_resume(store: StateStore, journal: Journal, now: datetime) -> int:
    """`resume_halts`, for a caller that needs only the count of halts in force it ended."""
    return resume_halts(store, journal, now).ended


@dataclass(frozen=True)
class Resumed:
    """What a resume ended, read in its own write transaction: `ended`, the halts in force it ended; `conditions`,
    those of them the engine set (`engine_conditions`)."""

    ended: int
    conditions: tuple[str, ...]

    @property
    def text(self) -> str:
        return resume_text(self.ended, self.conditions)


def resume_halts(store: StateStore, journal: Journal, now: datetime) -> Resumed:
    """End every halt, committed only once the `resume` event is on disk: a log that cannot take it (a full disk)
    leaves every halt in force, never trading resumed with no trace of who resumed it (the command says error).

    Counts only the halts ended that were in force: one whose cooloff ran out is still open until the engine's next
    tick ends it, and counted, it made "resumed: 1 halt(s) ended" of a resume that resumed nothing. The count and
    the engine's conditions are read inside the write transaction that ends the halts: read before it, a kill
    switch's halt the engine committed in between was ended too, with no word that the engine had set it."""
    try:
        with store.transaction():
            in_force = sum(h.in_force(now) for h in store.halts(open_only=True))
            conditions = tuple(engine_conditions(store, now))
            end_halts(store, journal, now=now, by="operator")
            try:
                journal.flush()
            except OSError:
                journal.discard()  # the resume is not made: its event must not reach the log later (at close)
                raise
            failpoints.reach("resume_logged")  # the `resume` event on disk, the halts' end not yet committed
    except StateFileError as exc:  # rolled back (locked past the wait, read-only, a full disk): said, not guessed
        journal.discard()
        raise StateFileError(store.path, f"{exc.what}; nothing is resumed: every halt stays in force",
                             runtime=exc.runtime) from None  # fmt: skip
    return Resumed(in_force, conditions)


def engine_conditions(store: StateStore, now: datetime) -> list[str]:
    """The conditions of the halts in force that the engine set (a kill condition, reconciliation, a signal's
    error), not the operator: a resume ends them, but one that still holds halts again at the next tick. Read
    inside `resume_halts`' transaction, not before it (see there)."""
    found: list[str] = []
    for halt in store.halts(open_only=True):
        if halt.in_force(now):
            found += [c for c in halt.conditions if c != "operator" and c not in found]
    return found


def resume_text(ended: int, conditions: Sequence[str] = ()) -> str:
    """What `resume` (the command and the page's button) says: 'resumed' only when a halt in force was ended, and,
    when the engine set one of them (`engine_conditions`), that a condition still holding halts again: "resumed"
    alone read as trading resumed, and the next tick halted again."""
    if not ended:
        return "nothing to resume: no halt was in force"
    text = f"resumed: {ended} halt(s) ended; the system re-arms only through preflight"
    if conditions:
        text += (f"; the engine set {', '.join(conditions)}: while a condition still holds, the next tick halts "
                 f"again")  # fmt: skip
    return text


def running_pid(state_db: Path) -> int | None:
    """The pid of the engine running on this state file, read from its lock file (written while the lock is
    held, emptied on release) and alive. Only for display: the lock itself is never taken here, since `status`
    must not stand in the way of a run starting. Where the kernel's table of locks can be read, a lock nobody
    holds is no engine, whatever the file says: a run killed with SIGKILL leaves its pid there, and once the
    system gave that pid to another process, `status` said "running (pid N)" and `health` found a dead
    simulation's engine alive."""
    try:
        pid = int(lock_path(state_db).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    holders = flock_holders(lock_path(state_db))
    if holders is not None:
        return pid if holders else None  # held: the pid the holder wrote (its own, in its pid namespace)
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return pid
    except (OSError, OverflowError):  # no such process, or a number no pid can be (a file edited by hand)
        return None
    return pid


def last_run(store: StateStore) -> dict[str, Any] | None:
    """The latest run's record, its times checked: `status` reads them as aware times."""
    text = store.meta(LAST_RUN_KEY)
    if not text:
        return None
    try:
        record = jsontext.loads(text)
        if not isinstance(record, dict):
            raise TypeError(f"not a JSON object: {clipped(text, 40)!r}")  # a cut word that could be a key: masked
        aware_time(record["started_at"])
        if record.get("ended_at"):
            aware_time(record["ended_at"])
        ids = record.get(HALTS_AT_START, [])  # absent from a record an earlier version wrote: none named
        if not isinstance(ids, list) or not all(type(i) is int for i in ids):
            raise TypeError(f"{HALTS_AT_START} is not a list of halt ids")
    except (ValueError, TypeError, KeyError) as exc:
        raise _meta_error(store, LAST_RUN_KEY, exc) from None
    return record


def _machine_line(kind: str, bot_id: str, saved: str, since: datetime, halts: list[Halt], local: LocalTime) -> str:
    """A halt written since the machine's last tick (`halt` from another process) is in force already: the
    machine moves at its next tick, but the operator must see it halted now, since the halt began."""
    scope = SYSTEM_SCOPE if kind == "system" else bot_id
    halts = [h for h in halts if not h.pause]  # a bot's pause leaves its machine as it is: entries refused, exits run
    halt = next((h for h in reversed(halts) if h.scope == scope), None)
    kind, bot_id, saved = one_line(kind), one_line(bot_id), one_line(saved)  # the state file's words (see status_text)
    if saved != "halted" and halt is not None:
        note = f"(its machine, {saved}, moves at its next tick)"
        return f"  {kind:<9} {bot_id:<14} {'halted':<12} since {local(halt.started_at)} {note}"
    line = f"  {kind:<9} {bot_id:<14} {saved:<12} since {local(since)}"
    if saved != "halted" and kind not in ("system", "portfolio") and any(h.scope == SYSTEM_SCOPE for h in halts):
        # its own machine may still read armed until it steps; the risk gate grants no entry meanwhile, whatever
        # the machine file says: an operator who halted and then looked saw bots armed with no word why
        line += f" ({SYSTEM_HALT_NOTE})"
    if saved == "halted" and not any(h.scope in (scope, SYSTEM_SCOPE) for h in halts):
        # the converse: its halt ran out or was ended since its last tick; "halted" above "halt: none" read as either
        line += f" ({halt_over_note(kind, bot_id)})"
    return line


# beside a bot whose machine is not halted while the system is (`status`, the status page): the risk gate grants it
# no entry whatever its machine file says
SYSTEM_HALT_NOTE = "a system halt is in force: it opens nothing"


def halt_over_note(kind: str, bot_id: str) -> str:
    """What a machine saved halted with no halt in force does next (`status`, the status page): a bot leaves
    through its machine's resume path, whose guards `why` shows."""
    note = "no halt is in force now: it leaves halted at its next tick"
    return note if kind in ("system", "portfolio") else f"{note} once its way out holds: `python -m engine why {bot_id}`"


def no_end_said(run: dict[str, Any]) -> str:
    """What a last run with no end recorded and no lock holder was (`status`, `health`). A backtest holds no lock (its
    state file is its own output folder's): one still running looks exactly like one killed, so both are said."""
    if run.get("broker") == BACKTEST_BROKER:
        return "no end recorded: a backtest still running, or one stopped before its end (a backtest holds no lock)"
    return "stopped without a summary (killed, or the machine stopped)"


def status_text(
    store: StateStore, now: datetime, day: date | None = None, local: LocalTime | None = None, bots: BotsConfig | None = None
) -> str:
    """Every machine (shown halted as soon as a halt is in force), the halts in force, positions (with, given
    `bots`, those no bot of bots.yaml manages), today's counters, then the latest run summed up: P&L per bot per
    day and every halt that touched it.

    Every word read from the state file goes through one_line, not only a halt's reason: the last run's reason is
    an exception's text, and a newline in any word forged a line ("halt: none") or an escape drove the terminal."""
    local = local or LocalTime()
    live = halts_in_force(store, now)
    lines = ["machines:"]
    lines += [_machine_line(s.kind, s.bot_id, s.state, s.since, live, local) for s in store.machine_states()] or [
        "  none yet (no run has started)"
    ]
    lines.append("halt: none" if not live else "halt:")
    for h in live:
        until = local(h.until) if h.until else "resume"
        lines.append(f"  {one_line(h.scope)}: {one_line(h.reason)} (since {local(h.started_at)}, until {until})")
    lines.append("positions by bot:")
    lines += [f"  {position_line(p)}" for p in store.positions()] or ["  none"]
    lines += [f"  {line}" for line in unmanaged_lines(store, bots)] if bots is not None else []
    # today in system.timezone at the state's own time (a simulation's, see state_now), as the engine counts days;
    # not the last day any order was recorded on: the day after a day of trading, that showed the day before's
    # counters, a bot at its max_trades_per_day read as capped today
    day = day or local.day(now)
    lines.append(f"counters {day.isoformat()}:")
    counters = store.counters(day)
    realized = store.realized_pnl(day)
    for bot_id in sorted(set(counters) | set(realized)):
        values = ", ".join(f"{k} {v}" for k, v in sorted(counters.get(bot_id, {}).items()))
        lines.append(f"  {one_line(bot_id):<14} {values}; realized P&L {money(realized.get(bot_id, 0.0))}")
    if not counters:
        lines.append("  none")
    run = last_run(store)
    if run is not None:
        started = datetime.fromisoformat(run["started_at"])
        ended = datetime.fromisoformat(run["ended_at"]) if run.get("ended_at") else None
        holder = running_pid(store.path)
        if ended is not None:
            how = f"ended {local(ended)} ({one_line(str(run.get('reason', 'no reason recorded')))})"
        else:
            how = f"running (pid {holder})" if holder else no_end_said(run)
        lines.append(f"last run: started {local(started)}, {how}")
        record = period_record(store, started, ended or now, now, local, in_force_at_start=run.get(HALTS_AT_START, []))
        lines += period_lines({**record, "in_force": []}, local)
    lines += halt_notice(store, now, local)
    return "\n".join(lines)
