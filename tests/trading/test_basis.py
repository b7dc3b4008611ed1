"""The daily P&L's basis kept in the state file (`daily_basis` in meta): a record that cannot be read is not a
record that is not there."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.alpaca import LAST_EQUITY_CONFIRMATIONS
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.core.store import StateStore
from engine.trading.basis import BASIS_KEY, DailyBasis

MONDAY_10AM = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "saved",
    [
        "{not json",
        json.dumps({"day": "2026-11-23", "last_equity": True}),  # read as 1.0 by float()
        json.dumps({"day": "2026-11-23", "last_equity": "5e5"}),  # read as 500000.0 by float()
        json.dumps({"day": "2026-11-23", "last_equity": -1.0}),
        json.dumps({"day": "Monday", "last_equity": 100000.0}),
        json.dumps(["2026-11-23", 100000.0]),
    ],
)
def test_a_saved_basis_that_cannot_be_read_wants_the_first_read_confirmed(tmp_path: Path, saved: str) -> None:
    """A record that could not be read was taken as no record: the first read of the day after a restart became
    the basis unchecked, the glitch the record is kept against (last_equity doubled read as a 50 % loss, and the
    flatten). Now that read is refused (a bad_response naming the record) until it comes back
    LAST_EQUITY_CONFIRMATIONS times in a row; then it is the basis, and saved over the unreadable record."""
    store = StateStore(tmp_path / "s.db")
    store.set_meta(BASIS_KEY, saved)
    account = SimExchange(ManualClock(MONDAY_10AM)).account()
    basis = DailyBasis(store)
    for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
        refused = basis.refused(account, MONDAY_10AM)
        assert refused is not None and refused.kind == "bad_response"
        assert BASIS_KEY in str(refused)
    assert basis.refused(account, MONDAY_10AM) is None
    assert json.loads(store.meta(BASIS_KEY) or "") == {"day": "2026-11-23", "last_equity": account.last_equity}
    glitch = dataclasses.replace(account, last_equity=account.last_equity * 2)  # from now on, the adapter's to watch
    assert basis.refused(glitch, MONDAY_10AM) is None


def test_a_readable_basis_and_none_at_all_are_as_before(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    account = SimExchange(ManualClock(MONDAY_10AM)).account()
    assert DailyBasis(store).refused(account, MONDAY_10AM) is None  # nothing saved: the first read is taken
    assert DailyBasis(store).refused(account, MONDAY_10AM) is None  # the same as saved
    glitch = dataclasses.replace(account, last_equity=account.last_equity * 2)
    assert DailyBasis(store).refused(glitch, MONDAY_10AM) is not None  # differs from what was saved that day


def test_a_clock_behind_the_saved_basis_day_is_held_to_that_days_basis(tmp_path: Path) -> None:
    """Restarted with the clock set back a day (a VM restored from a snapshot), a run took its first last_equity as
    a new day's basis at once, unchecked, and wrote the earlier day over the saved one: the next start on the right
    day had no record of that day to compare its first read with. A day before the saved one is now the saved day."""
    store = StateStore(tmp_path / "s.db")
    account = SimExchange(ManualClock(MONDAY_10AM)).account()
    assert DailyBasis(store).refused(account, MONDAY_10AM) is None
    saved = store.meta(BASIS_KEY)
    sunday = MONDAY_10AM - timedelta(days=1)
    glitch = dataclasses.replace(account, last_equity=account.last_equity * 2)
    refused = DailyBasis(store).refused(glitch, sunday)
    assert refused is not None and refused.kind == "bad_response" and "2026-11-23" in str(refused)
    assert DailyBasis(store).refused(account, sunday) is None  # the same basis: taken, the record kept as it was
    assert store.meta(BASIS_KEY) == saved
    assert DailyBasis(store).refused(glitch, MONDAY_10AM) is not None
