"""What a restart must not forget beyond machine states, orders and halts: the counts and timers a fail-closed rule
reads, kept in the state file's `meta` table (one JSON record a key, as the daily basis is: basis.py).

A service manager restarting the engine after each crash, or an operator restarting it, must not be a way around
the rules: a count kept only in memory starts again at every start, and a broker failing every call never tripped
`api_failure_halt` for an engine restarted every few ticks. The owners write a record only when it changed, inside
the tick's transaction (`Engine._save_kept`), so a tick that changed nothing writes nothing.

A restored time is judged against the clock's time now: one later than now (the clock went back, a file copied
from another machine) is taken as now, never as a wait or a window that lasts until the clock catches up with it;
one older than its window has simply run out. A record that cannot be read is not taken as "nothing saved": each
owner says what it then assumes (the side that trades less).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone

from engine.core import jsontext
from engine.core.store import StateStore, aware_time

FAILURES_KEY = "api_failures"  # {"at": [UTC times]}: the broker failures of the last window (ExitBot)
UNCONFIRMED_KEY = "reconcile_unconfirmed"  # {"at": UTC time, "day": trading date, "subjects": [...]} (Engine._reconcile)
ORDER_WATCH_KEY = "order_watch"  # {"at", "day", "missing": {cid: time}, "replacements": {cid: time}, "refused": [cid]}


def _utc(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def _record(store: StateStore, key: str) -> dict[str, object] | None:
    """The record kept under `key`; None when there is none. ValueError when it is not what the engine wrote."""
    text = store.meta(key)
    if text is None:
        return None
    record = jsontext.loads(text)
    if not isinstance(record, dict):
        raise ValueError(f"meta {key!r} is not a JSON object")
    return record


def _instant(text: str) -> datetime:
    """A saved time (`aware_time`) that is an instant UTC can hold: 0001-01-01T00:00+05:00 is read, but lies before
    the first one, and overflowed when the record was written again, so that every tick halted (`halt_not_saved`)
    instead of the record being named unreadable. ValueError for such a time."""
    value = aware_time(text)
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the instants a time can be counted in") from None
    return value


def _times(values: object) -> list[datetime]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("not a list of times")
    return [_instant(v) for v in values]


def as_of(at: datetime, now: datetime) -> datetime:
    """A restored time, never later than now (see the module's docstring)."""
    return min(at, now)


# --- the broker failures' window (api_failure_halt) --------------------------------------------------------------


def failure_times(store: StateStore) -> list[datetime]:
    """The failures saved, oldest first ([] when none was). ValueError when the record cannot be read."""
    record = _record(store, FAILURES_KEY)
    return sorted(_times(record.get("at"))) if record is not None else []


def save_failure_times(store: StateStore, times: Iterable[datetime]) -> None:
    store.set_meta(FAILURES_KEY, json.dumps({"at": [_utc(t) for t in times]}))


# --- start-up reconciliation's differences waiting for one more read ----------------------------------------------


def unconfirmed(store: StateStore, now: datetime, day: date) -> list[str] | None:
    """The subjects a start-up reconciliation left waiting for the next read (an order of ours working on their
    symbols), when saved today (`day`, the trading date) and not after `now`; [] when none, or another day's or
    a later time's (that wait belonged to another read: the next one decides again). None when the record cannot be
    read: the caller then waits for nothing."""
    try:
        record = _record(store, UNCONFIRMED_KEY)
        if record is None:
            return []
        at, saved_day, subjects = _instant(str(record["at"])), date.fromisoformat(str(record["day"])), record["subjects"]
    except (ValueError, KeyError):
        return None
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        return None
    return list(subjects) if saved_day == day and at <= now else []


def save_unconfirmed(store: StateStore, now: datetime, day: date, subjects: Iterable[str]) -> None:
    store.set_meta(UNCONFIRMED_KEY, json.dumps({"at": _utc(now), "day": day.isoformat(), "subjects": list(subjects)}))


# --- the order path's patience (OrderManager) ---------------------------------------------------------------------


@dataclass(frozen=True)
class OrderWatch:
    """Since when orders the broker took have been neither listed nor found (`missing`), and their replacements
    not found (`replacements`), by client_order_id; the orders whose cancel the broker refused once (`refused`).
    Each, past its patience (or refused twice), is an answer the engine cannot read, which halts."""

    missing: dict[str, datetime]
    replacements: dict[str, datetime]
    refused: frozenset[str]


def order_watch(store: StateStore, now: datetime, day: date) -> OrderWatch | None:
    """What an earlier run watched, saved today (`day`) and not after `now`, each time at most `now`; an empty watch
    when none was saved, or another day's or a later time's (that run's reads are not this one's: patience starts
    again). None when the record cannot be read."""
    try:
        record = _record(store, ORDER_WATCH_KEY)
        if record is None:
            return OrderWatch({}, {}, frozenset())
        at, saved_day = _instant(str(record["at"])), date.fromisoformat(str(record["day"]))
        missing, replacements = _since(record["missing"]), _since(record["replacements"])
        refused = record["refused"]
    except (ValueError, KeyError):
        return None
    if not isinstance(refused, list) or not all(isinstance(cid, str) for cid in refused):
        return None
    if saved_day != day or at > now:
        return OrderWatch({}, {}, frozenset())
    return OrderWatch(
        {cid: as_of(t, now) for cid, t in missing.items()},
        {cid: as_of(t, now) for cid, t in replacements.items()},
        frozenset(refused),
    )


def _since(values: object) -> dict[str, datetime]:
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ValueError("not a mapping of times")
    return {str(cid): _instant(t) for cid, t in values.items()}


def save_order_watch(store: StateStore, now: datetime, day: date, watch: OrderWatch) -> None:
    record = {
        "at": _utc(now),
        "day": day.isoformat(),
        "missing": {cid: _utc(t) for cid, t in watch.missing.items()},
        "replacements": {cid: _utc(t) for cid, t in watch.replacements.items()},
        "refused": sorted(watch.refused),
    }
    store.set_meta(ORDER_WATCH_KEY, json.dumps(record))
