"""The daily P&L's basis (`last_equity`) as an earlier run of the same New York day read it, kept in SQLite.

The Alpaca adapter refuses a `last_equity` that moved within a day (`AlpacaAPI._last_equity_steady`), but only
against what its own process read: the first answer after a restart had nothing to be compared with, and one with
`last_equity` doubled read as a 50 % loss, the daily-loss kill condition and its flatten of every position (a
crash loop restarts the engine all day). So the engine keeps the basis it last read, with its New York date, in
the state file's meta table: a new process's first reads that differ from it on the same day leave the account
unread, as the adapter's unreadable answers are (a bad_response: the system halts and sells nothing, the kill
conditions wait for a read) until the same value comes back LAST_EQUITY_CONFIRMATIONS answers in a row, a
correction made while the engine was down. Once a read
is taken the process's own adapter watches the basis, and this only keeps the saved one up to date.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime

from engine.brokers.account_rules import BasisKeeper
from engine.brokers.base import Account, BrokerError
from engine.core import failpoints, jsontext
from engine.core.calendar import NEW_YORK
from engine.core.store import StateStore

BASIS_KEY = "daily_basis"  # {"day": "YYYY-MM-DD" in New York, "last_equity": number}


class DailyBasis:
    """Whether this tick's `last_equity` may be the daily P&L's basis (`refused`), and the saved one. Which basis may
    be taken is `account_rules.BasisKeeper`'s rule, the adapter's own: here the reference is the saved basis, keyed
    by its New York day, and another day's is taken at once."""

    def __init__(self, store: StateStore):
        self.store = store
        saved = store.meta(BASIS_KEY)
        self._saved = _read(saved)
        # a record that is there but cannot be read (a hand edit, a damaged write): what an earlier run of the day
        # read is unknown, so a first read is no more to be trusted than one that differs from it
        self._unreadable = saved is not None and self._saved is None
        self._keeper: BasisKeeper[date] = BasisKeeper(self._saved)
        self._taken = False  # a read of this process was taken: from then on the adapter watches the basis

    def refused(self, account: Account | None, now: datetime) -> BrokerError | None:
        """A bad_response for the account read while a new process's reads of the day differ from the basis an
        earlier run saved for that day: the engine then takes the account as unread, as it takes the adapter's
        unreadable answers (a halt that sells nothing; the kill conditions wait for a read). None otherwise, and
        the basis read is saved when it changed."""
        if account is None or not math.isfinite(account.last_equity):
            return None  # nothing read: nothing to compare or keep
        day, value = now.astimezone(NEW_YORK).date(), account.last_equity
        if self._saved is not None and day < self._saved[0]:
            # the clock is behind a day whose basis a run already read (set back, a VM restored from a snapshot): no
            # basis is a new day's by going back, and taken as one, a glitched first read passed unchecked and the
            # saved day's record was written over with an earlier one, so the next start that day compared nothing
            day = self._saved[0]
        if not self._taken:
            why = self._keeper.refused(
                day,
                value,
                why_new=lambda saved: self._unreadable_record(value) if self._unreadable else None,  # another day's
                moved=lambda before: f"unreadable answer: last_equity {value:.2f} is not the {before:.2f} read before "
                f"this run for {day} (New York)",
            )
            if why is not None:
                return BrokerError("bad_response", why, operation="account")
        self._unreadable, self._taken = False, True
        if self._saved != (day, value):
            self.store.set_meta(BASIS_KEY, json.dumps({"day": day.isoformat(), "last_equity": value}))
            self._saved = (day, value)
            failpoints.reach("basis_saved")  # the day's basis committed, before the tick that read it decides anything
        return None

    @staticmethod
    def _unreadable_record(value: float) -> str:
        return (f"unreadable answer: last_equity {value:.2f} cannot be compared with the basis read before this run: "
                f"the state file's meta {BASIS_KEY!r} cannot be read")  # fmt: skip


def _read(text: str | None) -> tuple[date, float] | None:
    """The saved basis, or None when there is none or it cannot be read (`DailyBasis` then wants the first read
    confirmed, as one that differs from the saved basis). As written: a JSON number, finite, not below 0 (`true`
    was read as 1.0, '5e5' as 500000.0)."""
    if not text:
        return None
    try:
        record = jsontext.loads(text)
        day, value = date.fromisoformat(record["day"]), record["last_equity"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return day, float(value)
