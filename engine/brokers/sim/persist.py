"""Saving the simulated exchange in the state file, at the cost of what changed.

The engine saves the exchange inside every tick's transaction and again after sending orders (`on_persist`),
and the exchange is saved as soon as a request changed it, before its answer leaves (`SimExchange.on_change`,
called by `SimAPI`): what the engine commits of an answer, the saved exchange already holds, whenever a kill
comes. The next run continues the same account. Most ticks change nothing but the time, so the state is kept in
two records of the `meta` table:

- `sim_exchange`: `{"version": 2, "now": ..., "revision": n}`, rewritten whenever the time moved. `now` is
  where a restart continues from and what `status` reads as the simulation's time.
- `sim_exchange.book`: everything else (`SimExchange.to_state` without `now`), rewritten only when the
  exchange's `revision` differs from the one saved.

Both are written in one transaction and carry the same revision, so a book never pairs with another time's
record. Whether the book is due is decided from the saved record, not from memory: a transaction rolled back
after a save leaves the old revision in the file, and the next call writes the book again.

Version 1 (no `version` field: the whole `to_state` in `sim_exchange`, rewritten at every call) is what the
engine wrote before; it loads as it is, and the first save after it writes version 2.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from engine.brokers.sim.exchange import SimExchange, kept_in_state
from engine.core import jsontext

STATE_KEY = "sim_exchange"
BOOK_KEY = "sim_exchange.book"
VERSION = 2


class SimStateError(ValueError):
    """The saved simulation cannot be read: the run must not start on a guess."""


class MetaStore(Protocol):
    def meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...


class SimPersistence:
    """The engine's `on_persist` for a simulated exchange: a zero-argument call, as cheap as what changed."""

    def __init__(self, exchange: SimExchange, store: MetaStore):
        self.exchange = exchange
        self.store = store
        self.book_writes = 0
        self.time_writes = 0

    def __call__(self) -> None:
        exchange = self.exchange
        with exchange.lock:
            now = exchange.clock.now()
            revision = exchange.revision
            record = _record(now, revision)
            saved = self.store.meta(STATE_KEY)
            if saved == record:
                return
            with self.store.transaction():
                if saved is None or _saved_revision(saved) != revision:
                    book = exchange.to_state()
                    del book["now"]
                    self.store.set_meta(BOOK_KEY, json.dumps({"version": VERSION, "revision": revision, **book}))
                    self.book_writes += 1
                self.store.set_meta(STATE_KEY, record)
                self.time_writes += 1


def _record(now: datetime, revision: int) -> str:
    # what json.dumps writes for this dict (an ISO time needs no escaping), at a fifth of its cost: it runs twice a tick
    return f'{{"version": {VERSION}, "now": "{now.isoformat()}", "revision": {revision}}}'


def _saved_revision(saved: str) -> int | None:
    """The revision of the book saved with this record; None when there is no such book (version 1)."""
    try:
        record = jsontext.loads(saved)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("version") != VERSION:
        return None
    revision = record.get("revision")
    return revision if isinstance(revision, int) else None


def load_state(store: MetaStore) -> dict[str, Any] | None:
    """The saved exchange as one `to_state`-shaped dict (with its revision), whatever version wrote it; None when
    nothing was saved. A record that cannot be read raises SimStateError."""
    saved = store.meta(STATE_KEY)
    if saved is None:
        return None
    record = _parse(saved, STATE_KEY)
    if not isinstance(record.get("now"), str):
        raise SimStateError(f"{STATE_KEY}: no simulated time ('now')")
    version = record.get("version", 1)
    if version == 1:
        return record
    if version != VERSION:
        raise SimStateError(f"{STATE_KEY}: version {version!r} is not one this engine reads (1 or {VERSION})")
    raw_book = store.meta(BOOK_KEY)
    if raw_book is None:
        raise SimStateError(f"{STATE_KEY}: version {VERSION} record without its {BOOK_KEY}")
    book = _parse(raw_book, BOOK_KEY)
    if book.get("revision") != record.get("revision"):
        raise SimStateError(
            f"{BOOK_KEY}: revision {book.get('revision')!r} does not match {STATE_KEY}'s {record.get('revision')!r}"
        )
    now = record["now"]
    state = {key: value for key, value in book.items() if key != "version"}
    # the book was written when it last changed: drop what `to_state` would have dropped by the record's time
    state["orders"] = [row for row in book.get("orders", []) if _kept(row, now)]
    state["now"] = now
    return state


def _kept(row: dict[str, Any], now: str) -> bool:
    try:
        return kept_in_state(row["status"], datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(now))
    except (KeyError, TypeError, ValueError) as exc:
        raise SimStateError(f"{BOOK_KEY}: an order row cannot be read ({exc!r})") from None


def _parse(raw: str, key: str) -> dict[str, Any]:
    try:
        value = jsontext.loads(raw)
    except ValueError as exc:
        raise SimStateError(f"{key}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SimStateError(f"{key}: not a JSON object")
    return value
