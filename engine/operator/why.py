"""`python -m engine why BOT`: why a bot is where it is, and why it did not trade.

It reads, never writes: the bot's saved state, and the facts the engine saved in the last tick's transaction
(engine/trading/engine.py, table `last_facts`), so it answers while `run` is running and after it ended. Every
guard of every transition the bot could take from its state is evaluated again on those facts (the same facts
give the same answer), with the facts each guard read and their units; then preflight, check by check, and the
exact reason of the last refused entry.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.config.checks import bot_kind, trading_bots
from engine.core.store import SYSTEM_SCOPE, PositionRow, StateFileError, StateStore
from engine.core.terminal_text import one_line
from engine.operator.local import LocalTime
from engine.operator.summary import halt_effect, number, position_line, position_record, unmanaged_lines
from engine.rules import conditions
from engine.rules.book import CompiledRules, compile_rules, shown_unit
from engine.rules.errors import MissingFact
from engine.rules.facts import bot_config_values
from engine.trading.engine import LAST_FACTS_SCOPE
from engine.validate import Report


class WhyError(Exception):
    """The question cannot be answered (no such bot, nothing has run yet)."""


class UnknownBot(WhyError):
    """The bot asked about is not in bots.yaml: the user's input to fix (the CLI's exit 2), not a runtime state."""


def explain(store: StateStore, report: Report, bot_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The why record of one bot, plain data (for `--json`): its state, the transitions it could take with each
    guard's value and the facts behind it, preflight, the last refused entry, and the halts: in force at the last
    tick, or at `now` (the state's own time; the tick's when not given). A halt set after the last tick (`halt`
    while no run goes, or between two ticks) was shown as one the tick saw, and named as the reason its refused
    entry was refused; one whose cooloff ran out since was shown as holding. Each now says which it is, and the
    refused entry names only the halts the tick saw."""
    assert report.config is not None and report.book is not None
    bots = {bot.bot_id: bot for _path, bot in trading_bots(report.config.bots)}
    config = bots.get(bot_id)
    if config is None:
        from engine.core.names import did_you_mean

        raise UnknownBot(f"no bot '{bot_id}' in bots.yaml{did_you_mean(bot_id, bots)}")
    kind = bot_kind(config)
    saved_state = store.machine_state(kind, bot_id)
    row = store.last_facts(LAST_FACTS_SCOPE)
    try:
        system, names, by_bot = marshal.loads(row[1]) if row is not None else ({}, (), {})
        if saved_state is None or row is None or bot_id not in by_bot:
            if not config.enabled:  # "not yet" would promise a tick that never comes
                raise WhyError(f"'{bot_id}' is disabled in bots.yaml (enabled: false): it never ticks, nothing to explain")
            if saved_state is not None and row is not None:  # it ticked, but its facts could not be built last tick
                halt = store.halt_in_force(bot_id, row[0])
                why_not = f": {one_line(halt.reason)}" if halt is not None else ""
                raise WhyError(f"'{bot_id}' has no facts from the last tick ({row[0].isoformat()}){why_not}")
            raise WhyError(f"'{bot_id}' has not been through a tick yet in {store.path}: nothing to explain")
        values, failed_checks, denial, *rest = by_bot[bot_id]
        failed_checks, denial = _check_names(failed_checks), _check_names(denial)
        # why the entry could not be sized, in the engine's words (the `entry_blocked` event's reason); absent from
        # the records of an engine before 2026-12-02, whose words are then made again from the facts
        sized_not: str | None = rest[0] if rest else None
        if len(rest) > 1 or not (sized_not is None or isinstance(sized_not, str)):
            raise ValueError("a bot's record holds more than its facts, checks, denial and sizing reason")
        facts: dict[str, Any] = {**system, **bot_config_values(config), **dict(zip(names, values, strict=True))}
    except (ValueError, TypeError, EOFError, KeyError) as exc:  # a record the engine did not write: damaged
        raise StateFileError(
            store.path, f"the last tick's facts (table last_facts) cannot be read ({type(exc).__name__}: {exc})", runtime=False
        ) from None
    tick_at = row[0]
    compiled, _problems = compile_rules(report.book, kind)
    spec = report.machines[kind]

    def fact_list(read: frozenset[str]) -> list[dict[str, Any]]:  # each unit as `facts` shows it ("config, %")
        return [{"name": n, "value": facts.get(n), "unit": shown_unit(kind, n)} for n in sorted(read)]

    errors: dict[str, str] = {}  # guards that raised on these facts, with why

    def guard(name: str) -> dict[str, Any]:
        read = compiled.guard_facts.get(name, frozenset())
        try:
            value: Any = compiled.guard_holds(name, facts)
        except Exception as exc:  # shown as the answer: a guard that cannot be evaluated fails closed
            absent = sorted(n for n in read if n not in facts)  # facts saved by an older engine lack today's
            errors[name] = f"{exc}" + (f"; not in the facts saved at the last tick: {', '.join(absent)}" if absent else "")
            value = f"error: {errors[name]}"
        return {"name": name, "holds": value, "facts": fact_list(read)}

    transitions = []
    decided = False  # a transition fired, or a guard could not be evaluated: the engine tries none after it
    for transition in spec.from_state(saved_state.state):
        guards = [guard(n) for n in dict.fromkeys(conditions.refs(transition.when))]
        held = {g["name"]: g["holds"] is True for g in guards}
        passes, unevaluable = _evaluate(transition.when, held, errors)
        # the part of `when` that is false, walked as the engine evaluates it: under `not` the guard that stops the
        # transition is one that holds, and a guard that is false under `not` never stops it
        false = None if unevaluable or passes else conditions.false_part(transition.when, held.__getitem__)
        stopped_by = unevaluable or (conditions.render(false) if false is not None else None)
        transitions.append(
            {
                "trigger": transition.trigger,
                "to": transition.dest,
                "when": transition.guard_text,
                "holds": passes,
                "would_fire": passes and not decided,
                "guards": guards,
                "stopped_by": stopped_by,
                "error": (
                    f"guard '{unevaluable}' cannot be evaluated ({errors[unevaluable]}): the engine fires no transition "
                    "from here and halts the bot (fail closed)"
                    if unevaluable and not decided
                    else None
                ),
            }
        )
        decided = decided or passes or unevaluable is not None
    portfolio = store.machine_state("portfolio", "portfolio")
    unknown = _unknown(facts, portfolio.state if portfolio is not None else None)
    preflight = [_check(compiled, name, facts, fact_list, unknown) for name in compiled.preflight]
    now = now or tick_at

    def seen(h: Any) -> bool:  # in force at the tick: begun by then (Halt.in_force does not look at the start)
        return h.started_at <= tick_at and h.in_force(tick_at)

    halts = [h for h in store.halts(open_only=True) if h.scope in (SYSTEM_SCOPE, bot_id) and (seen(h) or h.in_force(now))]
    at_tick = [h for h in halts if seen(h)]
    # a bot bots.yaml no longer runs (disabled, another kind) while it holds something: its facts read as if its
    # machine still managed the exit, which no run will do (`run` refuses to start)
    not_managed = unmanaged_lines(store, report.config.bots, bot_id)
    # what the bot holds, and what other bots hold of the same symbols (a shared ticker): a guard's
    # holds_position=true said that it held something, not what nor how much beside the other holder
    holdings = store.positions()
    own = [p for p in holdings if p.bot_id == bot_id]
    symbols = {p.symbol for p in own}
    return {
        "broker_refused": broker_refusal(store, bot_id),
        "bot": bot_id,
        "kind": kind,
        "not_managed": not_managed,
        "positions": [position_record(p) for p in own],
        "same_symbol": [position_record(p) for p in holdings if p.bot_id != bot_id and p.symbol in symbols],
        "state": saved_state.state,
        "since": saved_state.since.isoformat(),
        "tick": tick_at.isoformat(),
        "transitions": transitions,
        "preflight": preflight,
        "preflight_failed": list(failed_checks),
        "blocked_entry": _blocked(tuple(denial), facts, at_tick, compiled.preflight_facts, sized_not) if denial else None,
        "unsized_signal": (sized_not or _unsized(facts)) if facts.get("entry_signal") and not facts.get("entry_sized") else None,
        "halts": [
            {
                "scope": h.scope,
                "reason": h.reason,
                "since": h.started_at.isoformat(),
                "until": h.until.isoformat() if h.until else None,
                "in_force_at_tick": seen(h),
                "in_force_now": h.in_force(now),
                "flatten": h.flatten,
                "effect": halt_effect(h.scope, h.flatten, h.conditions),
            }
            for h in halts
        ],
    }


class _Unevaluable(Exception):
    """A guard that raised, met where the engine meets it."""


def _evaluate(when: conditions.Condition, holds: Mapping[str, bool], errors: Mapping[str, str]) -> tuple[bool, str | None]:
    """Whether the transition passes, and the guard that cannot be evaluated where the engine would meet it
    (short-circuits included: `a and b` never reaches a `b` that raises when `a` is false). The engine does not
    read such a guard as false: the transition does not fire, none after it is tried, and the bot halts
    (engine/machines/runtime.py, MachineRuntime.step). Read as false, `not g` would be said to fire."""

    def value(name: str) -> bool:
        if name in errors:
            raise _Unevaluable(name)
        return holds[name]

    try:
        return conditions.evaluate(when, value), None
    except _Unevaluable as exc:
        return False, str(exc.args[0])


def _check_names(value: Any) -> tuple[str, ...]:
    """Check names as the engine records them (a bot's failed checks, its last denial): anything else is a record
    the engine did not write, said as the state file's error here rather than a traceback further on."""
    names = tuple(value)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{value!r} is not a list of check names")
    return names


def _unknown(facts: Mapping[str, Any], portfolio: str | None) -> dict[str, str]:
    """Why a fact the engine leaves missing on purpose is missing, by fact. A budget is unknown, not unread, while
    the PortfolioBot is halted (every system halt) or no equity was read: the check's own error said "the engine
    could not read it", which read as a broker failure beside every other check passing."""
    if facts.get("budget_usd") is not None:
        return {}
    if facts.get("equity_usd") is None:
        why = "no equity was read this tick"
    elif portfolio not in ("armed", "idle"):
        why = f"the PortfolioBot is {portfolio or 'not saved yet'}: it gives budgets only while armed or idle"
    else:
        why = "the PortfolioBot allocated this bot no budget"
    return {"budget_usd": f"the bot's budget is unknown: {why}"}


def _check(
    compiled: CompiledRules, name: str, facts: Mapping[str, Any], fact_list: Any, unknown: Mapping[str, str] | None = None
) -> dict[str, Any]:
    try:
        ok: Any = bool(compiled.preflight[name](facts))
        error = None
    except MissingFact as exc:  # missing on purpose (`_unknown`), or unread
        ok, error = False, (unknown or {}).get(exc.name) or f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a check that cannot be evaluated fails; its error is the explanation
        ok, error = False, f"{type(exc).__name__}: {exc}"
    return {"name": name, "ok": ok, "error": error, "facts": fact_list(compiled.preflight_facts.get(name, frozenset()))}


def _unsized(facts: Mapping[str, Any]) -> str:
    """Why a signal that fired could not be sized: the budget, the capital, or the arithmetic."""
    budget, room = facts.get("budget_usd"), facts.get("capital_room_usd")
    if budget is None:
        return "the bot's budget is unknown (no equity, or the PortfolioBot is not armed)"
    if budget <= 0:
        return f"the bot's risk budget for today is used up (budget_usd {budget:g})"
    if room is not None and room <= 0:
        return f"no capital left to deploy: deployable less what is held and granted this tick is {room:g} USD"
    return (
        f"the entry sizes to less than one unit: budget {budget:g} USD at the stop and the spread, capital {room:g} USD"
        if room is not None
        else "the entry could not be sized"
    )


def _blocked(
    denial: tuple[str, ...],
    facts: Mapping[str, Any],
    halts: list[Any],
    reads: Mapping[str, frozenset[str]],
    sized_not: str | None = None,
) -> dict[str, Any]:
    """The last refused entry in words: which rule, and the values behind it (for `size`, the engine's own reason
    when it recorded one)."""
    reasons = []
    for name in denial:
        if name == "size":
            reasons.append(sized_not or _unsized(facts))
        elif name == "order_rate_ok":
            reasons.append(
                f"order rate: {facts.get('orders_last_minute')} orders in the last minute, "
                f"limit {facts.get('risk_max_orders_per_minute')} (risk.max_orders_per_minute)"
            )
        elif name == "capital_available":
            reasons.append(f"capital reserved: {facts.get('capital_room_usd')} USD left to deploy")
        elif name == "budget_known":
            reasons.append("budget: " + _unsized(facts))
        elif name == "system_armed":
            halt = next((h for h in halts if h.scope == SYSTEM_SCOPE), None)
            reasons.append("the system is not armed" + (f": halted ({halt.reason})" if halt else ""))
        else:  # any other check: its name and the values it read
            values = ", ".join(f"{fact}={_value(facts.get(fact))}" for fact in sorted(reads.get(name, ())))
            reasons.append(f"preflight check '{name}' failed" + (f" ({values})" if values else ""))
    return {"failed": list(denial), "reasons": reasons}


def render(record: Mapping[str, Any], tz: Any = None) -> str:
    """The record for a person: times in the system's time zone, guards marked held or not."""

    local = LocalTime(tz) if tz else None

    def when(text: str) -> str:  # as every command shows a time: ISO 8601 with its offset, in system.timezone
        moment = datetime.fromisoformat(text)
        return local(moment) if local else moment.isoformat(timespec="seconds")

    def shown(facts: list[dict[str, Any]]) -> str:  # a unit with a comma in it ("config, %") in brackets
        return ", ".join(f"{f['name']}={_value(f['value'])}{_unit(f['unit'])}" for f in facts)

    lines = [
        f"{record['bot']} ({record['kind']}) is {record['state']} since {when(record['since'])}; "
        f"facts of the tick at {when(record['tick'])}",
    ]
    lines += record.get("not_managed", [])
    lines += _position_lines(record, when)
    for halt in record["halts"]:
        until = when(halt["until"]) if halt["until"] else "resume"
        scope, reason = one_line(halt["scope"]), one_line(halt["reason"])
        if halt.get("in_force_now", True) is False:
            note = "; no longer in force (its cooloff ran out): it ends at the next tick"
        else:  # what the engine does while it holds (a record made before 2026-12-02 does not say)
            note = f"; {halt['effect']}" if halt.get("effect") else ""
            if halt.get("in_force_at_tick", True) is False:
                note = "; set after this tick: the bot's machine moves at its next tick" + note
        lines.append(f"halted ({scope}): {reason} (since {when(halt['since'])}, until {until}){note}")
    lines.append(f"transitions from {record['state']}, tried in order:")
    unevaluable = False
    for t in record["transitions"]:
        if t.get("error"):
            mark, unevaluable = f"CANNOT BE EVALUATED: {t['error']}", True
        elif unevaluable:
            mark = "not tried (a guard above cannot be evaluated)"
        elif t["would_fire"]:
            mark = "FIRES"
        else:
            mark = _not_fired(t)
        lines.append(f"  {t['trigger']} -> {t['to']}  [{t['when'] or 'always'}]  {mark}")
        for g in t["guards"]:
            lines.append(f"      {g['name']}: {_value(g['holds'])}   ({shown(g['facts'])})")
    lines.append("preflight:")
    for c in record["preflight"]:
        status = "ok" if c["ok"] else ("ERROR " + c["error"] if c["error"] else "FAILED")
        lines.append(f"  {c['name']}: {status}   ({shown(c['facts'])})")
    if record["blocked_entry"]:
        lines.append("last entry refused: " + "; ".join(record["blocked_entry"]["reasons"]))
    if record["unsized_signal"]:
        lines.append("the signal fired but no entry could be sized: " + record["unsized_signal"])
    if record.get("broker_refused"):  # a record made before 2026-12-03 has none
        refused = record["broker_refused"]
        lines.append(f"last entry refused by the broker: {refused['kind']} at {when(refused['at'])}: {refused['message']}")
    # every line through one_line, whatever it holds: the state's name, a fact's text, a check's error and the
    # engine's recorded reasons come from the state file and the user's code, and a newline in one forged a line
    return "\n".join(one_line(line) for line in lines)


def _position_lines(record: Mapping[str, Any], when: Any) -> list[str]:
    """The bot's positions as `status` shows them, with when each opened, and the other bots' positions on the same
    symbols. A record made before 2026-12-03 has none of it: nothing is said rather than "none"."""
    if "positions" not in record:
        return []
    if not record["positions"]:
        return ["position: none"]
    lines = ["position:"]
    for p in record["positions"]:
        lines.append(f"  {position_line(_row(p))} (opened {when(p['opened_at'])})")
    for p in record.get("same_symbol", []):
        lines.append(f"  {position_line(_row(p))} (another bot on the same symbol)")
    return lines


def _row(p: Mapping[str, Any]) -> PositionRow:
    return PositionRow(p["bot"], p["symbol"], p["qty"], p["avg_entry_price"], datetime.fromisoformat(p["opened_at"]))


def broker_refusal(store: StateStore, bot_id: str) -> dict[str, Any] | None:
    """The bot's last entry the broker refused or rejected (an order row ended `rejected`, its error written as
    `<reason>: <broker's message>` by engine/trading/orders.py), or None. The engine's own denial (`blocked_entry`)
    was all `why` showed: two wash-trade refusals said nothing, and only the third, by its pause, showed at all."""
    refused = [r for r in store.orders(statuses=("rejected",), bot_id=bot_id) if r.purpose == "entry"]
    if not refused:
        return None
    last = max(refused, key=lambda r: (r.updated_at, r.client_order_id))
    kind, _, message = (last.error or "").partition(": ")
    return {
        "at": last.updated_at.isoformat(),
        "client_order_id": last.client_order_id,
        "symbol": last.symbol,
        "kind": one_line(kind) or "rejected",
        "message": one_line(message or last.error or ""),
    }


def _not_fired(t: Mapping[str, Any]) -> str:
    """Why a transition does not fire: the part of its `when` that is false, or an earlier one firing. "Holds" is
    said only of a transition that holds (a record made before 2026-12-03 has no `holds`: one not stopped by a
    named part held)."""
    if t["stopped_by"]:
        return f"stopped by {one_line(str(t['stopped_by']))}"
    return "holds, but an earlier one fires" if t.get("holds", True) else "does not hold"


def _unit(unit: str) -> str:
    """A fact's unit after its value: "0.5 min", and a config value's, "0.8 (config, %)", in brackets: its comma
    would read as the list's."""
    if not unit:
        return ""
    return f" ({unit})" if unit.startswith("config") else f" {unit}"


def _value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "missing"
    if isinstance(value, float):
        # what the guard compared: six digits when they are the value, else the whole value. Rounded, a daily
        # loss of -0.9999996 % read -1 beside a limit of 1 with the check ok, and 1234567.89 USD read 1.23457e+06
        return number(value)
    return str(value)
