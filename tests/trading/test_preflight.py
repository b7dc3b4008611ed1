"""Preflight at run time (engine/trading/preflight.py): each tier answered from the facts it reads, however the
answers are shared between bots within a tick, and a check that cannot be evaluated failing with its error."""

from __future__ import annotations

from engine.trading.facts_builder import BotInputs, bot_facts, feed_health
from engine.trading.gate import Gate
from engine.trading.preflight import failing
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def test_preflight_answers_each_tier_from_the_facts_it_reads(project: ProjectCopy, clock) -> None:
    # Checks of three tiers: system-wide facts only (answered once a tick), the gate's running counts and the facts
    # a bot's kind fixes (once per set of their values: market_open reads tradable_now), the bot's own facts (every
    # bot). However answers are shared within a tick, each one must follow the facts as they are when the bot is
    # evaluated: a bot whose tradable_now differs from the one answered before it gets its own answer.
    with (project.rules / "preflight.yaml").open("a") as f:
        f.write(
            "  gate_tier:\n    description: test\n    expr: orders_last_minute < 1 or capital_room_usd > 500\n"
            "  own_tier:\n    description: test\n    expr: trades_today < 1 and orders_last_minute < 5\n"
        )
    rig = make_rig(project, clock)
    rig.ticks(3)
    engine, view = rig.engine, rig.engine._view
    assert view is not None
    tiers = engine._preflight_tiers["momentum"]
    assert "gate_tier" in dict(tiers.gate) and "own_tier" in dict(tiers.own) and "market_open" in dict(tiers.gate)
    feed = feed_health(view.snapshot, engine.needs, view.now, engine.config.settings.health)
    failed = tiers.for_tick(engine._system_facts(view, 0, feed, kill_triggered=False)).failed
    bot = next(b for b in engine.bots if b.kind == "momentum")
    system = engine._system_facts(view, 0, feed, kill_triggered=False)

    def answer(orders: int, room: float, trades: int, tradable: bool | None = True) -> tuple[str, ...]:
        inputs = BotInputs({}, {bot.bot_id: 100.0}, Gate(orders, room), {"momentum": failed}, {}, None)
        facts = bot_facts(view, bot, system, inputs).facts
        facts["trades_today"] = trades
        facts["tradable_now"] = tradable
        told = ("order_rate_ok", "gate_tier", "own_tier", "market_open")
        return tuple(name for name in failed(facts) if name in told)

    assert answer(0, 1000.0, 0) == ()
    assert answer(2, 1000.0, 0) == ()  # room left: the gate's check holds
    assert answer(2, 100.0, 0) == ("gate_tier",)
    assert answer(2, 100.0, 1) == ("gate_tier", "own_tier")  # the same counts, another bot's own facts
    assert answer(0, 100.0, 1) == ("own_tier",)
    assert answer(20, 100.0, 0) == ("order_rate_ok", "gate_tier", "own_tier")
    assert answer(0, 1000.0, 0) == ()  # an answer given earlier in the tick is given again
    assert answer(0, 1000.0, 0, False) == ("market_open",)  # the same counts, another tradable_now
    assert answer(0, 1000.0, 0, None) == ("market_open",)  # missing: fails closed
    assert answer(0, 1000.0, 0) == ()


def test_a_check_that_cannot_be_evaluated_fails_and_says_so() -> None:
    def explode(facts: object) -> bool:
        raise KeyError("quote_age_s")

    checks = (("fine", lambda f: True), ("broken", explode), ("false", lambda f: False))
    assert failing(checks, {}) == (("broken", "false"), True)
    assert failing(checks[::2], {}) == (("false",), False)


def test_the_engine_logs_an_error_only_for_a_check_that_raised(project: ProjectCopy, clock) -> None:
    # An own-tier check that raises (OverflowError: arithmetic past 1.8e308) beside one that is simply false: both fail, and only the
    # first has an error in the `preflight` event.
    project.replace(
        "rules/preflight.yaml",
        "expr: quote_age_s <= health_max_price_staleness_seconds",
        "expr: (quote_age_s + 1) * 1e300 * 1e300 <= health_max_price_staleness_seconds",
    )
    project.replace("rules/preflight.yaml", "expr: safety_allow_budget_fallback or budget_usd > 0", "expr: budget_usd < 0")
    rig = make_rig(project, clock)
    rig.ticks(3)
    events = [e for e in rig.events("preflight") if e["bot"] == "mom_AAPL"]
    assert events and {"quotes_fresh", "budget_known"} <= set(events[0]["failed"])
    assert set(events[0]["errors"]) == {"quotes_fresh"} and "OverflowError" in events[0]["errors"]["quotes_fresh"]


def test_failing_checks_are_put_in_the_rules_order_once_a_run(project: ProjectCopy, clock) -> None:
    """The answer `failed` gives is the failing checks in the rules' order, worked out once for each set that fails
    together and kept from one tick to the next (outside its window every bot fails the same set each tick): the
    same order, whatever order the set was found in, and the same tuple the next tick."""
    rig = make_rig(project, clock)
    rig.ticks(2)
    tiers = rig.engine._preflight_tiers["momentum"]
    names = frozenset({"budget_known", "market_open", "system_armed"})
    ordered = tiers.in_order(names)
    assert ordered == tuple(n for n in tiers.order if n in names) == ("system_armed", "market_open", "budget_known")
    assert tiers.in_order(frozenset(reversed(sorted(names)))) is ordered
