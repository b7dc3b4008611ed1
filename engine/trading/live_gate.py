"""What a live run needs whole, and does not start without: the kill switch with every one of its conditions on,
and every preflight check the project ships.

`exitbot.enabled: false` was refused for a live run, but the switch could be thinned to nothing around it: every
`exitbot.kill_conditions` false (or only `max_daily_loss_halt`) started a live run with no daily-loss limit, and
rules/preflight.yaml cut down to `system_armed` validated and traded, with no check of the quotes, the account or
the day's loss. Each is a setting, refused with exit 2 (`runner._alpaca`); `--validate` says the same as a
warning, since a paper account may be given a thinner set on purpose.

Only the names are judged (and the daily-loss condition's `flatten`): what a kept check says is the user's to
write, and validation already refuses one that can never hold or reads no fact.
"""

from __future__ import annotations

from dataclasses import fields

from engine.config.model import BotsConfig, KillConditions
from engine.rules.book import RuleBook

# rules/preflight.yaml as shipped: each blocks an entry on something that loses money (a halted system, an account
# the broker blocks, stale or crossed quotes, a failing broker, the day's loss, the order rate, no capital or budget,
# data the account's plan does not include, a bot paused after repeated refusals)
SHIPPED_PREFLIGHT = (
    "system_armed",
    "account_ok",
    "account_active",
    "trading_not_blocked",
    "account_not_blocked",
    "trading_not_suspended_by_user",
    "crypto_enabled",
    "options_level_ok",
    "market_open",
    "quotes_fresh",
    "quotes_usable",
    "api_failures_ok",
    "daily_loss_ok",
    "order_rate_ok",
    "capital_available",
    "data_permitted",  # the broker refuses the account the data the bot's entries need (a feed the plan lacks)
    "bot_not_paused",  # the broker refused the bot's orders repeatedly (the gate holds a pause besides)
    "budget_known",
)
# Shipped, yet not required live: the engine holds what they say without them, and a rules/ folder copied before
# they were shipped must not refuse a live run that was taken before (a user's files keep working). A paused bot's
# entries are refused by the gate itself (`bot_paused`); a bot whose data the plan refuses has no quote or chain,
# which `quotes_fresh` and the sizing refuse.
NOT_REQUIRED_LIVE = frozenset({"data_permitted", "bot_not_paused"})
REQUIRED_PREFLIGHT = tuple(name for name in SHIPPED_PREFLIGHT if name not in NOT_REQUIRED_LIVE)
# The kill condition that closes every position when it holds (`flatten: true`): without it the daily-loss limit
# halts new entries and leaves every open position to lose on
FLATTENING = ("max_daily_loss_halt",)


def live_gaps(bots: BotsConfig, book: RuleBook) -> list[str]:
    """What a live run would lack, each as the end of "live trading needs ...": empty when nothing is missing."""
    gaps = []
    exitbot = bots.exitbot
    if not exitbot.enabled:
        gaps.append("the kill switch: exitbot.enabled is false in bots.yaml")
    switches = exitbot.kill_conditions
    off = [f"exitbot.kill_conditions.{item.name}" for item in fields(KillConditions) if not getattr(switches, item.name)]
    if off:
        verb = "is" if len(off) == 1 else "are"
        gaps.append(f"every kill condition of the kill switch on: {', '.join(off)} {verb} false in bots.yaml")
    missing = [name for name in REQUIRED_PREFLIGHT if name not in book.preflight]
    if missing:
        gaps.append(
            f"every preflight check that rules/preflight.yaml ships: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not in rules/"
        )
    for name in FLATTENING:
        entry = book.kill_conditions.get(name)
        if entry is not None and entry.body.get("flatten") is not True:
            where = f"kill condition {name} has no 'flatten: true' ({entry.doc.path})"
            gaps.append(f"the daily-loss kill switch to close every position: {where}")
    return gaps


def live_refusal(bots: BotsConfig, book: RuleBook) -> str | None:
    """The lines a live run is refused with, one a gap, or None when it may start."""
    gaps = live_gaps(bots, book)
    return "\n".join(f"live trading needs {gap}" for gap in gaps) if gaps else None
