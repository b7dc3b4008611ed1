"""What an account answer must satisfy to be read, whatever the broker: figures that must agree, and how far apart
they may be by rounding alone.

An account figure that is wrong reads as a loss or a gain, and a loss past `risk.global_max_daily_loss_pct` trips
the daily-loss kill condition, whose flatten sells every position. So a figure that breaks an identity every real
answer keeps is unreadable (a bad_response: the system halts and sells nothing), never a loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from engine.brokers.base import Account, Position

# Alpaca's equity is cash + long_market_value + short_market_value (its Account's definition), all three figures of
# one answer. An equity off from the sum by more than a cent's rounding is one wrong figure, not a loss: read as
# one, half the equity in a single glitched answer tripped the daily-loss kill condition, whose flatten sold every
# position. The slack is the larger of EQUITY_SLACK_USD and EQUITY_SLACK_PCT of the larger side.
EQUITY_SLACK_USD = 1.0
EQUITY_SLACK_PCT = 0.1
# The account and the positions are two requests: the prices may move between them. How far, in percent of what the
# positions are worth (long and short alike), on top of the rounding slack: a quarter of a percent of the whole
# book within one snapshot is a move no market makes in a fraction of a second, and it stays well under a daily loss
# limit of 1 %, so a glitch big enough to trip that limit does not pass as a move.
READS_APART_PCT = 0.25
# Answers in a row with one new basis of the daily P&L that was not taken at once: a correction, taken then.
LAST_EQUITY_CONFIRMATIONS = 3
K = TypeVar("K", bound=Hashable | None)  # what names the day a basis is of: a balance_asof, a New York date


def agree(a: float, b: float) -> bool:
    """Two dollar figures that must be the same, within the slack of rounding (EQUITY_SLACK_USD, EQUITY_SLACK_PCT
    of the larger)."""
    return abs(a - b) <= slack(a, b)


def slack(a: float, b: float) -> float:
    """How far two dollar figures that must be the same may be apart by rounding alone."""
    return max(EQUITY_SLACK_USD, EQUITY_SLACK_PCT / 100 * max(abs(a), abs(b)))


def equity_unexplained(account: Account, positions: Iterable[Position]) -> str | None:
    """Why the account's equity is not its cash and the positions' market values summed, or None when it is.

    The account's own identity (`equity = cash + long_market_value + short_market_value`, which the Alpaca adapter
    checks within one answer) holds for an answer glitched in several figures at once: equity and cash both halved
    with the market values left out, every figure halved, or the equity made the cash with the market values made 0
    while positions are held. Each read as a loss of half the book and flattened it. The positions of the same
    snapshot say what the book is worth: a short's value counts against the equity (its proceeds are in the cash),
    whatever sign the broker wrote on it."""
    positions = tuple(positions)
    held = sum(math.copysign(abs(p.market_value), p.qty) for p in positions)
    gross = sum(abs(p.market_value) for p in positions)
    expected = account.cash + held
    allowed = slack(account.equity, expected) + READS_APART_PCT / 100 * gross
    if abs(account.equity - expected) <= allowed:
        return None
    return (f"equity {account.equity:.2f} is not cash {account.cash:.2f} plus the positions' market values "
            f"{held:.2f} ({expected:.2f})")  # fmt: skip


class BasisKeeper(Generic[K]):
    """The one rule of which `last_equity` may be the daily P&L's basis: read as the basis, a last_equity doubled in
    a single answer was a 50 % loss, the daily-loss kill condition and its flatten of every position. Its keepers
    are the Alpaca adapter (what its process read, by `balance_asof`) and engine/trading/basis.py (what an earlier
    run of the same New York day read, kept in the state file); each says only why a basis with a key it did not
    take before may not be taken at once, and how to name a moved one.

    The reference is the basis last taken, with its key (what names the day it is of). Another value for the same
    key, beyond rounding (`agree`), is refused, and so is a new key that `why_new` refuses; the same refused basis
    LAST_EQUITY_CONFIRMATIONS answers in a row is a correction, and becomes the reference. A value that agrees with
    the reference is taken and the reference kept as it was, so that small moves cannot add up to a large one."""

    def __init__(self, reference: tuple[K, float] | None = None) -> None:
        self.reference = reference
        self._refused: tuple[tuple[K, float], int] | None = None  # a basis refused, and how many times in a row

    def refused(
        self,
        key: K,
        value: float,
        *,
        why_new: Callable[[tuple[K, float] | None], str | None],
        moved: Callable[[float], str],
    ) -> str | None:
        """Why (key, value) may not be the basis now, or None when it is taken. `why_new(reference)` says why a key
        other than the reference's (or a first one: reference None) may not be taken at once, None if it may;
        `moved(before)` names a value that moved from the reference's for the same key."""
        reference = self.reference
        if reference is not None and reference[0] == key:
            if agree(reference[1], value):
                self._refused = None
                return None
            why: str | None = moved(reference[1])
        else:
            why = why_new(reference)
        if why is not None:
            count = self._refused[1] + 1 if self._refused is not None and self._refused[0] == (key, value) else 1
            if count < LAST_EQUITY_CONFIRMATIONS:
                self._refused = ((key, value), count)
                return why
        self.reference, self._refused = (key, value), None
        return None
