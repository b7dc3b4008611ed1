"""The ExitBot: each kill condition halts with its reason; while halted only exits go out; the halt survives a
restart and ends after its cooloff; the operator's halt lasts until resume."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from engine.brokers.base import DataNeeds, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import SYSTEM_SCOPE
from engine.trading.runner import operator_halt, operator_resume, status_text
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig


def halt_reasons(rig: Rig) -> list[str]:
    return [h.reason for h in rig.store.halts(SYSTEM_SCOPE)]


def holding(rig: Rig) -> bool:
    return bool(rig.store.positions())


def test_max_daily_loss_halts_and_flattens_and_only_exits_go_out(rig: Rig) -> None:
    rig.until(holding)
    rig.exchange.last_equity = rig.exchange.equity() * 1.05  # the account is down 5 % on the day
    rig.ticks(1)
    assert rig.engine.system.state == "halted"
    assert halt_reasons(rig) == ["kill condition: max_daily_loss_halt (daily_pnl_pct -4.7619, risk_global_max_daily_loss_pct 1)"]
    halt = rig.store.halts(SYSTEM_SCOPE)[0]
    assert halt.flatten and halt.until == halt.started_at + timedelta(minutes=390)
    rig.ticks(30)
    assert rig.store.positions() == [] and rig.exchange.positions == {}  # flattened
    after = [r for r in rig.store.orders() if r.created_at >= halt.started_at]
    assert after and all(r.purpose == "exit" and r.side == "sell" for r in after)
    assert {b.model.state for b in rig.engine.bots} == {"halted"}
    assert [e["reason"] for e in rig.events("halt")] == ["kill condition: max_daily_loss_halt (daily_pnl_pct -4.7619, risk_global_max_daily_loss_pct 1)"]
    last = {e["bot"]: e["failed"] for e in rig.events("preflight")}  # the system-wide checks, for every bot
    assert all({"system_armed", "daily_loss_ok"} <= set(failed) for failed in last.values()) and len(last) == 3


def test_data_stale_halts(project: ProjectCopy, clock) -> None:
    project.replace("config/settings.yaml", "max_price_staleness_seconds: 15", "max_price_staleness_seconds: 1")
    clock.advance(3)  # quotes are stamped on the 5-second grid: now they are 3 s old
    rig = make_rig(project, clock)
    rig.ticks(1)
    assert rig.engine.system.state == "halted" and halt_reasons(rig) == ["kill condition: data_stale_halt (stale_markets 2: stocks, crypto)"]


def test_a_disabled_kill_condition_does_not_halt(project: ProjectCopy, clock) -> None:
    project.replace("config/settings.yaml", "max_price_staleness_seconds: 15", "max_price_staleness_seconds: 1")
    project.replace("config/bots.yaml", "data_stale_halt: true", "data_stale_halt: false")
    clock.advance(3)
    rig = make_rig(project, clock)
    rig.ticks(20)
    assert rig.engine.system.state == "armed" and halt_reasons(rig) == []
    blocked = {c for e in rig.events("preflight") for c in e["failed"]}
    assert "quotes_fresh" in blocked  # ...but stale data still blocks every entry
    assert rig.store.orders() == []


def test_api_failures_halt_through_the_alpaca_adapter(project: ProjectCopy, clock) -> None:
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(2)
        assert rig.engine.system.state == "armed"
        emulator.faults.extend(Fault(status=503, path_prefix="/v2/account") for _ in range(5))
        rig.ticks(5)
        assert rig.engine.system.state == "halted"
        assert halt_reasons(rig) == ["kill condition: api_failure_halt (api_failures_in_window 5, health_max_api_failures_in_window 5)"]
        assert len(rig.events("broker_error")) == 5


def test_option_chains_the_plan_does_not_permit_block_the_options_bot_not_the_account(project: ProjectCopy, clock) -> None:
    """`options.feed: opra` without an OPRA subscription: every chain read is answered 403 "subscription does not
    permit querying recent OPRA data". Each was a failed read, counted: every bot's entries blocked (`broker_ok`) and
    api_failure_halt after a few ticks, the whole account halted for its cooloff, again after each. The broker
    answered: only the OptionsBot, whose entries need the chains, is blocked (its preflight's `data_permitted`, in
    `why`), said once a spell; the other bots trade on."""
    from engine.brokers.sim.exchange import SimExchange
    from engine.operator.why import explain, render
    from engine.validate import load_valid

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        opra = '{"message":"subscription does not permit querying recent OPRA data"}'
        emulator.faults.append(Fault(status=403, body=opra, path_prefix="/v1beta1/options/snapshots/", times=0))
        rig.ticks(120)
        assert rig.engine.system.state == "armed" and halt_reasons(rig) == [] and not rig.store.halts()
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 0
        said = [e for e in rig.events("broker_error") if e["operation"] == "option_chain"]
        assert sorted(e["symbol"] for e in said) == ["QQQ", "SPY"]  # once a spell, not once a tick
        assert all(e["reason"] == "forbidden" and e["counted"] is False for e in said)
        entries = {r.bot_id for r in rig.store.orders() if r.purpose == "entry"}
        assert "opt_core" not in entries and entries  # the other bots trade on
        failed = [e["failed"] for e in rig.events("preflight") if e["bot"] == "opt_core"]
        assert failed and "data_permitted" in failed[-1]
        report = load_valid(project.config, project.machines, project.rules)
        assert "  data_permitted: FAILED   (data_denied=true)" in render(explain(rig.store, report, "opt_core")).splitlines()
        emulator.faults.clear()  # the plan now permits it: the OptionsBot is no longer blocked
        rig.ticks(3)
        failed = [e["failed"] for e in rig.events("preflight") if e["bot"] == "opt_core"]
        assert "data_permitted" not in failed[-1]


def test_stock_quotes_the_plan_does_not_permit_block_the_stock_bots_not_the_account(project: ProjectCopy, clock) -> None:
    """`broker.stock_feed: sip` on a plan without SIP data: every stock quote read is answered 403. Counted as failed
    reads, the account halted (api_failure_halt), and read as a missing feed the stocks' market was stale
    (data_stale_halt): either way the CryptoBot stopped with them. The stock bots alone are blocked
    (`data_permitted`), said once a spell; the CryptoBot trades on."""
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        sip = '{"message":"subscription does not permit querying recent SIP data"}'
        emulator.faults.append(Fault(status=403, body=sip, path_equals="/v2/stocks/quotes/latest", times=0))
        rig.ticks(120)
        assert rig.engine.system.state == "armed" and halt_reasons(rig) == [] and not rig.store.halts()
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 0
        said = [e for e in rig.events("broker_error") if e["operation"] == "stock_quotes"]
        assert len(said) == 1 and said[0]["counted"] is False and {"AAPL", "SPY", "QQQ"} <= set(said[0]["symbols"])
        assert {r.bot_id for r in rig.store.orders() if r.purpose == "entry"} == {"crypto_core"}
        for bot in ("mom_AAPL", "opt_core"):
            failed = [e["failed"] for e in rig.events("preflight") if e["bot"] == bot]
            assert failed and "data_permitted" in failed[-1], (bot, failed[-1:])


def test_an_exception_in_a_tick_halts_with_its_reason(rig: Rig) -> None:
    rig.ticks(2)
    real = rig.engine.broker.snapshot

    def broken(needs: DataNeeds):  # a bug, not a broker failure
        raise RuntimeError("something nobody expected")

    rig.engine.broker.snapshot = broken  # type: ignore[method-assign]
    report = rig.engine.tick()
    rig.engine.broker.snapshot = real  # type: ignore[method-assign]
    assert report.error == "RuntimeError: something nobody expected"
    assert rig.engine.system.state == "halted"
    assert halt_reasons(rig) == ["exception in tick: RuntimeError: something nobody expected"]
    assert [e["what"] for e in rig.events("anomaly")] == ["exception"]


def test_an_unowned_position_appearing_halts_as_an_anomaly(rig: Rig) -> None:
    rig.ticks(2)
    rig.exchange.submit(OrderRequest("MSFT", "buy", "placed-by-hand", qty=1))
    rig.ticks(3)
    assert rig.engine.system.state == "halted"
    assert halt_reasons(rig) == ["kill condition: anomaly_halt, position MSFT: broker 1, bots own 0"]  # says what
    assert any("MSFT" in e.get("detail", "") for e in rig.events("anomaly"))


def test_an_unowned_position_at_start_up_halts(project: ProjectCopy, clock) -> None:
    rig = make_rig(project, clock)
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))
    rig.ticks(3)
    assert rig.engine.system.state == "halted" and not rig.engine.reconciled
    assert halt_reasons(rig)[0].startswith("reconciliation: position AAPL: broker 5, bots own 0")
    assert rig.store.orders() == []  # nothing was sent


def test_an_unexplained_start_halts_again_when_its_halt_ends_until_it_is_explained(rig: Rig) -> None:
    """Ended by `resume` (or its cooloff) while the position is still nobody's: halted again, with the reason,
    not left idle with "halt: none" and nothing said."""
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))
    rig.ticks(3)
    assert rig.engine.system.state == "halted" and len(rig.store.halts(SYSTEM_SCOPE)) == 1
    operator_resume(rig.store, rig.engine.journal, rig.clock.now())
    rig.ticks(3)
    assert rig.engine.system.state == "halted" and not rig.engine.reconciled
    reasons = halt_reasons(rig)
    assert len(reasons) == 2 and all(r.startswith("reconciliation: position AAPL: broker 5, bots own 0") for r in reasons)
    assert rig.store.orders() == []


def test_the_halt_survives_a_restart_and_ends_after_its_cooloff(project: ProjectCopy, clock) -> None:
    project.replace("config/bots.yaml", "cooloff_minutes: 390", "cooloff_minutes: 2")
    rig = make_rig(project, clock)
    rig.until(holding)
    rig.exchange.last_equity = rig.exchange.equity() * 1.05
    rig.ticks(3)
    assert rig.engine.system.state == "halted"

    restarted = rig.restart()  # a new process: state comes back from SQLite
    assert restarted.engine.system.state == "halted"
    restarted.exchange.last_equity = restarted.exchange.equity()  # the loss condition is gone
    restarted.ticks(10)
    assert restarted.engine.system.state == "halted"  # still inside the cooloff
    assert not [
        r
        for r in restarted.store.orders()
        if r.purpose == "entry" and r.created_at > rig.store.halts()[0].started_at
    ]
    restarted.ticks(20)  # past the two minutes
    assert restarted.engine.system.state == "armed"
    triggers = [e["trigger"] for e in restarted.events("transition") if e["bot"] == "system"]
    assert triggers[-2:] == ["expire", "arm"]  # re-armed through idle and system_ready, never straight back
    assert [e["by"] for e in restarted.events("resume")] == ["cooloff"]


def test_operator_halt_lasts_until_resume(rig: Rig) -> None:
    rig.ticks(2)
    operator_halt(rig.store, rig.engine.journal, "going to lunch", rig.clock.now())
    rig.ticks(1)
    assert rig.engine.system.state == "halted"
    rig.clock.advance(timedelta(days=2).total_seconds())
    rig.ticks(3)
    assert rig.engine.system.state == "halted"  # no end time: the clock does not matter
    assert operator_resume(rig.store, rig.engine.journal, rig.clock.now()) == 1
    rig.ticks(3)
    assert rig.engine.system.state == "armed"


def test_a_kill_condition_holding_as_the_operator_resumes_is_recorded_once(project: ProjectCopy, clock) -> None:
    """Broker failures piled up under an operator's halt; at `resume` the system machine left `halted` (expire) the
    same tick the ExitBot recorded the kill (no halt was in force), and the next tick the machine's own `kill`
    edge recorded it again: two identical halts, each with its own cooloff, two HALT IN FORCE lines in `status`."""
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(2)
        operator_halt(rig.store, rig.engine.journal, "checking the broker", rig.clock.now())
        rig.ticks(1)
        emulator.faults.extend(Fault(status=503, path_prefix="/v2/account") for _ in range(6))
        rig.ticks(6)  # one account read a tick, each failing: six in the window, past the five allowed
        assert operator_resume(rig.store, rig.engine.journal, rig.clock.now()) == 1
        rig.ticks(4)
        kills = [r for r in halt_reasons(rig) if r.startswith("kill condition: api_failure_halt")]
        assert len(kills) == 1, halt_reasons(rig)
        assert rig.engine.system.state == "halted"


def _rig_on_emulator(project: ProjectCopy, clock: ManualClock) -> tuple[Rig, Emulator]:
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    emulator = Emulator(exchange, key=KEY, secret=SECRET)
    emulator.start()
    broker = SnapshotBroker(make_api(emulator, clock), clock)
    return make_rig(project, clock, broker=broker, exchange=exchange), emulator


def test_repeated_refusals_pause_the_bot_not_the_account(project: ProjectCopy, clock) -> None:
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        refusal = '{"code":40310000,"message":"insufficient buying power"}'
        emulator.faults.extend(Fault(status=403, body=refusal, path_prefix="/v2/orders", method="POST") for _ in range(3))
        rig.until(lambda r: any(h.conditions == ("refusals",) for h in r.store.halts()), limit=3000)
        refused = [r for r in rig.store.orders() if r.status == "rejected"]
        assert len(refused) == 3 and len({r.bot_id for r in refused}) == 1
        assert all((r.error or "").startswith("insufficient_funds") for r in refused)
        bot = refused[0].bot_id
        halt = rig.store.halt_in_force(bot, clock.now())
        assert halt is not None and halt.reason == "orders refused repeatedly (insufficient_funds)" and halt.until is not None
        assert rig.engine.system.state == "armed" and halt_reasons(rig) == []  # the account trades on
        assert rig.events("anomaly") == []
        assert [e["reason"] for e in rig.events("order") if e.get("action") == "refused"] == ["insufficient_funds"] * 3
    finally:
        emulator.stop()


def test_a_paused_bot_keeps_its_position_and_its_own_exits_manage_it(project: ProjectCopy, clock) -> None:
    """Issue 14: repeated refusals pause a bot, they do not halt it. The pause was written as a fault's halt, and the
    kill switch sold what the bot held at the tick it paused (`bot_halted`), on no fault of its rules: the broker had
    refused its NEW entries for want of cash. Through the emulator: the CryptoBot holds ETH/USD, its BTC/USD entries
    are refused (403 insufficient balance) three times; it pauses, keeps ETH/USD, sends no entry, and its own exit
    rules (here its take profit) sell ETH/USD while the pause is still in force; `status` says its positions are
    kept."""
    project.replace("config/bots.yaml", "  - bot_id: mom_AAPL\n    enabled: true", "  - bot_id: mom_AAPL\n    enabled: false")
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    project.replace("config/bots.yaml", "time_stop_minutes: 240", "time_stop_minutes: 20")
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.until(lambda r: bool(r.store.positions("crypto_core")), limit=3000)
        [held] = rig.store.positions("crypto_core")
        refusal = '{"code":40310000,"message":"insufficient balance for USD"}'
        emulator.faults.append(Fault(status=403, body=refusal, path_equals="/v2/orders", method="POST", times=0))
        rig.until(lambda r: bool(r.store.halts("crypto_core")), limit=3000)
        [pause] = rig.store.halts("crypto_core")
        assert pause.conditions == ("refusals",) and pause.pause and pause.until is not None
        emulator.faults.clear()
        rig.ticks(3)
        assert [p.symbol for p in rig.store.positions("crypto_core")] == [held.symbol]  # kept: nothing sold
        assert not [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "exit"]
        bot = next(b for b in rig.engine.bots if b.bot_id == "crypto_core")
        assert bot.model.state == "in_position"  # its exits are evaluated, not `halted`
        status = status_text(rig.store, clock.now())
        assert "its positions are kept, managed by its exits" in status and "closes its positions" not in status
        entries = len([r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"])
        rig.until(lambda r: any(o.purpose == "exit" for o in r.store.orders(bot_id="crypto_core")), limit=3000)
        [exit_] = [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "exit"]
        assert exit_.symbol == held.symbol and exit_.reason.startswith("exit: "), exit_.reason  # one of its rules
        assert exit_.created_at < pause.until  # managed by its own exit while paused
        assert len([r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]) == entries  # none new
        assert rig.engine.system.state == "armed" and halt_reasons(rig) == []
    finally:
        emulator.stop()


@pytest.mark.parametrize(("status", "body", "kind"), [
    (403, '{"code":40310000,"message":"insufficient balance for USD"}', "insufficient_funds"),
    (422, '{"code":42210000,"message":"potential wash trade detected. use complex orders"}', "wash_trade"),
])  # fmt: skip
def test_refused_entries_of_several_bots_never_halt_the_account(project: ProjectCopy, clock, status: int, body: str,
                                                              kind: str) -> None:  # fmt: skip
    """A refusal on an order's merits is its bot's denial, not a broker failing the account: every send failure
    counted towards api_failure_halt, so five refusals (two bots' entries refused) halted the whole account for its
    390-minute cooloff, every other bot with it. Each bot pauses on its own; the account trades on. (A window of
    15 minutes holds every bot's refusals here, as a busier account's minute would.)"""
    project.replace("config/settings.yaml", "api_failure_window_seconds: 60", "api_failure_window_seconds: 900")
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        emulator.faults.append(Fault(status=status, body=body, path_equals="/v2/orders", method="POST", times=0))
        rig.until(lambda r: len({h.scope for h in r.store.halts()}) >= 2, limit=3000)
        rig.ticks(5)
        refused = [e for e in rig.events("order") if e.get("action") == "refused"]
        assert len(refused) >= 5 and {e["reason"] for e in refused} == {kind}
        assert rig.engine.system.state == "armed" and halt_reasons(rig) == []  # no api_failure_halt
        assert all(h.pause for h in rig.store.halts())  # each refused bot paused, on its own
        sends = [e for e in rig.events("broker_error") if e["operation"] == "submit_order"]
        assert sends and all(e["counted"] is False for e in sends)  # logged, as every broker error, not counted
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 0
    finally:
        emulator.stop()


def test_rejections_of_no_known_kind_are_an_anomaly(project: ProjectCopy, clock) -> None:
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        odd = '{"code":42210000,"message":"some rule nobody here knows"}'
        emulator.faults.extend(Fault(status=422, body=odd, path_prefix="/v2/orders", method="POST") for _ in range(3))
        rig.until(lambda r: r.engine.system.state == "halted", limit=3000)
        bot = next(r.bot_id for r in rig.store.orders() if r.status == "rejected")
        halt = rig.store.halt_in_force(bot, clock.now())
        assert halt is not None and halt.reason == "orders rejected repeatedly"
        assert halt_reasons(rig) == [f"kill condition: anomaly_halt, {bot}'s orders rejected repeatedly"]
    finally:
        emulator.stop()


def test_the_broker_refusing_the_keys_mid_run_halts_at_once(project: ProjectCopy, clock) -> None:
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.ticks(3)
        assert rig.engine.system.state == "armed"
        emulator.faults.append(Fault(status=401, body='{"code":40110000,"message":"request is not authorized"}', path_prefix="/v2/account"))
        rig.ticks(1)
        assert rig.engine.system.state == "halted"
        assert next(h.reason for h in rig.store.halts()).startswith("the broker refused the API keys")
    finally:
        emulator.stop()


def test_keys_still_refused_after_their_halt_ran_out_halt_again_as_keys(project: ProjectCopy, clock) -> None:
    """The keys halt was recorded once a process: when its cooloff ran out with the keys still refused, the system
    was held only by the failures' count (`api_failure_halt`), and `status` named no refused keys. Each spell of
    refused keys with no keys halt in force is recorded as one."""
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.ticks(3)
        refused = '{"code":40110000,"message":"request is not authorized"}'
        emulator.faults.append(Fault(status=401, body=refused, path_prefix="/v2/account"))
        rig.ticks(1)
        [first] = [h for h in rig.store.halts() if h.reason.startswith("the broker refused the API keys")]
        assert first.until is not None
        clock.set(first.until + timedelta(seconds=1))
        emulator.faults.append(Fault(status=401, body=refused, path_prefix="/v2/account", times=0))
        rig.ticks(2)
        keys = [h for h in rig.store.halts(open_only=True) if h.reason.startswith("the broker refused the API keys")]
        assert [h.in_force(clock.now()) for h in keys] == [True]
        rig.ticks(2)  # once a spell, not once a tick or a failed request
        assert len([h for h in rig.store.halts() if h.reason.startswith("the broker refused the API keys")]) == 2
    finally:
        emulator.stop()


def test_a_guard_that_fails_while_holding_halts_the_bot_and_closes_its_position(project: ProjectCopy, clock) -> None:
    # a broken edit that still validates: its arithmetic passes 1.8e308 (OverflowError) as soon as a bot holds a
    # position (a division by what can be 0, `open_positions - 1`, no longer passes `--validate`)
    project.replace(
        "rules/guards.yaml",
        "expr: worst_position_pnl_pct <= -exits_stop_loss_pct",
        "expr: (position_pnl_pct + 1000) * 1e300 * 1e300 <= -exits_stop_loss_pct",
    )
    rig = make_rig(project, clock)
    rig.until(lambda r: bool(r.events("guard_error")))
    rig.ticks(30)
    faulted = {e["bot"] for e in rig.events("guard_error")}
    for bot in rig.engine.bots:
        if bot.bot_id not in faulted:
            continue
        assert bot.model.state == "halted"
        halt = rig.store.halt_in_force(bot.bot_id, clock.now())
        assert halt is not None and halt.reason.startswith("guard failed:") and "stop_loss_hit" in halt.reason
        assert len(rig.store.halts(bot.bot_id)) == 1  # one fault, one record, however many ticks follow
        assert rig.store.positions(bot.bot_id) == []  # the kill switch closed what the broken bot held
        exits = [r for r in rig.store.orders(bot_id=bot.bot_id) if r.reason == "bot_halted"]
        assert exits and all(r.purpose == "exit" and r.status == "filled" for r in exits)
    assert rig.engine.system.state == "armed"  # a bot's fault is the bot's: the system trades on


def test_a_cooloff_running_out_does_not_end_the_operators_halt(project: ProjectCopy, clock) -> None:
    project.replace("config/bots.yaml", "cooloff_minutes: 390", "cooloff_minutes: 1")
    rig = make_rig(project, clock)
    rig.until(holding)
    operator_halt(rig.store, rig.engine.journal, "investigating", clock.now())
    rig.exchange.last_equity = rig.exchange.equity() * 1.05  # a kill condition too, with a one-minute cooloff
    rig.ticks(2)
    rig.exchange.last_equity = rig.exchange.equity()
    rig.ticks(30)
    in_force = {h.reason: h.ended_at is None for h in rig.store.halts(SYSTEM_SCOPE)}
    assert in_force == {"investigating": True, "kill condition: max_daily_loss_halt (daily_pnl_pct -4.7619, risk_global_max_daily_loss_pct 1)": False}
    assert rig.engine.system.state == "halted"  # the kill's cooloff ran out; the operator's halt did not


def test_a_failed_read_defers_a_holding_bot_instead_of_halting_it(rig: Rig) -> None:
    import dataclasses

    from engine.brokers.base import BrokerError

    rig.until(lambda r: any(b.model.state == "in_position" and b.kind == "momentum" for b in r.engine.bots))
    bot = next(b for b in rig.engine.bots if b.kind == "momentum")
    real = rig.engine.broker.snapshot

    def outage(needs: DataNeeds):  # positions and quotes could not be read this tick
        snap = real(needs)
        return dataclasses.replace(snap, positions=None, quotes={}, errors=(BrokerError("server", "503", status=503),))

    rig.engine.broker.snapshot = outage  # type: ignore[method-assign]
    rig.ticks(1)
    rig.engine.broker.snapshot = real  # type: ignore[method-assign]
    assert bot.model.state == "in_position" and rig.store.halt_in_force(bot.bot_id, rig.clock.now()) is None
    assert any(e["bot"] == bot.bot_id for e in rig.events("step_deferred"))
    assert not rig.events("guard_error")
    rig.until(lambda r: bot.model.state != "in_position")  # exits are managed again from the next tick
    assert bot.model.state in ("exiting", "managing", "idle") and rig.store.halt_in_force(bot.bot_id, rig.clock.now()) is None


def test_a_missing_fact_with_every_read_fine_still_halts(rig: Rig) -> None:
    rig.until(lambda r: any(b.model.state == "in_position" and b.kind == "momentum" for b in r.engine.bots))
    bot = next(b for b in rig.engine.bots if b.kind == "momentum")
    real = rig.engine.broker.snapshot

    def silent_gap(needs: DataNeeds):  # no error reported, yet the bot's price is gone: not the broker's doing
        import dataclasses

        snap = real(needs)
        return dataclasses.replace(snap, positions=(), quotes={k: v for k, v in snap.quotes.items() if k != "AAPL"})

    rig.engine.broker.snapshot = silent_gap  # type: ignore[method-assign]
    rig.ticks(1)
    rig.engine.broker.snapshot = real  # type: ignore[method-assign]
    assert bot.model.state == "halted" and rig.store.halt_in_force(bot.bot_id, rig.clock.now()) is not None


def test_an_order_the_broker_replaces_is_followed_to_its_replacement(rig: Rig) -> None:
    replaced: list[tuple[str, str]] = []

    def replace_the_first_order_sent() -> None:  # as Alpaca does itself, after a corporate action
        open_now = rig.exchange._open_orders()
        if open_now and not replaced:
            old = open_now[0]
            new_id = rig.exchange.replace_order(old.id)
            replaced.append((old.request.client_order_id, rig.exchange.orders[new_id].request.client_order_id))

    rig.exchange.fill_at_submit = False  # the order rests until the next step, as at Alpaca
    rig.engine.on_persist = replace_the_first_order_sent
    rig.until(lambda r: bool(replaced))
    rig.ticks(5)
    (old_cid, new_cid), = replaced
    adopted, old = rig.store.order(new_cid), rig.store.order(old_cid)
    assert adopted is not None and old is not None and adopted.bot_id == old.bot_id and adopted.purpose == old.purpose
    assert old.status == "replaced" and adopted.reason == f"replaces {old_cid}" and adopted.status == "filled"
    assert rig.engine.system.state == "armed" and rig.events("anomaly") == []
    owned = {p.symbol: round(p.qty, 9) for p in rig.store.positions()}
    assert owned == {p.symbol: round(p.qty, 9) for p in rig.exchange.position_views()} and owned


def test_a_short_position_no_bot_opened_halts_as_unexplained(project: ProjectCopy, clock) -> None:
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.exchange.set_position("AAPL", -5, 100.0)  # `side: short`, `qty: "-5"` on the wire
        rig.ticks(2)
        assert rig.engine.system.state == "halted" and not rig.engine.reconciled
        (halt,) = rig.store.halts()  # one halt, not one a tick
        assert "position AAPL: broker -5, bots own 0" in halt.reason
    finally:
        emulator.stop()


def _system_facts_the_bots_saw(rig: Rig) -> dict[str, object]:
    import marshal

    from engine.trading.engine import LAST_FACTS_SCOPE

    row = rig.store.last_facts(LAST_FACTS_SCOPE)
    assert row is not None
    system, _names, _by_bot = marshal.loads(row[1])
    return dict(system)


def test_the_bots_see_the_system_as_its_own_step_left_it(rig: Rig) -> None:
    """The system machine steps before the bots, in the same tick: the tick it arms or halts in, the bots' facts
    already say so (built again after its move, not reused from before it)."""
    rig.ticks(1)
    assert rig.engine.system.state == "armed"
    seen = _system_facts_the_bots_saw(rig)
    assert seen["system_armed"] is True and seen["system_halted"] is False
    operator_halt(rig.store, rig.engine.journal, "news at 10:00", rig.clock.now())
    rig.ticks(1)
    assert rig.engine.system.state == "halted"
    seen = _system_facts_the_bots_saw(rig)
    assert seen["system_halted"] is True and seen["system_armed"] is False and seen["halt_active"] is True
    assert seen["kill_triggered"] is False


def test_a_halt_the_state_file_refuses_is_said_in_the_log_not_left_as_if_saved(rig: Rig) -> None:
    """The log tells the halt and its transition as they are decided; when the state file then refuses them (a
    full disk, read-only), the log says so and the error leaves the tick: the run stops rather than trade on."""
    rig.ticks(2)

    def broken(needs: DataNeeds):  # a bug, not a broker failure
        raise RuntimeError("something nobody expected")

    rig.engine.broker.snapshot = broken  # type: ignore[method-assign]
    rig.store._conn.execute("PRAGMA query_only = ON")  # SQLite itself refuses every write from here on
    with pytest.raises(sqlite3.Error, match="readonly"):
        rig.engine.tick()
    rig.store._conn.execute("PRAGMA query_only = OFF")
    assert halt_reasons(rig) == []
    [not_saved] = rig.events("halt_not_saved")
    assert not_saved["reason"] == "exception in tick: RuntimeError: something nobody expected"
    assert "readonly" in not_saved["error"]


def test_an_answer_the_engine_cannot_read_halts_at_once_and_the_run_recovers(project: ProjectCopy, clock) -> None:
    """One unreadable value (equity 'NaN') is the broker saying what we do not understand: halt now, not after
    five of them; the cooloff ends the halt and the system re-arms once the answers read again."""
    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.ticks(3)
        assert rig.engine.system.state == "armed"
        emulator.faults.append(Fault(path_prefix="/v2/account", patch={"equity": "NaN"}, times=3))
        rig.ticks(1)
        assert rig.engine.system.state == "halted"
        rig.ticks(2)  # the same answer again while halted: no second halt
        [halt] = rig.store.halts()
        assert halt.reason.startswith("the broker's answer could not be read (account: ") and "equity" in halt.reason
        assert [e["trigger"] for e in rig.events("transition") if e["machine"] == "system"][-1] == "bad_response"
        cooloff = rig.engine.config.settings.safety.global_cooldown_minutes
        rig.clock.advance(timedelta(minutes=cooloff).total_seconds())
        rig.ticks(3)
        assert rig.engine.system.state == "armed" and len(rig.store.halts()) == 1  # one halt, not one a tick
    finally:
        emulator.stop()


def test_an_entry_after_a_send_that_halted_the_system_is_not_sent(project: ProjectCopy, clock) -> None:
    """Two entries granted in one tick; the first one's answer cannot be read, which halts the system: the second
    is checked against the halts as they are now, not as they were when the sends began."""
    from engine.brokers.base import OrderRequest as Request

    rig, emulator = _rig_on_emulator(project, clock)
    try:
        rig.ticks(3)
        orders, day = rig.engine.orders, rig.engine.trading_date(clock.now())
        with rig.store.transaction():
            aapl = Request("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
            orders.record_intent("mom_AAPL", day, "entry", aapl, "test")
            btc = Request("BTC/USD", "buy", orders.next_client_order_id("crypto_core", day), "limit", "gtc", qty=0.001,
                          limit_price=20_000.0)  # fmt: skip
            orders.record_intent("crypto_core", day, "entry", btc, "test")
        emulator.faults.append(Fault(path_prefix="/v2/orders", method="POST", patch={"qty": "NaN"}, after=True))
        orders.send_pending()
        assert rig.engine.system.state == "halted"
        posted = [r.body["client_order_id"] for r in emulator.requests if r.method == "POST" and r.path == "/v2/orders"]
        assert len(posted) == 1  # the first one only
        other = ({aapl.client_order_id, btc.client_order_id} - set(posted)).pop()
        row = rig.store.order(other)
        assert row is not None and row.status == "not_sent" and "could not be read" in (row.error or "")
    finally:
        emulator.stop()


@pytest.mark.parametrize("left", [0.0, 0.5])  # the whole position sold outside the engine, or half of it
def test_an_exit_never_sells_more_than_the_account_holds(rig: Rig, left: float) -> None:
    """Reduce-only: the bots own more than the broker holds (sold by hand, or an earlier exit the broker did not
    show in time); an exit sells what is there, never more, so it cannot open a short position, and the
    difference halts the system as unexplained."""
    rig.until(lambda r: any(p.symbol == "AAPL" for p in r.store.positions()))
    (position,) = [p for p in rig.store.positions() if p.symbol == "AAPL"]
    rig.exchange.set_position("AAPL", position.qty * left, position.avg_entry_price)  # sold outside the engine
    rig.exchange.last_equity = rig.exchange.equity() * 1.05  # down 5 % on the day: the kill switch flattens
    rig.ticks(5)
    held = rig.exchange.positions.get("AAPL")
    assert held is None  # nothing left, and nothing short
    sells = [r for r in rig.store.orders(bot_id=position.bot_id) if r.symbol == "AAPL" and r.side == "sell"]
    assert sum(r.filled_qty for r in sells) == position.qty * left
    limited = [e for e in rig.events("exit_limited") if e["symbol"] == "AAPL"]
    assert limited[0]["owned"] == position.qty and limited[0]["sent"] == position.qty * left
    if left:  # what the bots still own after the broker's half was sold: nothing left to sell, said once
        assert len(limited) == 2 and limited[1]["owned"] == position.qty * (1 - left) and limited[1]["sent"] == 0
    else:
        assert len(limited) == 1
    rig.ticks(5)  # what the bots own and the broker does not is an unexplained difference (a halt, when armed)
    assert any(e["detail"].startswith("position AAPL: broker 0, bots own") for e in rig.events("anomaly"))


def _raises(prices: object, params: object) -> bool:
    raise ZeroDivisionError("the user's own bug")


@pytest.mark.parametrize(("signal", "said"), [
    (_raises, "signal failed: ZeroDivisionError: the user's own bug"),
    (lambda prices, params: "yes", "signal failed: answered 'yes' (str), not True or False"),
])  # fmt: skip
def test_a_signal_that_fails_halts_its_bot_only_and_the_others_trade_on(rig: Rig, signal: object, said: str) -> None:
    """A signal is the user's code: one that raises (or answers neither True nor False) stopped every tick at the
    tick boundary, so no bot's exits were managed any more, and a system halt was written every tick."""
    rig.engine.bot("mom_AAPL").signal = signal  # type: ignore[assignment]
    rig.ticks(60)
    assert rig.engine.system.state == "armed"
    assert not rig.events("anomaly")  # no tick failed
    (halt,) = rig.store.halts("mom_AAPL")  # once, however many ticks followed
    assert halt.reason == said and halt.until is None  # until the operator resumes it: the code needs fixing
    assert rig.engine.bot("mom_AAPL").model.state == "halted"
    assert [e["bot"] for e in rig.events("signal_error")] == ["mom_AAPL"]
    assert not rig.store.halts("crypto_core") and rig.engine.bot("crypto_core").model.state != "halted"
    assert not rig.events("guard_error")  # the machine halted on the halt, never asked the missing signal


def test_a_paused_bot_whose_signal_fails_is_halted_and_its_position_closed(rig: Rig) -> None:
    """A pause is no halt of a fault: a bot paused (its orders refused) whose signal then fails is halted for the
    fault as any bot, and its positions closed. Taken as "halted already", the fault was never recorded and the bot,
    its code broken, kept its positions once the pause ran out. (The CryptoBot: its signal is asked of the pair
    it does not hold.)"""
    rig.until(lambda r: bool(r.store.positions("crypto_core")), limit=3000)
    now = rig.clock.now()
    rig.store.start_halt("crypto_core", "orders refused repeatedly (insufficient_funds)", ("refusals",), False, now,
                         now + timedelta(minutes=30))  # fmt: skip
    rig.ticks(2)
    assert rig.store.positions("crypto_core")  # paused: kept
    rig.engine.bot("crypto_core").signal = _raises
    rig.ticks(20)
    faults = [h for h in rig.store.halts("crypto_core") if h.conditions == ("signal_error",)]
    assert len(faults) == 1 and rig.engine.bot("crypto_core").model.state == "halted"
    assert not rig.store.positions("crypto_core")  # the kill switch closed what the faulted bot held
    assert any(r.reason == "bot_halted" for r in rig.store.orders(bot_id="crypto_core"))


def test_an_exception_every_tick_is_one_system_halt_not_one_a_tick(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.ticks(2)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the same fault every tick")

    monkeypatch.setattr(rig.engine.portfolio, "allocate", broken)
    rig.ticks(20)
    assert [h.reason for h in rig.store.halts(SYSTEM_SCOPE)] == ["exception in tick: RuntimeError: the same fault every tick"]
    assert len(rig.events("anomaly")) == 20  # each is still logged


def test_a_bot_whose_facts_cannot_be_built_halts_alone(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data one bot's facts cannot be built from (here its option chain read as something no contract can be
    chosen from) halts that bot; the tick, the other bots and their exits go on."""
    import engine.trading.facts_builder as facts_builder

    real = facts_builder.entries.plan_entry

    def plan_entry(config: object, symbol: str, *args: object, **kwargs: object) -> object:
        if getattr(config, "bot_id", "") == "opt_core":
            raise KeyError("strike")
        return real(config, symbol, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(facts_builder.entries, "plan_entry", plan_entry)
    rig.until(lambda r: bool(r.store.halts("opt_core")), limit=400)
    rig.ticks(20)
    (halt,) = rig.store.halts("opt_core")
    assert halt.reason == "its facts could not be built: KeyError: 'strike'"
    assert rig.engine.system.state == "armed" and not rig.events("anomaly")
    assert [e["bot"] for e in rig.events("facts_error")] == ["opt_core"]
    assert rig.engine.bot("mom_AAPL").model.state != "halted"


def test_a_start_up_difference_that_moves_is_said_but_is_not_a_new_halt_each_time(rig: Rig) -> None:
    """From the chaos run: while one difference kept reconciliation failing, each change of its text (here the
    unexplained position growing) wrote a new system halt, each restarting the 390-minute cooloff."""
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))
    rig.ticks(3)
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-2", qty=4))
    rig.ticks(3)
    assert halt_reasons(rig) == ["reconciliation: position AAPL: broker 5, bots own 0"]
    details = [e["details"] for e in rig.events("anomaly") if e["what"] == "reconciliation"]
    assert details == [["position AAPL: broker 5, bots own 0"], ["position AAPL: broker 9, bots own 0"]]


@pytest.mark.parametrize("answer", ["True", "False"])
def test_numpys_true_and_false_are_answers_of_a_signal(rig: Rig, answer: str) -> None:
    """From review: a signal written `np.mean(prices) > x` answers numpy's bool, named `bool` since numpy 2; it
    was refused, and its bot halted on the first tick with prices."""
    import numpy

    value: Any = numpy.True_ if answer == "True" else numpy.False_  # numpy's bool: not the bool a signal is typed to answer
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: value
    rig.ticks(30)
    assert not rig.store.halts("mom_AAPL") and not rig.events("signal_error")


def test_the_same_fault_in_two_bots_facts_is_the_engines_and_halts_the_system_not_each_bot(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From review: a fault in shared code halted every bot whose facts met it, one by one, and the kill switch
    sold what each held while the system stayed armed. A second bot meeting the same fault in a tick makes it
    the tick's: one system halt, nothing closed for it."""
    import engine.trading.facts_builder as facts_builder

    rig.ticks(3)

    def broken(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("shared code")

    monkeypatch.setattr(facts_builder, "_quotes_state", broken)
    rig.ticks(3)
    assert rig.engine.system.state == "halted"
    (reason,) = halt_reasons(rig)
    assert reason.startswith("exception in tick: RuntimeError: the same fault building the facts of ")
    assert not [h for h in rig.store.halts() if h.scope != SYSTEM_SCOPE]  # no bot halted and flattened for it


def test_a_new_unexplained_symbol_gets_its_halt_and_a_known_one_none_whatever_halts_came_since(rig: Rig) -> None:
    """From the chaos re-run: the check looked only at the latest system halt, so after an operator's halt the
    same difference was halted again (a new cooloff), and a new symbol under a halt naming another got none."""
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-1", qty=5))
    rig.ticks(3)
    operator_halt(rig.store, rig.engine.journal, "looking into it", rig.clock.now())
    rig.exchange.submit(OrderRequest("AAPL", "buy", "manual-2", qty=4))
    rig.ticks(3)
    assert halt_reasons(rig) == ["reconciliation: position AAPL: broker 5, bots own 0", "looking into it"]
    rig.exchange.set_position("SPY", 3, 500.0)  # another symbol nobody owns
    rig.ticks(3)
    reasons = halt_reasons(rig)
    assert len(reasons) == 3 and "position SPY: broker 3, bots own 0" in reasons[-1]


def test_an_exit_sent_while_reconciliation_fails_is_said_for_what_it_is(rig: Rig) -> None:
    """From the chaos re-run: exits recorded by this run while start-up reconciliation still failed went out at
    the next tick's recovery logged as `resend_after_restart`, though nothing had restarted."""
    rig.until(lambda r: any(p.symbol == "AAPL" for p in r.store.positions()))
    rig.engine.reconciled = False  # as after a start whose reconciliation fails
    rig.exchange.set_position("SPY", 3, 500.0)  # a position nobody owns keeps it failing
    (holder,) = {p.bot_id for p in rig.store.positions() if p.symbol == "AAPL"}
    rig.engine.exitbot.halt_bot(holder, reason="looked at", condition="operator", now=rig.clock.now())  # closes it
    rig.ticks(4)
    actions = [e["action"] for e in rig.events("order") if e.get("action") in ("resend_after_restart", "send_before_reconciled")]
    assert actions and set(actions) == {"send_before_reconciled"}


def test_a_difference_whose_size_moves_every_tick_is_still_one_that_persists(rig: Rig) -> None:
    """From the soak (tests/trading/test_soak.py): a difference had to be the same text MISMATCH_TICKS ticks in a
    row, quantities included, so one that moved every tick (a position no bot owns, growing by a share a tick: a
    second application trading the account) never counted twice, and the system stayed armed, entering, for as
    long as it grew. It persists as long as its subject (the position of a symbol) does."""
    from engine.trading.exitbot import MISMATCH_TICKS

    rig.ticks(3)
    assert rig.engine.system.state == "armed" and rig.engine.reconciled
    for shares in range(1, MISMATCH_TICKS + 2):
        rig.exchange.set_position("MSFT", shares, 400.0)
        rig.ticks(1)
    assert rig.engine.system.state == "halted"
    (reason,) = halt_reasons(rig)
    assert reason.startswith("kill condition: anomaly_halt, position MSFT: broker ")


def test_a_start_up_difference_on_a_symbol_with_our_order_working_halts_though_its_size_moves(rig: Rig) -> None:
    """Start-up reconciliation gives a difference on a symbol where an order of ours works one more tick (its fill
    may not be synced yet), and halts when the same is found again. "The same" was the same text: a position that
    moved every tick (a second application buying on the symbol) kept the engine unreconciled, unarmed and
    without a halt or an anomaly, for as long as it moved."""
    from engine.core.store import PositionRow

    rig.ticks(3)
    now, price = rig.clock.now(), round(rig.exchange.quote("AAPL").mid, 2)
    orders, day = rig.engine.orders, rig.engine.trading_date(now)
    with rig.store.transaction():  # mom_AAPL holds 1 AAPL, its exit working far above the market
        rig.store.save_position(PositionRow("mom_AAPL", "AAPL", 1.0, price, now, bought_qty=1.0))
        rig.store.save_machine_state("momentum", "mom_AAPL", "in_position", now)
        cid = orders.next_client_order_id("mom_AAPL", day)
        exit_order = OrderRequest("AAPL", "sell", cid, "limit", "day", qty=1, limit_price=round(price * 2, 2))
        orders.record_intent("mom_AAPL", day, "exit", exit_order, "test")
    rig.exchange.set_position("AAPL", 1, price)
    orders.send_pending()
    restarted = rig.restart()
    for shares in range(2, 5):  # the broker's AAPL grows by one each tick
        restarted.exchange.set_position("AAPL", shares, price)
        restarted.ticks(1)
    assert restarted.engine.system.state == "halted"
    (reason,) = halt_reasons(restarted)
    assert reason.startswith("reconciliation: position AAPL: broker ")


def _system_halts(rig: Rig) -> list[tuple[str, bool]]:
    return [(h.conditions[0] if h.conditions else "", h.flatten) for h in rig.store.halts(SYSTEM_SCOPE)]


def test_a_daily_loss_under_another_halt_is_recorded_and_flattens(rig: Rig) -> None:
    """Any other system halt in force (here the operator's; a stale feed's, an anomaly's are the same) left the
    system machine in `halted`, whose `kill` edge leaves only idle and armed: the daily loss passed then was
    recorded by nothing, and nothing was sold for the whole halt. The kill switch records it whatever halts are in
    force, with its flatten, once: not again each tick while its halt names it."""
    rig.until(holding)
    operator_halt(rig.store, rig.engine.journal, "going to lunch", rig.clock.now())
    rig.ticks(2)
    assert rig.engine.system.state == "halted" and rig.store.positions()
    rig.exchange.last_equity = rig.exchange.equity() * 1.05  # down 4.8 % on the day, the limit 1 %
    rig.ticks(30)
    assert _system_halts(rig) == [("operator", False), ("max_daily_loss_halt", True)]
    assert rig.store.positions() == [] and rig.exchange.positions == {}  # sold under the operator's halt
    assert rig.events("kill_outside_machine") == []  # the machine was halted already: nothing to say of its edges


def test_a_later_halt_without_flatten_does_not_stop_a_flatten_under_way(rig: Rig) -> None:
    """The flatten was read from the latest system halt alone: the daily loss's flatten recorded while its exits
    could not leave (the account blocked), then an operator's halt without flatten, and the flatten was forgotten,
    the positions kept. A flatten is in force while any system halt in force carries it."""
    import dataclasses

    rig.until(holding)
    rig.exchange.flags = dataclasses.replace(rig.exchange.flags, trading_blocked=True)  # exits wait
    rig.exchange.last_equity = rig.exchange.equity() * 1.05
    rig.ticks(2)
    assert _system_halts(rig) == [("max_daily_loss_halt", True)] and rig.store.positions()
    operator_halt(rig.store, rig.engine.journal, "the operator looks at it", rig.clock.now())
    rig.exchange.flags = dataclasses.replace(rig.exchange.flags, trading_blocked=False)
    rig.ticks(30)
    assert _system_halts(rig) == [("max_daily_loss_halt", True), ("operator", False)]
    assert rig.store.positions() == [] and rig.exchange.positions == {}


RATE_LIMITED = '{"code":42910000,"message":"rate limit exceeded"}'


def _sent(emulator: Emulator, since: int, prefixes: tuple[str, ...]) -> list[str]:
    return [r.path for r in emulator.requests[since:] if r.path.startswith(prefixes)]


def test_one_trading_429_counts_once_and_entries_wait_for_its_reset(project: ProjectCopy, clock) -> None:
    """One 429 from the trading API (X-RateLimit-Remaining 0, the reset 55 s away) holds every trading request back
    until the reset. Each request held back was counted as a broker failure (account, positions, orders: 3 a tick),
    and api_failure_halt (5 in 60 s) halted the engine within two ticks of one 429. The hold counts once, the 429;
    the reads still failed (broker_ok false: no entry is sent meanwhile), and they resume at the reset."""
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(2)
        assert rig.engine.system.state == "armed"
        reset = int(clock.now().timestamp()) + 55
        emulator.faults.append(Fault(status=429, body=RATE_LIMITED, path_prefix="/v2/account",
                                     headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}))  # fmt: skip
        sent, start = len(emulator.requests), clock.now()
        rig.ticks(11)  # 55 s: the hold
        assert rig.engine.system.state != "halted" and halt_reasons(rig) == []
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 1
        assert _sent(emulator, sent, ("/v2/account", "/v2/positions", "/v2/orders", "/v2/clock")) == ["/v2/account"]
        assert [r for r in rig.store.orders() if r.created_at >= start] == []
        last = {e["bot"]: e["failed"] for e in rig.events("preflight")}  # every bot's entry blocked: the reads failed
        assert last and all("account_ok" in failed for failed in last.values())
        held = [e for e in rig.events("broker_error") if e["held"]]
        assert len(held) >= 30 and {e["kind"] for e in held} == {"rate_limited"}
        sent = len(emulator.requests)
        rig.ticks(1)
        assert "/v2/account" in _sent(emulator, sent, ("/v2/account",))  # the reset is honoured
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 1
        rig.ticks(1)
        assert rig.engine.system.state == "armed"


def test_a_data_429_holds_data_reads_for_its_retry_after_and_counts_once(project: ProjectCopy, clock) -> None:
    """A 429 from the market-data API (a `data fetch` beside the engine spends the same plan's budget) with
    Retry-After: 60. It changed nothing: every tick asked for the quotes again, each refusal a failure, and
    api_failure_halt halted the engine within three ticks. Now the data host is held for the minute (counted once),
    trading reads go on, and no api_failure_halt comes of it."""
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        broker = SnapshotBroker(make_api(emulator, clock), clock)
        rig = make_rig(project, clock, broker=broker, exchange=exchange)
        rig.ticks(2)
        emulator.faults.append(Fault(status=429, body=RATE_LIMITED, path_prefix="/v2/stocks", headers={"Retry-After": "60"}))
        sent = len(emulator.requests)
        rig.ticks(11)
        data = ("/v2/stocks", "/v1beta3", "/v1beta1")
        assert _sent(emulator, sent, data) == ["/v2/stocks/quotes/latest"]
        assert len(_sent(emulator, sent, ("/v2/account",))) == 11  # trading reads went on
        assert rig.engine.exitbot.failures_in_window(clock.now()) == 1
        assert not any("api_failure_halt" in reason for reason in halt_reasons(rig))
        sent = len(emulator.requests)
        rig.ticks(2)
        assert "/v2/stocks/quotes/latest" in _sent(emulator, sent, data)
