"""Opening a run: the simulator's default start is asked for only when it is needed, and a failure to find it is
a clear error, not a traceback; so is every other refusal, and a refused run holds nothing."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Fault
from engine.core.store import StateFileError
from engine.trading.runner import RunError, RunOptions, StopSignals, close_session, open_session
from engine.validate import load_valid
from tests.conftest import ProjectCopy

MONDAY_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


def _options(project: ProjectCopy, name: str = "s", **fields: object) -> RunOptions:
    return RunOptions(broker="sim", state_db=project.root / f"{name}.db", log=project.root / f"{name}.jsonl", **fields)  # type: ignore[arg-type]


def test_the_default_start_is_asked_for_only_when_the_simulator_needs_it(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)
    asked: list[int] = []

    def default_start() -> datetime:
        asked.append(1)
        return MONDAY_OPEN

    given = _options(project, start=datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc))
    session = open_session(report, given, {}, default_start)
    assert asked == [] and session.clock.now() == given.start
    close_session(session)
    session = open_session(report, _options(project, "fresh"), {}, default_start)  # a new state file: no saved day
    assert asked == [1] and session.clock.now() == MONDAY_OPEN
    close_session(session)


@pytest.mark.parametrize(
    ("start", "said"),
    [
        ("2026-11-26T09:30:00-05:00", "the market is closed on Thu 2026-11-26 (a weekend or holiday): the next session "
         "opens 2026-11-27T06:30:00-08:00"),  # Thanksgiving
        ("2026-11-28T09:30:00-05:00", "the market is closed on Sat 2026-11-28 (a weekend or holiday): the next session "
         "opens 2026-11-30T06:30:00-08:00"),
        ("2026-11-23T09:30:00-05:00", None),
    ],
)  # fmt: skip
def test_a_simulation_started_on_a_closed_day_says_so_and_when_the_market_opens(
    project: ProjectCopy, start: str, said: str | None
) -> None:
    """`run --start` on a holiday or a weekend ticked through the closed stretch without a word, as if the bots had
    found nothing to do: the start says the exchange is closed that day and when its next session opens (in
    system.timezone); a trading day says nothing of it."""
    report = load_valid(project.config, project.machines, project.rules)
    session = open_session(report, _options(project, start=datetime.fromisoformat(start)), {}, MONDAY_OPEN)
    try:
        if said is None:
            assert "market is closed" not in session.notice
        else:
            assert f"; {said}" in session.notice, session.notice
    finally:
        close_session(session)


def test_a_default_start_that_cannot_be_found_is_a_clear_error(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)

    def broken() -> datetime:
        raise ValueError("the XNYS calendar cannot cover 2040-01-01")

    with pytest.raises(RunError, match=r"cannot find the next market open .*2040.*; give --start"):
        open_session(report, _options(project), {}, broken)


# --- every refusal is the runner's own error, and a refused run holds nothing ------------------------------------


def _nothing_written(project: ProjectCopy, name: str = "s") -> None:
    assert not (project.root / f"{name}.db").exists() and not (project.root / f"{name}.jsonl").exists()


def test_one_alpaca_key_without_the_other_is_a_run_error(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)
    options = RunOptions(state_db=project.root / "s.db", log=project.root / "s.jsonl")  # broker.name: auto
    with pytest.raises(RunError, match="ALPACA_KEY is set but ALPACA_SECRET is not") as refused:
        open_session(report, options, {"ALPACA_KEY": "PKTESTKEY0123456789"}, MONDAY_OPEN)
    assert "PKTESTKEY0123456789" not in str(refused.value)
    _nothing_written(project)


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"broker": "ib"}, "unknown broker 'ib'"), ({"start": datetime(2026, 11, 23, 9, 30)}, "has no UTC offset")],
)
def test_what_only_a_library_caller_can_pass_wrong_is_a_run_error(
    project: ProjectCopy, fields: dict[str, object], match: str
) -> None:
    report = load_valid(project.config, project.machines, project.rules)
    options = RunOptions(**{"broker": "sim", "state_db": project.root / "s.db", "log": project.root / "s.jsonl", **fields})  # type: ignore[arg-type]
    with pytest.raises(RunError, match=match):
        open_session(report, options, {}, MONDAY_OPEN)
    _nothing_written(project)


def test_a_lock_file_that_cannot_be_made_is_the_state_files_error(project: ProjectCopy) -> None:
    report = load_valid(project.config, project.machines, project.rules)
    (project.root / "afile").write_text("")
    options = RunOptions(broker="sim", state_db=project.root / "afile" / "s.db", log=project.root / "s.jsonl")
    with pytest.raises(StateFileError) as refused:
        open_session(report, options, {}, MONDAY_OPEN)
    assert "afile" in refused.value.message and "s.db.lock" in refused.value.message and not refused.value.runtime


def test_a_refused_run_closes_everything_even_when_closing_fails(project: ProjectCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error that refused the run is the one raised, and the lock is let go even when the log cannot be
    closed (a full disk): a library caller trying again is not refused by its own process."""
    from engine.core.journal import Journal, JournalError
    from engine.core.lock import RunLock
    from engine.trading import runner

    report = load_valid(project.config, project.machines, project.rules)

    def refuse(*_args: object) -> None:
        raise RunError("alerts cannot be sent")

    def full_disk(self: Journal) -> None:
        raise JournalError(self.path, OSError(28, "No space left on device"))

    monkeypatch.setattr(runner, "_start_alerts", refuse)
    monkeypatch.setattr(Journal, "close", full_disk)
    with pytest.raises(RunError, match="alerts cannot be sent"):
        open_session(report, _options(project), {}, MONDAY_OPEN)
    with RunLock(project.root / "s.db"):  # free
        pass


def test_a_simulated_runs_unused_short_keys_do_not_mask_its_log(project: ProjectCopy) -> None:
    """Keys a simulated run never uses are masked only when they could be real ones: a short one ("ord") would
    have turned every "order" event into "***er", and the commands that read the log by event name with it."""
    from engine.core.journal import read_events

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=200)
    session = open_session(report, options, {"ALPACA_KEY": "ord", "ALPACA_SECRET": "PKLONGENOUGHSECRET"}, MONDAY_OPEN)
    for _ in range(200):
        session.engine.tick()
        session.clock.advance(5)  # type: ignore[attr-defined]
    session.journal.log("probe", note="PKLONGENOUGHSECRET")
    close_session(session)
    events = read_events(project.root / "s.jsonl")
    assert any(e["event"] == "order" for e in events) and not any("***er" in e["event"] for e in events)
    assert [e["note"] for e in events if e["event"] == "probe"] == ["***"]  # one long enough to be real still is


# --- the state file deleted or replaced under a running engine -------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_state_file_deleted_or_replaced_under_the_run_stops_it_before_its_next_tick(project: ProjectCopy, how: str) -> None:
    """SQLite goes on writing to the file it opened, whatever is at its path now: a cleanup job's `rm -rf state/`
    lost every later tick's records with the run's end, and a backup moved into place took the operator's `halt`
    (which opens the path) while the engine traded on without ever seeing it."""
    import shutil

    from engine.core.journal import Journal, read_events
    from engine.core.store import StateStore
    from engine.trading.runner import operator_halt, run

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=5)
    session = open_session(report, options, {}, MONDAY_OPEN)
    db = project.root / "s.db"
    backup = project.root / "backup.db"

    def meanwhile(_report: object) -> None:
        if session.engine.ticks != 1:
            return
        if how == "deleted":
            for path in (db, db.with_name("s.db-wal"), db.with_name("s.db-shm")):
                path.unlink(missing_ok=True)
            return
        shutil.copy(db, backup)
        os.replace(backup, db)  # `mv backup.db s.db`
        operator = StateStore(db)
        journal = Journal(project.root / "operator.jsonl", session.clock)
        operator_halt(operator, journal, "stop it", session.clock.now())  # says "halted ... recorded in s.db"
        journal.close()
        operator.close()

    try:
        with pytest.raises(StateFileError, match="deleted or replaced") as stopped:
            run(session, options, on_tick=meanwhile)
    finally:
        close_session(session)
    assert stopped.value.runtime and stopped.value.path == db  # exit 1: the file may be sound, it is not this run's
    assert session.engine.ticks == 1  # no tick ran, and no order went out, on a file nobody can see
    ends = [e for e in read_events(project.root / "s.jsonl") if e["event"] == "run_end"]
    assert len(ends) == 1 and "deleted or replaced" in ends[0]["reason"]


def test_a_lock_file_taken_by_a_second_run_during_the_wait_stops_the_run_before_its_next_tick(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock file deleted during the wait between two ticks and a second `run` locking the new one: the lock was
    checked only after a tick, so the first engine ran one more whole tick beside the second on one state file. It
    is checked before each tick too: the run stops (exit 1) without starting another."""
    from engine.core.lock import LockFileError, RunLock
    from engine.trading.runner import run

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=5)
    session = open_session(report, options, {}, MONDAY_OPEN)
    lock_path = project.root / "s.db.lock"
    second = RunLock(project.root / "s.db")
    advance = session.clock.advance  # type: ignore[attr-defined]

    def wait(seconds: float) -> None:  # a simulated run's wait between ticks: the second run starts during it
        advance(seconds)
        if session.engine.ticks == 1:
            lock_path.unlink()
            second.acquire()

    monkeypatch.setattr(session.clock, "advance", wait)
    try:
        with pytest.raises(LockFileError, match="deleted or replaced"):
            run(session, options)
    finally:
        close_session(session)
        second.release()
    assert session.engine.ticks == 1  # no second tick beside the second run


def test_a_state_file_cut_short_under_the_run_stops_it_before_its_next_tick(project: ProjectCopy) -> None:
    """`truncate -s 4096 s.db` while the engine runs: SQLite went on from its cache and its -wal, the run ended 0,
    and the file it left was "malformed" to every later command. Now the next tick does not run, exit 2."""
    from engine.core.journal import read_events
    from engine.trading.runner import run

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=5)
    close_session(open_session(report, options, {}, MONDAY_OPEN))  # a file with its pages checkpointed into it
    db = project.root / "s.db"
    session = open_session(report, options, {}, MONDAY_OPEN)

    def meanwhile(_report: object) -> None:
        if session.engine.ticks == 1:
            os.truncate(db, 4096)

    try:
        with pytest.raises(StateFileError, match=r"was cut short under the running engine \(\d+ bytes, now 4096\)") as stopped:
            run(session, options, on_tick=meanwhile)
    finally:
        close_session(session)
    assert not stopped.value.runtime and session.engine.ticks == 1
    ends = [e for e in read_events(project.root / "s.jsonl") if e["event"] == "run_end"]
    assert len(ends) == 1 and "cut short" in ends[0]["reason"]


def _break_page(db: Path, table: str) -> None:
    """The first page of `table` in the file made unreadable (its page type byte), as a flipped disk block does."""
    import sqlite3

    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\x00")


def test_a_state_file_found_damaged_in_a_tick_stops_the_run(project: ProjectCopy) -> None:
    """A damaged page the run's start does not read (a table a tick reads first): every tick met it again, the
    run went on halted to its end and exited 0, its records read from a file that no longer held them whole. Now
    the halt is recorded, if the file still takes it, and the run stops with the file's error (exit 2)."""
    from engine.core.journal import read_events
    from engine.trading.runner import run

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=5)
    close_session(open_session(report, options, {}, MONDAY_OPEN))  # every page checkpointed into the file
    _break_page(project.root / "s.db", "last_facts")  # written by every tick, read at the first
    session = open_session(report, options, {}, MONDAY_OPEN)
    try:
        with pytest.raises(StateFileError, match="malformed") as stopped:
            run(session, options)
    finally:
        close_session(session)
    assert not stopped.value.runtime and session.engine.ticks == 0
    events = read_events(project.root / "s.jsonl")
    assert [e["what"] for e in events if e["event"] == "anomaly"] == ["exception"]
    ends = [e for e in events if e["event"] == "run_end"]
    assert len(ends) == 1 and "malformed" in ends[0]["reason"]


def test_a_second_name_given_to_the_state_file_under_the_run_stops_it_before_its_next_tick(project: ProjectCopy) -> None:
    """`ln state.db copy.db` while the engine runs: a `halt` given the new name writes beside another
    write-ahead log of the same file, which the engine never reads, and the two logs can corrupt it."""
    from engine.core.journal import read_events
    from engine.trading.runner import run

    report = load_valid(project.config, project.machines, project.rules)
    options = _options(project, ticks=5)
    session = open_session(report, options, {}, MONDAY_OPEN)
    db = project.root / "s.db"

    def meanwhile(_report: object) -> None:
        if session.engine.ticks == 1:
            os.link(db, project.root / "copy.db")

    try:
        with pytest.raises(StateFileError, match="has 2 names") as stopped:
            run(session, options, on_tick=meanwhile)
    finally:
        close_session(session)
    assert stopped.value.runtime and session.engine.ticks == 1
    ends = [e for e in read_events(project.root / "s.jsonl") if e["event"] == "run_end"]
    assert len(ends) == 1 and "hard links" in ends[0]["reason"]


def test_a_run_against_alpaca_syncs_its_intents_to_the_disk_and_a_simulated_one_does_not(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alpaca acts on an order whose intent the tick committed: before it is sent, that commit must outlive a power
    cut (`StateStore.sync_to_disk`, an fsync). A simulated run sends nothing anywhere and is not synced."""
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.core.clock import SystemClock
    from tests.brokers.conftest import KEY, SECRET

    report = load_valid(project.config, project.machines, project.rules)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counted_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted_fsync)
    synced: dict[str, int] = {}
    session = open_session(report, _options(project, "sim"), {}, lambda: MONDAY_OPEN)
    before = len(fsyncs)
    session.store.sync_to_disk()
    synced["sim"] = len(fsyncs) - before
    close_session(session)
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": emulator.url, "ALPACA_DATA_BASE_URL": emulator.url}
        options = RunOptions(broker="alpaca", state_db=project.root / "paper.db", log=project.root / "paper.jsonl")
        session = open_session(report, options, env, lambda: MONDAY_OPEN)
        before = len(fsyncs)
        session.store.sync_to_disk()
        synced["alpaca"] = len(fsyncs) - before
        close_session(session)
    assert synced == {"sim": 0, "alpaca": 1}


def test_a_last_run_record_that_is_no_object_is_shown_cut_without_part_of_a_key(tmp_path: Path) -> None:
    """The record is cut to 40 characters in its error: cut through a pasted key, the part before the cut was shown
    as it was (the exact mask never finds a part of a key). The cut word is masked now (journal.clipped)."""
    from engine.core.store import StateFileError, StateStore
    from engine.trading.runner import LAST_RUN_KEY, last_run

    store = StateStore(tmp_path / "s.db")
    store.set_meta(LAST_RUN_KEY, '["PKABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]')
    with pytest.raises(StateFileError) as caught:
        last_run(store)
    assert "not a JSON object" in str(caught.value) and "PKABCDEF" not in str(caught.value)


# --- a stop signal with the broker hung: the run ends within the read in progress ------------------------------


def _alpaca_env(url: str) -> dict[str, str]:
    from tests.brokers.conftest import KEY, SECRET

    return {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": url, "ALPACA_DATA_BASE_URL": url}


def _stops_when_read(stop: StopSignals, path: str) -> Fault:
    """An emulator fault that answers `path` as usual and, as it does, has the stop signal arrive (`stop.reason`):
    the signal lands while that read is in progress, as a SIGTERM lands in a tick or a start."""
    import json

    def arrives(status: int, body: object) -> tuple[int, str]:
        stop.reason = "SIGTERM"
        return status, json.dumps(body)

    return Fault(path_prefix=path, rewrite=arrives)


def test_a_stop_in_a_tick_asks_no_more_reads_of_the_broker_and_halts_nothing(project: ProjectCopy) -> None:
    """A SIGTERM with the broker hung took 50 to 130 s to end the run, past systemd's TimeoutStopSec of 60: the tick in
    progress read on (each read its own timeout) and the summary read the broker once more. Once the stop is in, no
    read is asked: the tick's reads after it and the summary's are unread (entries blocked, figures unknown), held
    (never api_failure_halt), and nothing halts."""
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.core.clock import SystemClock
    from engine.core.journal import read_events
    from engine.core.store import SYSTEM_SCOPE
    from engine.trading.runner import run
    from tests.brokers.conftest import KEY, SECRET

    report = load_valid(project.config, project.machines, project.rules)
    stop = StopSignals()  # not entered: the test stands in for the signal
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = _alpaca_env(emulator.url)
        options = RunOptions(broker="alpaca", state_db=project.root / "s.db", log=project.root / "s.jsonl", ticks=5)
        session = open_session(report, options, env, lambda: MONDAY_OPEN, stop)
        try:
            emulator.faults.append(_stops_when_read(stop, "/v2/account"))
            started = len(emulator.requests)
            summary = run(session, options, stop)
            now = session.clock.now()
            assert session.engine.exitbot.failures_in_window(now) == 0
            assert session.store.halts(SYSTEM_SCOPE, open_only=True) == [] and session.engine.system.state != "halted"
        finally:
            close_session(session)
        asked = [r.path for r in emulator.requests[started:]]
    assert asked == ["/v2/account"]  # the tick's first read, in progress when the stop came; nothing after it
    assert summary["reason"] == "SIGTERM" and summary["ticks"] == 1 and summary["equity"] is None
    errors = [e for e in read_events(project.root / "s.jsonl") if e["event"] == "broker_error"]
    assert errors and all(e["held"] and e["reason"] == "stopping" for e in errors)


def test_a_stop_during_the_start_up_checks_ends_the_start_with_nothing_written(project: ProjectCopy) -> None:
    """A SIGTERM while the start-up checks waited on a hung broker: the start read on, then refused the run as if
    the broker had failed (exit 1, "the run cannot start: ... timeout", and a service started it again), or ticked
    once. The stop is the reason: RunStopped (the signal's exit code), no further read, nothing written."""
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.core.clock import SystemClock
    from engine.trading.runner import RunStopped
    from tests.brokers.conftest import KEY, SECRET

    report = load_valid(project.config, project.machines, project.rules)
    for path in ("/v2/assets", "/v2/account"):  # the asset check, then the first read
        stop = StopSignals()
        with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
            env = _alpaca_env(emulator.url)
            emulator.faults.append(_stops_when_read(stop, path))
            options = RunOptions(broker="alpaca", state_db=project.root / "s.db", log=project.root / "s.jsonl")
            with pytest.raises(RunStopped) as stopped:
                open_session(report, options, env, lambda: MONDAY_OPEN, stop)
            asked = [r.path for r in emulator.requests]
        assert stopped.value.exit_code == 143 and "SIGTERM: stopped while the run was starting" in str(stopped.value)
        assert [p for p in asked if p.startswith(path)] == asked[-1:], asked  # no read after the one the stop came in
        _nothing_written(project)
