"""A state file the engine cannot trust is refused with one StateFileError naming the file and what is wrong,
never a traceback of whatever failed first, and nothing is written into it. Real SQLite files, damaged the
ways a tester (or a disk) damages them."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from engine.core.store import MIGRATIONS, SYSTEM_SCOPE, OrderRow, StateFileError, StateStore, state_file_error

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def _filled(path: Path) -> Path:
    """A state file with a row in every table the engine reads back."""
    store = StateStore(path)
    store.save_machine_state("momentum", "mom_AAPL", "armed", NOW)
    store.start_halt(SYSTEM_SCOPE, "operator", ("operator",), False, NOW, None)
    store.set_position("mom_AAPL", "AAPL", 1.0, 100.0, NOW)
    store.bump_counter(NOW.date(), "mom_AAPL", "order_seq")
    day, cid = date(2026, 11, 23), "mom_AAPL-20261123-0001"
    entry = ("entry", "AAPL", "buy", 1.0, None, "market", None, "day", "filled", "b1", 1.0, 100.0, "", None, NOW, NOW)
    store.add_order(OrderRow(cid, "mom_AAPL", day, *entry))
    store.save_last_facts([("tick", NOW, b"x" * 5000)])
    store.close()
    return path


def _edit(sql: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(sql)
        conn.close()

    return edit


def _script(sql: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        conn.executescript(sql)
        conn.close()

    return edit


_POSITIONS = (
    "bot_id TEXT NOT NULL, symbol TEXT NOT NULL, qty {qty} NOT NULL, avg_entry_price REAL NOT NULL, opened_at TEXT NOT NULL, "
    "sold_qty REAL NOT NULL DEFAULT {sold}, sold_value REAL NOT NULL DEFAULT 0, realized REAL NOT NULL DEFAULT 0, "
    "bought_qty REAL NOT NULL DEFAULT 0, PRIMARY KEY (bot_id, symbol)"
)
_HALTS = (
    "{id}, scope TEXT NOT NULL, reason TEXT NOT NULL, conditions TEXT NOT NULL, flatten INTEGER NOT NULL, "
    "started_at TEXT NOT NULL, until TEXT, ended_at TEXT, ended_by TEXT"
)


def _rebuild(table: str, columns: str) -> Callable[[Path], None]:
    """`table` made again with these columns, its rows and its indexes kept, as a database browser alters one."""

    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        indexes = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
        conn.executescript(f"ALTER TABLE {table} RENAME TO old; CREATE TABLE {table} ({columns}); "
                           f"INSERT INTO {table} SELECT * FROM old; DROP TABLE old; " + "; ".join(indexes))  # fmt: skip
        conn.close()

    return edit


DAMAGED_AT_OPEN: dict[str, tuple[Callable[[Path], object], str]] = {  # what a damage returns is not used
    "random bytes": (lambda p: p.write_bytes(bytes(range(256)) * 64), "not a SQLite database"),
    "text": (lambda p: p.write_text("hello\n"), "not a SQLite database"),
    # SQLite took a file of one byte for an empty database: the run started afresh, its halts gone, exit 0
    "one byte": (lambda p: p.write_bytes(b"x"), "not a SQLite database"),
    "a SQLite header then garbage": (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8), "not a SQLite"),
    "a newer schema": (_edit("PRAGMA user_version=99"), "newer than this engine"),
    # no engine writes one; taken as an old version, migrations ran from the end of the list and set it to 0
    "a negative schema version": (_edit("PRAGMA user_version=-1"), "schema version -1"),
    "a missing column": (_edit("ALTER TABLE halts DROP COLUMN until"), "table halts lacks the column(s) until"),
    "a missing table": (_edit("DROP TABLE machine_states"), "has no table machine_states"),
    # every insert into it fails: `halt` was a traceback (IntegrityError, taken for the engine's own bug), unrecorded
    "an extra required column": (_script(
        "ALTER TABLE halts RENAME TO old_halts;"
        "CREATE TABLE halts (id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, reason TEXT NOT NULL, "
        "conditions TEXT NOT NULL, flatten INTEGER NOT NULL, started_at TEXT NOT NULL, until TEXT, ended_at TEXT, "
        "ended_by TEXT, operator TEXT NOT NULL);"
        "DROP TABLE old_halts;"
    ), "table halts has the column(s) operator"),
    # orders are found by status: one the engine does not know was never looked up again, taken for ended
    "an order status no engine writes": (
        _edit("UPDATE orders SET status = 'partially filled'"), "'mom_AAPL-20261123-0001' is 'partially filled'"
    ),
    "an order's status in bytes": (_edit("UPDATE orders SET status = X'00'"), "'mom_AAPL-20261123-0001' is b'\\x00'"),
    # each refused or changed the engine's writes only when one met it: a tick, or `halt`, ended in a traceback
    "a trigger added by hand": (
        _edit("CREATE TRIGGER no_moves BEFORE UPDATE ON machine_states BEGIN SELECT RAISE(ABORT, 'nope'); END"),
        "the trigger 'no_moves' on machine_states",
    ),
    "a unique index added by hand": (
        _edit("CREATE UNIQUE INDEX one_halt_a_scope ON halts (scope)"), "the unique index 'one_halt_a_scope' on halts"
    ),
    "a CHECK constraint added by hand": (_script(
        "ALTER TABLE counters RENAME TO old_counters;"
        "CREATE TABLE counters (trading_date TEXT NOT NULL, bot_id TEXT NOT NULL, name TEXT NOT NULL, "
        "value INTEGER NOT NULL CHECK (value < 2), PRIMARY KEY (trading_date, bot_id, name));"
        "DROP TABLE old_counters;"
    ), "CHECK constraint(s) in table counters"),
    # The columns were all there, so the file was taken; each broke a write, or the reading of it, mid-run: a
    # fill's position read back as text ('1.5' is not a number) after the order went out; every machine's move
    # ("ON CONFLICT clause does not match any PRIMARY KEY"); a new position's partial exits starting at 5; a
    # halt whose id stayed NULL, so that it could never be ended by id; the latest entry of each bot (by rowid)
    "a number column made text": (_rebuild("positions", _POSITIONS.format(qty="TEXT", sold="0")), "column qty is TEXT, not REAL"),
    "a primary key removed": (
        _rebuild("machine_states", "kind TEXT NOT NULL, bot_id TEXT NOT NULL, state TEXT NOT NULL, since TEXT NOT NULL"),
        "column kind is not in its primary key",
    ),
    "a default changed": (_rebuild("positions", _POSITIONS.format(qty="REAL", sold="5")), "column sold_qty defaults to 5, not 0"),
    "an id that is not the row's": (_rebuild("halts", _HALTS.format(id="id INT PRIMARY KEY")), "column id is INT, not INTEGER"),
    # the halts in force are read through their index (INDEXED BY): without it every read of them failed, `status`
    # and the run's first tick, while `halt` went on writing; the others keep each tick's reads from growing with
    # the history
    "a missing index": (_edit("DROP INDEX halts_open"), "lacks the index(es) halts_open"),
    "an index made again on other columns": (
        _script("DROP INDEX orders_by_status; CREATE INDEX orders_by_status ON orders (symbol)"),
        "its index orders_by_status is not as this engine made it",
    ),
    "a table without rowids": (_script(
        "ALTER TABLE last_facts RENAME TO old; CREATE TABLE last_facts (scope TEXT PRIMARY KEY, at TEXT NOT NULL, "
        "body BLOB NOT NULL) WITHOUT ROWID; DROP TABLE old;"
    ), "table last_facts is not as this engine made it (it is WITHOUT ROWID"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_AT_OPEN))
def test_a_damaged_file_is_refused_at_open_as_damaged(tmp_path, damage: str) -> None:
    path = _filled(tmp_path / "s.db")
    breaks, what = DAMAGED_AT_OPEN[damage]
    breaks(path)
    with pytest.raises(StateFileError) as caught:
        StateStore(path)
    assert what in str(caught.value) and not caught.value.runtime
    assert caught.value.message.startswith(f"state file {path}: ")
    assert "\n" not in caught.value.message


def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StateFileError, match=r"not a Trading Hydra state file.*users") as caught:
        StateStore(path)
    assert not caught.value.runtime
    assert path.read_bytes() == before  # no table of ours was added to it


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS) + 1))
def test_another_applications_database_with_a_schema_version_of_its_own_is_refused_untouched(tmp_path, version) -> None:
    """Many applications keep their own schema number in `PRAGMA user_version`: such a file was taken for one of
    ours, switched to WAL and tried with the migrations before its missing tables were noticed, so the refused
    command had changed the other application's file."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute(f"PRAGMA user_version={version}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StateFileError, match=rf"not a Trading Hydra state file \(its schema version {version} .*notes") as caught:
        StateStore(path)
    assert not caught.value.runtime
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage", sorted(DAMAGED_AT_OPEN))
def test_a_damaged_file_in_rollback_mode_is_refused_untouched(tmp_path, damage: str) -> None:
    """A state file copied out of WAL mode (a backup tool, `sqlite3 .backup`, a database browser's save) and then
    damaged: its journal mode was switched before its tables were looked at, a refused file changed all the same."""
    path = _filled(tmp_path / "s.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    breaks, what = DAMAGED_AT_OPEN[damage]
    breaks(path)
    before = path.read_bytes()
    with pytest.raises(StateFileError, match=re.escape(what)):
        StateStore(path)
    assert path.read_bytes() == before


def test_a_stale_wal_of_another_database_is_refused_rather_than_read_as_an_empty_state(tmp_path) -> None:
    """SQLite replays a -wal beside the file whatever database wrote it: the state (and its halts) would be
    replaced by the other database's pages, and a run would start afresh."""
    path = _filled(tmp_path / "s.db")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE z (x)")
    conn.commit()
    Path(f"{path}-wal").write_bytes(Path(f"{other}-wal").read_bytes())
    Path(f"{path}-shm").write_bytes(Path(f"{other}-shm").read_bytes())
    conn.close()
    with pytest.raises(StateFileError):
        StateStore(path)


def test_a_folder_at_the_path_is_refused(tmp_path) -> None:
    (tmp_path / "s.db").mkdir()
    with pytest.raises(StateFileError, match="is a folder") as caught:
        StateStore(tmp_path / "s.db")
    assert not caught.value.runtime


def test_a_path_under_a_file_is_a_runtime_error(tmp_path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(StateFileError, match="its folder cannot be created") as caught:
        StateStore(tmp_path / "plain" / "s.db")
    assert caught.value.runtime


UNREADABLE_ROWS: dict[str, tuple[str, Callable[[StateStore], object]]] = {
    "a machine's since": ("UPDATE machine_states SET since = 'yesterday'", lambda s: s.machine_states()),
    "a naive since": ("UPDATE machine_states SET since = '2026-11-23T10:00:00'", lambda s: s.machine_states()),
    "a halt's start": ("UPDATE halts SET started_at = 'garbage'", lambda s: s.halts()),
    "a halt's until": ("UPDATE halts SET until = 'soon'", lambda s: s.halt_in_force(SYSTEM_SCOPE, NOW)),
    "a naive until": ("UPDATE halts SET until = '2026-11-24T10:00:00'", lambda s: s.halt_in_force(SYSTEM_SCOPE, NOW)),
    "a halt's conditions": ("UPDATE halts SET conditions = '{not json'", lambda s: s.halts(open_only=True)),
    "an order's time": ("UPDATE orders SET created_at = 'x'", lambda s: s.orders(statuses=("filled",))),
    "an order's day": ("UPDATE orders SET trading_date = 'y'", lambda s: s.last_trading_date()),
    "a position's opening": ("UPDATE positions SET opened_at = 'zz'", lambda s: s.positions()),
    "a naive opening": ("UPDATE positions SET opened_at = '2026-11-23T10:00:00'", lambda s: s.positions()),
    "an order's naive time": ("UPDATE orders SET created_at = '2026-11-23T10:00:00'", lambda s: s.orders(statuses=("filled",))),
    "a position's quantity": ("UPDATE positions SET qty = 'many'", lambda s: s.positions("mom_AAPL")),
    "the last facts' body": ("UPDATE last_facts SET body = X'007A6C69623A0000'", lambda s: s.last_facts("tick")),
    # SQLite keeps whatever a hand edit writes, whatever the column's type: bytes where text belongs failed far
    # from the store (`status` formatting the halt's reason, `run` comparing symbols), as a traceback
    "a halt's reason in bytes": ("UPDATE halts SET reason = X'FF00'", lambda s: s.halts(open_only=True)),
    "a halt's conditions not a list": ("""UPDATE halts SET conditions = '"operator"'""", lambda s: s.halts()),
    "a machine's state in bytes": ("UPDATE machine_states SET state = X'6964'", lambda s: s.machine_states()),
    "a position's symbol in bytes": ("UPDATE positions SET symbol = X'41'", lambda s: s.positions()),
    "an infinite position": ("UPDATE positions SET qty = 9e999", lambda s: s.positions()),
    "an order's quantity in words": ("UPDATE orders SET qty = 'lots'", lambda s: s.orders(statuses=("filled",))),
    # read by truthiness, 'false' (or 'no') was a halt that flattens: the kill switch sold every position
    "a halt's flatten in words": ("UPDATE halts SET flatten = 'false'", lambda s: s.halts(open_only=True)),
    "a halt's flatten neither 0 nor 1": ("UPDATE halts SET flatten = 2", lambda s: s.halts(open_only=True)),
    # a position is long and was bought at a price above 0: an entry price of 0 or below, read as real, made the
    # position a gain of thousands of percent, and its take-profit exit sold it
    "a position's entry price of 0": ("UPDATE positions SET avg_entry_price = 0", lambda s: s.positions()),
    "a position's entry price below 0": ("UPDATE positions SET avg_entry_price = -1", lambda s: s.positions()),
    "a position of 0": ("UPDATE positions SET qty = 0", lambda s: s.positions()),
    "a short position": ("UPDATE positions SET qty = -5", lambda s: s.positions("mom_AAPL")),
    "a position's sold quantity below 0": ("UPDATE positions SET sold_qty = -1", lambda s: s.positions()),
    # the engine only adds to a counter: -100 entries let a bot make 100 more than its daily cap
    "a counter below 0": ("UPDATE counters SET value = -100", lambda s: s.counters(NOW.date())),
    "an order sequence below 0": ("UPDATE counters SET value = -1", lambda s: s.counter(NOW.date(), "mom_AAPL", "order_seq")),
    # an intent still pending after a restart is resent as its row says: an exit edited to buy bought
    "an exit that buys": ("UPDATE orders SET purpose = 'exit'", lambda s: s.orders(statuses=("filled",))),
    "a side in capitals": ("UPDATE orders SET side = 'BUY'", lambda s: s.order("mom_AAPL-20261123-0001")),
    "an order's purpose unknown": ("UPDATE orders SET purpose = 'hedge'", lambda s: s.orders()),
    "an order type of no request": ("UPDATE orders SET order_type = 'stop'", lambda s: s.orders(statuses=("filled",))),
    "a time in force of no request": ("UPDATE orders SET time_in_force = 'forever'", lambda s: s.last_entries(NOW.date())),
    # read through str(), bytes were a broker named "b'\\x00'", the simulation's time taken for the wall clock's
    "a meta value in bytes": ("INSERT INTO meta VALUES ('broker', X'00')", lambda s: s.meta("broker")),
    "an order's size below 0": ("UPDATE orders SET qty = -1", lambda s: s.orders(statuses=("filled",))),
    "an order's limit of 0": ("UPDATE orders SET limit_price = 0", lambda s: s.orders()),
    "an order's filled quantity below 0": ("UPDATE orders SET filled_qty = -1", lambda s: s.orders()),
    "an infinite counter": ("INSERT INTO counters VALUES ('2026-11-23', 'mom_AAPL', 'entries', 9e999)", lambda s: s.counters(NOW.date())),
}


@pytest.mark.parametrize("row", sorted(UNREADABLE_ROWS))
def test_a_row_that_does_not_parse_is_a_state_file_error(tmp_path, row: str) -> None:
    path = _filled(tmp_path / "s.db")
    sql, read = UNREADABLE_ROWS[row]
    _edit(sql)(path)
    store = StateStore(path)
    with pytest.raises(StateFileError, match=r"a row of table .* cannot be read") as caught:
        read(store)
    assert not caught.value.runtime


def test_sqlites_errors_are_told_apart_runtime_or_damaged(tmp_path) -> None:
    """Real errors, not made-up ones: a write to a file opened read-only is runtime (exit 1), a file that is
    not a database is damaged (exit 2)."""
    path = _filled(tmp_path / "s.db")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as readonly:
        conn.execute("DELETE FROM halts")
    conn.close()
    assert state_file_error(path, readonly.value).runtime
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all, but long enough to have a header" * 10)
    conn = sqlite3.connect(junk)
    with pytest.raises(sqlite3.Error) as notadb:
        conn.execute("SELECT * FROM sqlite_master")
    conn.close()
    assert not state_file_error(junk, notadb.value).runtime


def test_a_write_that_fails_is_named_after_the_file_and_rolled_back(tmp_path) -> None:
    path = _filled(tmp_path / "s.db")
    store = StateStore(path)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    reader.row_factory = sqlite3.Row
    store._conn.close()
    store._conn = reader  # the file can be read but not written: SQLite's own readonly error
    with pytest.raises(StateFileError, match="cannot be written") as caught:
        store.start_halt(SYSTEM_SCOPE, "x", ("operator",), False, NOW, None)
    assert caught.value.runtime and caught.value.path == path
    assert len(store.halts()) == 1


def test_the_engines_own_mistakes_are_not_called_a_damaged_file(tmp_path) -> None:
    """A constraint the engine breaks, or a closed connection it uses, is a bug: told as itself, never as "the
    state file is damaged", which could lead an operator to delete a sound file (its halts, its positions)."""
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError), store.transaction():
        store._write("INSERT INTO meta (key, value) VALUES ('k', 'a')")
        store._write("INSERT INTO meta (key, value) VALUES ('k', 'b')")
    store.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        store.meta("k")
    assert not isinstance(closed.value, StateFileError)


def test_a_path_that_cannot_be_looked_at_is_a_runtime_error_not_a_traceback(tmp_path, monkeypatch) -> None:
    """A folder on the way that may not be searched: Path.exists raises PermissionError for it. (The tests run
    as root, whom no permission stops, so the refusal the kernel would give is given here.)"""
    from engine.core.store import state_file_exists

    locked = tmp_path / "locked" / "s.db"
    real_stat = Path.stat

    def stat(self: Path, *args: object, **kwargs: object) -> object:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)
    assert state_file_exists(tmp_path / "nothing.db") is False
    (tmp_path / "a_file").write_text("x")
    assert state_file_exists(tmp_path / "a_file" / "below.db") is False  # ENOTDIR: nothing can be there
    with pytest.raises(StateFileError, match="cannot be looked at") as caught:
        StateStore(locked)
    assert caught.value.runtime


_PAST_THE_SIZE_LIMIT = """
import resource, signal, sys
from datetime import datetime, timezone
from pathlib import Path
from engine.core.store import StateFileError, StateStore

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG instead of killing us
store = StateStore(Path(sys.argv[1]))
_soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # no room for the -wal's next frames: a full disk
try:
    store.save_last_facts([("tick", datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc), __import__("os").urandom(100_000))])
except StateFileError as exc:
    print(exc.runtime, exc.message)
"""


def test_a_write_past_the_file_size_limit_says_so_not_only_an_io_error(tmp_path) -> None:
    """SQLite tells a full disk as SQLITE_FULL for some writes only: one past the file size limit (EFBIG, as a
    quota or `ulimit -f` refuses it) was "an I/O error while reading or writing it (disk I/O error)", which says
    nothing of what to fix. The kernel's own limit in a child process, not a stand-in."""
    import subprocess
    import sys

    path = _filled(tmp_path / "s.db")
    done = subprocess.run([sys.executable, "-c", _PAST_THE_SIZE_LIMIT, str(path)], capture_output=True, text=True, check=True)
    assert done.stdout.startswith(f"True state file {path}: cannot be written (a full disk, or past the file size limit?)"), done


def test_a_schema_damaged_into_bytes_that_are_not_utf8_is_a_damaged_file_not_a_traceback(tmp_path: Path) -> None:
    """SQLite's "malformed database schema (...)" quotes the damaged bytes; Python's sqlite3 cannot decode the
    message and raises UnicodeDecodeError instead of the DatabaseError: a traceback from `status`, `health` and
    every command that opens the file, exit 1 (found by tools/clifuzz.py). It is the file's damage (exit 2)."""
    path = _filled(tmp_path / "s.db")
    raw = path.read_bytes()
    assert raw.count(b"tablehaltshalts") == 1  # the schema's row of table halts: its type, name and table name
    path.write_bytes(raw.replace(b"tablehaltshalts", b"table\xc6altshalts"))
    kept = path.read_bytes()
    with pytest.raises(StateFileError) as caught:
        StateStore(path)
    assert not caught.value.runtime and "malformed database schema" in str(caught.value), str(caught.value)
    assert path.read_bytes() == kept


_HOT_JOURNAL = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=DELETE")
conn.execute("CREATE TABLE t (x TEXT)")
conn.executemany("INSERT INTO t VALUES (?)", [("a" * 200,)] * 2000)
conn.execute("PRAGMA cache_size=1")  # the update spills its pages into the file: the journal holds what it overwrote
conn.execute("BEGIN")
conn.execute("UPDATE t SET x = 'b'")
os._exit(0)  # killed mid-transaction: the journal is hot, and SQLite plays it back at the next open
"""


def test_another_databases_rollback_journal_beside_the_file_is_refused_and_nothing_played_into_it(tmp_path: Path) -> None:
    """SQLite plays a hot rollback journal (`NAME-journal`) back into the file of that name at its first read,
    whatever database wrote it and whatever the file's journal mode: another database's, copied in with a backup or
    left by a kill of another program, was written over the state file's pages by `status`, which then called the
    file damaged, with its halts and orders gone. The engine keeps its file in WAL mode and never writes one, so
    such a journal is refused before SQLite opens the file, and both are left as they were. A real hot journal,
    made by killing a writer mid-transaction in a child process."""
    import shutil
    import subprocess
    import sys

    path = _filled(tmp_path / "s.db")
    other = tmp_path / "other.db"
    subprocess.run([sys.executable, "-c", _HOT_JOURNAL, str(other)], check=True)
    journal = tmp_path / "s.db-journal"
    shutil.copyfile(tmp_path / "other.db-journal", journal)
    before, kept = path.read_bytes(), journal.read_bytes()
    with pytest.raises(StateFileError) as refused:
        StateStore(path)
    assert not refused.value.runtime and "s.db-journal" in refused.value.message, refused.value.message
    assert path.read_bytes() == before and journal.read_bytes() == kept
    journal.unlink()
    StateStore(path).close()  # once it is moved away the file opens as it was
