"""The PortfolioBot's arithmetic: today's risk budget per bot, and how big one entry may be.

daily risk      = equity x risk.global_max_daily_loss_pct
a bot's share   = its bucket's percent / the enabled bots in the bucket, clamped to the guardrails
deployable      = equity x (1 - cash_reserve_pct)
one entry risks the bot's remaining budget (its budget less today's realized losses) at its stop, spread
included, so a bot that lost its budget stops opening; the size is then capped by deployable capital and
buying power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config.checks import bot_kind, trading_bots
from engine.config.model import BotsConfig, TradingBotConfig

BUCKET_OF = {
    "momentum": "momentum_bucket_pct_of_daily_risk",
    "options": "options_bucket_pct_of_daily_risk",
    "crypto": "crypto_bucket_pct_of_daily_risk",
}


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
    bots: dict[str, Allocation]

    def summary(self) -> dict[str, object]:
        return {
            "equity_usd": round(self.equity, 2),
            "daily_risk_usd": round(self.daily_risk_usd, 2),
            "deployable_usd": round(self.deployable_usd, 2),
            "bots": {
                b.bot_id: {"pct": round(b.pct_of_daily_risk, 4), "budget_usd": round(b.budget_usd, 2)} for b in self.bots.values()
            },
        }


def allocate(bots: BotsConfig, equity: float, max_daily_loss_pct: float) -> Allocations:
    portfolio = bots.portfoliobot
    daily_risk = equity * max_daily_loss_pct / 100
    deployable = equity * (1 - portfolio.cash_reserve_pct / 100)
    enabled = [bot for _path, bot in trading_bots(bots) if bot.enabled]
    per_bucket: dict[str, int] = {}
    for bot in enabled:
        per_bucket[bot_kind(bot)] = per_bucket.get(bot_kind(bot), 0) + 1
    guard = portfolio.guardrails
    out: dict[str, Allocation] = {}
    for bot in enabled:
        kind = bot_kind(bot)
        share = getattr(portfolio.buckets, BUCKET_OF[kind]) / per_bucket[kind]
        pct = min(max(share, guard.per_bot_min_pct_of_daily_risk), guard.per_bot_max_pct_of_daily_risk)
        out[bot.bot_id] = Allocation(bot.bot_id, pct, daily_risk * pct / 100)
    return Allocations(equity, daily_risk, deployable, out)


def fallback_allocation(bots: BotsConfig, bot: TradingBotConfig, equity: float, max_daily_loss_pct: float) -> Allocation:
    """With safety.allow_budget_fallback: the guardrail minimum, the smallest budget any bot can have."""
    pct = bots.portfoliobot.guardrails.per_bot_min_pct_of_daily_risk
    return Allocation(bot.bot_id, pct, equity * max_daily_loss_pct / 100 * pct / 100)


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
