"""What must hold before a run may start: the broker accepts our keys, every configured symbol exists and
trades, and every position and working order SQLite holds has a bot in bots.yaml to manage it. A failure here
is a clear start-up error naming the bot, and a non-zero exit, never a run that starts and then cannot trade
(or trades what the user did not mean, or leaves a position nobody manages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta, tzinfo

from engine.brokers.base import Asset, Broker, BrokerError
from engine.brokers.symbols import asset_class_of
from engine.config.checks import _zone, bot_kind, trading_bots
from engine.config.model import BotsConfig, CryptoBotConfig, MomentumBotConfig, OptionsBotConfig
from engine.core.store import EXITBOT_ID, SYSTEM_SCOPE, Halt, OrderRow, PositionRow
from engine.core.terminal_text import one_line


def symbols_by_bot(bots: BotsConfig) -> list[tuple[str, str, bool]]:
    """(bot id, symbol, whether the bot sizes it in fractions) for every enabled bot's symbols."""
    out: list[tuple[str, str, bool]] = []
    for _path, bot in trading_bots(bots):
        if not bot.enabled:
            continue
        if isinstance(bot, MomentumBotConfig):
            out.append((bot.bot_id, bot.ticker, False))  # whole shares
        elif isinstance(bot, OptionsBotConfig):
            out += [(bot.bot_id, ticker, False) for ticker in bot.tickers]  # the underlyings; contracts are chosen live
        elif isinstance(bot, CryptoBotConfig):
            out += [(bot.bot_id, pair, True) for pair in bot.pairs]
    return out


def check_broker(broker: Broker, bots: BotsConfig) -> list[str]:
    """One line per reason the run cannot start; empty when it can. The broker refusing our keys, or not
    answering, stops at the first question: nothing else can be known."""
    problems: list[str] = []
    kinds = {bot.bot_id: bot_kind(bot) for _path, bot in trading_bots(bots)}
    for bot_id, symbol, fractional in symbols_by_bot(bots):
        try:
            asset = broker.get_asset(symbol)
        except BrokerError as exc:
            if exc.reason == "unauthorized":
                return [refused_keys(exc)]
            return [f"cannot check {symbol} for {bot_id}: {exc}"]
        if asset is None:
            problems.append(f"{bot_id}: '{symbol}' is not a symbol the broker knows")
        elif asset.status != "active" or not asset.tradable:
            state = f"status {asset.status}, tradable {asset.tradable}"
            problems.append(f"{bot_id}: '{symbol}' is not tradable at the broker ({state})")
        elif asset.asset_class != _ASSET_CLASS_OF_BOT[kinds[bot_id]]:
            problems.append(f"{bot_id}: {_other_class(symbol, asset, kinds[bot_id])}")
        elif fractional and not asset.fractionable:
            problems.append(f"{bot_id}: '{symbol}' cannot be traded in fractions, which this bot's sizing needs")
    return problems


def refused_keys(error: BrokerError) -> str:
    """What a start says when the broker refuses the keys (401, or 403 as Alpaca refuses bad keys), wherever asked."""
    return f"the broker refused the API keys ({error.message}): check ALPACA_KEY and ALPACA_SECRET in .env"


# The asset class of the symbols each kind of bot is configured with: the OptionsBot names its underlyings,
# stocks and ETFs; its contracts are chosen live.
_ASSET_CLASS_OF_BOT = {"momentum": "us_equity", "options": "us_equity", "crypto": "crypto"}
_WHAT_A_BOT_TRADES = {"momentum": "stocks", "options": "stocks' options", "crypto": "crypto pairs"}
_CLASS_NAMES = {"us_equity": "stock", "us_option": "option", "crypto": "crypto"}


def _other_class(symbol: str, asset: Asset, kind: str) -> str:
    """Why a symbol the broker knows is not one its bot can trade. `BTCUSD` passes the schema's ticker pattern,
    and Alpaca answers /v2/assets/BTCUSD with the pair BTC/USD (its old spelling): a MomentumBot ran on a coin as
    if it were a share, waiting for stock quotes that never come."""
    what = _CLASS_NAMES.get(asset.asset_class, repr(asset.asset_class))
    named = f" ({asset.symbol})" if asset.symbol != symbol else ""
    if kind == "crypto":
        fix = "give it a pair like BTC/USD, or trade the stock with a momentum bot"
    else:
        fix = "give it a stock's ticker, or trade the pair with the cryptobot"
    is_a = f"{_article(what)} {what} asset at the broker{named}"
    return f"'{symbol}' is {is_a}, but {_article(kind)} {kind} bot trades {_WHAT_A_BOT_TRADES[kind]}: {fix}"


def _article(word: str) -> str:
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


_HOLDS = {"us_equity": "shares", "us_option": "option contracts", "crypto": "coins"}
_TRADES = {"momentum": "us_equity", "options": "us_option", "crypto": "crypto"}


def unmanaged(bots: BotsConfig, positions: Iterable[PositionRow], orders: Iterable[OrderRow]) -> list[tuple[str, str]]:
    """(`positions.BOT.SYMBOL` or `orders.CLIENT_ORDER_ID`, one line) for each position or working order SQLite
    holds for a bot this bots.yaml would not manage: a bot removed, renamed or disabled since (nothing would manage
    its exit, and reconciliation cannot see the orphan: SQLite still explains it), or a bot id now given to a bot
    of another kind (rules written for shares, options or coins would sell what they were not written for). A bot
    whose ticker, tickers or pairs changed still manages what it holds: its exits read the position itself.
    Empty when every holder is an enabled bot of the kind it holds."""

    configured = {bot.bot_id: bot for _path, bot in trading_bots(bots)}
    held = [(f"positions.{p.bot_id}.{p.symbol}", p.bot_id, p.symbol, f"holds {p.qty:g} {p.symbol}") for p in positions if p.qty]
    working = [
        (f"orders.{o.client_order_id}", o.bot_id, o.symbol, f"has a working {o.purpose} order {o.client_order_id} ({o.symbol})")
        for o in orders
        if o.bot_id != EXITBOT_ID
    ]
    problems = []
    for where, bot_id, symbol, what in (*held, *working):
        bot = configured.get(bot_id)
        if bot is None:
            fix = (f"bots.yaml has no bot '{bot_id}' (removed or renamed): nothing would manage its exit; put the bot "
                   f"back under that bot_id, enabled, until it is flat")  # fmt: skip
        elif not bot.enabled:
            fix = (f"bots.yaml disables '{bot_id}' (enabled: false): nothing would manage its exit; enable it until "
                   f"it is flat, then disable it")  # fmt: skip
        elif _TRADES[kind := bot_kind(bot)] != asset_class_of(symbol):
            fix = (f"bots.yaml now makes '{bot_id}' {'an' if kind[0] in 'aeiou' else 'a'} {kind} bot, whose rules are "
                   f"not written for {_HOLDS[asset_class_of(symbol)]}; give it back its kind, or this bot_id back to "
                   f"the bot that opened this, until it is flat")  # fmt: skip
        else:
            continue
        problems.append((where, f"'{bot_id}' {what}, but {fix}"))
    return problems


def restored_machines(bots: BotsConfig) -> frozenset[tuple[str, str]]:
    """(kind, bot id) of each machine whose saved state a run restores: the system's and the PortfolioBot's, and
    each trading bot's that bots.yaml runs, enabled, as that kind. Any other row is left as it is (a bot removed,
    disabled or given another kind holding nothing: `unmanaged` refuses one that holds something), and checked once
    bots.yaml runs that bot again. A set, built once: validation looks every saved row up in it."""
    running = {(bot_kind(bot), bot.bot_id) for _path, bot in trading_bots(bots) if bot.enabled}
    return frozenset({("system", "system"), ("portfolio", "portfolio"), *running})


def vanished_state(kind: str, bot_id: str, state: str, machine: str) -> str:
    """Why a saved state the machine file `machine` no longer has stops the run, and what to do: the engine cannot
    tell where the bot stands (starting it over at the initial state would forget what it was doing). Disabling the
    bot is no way out: its saved state is left as it is, and checked again once it is enabled."""
    return (f"{kind} '{bot_id}' is saved in state '{state}', which {machine} no longer has: put '{state}' back until a "
            f"run has moved the machine on, then remove it")  # fmt: skip


def orphaned_halts(bots: BotsConfig, halts: Iterable[Halt]) -> list[tuple[str, str]]:
    """(`halts.BOT`, one line) for each halt until `resume` of a bot id bots.yaml no longer has: the halt stays in
    SQLite under that id, and the same bot renamed would trade past it (the engine cannot tell a rename from a
    removal). A disabled bot's halt names a bot bots.yaml has, and holds again once it is enabled. A halt with an
    end (a pause after refusals) is not counted: it ends on its own."""
    configured = {bot.bot_id for _path, bot in trading_bots(bots)}
    problems = []
    for halt in halts:
        if halt.scope == SYSTEM_SCOPE or halt.scope in configured or halt.until is not None or halt.ended_at is not None:
            continue
        scope = one_line(halt.scope)  # text from the state file, for a terminal
        problems.append((f"halts.{scope}", (
            f"a halt until `resume` names '{scope}' ({one_line(halt.reason)}), but bots.yaml has no bot '{scope}' "
            f"(removed or renamed): under a new bot_id it would trade past the halt; put the bot back under that "
            f"bot_id (enabled: false, if it is not to trade), or end the halt with `python -m engine resume`"
        )))  # fmt: skip
    return problems


def other_account(written_by: str | None, name: str) -> str | None:
    """Why a run on the broker `name` cannot use a state file that a run on `written_by` wrote, up to "needs its
    own": the file holds the positions, orders and halts of that account, and no restart changes whose account it
    holds. None when it can (the same broker, or a file no run has written yet)."""
    if written_by is None or written_by == name:
        return None
    held, asked = ("an" if w == "alpaca" else "a" for w in (written_by, name))
    return f"holds the state of {held} '{written_by}' account; {asked} '{name}' run needs its own"


MODE_KEY = "alpaca_mode"  # meta: 'paper' or 'live', the Alpaca account the state file holds (`other_mode`)


def other_mode(written_by: str | None, recorded: str | None, mode: str) -> str | None:
    """Why an Alpaca run in `mode` ('paper' or 'live') cannot use a state file whose runs recorded `recorded`, or
    None when it can. A paper account's halts, caps, positions, orders and P&L basis are not the live account's, and
    the broker's name alone ("alpaca") did not tell them apart. A file an Alpaca run wrote before the mode was
    recorded may be either: a paper run takes it (and records 'paper'); a live run refuses it (fail closed)."""
    if recorded is not None:
        return None if recorded == mode else f"holds the state of a {recorded} Alpaca account; a {mode} run needs its own"
    if written_by == "alpaca" and mode == "live":
        return ("was written by an Alpaca run that recorded no paper or live mode (an older engine): it may hold a "
                "paper account's state; a live run needs its own")  # fmt: skip
    return None


ACCOUNT_KEY = "alpaca_account_id"  # meta: the Alpaca account (its `id`) the state file holds (`other_account_id`)


def other_account_id(recorded: str | None, read: str) -> str | None:
    """Why a run whose keys reach the Alpaca account `read` cannot use a state file that holds account `recorded`'s
    state, or None when it can (the same account, or a file that recorded none yet). Paper and live are told apart
    by `other_mode`; this tells apart two accounts of one mode: a second paper account's keys put in .env took the
    first's halts, trade caps, budgets and owned positions (and its daily P&L basis, refused as a moved
    last_equity until confirmed, then taken)."""
    if recorded is None or recorded == read:
        return None
    return f"holds the state of Alpaca account {one_line(recorded)}; the keys reach account {read}, which needs its own"


ZONE_KEY = "timezone"  # meta: the zone (system.timezone) the state file's trading dates are counted in

_HOUR, _MINUTE = timedelta(hours=1), timedelta(minutes=1)


def same_day_rules(before: tzinfo, after: tzinfo, now: datetime) -> bool:
    """Whether `before` and `after` give the same UTC offset at every instant of the day either calls today at
    `now`, from the earlier of the two midnights that began it to the later of the two that end it: then both call
    today the same date, and every record of today (keyed by its date, counted against today's caps and budgets)
    is today's in both. An alias is the same rules under another name (US/Pacific and America/Los_Angeles,
    Etc/UTC and UTC): no change at all. A zone that keeps the same offset as the recorded one for the whole of
    today (America/Phoenix beside Los Angeles in July) changes nothing today either; it counts in its own offset
    from tomorrow on, as any change taken once today is over would.

    Offsets compared hour by hour, and minute by minute within an hour where either zone's changes: tz rules
    change offsets on a whole minute since 1972, and never twice within an hour."""
    days = {now.astimezone(zone).date() for zone in (before, after)}
    # an hour more each side: a zone whose clocks skip midnight (a change at 00:00) starts its day at 01:00
    start = min(datetime.combine(day, time(0), zone) for day in days for zone in (before, after)) - _HOUR
    end = max(datetime.combine(day + timedelta(days=1), time(0), zone) for day in days for zone in (before, after)) + _HOUR

    def offsets(at: datetime) -> tuple[timedelta | None, timedelta | None]:
        return at.astimezone(before).utcoffset(), at.astimezone(after).utcoffset()

    at, here = start, offsets(start)
    while at < end:
        if here[0] != here[1]:
            return False
        step = min(_HOUR, end - at)
        there = offsets(at + step)
        if there != here:  # an offset changes within the hour: where, to the minute
            minute = at + _MINUTE
            while minute < at + step:
                if len(set(offsets(minute))) != 1:
                    return False
                minute += _MINUTE
        at, here = at + step, there
    return here[0] == here[1]


def changed_zone(
    recorded: str | None, zone: str, now: datetime, active: Callable[[Iterable[date]], set[date]], *, simulated: bool
) -> str | None:
    """Why a run in `zone` (settings.yaml's system.timezone) cannot go on with a state file whose trading dates were
    counted in `recorded`, up to "start a new state file"; None when it can. Every daily record (orders, counters,
    realized P&L, trades) is keyed by its date in the zone of the run that wrote it: with another zone, today is
    another date in the middle of a session (Los Angeles to Auckland: the day's trade caps, budgets and counters
    start over; the other way: yesterday's read as today's). So the change is refused while the file holds a
    record (`active`: StateStore.days_with_activity) of the date either zone calls today at `now`, and taken once
    neither does. `simulated`: `now` is a simulation's, moved on with `run --start`. No zone recorded (a file
    older than this check, or a new one), the same, or one with the same rules all through today
    (`same_day_rules`: an alias such as US/Pacific for America/Los_Angeles): None.

    A change westward (Auckland to Los Angeles) is refused for the whole of the next western day when the
    eastern day before it holds records: Auckland's 24th ends (11:00 UTC) after Los Angeles' 24th began (08:00
    UTC), so there is no moment when neither zone's today holds them. That is on purpose, fail closed: the records
    are keyed by date, not by instant, so the file cannot tell which of Auckland's 24th fell in Los Angeles' 24th;
    counting them all as today's would spend today's trade caps on yesterday's trades and add yesterday's P&L to
    today's loss budget (a profit widens it), counting none would let today's trades past the caps. The way out
    the message gives (a new state file, or the old zone until that day ends) costs one day; a change made over a
    weekend without crypto bots costs none."""
    if recorded is None or recorded == zone:
        return None
    before, after = _zone(recorded), _zone(zone)
    assert after is not None  # settings.yaml's zone was validated
    if before is not None and same_day_rules(before, after, now):
        return None
    today = now.astimezone(after).date()
    if before is None:  # a hand edit, or a zone this machine's database lacks: any date it could call today
        found = active({today + timedelta(days=n) for n in range(-2, 3)})  # zones are at most 26 hours apart
        if not found:
            return None
        shown = one_line(recorded)  # text from the state file, for a terminal
        return (f"counts its trading days in '{shown}', a zone this machine does not know, and holds orders, fills "
                f"or counters on {', '.join(map(str, sorted(found)))}, which that zone may call today: put "
                f"system.timezone back to '{shown}' on a machine that knows it, or start a new state file")  # fmt: skip
    todays = {recorded: now.astimezone(before).date(), zone: today}
    found = active(set(todays.values()))
    if not found:
        return None
    said = [f"{day} (today in {' and '.join(name for name, d in todays.items() if d == day)})" for day in sorted(found)]
    last = max(found)
    until = max(datetime.combine(last + timedelta(days=1), time(0), z) for z in (before, after)).astimezone(after)
    moved = "; a simulation: `run --start` at or after it" if simulated else ""
    return (f"counts its trading days in {recorded}, but system.timezone is now {zone}, and it holds orders, fills "
            f"or counters of {' and '.join(said)}: counted in {zone}, the day's trade caps, budgets and daily "
            f"counters would start over (or another day's count as today's) within a session; put system.timezone "
            f"back to {recorded}, or wait until {last} has ended in both zones ({until.isoformat(timespec='seconds')}"
            f"{moved}), or start a new state file")  # fmt: skip
