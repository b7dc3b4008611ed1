"""Durable state in SQLite: machine states, orders, owned positions, daily counters, halts and their history.

WAL mode, a schema version with forward-only migrations, and explicit transactions: the trading loop writes
each tick's changes in one transaction, and an order intent is committed before it is sent. Tests use real
SQLite files in temporary folders, never a mock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sqlite3
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from engine.core import failpoints, jsontext
from engine.core import order_lifecycle as lifecycle


def _time_in_utc(table: str, column: str) -> str:
    """One column's times rewritten in UTC, once (migration 5): queries compare times as text, and a row written
    with another offset (a simulation started at a New York time) sorted in the wrong place. Only times that carry
    their offset are moved (a naive one stays unreadable); the fraction is kept as written (offsets are whole
    minutes); a value SQLite cannot read as a time is left for the readers to refuse."""
    c = column
    return (
        f"UPDATE {table} SET {c} = strftime('%Y-%m-%dT%H:%M:%S', {c}) "
        f"|| CASE WHEN instr({c}, '.') > 0 THEN substr({c}, instr({c}, '.'), 7) ELSE '' END || '+00:00' "
        f"WHERE ({c} LIKE '%+__:__' OR {c} LIKE '%-__:__') AND {c} NOT LIKE '%+00:00' AND strftime('%s', {c}) IS NOT NULL"
    )


MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE machine_states (
        kind TEXT NOT NULL, bot_id TEXT NOT NULL, state TEXT NOT NULL, since TEXT NOT NULL,
        PRIMARY KEY (kind, bot_id)
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        bot_id TEXT NOT NULL, trading_date TEXT NOT NULL, purpose TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL, notional REAL,
        order_type TEXT NOT NULL, limit_price REAL, time_in_force TEXT NOT NULL,
        status TEXT NOT NULL, broker_order_id TEXT, filled_qty REAL NOT NULL DEFAULT 0, filled_avg_price REAL,
        reason TEXT NOT NULL DEFAULT '', error TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE INDEX orders_by_bot ON orders (bot_id, trading_date);
    CREATE INDEX orders_by_status ON orders (status);
    CREATE TABLE positions (
        bot_id TEXT NOT NULL, symbol TEXT NOT NULL, qty REAL NOT NULL, avg_entry_price REAL NOT NULL,
        opened_at TEXT NOT NULL,
        PRIMARY KEY (bot_id, symbol)
    );
    CREATE TABLE counters (
        trading_date TEXT NOT NULL, bot_id TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
        PRIMARY KEY (trading_date, bot_id, name)
    );
    CREATE TABLE halts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL, reason TEXT NOT NULL, conditions TEXT NOT NULL, flatten INTEGER NOT NULL,
        started_at TEXT NOT NULL, until TEXT, ended_at TEXT, ended_by TEXT
    );
    CREATE TABLE realized_pnl (
        trading_date TEXT NOT NULL, bot_id TEXT NOT NULL, pnl REAL NOT NULL,
        PRIMARY KEY (trading_date, bot_id)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: every per-tick read is an index range whose size does not grow with history
    """
    CREATE INDEX orders_by_day ON orders (trading_date, purpose, bot_id);
    CREATE INDEX orders_by_created ON orders (created_at);
    CREATE INDEX halts_open ON halts (scope) WHERE ended_at IS NULL;
    """,
    # 3: trades, a round trip each (entry fills to exit fills); a position accumulates its round trip so far
    """
    ALTER TABLE positions ADD COLUMN sold_qty REAL NOT NULL DEFAULT 0;
    ALTER TABLE positions ADD COLUMN sold_value REAL NOT NULL DEFAULT 0;
    ALTER TABLE positions ADD COLUMN realized REAL NOT NULL DEFAULT 0;
    ALTER TABLE positions ADD COLUMN bought_qty REAL NOT NULL DEFAULT 0;
    CREATE TABLE trades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bot_id TEXT NOT NULL, symbol TEXT NOT NULL, trading_date TEXT NOT NULL,
        opened_at TEXT NOT NULL, closed_at TEXT NOT NULL, qty REAL NOT NULL,
        entry_price REAL NOT NULL, exit_price REAL NOT NULL, pnl REAL NOT NULL, fees REAL NOT NULL,
        exit_trigger TEXT NOT NULL
    );
    CREATE INDEX trades_by_day ON trades (trading_date, bot_id);
    """,
    # 4: the last tick's facts of the system and of each bot, for `why` (replaced every tick)
    """
    CREATE TABLE last_facts (scope TEXT PRIMARY KEY, at TEXT NOT NULL, body BLOB NOT NULL);
    """,
    # 5: every time in UTC, as `_ts` now writes them (`_time_in_utc`)
    ";\n".join(
        _time_in_utc(table, column)
        for table, columns in (
            ("machine_states", ("since",)),
            ("orders", ("created_at", "updated_at")),
            ("positions", ("opened_at",)),
            ("halts", ("started_at", "until", "ended_at")),
            ("trades", ("opened_at", "closed_at")),
            ("last_facts", ("at",)),
        )
        for column in columns
    ),
)
SYSTEM_SCOPE = "system"
EXITBOT_ID = "exitbot"  # owns the kill switch's flatten of a symbol several bots hold (split among them on fill)
# The conditions of a bot's halt that only PAUSE it: no new entries, its positions kept and managed by its own exits.
# The broker refusing its orders on their merits (insufficient funds, below the minimum, a wash trade, forbidden) says
# nothing against its rules, so selling what it holds would act on no fault. Every other halt of a bot (a guard or its
# signal failing, repeated rejections of no known kind) means its rules can no longer be trusted with a position: the
# kill switch closes its positions. One rule (`is_pause`) for every reader: the kill switch, `status`, `why`, alerts.
PAUSE_CONDITIONS = frozenset({"refusals"})


def is_pause(scope: str, conditions: Iterable[str]) -> bool:
    """Whether a halt of `scope` with `conditions` is a bot's pause (`PAUSE_CONDITIONS`), not a halt that closes its
    positions. A system halt is never a pause; a halt that names no condition is not one either (unknown: a halt)."""
    named = set(conditions)
    return scope != SYSTEM_SCOPE and bool(named) and named <= PAUSE_CONDITIONS


class StateFileError(sqlite3.DatabaseError):
    """The state file cannot be used: the message names the file and what is wrong with it, in one line.

    A subclass of sqlite3.DatabaseError so that every caller that already treats a database error as "this
    file cannot be read" (validation, the tick boundary) treats this one the same way. `runtime` tells the
    two kinds apart for the exit code: True when the file may be sound but cannot be used now (read-only,
    locked, a full disk, an I/O error: exit 1), False when its content is not what this engine wrote or can
    read (not a database, damaged, another application's, a newer schema, a value that does not parse: exit
    2). Either way nothing is decided on it: the engine fails closed."""

    def __init__(self, path: Path, what: str, *, runtime: bool):
        self.path, self.what, self.runtime = path, what, runtime
        super().__init__(what)  # the file is named by whoever tells it (`message`, validation's file:line)

    @property
    def message(self) -> str:
        """The one line a person reads: the file, then what is wrong with it."""
        return f"state file {self.path}: {self.what}"


def _hard_linked(names: int) -> str:
    """Why a state file with a second name is refused. SQLite names its -wal and -shm after the path it was given,
    so a process given the other name (a second engine: its lock file beside that name too, or `halt`) reads and
    writes beside another log of the same file: commits one of them never sees, and a file SQLite's own
    documentation lists among the ways to corrupt a database."""
    return (
        f"has {names} names (hard links): SQLite keeps its write-ahead log beside the name it is given, so a "
        "process given another name would write beside another log and could corrupt the file; keep one name "
        "(copy the file where a link was made, then delete the link)"
    )


# sqlite3's errors that say the engine misused the database, whatever the file holds.
_ENGINE_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
# SQLite's primary result codes that say the file is not at fault but cannot be used now (the exit code 1).
_RUNTIME_CODES = {
    "SQLITE_BUSY": "locked by another process (a write transaction held longer than the wait)",
    "SQLITE_LOCKED": "locked by another connection",
    "SQLITE_READONLY": "cannot be written (a read-only file or folder)",
    "SQLITE_CANTOPEN": "cannot be opened (missing permission, or its folder cannot hold the -wal/-shm files)",
    "SQLITE_FULL": "cannot be written: the disk is full",
    # SQLite says ENOSPC as SQLITE_FULL only for some writes: a write past the file size limit (EFBIG), a -shm
    # that cannot be grown on a full disk, a sync, were "an I/O error", which did not say what to fix
    "SQLITE_IOERR_WRITE": "cannot be written (a full disk, or past the file size limit?)",
    "SQLITE_IOERR_SHMOPEN": "its -shm file cannot be made beside it (a full disk?)",
    "SQLITE_IOERR_SHMSIZE": "its -shm file cannot be grown (a full disk?)",
    "SQLITE_IOERR_SHMMAP": "its -shm file cannot be mapped (a full disk?)",
    "SQLITE_IOERR_FSYNC": "cannot be synced to the disk (a full disk, or a failing one?)",
    "SQLITE_IOERR_TRUNCATE": "cannot be written (a full disk?)",
    "SQLITE_IOERR": "an I/O error while reading or writing it",
    "SQLITE_PERM": "permission denied",
    "SQLITE_NOMEM": "out of memory",
    "SQLITE_INTERRUPT": "interrupted",
}
_DAMAGED_CODES = {
    "SQLITE_CORRUPT": "damaged (truncated or overwritten)",
    "SQLITE_NOTADB": "not a SQLite database",
}


def state_file_error(path: Path, exc: BaseException) -> StateFileError:
    """One line for an error met reading or writing the state file, classified runtime or damaged (see
    StateFileError). Python's sqlite3 names the result code from 3.11 on; before, the message is all there is."""
    if isinstance(exc, StateFileError):
        return exc
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        # SQLite's message quoting the damaged file's own bytes ("malformed database schema (\xc6alts)"): Python's
        # sqlite3 cannot decode it and raises this in place of the DatabaseError, which was a traceback, exit 1
        quoted = exc.object.decode("utf-8", "replace")
        return StateFileError(path, f"{quoted} (damaged, or not written by this engine)", runtime=False)
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return StateFileError(path, f"{exc.strerror or exc}", runtime=True)
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc) or type(exc).__name__
    for code, meaning in _RUNTIME_CODES.items():
        if name.startswith(code):
            return StateFileError(path, f"{meaning} ({text})", runtime=True)
    for code, meaning in _DAMAGED_CODES.items():
        if name.startswith(code):
            return StateFileError(path, f"{meaning} ({text})", runtime=False)
    lowered = text.lower()
    runtime_words = ("locked", "readonly", "read-only", "unable to open", "disk is full", "disk i/o", "permission")
    if any(word in lowered for word in runtime_words):
        return StateFileError(path, text, runtime=True)
    return StateFileError(path, f"{text} (damaged, or not written by this engine)", runtime=False)


def state_file_exists(path: Path) -> bool:
    """Whether something is at `path`: False when nothing is, StateFileError (runtime) when it cannot be told
    (a folder on the way that may not be searched; `Path.exists` raises PermissionError for it)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise StateFileError(path, f"cannot be looked at ({exc.strerror or exc})", runtime=True) from None
    return True


def state_file_empty(path: Path) -> bool:
    """Whether `path` is a regular file of 0 bytes: SQLite takes it for a new, empty database and writes one into it
    (the engine's own file holds SQLite's header from its first write). False when it cannot be looked at: the
    store says what is wrong as it opens it."""
    try:
        found = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == 0


def cut_to_nothing(path: Path, *, lock_made_now: bool = False) -> str | None:
    """Why a state file of 0 bytes is not a new one but one cut to nothing, or None. The one judgement every command
    makes of an empty file (`nothing_saved`, `StateStore`'s open, `run`): SQLite reads an empty file as a new
    database and writes one into it, and at that open deletes a -wal beside it as belonging to nothing. So an empty
    file is refused, and left as it is with whatever is beside it, when a run has used it (its lock file is there,
    which a run makes and never deletes; `lock_made_now`: the caller, a first `run`, made it just now) or a -wal
    beside it holds records (a kill's: the only copy of the records since the last checkpoint). A `halt` wrote a new
    database over such a file, deleting the -wal, and the next run started afresh: every halt, order and position
    gone. Without either it is a new file (`touch`, or a first run stopped before it wrote anything)."""
    if not state_file_empty(path):
        return None
    from engine.core.lock import lock_path

    real = os.path.realpath(path)
    try:
        wal = os.stat(f"{real}-wal").st_size
    except OSError:
        wal = 0
    afresh = "delete it and what is kept beside it (its -wal, -shm and lock file) to start afresh"
    if wal > 0:
        return (f"is empty (0 bytes), with a -wal of {wal} bytes beside it: it was cut to nothing (a copy or a save on "
                f"a full disk?), and SQLite would delete that -wal, the last records it holds, at the first open; put "
                f"the file back from a backup, or {afresh}")  # fmt: skip
    lock = lock_path(path)
    if lock_made_now or not os.path.lexists(lock):
        return None
    return (f"is empty (0 bytes), but a run has used it (its lock file {lock} is there): it was cut to nothing (a copy "
            "or a save on a full disk?), and every halt, order and position it held with it, or a first run stopped "
            "before writing it; a fresh start would trade as if there had been none. Put it back from a backup, or "
            f"delete it and {lock.name} to start afresh")  # fmt: skip


def _no_folder(folder: Path) -> str:
    """Why a halt is not written where its state file's folder does not exist: the folders and a new state file were
    made, and "halted ... recorded" said, at a mistyped path that no engine reads, while the engine traded on."""
    what = "is not a folder" if os.path.lexists(folder) else "does not exist"
    return (f"its folder {folder} {what}, so no engine has run on it (a mistyped path?): nothing is made there. Give "
            f"the running engine's state file; to halt before the first run there, make the folder first "
            f"(mkdir -p {folder})")  # fmt: skip


# What a command that only reads meets when SQLite may not make or write the -wal and -shm files beside the state file
# (a read-only folder, or read-only -wal/-shm files): "cannot be written" read as if the command had tried to change it
_UNREADABLE_HERE = (
    "cannot be read here: SQLite reads a state file in WAL mode through its -wal and -shm files, which cannot be made "
    "or written beside it (a read-only folder, or read-only -wal/-shm files?); nothing was written"
)


def _cannot_make_beside(exc: BaseException) -> bool:
    """Whether SQLite's error says a file could not be written or opened for writing (read-only, cannot open)."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in text or "unable to open" in text


def nothing_saved(path: Path) -> bool:
    """Whether a command that reads the state has nothing to open at `path`: nothing there, or a new empty file
    (opened, SQLite would write a database into it, and a read writes nothing). A file cut to nothing
    (`cut_to_nothing`) is refused (StateFileError, exit 2), never taken for "no state yet"; StateFileError
    (runtime) when what is at `path` cannot be told."""
    if not state_file_exists(path):
        return True
    if not state_file_empty(path):
        return False
    cut = cut_to_nothing(path)
    if cut is not None:
        raise StateFileError(path, cut, runtime=False)
    return True


def _expected_shapes() -> dict[str, dict[str, tuple[Any, ...]]]:
    """Every table of the newest schema, each column's `PRAGMA table_info` row (cid, name, type, notnull, default,
    pk) by name, as the migrations build them (in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS:
            conn.executescript(script)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: {r[1]: tuple(r) for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables if not t.startswith("sqlite_")
        }
    finally:
        conn.close()


_TABLES_AT: dict[int, frozenset[str]] = {}  # `_tables_at(version)`, once a version


def _tables_at(version: int) -> frozenset[str]:
    """The tables a state file of schema `version` holds: those the first `version` migrations make (in memory)."""
    if version not in _TABLES_AT:
        conn = sqlite3.connect(":memory:")
        try:
            for script in MIGRATIONS[:version]:
                conn.executescript(script)
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
            _TABLES_AT[version] = frozenset(r[0] for r in rows)
        finally:
            conn.close()
    return _TABLES_AT[version]


def _expected_indexes() -> dict[str, str]:
    """Every index of the newest schema by name, its SQL as the migrations write it (`_statement`)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS:
            conn.executescript(script)
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        return {name: _statement(sql) for name, sql in rows if sql}
    finally:
        conn.close()


def _statement(sql: str) -> str:
    """A statement as SQLite keeps it in sqlite_master, its spacing made one: what it does, not how it is laid out."""
    return " ".join(sql.split())


def _affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (its documented rules, in their order): what a value
    written to the column is stored as (a number written to a TEXT column is kept as text)."""
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _altered_columns(expected: dict[str, tuple[Any, ...]], found: dict[str, tuple[Any, ...]]) -> list[str]:
    """How the columns the engine made differ in what its writes and reads rely on: the type's affinity (a number
    stored as text), the primary key (every upsert names it in ON CONFLICT), the default (the inserts that leave a
    column out) and the row's id (`INTEGER PRIMARY KEY` alone is the rowid, which gives a new halt its id)."""
    altered = []
    for name, (_cid, _name, kind, _notnull, default, pk) in expected.items():
        _cid2, _name2, found_kind, _found_notnull, found_default, found_pk = found[name]
        if _affinity(kind) != _affinity(found_kind):
            altered.append(f"column {name} is {found_kind or 'untyped'}, not {kind}")
        elif kind.upper() == "INTEGER" and pk and found_kind.upper() != "INTEGER":
            altered.append(f"column {name} is {found_kind}, not INTEGER (the row's id)")
        if bool(pk) != bool(found_pk):
            altered.append(f"column {name} is {'not ' if pk else ''}in its primary key")
        if default != found_default:
            altered.append(f"column {name} defaults to {found_default or 'nothing'}, not {default or 'nothing'}")
    return altered


_EXPECTED: dict[str, frozenset[str]] = {}
_SHAPES: dict[str, dict[str, tuple[Any, ...]]] = {}  # `_expected_shapes()`, once
_INDEXES: dict[str, str] = {}  # `_expected_indexes()`, once
_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)
# What the engine's own schema never holds, in a table's or an index's SQL (`_check_rules_of_its_own`).
_ADDED_RULE = re.compile(r"\b(CHECK|REFERENCES|UNIQUE)\b", re.IGNORECASE)
_pause = time.sleep  # between tries to switch a new file to WAL mode (`_use_wal`); a test passes its own
# What a row's value that does not parse raises (a time, a date, JSON, a number, a compressed body).
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, zlib.error)


@dataclass(frozen=True)
class MachineState:
    kind: str
    bot_id: str
    state: str
    since: datetime


# What the engine writes in an order's row (engine/trading/handlers.py: an entry buys, an exit sells; the values
# of engine/brokers/base.py OrderRequest's literals)
_SIDE_OF_PURPOSE = {"entry": "buy", "exit": "sell"}
_ORDER_TYPES = ("market", "limit")
_TIMES_IN_FORCE = ("day", "gtc", "ioc")


@dataclass(frozen=True)
class OrderRow:
    """One order as the engine recorded it: the intent, then the broker's latest answer."""

    client_order_id: str
    bot_id: str
    trading_date: date
    purpose: str  # "entry" or "exit"
    symbol: str
    side: str
    qty: float | None
    notional: float | None
    order_type: str
    limit_price: float | None
    time_in_force: str
    status: str
    broker_order_id: str | None
    filled_qty: float
    filled_avg_price: float | None
    reason: str
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_db(cls, r: sqlite3.Row) -> OrderRow:
        """The row, refused (ValueError) when a field the order is resent from holds what the engine never writes:
        an intent still pending after a restart goes to the broker as the row says, so an exit edited to `buy`
        bought, and a side, type or time in force of no order request, or a size or limit of 0 or below, was sent
        for the broker to make sense of."""
        purpose = _one_of(r["purpose"], "purpose", _SIDE_OF_PURPOSE)
        side = _text(r["side"])
        if side != _SIDE_OF_PURPOSE[purpose]:
            raise ValueError(f"side {side!r} is not an {purpose}'s ({_SIDE_OF_PURPOSE[purpose]!r})")
        return cls(
            _text(r["client_order_id"]),
            _text(r["bot_id"]),
            date.fromisoformat(r["trading_date"]),
            purpose,
            _text(r["symbol"]),
            side,
            _positive_or_none(r["qty"], "qty"),
            _positive_or_none(r["notional"], "notional"),
            _one_of(r["order_type"], "order_type", _ORDER_TYPES),
            _positive_or_none(r["limit_price"], "limit_price"),
            _one_of(r["time_in_force"], "time_in_force", _TIMES_IN_FORCE),
            _text(r["status"]),
            _text_or_none(r["broker_order_id"]),
            _not_negative(r["filled_qty"] or 0.0, "filled_qty"),
            None if r["filled_avg_price"] is None else _not_negative(r["filled_avg_price"], "filled_avg_price"),
            _text(r["reason"]),
            _text_or_none(r["error"]),
            aware_time(r["created_at"]),
            aware_time(r["updated_at"]),
        )


@dataclass(frozen=True)
class PositionRow:
    """What one bot owns of one symbol, built from its own fills, with its round trip so far."""

    bot_id: str
    symbol: str
    qty: float
    avg_entry_price: float
    opened_at: datetime
    bought_qty: float = 0.0  # bought since the position opened
    sold_qty: float = 0.0  # sold since it opened (its partial exits)
    sold_value: float = 0.0  # their price times quantity
    realized: float = 0.0  # their P&L, USD


@dataclass(frozen=True)
class TradeRow:
    """A round trip: from the fill that opened a bot's position to the fill that closed it."""

    bot_id: str
    symbol: str
    trading_date: date
    opened_at: datetime
    closed_at: datetime
    qty: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_trigger: str


# How many orders' rows a store keeps parsed (`StateStore._order_row`): a day's orders of a thousand bots, ten times.
ORDER_ROWS_KEPT = 4096
_ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(OrderRow))
_INSERT_ORDER = f"INSERT INTO orders ({', '.join(_ORDER_FIELDS)}) VALUES ({', '.join(f':{k}' for k in _ORDER_FIELDS)})"


@dataclass(frozen=True)
class Halt:
    id: int
    scope: str
    reason: str
    conditions: tuple[str, ...]
    flatten: bool
    started_at: datetime
    until: datetime | None
    ended_at: datetime | None

    def in_force(self, now: datetime) -> bool:
        return self.ended_at is None and (self.until is None or now < self.until)

    @property
    def pause(self) -> bool:
        """A bot's pause: no new entries, its positions kept (`is_pause`)."""
        return is_pause(self.scope, self.conditions)


def _ts(value: datetime) -> str:
    """A time as the store writes it: in UTC, so that the text sorts as the instants do (queries compare times
    as text: `created_at >= ?`; a row written with another offset would sort in the wrong place)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the store")
    return value.astimezone(timezone.utc).isoformat()


def _dt(text: str | None) -> datetime | None:
    return aware_time(text) if text else None


def aware_time(text: str) -> datetime:
    """A saved time, which the engine always writes with its zone: a naive one (a hand edit) would fail later,
    compared with aware times in the middle of a tick, so it is refused as unreadable here."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


def _text(value: object) -> str:
    """A text column's value. SQLite keeps whatever a hand edit writes, whatever the column's type: bytes or a
    number where the engine reads text failed far from the store (`status` formatting a halt's reason, `run`
    comparing a symbol) as a traceback; refused here, it is the file's error, named after its table."""
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _one_of(value: object, column: str, allowed: Iterable[str]) -> str:
    """A text column that holds one of a few words the engine writes, as it wrote it (not another case)."""
    text = _text(value)
    if text not in allowed:
        raise ValueError(f"{column} {text!r} is none of {', '.join(allowed)}")
    return text


def _conditions(text: object) -> tuple[str, ...]:
    """A halt's conditions: a JSON list of names (a JSON string would be read as one condition per letter)."""
    value = jsontext.loads(_text(text))
    if not isinstance(value, list):
        raise TypeError(f"{text!r} is not a list of conditions")
    return tuple(_text(name) for name in value)


def _text_or_none(value: object) -> str | None:
    return None if value is None else _text(value)


def _number(value: object) -> float:
    """A number column's value, finite: text left in it by a hand edit (SQLite keeps it) or an infinity (which a
    REAL column holds) would fail, or be traded on, in the middle of a tick."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def _positive(value: object, column: str) -> float:
    """A quantity or price the engine only ever writes above 0 (a position is long: exits never open a short, and
    a position sold to dust is deleted; a fill's price is above 0). A hand edit's 0 or negative entry price read
    as real made the position's P&L a gain of thousands of percent: its take-profit exit sold it."""
    number = _number(value)
    if number <= 0:
        raise ValueError(f"{column} {number!r} is not above 0")
    return number


def _not_negative(value: object, column: str) -> float:
    """A running total of quantities or values bought or sold, which only grows from 0."""
    number = _number(value)
    if number < 0:
        raise ValueError(f"{column} {number!r} is below 0")
    return number


def _count(value: object) -> int:
    """A counter: an integer (a REAL infinity left by a hand edit raised OverflowError from `int`, a traceback), not
    below 0, since the engine only ever adds to one from 0: a hand edit's -100 entries let a bot make 100 more
    entries than its daily cap, and an order_seq below 0 sent an order whose client_order_id read `-20261123--004`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _flag(value: object) -> bool:
    """A yes/no column (a halt's `flatten`): the 0 or 1 the engine writes. Read by truthiness, any text a hand edit
    left in it ('false', 'no') was true: a halt that flattens, and the kill switch sold every position."""
    if type(value) is not int or value not in (0, 1):
        raise ValueError(f"{value!r} is not 0 or 1")
    return value == 1


def _number_or_none(value: object) -> float | None:
    return None if value is None else _number(value)


def _positive_or_none(value: object, column: str) -> float | None:
    """An order's size or limit, which the engine writes from an OrderRequest, above 0 (a resent exit of -1 went
    to the broker as it was), or none."""
    return None if value is None else _positive(value, column)


T = TypeVar("T")
# Less than half of Alpaca's smallest quantity (9 decimals): what is left of a position after its exit is float
# noise (a fill split among bots, a fee taken in coin, then sold in 9 decimals), not something anyone holds.
QTY_DUST = 5e-10


def is_dust(qty: float, of: float = 0.0) -> bool:
    """Whether `qty` left of a position is float noise: under QTY_DUST, or within a few of the float steps of the
    quantity `of` it was computed from (millions of coins of a cheap token carry noise above 5e-10)."""
    return abs(qty) < max(QTY_DUST, 4 * math.ulp(of))


_PACKED = b"\x00zlib:"  # a `last_facts` body stored compressed; no encoded record starts with a zero byte
_PAGE = 4096


FactsBody = bytes | Callable[[], bytes]  # a `last_facts` record, or what encodes it (`save_last_facts`)


def _encoded(body: FactsBody) -> bytes:
    return body if isinstance(body, bytes) else body()


def _packed(body: bytes) -> bytes:
    return _PACKED + zlib.compress(body, 1) if len(body) > _PAGE else body


# `halt` and `resume` (the command line's and the status page's) wait this long for the running engine's tick to
# commit: a tick holds the state file's write lock while it runs the bots' signals, each up to
# health.max_signal_seconds (5 s by default), which SQLite's default 5 s wait did not cover: the operator's halt
# failed "database is locked" behind a slow signal
OPERATOR_WAIT_SECONDS = 30.0


STATE_ID_KEY = "state_id"  # meta: the state file's own random id, written at its first open (`_name_the_file`)
# meta: the state file's id again, with a nonce, written anew by every commit that changes the file (`_mark_commit`):
# each committed transaction's frames in a -wal then hold a page that names the file they were written for
COMMIT_MARK_KEY = "commit_mark"
_STATE_ID = re.compile(r"[0-9a-f]{32}")  # as `_name_the_file` writes it; a mark is written only for such an id
# A row of `meta` that names its file, as SQLite stores it in a page: the key's text, then the value's (a record holds
# its columns' bytes one after the other); the id is the value's first 32 characters
_NAMING_ROW = re.compile(rb"(?:" + STATE_ID_KEY.encode() + rb"|" + COMMIT_MARK_KEY.encode() + rb")([0-9a-f]{32})")


@dataclass(frozen=True)
class _WalRead:
    """What the bytes of a -wal say of the file it was written for (`_wal_read`)."""

    names: frozenset[str]  # the state ids its pages' rows of `meta` hold (`_NAMING_ROW`)
    committed: bool  # it holds a committed transaction SQLite would replay (a commit frame of its current salt)


_WAL_MAGIC = (0x377F0682, 0x377F0683)  # a -wal header's first word (SQLite's file format, the checksums' byte order)


def _wal_read(wal: Path) -> _WalRead:
    """The state ids that the rows of `meta` naming a file (`STATE_ID_KEY`, `COMMIT_MARK_KEY`) hold in the pages of
    the -wal, and whether it holds a commit. The commit mark's page is in every transaction the engine commits, so a
    -wal with any commit of this engine names the file it was written for; a page holding the id's own row names it
    too, whoever wrote it (an older engine, another program). Found in the -wal's bytes, not through SQLite: a row of
    `meta` is on a page of another number in each file (`meta` splits as it grows), so read through this file's
    pages another file's row is seldom reached. A commit is a frame whose header carries the -wal header's salt and
    a database size (the last frame of a transaction); the frames are not checksummed here, which SQLite does as it
    replays. Nothing named, no commit, when it cannot be read (the open that follows says why)."""
    import mmap
    import struct

    nothing = _WalRead(frozenset(), False)
    try:
        with open(wal, "rb") as f:
            if os.fstat(f.fileno()).st_size < 32:
                return nothing
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                names = frozenset(m.group(1).decode("ascii") for m in _NAMING_ROW.finditer(data))
                magic, _version, page_size = struct.unpack_from(">III", data, 0)
                salt = data[16:24]
                committed = False
                frame = 32
                while magic in _WAL_MAGIC and page_size and frame + 24 + page_size <= len(data):
                    if data[frame + 8 : frame + 16] != salt:  # a frame of an earlier generation: the end of this one
                        break
                    if struct.unpack_from(">I", data, frame + 4)[0]:
                        committed = True
                        break
                    frame += 24 + page_size
                return _WalRead(names, committed)
    except (OSError, ValueError, struct.error):
        return nothing


_SHM_DMS = 128  # the byte of the -shm every connection in WAL mode holds a shared lock on while open (os_unix.c)


def _shm_in_use(real: Path) -> bool | None:
    """Whether another process has the file open in WAL mode now (it holds its lock on the -shm's DMS byte): its
    -wal is then the live log of that connection (a sqlite3 shell left open after a hand edit, the status page), not
    one left behind by a kill or copied in. Asked without taking the lock (F_GETLK); None when it cannot be told."""
    import fcntl
    import struct

    layout = "hhqqi4x"  # Linux's struct flock: type, whence, start, length, pid
    try:
        fd = os.open(f"{real}-shm", os.O_RDONLY)
    except FileNotFoundError:
        return False  # no index: no connection has the file open
    except OSError:
        return None
    try:
        asked = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
        return struct.unpack(layout, answer)[0] != fcntl.F_UNLCK
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


def _wal_misfit(path: Path) -> str | None:
    """Why the -wal beside the state file is not its own, or None. SQLite replays any -wal with the file's name
    into it, frames whose checksums hold whatever database wrote them: a state file copied without its -wal
    beside an older one, or a -wal copied from another state file, opened as one file of mixed or foreign
    records, and the first close wrote them into the file for good. So, while no other engine runs on the file
    (a running engine's -wal is its own, and it checkpoints the file as it goes), a -wal left beside it is checked
    first, before SQLite reads the two together: the rows of `meta` that name a file in its pages (`_wal_read`) must
    name this one (the file's id read from the file alone, `immutable`: the -wal unread; or, for a file named since
    its last checkpoint, read with the -wal); a file whose checkpointed part holds a commit mark (written by this
    engine, which marks every commit) takes no -wal with commits none of which names it (another program's, or
    another database's), unless a connection of another process has the file open (`_shm_in_use`: a sqlite3 shell
    left open after a hand edit writes such a -wal, live); the file's id read through the -wal must be the one read
    alone; and the two read together must pass SQLite's quick check. Read only: nothing is written to either."""
    real = Path(os.path.realpath(path))
    wal = Path(f"{real}-wal")
    try:
        if not wal.is_file() or wal.stat().st_size == 0 or not real.is_file():
            return None
    except OSError:
        return None  # said by the open that follows, in its words
    from engine.core.lock import flock_holders, lock_path

    holders = flock_holders(lock_path(path))
    if holders is None or holders - {os.getpid()}:  # an engine runs on it (or that cannot be told): its own -wal
        return None

    def read(mode: str) -> tuple[str | None, str | None, str | None]:
        """(the file's id, its commit mark, the quick check's first complaint) through `mode`; Nones when
        unreadable."""
        try:
            conn = sqlite3.connect(f"{real.as_uri()}?{mode}", uri=True)
        except sqlite3.Error:
            return None, None, None
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN (?, ?)", (STATE_ID_KEY, COMMIT_MARK_KEY)))
            state_id = str(rows[STATE_ID_KEY]) if rows.get(STATE_ID_KEY) is not None else None
            mark = str(rows[COMMIT_MARK_KEY]) if rows.get(COMMIT_MARK_KEY) is not None else None
            if mode != "mode=ro":
                return state_id, mark, None
            check = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
            return state_id, mark, (None if check == "ok" else check)
        except sqlite3.Error:
            return None, None, None  # no meta table yet (a new file), or not a database: the open says so
        finally:
            conn.close()

    move = f"move {wal.name} away to open the file as its last checkpoint left it"
    alone, mark, _ = read("immutable=1")
    found = _wal_read(wal)
    if alone is not None:
        others = sorted(found.names - {alone})
        if others:
            return (f"has a -wal beside it that another state file wrote (the file's id {alone}, the -wal's pages name "
                    f"{', '.join(others)}): opened together they are records of both; {move}, or put its own -wal "
                    "back")  # fmt: skip
        marked = mark is not None and mark.startswith(f"{alone} ")
        if marked and found.committed and alone not in found.names and _shm_in_use(real) is False:
            return (f"has a -wal beside it whose commits do not name it (its id {alone}), while this engine names the "
                    f"file in every commit it makes: the -wal is another database's, or another program's (a hand "
                    f"edit killed before it closed); {move}, or, only if it is this file's own, let SQLite take it in "
                    f"(sqlite3 {real.name} 'PRAGMA wal_checkpoint') and give the command again")  # fmt: skip
    together, _, damaged = read("mode=ro")
    if damaged is not None:
        return (f"is damaged when read with the -wal beside it ({damaged}): that -wal is not its own (copied "
                f"from another state file?); {move}")  # fmt: skip
    if alone is not None and together != alone:
        return (f"has a -wal beside it that another state file wrote (the file's id {alone}, the -wal's "
                f"{together or 'none'}): opened together they are records of both; {move}, or put its own -wal "
                f"back")  # fmt: skip
    if alone is None and together is not None and found.names - {together}:  # named since its checkpoint
        return (f"has a -wal beside it that names another state file besides the id it gives the file ({together}: "
                f"{', '.join(sorted(found.names - {together}))}): opened together they are records of both; {move}")  # fmt: skip
    return None


_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a rollback journal's header when SQLite would play it back
_PENDING_BYTE = 0x40000000  # SQLite's lock bytes in the file (os_unix.c): PENDING, then RESERVED


def _writer_holds(path: Path) -> bool | None:
    """Whether another process holds SQLite's PENDING or RESERVED lock on the file (a rollback-mode writer mid-
    transaction, whose journal is its own), asked without taking it (F_GETLK); None when that cannot be told."""
    import fcntl
    import struct

    layout = "hhqqi4x"  # Linux's struct flock: type, whence, start, length, pid
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        asked = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, _PENDING_BYTE, 2, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
        return struct.unpack(layout, answer)[0] != fcntl.F_UNLCK
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


def _foreign_journal(path: Path) -> str | None:
    """Why the rollback journal beside the state file must not be opened with it, or None. SQLite plays a hot
    journal (`NAME-journal` beginning with its header) back into the file of that name at the first read, whatever
    database wrote it and whatever the file's journal mode: another database's, copied in with a backup or left by
    a kill of another program, was written over the state file's pages by a mere `status`, which then found the
    file damaged, its halts and orders gone. This engine keeps its file in WAL mode and writes no such journal, so
    one that no live writer holds (`_writer_holds`: a writer mid-transaction holds its lock) is refused, and the
    file and the journal are left as they were. Read only."""
    real = Path(os.path.realpath(path))
    journal = Path(f"{real}-journal")
    try:
        if not real.is_file() or real.stat().st_size == 0 or not journal.is_file():
            return None
        with open(journal, "rb") as f:
            head = f.read(len(_JOURNAL_MAGIC))
    except OSError:
        return None  # said by the open that follows, in its words
    if head != _JOURNAL_MAGIC or _writer_holds(real) is True:
        return None
    return (f"has a rollback journal beside it ({journal.name}) that SQLite would play back into it at the first "
            f"read: this engine keeps its state file in WAL mode and never writes one, so it is another database's "
            f"(copied in?) or another program's; move {journal.name} away to open the file as it is")  # fmt: skip


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none; OSError when it cannot be looked at."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino)


def _missing_index(path: Path) -> str | None:
    """Why the file must not be opened now, or None: an engine runs on it (another process holds its run lock)
    and its -shm is gone while its -wal holds commits. Opened now, SQLite makes a new -shm that the engine's
    connection never looks at: this command's writes would not wait for the engine's, nor would the engine see
    them (an operator's `halt` said "recorded" and was lost). The engine stops before its next tick when it sees
    its -shm gone (`StateStore._check_wal`); the command can be given again then."""
    real = Path(os.path.realpath(path))
    try:
        if not real.is_file() or os.path.exists(f"{real}-shm") or os.stat(f"{real}-wal").st_size == 0:
            return None
    except OSError:
        return None  # no -wal: nothing another connection wrote that a new index would miss
    from engine.core.lock import flock_holders, lock_path

    holders = flock_holders(lock_path(path))
    if not holders or not holders - {os.getpid()}:
        return None  # no engine runs on it: SQLite rebuilds the index from the -wal, as after a kill
    return (f"has lost its -shm file under the engine running on it (pid {min(holders - {os.getpid()})}): opened now "
            "it would be written beside the engine without either seeing the other; that engine stops before its "
            "next tick: give the command again once it has")  # fmt: skip


_HEADER = b"SQLite format 3\x00"


def _not_sqlite(path: Path) -> str | None:
    """Why a file at `path` that is not empty cannot be a SQLite database (None when it may be one: SQLite then
    says what else is wrong). SQLite takes a file of one byte for an empty database and writes a new one over it:
    a state file cut to one byte (its halts with it) was a fresh start, and exit 0. The engine's own file holds
    SQLite's header from its first write (empty until then: a new state file)."""
    try:
        if not path.is_file():
            return None  # a FIFO is never opened here (it would block); SQLite and the checks before say the rest
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except OSError:
        return None  # said by SQLite's open, in its words
    if not head or head == _HEADER:
        return None
    return f"not a SQLite database (it does not begin with SQLite's header, but with {head[:8]!r})"


class StateStore:
    """The engine's SQLite file. One connection; writes happen inside `transaction()`.

    `synced` (the default): `sync_to_disk` puts every commit so far on the disk, not only in the operating
    system's hands (WAL with `synchronous=NORMAL`, SQLite's advice for WAL, syncs only at checkpoints). The order
    path calls it before a tick's orders are sent: an intent is committed before its POST, and one lost to a power
    cut or a crash of the machine (not of the process) after the POST left Alpaca acting on an order nobody wrote,
    which the restart met as unexplained and halted on. Only then, not at every commit (`synchronous=FULL`): synced
    at every commit, 1,000 MomentumBots' ticks took 28 ms instead of 20 on the development machine, the fsync
    growing with the machine states written. A simulated run or a backtest sends nothing to a real broker and is
    opened with `synced=False`.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_wait_seconds: float = 5.0,
        synced: bool = True,
        lock_made_now: bool = False,
        make_folder: bool = True,
        reads_only: bool = False,
    ):
        self.path = Path(path)
        # True for a command that only reads (status, health, why, report, validation, diagram --bot): a file it may
        # not write the -wal or -shm beside is said as one that cannot be read here, not "cannot be written"
        self._reads_only = reads_only
        # False for the operator's `halt` (the command line's and the page's) at a path --state-db gives: a state file
        # in a folder that does not exist is one no engine has run on (a mistyped path), and a halt there is read by
        # none (`_no_folder`)
        self._make_folder = make_folder
        self._lock_made_now = lock_made_now  # a first `run` made the lock file beside it: an empty file is new (`cut_to_nothing`)
        self._synced = synced
        self._busy_wait = busy_wait_seconds  # how long a write waits for another connection's transaction
        self._in_transaction = False
        self._snapshot = False  # inside `read_snapshot()`: reads only
        self.statements = 0  # reads and writes run so far: the bench prints them per tick
        self.halt_writes = 0  # halts started or ended through this connection: a tick re-reads them only if it moved
        self.records_version = 0  # orders, positions, counters, P&L or halts written through this connection
        # Per-tick reads of what only the engine writes (open orders, owned positions: its lock keeps any other
        # process from writing them), kept until our next write or rollback, or another connection's commit seen
        # by `records_stamp`. Only for the engine's own connection (`Engine` turns it on): a reader that lives
        # long (the status page) must see every commit the engine makes.
        self.keep_tick_reads = False
        self._kept: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._kept_at: tuple[int, int] = (-1, -1)
        self._order_rows: dict[tuple[Any, ...], OrderRow] = {}  # `_order_row`: a row's values -> its OrderRow
        self._data_version = -1  # SQLite's data_version as `records_stamp` last read it
        self._hold_every = 0  # `hold_commits`: > 0, transactions are savepoints committed this many at a time
        self._mark_prefix: str | None = None  # the commit mark's text before its nonce, once the file is named
        self._changes_at_begin = 0  # the connection's total_changes as the open write transaction began (`_mark_commit`)
        self._released = 0  # savepoints released since the held transaction's last commit
        # held: each scope's last record, written at commit; its body still unencoded when given as a callable
        self._held_facts: dict[str, tuple[datetime, FactsBody]] = {}
        self._held_lost: str | None = None  # held: why the transactions since the last commit were lost (`_held_lost_by`)
        self._closed = False
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the file opened (`check_at_path`)
        self._least_size = 0  # the file's size as `check_at_path` last saw it: never less at the next look
        self._wal_path: Path | None = None  # where SQLite keeps the file's write-ahead log (beside the file linked to)
        self._shm_path: Path | None = None  # and its shared-memory index
        self._wal_id: tuple[int, int] | None = None  # (device, inode) of that -wal as `check_at_path` first saw it
        self._shm_id: tuple[int, int] | None = None  # and of its -shm (the index every connection coordinates through)
        # Called once a transaction has committed (not a held one): the engine's journal flush, so that what a commit
        # wrote is said in the log before the process makes its next request, in which it may die
        self.after_commit: Callable[[], None] | None = None
        self._conn = self._open(str(path))

    # --- plumbing ------------------------------------------------------------------------------------------

    def _open(self, name: str) -> sqlite3.Connection:
        """The connection, migrated and checked, or StateFileError naming the file and what is wrong: a file
        this engine cannot trust is refused before anything is read from it or written to it."""
        if name != ":memory:":
            if state_file_exists(self.path) and self.path.is_dir():
                raise StateFileError(self.path, "is a folder, not a state file", runtime=False)
            cut = cut_to_nothing(self.path, lock_made_now=self._lock_made_now)
            if cut is not None:  # before SQLite writes a new database into it, deleting the -wal beside it
                raise StateFileError(self.path, cut, runtime=False)
            if not self._make_folder and not state_file_exists(self.path) and not self.path.parent.is_dir():
                raise StateFileError(self.path, _no_folder(self.path.parent), runtime=False)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateFileError(self.path, f"its folder cannot be created ({exc.strerror or exc})", runtime=True) from None
            # before SQLite reads or writes the file
            misfit = _wal_misfit(self.path) or _foreign_journal(self.path) or _not_sqlite(self.path)
            lost = _missing_index(self.path)
            if lost is not None:  # not the file's fault: once the engine has stopped it opens
                raise StateFileError(self.path, lost, runtime=True)
            if misfit is not None:
                raise StateFileError(self.path, misfit, runtime=False)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(name, isolation_level=None, check_same_thread=False, timeout=self._busy_wait)
            conn.row_factory = sqlite3.Row
            self._conn = conn
            if name != ":memory:":
                found = os.stat(self.path)
                self._file_id = (found.st_dev, found.st_ino)
                self._least_size = found.st_size
                self._wal_path = Path(f"{os.path.realpath(self.path)}-wal")
                self._shm_path = Path(f"{os.path.realpath(self.path)}-shm")
                if found.st_nlink > 1:
                    raise StateFileError(self.path, _hard_linked(found.st_nlink), runtime=False)
            self._check_identity()  # before anything changes the file, even its journal mode
            current = self._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            if current:  # its tables, columns and indexes too: a file refused for them is refused untouched
                self._check_schema()
            self._use_wal()
            conn.execute("PRAGMA synchronous=NORMAL")  # commits synced when it matters: `sync_to_disk`
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if not current:
                self._check_schema()
            if name != ":memory:":
                self._name_the_file()
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, (sqlite3.Error, OSError, UnicodeDecodeError)):  # (the last: `state_file_error`)
                raise self._file_error(exc) from None
            raise
        return conn

    def _name_the_file(self) -> None:
        """Give the file its own random id (`STATE_ID_KEY`, once, never changed), which `_wal_misfit` compares
        between the file and its -wal, and which every commit from now on marks its transaction with
        (`_mark_commit`). A file that may not be written (read-only) is read without one."""
        if self._conn.execute("SELECT 1 FROM meta WHERE key = ?", (STATE_ID_KEY,)).fetchone() is None:
            try:
                self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, lower(hex(randomblob(16))))",
                                   (STATE_ID_KEY,))  # fmt: skip
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc).lower():
                    raise
        self._read_mark_prefix()

    def _read_mark_prefix(self) -> None:
        """The commit mark's text before its nonce: the file's id, once it has one this engine wrote."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (STATE_ID_KEY,)).fetchone()
        if row is not None and isinstance(row[0], str) and _STATE_ID.fullmatch(row[0]):
            self._mark_prefix = f"{row[0]} "

    def _mark_commit(self, changes_before: int) -> None:
        """Inside a write transaction about to commit: when it changed anything, write the file's commit mark
        (`COMMIT_MARK_KEY`: the file's id and a nonce, so that the row, and its page, is written every time). A
        transaction's frames in the -wal then always hold a page naming the file, and a -wal copied beside another
        state file is known for another's (`_wal_names`) whichever pages it wrote: the id's own row is written once,
        at the file's first open, and a -wal of a later transaction never held it. Once a commit (a tick's, or a
        backtest's held commit of many), not once a savepoint; a transaction that wrote nothing writes nothing."""
        if self._mark_prefix is None or self._conn.total_changes == changes_before:
            return
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (COMMIT_MARK_KEY, self._mark_prefix + os.urandom(8).hex()),
        )

    def _use_wal(self) -> None:
        """WAL mode, once. Switching a file to it takes an exclusive lock that SQLite does not wait for while another
        connection holds the write lock of a file still in rollback mode: two processes making a new state file at
        once (`run` as `halt` is typed), the second was told "database is locked" at once. It is asked again for up
        to the busy wait; a file already in WAL mode is not asked at all (nothing to take a lock for)."""
        if str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        deadline = time.monotonic() + self._busy_wait
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
            _pause(0.01)

    def _check_identity(self) -> None:
        """Refuse a file this engine did not write or cannot read: a newer schema, or another application's
        database (no schema version, and tables of its own: ours are never added to it)."""
        own = not self._conn.in_transaction
        if own:  # one snapshot: a new file's version and tables as another process committed them, never half of it
            self._conn.execute("BEGIN")
        try:
            self._check_version_and_tables()
        finally:
            if own and self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _check_version_and_tables(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 0:  # taken as an old version, the migrations would run from the end of the list, setting it to 0
            raise StateFileError(
                self.path, f"has schema version {version}, which no Trading Hydra engine writes (damaged, or another "
                "application's): give another --state-db", runtime=False,
            )  # fmt: skip
        if version > len(MIGRATIONS):
            raise StateFileError(
                self.path,
                f"has schema version {version}, newer than this engine's ({len(MIGRATIONS)}): "
                "run the engine that wrote it, or give another --state-db",
                runtime=False,
            )
        found = [
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        ]
        shown = ", ".join(sorted(found)[:5]) + (", ..." if len(found) > 5 else "")
        if version == 0:  # a new file; one that holds tables is another application's: never written into
            if found:
                raise StateFileError(
                    self.path,
                    f"is not a Trading Hydra state file (no schema version; it holds the tables {shown}): "
                    "give another --state-db",
                    runtime=False,
                )
            return
        # Another application's database that keeps a schema version of its own (many do: 1, 2, 3...) was taken for
        # one of ours: its journal mode was switched to WAL and the migrations tried on it before the missing
        # tables were noticed, so a refused command changed the other application's file.
        ours = _tables_at(version)
        if not ours & set(found):
            raise StateFileError(
                self.path,
                f"is not a Trading Hydra state file (its schema version {version} is another application's: it holds "
                f"{'the tables ' + shown if found else 'no table'}): give another --state-db",
                runtime=False,
            )
        missing = sorted(ours - set(found))
        if missing:
            raise StateFileError(
                self.path, f"has no table {', '.join(missing)} although its schema version says so", runtime=False
            )

    def _migrate(self) -> None:
        """The pending migrations, in one transaction under the write lock, the version and the tables looked at
        again once it is held: two processes making a new state file at once (`run` as `halt` is typed) both read
        version 0, and the second migrated from 0 again ("table machine_states already exists": a sound file
        called damaged). Now the second waits for the lock and finds the file migrated."""
        if self._conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
            return
        with self.transaction():
            self._check_identity()
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={number}")
            if version:  # a file named before: its migration's commit is marked too, though it changed no row
                self._read_mark_prefix()
                self._changes_at_begin = -1

    def _check_schema(self) -> None:
        """Every table and column this engine reads is there: a file whose tables were altered (by hand, by
        another program) is refused at once rather than failing in the middle of a tick."""
        if not _EXPECTED:
            _SHAPES.update(_expected_shapes())
            _EXPECTED.update({table: frozenset(columns) for table, columns in _SHAPES.items()})
        master = self._conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        tables = {name: str(sql or "") for name, sql in master}
        for table, columns in _EXPECTED.items():
            info = self._conn.execute(f"PRAGMA table_info({table})").fetchall()
            found = {r[1] for r in info}
            if not found:
                raise StateFileError(self.path, f"has no table {table} although its schema version says so", runtime=False)
            missing = sorted(columns - found)
            if missing:
                raise StateFileError(self.path, f"table {table} lacks the column(s) {', '.join(missing)}", runtime=False)
            # a table made again by hand or by another program, its columns all there: each write or read that met
            # the change failed mid-run (a fill's position read back as text after its order went out), or wrote
            # other values than the engine's (a changed default)
            altered = _altered_columns(_SHAPES[table], {r[1]: tuple(r) for r in info})
            if _WITHOUT_ROWID.search(tables.get(table, "")):
                altered.append("it is WITHOUT ROWID (the engine reads rows by rowid)")
            if altered:
                raise StateFileError(
                    self.path,
                    f"table {table} is not as this engine made it ({'; '.join(altered[:3])}): its writes would fail or "
                    "be read back changed; start from a state file of its own",
                    runtime=False,
                )
            # a column of its own that every insert must fill (NOT NULL, no default) fails each of ours: the
            # operator's halt among them, found only when it is needed (an extra column that may be empty is harmless)
            required = sorted(r[1] for r in info if r[1] not in columns and r[3] and r[4] is None and not r[5])
            if required:
                raise StateFileError(
                    self.path,
                    f"table {table} has the column(s) {', '.join(required)}, which this engine does not write and "
                    "which may not be empty: every write to it would fail",
                    runtime=False,
                )
        self._check_indexes()
        self._check_rules_of_its_own()
        self._check_order_statuses()

    def _check_indexes(self) -> None:
        """Every index the engine made, as it made it. The halts in force are read through theirs (INDEXED BY):
        without it each read of them failed, `status` and the run's first tick, while `halt` went on writing; the
        others keep a tick's reads from growing with the history. An index of its own beside them is harmless (a
        unique one is refused as a rule, `_check_rules_of_its_own`)."""
        if not _INDEXES:
            _INDEXES.update(_expected_indexes())
        rows = self._conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        found = {name: _statement(str(sql or "")) for name, sql in rows}
        missing = sorted(name for name in _INDEXES if name not in found)
        if missing:
            raise StateFileError(
                self.path, f"lacks the index(es) {', '.join(missing)} this engine made: start from a state file of its own",
                runtime=False,
            )  # fmt: skip
        for name, sql in sorted(_INDEXES.items()):
            if found[name] != sql:
                table = sql.split(" ON ", 1)[1].split()[0]
                raise StateFileError(
                    self.path, f"table {table}: its index {name} is not as this engine made it ({found[name] or 'none'}, "
                    f"not {sql}): start from a state file of its own", runtime=False,
                )  # fmt: skip

    def _check_rules_of_its_own(self) -> None:
        """No trigger, constraint or unique index this engine did not make: one added by hand or by another program
        may refuse or change any write, and was found only when a write met it: a tick ended in a traceback
        (IntegrityError, taken for the engine's own bug), and so did the operator's `halt` when it was needed. The
        engine makes none of them (its tables have primary keys and plain indexes only), so any is refused at open."""
        found = []
        for kind, name, table, sql in self._conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('trigger', 'index', 'table') ORDER BY name"
        ):
            if kind == "trigger":
                found.append(f"the trigger {name!r} on {table}")
            elif table in _EXPECTED and (added := sorted({m.upper() for m in _ADDED_RULE.findall(str(sql or ""))})):
                what = f"the unique index {name!r} on" if kind == "index" else f"{' and '.join(added)} constraint(s) in table"
                found.append(f"{what} {table}")
        if found:
            raise StateFileError(
                self.path,
                f"has {'; '.join(found[:3])}, which this engine did not make: they may refuse or change its writes "
                "(the operator's halt among them); remove them, or start from a state file of its own",
                runtime=False,
            )

    def _check_order_statuses(self) -> None:
        """Every order's status is one of the lifecycle's: the engine finds the orders it must follow by status
        (`orders(statuses=...)`), so a row whose status it does not know (edited by hand, written by another
        program) was never looked up again: an order that may be working at the broker, taken for ended."""
        known = sorted(lifecycle.TABLE)
        rows = self._conn.execute(
            f"SELECT client_order_id, status FROM orders WHERE status NOT IN ({', '.join('?' for _ in known)}) LIMIT 3",
            known,
        ).fetchall()
        if rows:
            shown = ", ".join(f"{r[0]!r} is {r[1]!r}" for r in rows)
            raise StateFileError(
                self.path, f"an order's status is none this engine knows ({shown}): it cannot tell whether the order "
                "is working", runtime=False,
            )  # fmt: skip

    def _file_error(self, exc: BaseException) -> BaseException:
        """What to raise for an error met on the file: a StateFileError naming it, except for the engine's own
        mistakes (a constraint broken, a closed connection, a bad binding), which stay what they are. A bug is not
        a damaged file: an operator told so might delete the file, and the halts and the positions' owners in it."""
        if isinstance(exc, _ENGINE_BUGS):
            return exc
        error = state_file_error(self.path, exc)
        if self._reads_only and error.runtime and _cannot_make_beside(exc):
            said = str(getattr(exc, "sqlite_errorname", "") or "") or type(exc).__name__  # its words say "write"
            return StateFileError(self.path, f"{_UNREADABLE_HERE} ({said})", runtime=True)
        return error

    @contextmanager
    def _reading(self, table: str) -> Iterator[None]:
        """Rows of `table` turned into values: one that does not parse is the file's error, named after the table."""
        try:
            yield
        except _DECODE_ERRORS as exc:
            raise self._unreadable(table, exc) from None

    def _unreadable(self, table: str, exc: BaseException) -> StateFileError:
        """A row whose value does not parse (a time, a date, JSON): the file was damaged or edited by hand."""
        return StateFileError(self.path, f"a row of table {table} cannot be read ({type(exc).__name__}: {exc})", runtime=False)

    def check_at_path(self) -> None:
        """The file at the path is still the one this store opened and whole, or StateFileError (exit 1; 2 cut short).

        SQLite goes on with the file it opened whatever happens to its path: deleted under a running engine (a
        cleanup job's `rm -rf state/`), every later record was lost when the run ended; replaced (a backup moved
        into place), the operator's `halt`, which opens the path, went to a file the engine never read while it
        traded on. The run loop asks before each tick (one stat), so neither outlives a tick. A path that cannot
        be looked at now (a folder made unsearchable) proves nothing, and stops nothing.

        The file smaller than it was (`truncate`, a copy cut short written over it) is damaged (exit 2): this engine
        never shrinks it (no VACUUM, no auto_vacuum), and the pages cut off are read back as zeros. SQLite went on
        from its cache and its -wal, and the run ended 0 with a file no later command could read."""
        if self._file_id is None or self._closed:
            return
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return
        else:
            if (found.st_dev, found.st_ino) == self._file_id:
                if found.st_nlink > 1:
                    raise StateFileError(self.path, _hard_linked(found.st_nlink), runtime=True)
                if found.st_size < self._least_size:
                    raise StateFileError(
                        self.path, f"was cut short under the running engine ({self._least_size} bytes, now "
                        f"{found.st_size}): its records are damaged, and the run stops rather than trade on them",
                        runtime=False,
                    )  # fmt: skip
                self._least_size = found.st_size
                self._check_wal()
                return
        raise StateFileError(
            self.path,
            "was deleted or replaced under the running engine (the file at the path is not the one it opened): "
            "it stops rather than trade on records nobody can read; start it again on the file now at the path",
            runtime=True,
        )

    def _check_wal(self) -> None:
        """The -wal and -shm beside the file are still the ones this connection uses, or StateFileError (exit 1).
        SQLite deletes them only when the last connection closes, so while the engine's is open they stay (another
        process's connection, a checkpoint, leave them where they are).

        The -wal deleted (`rm state/*-wal`, taken for a temporary file): SQLite wrote on into the deleted one, which
        no other process reads (the operator's `halt` failed as an I/O error) and a kill loses since the last
        checkpoint, while the run traded on and ended 0. The -shm deleted: the next command made a new one, and its
        writes no longer waited for the engine's, nor the engine's reads saw them: an operator's `halt` said
        "recorded", the engine traded on unhalted, and its close wrote the file without the halt. The run stops
        before its next tick instead; while it runs, no other command opens the file without its -shm
        (`_missing_index`)."""
        if self._wal_path is None or self._shm_path is None:
            return
        shm_path = self._shm_path
        try:
            wal, shm = _file_id(self._wal_path), _file_id(shm_path)
        except OSError:  # cannot be looked at now: proves nothing, as for the file
            return
        if self._wal_id is None:  # the first look (none yet: the first write makes them)
            self._wal_id, self._shm_id = wal, shm
            return
        for path, was, now in ((self._wal_path, self._wal_id, wal), (shm_path, self._shm_id, shm)):
            if was is not None and now != was:
                raise StateFileError(
                    self.path,
                    f"its {path.name} was deleted or replaced under the running engine: what it commits is no longer "
                    "what other commands read and write (an operator's halt could be lost), and a kill could lose it; "
                    "the run stops (do not delete the -wal and -shm files beside a state file in use)",
                    runtime=True,
                )

    def sync_to_disk(self) -> None:
        """Every commit so far on the disk, whatever happens to the machine next (see the class); nothing to do for
        a store opened with `synced=False`. Committed frames wait in the write-ahead log, beside the file a symlink
        leads to, as SQLite keeps it; with no log (checkpointed away) they are in the file itself. A sync that
        fails is a StateFileError (exit 1): nothing is sent on a commit the disk may not hold."""
        if not self._synced or self._file_id is None or self._closed:
            return
        real = os.path.realpath(self.path)
        try:
            try:
                fd = os.open(real + "-wal", os.O_RDONLY)
            except FileNotFoundError:
                fd = os.open(real, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateFileError(self.path, f"cannot be synced to the disk ({exc.strerror or exc})", runtime=True) from None

    @property
    def file_id(self) -> tuple[int, int] | None:
        """(device, inode) of the file this store opened; None for ":memory:"."""
        return self._file_id

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def hold_commits(self, every: int) -> None:
        """Commit every `every` transactions instead of each one: for a file only its run reads, a backtest's.

        Each `transaction()` is then a savepoint inside one held write transaction: it is released or rolled back
        whole exactly as before, and what it wrote is visible to this connection at once. Only the COMMIT, the
        write of the file's pages a tick, is made every `every` transactions, and at `commit_held()` or
        `close()`. A process killed meanwhile loses the transactions since the last commit, never part of one.
        While the write lock is held no other connection can commit, so `records_stamp` need not ask SQLite
        whether one did."""
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        self._hold_every = every

    def commit_held(self) -> None:
        """Commit what the held transaction holds (nothing to do when commits are not held, or none is open)."""
        if not self._hold_every or self._in_transaction or self._closed:
            return
        self._refuse_if_held_lost()
        if not (self._conn.in_transaction or self._held_facts):
            return
        try:
            if not self._conn.in_transaction:  # only facts saved outside any transaction are waiting
                self._conn.execute("BEGIN IMMEDIATE")
                self._changes_at_begin = self._conn.total_changes
            if self._held_facts:
                self._upsert_last_facts([(scope, at, _encoded(body)) for scope, (at, body) in self._held_facts.items()])
            self._mark_commit(self._changes_at_begin)
            self._conn.execute("COMMIT")
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM raised as one (engine/core/stop.py): nothing was lost
            # A signal's handler runs once SQLite's call has returned: after the COMMIT, it is done; before it,
            # the held transactions are still whole, and `close()` commits them on the way out.
            if not self._conn.in_transaction:
                self._released = 0
                self._held_facts.clear()
            raise
        except BaseException as exc:
            self.records_version += 1
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise self._held_lost_by(exc) from exc
        self._released = 0
        self._held_facts.clear()

    def _refuse_if_held_lost(self) -> None:
        if self._held_lost is not None:
            raise StateFileError(self.path, self._held_lost, runtime=True)

    def _held_lost_by(self, exc: BaseException, *, current: int = 0) -> BaseException:
        """The error to raise when the held transaction ended without its commit (a failed COMMIT, or SQLite
        rolling back by itself on a full disk or an I/O error): what the transactions since the last commit wrote
        is gone while the run, its log and its exchange went on from it. The file no longer tells the run's story:
        every later write is refused with the same error, so the run stops instead of reporting from it."""
        lost = self._released + current  # `current`: the transaction that met the error, when it went too
        self._held_facts.clear()
        self._released = 0
        if lost:
            self._held_lost = (
                f"the last {lost} transaction(s) held for one commit were lost ({type(exc).__name__}: {exc}): "
                "the state file no longer matches the run"
            )
            return StateFileError(self.path, self._held_lost, runtime=True)
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, (StateFileError, *_ENGINE_BUGS)):
            return state_file_error(self.path, exc)
        return exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all. Nested calls join the outer transaction."""
        if self._in_transaction:
            yield
            return
        if self._snapshot:  # a write decided on a snapshot that may be old by now: the caller's bug, said as one
            raise sqlite3.ProgrammingError("a write inside read_snapshot(): take the write transaction instead")
        held = self._hold_every > 0
        try:
            if not held:
                self._conn.execute("BEGIN IMMEDIATE")
                self._changes_at_begin = self._conn.total_changes
            else:
                self._refuse_if_held_lost()
                if not self._conn.in_transaction:  # the first one, or the first after a commit
                    if self._released:  # SQLite ended it without our commit: what it held is gone
                        raise self._held_lost_by(sqlite3.OperationalError("the held transaction ended uncommitted"))
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._changes_at_begin = self._conn.total_changes
                self._conn.execute("SAVEPOINT held")
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # locked past the wait, read-only, damaged: the file's error
            raise self._file_error(exc) from None
        self._in_transaction = True
        facts_before = dict(self._held_facts) if held else None
        try:
            yield
        except BaseException as exc:
            if facts_before is not None:
                self._held_facts = facts_before
            # SQLite may have rolled back already (a full disk, an I/O error): the first error is the one raised
            with contextlib.suppress(sqlite3.Error):
                if held and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK TO held")
                    self._conn.execute("RELEASE held")
                else:
                    self._conn.execute("ROLLBACK")
            self.records_version += 1  # what was read inside the transaction is gone with it
            self._in_transaction = False
            if held and self._released and not self._conn.in_transaction:  # earlier transactions went with it
                raise self._held_lost_by(exc, current=1) from exc
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, (StateFileError, *_ENGINE_BUGS)):
                raise state_file_error(self.path, exc) from exc
            raise
        else:
            try:
                if held:
                    self._conn.execute("RELEASE held")
                else:
                    self._mark_commit(self._changes_at_begin)
                    self._conn.execute("COMMIT")
            except BaseException as exc:  # not committed (disk full, I/O): nothing read inside it may be kept
                self.records_version += 1
                with contextlib.suppress(sqlite3.Error):  # the COMMIT's own error is the one raised
                    if held and self._conn.in_transaction:
                        self._conn.execute("ROLLBACK TO held")
                        self._conn.execute("RELEASE held")
                    else:
                        self._conn.execute("ROLLBACK")
                if held and facts_before is not None:
                    self._held_facts = facts_before
                self._in_transaction = False
                if held and self._released and not self._conn.in_transaction:
                    raise self._held_lost_by(exc, current=1) from exc
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, _ENGINE_BUGS):
                    raise state_file_error(self.path, exc) from exc
                raise
        finally:
            self._in_transaction = False
        if held:
            self._released += 1
            if self._released >= self._hold_every:
                self.commit_held()
        else:
            failpoints.reach("state_committed")  # committed, its events not yet flushed to the log (`after_commit`)
            if self.after_commit is not None:
                self.after_commit()

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Every read inside sees the file as of one moment: one read transaction (WAL: it never stands in the
        way of the engine's writes, nor they in its way). For an operator's answer that reads several tables
        (`status`, the status page, `why`, `resume`'s conditions): read statement by statement, a tick committing
        between two of them (a kill switch's halt and the system machine's move to halted are one commit) gave an
        answer half before it, half after ("not halted" beside a system machine halted).

        Inside a transaction (ours, or a held one) it is already one snapshot: nothing more is done. A write
        inside a snapshot is a bug (ours would be a write from a stale view): `transaction()` refuses it."""
        if self._in_transaction or self._snapshot or self._conn.in_transaction:
            yield
            return
        try:
            self._conn.execute("BEGIN")  # deferred: the snapshot is taken at the first read
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._file_error(exc) from None
        self._snapshot = True
        try:
            yield
        finally:
            self._snapshot = False
            with contextlib.suppress(sqlite3.Error):  # a read transaction: nothing to keep, only the snapshot to let go
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def _write(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = (), *, records: bool = True) -> sqlite3.Cursor:
        """`records`: the write changes what a tick reads (every table but `meta`, which the simulated exchange
        saves itself into every tick it changed): the view and the kept reads are read again."""
        self.statements += 1
        if records:
            self.records_version += 1
        if not self._in_transaction:
            with self.transaction():
                return self._conn.execute(sql, params)
        return self._conn.execute(sql, params)

    def _kept_rows(self, key: tuple[Any, ...], read: Callable[[], Iterable[T]]) -> list[T]:
        """`read()`, or what it returned since nothing was written (see `_kept`)."""
        if not self.keep_tick_reads:
            return list(read())
        stamp = (self.records_version, self._data_version)
        if stamp != self._kept_at:
            self._kept.clear()
            self._kept_at = stamp
        rows = self._kept.get(key)
        if rows is None:
            rows = self._kept[key] = tuple(read())
        return list(rows)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        self.statements += 1
        try:
            return self._conn.execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:  # a damaged page, a lock, an I/O error: the file's error
            raise self._file_error(exc) from None

    def close(self) -> None:
        """Closed, after committing what a held transaction holds (`hold_commits`); closing again does nothing."""
        if self._closed:
            return
        try:
            if self._held_lost is None:  # lost, it was said when it happened: closing adds no second error
                self.commit_held()
        finally:
            self._closed = True
            self._conn.close()

    # --- machine states ------------------------------------------------------------------------------------

    def machine_states(self, kind: str | None = None) -> list[MachineState]:
        sql = "SELECT * FROM machine_states" + (" WHERE kind = ?" if kind else "") + " ORDER BY kind, bot_id"
        rows = self._rows(sql, (kind,) if kind else ())
        with self._reading("machine_states"):
            return [MachineState(_text(r["kind"]), _text(r["bot_id"]), _text(r["state"]), aware_time(r["since"])) for r in rows]

    def machine_state(self, kind: str, bot_id: str) -> MachineState | None:
        found = [s for s in self.machine_states(kind) if s.bot_id == bot_id]
        return found[0] if found else None

    def save_machine_state(self, kind: str, bot_id: str, state: str, since: datetime) -> None:
        self.save_machine_states([(kind, bot_id, state, since)])

    def save_machine_states(self, moved: Iterable[tuple[str, str, str, datetime]]) -> None:
        """(kind, bot id, state, since) for each machine that moved: one statement, however many moved."""
        stamps: dict[tuple[datetime, object], str] = {}  # the moves of one tick share one time: formatted once
        rows = [
            (kind, bot_id, state, stamps.get((since, since.tzinfo)) or stamps.setdefault((since, since.tzinfo), _ts(since)))
            for kind, bot_id, state, since in moved
        ]
        if not rows:
            return
        self.statements += 1
        sql = (
            "INSERT INTO machine_states (kind, bot_id, state, since) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, bot_id) DO UPDATE SET state = excluded.state, since = excluded.since"
        )
        if self._in_transaction:
            self._conn.executemany(sql, rows)
        else:
            with self.transaction():
                self._conn.executemany(sql, rows)

    # --- orders --------------------------------------------------------------------------------------------

    def add_order(self, row: OrderRow) -> None:
        """Record an order intent (status 'pending') before it is sent. Its fields are read one level deep: every
        one is a plain value (`dataclasses.asdict` deep-copied each, a fifth of what recording an intent cost)."""
        values = {name: getattr(row, name) for name in _ORDER_FIELDS}
        values.update(trading_date=row.trading_date.isoformat(), created_at=_ts(row.created_at), updated_at=_ts(row.updated_at))
        self._write(_INSERT_ORDER, values)

    def update_order(self, client_order_id: str, now: datetime, **changes: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in changes)
        self._write(
            f"UPDATE orders SET {sets}, updated_at = :updated_at WHERE client_order_id = :cid",
            {**changes, "updated_at": _ts(now), "cid": client_order_id},
        )

    def order(self, client_order_id: str) -> OrderRow | None:
        rows = self._rows("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        with self._reading("orders"):
            return self._order_row(rows[0]) if rows else None

    def orders(
        self, *, statuses: Iterable[str] | None = None, bot_id: str | None = None, day: date | None = None
    ) -> list[OrderRow]:
        """Orders in creation order. Per-tick callers pass `statuses` (open ones: an index range that does not
        grow with history) or `day`; the unfiltered form is for reports and tests."""
        if statuses is not None and bot_id is None and day is None:  # the per-tick form
            wanted = tuple(sorted(statuses))
            return self._kept_rows(("orders", wanted), lambda: self._orders(wanted, None, None))
        return self._orders(statuses, bot_id, day)

    def _orders(self, statuses: Iterable[str] | None, bot_id: str | None, day: date | None) -> list[OrderRow]:
        sql, params = "SELECT * FROM orders WHERE 1=1", []
        if statuses is not None:
            wanted = sorted(statuses)
            sql += f" AND status IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        if bot_id:
            sql += " AND bot_id = ?"
            params.append(bot_id)
        if day is not None:
            sql += " AND trading_date = ?"
            params.append(day.isoformat())
        rows = self._rows(sql + " ORDER BY created_at, client_order_id", tuple(params))
        with self._reading("orders"):
            return [self._order_row(r) for r in rows]

    def _order_row(self, row: sqlite3.Row) -> OrderRow:
        """`OrderRow.from_db(row)`, remembered by the row's values: a tick reads the same few orders again and again
        (the working ones, each bot's last entry after every write), and checking and parsing one costs about 12 µs.
        A row with the same values in the same columns (one table: `SELECT *` of this file) is the same OrderRow,
        which is frozen; a row that changed (its status, fills, updated_at) is parsed and checked again, and one that
        fails the checks is never remembered. Equal values that parse differently cannot reach here: 1 and 1.0 are
        one float to `_number`, and SQLite's REAL columns give back 0.0 for -0.0. Bounded: cleared past
        `ORDER_ROWS_KEPT` rows."""
        key = tuple(row)
        made = self._order_rows.get(key)
        if made is None:
            made = OrderRow.from_db(row)
            if len(self._order_rows) >= ORDER_ROWS_KEPT:
                self._order_rows.clear()
            self._order_rows[key] = made
        return made

    def last_entries(self, day: date) -> dict[str, OrderRow]:
        """Each bot's latest entry order of `day`, from one query over that day's orders only."""
        rows = self._rows(
            "SELECT * FROM orders WHERE rowid IN (SELECT max(rowid) FROM orders WHERE trading_date = ? AND purpose = 'entry' "
            "GROUP BY bot_id)",  # rowids grow with insertion: the latest intent of each bot
            (day.isoformat(),),
        )
        with self._reading("orders"):
            return {r["bot_id"]: self._order_row(r) for r in rows}

    def known_client_order_ids(self, client_order_ids: Iterable[str]) -> set[str]:
        """Which of these ids we sent: primary-key lookups, whatever the size of the history."""
        wanted = list(dict.fromkeys(client_order_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters of one statement
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            found.update(
                r[0] for r in self._rows(f"SELECT client_order_id FROM orders WHERE client_order_id IN ({marks})", tuple(chunk))
            )
        return found

    def reads_stamp(self) -> tuple[int, int]:
        """What the kept tick reads are keyed on (`_kept_rows`), without asking SQLite anything: our writes, and
        other connections' commits as `records_stamp` last saw them. A reader of kept rows may keep what it worked
        out from them under this stamp, with the same guarantee the kept rows have."""
        return self.records_version, self._data_version

    def records_stamp(self) -> tuple[int, int]:
        """Changes to what a tick reads: ours (counted) and other connections' (SQLite's data_version, which
        moves when another process, e.g. `engine halt`, commits). Equal stamps: the same records."""
        if self._hold_every and self._conn.in_transaction:  # our write lock is held: no one else has committed
            return self.records_version, self._data_version
        self._data_version = int(self._rows("PRAGMA data_version")[0][0])
        return self.records_version, self._data_version

    def last_trading_date(self) -> date | None:
        """The latest trading date any order was recorded on."""
        value = self._rows("SELECT max(trading_date) FROM orders")[0][0]
        with self._reading("orders"):
            return date.fromisoformat(value) if value else None

    def days_with_activity(self, days: Iterable[date]) -> set[date]:
        """Those of `days` on which the file holds an order, a counter, realized P&L or a trade: the records that
        count a day's trades, fills and losses against its caps and budgets (`startup.changed_zone`). Each table is
        read through the index that leads with its trading date, so the cost does not grow with the history."""
        wanted = {day.isoformat(): day for day in days}
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        tables = ("orders", "counters", "realized_pnl", "trades")
        sql = " UNION ".join(f"SELECT trading_date FROM {table} WHERE trading_date IN ({marks})" for table in tables)
        rows = self._rows(sql, tuple(wanted) * len(tables))
        return {wanted[r[0]] for r in rows if r[0] in wanted}

    def orders_created_since(self, since: datetime) -> list[datetime]:
        rows = self._rows("SELECT created_at FROM orders WHERE created_at >= ?", (_ts(since),))
        with self._reading("orders"):
            return [aware_time(r[0]) for r in rows]

    # --- owned positions -----------------------------------------------------------------------------------

    def positions(self, bot_id: str | None = None) -> list[PositionRow]:
        if bot_id is None:  # the per-tick form
            return self._kept_rows(("positions",), lambda: self._positions(None))
        return self._positions(bot_id)

    def _positions(self, bot_id: str | None) -> list[PositionRow]:
        sql = "SELECT * FROM positions" + (" WHERE bot_id = ?" if bot_id else "") + " ORDER BY bot_id, symbol"
        rows = self._rows(sql, (bot_id,) if bot_id else ())
        with self._reading("positions"):
            return [
                PositionRow(
                    _text(r["bot_id"]),
                    _text(r["symbol"]),
                    _positive(r["qty"], "qty"),
                    _positive(r["avg_entry_price"], "avg_entry_price"),
                    aware_time(r["opened_at"]),
                    _not_negative(r["bought_qty"], "bought_qty"),
                    _not_negative(r["sold_qty"], "sold_qty"),
                    _not_negative(r["sold_value"], "sold_value"),
                    _number(r["realized"]),
                )
                for r in rows
            ]

    def save_position(self, row: PositionRow) -> None:
        """Write a position with its round trip so far (a zero quantity, or dust, removes it)."""
        if is_dust(row.qty, row.bought_qty):
            self._write("DELETE FROM positions WHERE bot_id = ? AND symbol = ?", (row.bot_id, row.symbol))
            return
        self._write(
            "INSERT INTO positions (bot_id, symbol, qty, avg_entry_price, opened_at, bought_qty, sold_qty, sold_value, realized) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bot_id, symbol) DO UPDATE SET qty = excluded.qty, "
            "avg_entry_price = excluded.avg_entry_price, bought_qty = excluded.bought_qty, sold_qty = excluded.sold_qty, "
            "sold_value = excluded.sold_value, realized = excluded.realized",
            (
                row.bot_id,
                row.symbol,
                row.qty,
                row.avg_entry_price,
                _ts(row.opened_at),
                row.bought_qty,
                row.sold_qty,
                row.sold_value,
                row.realized,
            ),
        )

    def add_trade(self, trade: TradeRow) -> None:
        self._write(
            "INSERT INTO trades (bot_id, symbol, trading_date, opened_at, closed_at, qty, entry_price, exit_price, pnl, fees, "
            "exit_trigger) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trade.bot_id,
                trade.symbol,
                trade.trading_date.isoformat(),
                _ts(trade.opened_at),
                _ts(trade.closed_at),
                trade.qty,
                trade.entry_price,
                trade.exit_price,
                trade.pnl,
                trade.fees,
                trade.exit_trigger,
            ),
        )

    def trades(self, *, since: date | None = None, until: date | None = None, bot_id: str | None = None) -> list[TradeRow]:
        sql, params = "SELECT * FROM trades WHERE 1=1", []
        if since is not None:
            sql += " AND trading_date >= ?"
            params.append(since.isoformat())
        if until is not None:
            sql += " AND trading_date <= ?"
            params.append(until.isoformat())
        if bot_id:
            sql += " AND bot_id = ?"
            params.append(bot_id)
        rows = self._rows(sql + " ORDER BY closed_at, id", tuple(params))
        with self._reading("trades"):
            return [
                TradeRow(
                    _text(r["bot_id"]),
                    _text(r["symbol"]),
                    date.fromisoformat(r["trading_date"]),
                    aware_time(r["opened_at"]),
                    aware_time(r["closed_at"]),
                    _number(r["qty"]),
                    _number(r["entry_price"]),
                    _number(r["exit_price"]),
                    _number(r["pnl"]),
                    _number(r["fees"]),
                    _text(r["exit_trigger"]),
                )
                for r in rows
            ]

    def set_position(self, bot_id: str, symbol: str, qty: float, avg_entry_price: float, opened_at: datetime) -> None:
        if is_dust(qty):
            self._write("DELETE FROM positions WHERE bot_id = ? AND symbol = ?", (bot_id, symbol))
            return
        self._write(
            "INSERT INTO positions (bot_id, symbol, qty, avg_entry_price, opened_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (bot_id, symbol) DO UPDATE SET qty = excluded.qty, avg_entry_price = excluded.avg_entry_price",
            (bot_id, symbol, qty, avg_entry_price, _ts(opened_at)),
        )

    # --- counters and realized P&L -------------------------------------------------------------------------

    def counter(self, day: date, bot_id: str, name: str) -> int:
        rows = self._rows(
            "SELECT value FROM counters WHERE trading_date = ? AND bot_id = ? AND name = ?", (day.isoformat(), bot_id, name)
        )
        with self._reading("counters"):
            return _count(rows[0][0]) if rows else 0

    def bump_counter(self, day: date, bot_id: str, name: str, by: int = 1) -> int:
        self._write(
            "INSERT INTO counters (trading_date, bot_id, name, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (trading_date, bot_id, name) DO UPDATE SET value = value + excluded.value",
            (day.isoformat(), bot_id, name, by),
        )
        return self.counter(day, bot_id, name)

    def counters(self, day: date) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._reading("counters"):
            for r in self._rows("SELECT * FROM counters WHERE trading_date = ? ORDER BY bot_id, name", (day.isoformat(),)):
                out.setdefault(_text(r["bot_id"]), {})[_text(r["name"])] = _count(r["value"])
        return out

    def add_realized_pnl(self, day: date, bot_id: str, pnl: float) -> None:
        self._write(
            "INSERT INTO realized_pnl (trading_date, bot_id, pnl) VALUES (?, ?, ?) "
            "ON CONFLICT (trading_date, bot_id) DO UPDATE SET pnl = pnl + excluded.pnl",
            (day.isoformat(), bot_id, pnl),
        )

    def realized_pnl(self, day: date) -> dict[str, float]:
        rows = self._rows("SELECT bot_id, pnl FROM realized_pnl WHERE trading_date = ?", (day.isoformat(),))
        with self._reading("realized_pnl"):
            return {_text(r["bot_id"]): _number(r["pnl"]) for r in rows}

    # --- the last tick's facts (for `why`) ----------------------------------------------------------------------

    def save_last_facts(self, rows: list[tuple[str, datetime, FactsBody]]) -> None:
        """(scope, tick time, encoded record) for the system and every bot: one statement a tick.

        A record larger than a page is stored compressed (zlib, level 1). At 1,000 bots it is about 94 KB raw:
        rewritten every tick, it filled the write-ahead log in some forty ticks, and each checkpoint that followed
        cost a tick 3-4 ms. Compressed, in 0.09 ms, it is about 5 KB. A small one (a few bots) stays as it is:
        compressing it would save no page.

        With commits held (`hold_commits`) only each scope's last record is written, when the held transaction
        commits: a record a tick that nobody reads meanwhile was a twentieth of a one-symbol backtest's tick.

        A body may be given as a callable returning the bytes (`functools.partial(marshal.dumps, record)`): with
        commits held it is called only for the record that is written or read (`last_facts`), so the ticks whose
        record is replaced before anyone reads it never encode theirs (a backtest encoded 500 records per one kept).
        The record must then be of values that do not change once given (the facts' numbers, strings, booleans
        and None, in tuples and a dict nobody writes to again): encoding later gives the bytes encoding now gave.
        Without held commits it is called at once."""
        if self._hold_every:
            for scope, at, body in rows:
                if at.tzinfo is None:  # refused now, not at the commit hundreds of ticks later
                    raise ValueError("naive datetime reached the store")
                self._held_facts[scope] = (at, body)
            return
        encoded = [(scope, at, _encoded(body)) for scope, at, body in rows]
        if self._in_transaction:
            self._upsert_last_facts(encoded)
        else:
            with self.transaction():
                self._upsert_last_facts(encoded)

    def _upsert_last_facts(self, rows: list[tuple[str, datetime, bytes]]) -> None:
        self.statements += 1
        sql = (
            "INSERT INTO last_facts (scope, at, body) VALUES (?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET at = excluded.at, body = excluded.body"
        )
        self._conn.executemany(sql, [(scope, _ts(at), _packed(body)) for scope, at, body in rows])

    def last_facts(self, scope: str) -> tuple[datetime, bytes] | None:
        held = self._held_facts.get(scope)
        if held is not None:  # saved while commits are held, not written yet
            body = _encoded(held[1])
            self._held_facts[scope] = (held[0], body)  # encoded once, however often it is read
            return held[0].astimezone(timezone.utc), body
        rows = self._rows("SELECT at, body FROM last_facts WHERE scope = ?", (scope,))
        if not rows:
            return None
        with self._reading("last_facts"):
            body = bytes(rows[0][1])
            if body.startswith(_PACKED):  # files written before compression hold the record as it was given
                body = zlib.decompress(body[len(_PACKED) :])
            return aware_time(rows[0][0]), body

    # --- meta: small named values (which broker wrote this file, the simulated exchange's state) ------------

    def meta(self, key: str) -> str | None:
        """The value kept under `key`, which the engine writes as text. Bytes or a number a hand edit left were
        turned into their repr (`b'\\x00'`): `status` named a broker of that name and the simulation's time as
        the wall clock's, and `run` refused the file as another kind of account's; now the row cannot be read."""
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        with self._reading("meta"):
            return _text(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
            records=False,
        )

    # --- halts ---------------------------------------------------------------------------------------------

    def start_halt(
        self, scope: str, reason: str, conditions: tuple[str, ...], flatten: bool, started_at: datetime, until: datetime | None
    ) -> int:
        self.halt_writes += 1
        cursor = self._write(
            "INSERT INTO halts (scope, reason, conditions, flatten, started_at, until) VALUES (?, ?, ?, ?, ?, ?)",
            (scope, reason, json.dumps(list(conditions)), int(flatten), _ts(started_at), _ts(until) if until else None),
        )
        return int(cursor.lastrowid or 0)

    def end_halt(self, halt_id: int, ended_at: datetime, ended_by: str) -> None:
        """End one halt (a cooloff that ran out), leaving any other halt of its scope in force."""
        self.halt_writes += 1
        self._write(
            "UPDATE halts SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL", (_ts(ended_at), ended_by, halt_id)
        )

    def end_halts(self, scope: str, ended_at: datetime, ended_by: str) -> int:
        self.halt_writes += 1
        cursor = self._write(
            "UPDATE halts SET ended_at = ?, ended_by = ? WHERE scope = ? AND ended_at IS NULL",
            (_ts(ended_at), ended_by, scope),
        )
        return cursor.rowcount

    def halts(self, scope: str | None = None, *, open_only: bool = False) -> list[Halt]:
        # the open halts through their partial index: ended ones pile up over the months and are never read per tick
        sql, params = "SELECT * FROM halts" + (" INDEXED BY halts_open" if open_only else "") + " WHERE 1=1", []
        if scope:
            sql += " AND scope = ?"
            params.append(scope)
        if open_only:
            sql += " AND ended_at IS NULL"
        rows = self._rows(sql + " ORDER BY id", tuple(params))
        with self._reading("halts"):
            return [
                Halt(
                    r["id"],
                    _text(r["scope"]),
                    _text(r["reason"]),
                    _conditions(r["conditions"]),
                    _flag(r["flatten"]),
                    aware_time(r["started_at"]),
                    _dt(r["until"]),
                    _dt(r["ended_at"]),
                )
                for r in rows
            ]

    def halt_in_force(self, scope: str, now: datetime, *, pauses: bool = True) -> Halt | None:
        """The latest halt of `scope` still in force at `now`, if any; `pauses` False: a bot's pause (`is_pause`)
        left out (a fault of a paused bot still halts it, and closes what it holds)."""
        live = [h for h in self.halts(scope, open_only=True) if h.in_force(now) and (pauses or not h.pause)]
        return live[-1] if live else None
