"""SQLite, real files: schema version, WAL, all-or-nothing transactions, halts."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.core.store import MIGRATIONS, SYSTEM_SCOPE, StateFileError, StateStore

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def test_new_file_is_migrated_and_in_wal_mode(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    assert store.schema_version == len(MIGRATIONS)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    StateStore(tmp_path / "s.db")  # reopening does not migrate twice


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files os.fsync is asked to sync from now on (the real fsync still runs): read from /proc."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a descriptor's file through /proc")
def test_sync_to_disk_syncs_the_write_ahead_log_beside_the_file_a_link_leads_to(tmp_path, monkeypatch) -> None:
    """An intent is committed before its order is sent: synced, it outlives a power cut, not only a killed process.
    The committed frames are in the -wal, which SQLite keeps beside the file a symlink names."""
    real = tmp_path / "real" / "s.db"
    real.parent.mkdir()
    StateStore(real).close()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    store = StateStore(link)
    with store.transaction():
        store.save_machine_state("momentum", "a", "armed", NOW)
    synced = _fsynced(monkeypatch)
    store.sync_to_disk()
    assert synced == [f"{real}-wal"]
    store.close()
    unsynced = StateStore(real, synced=False)  # a simulated run's or a backtest's: nothing sent on it
    unsynced.sync_to_disk()
    assert synced == [f"{real}-wal"]


def test_a_state_file_with_a_second_name_is_refused(tmp_path) -> None:
    """A hard link is a second path to the same file, beside which SQLite would keep a second write-ahead log (and
    the run lock, a second lock file): two engines, or an engine and a `halt`, could each miss the other's commits."""
    path = tmp_path / "s.db"
    StateStore(path).close()
    os.link(path, tmp_path / "backup.db")
    for name in (path, tmp_path / "backup.db"):
        with pytest.raises(StateFileError, match="has 2 names") as refused:
            StateStore(name)
        assert not refused.value.runtime  # the user's to fix: exit 2
    os.unlink(tmp_path / "backup.db")
    StateStore(path).close()  # one name again: opened


def test_a_newer_schema_is_refused(tmp_path) -> None:
    path = tmp_path / "s.db"
    StateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(StateFileError, match="newer than this engine"):
        StateStore(path)


def test_two_processes_making_a_new_state_file_at_once_both_open_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` starting on a new state file while `halt` is typed (or the status page makes it): each read version 0,
    then migrated from 0; the second one met "table machine_states already exists" and was told the file was
    damaged (exit 2), or saw the first one's tables before its version and called it another application's. The
    interleaving is made here, not waited for: the other process migrates between our look and our migration."""
    path = tmp_path / "s.db"
    real_check = StateStore._check_identity
    others: list[StateStore] = []
    started: list[bool] = []

    def look_then_let_another_migrate(self: StateStore) -> None:
        real_check(self)
        if not started:
            started.append(True)
            others.append(StateStore(path))  # the other process, all its migrations committed

    monkeypatch.setattr(StateStore, "_check_identity", look_then_let_another_migrate)
    ours = StateStore(path)
    assert ours.schema_version == len(MIGRATIONS) == others[0].schema_version
    ours.start_halt(SYSTEM_SCOPE, "operator", ("operator",), False, NOW, None)
    assert others[0].halt_in_force(SYSTEM_SCOPE, NOW) is not None
    ours.close()
    others[0].close()


def test_a_new_state_file_another_process_holds_locked_is_waited_for(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting WAL mode takes an exclusive lock SQLite does not wait for while another connection holds the write
    lock of a new file: the second of two processes making it at once was told "database is locked" at once."""
    import engine.core.store as store_module

    path = tmp_path / "s.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process making the same new file, its write lock held
    waits: list[float] = []

    def pause(seconds: float) -> None:  # the other process finishes while we wait: no real sleep
        waits.append(seconds)
        if other.in_transaction:
            other.execute("ROLLBACK")

    monkeypatch.setattr(store_module, "_pause", pause)
    store = StateStore(path)
    assert waits and store.schema_version == len(MIGRATIONS)
    store.close()
    other.close()


def test_a_failed_transaction_leaves_nothing(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(ValueError), store.transaction():
        store.save_machine_state("momentum", "a", "armed", NOW)
        store.bump_counter(date(2026, 11, 23), "a", "entries")
        raise ValueError("mid-tick failure")
    assert store.machine_states() == [] and store.counters(date(2026, 11, 23)) == {}


def test_state_is_visible_to_another_connection_after_commit(tmp_path) -> None:
    a, b = StateStore(tmp_path / "s.db"), StateStore(tmp_path / "s.db")
    a.save_machine_state("system", "system", "armed", NOW)
    assert b.machine_state("system", "system").state == "armed"  # type: ignore[union-attr]


def test_halts_in_force_until_their_end_or_resume(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.start_halt(SYSTEM_SCOPE, "kill", ("data_stale_halt",), False, NOW, NOW + timedelta(minutes=5))
    assert store.halt_in_force(SYSTEM_SCOPE, NOW + timedelta(minutes=4)) is not None
    assert store.halt_in_force(SYSTEM_SCOPE, NOW + timedelta(minutes=5)) is None
    store.start_halt(SYSTEM_SCOPE, "operator", ("operator",), False, NOW, None)
    assert store.halt_in_force(SYSTEM_SCOPE, NOW + timedelta(days=30)).reason == "operator"  # type: ignore[union-attr]
    assert store.end_halts(SYSTEM_SCOPE, NOW, "operator") == 2
    assert store.halt_in_force(SYSTEM_SCOPE, NOW) is None
    assert [h.reason for h in store.halts()] == ["kill", "operator"]  # the history stays


def test_naive_datetimes_never_reach_the_file(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(ValueError):
        store.save_machine_state("system", "system", "idle", datetime(2026, 1, 1))


def test_per_tick_reads_are_kept_only_until_something_changes(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.keep_tick_reads = True  # as the engine's own connection does
    store.set_position("a", "AAPL", 1.0, 100.0, NOW)
    store.records_stamp()
    assert [p.symbol for p in store.positions()] == ["AAPL"]
    before = store.statements
    assert [p.symbol for p in store.positions()] == ["AAPL"] and store.statements == before  # kept
    store.set_position("a", "MSFT", 2.0, 50.0, NOW)  # our write
    assert [p.symbol for p in store.positions()] == ["AAPL", "MSFT"]
    with pytest.raises(RuntimeError), store.transaction():  # a write, read back, then rolled back
        store.set_position("a", "TSLA", 1.0, 10.0, NOW)
        assert len(store.positions()) == 3
        raise RuntimeError("boom")
    assert [p.symbol for p in store.positions()] == ["AAPL", "MSFT"]
    other = StateStore(tmp_path / "s.db")  # another connection commits: seen once the stamp is read
    other.set_position("a", "MSFT", 0.0, 0.0, NOW)
    other.close()
    store.records_stamp()
    assert [p.symbol for p in store.positions()] == ["AAPL"]
    returned = store.positions()
    returned.clear()  # a caller's list is its own
    assert len(store.positions()) == 1


def test_a_reader_that_lives_long_sees_every_commit_of_the_engine(tmp_path) -> None:
    # The status page keeps one connection open and never reads the records' stamp: it must not keep reads.
    engine = StateStore(tmp_path / "s.db")
    engine.keep_tick_reads = True
    page = StateStore(tmp_path / "s.db")
    engine.set_position("a", "AAPL", 1.0, 100.0, NOW)
    assert [p.symbol for p in page.positions()] == ["AAPL"]
    engine.set_position("a", "MSFT", 1.0, 100.0, NOW)
    engine.set_position("a", "AAPL", 0.0, 0.0, NOW)
    assert [p.symbol for p in page.positions()] == ["MSFT"]


def test_a_commit_that_fails_keeps_nothing_read_inside_it(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.keep_tick_reads = True
    version = store.records_version
    real = store._conn

    class FailingCommit:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def execute(self, sql: str, *args: Any) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("disk I/O error")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    store._conn = FailingCommit(real)  # type: ignore[assignment]
    with pytest.raises(StateFileError, match="disk I/O error"), store.transaction():
        store.set_position("a", "AAPL", 1.0, 100.0, NOW)
        assert len(store.positions()) == 1
    store._conn = real
    assert store.records_version > version + 1 and store.positions() == []


def test_the_last_facts_are_stored_compressed_and_read_back_whole(tmp_path) -> None:
    import marshal

    store = StateStore(tmp_path / "s.db")
    record = marshal.dumps(({"market_open": True}, ("a", "b"), {f"bot{i}": (i, True, 1.5) for i in range(1000)}))
    store.save_last_facts([("tick", NOW, record)])
    assert store.last_facts("tick") == (NOW, record)
    stored = store._conn.execute("SELECT body FROM last_facts WHERE scope = 'tick'").fetchone()[0]
    assert len(stored) < len(record) / 4
    # a file written before compression holds the record as it was: still read
    store._conn.execute("UPDATE last_facts SET body = ? WHERE scope = 'tick'", (record,))
    assert store.last_facts("tick") == (NOW, record)
    small = marshal.dumps(({"market_open": True}, ("a",), {"bot0": (1,)}))  # a few bots: stored as it is
    store.save_last_facts([("tick", NOW, small)])
    assert store._conn.execute("SELECT body FROM last_facts").fetchone()[0] == small and store.last_facts("tick") == (NOW, small)


def test_times_are_written_in_utc_so_that_their_text_sorts_as_the_instants_do(tmp_path) -> None:
    """`orders_created_since` compares times as text: one written at -05:00 ("10:00-05:00", 15:00 UTC) sorts
    before "14:59+00:00" as text although it is later. Written in UTC, the text and the instants agree."""
    from zoneinfo import ZoneInfo

    from engine.core.store import OrderRow

    store = StateStore(tmp_path / "s.db")
    new_york = NOW.astimezone(ZoneInfo("America/New_York"))  # 10:00-05:00
    day, rest = date(2026, 11, 23), ("AAPL", "buy", 1.0, None, "market", None, "day", "new", None, 0.0, None, "", None)
    store.add_order(OrderRow("b-20261123-0001", "b", day, "entry", *rest, new_york, new_york))
    assert store.orders_created_since(NOW - timedelta(minutes=1)) == [NOW]
    assert store.orders_created_since(NOW + timedelta(seconds=1)) == []


def test_times_written_with_another_offset_before_are_moved_to_utc_once(tmp_path) -> None:
    """A state file of the previous schema (a simulation started at a New York time wrote -05:00) is rewritten
    in UTC when opened: the same instants, text that sorts as they do. A naive time stays as it was (unreadable)."""
    path = tmp_path / "s.db"
    StateStore(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO machine_states VALUES ('momentum', 'a', 'armed', '2026-11-23T10:00:00.250000-05:00')")
        conn.execute("INSERT INTO machine_states VALUES ('momentum', 'b', 'armed', '2026-11-23T10:00:00')")
        conn.execute("INSERT INTO halts (scope, reason, conditions, flatten, started_at, until) "
                     "VALUES ('system', 'r', '[]', 0, '2026-11-24T01:30:00+10:30', NULL)")  # fmt: skip
        conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = StateStore(path)
    assert store.schema_version == len(MIGRATIONS)
    texts = dict(store._conn.execute("SELECT bot_id, since FROM machine_states").fetchall())
    assert texts == {"a": "2026-11-23T15:00:00.250000+00:00", "b": "2026-11-23T10:00:00"}
    assert store._conn.execute("SELECT started_at, until FROM halts").fetchone()[:] == ("2026-11-23T15:00:00+00:00", None)


def _reader_sees(path, kind: str) -> list[str]:
    """What another connection reads: only what was committed."""
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT bot_id FROM machine_states WHERE kind = ? ORDER BY bot_id", (kind,))]


def _held_with_a_and_b(path, every: int) -> StateStore:
    """A store holding its commits, `every` transactions a commit, after two: bots a and b saved, one each."""
    store = StateStore(path)
    store.hold_commits(every)
    for bot in ("a", "b"):
        with store.transaction():
            store.save_machine_state("momentum", bot, "armed", NOW)
    return store


def test_held_commits_write_the_file_every_n_transactions_and_at_close(tmp_path) -> None:
    path = tmp_path / "s.db"
    store = _held_with_a_and_b(path, 3)
    assert [s.bot_id for s in store.machine_states("momentum")] == ["a", "b"]  # seen at once by its own connection
    assert _reader_sees(path, "momentum") == []  # not committed yet
    with store.transaction():
        store.save_machine_state("momentum", "c", "armed", NOW)
    assert _reader_sees(path, "momentum") == ["a", "b", "c"]  # the third transaction committed the three
    with store.transaction():
        store.save_machine_state("momentum", "d", "armed", NOW)
    store.close()
    assert _reader_sees(path, "momentum") == ["a", "b", "c", "d"]


def test_a_failed_held_transaction_undoes_itself_only(tmp_path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.hold_commits(100)
    with store.transaction():
        store.save_machine_state("momentum", "a", "armed", NOW)
    with pytest.raises(ValueError), store.transaction():
        store.save_machine_state("momentum", "b", "armed", NOW)
        store.bump_counter(date(2026, 11, 23), "b", "entries")
        raise ValueError("mid-tick failure")
    with store.transaction():  # the next one still works, inside the same held transaction
        store.save_machine_state("momentum", "c", "armed", NOW)
    assert store.counters(date(2026, 11, 23)) == {}
    store.commit_held()
    assert _reader_sees(path, "momentum") == ["a", "c"]


def test_held_commits_skip_asking_sqlite_whether_another_process_wrote(tmp_path) -> None:
    """While the write lock is held nobody else can commit: the stamp is ours alone, and costs no statement."""
    store = StateStore(tmp_path / "s.db")
    store.records_stamp()
    before = store.statements
    store.records_stamp()
    assert store.statements == before + 1  # not held: SQLite's data_version is read
    store.hold_commits(10)
    with store.transaction():
        store.save_machine_state("momentum", "a", "armed", NOW)
    before = store.statements
    assert store.records_stamp() == store.records_stamp()
    assert store.statements == before
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # and another writer indeed cannot commit
        other = sqlite3.connect(tmp_path / "s.db", timeout=0)
        other.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")


def test_hold_commits_wants_a_positive_count(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        StateStore(tmp_path / "s.db").hold_commits(0)


def test_held_commits_write_only_each_scopes_last_facts_and_forget_a_failed_transactions(tmp_path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.hold_commits(100)
    for minute in range(3):
        with store.transaction():
            store.save_last_facts([("tick", NOW + timedelta(minutes=minute), b"facts %d" % minute)])
    with pytest.raises(ValueError), store.transaction():
        store.save_last_facts([("tick", NOW + timedelta(minutes=3), b"never happened")])
        raise ValueError("mid-tick failure")
    assert store.last_facts("tick") == (NOW + timedelta(minutes=2), b"facts 2")  # its own connection reads it at once
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM last_facts").fetchone()[0] == 0  # nothing written yet
    store.close()
    assert StateStore(path).last_facts("tick") == (NOW + timedelta(minutes=2), b"facts 2")


def test_facts_held_outside_any_transaction_are_written_at_close(tmp_path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.hold_commits(5)
    store.save_last_facts([("tick", NOW, b"alone")])
    store.close()
    assert StateStore(tmp_path / "s.db").last_facts("tick") == (NOW, b"alone")


def test_held_transactions_sqlite_rolled_back_by_itself_stop_every_later_write(tmp_path) -> None:
    """An interrupted write (as a full disk or an I/O error can) makes SQLite roll back the whole held
    transaction: the ticks since the last commit are gone while the run went on from them. That is said, and
    every later write is refused, rather than the run carrying on from a file that no longer tells its story."""
    path = tmp_path / "s.db"
    store = _held_with_a_and_b(path, 100)
    with pytest.raises(StateFileError, match=r"last 3 transaction\(s\) held for one commit were lost"), store.transaction():
        store._conn.set_progress_handler(lambda: 1, 1)  # every statement from now on is interrupted
        store.save_machine_state("momentum", "c", "armed", NOW)
    store._conn.set_progress_handler(None, 1)
    with pytest.raises(StateFileError, match="were lost"), store.transaction():
        store.save_machine_state("momentum", "d", "armed", NOW)
    with pytest.raises(StateFileError, match="were lost"):
        store.commit_held()
    store.close()  # said already: closing raises nothing more
    store.close()
    assert _reader_sees(path, "momentum") == []


def test_closing_twice_is_harmless_and_an_unheld_store_commits_nothing_at_close(tmp_path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path)
    store._conn.execute("BEGIN")
    store._conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    store.close()  # a transaction left open is not committed by closing
    store.close()
    assert StateStore(path).meta("x") is None


class _InterruptedAfter:
    """The store's connection, with a signal's KeyboardInterrupt arriving just after one statement has returned
    (a handler runs at the next bytecode after SQLite's call: the statement is done)."""

    def __init__(self, conn: sqlite3.Connection, statement: str):
        self._conn, self._statement = conn, statement

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self._conn.execute(sql, *args)
        if sql == self._statement:
            self._statement = ""  # once
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


@pytest.mark.parametrize("statement", ["COMMIT", "BEGIN IMMEDIATE"])
def test_ctrl_c_or_sigterm_at_a_held_commit_loses_nothing(tmp_path, statement: str) -> None:
    """Stopped just after the held COMMIT, the store said the 3 transactions were lost and refused every later
    write (exit 1, not the stop's 143); just before it, it rolled them back. Both times they are in the file."""
    path = tmp_path / "s.db"
    store = _held_with_a_and_b(path, 3)
    if statement == "BEGIN IMMEDIATE":  # a commit with only the last facts waiting: it begins its own transaction
        store.commit_held()
        store.save_last_facts([("engine", NOW, b"facts")])
    store._conn = _InterruptedAfter(store._conn, statement)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        if statement == "COMMIT":
            with store.transaction():
                store.save_machine_state("momentum", "c", "armed", NOW)
        else:
            store.commit_held()
    store.close()  # no error: nothing was lost
    assert _reader_sees(path, "momentum") == (["a", "b", "c"] if statement == "COMMIT" else ["a", "b"])
    if statement == "BEGIN IMMEDIATE":
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM last_facts").fetchone()[0] == 1  # the waiting facts too


def test_a_wal_another_state_file_wrote_is_refused_and_the_file_left_as_it_was(tmp_path) -> None:
    """SQLite replays any -wal named after the file: a -wal copied from another state file (or a state file copied
    onto an older one without its own -wal) opened as that other file's records in this one's name, silently, and
    the first close wrote them into the file for good. Now the open refuses it (exit 2 through StateFileError)
    and writes nothing; the file's own -wal, as a kill leaves it, is still replayed."""
    import shutil

    kept = StateStore(tmp_path / "kept.db")
    kept.set_meta("who", "kept")
    kept.close()  # checkpointed: its records are in the file itself, and it has no -wal
    before = (tmp_path / "kept.db").read_bytes()
    other = StateStore(tmp_path / "other.db")
    other.set_meta("who", "other")
    shutil.copy(tmp_path / "other.db-wal", tmp_path / "kept.db-wal")  # taken while open: a -wal as a kill leaves it
    shutil.copy(tmp_path / "other.db", tmp_path / "crashed.db")
    shutil.copy(tmp_path / "other.db-wal", tmp_path / "crashed.db-wal")
    other.close()
    with pytest.raises(StateFileError, match="has a -wal beside it that another state file wrote") as refused:
        StateStore(tmp_path / "kept.db")
    assert not refused.value.runtime
    assert (tmp_path / "kept.db").read_bytes() == before
    (tmp_path / "kept.db-wal").unlink()
    (tmp_path / "kept.db-shm").unlink(missing_ok=True)
    store = StateStore(tmp_path / "kept.db")
    assert store.meta("who") == "kept"
    store.close()
    crashed = StateStore(tmp_path / "crashed.db")  # a file with its own -wal: what was committed is there
    assert crashed.meta("who") == "other"
    crashed.close()


def _grown(store: StateStore, rows: int = 60) -> None:
    """`meta` grown past one page, as a simulation's saved book grows it: its rows then sit on pages whose numbers
    differ from file to file, and a page another file's -wal brings seldom holds this file's id."""
    for n in range(rows):
        store.set_meta(f"filler.{n:03d}", "x" * 200)


def _wal_while_open(store: StateStore, edit: Callable[[StateStore], object]) -> bytes:
    """The -wal beside `store`'s file once `edit` is committed, taken while the file is open (as a kill leaves it)."""
    store._conn.execute("PRAGMA wal_autocheckpoint=0")
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    edit(store)
    return Path(f"{os.path.realpath(store.path)}-wal").read_bytes()


@pytest.mark.parametrize("edit", ["a halt", "an order's status"])
def test_a_wal_of_another_state_file_is_refused_whatever_pages_it_wrote(tmp_path, edit: str) -> None:
    """The check compared the file's id read without and through the -wal, but the id's row is written once, at the
    file's first open: a -wal of another state file's later commits (a halt, a tick's orders) seldom held its page,
    and every command, `status` included, replayed it into this file for good, records of both mixed. Every commit
    the engine makes now writes a row naming its file (`commit_mark`), and the -wal's pages are searched for such
    rows (wherever the page sits in either file): a -wal naming another file is refused, exit 2, both left as they
    were. And a file whose checkpointed part holds a mark takes no -wal whose commits name nothing (another
    program's: a hand edit of another file)."""
    kept = StateStore(tmp_path / "kept.db")
    _grown(kept)
    kept.close()
    before = (tmp_path / "kept.db").read_bytes()
    other = StateStore(tmp_path / "other.db")
    _grown(other)
    now = datetime(2026, 11, 23, 15, tzinfo=timezone.utc)
    if edit == "a halt":
        wal = _wal_while_open(other, lambda s: s.start_halt(SYSTEM_SCOPE, "news", ("operator",), False, now, None))
    else:
        wal = _wal_while_open(other, lambda s: s._write("UPDATE machine_states SET state = 'idle'"))
        other.save_machine_state("system", "system", "armed", now)
        wal = _wal_while_open(other, lambda s: s.save_machine_state("system", "system", "idle", now))
    other.close()
    Path(f"{tmp_path / 'kept.db'}-wal").write_bytes(wal)
    with pytest.raises(StateFileError, match="has a -wal beside it that another state file wrote") as refused:
        StateStore(tmp_path / "kept.db")
    assert not refused.value.runtime
    assert (tmp_path / "kept.db").read_bytes() == before and Path(f"{tmp_path / 'kept.db'}-wal").read_bytes() == wal
    # another program's commit to another file: no row names a file in it, and this file's commits all would
    foreign = sqlite3.connect(tmp_path / "other.db")
    foreign.execute("PRAGMA wal_autocheckpoint=0")
    with foreign:
        foreign.execute("INSERT INTO counters VALUES ('2026-11-23', 'x', 'entries', 1)")
    Path(f"{tmp_path / 'kept.db'}-wal").write_bytes(Path(f"{tmp_path / 'other.db'}-wal").read_bytes())
    foreign.close()
    with pytest.raises(StateFileError, match="whose commits do not name it"):
        StateStore(tmp_path / "kept.db")
    assert (tmp_path / "kept.db").read_bytes() == before


def test_a_wal_a_live_connection_of_another_process_writes_is_taken_and_one_its_kill_leaves_is_not(tmp_path) -> None:
    """A hand edit from a sqlite3 shell left open (or a test's connection not closed) keeps its commits, which name
    no file, in a live -wal: refusing it refused `run` and `validate` on a file another process merely had open.
    Only a -wal no connection has open (left by a kill, or copied in) is judged by whether its commits name the file."""
    import subprocess
    import sys

    db = tmp_path / "s.db"
    store = StateStore(db)
    _grown(store)
    store.close()
    edit = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_autocheckpoint=0'); "
        "c.execute(\"INSERT INTO counters VALUES ('2026-11-23', 'x', 'entries', 1)\"); c.commit(); "
        "print('edited', flush=True); sys.stdin.read()"
    )
    shell = subprocess.Popen([sys.executable, "-c", edit, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None and shell.stdout.readline() == "edited\n"
        wal = Path(f"{db}-wal").read_bytes()
        opened = StateStore(db)  # the shell's connection is open: its -wal is live, and read
        assert opened._conn.execute("SELECT value FROM counters WHERE bot_id = 'x'").fetchone()[0] == 1
        opened._conn.close()  # not `close()`: as a kill leaves it, the -wal not taken into the file
    finally:
        shell.kill()
        shell.wait()
    Path(f"{db}-shm").unlink(missing_ok=True)
    Path(f"{db}-wal").write_bytes(wal)  # the shell killed: its -wal left, no connection on it
    with pytest.raises(StateFileError, match="whose commits do not name it"):
        StateStore(db)


def test_the_wal_a_killed_engine_leaves_is_its_files_own_and_replayed(tmp_path) -> None:
    """The other side of the check: a file's own -wal, of any commits since its last checkpoint (a halt, a tick's
    records, a backtest's held commit), names the file and is replayed as SQLite always does; so is one an older
    engine wrote beside a file it never marked."""
    import shutil

    store = StateStore(tmp_path / "s.db")
    _grown(store)
    now = datetime(2026, 11, 23, 15, tzinfo=timezone.utc)
    _wal_while_open(store, lambda s: s.start_halt(SYSTEM_SCOPE, "news", ("operator",), False, now, None))
    store.hold_commits(3)
    for state in ("armed", "idle"):
        store.save_machine_state("system", "system", state, now)
    store.commit_held()
    shutil.copy(tmp_path / "s.db", tmp_path / "killed.db")
    shutil.copy(tmp_path / "s.db-wal", tmp_path / "killed.db-wal")
    store.close()
    killed = StateStore(tmp_path / "killed.db")
    system = killed.machine_state("system", "system")
    assert [h.reason for h in killed.halts()] == ["news"] and system is not None and system.state == "idle"
    killed.close()
    old = sqlite3.connect(tmp_path / "old.db")  # an older engine's file: no mark, and its -wal names nothing
    for script in MIGRATIONS:
        old.executescript(script)
    old.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("PRAGMA wal_autocheckpoint=0")
    with old:
        old.execute("INSERT INTO machine_states VALUES ('system', 'system', 'idle', '2026-11-23T15:00:00+00:00')")
    shutil.copy(tmp_path / "old.db", tmp_path / "old_killed.db")
    shutil.copy(tmp_path / "old.db-wal", tmp_path / "old_killed.db-wal")
    old.close()
    reopened = StateStore(tmp_path / "old_killed.db")
    assert reopened.machine_state("system", "system") is not None
    reopened.close()


def test_a_file_cut_to_nothing_is_refused_at_open_with_what_is_beside_it_left_as_it_was(tmp_path) -> None:
    """SQLite reads a file of 0 bytes as a new database, writes one into it and deletes a -wal beside it: a state file
    cut to nothing beside its lock file (a run used it) or a killed engine's -wal (its last records) was written over
    by whichever command opened it first (`halt`, the status page's button). The open refuses it (exit 2) and writes
    nothing; a first run, which made the lock file itself just now, and a new empty file alone still open."""
    import shutil

    db = tmp_path / "s.db"
    db.touch()
    Path(f"{db}.lock").touch()
    with pytest.raises(StateFileError, match="is empty \\(0 bytes\\), but a run has used it") as refused:
        StateStore(db)
    assert not refused.value.runtime and db.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db", "s.db.lock"]
    StateStore(db, lock_made_now=True).close()  # a first run's: the lock file is its own
    assert db.stat().st_size > 0
    other = StateStore(tmp_path / "killed.db")
    other.set_meta("who", "killed")
    wal = Path(f"{tmp_path / 'killed.db'}-wal").read_bytes()
    other.close()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "s.db").touch()
    (cut / "s.db-wal").write_bytes(wal)
    for lock_made_now in (False, True):
        with pytest.raises(StateFileError, match=f"with a -wal of {len(wal)} bytes beside it"):
            StateStore(cut / "s.db", lock_made_now=lock_made_now)
    assert (cut / "s.db").read_bytes() == b"" and (cut / "s.db-wal").read_bytes() == wal
    shutil.rmtree(cut)
    fresh = tmp_path / "new.db"
    fresh.touch()
    StateStore(fresh).close()  # `touch`ed, nothing beside it: a new file
    assert fresh.stat().st_size > 0


def test_an_order_read_again_unchanged_is_not_parsed_again_and_a_changed_one_is(tmp_path) -> None:
    """A tick reads the same orders again and again (each bot's last entry after every write, the working ones):
    checking and parsing a row cost about 12 µs, most of a view read again after a write. An unchanged row is the
    same (frozen) OrderRow; one whose values changed is parsed and checked again, so an edit to a value the engine
    never writes is still refused as the file's error, never answered from what was read before it."""
    from engine.core.store import OrderRow

    store = StateStore(tmp_path / "s.db")
    day, rest = date(2026, 11, 23), ("AAPL", "buy", 1.0, None, "market", None, "day", "new", None, 0.0, None, "", None)
    store.add_order(OrderRow("b-20261123-0001", "b", day, "entry", *rest, NOW, NOW))
    first = store.last_entries(day)["b"]
    assert store.order("b-20261123-0001") is first and store.orders(statuses=("new",)) == [first]
    assert store.orders(statuses=("new",))[0] is first
    store.update_order("b-20261123-0001", NOW + timedelta(seconds=1), status="filled", filled_qty=1.0)
    changed = store.order("b-20261123-0001")
    assert changed is not None and changed is not first and (changed.status, changed.filled_qty) == ("filled", 1.0)
    store._conn.execute("UPDATE orders SET side = 'BUY'")
    with pytest.raises(StateFileError, match="side 'BUY'"):
        store.order("b-20261123-0001")


def test_days_with_activity_are_those_any_daily_record_is_dated_on(tmp_path) -> None:
    """A run that changes system.timezone is refused while the file holds a record of the date either zone calls
    today (`startup.changed_zone`): an order, a counter, realized P&L and a trade each count a day's trading, so
    each alone makes its date active; a date with none of them is not, whatever other dates hold."""
    from engine.core.store import OrderRow, TradeRow

    store = StateStore(tmp_path / "s.db")
    days = [date(2026, 11, 23) + timedelta(days=n) for n in range(5)]
    assert store.days_with_activity(days) == set() and store.days_with_activity([]) == set()
    rest = ("AAPL", "buy", 1.0, None, "market", None, "day", "new", None, 0.0, None, "", None)
    store.add_order(OrderRow("b-20261123-0001", "b", days[0], "entry", *rest, NOW, NOW))
    store.bump_counter(days[1], "b", "fills")
    store.add_realized_pnl(days[2], "b", 0.0)
    store.add_trade(TradeRow("b", "AAPL", days[3], NOW, NOW, 1.0, 10.0, 10.0, 0.0, 0.0, "stop_loss"))
    assert store.days_with_activity(days) == set(days[:4])
    assert store.days_with_activity([days[1], days[4]]) == {days[1]}


def test_a_read_snapshot_sees_one_moment_whatever_another_connection_commits(tmp_path) -> None:
    """An operator's answer reads several tables (`status`, the status page, `why`): read statement by statement, a
    tick committing between two reads (a halt and a machine's move to halted, one commit) gave half of each. Inside
    `read_snapshot` every read is of the moment of the first; after it, the commit is seen."""
    reader, engine = StateStore(tmp_path / "s.db"), StateStore(tmp_path / "s.db")
    engine.save_machine_state("system", "system", "armed", NOW)
    with reader.read_snapshot():
        assert reader.halts(open_only=True) == []
        with engine.transaction():  # WAL: the engine's write is not held up by the reader
            engine.start_halt(SYSTEM_SCOPE, "kill", ("max_daily_loss_halt",), True, NOW, None)
            engine.save_machine_state("system", "system", "halted", NOW)
        assert [m.state for m in reader.machine_states()] == ["armed"]
        assert reader.halts(open_only=True) == []
    assert [m.state for m in reader.machine_states()] == ["halted"]
    assert len(reader.halts(open_only=True)) == 1
    reader.close()
    engine.close()


def test_a_write_inside_a_read_snapshot_is_refused_as_a_bug(tmp_path) -> None:
    """A write decided on a snapshot may rest on a view already old: a caller's mistake, said as one (never the
    state file's), and the snapshot is let go either way."""
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(sqlite3.ProgrammingError, match="inside read_snapshot"), store.read_snapshot():
        store.set_meta("broker", "sim")
    store.set_meta("broker", "sim")  # outside it, as ever
    assert store.meta("broker") == "sim"
    with store.transaction(), store.read_snapshot():  # inside a transaction it is the transaction's own view
        store.set_meta("broker", "alpaca")
    assert store.meta("broker") == "alpaca"


def test_a_write_ahead_log_deleted_under_the_engine_stops_it_and_its_close_keeps_every_commit(tmp_path) -> None:
    """`rm state/*-wal` (a cleanup of what looks like a temporary file) under a running engine: SQLite writes on into
    the deleted -wal, where no other process reads (the operator's `halt` failed as "an I/O error") and a kill loses
    every commit since the last checkpoint; the run traded on and ended 0. It now stops before the next tick, as for
    the state file itself, and its close still copies the deleted log's commits into the file."""
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.set_meta("before", "1")
    store.check_at_path()
    Path(f"{path}-wal").unlink()
    store.set_meta("after", "2")  # into the deleted -wal
    with pytest.raises(StateFileError) as stopped:
        store.check_at_path()
    assert stopped.value.runtime and f"{path.name}-wal was deleted or replaced" in stopped.value.message
    store.close()
    again = StateStore(path)
    assert (again.meta("before"), again.meta("after")) == ("1", "2")
    again.close()


def test_a_write_ahead_log_another_connection_leaves_is_the_same_one(tmp_path) -> None:
    """Another process's connection (`status`, `halt`) opening and closing beside the engine, and a checkpoint that
    empties the -wal, leave the engine's -wal where it was: not a log deleted under it."""
    path = tmp_path / "s.db"
    store = StateStore(path)
    store.set_meta("x", "1")
    store.check_at_path()
    other = StateStore(path)
    other.set_meta("y", "2")
    other.close()
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.set_meta("x", "3")
    store.check_at_path()
    store.close()


_ENGINE_HOLDING_THE_LOCK = """
import sys
from pathlib import Path
from engine.core.lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_shm_deleted_under_the_engine_stops_it_and_no_command_opens_the_file_meanwhile(tmp_path) -> None:
    """`rm state/*-shm` under a running engine: the next command made a new -shm, so its writes no longer waited
    for the engine's nor did the engine read them: an operator's `halt` said "recorded", the engine traded on
    unhalted, and its close wrote the file without the halt. Now the command is refused while the engine (another
    process holding the run lock) runs on the file without its -shm, and the engine stops before its next tick."""
    import subprocess
    import sys

    path = tmp_path / "s.db"
    store = StateStore(path)
    store.set_meta("x", "1")
    store.check_at_path()
    holder = subprocess.Popen([sys.executable, "-c", _ENGINE_HOLDING_THE_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        Path(f"{path}-shm").unlink()
        with pytest.raises(StateFileError) as refused:
            StateStore(path)  # the operator's `halt`
        assert refused.value.runtime and "has lost its -shm file under the engine running on it" in refused.value.message
        assert not Path(f"{path}-shm").exists()
    finally:
        holder.communicate("")
    with pytest.raises(StateFileError) as stopped:
        store.check_at_path()
    assert stopped.value.runtime and f"{path.name}-shm was deleted or replaced" in stopped.value.message
    store.close()
    again = StateStore(path)  # no engine any more: SQLite rebuilds the index, as after a kill
    assert again.meta("x") == "1"
    again.close()
