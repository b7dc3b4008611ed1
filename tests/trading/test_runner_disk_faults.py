"""The disk failing under a running engine: the log or the state file can no longer be written. The contract is
the same for each: one line naming the file (no traceback), trading halted (the halt recorded in the state file
if it still takes it, and said at the next start if it did not), a non-zero exit, and what was written before
still readable.

Real mechanisms only: the kernel's file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored, so a write past it fails
with EFBIG as on a full disk) in a child `python -m engine run`, and SQLite's own `max_page_count` on the running
engine's connection, which makes SQLite fail with SQLITE_FULL exactly as a full disk does.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from engine.core.journal import JournalError, read_events
from engine.core.store import SYSTEM_SCOPE, StateFileError, StateStore
from engine.paths import PROJECT_ROOT
from engine.trading.runner import RunOptions, Session, close_session, halt_notice, open_session, run
from engine.validate import load_valid
from tests.conftest import ProjectCopy

START = "2026-11-23T09:30:00-05:00"


def _engine(project: ProjectCopy, *args: str, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGS` on the project's copy, with the file size limit set in the child when given."""

    def limited() -> None:
        if file_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    return subprocess.run([sys.executable, "-m", "engine", *args, *files], capture_output=True, text=True,
                          cwd=project.root, env=env, timeout=180, preexec_fn=limited)  # fmt: skip


def _log_near(path: Path, size: int) -> None:
    """An earlier run's log, whole JSON lines, of about `size` bytes."""
    line = json.dumps({"ts": "2026-11-20T14:30:00+00:00", "event": "note", "pad": "x" * 100}) + "\n"
    path.write_text(line * (size // len(line)), encoding="utf-8")


def test_a_log_that_can_take_no_more_halts_the_system_in_the_state_file_and_stops_the_run(project: ProjectCopy) -> None:
    """The log filling up mid-run (here: the file size limit) stopped the run with one line, exit 1, but recorded
    no halt: the next start traded on as if nothing had happened, with a log that had lost the end of the last
    run. An order must not leave without its event on disk, so trading stops, and the halt is kept where the
    next start reads it: the state file, which still takes it."""
    db, log = project.root / "s.db", project.root / "app.jsonl"
    _log_near(log, 2_990_000)
    done = _engine(project, "run", "--broker", "sim", "--start", START, "--ticks", "400", "--state-db", str(db),
                   "--log", str(log), file_limit=3_000_000)  # fmt: skip
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"error: log file {log}: File too large") and done.stderr.count("\n") == 1, done.stderr
    read_events(log)  # every line whole: the part of a line the limit took was taken back
    store = StateStore(db)
    try:
        halts = store.halts(SYSTEM_SCOPE, open_only=True)
    finally:
        store.close()
    assert [h.conditions for h in halts] == [("anomaly_halt",)], halts
    assert str(log) in halts[0].reason and "File too large" in halts[0].reason
    status = _engine(project, "status", "--state-db", str(db), "--log", str(log))
    assert status.returncode == 0 and "HALT" in status.stdout, status


def _session(project: ProjectCopy, ticks: int) -> tuple[Session, RunOptions]:
    """A simulated run's session on the project's state file and log: from START, or where the saved one stands."""
    report = load_valid(project.config, project.machines, project.rules)
    start = datetime.fromisoformat(START)
    options = RunOptions(broker="sim", state_db=project.root / "s.db", log=project.root / "app.jsonl", ticks=ticks)
    return open_session(report, options, {}, start), options


def test_a_log_replaced_by_a_folder_mid_run_halts_the_system_in_the_state_file(project: ProjectCopy) -> None:
    """The log moved away and a folder made at its path between two ticks: the run reopens the path at its next
    write, cannot, and stops (exit 2: a folder is not a log). The halt is in the state file, whichever write
    met the folder first (the last ticks' events at the run's end, here)."""
    session, options = _session(project, ticks=20)
    log = session.journal.path

    def on_tick(_report: object) -> None:
        if session.engine.ticks == 10:
            session.journal.flush()
            log.rename(log.with_suffix(".old"))
            log.mkdir()

    try:
        with pytest.raises(JournalError) as raised:
            run(session, options, on_tick=on_tick)
    finally:
        with contextlib.suppress(JournalError):
            close_session(session)
    assert not raised.value.runtime and str(raised.value) == f"log file {log}: is a folder, not a log file"
    store = StateStore(project.root / "s.db")
    try:
        [halt] = store.halts(SYSTEM_SCOPE, open_only=True)
    finally:
        store.close()
    assert halt.reason == f"the log cannot be written: log file {log}: is a folder, not a log file", halt
    read_events(log.with_suffix(".old"))  # what reached the log before stays whole


def _fill_the_disk_at(session: Session, tick: int) -> Callable[[object], None]:
    """A tick observer that leaves the state file no room from tick `tick` on: SQLite's own page limit on the
    running engine's connection, refused as SQLITE_FULL exactly as a full disk is. The file is packed first
    (VACUUM) and what room its pages have left is taken by filler rows in `meta` until SQLite refuses one: capped as
    it stood, the room left in its pages took a run's few writes, and whether a later one needed a page depended on
    how an unrelated record had laid them out."""

    def on_tick(_report: object) -> None:
        if session.engine.ticks == tick:
            connection = session.store._conn
            connection.execute("VACUUM")
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages}")
            size, n = 4096, 0
            while size >= 1:
                try:
                    with connection:
                        connection.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"test_filler_{n}", "x" * size))
                    n += 1
                except sqlite3.OperationalError:  # full: try a smaller one, down to a byte
                    size //= 2

    return on_tick


def test_a_halt_a_full_state_file_could_not_take_is_recorded_and_said_by_the_next_start(project: ProjectCopy) -> None:
    """The state file full mid-run: the tick halts the system, cannot save the halt, says so in the log
    (`halt_not_saved`) and the run stops (exit 1). The next start, the disk freed, found no halt in the state file
    and traded on without a word. It now records that halt (once: a third start does not again) and says so."""
    session, options = _session(project, ticks=400)
    try:
        with pytest.raises(StateFileError) as raised:
            run(session, options, on_tick=_fill_the_disk_at(session, 20))
    finally:
        with contextlib.suppress(StateFileError):
            close_session(session)
    assert raised.value.runtime and "the disk is full" in raised.value.message
    [not_saved] = [e for e in read_events(project.root / "app.jsonl") if e["event"] == "halt_not_saved"]

    again, options = _session(project, ticks=1)
    try:
        assert "the last run halted and could not save it in the state file" in again.notice, again.notice
        assert not_saved["reason"] in again.notice
        [halt] = again.store.halts(SYSTEM_SCOPE, open_only=True)
        assert halt.reason.startswith(not_saved["reason"]) and halt.until == datetime.fromisoformat(not_saved["until"])
        assert halt_notice(again.store, again.clock.now(), again.local)  # HALT IN FORCE, the run's third line
        run(again, options)
        assert again.engine.system.state == "halted"
    finally:
        close_session(again)

    third, _options = _session(project, ticks=1)
    try:
        assert "could not save" not in third.notice and len(third.store.halts(SYSTEM_SCOPE)) == 1
    finally:
        close_session(third)


def test_a_state_file_past_the_size_limit_stops_the_run_in_one_line_and_the_next_start_is_halted(
    project: ProjectCopy,
) -> None:
    """The same through the command: the state file's -wal cannot grow past the kernel's file size limit (EFBIG,
    SQLite's "disk I/O error"), the run says so in one line naming the file and exits 1; run again with room, it
    starts halted and its first line says why."""
    db, log = project.root / "s.db", project.root / "app.jsonl"
    done = _engine(project, "run", "--broker", "sim", "--start", START, "--ticks", "400", "--state-db", str(db),
                   "--log", str(log), file_limit=200_000)  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done
    assert done.stderr.startswith(f"error: state file {db}: cannot be written (a full disk, or past the file size limit?)")
    assert [e["event"] for e in read_events(log)][-2:] == ["halt_not_saved", "run_end"]
    status = _engine(project, "status", "--state-db", str(db), "--log", str(log))  # "halt: none" said alone, before
    assert status.returncode == 0 and "NOT SAVED: the last run halted at" in status.stdout, status
    # its first tick failed, so no simulated time was saved: the next run starts where the first one did
    again = _engine(project, "run", "--broker", "sim", "--start", START, "--ticks", "1", "--state-db", str(db), "--log", str(log))
    assert again.returncode == 0, again
    first, _files, third = again.stdout.splitlines()[:3]
    assert "the last run halted and could not save it in the state file" in first
    assert third.startswith("HALT IN FORCE: the system is halted since"), again.stdout


def test_a_state_file_cut_to_nothing_between_runs_is_refused_not_started_afresh(project: ProjectCopy) -> None:
    """A state file of 0 bytes (`cp backup.db state.db` on a full disk, an editor's save, `: > state.db`) is a new,
    empty database to SQLite: the next run started a fresh simulation, its halts, orders and positions gone, an
    operator's halt until `resume` with them, and said nothing. A run has used the path when its lock file is there
    (it stays): the run is refused (exit 2) and the file left as it is; without the lock file it is a first run."""
    db, log = project.root / "s.db", project.root / "app.jsonl"
    first = _engine(project, "run", "--broker", "sim", "--start", START, "--ticks", "3", "--state-db", str(db), "--log", str(log))
    assert first.returncode == 0, first
    halted = _engine(project, "halt", "--reason", "news", "--state-db", str(db), "--log", str(log))
    assert halted.returncode == 0, halted
    db.write_bytes(b"")
    refused = _engine(project, "run", "--broker", "sim", "--ticks", "3", "--state-db", str(db), "--log", str(log))
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert "s.db:0:0: is empty (0 bytes), but a run has used it" in refused.stderr, refused.stderr
    assert db.stat().st_size == 0 and not Path(f"{db}-wal").exists()
    Path(f"{db}.lock").unlink()  # as the message says: a fresh start is asked for
    fresh = _engine(project, "run", "--broker", "sim", "--start", START, "--ticks", "3", "--state-db", str(db), "--log", str(log))
    assert fresh.returncode == 0, fresh


def test_a_real_time_runs_last_tick_the_state_file_refuses_is_a_halt_the_next_start_records(project: ProjectCopy) -> None:
    """Against Alpaca (the emulator, through the real alpaca-py clients) a run writes each tick's time after the
    tick, outside its boundary: refused there (the disk filled between the two; here SQLite's own `query_only` on
    the engine's connection refuses it as a read-only file does), the run stopped with no halt anywhere, not even in
    the log, and the next start traded on. The halt is now logged as not saved, and the next start records it."""
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.core.clock import SystemClock
    from tests.brokers.conftest import KEY, SECRET

    report = load_valid(project.config, project.machines, project.rules)
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": emulator.url,
               "ALPACA_DATA_BASE_URL": emulator.url}  # fmt: skip
        options = RunOptions(broker="alpaca", state_db=project.root / "paper.db", log=project.root / "paper.jsonl", ticks=3)
        session = open_session(report, options, env, datetime.fromisoformat(START))

        def refuse_writes(_report: object) -> None:
            session.store._conn.execute("PRAGMA query_only = 1")

        try:
            with pytest.raises(StateFileError) as stopped:
                run(session, options, on_tick=refuse_writes)
        finally:
            with contextlib.suppress(Exception):
                close_session(session)
        assert stopped.value.runtime and session.engine.ticks == 1
        [not_saved] = [e for e in read_events(options.log) if e["event"] == "halt_not_saved"]  # type: ignore[arg-type]
        assert not_saved["reason"].startswith("the state file cannot be written") and not_saved["until"]
        again = open_session(report, options, env, datetime.fromisoformat(START))
        try:
            assert "the last run halted and could not save it in the state file" in again.notice, again.notice
            [halt] = again.store.halts(SYSTEM_SCOPE, open_only=True)
            assert halt.reason.startswith(not_saved["reason"])
        finally:
            close_session(again)
