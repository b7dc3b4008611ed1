"""The PortfolioBot's arithmetic: today's risk budget per bot, and how big one entry may be.

daily risk      = equity x risk.global_max_daily_loss_pct
a bot's share   = its bucket's percent / the enabled bots in the bucket, clamped to the guardrails (all scaled
                  down alike should the minimum lift them past 100 %: never more than the daily risk in all)
deployable      = equity x (1 - cash_reserve_pct)
one entry risks the bot's remaining budget (its budget less today's realized losses) at its stop, spread
included, so a bot that lost its budget stops opening; the size is then capped by deployable capital and
by the buying power that pays for it (engine/trading/entries.py).

Budgets and deployable capital come from equity, never from `buying_power`: that is a margin figure (up to 4x
the equity), which may only ever lower an entry, never raise it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from engine.config.checks import clamped_shares, trading_bots
from engine.config.model import BotsConfig


@dataclass(frozen=True)
class Allocation:
    bot_id: str
    pct_of_daily_risk: float
    budget_usd: float


@dataclass(frozen=True)
class Allocations:
    equity: float
    daily_risk_usd: float
    deployable_usd: float
    pcts: Mapping[str, float]  # bot id -> its percent of the daily risk (`shares`)

    def budget_usd(self, bot_id: str) -> float | None:
        pct = self.pcts.get(bot_id)
        return None if pct is None else self.daily_risk_usd * pct / 100

    @cached_property
    def bots(self) -> dict[str, Allocation]:
        return {b: Allocation(b, pct, self.daily_risk_usd * pct / 100) for b, pct in self.pcts.items()}

    def summary(self) -> dict[str, object]:
        return {
            "equity_usd": round(self.equity, 2),
            "daily_risk_usd": round(self.daily_risk_usd, 2),
            "deployable_usd": round(self.deployable_usd, 2),
            "bots": {
                b.bot_id: {"pct": round(b.pct_of_daily_risk, 4), "budget_usd": round(b.budget_usd, 2)} for b in self.bots.values()
            },
        }


def shares(bots: BotsConfig) -> dict[str, float]:
    """Each enabled bot's percent of the daily risk: its bucket split evenly, clamped to the guardrails, and all
    scaled down alike when the minimum lifted them past 100 % (validation refuses that config: `guardrail_total`;
    a config that never met it must still never give the bots more than the daily risk between them).
    It does not depend on the equity, so the PortfolioBot computes it once."""
    out = clamped_shares(bots)
    total = sum(out.values())
    if total > 100:
        out = {bot_id: pct * 100 / total for bot_id, pct in out.items()}
    return out


def allocate(bots: BotsConfig, equity: float, max_daily_loss_pct: float, pcts: Mapping[str, float] | None = None) -> Allocations:
    daily_risk = equity * max_daily_loss_pct / 100
    deployable = equity * (1 - bots.portfoliobot.cash_reserve_pct / 100)
    return Allocations(equity, daily_risk, deployable, shares(bots) if pcts is None else pcts)


def fallback_budget_usd(bots: BotsConfig, equity: float, max_daily_loss_pct: float) -> float:
    """With safety.allow_budget_fallback: the guardrail minimum, the smallest budget any bot can have; never more
    than an even split of the daily risk among the enabled bots, so that all of them together never have more."""
    pct = bots.portfoliobot.guardrails.per_bot_min_pct_of_daily_risk
    enabled = sum(1 for _path, bot in trading_bots(bots) if bot.enabled)
    if enabled:
        pct = min(pct, 100 / enabled)
    return equity * max_daily_loss_pct / 100 * pct / 100


def shares_for(
    risk_usd: float, price: float, stop_loss_pct: float, room_usd: float, *, spread: float = 0.0, whole: bool = True
) -> float:
    """Units whose loss at the stop is at most `risk_usd`, capped by the capital `room_usd` left to deploy.

    A unit bought at `price` (the ask) and stopped out is sold at the bid: it loses the stop distance plus the
    `spread`, and both count against the budget."""
    if risk_usd <= 0 or price <= 0 or stop_loss_pct <= 0 or room_usd <= 0:
        return 0.0
    by_risk = risk_usd / (price * stop_loss_pct / 100 + max(spread, 0.0))
    units = min(by_risk, room_usd / price)
    return float(math.floor(units)) if whole else units


@dataclass
class PortfolioBot:
    """Today's budgets, recomputed each tick from the equity, and logged when they change materially
    (more than 1 % of a bot's budget) or on a new day. Budgets exist only while the PortfolioBot's machine is
    armed (or idle while it is disabled, where the fallback may still apply)."""

    bots: BotsConfig
    max_daily_loss_pct: float
    allow_fallback: bool
    allocations: Allocations | None = None
    _logged: tuple[date, float] | None = None  # the day and daily risk last logged

    def __post_init__(self) -> None:
        self._pcts = shares(self.bots)
        self._budgets: tuple[tuple[Allocations | None, float | None, str], Mapping[str, float]] | None = None

    def allocate(self, equity: float | None) -> Allocations | None:
        """Today's allocations at this equity (recomputed only when the equity moved)."""
        if equity is None or not self.bots.portfoliobot.enabled:
            self.allocations = None
        elif self.allocations is None or self.allocations.equity != equity:
            self.allocations = allocate(self.bots, equity, self.max_daily_loss_pct, self._pcts)
        return self.allocations

    def should_log(self, day: date, asked: bool) -> dict[str, object] | None:
        """The `allocation` event's fields when it is due: the machine asked, a new day, or the daily risk (and
        with it every budget, in proportion) moved by more than 1 %."""
        if self.allocations is None:
            return None
        risk = self.allocations.daily_risk_usd
        if not (
            asked
            or self._logged is None
            or self._logged[0] != day
            or abs(risk - self._logged[1]) > 0.01 * max(self._logged[1], 1.0)
        ):
            return None
        self._logged = (day, risk)
        return self.allocations.summary()

    def budgets(self, equity: float | None, machine_state: str) -> Mapping[str, float]:
        """Each bot's budget today before its realized losses (`budget_left` takes those off), by bot id; a bot
        missing has none known: no equity, or the PortfolioBot's machine neither armed nor idle. Every bot of a
        tick reads it, so it is worked out once per change of allocations, equity or machine state."""
        key = (self.allocations, equity, machine_state)
        cached = self._budgets
        if cached is not None and cached[0][0] is key[0] and cached[0][1:] == key[1:]:
            return cached[1]
        out: dict[str, float] = {}
        if machine_state in ("armed", "idle"):
            fallback = None
            if self.allow_fallback and equity is not None:
                fallback = fallback_budget_usd(self.bots, equity, self.max_daily_loss_pct)
            allocations = self.allocations
            # `allocations.budget_usd(bot_id)` for each bot, written out: a tick whose equity moved does this for
            # every bot
            risk, pcts = (allocations.daily_risk_usd, allocations.pcts) if allocations is not None else (0.0, {})
            for bot_id in self._pcts:
                pct = pcts.get(bot_id)
                allocated = fallback if pct is None else risk * pct / 100
                if allocated is not None:
                    out[bot_id] = allocated
        self._budgets = (key, out)
        return out


def budget_left(allocated: float | None, realized_today: float) -> float | None:
    """A bot's budget left today: its allocation (`PortfolioBot.budgets`) less today's realized losses (gains
    add nothing), or None when unknown."""
    return None if allocated is None else max(0.0, allocated + min(0.0, realized_today))
