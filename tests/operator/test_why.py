"""`why`: a bot's transitions with each guard's value and facts, preflight check by check, and the exact reason
of a refused entry, read from the facts the engine saved in the last tick."""

from __future__ import annotations

import json
import marshal
from typing import Any

import pytest

from engine.operator.why import WhyError, explain, render
from engine.trading.engine import LAST_FACTS_SCOPE
from engine.validate import Report, load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig
from tests.trading.test_gate import eager
from tests.trading.test_shared_ticker import FAST, SLOW, ledgers


def report_of(project: ProjectCopy) -> Report:
    return load_valid(project.config, project.machines, project.rules)


def test_a_bot_armed_and_waiting_shows_every_transition_and_which_guard_stopped_it(project: ProjectCopy, rig: Rig) -> None:
    rig.until(lambda r: next(b for b in r.engine.bots if b.bot_id == "mom_AAPL").model.state == "armed")
    record = explain(rig.store, report_of(project), "mom_AAPL")
    assert record["state"] == "armed" and record["kind"] == "momentum"
    triggers = [t["trigger"] for t in record["transitions"]]
    assert triggers[:2] == ["halt", "halt"] and "enter" in triggers and "disarm" in triggers
    enter = next(t for t in record["transitions"] if t["trigger"] == "enter")
    if not enter["would_fire"]:
        assert enter["stopped_by"] == "entry_signal"
        (guard,) = enter["guards"]
        assert {f["name"] for f in guard["facts"]} == {"entry_signal", "entry_sized"}
    assert all(c["ok"] for c in record["preflight"])
    json.dumps(record)  # --json: plain data all the way down
    text = render(record)
    assert "mom_AAPL (momentum) is armed" in text and "preflight:" in text


def test_the_order_rate_is_shown_with_its_values_when_it_holds_bots_back(project: ProjectCopy, clock) -> None:
    eager(project, 40)
    project.replace("config/settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 3")
    rig = make_rig(project, clock)
    rig.until(lambda r: any(e["failed"] == ["order_rate_ok"] for e in r.events("preflight")), limit=400)
    bot = next(e["bot"] for e in rig.events("preflight") if e["failed"] == ["order_rate_ok"])
    record = explain(rig.store, report_of(project), bot)
    (check,) = [c for c in record["preflight"] if c["name"] == "order_rate_ok"]
    values = {f["name"]: f["value"] for f in check["facts"]}
    assert not check["ok"] and values["risk_max_orders_per_minute"] == 3 and values["orders_last_minute"] >= 3
    assert "order_rate_ok: FAILED" in render(record)


# each preflight check, failing, explained with the values behind it: (bot, facts to change, words expected)
VIOLATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "system_armed": ("mom_AAPL", {"system_armed": False}, "not armed"),
    "account_ok": ("mom_AAPL", {"account_ok": False}, "'account_ok' failed (account_ok=false)"),
    "account_active": ("mom_AAPL", {"account_status": "ACCOUNT_CLOSED"}, "account_status=ACCOUNT_CLOSED"),
    "trading_not_blocked": ("mom_AAPL", {"trading_blocked": True}, "trading_blocked=true"),
    "account_not_blocked": ("mom_AAPL", {"account_blocked": True}, "account_blocked=true"),
    "trading_not_suspended_by_user": ("mom_AAPL", {"trade_suspended_by_user": True}, "trade_suspended_by_user=true"),
    "crypto_enabled": ("crypto_core", {"crypto_status": "INACTIVE"}, "crypto_status=INACTIVE"),
    "options_level_ok": ("opt_core", {"options_trading_level": 1}, "options_trading_level=1"),
    "market_open": ("mom_AAPL", {"tradable_now": False}, "tradable_now=false"),
    "quotes_fresh": ("mom_AAPL", {"quote_age_s": 99.0}, "quote_age_s=99"),
    "quotes_usable": ("mom_AAPL", {"quotes_usable": False}, "quotes_usable=false"),
    "api_failures_ok": ("mom_AAPL", {"api_failures_in_window": 50}, "api_failures_in_window=50"),
    "daily_loss_ok": ("mom_AAPL", {"daily_pnl_pct": -5.0}, "daily_pnl_pct=-5"),
    "order_rate_ok": ("mom_AAPL", {"orders_last_minute": 10}, "order rate: 10 orders in the last minute, limit 10"),
    "capital_available": ("mom_AAPL", {"capital_room_usd": 0.0}, "capital reserved: 0.0 USD"),
    "budget_known": ("mom_AAPL", {"budget_usd": 0.0}, "risk budget for today is used up"),
    "bot_not_paused": ("mom_AAPL", {"bot_paused": True}, "bot_paused=true"),
    "data_permitted": ("opt_core", {"data_denied": True}, "data_denied=true"),
}


def test_every_preflight_check_has_an_explanation_case(project: ProjectCopy) -> None:
    book = report_of(project).book
    assert book is not None
    assert set(VIOLATIONS) == set(book.preflight)


@pytest.mark.parametrize("check", sorted(VIOLATIONS))
def test_each_preflight_check_that_refused_an_entry_is_explained(project: ProjectCopy, rig: Rig, check: str) -> None:
    rig.ticks(3)
    bot, changes, words = VIOLATIONS[check]
    at, body = rig.store.last_facts(LAST_FACTS_SCOPE)  # type: ignore[misc]
    system, names, by_bot = marshal.loads(body)
    facts = dict(zip(names, by_bot[bot][0], strict=True))
    system = {**system, **{k: v for k, v in changes.items() if k not in facts}}
    facts.update({k: v for k, v in changes.items() if k in facts})
    by_bot[bot] = (tuple(facts[n] for n in names), (check,), (check,))
    rig.store.save_last_facts([(LAST_FACTS_SCOPE, at, marshal.dumps((system, names, by_bot)))])
    record = explain(rig.store, report_of(project), bot)
    failing = {c["name"] for c in record["preflight"] if not c["ok"]}
    assert check in failing
    assert any(words in reason for reason in record["blocked_entry"]["reasons"]), record["blocked_entry"]
    assert words in render(record)


def test_an_unknown_bot_or_a_bot_that_never_ticked_is_a_clear_error(project: ProjectCopy, rig: Rig) -> None:
    with pytest.raises(WhyError, match=r"no bot 'mom_AAPX' in bots.yaml \(did you mean 'mom_AAPL'\?\)"):
        explain(rig.store, report_of(project), "mom_AAPX")
    with pytest.raises(WhyError, match="has not been through a tick"):
        explain(rig.store, report_of(project), "mom_AAPL")


def test_a_disabled_bot_is_said_to_be_disabled_not_waiting_for_a_tick(project: ProjectCopy, rig: Rig) -> None:
    rig.ticks(3)
    with pytest.raises(WhyError, match=r"'mom_TSLA' is disabled in bots.yaml \(enabled: false\): it never ticks"):
        explain(rig.store, report_of(project), "mom_TSLA")


def test_a_halt_reason_is_rendered_on_one_line(project: ProjectCopy, rig: Rig) -> None:
    from engine.trading.runner import operator_halt

    rig.ticks(3)
    operator_halt(rig.store, rig.engine.journal, "a\nb\x1b[31m", rig.clock.now())
    rig.ticks(1)
    text = render(explain(rig.store, report_of(project), "mom_AAPL"))
    assert "halted (system): a\\nb\\x1b[31m (since" in text and "\x1b" not in text


def test_a_bot_whose_facts_could_not_be_built_is_said_to_be_halted_for_it(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot halted because its facts could not be built has none in the last tick's record: `why` says so and
    why, not that it never ticked."""
    import engine.trading.facts_builder as facts_builder

    rig.ticks(2)
    real = facts_builder.entries.plan_entry

    def plan_entry(config: object, *args: object, **kwargs: object) -> object:
        if getattr(config, "bot_id", "") == "opt_core":
            raise KeyError("strike")
        return real(config, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(facts_builder.entries, "plan_entry", plan_entry)
    rig.until(lambda r: bool(r.store.halts("opt_core")), limit=400)
    with pytest.raises(WhyError, match=r"'opt_core' has no facts from the last tick \(.*\): its facts could not be built"):
        explain(rig.store, report_of(project), "opt_core")


def test_a_guard_that_cannot_be_evaluated_fires_nothing_after_it_as_in_the_engine(project: ProjectCopy, rig: Rig) -> None:
    """Facts saved by an older engine lack a fact today's rules read (here `preflight_ok`, read by `may_open`).
    The engine fails closed on a guard it cannot evaluate: that transition does not fire, none after it is tried,
    and the bot halts. `why` read the error as false, so `disarm [not may_open]` was said to FIRE."""
    rig.until(lambda r: next(b for b in r.engine.bots if b.bot_id == "mom_AAPL").model.state == "armed")
    at, body = rig.store.last_facts(LAST_FACTS_SCOPE)  # type: ignore[misc]
    system, names, by_bot = marshal.loads(body)
    keep = [i for i, name in enumerate(names) if name != "preflight_ok"]
    older = {bot: (tuple(row[0][i] for i in keep), *row[1:]) for bot, row in by_bot.items()}
    rig.store.save_last_facts([(LAST_FACTS_SCOPE, at, marshal.dumps((system, tuple(names[i] for i in keep), older)))])

    record = explain(rig.store, report_of(project), "mom_AAPL")
    assert not any(t["would_fire"] for t in record["transitions"])
    disarm = next(t for t in record["transitions"] if t["trigger"] == "disarm")
    assert disarm["stopped_by"] == "may_open" and "cannot be evaluated" in disarm["error"]
    assert "preflight_ok" in disarm["error"] and "not in the facts saved" in disarm["error"]
    later = record["transitions"][record["transitions"].index(disarm) + 1 :]
    assert later and all(t["error"] is None and not t["would_fire"] for t in later)
    text = render(record)
    assert "FIRES" not in text and "CANNOT BE EVALUATED" in text and "not tried" in text
    json.dumps(record)


def test_an_unsized_signal_is_explained_in_the_engines_own_words_and_an_older_record_still_reads(
    project: ProjectCopy, rig: Rig
) -> None:
    """`entry_blocked` names why an entry could not be sized (no contract within the chain rules, under Alpaca's
    minimum); `why` made its own guess from the budget and capital, the same generic words whatever the cause."""
    rig.ticks(3)
    at, body = rig.store.last_facts(LAST_FACTS_SCOPE)  # type: ignore[misc]
    system, names, by_bot = marshal.loads(body)
    facts = dict(zip(names, by_bot["opt_core"][0], strict=True))
    facts.update(entry_signal=True, entry_sized=False)
    said = "no contract of SPY expires within chain_rules dte_min..dte_max (0-0 days)"
    for record_of_bot, expected in (
        ((tuple(facts[n] for n in names), (), ("size",), said), said),
        ((tuple(facts[n] for n in names), (), ("size",)), "budget"),  # written before the reason was kept
    ):
        by_bot["opt_core"] = record_of_bot
        rig.store.save_last_facts([(LAST_FACTS_SCOPE, at, marshal.dumps((system, names, by_bot)))])
        record = explain(rig.store, report_of(project), "opt_core")
        assert expected in record["unsized_signal"], record["unsized_signal"]
        assert any(expected in reason for reason in record["blocked_entry"]["reasons"]), record["blocked_entry"]


def test_a_fact_is_shown_as_the_engine_evaluated_it_not_rounded_to_six_digits(project: ProjectCopy, rig: Rig) -> None:
    """Facts were shown to six significant digits: a daily loss of -0.9999996 % read "daily_pnl_pct=-1 %" beside
    a limit of 1 and the check said ok (-1 > -1 reads false), and a capital room of 1234567.89 USD read
    "1.23457e+06". A value is shown in six digits only when that is the value; otherwise whole."""
    rig.ticks(3)
    at, body = rig.store.last_facts(LAST_FACTS_SCOPE)  # type: ignore[misc]
    system, names, by_bot = marshal.loads(body)
    facts = dict(zip(names, by_bot["mom_AAPL"][0], strict=True))
    changes = {"daily_pnl_pct": -0.9999996, "capital_room_usd": 1234567.89, "budget_usd": 1_000_000.0}
    system = {**system, **{k: v for k, v in changes.items() if k not in facts}}
    facts.update({k: v for k, v in changes.items() if k in facts})
    by_bot["mom_AAPL"] = (tuple(facts[n] for n in names), *by_bot["mom_AAPL"][1:])
    rig.store.save_last_facts([(LAST_FACTS_SCOPE, at, marshal.dumps((system, names, by_bot)))])
    text = render(explain(rig.store, report_of(project), "mom_AAPL"))
    daily = next(line for line in text.splitlines() if line.startswith("  daily_loss_ok:"))
    assert daily.startswith("  daily_loss_ok: ok") and "daily_pnl_pct=-0.9999996 %" in daily, daily
    assert "capital_room_usd=1234567.89 USD" in text and "budget_usd=1000000 USD" in text
    assert "e+06" not in text and "quote_age_s=0 s" in text  # what six digits tell whole stays short


def test_a_halt_set_after_the_last_tick_is_shown_and_one_run_out_since_is_said_so(
    project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`why` showed the halts in force at the last tick only: an operator's halt typed after the run stopped (or
    between two ticks) was not mentioned while `status` said HALT IN FORCE; and a bot's halt whose cooloff ran out
    since was shown as holding. Both are shown, each saying which it is; the command uses the state's own time."""
    from datetime import timedelta

    from engine.brokers.sim.persist import SimPersistence
    from engine.cli import main
    from engine.trading.runner import operator_halt

    rig.ticks(3)
    tick_at = rig.store.last_facts(LAST_FACTS_SCOPE)[0]  # type: ignore[index]
    rig.store.start_halt("mom_AAPL", "orders refused", ("refusals",), False, tick_at - timedelta(minutes=5),
                         tick_at + timedelta(seconds=1))  # fmt: skip
    later = tick_at + timedelta(minutes=2)
    operator_halt(rig.store, rig.engine.journal, "news at 10:00", later)
    at, body = rig.store.last_facts(LAST_FACTS_SCOPE)  # type: ignore[misc]
    system, names, by_bot = marshal.loads(body)
    by_bot["mom_AAPL"] = (by_bot["mom_AAPL"][0], ("system_armed",), ("system_armed",), *by_bot["mom_AAPL"][3:])
    rig.store.save_last_facts([(LAST_FACTS_SCOPE, at, marshal.dumps((system, names, by_bot)))])
    record = explain(rig.store, report_of(project), "mom_AAPL", later)
    assert record["blocked_entry"]["reasons"] == ["the system is not armed"]  # not the halt typed after that tick
    text = render(record)
    assert "halted (system): news at 10:00 (since" in text and "set after this tick" in text, text
    assert "halted (mom_AAPL): orders refused (since" in text and "no longer in force (its cooloff ran out)" in text
    rig.store.set_meta("broker", "sim")  # saved as `run` saves a simulation: the state's own time is its clock
    rig.clock.advance(120)
    SimPersistence(rig.exchange, rig.store)()
    rig.engine.journal.flush()
    assert main(["why", "mom_AAPL", "--state-db", str(rig.store.path), "--log", str(rig.log),
                 "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]) == 0  # fmt: skip
    assert "halted (system): news at 10:00" in capsys.readouterr().out


def test_a_budget_left_unknown_by_a_halted_portfoliobot_is_not_said_unread(project: ProjectCopy, rig: Rig) -> None:
    """During every system halt the PortfolioBot is halted and gives no budget: `why` (and the page) said the check
    budget_known was an ERROR "fact 'budget_usd' is missing (the engine could not read it)", a broker failure to
    the reader, beside every other check passing."""
    from engine.brokers.base import OrderRequest

    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))  # unexplained at start: the system halts
    rig.ticks(3)
    assert rig.store.machine_state("portfolio", "portfolio").state == "halted"  # type: ignore[union-attr]
    record = explain(rig.store, report_of(project), "mom_AAPL")
    (check,) = [c for c in record["preflight"] if c["name"] == "budget_known"]
    assert not check["ok"] and check["error"] == (
        "the bot's budget is unknown: the PortfolioBot is halted: it gives budgets only while armed or idle"
    )
    assert "could not read it" not in render(record)


def test_a_negated_guard_that_holds_is_named_as_stopping_its_transition(project: ProjectCopy, rig: Rig) -> None:
    """`disarm [not may_open]` on an armed bot that may open does not hold, and nothing earlier fires. `why` looked
    for a guard that was false, found none (may_open holds) and said "holds, but an earlier one fires"."""
    rig.until(lambda r: next(b for b in r.engine.bots if b.bot_id == "mom_AAPL").model.state == "armed")
    record = explain(rig.store, report_of(project), "mom_AAPL")
    disarm = next(t for t in record["transitions"] if t["trigger"] == "disarm")
    assert disarm["when"] == "not may_open" and not disarm["holds"] and not disarm["would_fire"]
    assert disarm["stopped_by"] == "not may_open"
    text = render(record)
    assert "holds, but an earlier one fires" not in text
    assert "[not may_open]  stopped by not may_open" in text


def test_a_transition_that_does_not_hold_is_never_said_to_hold() -> None:
    """render's words for a transition that did not fire: 'holds' only when it held."""
    base: dict[str, Any] = {"bot": "b", "kind": "momentum", "state": "armed", "since": "2026-12-01T15:00:00+00:00",
            "tick": "2026-12-01T15:00:00+00:00", "halts": [], "preflight": [], "blocked_entry": None,
            "unsized_signal": None}  # fmt: skip
    t: dict[str, Any] = {"trigger": "go", "to": "idle", "when": "x", "guards": [], "error": None, "would_fire": False}
    held = render({**base, "transitions": [{**t, "holds": True, "stopped_by": None}]})
    assert "holds, but an earlier one fires" in held
    said = render({**base, "transitions": [{**t, "holds": False, "stopped_by": None}]})
    assert "does not hold" in said and "holds, but" not in said
    forged = render({**base, "transitions": [{**t, "holds": False, "stopped_by": "x\n  ok -> armed  FIRES"}]})
    assert "\n  ok -> armed" not in forged


def test_a_halt_reason_in_the_no_facts_error_stays_on_its_line(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot with no facts last tick is explained by its halt's reason, printed as `error: ...`: the reason (an
    exception's message, the user's signal code's) went raw to the terminal, and a newline in it forged a line."""
    import engine.trading.facts_builder as facts_builder

    rig.ticks(2)
    real = facts_builder.entries.plan_entry

    def plan_entry(config: object, *args: object, **kwargs: object) -> object:
        if getattr(config, "bot_id", "") == "opt_core":
            raise ValueError("bad\x1b[2J\nopt_core: resumed, all clear")
        return real(config, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(facts_builder.entries, "plan_entry", plan_entry)
    rig.until(lambda r: bool(r.store.halts("opt_core")), limit=400)
    with pytest.raises(WhyError) as caught:
        explain(rig.store, report_of(project), "opt_core")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert "bad\\x1b[2J\\nopt_core: resumed" in str(caught.value)


def test_words_from_the_state_file_in_the_why_record_stay_on_their_lines() -> None:
    """render's every line is made safe: the saved state's name, a fact's text, a check's error and the engine's
    recorded reasons come from the state file or the user's code, and a newline in one forged a line."""
    evil = "x\n  enter -> entering  [always]  FIRES\x1b[2J"
    fact = {"name": "note", "value": evil, "unit": ""}
    record: dict[str, Any] = {
        "bot": "b", "kind": "momentum", "state": evil, "since": "2026-12-01T15:00:00+00:00",
        "tick": "2026-12-01T15:00:00+00:00", "halts": [], "not_managed": [],
        "transitions": [{"trigger": "go", "to": "idle", "when": "g", "holds": False, "would_fire": False,
                         "stopped_by": "g", "error": None, "guards": [{"name": "g", "holds": False, "facts": [fact]}]}],
        "preflight": [{"name": "c", "ok": False, "error": evil, "facts": [fact]}],
        "blocked_entry": {"failed": ["size"], "reasons": [evil]}, "unsized_signal": evil,
    }  # fmt: skip
    text = render(record)
    assert "\x1b" not in text and "\n  enter -> entering" not in text
    assert len(text.splitlines()) == 8, text


def test_a_bot_on_a_shared_symbol_shows_its_position_and_the_other_bots_on_it(project: ProjectCopy, shared: Rig) -> None:
    """Two bots holding AAPL (examples/shared-ticker): `status` listed each one's shares, while `why` said only
    holds_position=true, neither the symbol nor the quantity, nor that another bot held the same symbol (README:
    `status`, `why`, `report` show each bot's position on the shared symbol). A flat bot says it holds nothing."""
    rig = shared
    rig.until(lambda r: FAST in ledgers(r) and SLOW in ledgers(r), limit=1500)
    owned = ledgers(rig)
    record = explain(rig.store, report_of(project), SLOW)
    assert [(p["bot"], p["symbol"], p["qty"]) for p in record["positions"]] == [(SLOW, "AAPL", owned[SLOW])]
    assert [(p["bot"], p["symbol"], p["qty"]) for p in record["same_symbol"]] == [(FAST, "AAPL", owned[FAST])]
    json.dumps(record)
    lines = render(record).splitlines()
    at = lines.index("position:")
    assert lines[at + 1].split()[:4] == [SLOW, "AAPL", f"{owned[SLOW]:g}", "@"] and "opened" in lines[at + 1]
    assert lines[at + 2].split()[:4] == [FAST, "AAPL", f"{owned[FAST]:g}", "@"] and "same symbol" in lines[at + 2]
    assert "position: none" in render(explain(rig.store, report_of(project), "opt_core")).splitlines()


def test_a_config_value_has_the_unit_facts_gives_it(project: ProjectCopy, rig: Rig) -> None:
    """`why` showed risk_global_max_daily_loss_pct=1 and exits_stop_loss_pct=0.8 with the unit "config", where
    `python -m engine facts` says "config, %": a stop loss beside position_pnl_pct's "%" read as having no unit.
    One helper (rules.book.shown_unit) for both; in `why` in brackets, its comma not read as the list's."""
    from engine.rules.book import shown_unit

    rig.ticks(3)
    record = explain(rig.store, report_of(project), "mom_AAPL")
    facts = {f["name"]: f for t in record["transitions"] for g in t["guards"] for f in g["facts"]}
    facts |= {f["name"]: f for c in record["preflight"] for f in c["facts"]}
    daily = "risk_global_max_daily_loss_pct"
    assert facts[daily]["unit"] == "config, %" == shown_unit("momentum", daily)
    assert facts["risk_max_orders_per_minute"]["unit"] == "config, count"
    assert facts["daily_pnl_pct"]["unit"] == "%" and facts["safety_allow_budget_fallback"]["unit"] == "config"
    text = render(record)
    assert f"{daily}=1 (config, %)" in text and "daily_pnl_pct=0 %" in text
    assert "safety_allow_budget_fallback=false (config)" in text and " config," not in text.replace("(config,", "")


def test_an_entry_the_broker_refused_is_shown_with_its_kind_time_and_message(project: ProjectCopy, clock) -> None:
    """Issue 14: a refused entry is that bot's denial, its reason in `why`. `why` showed only the engine's own
    denial: after two wash-trade refusals through the emulator it said nothing of them (`--json`: blocked_entry
    None), and only the third, by the pause it set, showed at all."""
    from engine.brokers.emulator import Emulator, Fault
    from engine.brokers.sim.exchange import SimExchange
    from engine.brokers.snapshot import SnapshotBroker
    from tests.brokers.conftest import KEY, SECRET, make_api

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        wash = '{"code":42210000,"message":"potential wash trade detected.\\nuse complex orders"}'
        emulator.faults.extend(Fault(status=422, body=wash, path_equals="/v2/orders", method="POST") for _ in range(2))
        rig.until(lambda r: len([e for e in r.events("order") if e.get("action") == "refused"]) == 2, limit=3000)
        bot = next(e["bot"] for e in rig.events("order") if e.get("action") == "refused")
        rig.ticks(1)
        assert not rig.store.halts(bot)  # two refusals: no pause to show them
        record = explain(rig.store, report_of(project), bot)
        refused = record["broker_refused"]
        assert refused is not None and refused["kind"] == "wash_trade", refused
        assert refused["message"] == "potential wash trade detected.\\nuse complex orders"  # one line, escaped
        json.dumps(record)
        line = next(line for line in render(record).splitlines() if line.startswith("last entry refused by the broker:"))
        assert "wash_trade at " in line and line.endswith(": potential wash trade detected.\\nuse complex orders"), line
        other = next(b.bot_id for b in rig.engine.bots if b.bot_id != bot)
        assert explain(rig.store, report_of(project), other)["broker_refused"] is None
