"""The account's rules every broker is held to: the equity explained by the cash and the positions, and the one
rule of which daily P&L basis may be taken (`BasisKeeper`, kept by the Alpaca adapter and by trading/basis.py)."""

from __future__ import annotations

from engine.brokers.account_rules import LAST_EQUITY_CONFIRMATIONS, BasisKeeper, equity_unexplained
from engine.brokers.base import Account, Position


def _account(equity: float, cash: float) -> Account:
    return Account(equity=equity, last_equity=equity, cash=cash, buying_power=cash, status="ACTIVE",
                   trading_blocked=False, account_blocked=False)  # fmt: skip


def _position(qty: float, value: float) -> Position:
    return Position("AAPL", qty, 190.0, abs(value / qty), value, 0.0, "us_equity")


def test_a_short_counts_against_the_equity_whatever_sign_its_value_carries() -> None:
    """A short's proceeds are in the cash: equity = cash - its worth. Alpaca writes its market value negative; one
    written positive is counted by its quantity's sign all the same."""
    for value in (-1_900.0, 1_900.0):
        assert equity_unexplained(_account(10_000.0, 11_900.0), [_position(-10, value)]) is None
    assert equity_unexplained(_account(10_000.0, 8_100.0), [_position(10, 1_900.0)]) is None
    assert equity_unexplained(_account(10_000.0, 10_000.0), [_position(10, 1_900.0)]) is not None  # equity made cash


def test_the_basis_keeper_refuses_a_moved_basis_until_it_is_confirmed_and_lets_no_drift_in() -> None:
    keeper: BasisKeeper[str] = BasisKeeper(("2026-11-20", 100_000.0))

    def refused(key: str, value: float, why_new: str | None = "a new key") -> str | None:
        return keeper.refused(key, value, why_new=lambda reference: why_new, moved=lambda before: f"moved from {before:.2f}")

    assert refused("2026-11-20", 99_901.0) is None  # within the slack (0.1 %): taken, the reference kept
    assert keeper.reference == ("2026-11-20", 100_000.0)
    assert refused("2026-11-20", 99_802.0) == "moved from 100000.00"  # within the slack of the last, not of the reference
    for _ in range(LAST_EQUITY_CONFIRMATIONS - 1):
        assert refused("2026-11-20", 200_000.0) == "moved from 100000.00"
    assert refused("2026-11-20", 200_000.0) is None  # the same value in a row: a correction
    assert keeper.reference == ("2026-11-20", 200_000.0)
    assert refused("2026-11-23", 150_000.0) == "a new key"
    assert refused("2026-11-23", 150_000.0, why_new=None) is None and keeper.reference == ("2026-11-23", 150_000.0)
