"""Stage two of validation: named consistency checks the schema cannot express, each with a plain message.

Each check reads the typed config and returns Problems placed at the key that has to change. They run on a file
that failed its schema too, each skipped when it reads a value the schema refused (engine/config/partial.py): a
check cannot reason about a value of the wrong type, and one mistake is said once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from engine.config.errors import Problem
from engine.config.model import BotsConfig, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig, Settings, TradingBotConfig
from engine.config.schema_check import show_value
from engine.config.yaml_source import YamlDocument
from engine.core.clock import parse_hhmm, parse_start
from engine.core.names import did_you_mean
from engine.core.store import EXITBOT_ID, SYSTEM_SCOPE


def trading_bots(bots: BotsConfig) -> Iterator[tuple[tuple[str | int, ...], TradingBotConfig]]:
    """Every trading bot with the path of its block in bots.yaml."""
    for index, bot in enumerate(bots.momentum_bots):
        yield ("momentum_bots", index), bot
    yield ("optionsbot",), bots.optionsbot
    yield ("cryptobot",), bots.cryptobot


def bot_kind(bot: TradingBotConfig) -> str:
    """The machine kind that drives a bot."""
    if isinstance(bot, MomentumBotConfig):
        return "momentum"
    return "options" if isinstance(bot, OptionsBotConfig) else "crypto"


BUCKET_OF = {
    "momentum": "momentum_bucket_pct_of_daily_risk",
    "options": "options_bucket_pct_of_daily_risk",
    "crypto": "crypto_bucket_pct_of_daily_risk",
}


def clamped_shares(bots: BotsConfig, minimum: float | None = None) -> dict[str, float]:
    """Each enabled bot's percent of the daily risk as the guardrails make it: its bucket split evenly among the
    bucket's enabled bots, then clamped to per_bot_min/max_pct_of_daily_risk. The minimum lifts a bot above its
    bucket's split, so these may add up to more than 100: `guardrail_total` refuses that config, and
    `engine.trading.portfolio.shares` scales them down to 100 whatever the caller validated. `minimum`: another
    per_bot_min_pct_of_daily_risk than the config's (the largest that fits, for the message)."""
    portfolio = bots.portfoliobot
    enabled = [bot for _path, bot in trading_bots(bots) if bot.enabled]
    per_bucket: dict[str, int] = {}
    for bot in enabled:
        per_bucket[bot_kind(bot)] = per_bucket.get(bot_kind(bot), 0) + 1
    guard = portfolio.guardrails
    out: dict[str, float] = {}
    for bot in enabled:
        kind = bot_kind(bot)
        share = getattr(portfolio.buckets, BUCKET_OF[kind]) / per_bucket[kind]
        lowest = guard.per_bot_min_pct_of_daily_risk if minimum is None else minimum
        out[bot.bot_id] = min(max(share, lowest), guard.per_bot_max_pct_of_daily_risk)
    return out


# --- settings.yaml -----------------------------------------------------------------------------------------


# Files of the zone database that name no zone, and why each cannot be the engine's: ZoneInfo reads them all, so a
# session validated on one machine meant other hours on another (a laptop in California, a container in UTC).
_NOT_ZONES = {
    "localtime": "a link to this machine's own zone, whichever that is",
    "posixrules": "the default rules of this machine's zone database",
    "factory": "the zone database's 'no zone set' (an offset of 0 named -00)",
}


# Trees of the zone database that hold each zone again under another name, and why each is refused: ZoneInfo reads
# `right/UTC` as a zone, and only the sessions' check (for stock and options bots) ever looked further.
_VARIANT_TREES = {
    "right": (
        "the zone database's leap-second variant of {zone}: its clock counts the leap seconds, which the exchange's, "
        "the broker's and this machine's clocks do not, so it changes its hours at other instants than theirs"
    ),
    # identical hours, but the state file records its days' zone by name: one zone would be taken for two
    "posix": "a second name of {zone} in the zone database, and the state file knows a zone by its name",
}


def _not_a_zone(name: str) -> str | None:
    """Why `name` is refused although ZoneInfo reads it, or None."""
    tree, _slash, zone = name.partition("/")
    variant = _VARIANT_TREES.get(tree.casefold()) if zone else None
    if variant is not None:
        return f"'{name}' is {variant.format(zone=zone)}: write '{zone}'"
    why = _NOT_ZONES.get(name.casefold())
    if why is None:
        return None
    return f"'{name}' is not a time zone but {why}: name the zone, e.g. America/Los_Angeles"


def _zone(name: str) -> ZoneInfo | None:
    """The zone `name` names, or None when it names none. ZoneInfo reads the name as a path under the zone
    database, so besides its own errors it raises what opening that path raises: `America` is a folder
    (IsADirectoryError), a name of a few thousand letters is too long for the file system (OSError), and either
    was a traceback of `--validate` instead of a problem at system.timezone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def timezone_exists(settings: Settings, doc: YamlDocument) -> list[Problem]:
    name = settings.system.timezone
    not_a_zone = _not_a_zone(name)
    if not_a_zone is not None:
        return [doc.problem(("system", "timezone"), not_a_zone)]
    if _zone(name) is None:
        hint = did_you_mean(name, available_timezones())
        return [doc.problem(("system", "timezone"), f"'{name}' is not a known time zone{hint}")]
    return []


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def alert_urls_named(settings: Settings, doc: YamlDocument) -> list[Problem]:
    """`alerts.urls_env` lists names of environment variables, never URLs: an apprise URL carries its service's
    token (a Telegram bot token, a Discord webhook's key), and settings.yaml is shared, committed and printed.
    A URL found here is refused whether or not alerts are enabled: it is already a leaked secret."""
    alerts = settings.alerts
    problems = []
    for index, name in enumerate(alerts.urls_env):
        if "://" in name or "@" in name or ":" in name:
            message = (
                "is a URL in clear: it carries its service's token, so it must not be in settings.yaml; put it in the "
                "environment or .env (e.g. HYDRA_ALERT_URL=...) and list that variable's name here"
            )
            problems.append(doc.problem(("alerts", "urls_env", index), message))
        elif not ENV_NAME.fullmatch(name):
            message = f"'{name}' is not the name of an environment variable (letters, digits and _, e.g. HYDRA_ALERT_URL)"
            problems.append(doc.problem(("alerts", "urls_env", index), message))
    if alerts.enabled and not alerts.urls_env:
        message = "alerts are enabled but urls_env names no variable holding an apprise URL"
        problems.append(doc.problem(("alerts", "enabled"), message))
    if alerts.enabled and not alerts.events:
        # as with no URL: the run said alerts were on, and not one halt, loss warning or broker error was ever sent
        message = (
            "alerts are enabled but events lists none, so nothing would ever be sent: list the events to alert (e.g. "
            "[halt, resume, loss_warning, broker_error, exit_waiting, daily_summary]), or set alerts.enabled to false"
        )
        problems.append(doc.problem(("alerts", "events"), message))
    return problems


def sim_start_readable(settings: Settings, doc: YamlDocument) -> list[Problem]:
    """`sim.start` is read as `--start` is (`parse_start`): a start that cannot be read is refused here, at its
    line, instead of when a simulation is started (or never, by a command that does not read it). Empty means
    the default, a market open; only spaces is a typo, not that."""
    text = settings.sim.start
    if text == "":
        return []
    try:
        parse_start(text)
    except ValueError as exc:
        said = str(exc)  # parse_start's own reasons name the value; Python's (a malformed date) do not
        if not said.startswith(repr(text)):
            said = f"{show_value(text)} is not an ISO 8601 time with its UTC offset (e.g. 2026-11-23T06:30:00-08:00)"
        return [doc.problem(("sim", "start"), f"{said}; leave sim.start out to start at the next market open")]
    return []


def output_paths_usable(settings: Settings, doc: YamlDocument) -> list[Problem]:
    """`system.log_path` and `system.state_db_path` must name a path this machine can look at. Two did not, and
    every command that reads settings.yaml (`--validate` too) ended in a traceback: `~nosuchuser/state.db`, whose
    home folder Path.expanduser cannot find (RuntimeError), and a lone UTF-16 surrogate (`"\\ud800"` in a
    double-quoted value), which no file name can hold (UnicodeEncodeError when the path is looked at)."""
    problems = []
    for key in ("log_path", "state_db_path"):
        text = getattr(settings.system, key)
        try:
            os.fsencode(text)
        except UnicodeEncodeError as exc:
            where = exc.object[exc.start : exc.end]
            message = (
                f"{show_value(text)} cannot be a file name: U+{ord(where[0]):04X} is half of a UTF-16 pair (a "
                "surrogate), not a character"
            )
            problems.append(doc.problem(("system", key), message))
            continue
        try:
            Path(text).expanduser()
        except RuntimeError:
            user = text[1:].split("/", 1)[0]
            whose = f"the user '{user}'" if user else "this user (HOME is not set)"
            message = f"{show_value(text)} names the home folder of {whose}, which this machine does not know"
            problems.append(doc.problem(("system", key), message))
    return problems


def failure_window_spans_ticks(settings: Settings, doc: YamlDocument) -> list[Problem]:
    """Broker failures are stamped when they happen and counted over the last `api_failure_window_seconds`
    (engine/trading/exitbot.py). A window shorter than `loop_interval_seconds` holds one tick's failures at
    most: a broker failing a request every tick for ever never reached `max_api_failures_in_window`, and
    api_failure_halt, the kill switch for a broker that keeps failing, could never trip."""
    window, interval = settings.health.api_failure_window_seconds, settings.runner.loop_interval_seconds
    if window >= interval:
        return []
    message = (
        f"{window:g} s is shorter than runner.loop_interval_seconds ({interval:g} s): the window would hold one "
        "tick's broker failures at most, and a broker failing every tick would never trip api_failure_halt"
    )
    return [doc.problem(("health", "api_failure_window_seconds"), message)]


SETTINGS_CHECKS: tuple[Callable[[Settings, YamlDocument], list[Problem]], ...] = (
    timezone_exists,
    alert_urls_named,
    sim_start_readable,
    output_paths_usable,
    failure_window_spans_ticks,
)


# --- bots.yaml ---------------------------------------------------------------------------------------------


def duplicate_bot_ids(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """A bot id used twice; or two that differ only in case (`mom_AAPL`, `MOM_AAPL`): one id to a person reading
    `status`, the log or the broker's orders, and the prefix of both bots' client_order_ids, which the broker need
    not tell apart by case (an order of one bot could be looked up, and adopted, as the other's)."""
    seen: dict[str, tuple[tuple[str | int, ...], str]] = {}
    problems = []
    for path, bot in trading_bots(bots):
        folded = bot.bot_id.casefold()
        if folded in seen:
            first_path, first_id = seen[folded]
            line = doc.position((*first_path, "bot_id"))[0]
            if first_id == bot.bot_id:
                message = f"bot id '{bot.bot_id}' is already used (line {line})"
            else:
                message = (
                    f"bot id '{bot.bot_id}' differs from '{first_id}' (line {line}) only in case: bot ids must differ "
                    "in more than case"
                )
            problems.append(doc.problem((*path, "bot_id"), message))
        else:
            seen[folded] = (path, bot.bot_id)
    return problems


# Ids the engine uses for itself, where a bot's id goes too (client_order_id prefixes, halt scopes, the records
# `why` reads, the resume event), each with what it is; compared without case, as bot ids are.
_ENGINE_IDS = {
    EXITBOT_ID: "the kill switch's own id (its flatten orders carry it; a fill of one is split among the holders)",
    SYSTEM_SCOPE: "the system's own id (its halts and its facts for `why` are kept under it)",
    "portfolio": "the PortfolioBot's own id (engine/trading/engine.py)",
    "all": "what a resume of every halt is recorded under (the `resume` event's scope)",
    # a bot of this name was added into the sum beside it: the report's and the page's total curve counted its
    # trades twice, and its P&L row stood beside the total's under the same name (report, serve, backtest)
    "total": "the name of the sum of every bot's P&L in the report, the status page and the backtest's table",
}


def engine_bot_ids(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """A bot named as the engine names its own parts. A MomentumBot named `exitbot` validated: its orders carried
    the kill switch's prefix, and its first buy was taken for a flatten of a shared symbol and split among the
    bots holding it (none), so the fill vanished from its ledger and reconciliation halted on the difference. One
    named `system` wrote its own halts as the whole system's."""
    problems = []
    for path, bot in trading_bots(bots):
        what = _ENGINE_IDS.get(bot.bot_id.casefold())
        if what is not None:
            problems.append(doc.problem((*path, "bot_id"), f"bot id '{bot.bot_id}' is taken by the engine: it is {what}"))
    return problems


def duplicate_symbols(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """A symbol listed twice in one bot's list is a typo. Several bots on one symbol are fine: each owns a ledger of
    its own fills on Alpaca's one netted position (engine/trading/orders.py; README "Several bots on one ticker")."""
    problems = []
    for index, pair in enumerate(bots.cryptobot.pairs):
        if pair in bots.cryptobot.pairs[:index]:
            problems.append(doc.problem(("cryptobot", "pairs", index), f"pair '{pair}' is listed twice"))
    for index, ticker in enumerate(bots.optionsbot.tickers):
        if ticker in bots.optionsbot.tickers[:index]:
            problems.append(doc.problem(("optionsbot", "tickers", index), f"ticker '{ticker}' is listed twice"))
    return problems


def session_order(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    problems = []
    for path, bot in trading_bots(bots):
        s = bot.session
        start, end, until = parse_hhmm(s.trade_start), parse_hhmm(s.trade_end), parse_hhmm(s.manage_until)
        if start > end:
            message = f"trade_end '{s.trade_end}' is before trade_start '{s.trade_start}'"
            problems.append(doc.problem((*path, "session", "trade_end"), message))
        elif start == end:
            # the window is the one instant HH:MM:00: the bot arms there and disarms a tick later, never entering
            message = (
                f"trade_end '{s.trade_end}' is trade_start: a window of one instant, in which the bot arms and "
                "disarms a tick later without ever entering"
            )
            problems.append(doc.problem((*path, "session", "trade_end"), message))
        if end > until:
            message = f"manage_until '{s.manage_until}' is before trade_end '{s.trade_end}'"
            problems.append(doc.problem((*path, "session", "manage_until"), message))
    return problems


def _minutes(at: time) -> int:
    return at.hour * 60 + at.minute


def exits_can_fire(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """An exit that can never fire is an exit switched off without a word, while bots.yaml still shows it.

    The engine only ever buys (an exit never opens a short), so a stop loss of 100 % fires only once the position
    is worth nothing (a stock's quote with a side at 0 is no price to it at all: `health.max_spread_pct`), when
    selling saves nothing: `stop_loss_pct: 100` is a stop switched off.

    A position is opened at trade_start at the earliest and flattened at manage_until at the latest
    (`past_manage_until`, also for one held over from an earlier day), so a `time_stop_minutes` longer than
    trade_start to manage_until never fired either: manage_until closed every position first. The span is read on
    the wall clock, and a CryptoBot's may hold the hour the clocks repeat in autumn (00:30-03:00 is three and a
    half hours that night): an hour more is let be for it. A stock or options window never spans the change,
    which happens at night, on a Sunday."""
    problems = []
    for path, bot in trading_bots(bots):
        if bot.exits.stop_loss_pct >= 100:
            message = (
                f"a stop loss of {bot.exits.stop_loss_pct:g} % is no stop: the engine only buys, and a position loses "
                "100 % only once it is worth nothing, when selling saves nothing; give a stop below 100"
            )
            problems.append(doc.problem((*path, "exits", "stop_loss_pct"), message))
        s = bot.session
        try:
            start, end, until = parse_hhmm(s.trade_start), parse_hhmm(s.trade_end), parse_hhmm(s.manage_until)
        except ValueError:
            continue  # the schema refuses it
        if start > end or end > until:
            continue  # session_order says so
        longest = _minutes(until) - _minutes(start) + (60 if isinstance(bot, CryptoBotConfig) else 0)
        if bot.exits.time_stop_minutes > longest:
            message = (
                f"a time stop of {bot.exits.time_stop_minutes} minutes never fires: a position opened at trade_start "
                f"'{s.trade_start}' is closed at manage_until '{s.manage_until}', {longest} minutes later at most; "
                f"give {longest} minutes at most"
            )
            problems.append(doc.problem((*path, "exits", "time_stop_minutes"), message))
    return problems


def enabled_bots_have_a_share(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """An enabled bot whose share of the daily risk is 0 has a budget of 0: preflight `budget_known` blocks every
    entry it asks for, every tick, and it never trades, while bots.yaml says it is enabled. Its bucket at 0 (with
    `per_bot_min_pct_of_daily_risk` 0, which would lift it) or `per_bot_max_pct_of_daily_risk` at 0 does it.
    `enabled: false` is how a bot is switched off. Without the PortfolioBot no share is given (the budget fallback
    is the guardrail minimum, `engine.trading.portfolio.fallback_budget_usd`): not judged here."""
    portfolio = bots.portfoliobot
    if not portfolio.enabled:
        return []
    shares = clamped_shares(bots)
    zero = [bot for _path, bot in trading_bots(bots) if bot.enabled and shares.get(bot.bot_id, 0.0) <= 0]
    if not zero:
        return []
    names = ", ".join(bot.bot_id for bot in zero)
    if portfolio.guardrails.per_bot_max_pct_of_daily_risk <= 0:
        message = (
            f"per_bot_max_pct_of_daily_risk 0 gives every enabled bot ({names}) a budget of 0: none would ever "
            "enter; disable the bots, or give them a share"
        )
        return [doc.problem(("portfoliobot", "guardrails", "per_bot_max_pct_of_daily_risk"), message)]
    problems = []
    for kind, key in BUCKET_OF.items():
        of_kind = [bot.bot_id for bot in zero if bot_kind(bot) == kind]
        if of_kind:
            message = (
                f"{key} 0 (and per_bot_min_pct_of_daily_risk 0) gives the enabled {', '.join(of_kind)} a budget of 0: "
                f"{'it' if len(of_kind) == 1 else 'they'} would never enter; disable "
                f"{'it' if len(of_kind) == 1 else 'them'}, or give the bucket a share"
            )
            problems.append(doc.problem(("portfoliobot", "buckets", key), message))
    return problems


def bucket_sum(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    b = bots.portfoliobot.buckets
    total = b.momentum_bucket_pct_of_daily_risk + b.options_bucket_pct_of_daily_risk + b.crypto_bucket_pct_of_daily_risk
    if total > 100 + 1e-9:
        message = f"bucket percentages add up to {total:g}, more than 100"
        return [doc.problem(("portfoliobot", "buckets"), message, of_key=True)]
    return []


def guardrail_order(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    g = bots.portfoliobot.guardrails
    if g.per_bot_min_pct_of_daily_risk > g.per_bot_max_pct_of_daily_risk:
        message = (
            f"per_bot_min_pct_of_daily_risk {g.per_bot_min_pct_of_daily_risk:g} is above "
            f"per_bot_max_pct_of_daily_risk {g.per_bot_max_pct_of_daily_risk:g}"
        )
        return [doc.problem(("portfoliobot", "guardrails", "per_bot_min_pct_of_daily_risk"), message)]
    return []


def guardrail_total(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """The enabled bots' shares of the daily risk, once per_bot_min_pct_of_daily_risk has lifted each, must add up
    to 100 at most: six MomentumBots in a 25 % bucket are lifted from 4.17 to a 5 % minimum each, and with
    options at 50 and crypto at 25 the bots were given 105 % of the daily risk, more than the daily loss limit
    allows. Each bot's budget is sized as if it were the only one to lose; their sum is the most the day can lose."""
    shares = clamped_shares(bots)
    total = sum(shares.values())
    if total <= 100 + 1e-9 or sum(clamped_shares(bots, 0.0).values()) > 100 + 1e-9:
        return []  # fits, or over without any minimum: the buckets' own sum is past 100 (bucket_sum says so)
    g = bots.portfoliobot.guardrails
    lifted = sorted(bot_id for bot_id, pct in shares.items() if pct == g.per_bot_min_pct_of_daily_risk)
    # The largest minimum (to the hundredth) that fits: the total grows with the minimum, and at 0 it is at most
    # the buckets' sum, which bucket_sum holds to 100 (or refuses on its own)
    low, high = 0.0, g.per_bot_min_pct_of_daily_risk
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if sum(clamped_shares(bots, middle).values()) <= 100 + 1e-9 else (low, middle)
    fits = math.floor(low * 100) / 100
    message = (
        f"the {len(shares)} enabled bots' shares of the daily risk add up to {total:.4g} %, more than 100, once "
        f"per_bot_min_pct_of_daily_risk {g.per_bot_min_pct_of_daily_risk:g} lifts {len(lifted)} of them "
        f"({', '.join(lifted[:5])}{', ...' if len(lifted) > 5 else ''}) above their bucket's split: their budgets would "
        f"allow more than the daily loss limit; lower the minimum (to {fits:g} at most, with these "
        "buckets and bots) or the buckets"
    )
    return [doc.problem(("portfoliobot", "guardrails", "per_bot_min_pct_of_daily_risk"), message)]


def chain_ranges(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    rules = bots.optionsbot.chain_rules
    problems = []
    if rules.dte_min > rules.dte_max:
        message = f"dte_min {rules.dte_min} is above dte_max {rules.dte_max}"
        problems.append(doc.problem(("optionsbot", "chain_rules", "dte_min"), message))
    if rules.delta_min > rules.delta_max:
        message = f"delta_min {rules.delta_min:g} is above delta_max {rules.delta_max:g}"
        problems.append(doc.problem(("optionsbot", "chain_rules", "delta_min"), message))
    return problems


def option_underlyings_plain(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """An OptionsBot underlying with a share class (BRK.B) is refused. Its contracts' OCC root is written without
    the dot (BRKB, or another spelling), and the Alpaca reference this engine follows does not say which: the
    simulator named them BRK.B261204C00240000, which is no OCC symbol, so the engine took each contract for a
    share (a multiplier of 1, its P&L and risk off a hundredfold) and the order for it was refused as an
    unknown asset. Refused where it is written rather than guessed."""
    problems = []
    for index, ticker in enumerate(bots.optionsbot.tickers):
        if "." in ticker:
            message = (
                f"'{ticker}' is a share class: how its option contracts' OCC root is spelt (without the '.') is not "
                "known to the engine, so the OptionsBot cannot trade its options; list underlyings without a '.'"
            )
            problems.append(doc.problem(("optionsbot", "tickers", index), message))
    return problems


# Alpaca refuses a buy of a USD-quoted crypto pair under $10: 403 40310000 "cost basis must be >= minimal amount of
# order 10" (docs/alpaca.md, ccxt-30101). Sells are not refused. Every pair is quoted in USD (the schema refuses others).
CRYPTO_MIN_USD = 10.0


def crypto_minimum(bots: BotsConfig, doc: YamlDocument) -> list[Problem]:
    """An enabled CryptoBot whose every entry would be under Alpaca's minimum: refused before the market opens."""
    bot = bots.cryptobot
    usd_pairs = [pair for pair in bot.pairs if pair.endswith("/USD")]
    if not bot.enabled or not usd_pairs or bot.execution.default_notional_usd >= CRYPTO_MIN_USD:
        return []
    message = (
        f"{bot.execution.default_notional_usd:g} USD is under Alpaca's {CRYPTO_MIN_USD:g} USD minimum for a buy of "
        f"{', '.join(usd_pairs)}: every entry would be refused"
    )
    return [doc.problem(("cryptobot", "execution", "default_notional_usd"), message)]


BOTS_CHECKS: tuple[Callable[[BotsConfig, YamlDocument], list[Problem]], ...] = (
    duplicate_bot_ids,
    engine_bot_ids,
    duplicate_symbols,
    session_order,
    exits_can_fire,
    bucket_sum,
    enabled_bots_have_a_share,
    guardrail_order,
    guardrail_total,
    chain_ranges,
    option_underlyings_plain,
    crypto_minimum,
)


# --- both files ----------------------------------------------------------------------------------------------

EXCHANGE_ZONE = ZoneInfo("America/New_York")
REGULAR_SESSION = (time(9, 30), time(16, 0))  # New York time; an early close only shortens it
_SAMPLE_DAYS = tuple(date(2026, 1, 5) + timedelta(weeks=week) for week in range(53))  # a Monday a week, a year


def _sessions_here(zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The regular session of a Monday of each week of a year, in `zone`: the two zones' clocks change on
    different days, so the session's local hours can take up to four values over a year."""
    sessions = []
    for day in _SAMPLE_DAYS:
        opens, closes = (datetime.combine(day, at, EXCHANGE_ZONE).astimezone(zone) for at in REGULAR_SESSION)
        sessions.append((opens, closes))
    return sessions


def _meets(start: time, end: time, opens: datetime, closes: datetime) -> bool:
    """Whether a window of wall-clock times overlaps a session that opens and closes on one date (a close at
    midnight, 17:30-00:00 in Moscow, ends the day) for longer than an instant. A window that ends at the open
    (06:35-09:30 in America/New_York, the shipped window in the exchange's own zone) met it only at 09:30:00,
    where the bot armed and a tick later disarmed: it never entered, as one that starts at the close never does."""
    minutes = (start.hour * 60 + start.minute, end.hour * 60 + end.minute)
    opened = opens.hour * 60 + opens.minute
    closed = opened + round((closes - opens).total_seconds() / 60)
    return minutes[0] < closed and opened < minutes[1]


def _hours(sessions: list[tuple[datetime, datetime]]) -> str:
    shown = dict.fromkeys(f"{opens:%H:%M}-{closes:%H:%M}" for opens, closes in sessions)
    return " or ".join(shown)


def sessions_in_zone(settings: Settings, settings_doc: YamlDocument, bots: BotsConfig, bots_doc: YamlDocument) -> list[Problem]:
    """Stock and options bots against the exchange's hours as `system.timezone` sees them. Their sessions are
    wall-clock times of that zone, and so is the trading date by which counters and budgets are kept.

    A zone in which the New York session crosses midnight (Asia/Tokyo: 23:30-06:00) would change the trading
    date in the middle of a session: every bot's daily counters and budget would start again, and a bot could
    make twice its `max_trades_per_day`. A window that never meets the session (06:35-09:30 left as shipped, in
    Europe/Berlin) would never trade, without a word. Crypto trades around the clock: neither applies."""
    if _not_a_zone(settings.system.timezone) is not None:
        return []  # timezone_exists says so
    zone = _zone(settings.system.timezone)
    if zone is None:
        return []  # timezone_exists says so
    stock_bots = [(path, bot) for path, bot in trading_bots(bots) if bot.enabled and bot_kind(bot) != "crypto"]
    if not stock_bots:
        return []
    sessions = _sessions_here(zone)
    name = settings.system.timezone
    if any(opens.date() != (closes - timedelta(microseconds=1)).date() for opens, closes in sessions):
        names = ", ".join(bot.bot_id for _path, bot in stock_bots)
        message = (
            f"the New York session (09:30-16:00 America/New_York) crosses midnight in {name} ({_hours(sessions)}): "
            f"the trading date would change in the middle of a session, and with it every bot's daily counters and "
            f"budget; the stock and options bots ({names}) need a zone in which it does not (America/New_York, "
            f"Europe/London, ...), or must be disabled"
        )
        return [settings_doc.problem(("system", "timezone"), message)]
    problems = []
    for path, bot in stock_bots:
        try:
            start, end = parse_hhmm(bot.session.trade_start), parse_hhmm(bot.session.trade_end)
        except ValueError:
            continue  # the schema refuses it
        if start > end:
            continue  # session_order says so
        if not any(_meets(start, end, opens, closes) for opens, closes in sessions):
            message = (
                f"{bot.bot_id} trades {bot.session.trade_start}-{bot.session.trade_end} {name} time, which never meets "
                f"the New York session ({_hours(sessions)} in {name}): it would never enter"
            )
            problems.append(bots_doc.problem((*path, "session", "trade_start"), message))
        elif isinstance(bot, OptionsBotConfig):
            problems.extend(_options_window_before_flatten(bot, path, start, end, sessions, name, bots_doc))
    return problems


def _options_window_before_flatten(
    bot: OptionsBotConfig,
    path: tuple[str | int, ...],
    start: time,
    end: time,
    sessions: list[tuple[datetime, datetime]],
    name: str,
    doc: YamlDocument,
) -> list[Problem]:
    """The OptionsBot opens nothing within `exits.flatten_before_close_minutes` of the close (an entry there would
    be flattened at once: `_flattening` in engine/trading/facts_builder.py). A trade window that lies wholly in
    those last minutes of every session would never enter, without a word (one `entry_blocked` a day in the log)."""
    before = timedelta(minutes=bot.exits.flatten_before_close_minutes)
    open_to_entries = [(opens, max(opens, closes - before)) for opens, closes in sessions]
    if any(_meets(start, end, opens, until) for opens, until in open_to_entries):
        return []
    message = (
        f"{bot.bot_id} trades {bot.session.trade_start}-{bot.session.trade_end} {name} time, which never meets the "
        f"New York session before its last {bot.exits.flatten_before_close_minutes} minutes, when no entry is made "
        f"({_hours(open_to_entries)} in {name}): it would never enter"
    )
    return [doc.problem((*path, "exits", "flatten_before_close_minutes"), message)]


class DeclaredSignal(Protocol):
    @property
    def params(self) -> frozenset[str]: ...
    @property
    def kinds(self) -> frozenset[str]: ...
    @property
    def param_types(self) -> Mapping[str, str]: ...
    @property
    def param_bounds(self) -> Mapping[str, tuple[float | None, float | None]]: ...


def param_bounds_problem(bounds: tuple[float | None, float | None], value: float) -> str | None:
    """Why `value` is outside a signal parameter's declared (minimum, maximum), or None: a lookback of 0 or -3
    reads the wrong price, or none, without a word."""
    low, high = bounds
    if low is not None and value < low:
        return f"{value!r} is below the parameter's minimum, {low:g}"
    if high is not None and value > high:
        return f"{value!r} is above the parameter's maximum, {high:g}"
    return None


def param_type_problem(declared: str, value: Any) -> str | None:
    """Why `value` cannot be a signal parameter declared `integer` or `number`, or None.

    A signal reads its parameters with int() and float(): text would raise inside a tick, and 1.5 for an
    integer would be cut to 1 without a word."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{show_value(value)} is not a number: the parameter is declared {declared}"
    if declared == "integer" and not isinstance(value, int):
        return f"{value!r} is not a whole number: the parameter is declared integer"
    return None


def signal_modes_known(bots: BotsConfig, doc: YamlDocument, signals: Mapping[str, DeclaredSignal]) -> list[Problem]:
    """Every bot's signal mode is declared in rules/signals.yaml for its kind; its params are declared."""
    problems = []
    for path, bot in trading_bots(bots):
        mode = bot.signal.mode
        if mode not in signals:
            hint = did_you_mean(mode, signals, list_when_none=True)
            problems.append(doc.problem((*path, "signal", "mode"), f"no signal implements mode '{mode}'{hint}"))
            continue
        if bot_kind(bot) not in signals[mode].kinds:
            kinds = ", ".join(sorted(signals[mode].kinds))
            message = f"signal '{mode}' is for {kinds} bots, not {bot_kind(bot)} bots"
            problems.append(doc.problem((*path, "signal", "mode"), message))
        for key, value in bot.signal.params.items():
            if key not in signals[mode].params:
                allowed = ", ".join(sorted(signals[mode].params)) or "none"
                message = f"signal '{mode}' has no parameter '{key}' (declared: {allowed})"
                problems.append(doc.problem((*path, "signal", "params", key), message, of_key=True))
                continue
            wrong = param_type_problem(signals[mode].param_types.get(key, "number"), value)
            if wrong is None:
                wrong = param_bounds_problem(signals[mode].param_bounds.get(key, (None, None)), value)
            if wrong:
                problems.append(doc.problem((*path, "signal", "params", key), wrong))
    return problems
