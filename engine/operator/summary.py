"""What a span of time did to the account: P&L per bot per trading day, the halts that touched it, and the
halts still in force. One record, printed at the end of `run` and by `status`, and logged in `run_end`.

A summary that showed only the last day, or only halts still open, hid what a multi-day run or a halt that
already ended did; so the span is every trading day from the first instant to the last, and a halt belongs
to it when it overlapped it at all. Days are counted in `system.timezone`, as the engine counts them.

The record is plain JSON (UTC text for instants, ISO dates), so the same dict goes into the JSONL; only the
lines made from it for a person are in local time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from engine.config.model import BotsConfig
from engine.core import order_lifecycle
from engine.core.money import cents, money, total
from engine.core.store import SYSTEM_SCOPE, Halt, PositionRow, StateStore, is_pause
from engine.core.terminal_text import one_line
from engine.operator.local import LocalTime
from engine.trading.startup import unmanaged

RESUME_COMMAND = "python -m engine resume"


def number(value: float) -> str:
    """A quantity, a price or a fact's value as the engine holds it: in six significant digits when they are the
    value (253, 0.75, 248.7033), else whole. `:g` turned 1234567 shares into 1.23457e+06, a crypto position of
    0.016175803525 into 0.0161758 (not what the broker shows), and a guard's -0.9999996 into -1 beside a limit
    of 1; `:.4f` a price of 0.0000123 into 0.0000."""
    value = float(value)  # an int from a record too
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    short = f"{value:.6g}"
    return short if "e" not in short and float(short) == value else repr(value)


def price(value: float) -> str:
    """A price to 4 decimals as status has always shown it, or whole when that would read as another price (a
    coin of 0.0000123 read 0.0000)."""
    text = f"{value:.4f}"
    return text if float(text) == value or abs(value) >= 1 else number(value)


def position_line(p: PositionRow) -> str:
    """One bot's open position as `status`, `why` and `report` show it: the bot, the symbol, the quantity at its
    average entry price. One line for all three: `why` and `report` showed none, so two bots on one symbol could
    be told apart in `status` alone."""
    return f"{one_line(p.bot_id):<14} {one_line(p.symbol):<20} {number(p.qty)} @ {price(p.avg_entry_price)}"


def position_record(p: PositionRow) -> dict[str, Any]:
    """The same as plain data (`why --json`): the time it opened in UTC text, as every instant of a record."""
    return {"bot": p.bot_id, "symbol": p.symbol, "qty": p.qty, "avg_entry_price": p.avg_entry_price,
            "opened_at": _utc(p.opened_at)}  # fmt: skip


def _utc(when: datetime | None) -> str | None:
    from datetime import timezone

    return when.astimezone(timezone.utc).isoformat() if when is not None else None


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def overlapping_halts(
    halts: Iterable[Halt], start: datetime, end: datetime, in_force_at_start: Collection[int] = ()
) -> list[Halt]:
    """Halts that were in force at some moment of [start, end]: started by its end, not ended (or run out)
    before its start; and those `in_force_at_start` names (by id), whatever their times (`period_record`)."""
    out = []
    for h in halts:
        stopped = h.ended_at if h.ended_at is not None else h.until
        if h.id in in_force_at_start or (h.started_at <= end and (stopped is None or stopped >= start)):
            out.append(h)
    return out


def halt_record(h: Halt, now: datetime) -> dict[str, Any]:
    return {
        "scope": h.scope,
        "reason": h.reason,
        "conditions": list(h.conditions),
        "flatten": h.flatten,
        "started_at": _utc(h.started_at),
        "until": _utc(h.until),
        "ended_at": _utc(h.ended_at),
        "in_force": h.in_force(now),
    }


def period_record(
    store: StateStore,
    start: datetime,
    end: datetime,
    now: datetime,
    local: LocalTime,
    bots: Sequence[str] = (),
    in_force_at_start: Collection[int] = (),
) -> dict[str, Any]:
    """P&L per bot per trading day of [start, end] (the realized_pnl table, which also counts partial exits,
    with the trades closed and their fees), every halt that overlapped it, and whether one is in force at `now`.
    Realized P&L is in cents; fees are what was paid (to nine decimals), rounded only where they are shown.

    `in_force_at_start`: the ids of the halts a run found in force as it started (`runner.halts_at_start`), counted
    whatever their times say. A halt written before a simulation's first run is stamped with the wall clock, later
    than the simulated day: the run was halted throughout, and its summary said "halts: 0" beside HALT IN FORCE."""
    first, last = local.day(start), local.day(max(start, end))
    trades = store.trades(since=first, until=last)
    days: dict[str, dict[str, dict[str, float]]] = {}
    for day in _days(first, last):
        realized = store.realized_pnl(day)
        rows = {bot: {"realized": cents(pnl), "trades": 0, "fees": 0.0} for bot, pnl in realized.items()}
        paid: dict[str, float] = defaultdict(float)  # summed as paid, rounded once: rounded at each trade, three
        for t in (t for t in trades if t.trading_date == day):  # fees of 0.004 made 0.00, twenty of 0.0151 0.40
            row = rows.setdefault(t.bot_id, {"realized": 0.0, "trades": 0, "fees": 0.0})
            row["trades"] += 1
            paid[t.bot_id] += t.fees
        for bot, fees in paid.items():  # to Alpaca's nine decimals: a line adding bots' fees rounds once too
            rows[bot]["fees"] = round(fees, 9)
        order = {bot: n for n, bot in enumerate(bots)}
        days[day.isoformat()] = dict(sorted(rows.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    all_halts = store.halts()
    return {
        "from": _utc(start),
        "to": _utc(end),
        "days": days,
        "halts": [halt_record(h, now) for h in overlapping_halts(all_halts, start, end, in_force_at_start)],
        "in_force": [halt_record(h, now) for h in all_halts if h.in_force(now)],
    }


def day_lines(days: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One line per trading day with each bot's realized P&L and its closed trades; runs of days with nothing
    realized are folded into one line."""
    lines = ["P&L by day (realized USD, [closed trades]):"]
    quiet: list[str] = []

    def fold() -> None:
        if quiet:
            span = quiet[0] if len(quiet) == 1 else f"{quiet[0]} to {quiet[-1]}"
            lines.append(f"  {span}: nothing realized")
            quiet.clear()

    for day, bots in days.items():
        if not bots:
            quiet.append(day)
            continue
        fold()
        parts = [f"{one_line(bot)} {money(v['realized'])} [{int(v['trades'])}]" for bot, v in bots.items()]
        realized = total(v["realized"] for v in bots.values())
        fees = sum(v["fees"] for v in bots.values())
        lines.append(f"  {day}: {', '.join(parts)}; total {money(realized)}; fees {money(fees, sign=False)}")
    fold()
    return lines


def _halt_end(h: dict[str, Any], local: LocalTime) -> str:
    if h["ended_at"] is not None:
        return local(datetime.fromisoformat(h["ended_at"]))
    if h["in_force"]:
        return "IN FORCE until " + (local(datetime.fromisoformat(h["until"])) if h["until"] else f"`{RESUME_COMMAND}`")
    return local(datetime.fromisoformat(h["until"])) + " (its cooloff ran out)"


def halt_lines(halts: list[dict[str, Any]], local: LocalTime) -> list[str]:
    lines = [f"halts: {len(halts)}"]
    for h in halts:
        started = local(datetime.fromisoformat(h["started_at"]))
        lines.append(f"  {one_line(h['scope'])}: {started} -> {_halt_end(h, local)}: {one_line(h['reason'])}")
    return lines


# Halts whose cause is not looked at again once they end: the operator's own, and the clock's (it ends when the
# clock has caught up, and `resume` is the operator's word that it is right)
_ENDED_FOR_GOOD = frozenset({"operator", "clock_backwards"})


def halt_effect(scope: str, flatten: bool | None, conditions: Iterable[str] = ()) -> str:
    """What the engine does while a halt is in force (the ExitBot's duties, engine/trading/exitbot.py), and whether
    ending it clears it. A halt named with its reason and its end read the same whether the kill switch was selling
    every position (a daily-loss kill) or keeping them (an operator's halt), a bot's own halt did not say its
    positions were being closed, and "(or resume)" read as a cure for a halt whose cause the engine checks again
    (a kill condition, an unexplained position), which then halts it again at once. `flatten` None: not known (a
    record that does not say), so nothing is said of positions. A bot's pause (`is_pause`: its orders refused on
    their merits) keeps its positions, which its own exits manage."""
    if is_pause(scope, conditions):  # the one rule the kill switch follows (engine/core/store.py)
        effect = "no entries for this bot, its working entries cancelled; its positions are kept, managed by its exits"
    elif scope != SYSTEM_SCOPE:
        effect = "no entries for this bot, its working entries cancelled; the kill switch closes its positions"
    elif flatten is None:
        effect = "no entries, working entries cancelled"
    elif flatten:
        effect = "no entries, working entries cancelled; the kill switch closes every position"
    else:
        effect = "no entries, working entries cancelled; positions are kept, their exits managed"
    if not _ENDED_FOR_GOOD & set(conditions):
        effect += "; ending it does not clear its cause: while that stands, the engine halts again"
    return effect


def in_force_lines(halts: list[dict[str, Any]], local: LocalTime) -> list[str]:
    """The sentence nobody should miss: a halt in force now, whose, since when, why, and what ends it."""
    lines = []
    for h in halts:
        who = "the system" if h["scope"] == SYSTEM_SCOPE else f"bot {one_line(h['scope'])}"
        until = (
            f"until {local(datetime.fromisoformat(h['until']))} (or `{RESUME_COMMAND}`)"
            if h["until"]
            else f"until `{RESUME_COMMAND}`"
        )
        started = local(datetime.fromisoformat(h["started_at"]))
        effect = halt_effect(h["scope"], h.get("flatten"), h.get("conditions", ()))
        lines.append(f"HALT IN FORCE: {who} is halted since {started}: {one_line(h['reason'])}; {until}; {effect}")
    return lines


def period_lines(record: dict[str, Any], local: LocalTime) -> list[str]:
    return [*day_lines(record["days"]), *halt_lines(record["halts"], local), *in_force_lines(record["in_force"], local)]


def halts_in_force(store: StateStore, now: datetime) -> list[Halt]:
    return [h for h in store.halts(open_only=True) if h.in_force(now)]


def unmanaged_lines(store: StateStore, bots: BotsConfig, bot_id: str | None = None) -> list[str]:
    """Each position or working order saved for a bot (`bot_id`'s alone, when given) that bots.yaml no longer runs
    as its holder (removed, renamed, disabled, another kind: `startup.unmanaged`), in the words `run` refuses with:
    `status`, `why` and the status page showed such a position as any other, with nothing saying that no bot
    manages its exit."""
    held = unmanaged(bots, store.positions(bot_id), store.orders(statuses=order_lifecycle.OPEN, bot_id=bot_id))
    return [f"NOT MANAGED: {one_line(line)} (`run` refuses to start meanwhile)" for _where, line in held]
