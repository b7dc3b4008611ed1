"""Issue 14: the emulator answers in Alpaca's real shapes and the adapter reads them right, through the real
alpaca-py clients on loopback. Raw requests check the wire (what Alpaca sends); the adapter checks the reading."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests

from engine.brokers.alpaca import AlpacaAPI
from engine.brokers.base import BrokerError, DataNeeds, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import QuoteMode, SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api

NANO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
NANO_NEW_YORK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}-0[45]:00$")


def raw(emulator: Emulator, method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(method, emulator.url + path, headers=headers, timeout=5, **kwargs)  # type: ignore[arg-type]


# --- money, times, symbols --------------------------------------------------------------------------------------


def test_money_is_strings_and_times_carry_nanoseconds(emulator: Emulator, api: AlpacaAPI, clock: ManualClock) -> None:
    account = raw(emulator, "GET", "/v2/account").json()
    for name in ("cash", "equity", "last_equity", "buying_power", "non_marginable_buying_power", "options_buying_power"):
        assert isinstance(account[name], str), name
    order = raw(emulator, "POST", "/v2/orders", json={"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market",
                                                      "time_in_force": "day", "client_order_id": "t-1"}).json()  # fmt: skip
    assert NANO_UTC.match(order["created_at"]) and isinstance(order["qty"], str)
    assert NANO_NEW_YORK.match(raw(emulator, "GET", "/v2/clock").json()["timestamp"])
    quote = raw(emulator, "GET", "/v2/stocks/quotes/latest", params={"symbols": "AAPL"}).json()["quotes"]["AAPL"]
    assert NANO_UTC.match(quote["t"])
    assert api.get_clock().timestamp == clock.now()  # alpaca-py reads nine digits and an offset
    assert api.get_stock_quotes(["AAPL"])["AAPL"].timestamp.tzinfo is not None


def test_a_short_position_is_read_negative_once(emulator: Emulator, api: AlpacaAPI, exchange: SimExchange) -> None:
    exchange.set_position("AAPL", -5, 190.0)
    wire = raw(emulator, "GET", "/v2/positions").json()
    assert [(p["symbol"], p["side"], p["qty"]) for p in wire] == [("AAPL", "short", "-5")]  # Alpaca-API issue #86
    assert float(wire[0]["market_value"]) < 0 and float(wire[0]["cost_basis"]) < 0
    (position,) = api.get_positions()
    assert position.qty == -5 and position.market_value < 0


def test_crypto_positions_say_btcusd(emulator: Emulator, api: AlpacaAPI, exchange: SimExchange) -> None:
    exchange.set_position("BTC/USD", 0.01, 60_000.0)
    assert [p["symbol"] for p in raw(emulator, "GET", "/v2/positions").json()] == ["BTCUSD"]
    assert [p.symbol for p in api.get_positions()] == ["BTC/USD"]


# --- orders -----------------------------------------------------------------------------------------------------


def test_an_order_is_answered_before_it_fills(broker: SnapshotBroker, clock: ManualClock) -> None:
    order = broker.submit_order(OrderRequest("AAPL", "buy", "mom-1", qty=2))
    assert (order.status, order.filled_qty) == ("pending_new", 0.0)
    assert broker.get_order_by_client_id("mom-1").status == "pending_new"  # type: ignore[union-attr]  # same instant
    clock.advance(5)
    filled = broker.get_order_by_client_id("mom-1")
    assert filled is not None and (filled.status, filled.filled_qty) == ("filled", 2.0)


def test_an_order_outside_the_session_is_accepted_then_new_at_the_open(broker: SnapshotBroker, clock: ManualClock) -> None:
    clock.set(clock.now().replace(hour=13))  # 08:00 in New York
    order = broker.submit_order(OrderRequest("AAPL", "buy", "early-1", "limit", "day", qty=1, limit_price=1.0))
    assert order.status == "accepted"
    clock.set(clock.now().replace(hour=14, minute=31))  # 09:31
    assert broker.get_order(order.id).status == "new"  # type: ignore[union-attr]


def test_cancel_is_asynchronous(broker: SnapshotBroker, emulator: Emulator, clock: ManualClock) -> None:
    order = broker.submit_order(OrderRequest("AAPL", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    clock.advance(5)
    answer = raw(emulator, "DELETE", f"/v2/orders/{order.id}")
    assert (answer.status_code, answer.content) == (204, b"")
    assert broker.get_order(order.id).status == "pending_cancel"  # type: ignore[union-attr]
    clock.advance(5)
    assert broker.get_order(order.id).status == "canceled"  # type: ignore[union-attr]


def test_a_fill_may_win_the_race_with_a_cancel(broker: SnapshotBroker, clock: ManualClock) -> None:
    ask = broker.snapshot(DataNeeds(stocks=("AAPL",))).quotes["AAPL"].ask
    order = broker.submit_order(OrderRequest("AAPL", "buy", "race-1", "limit", "day", qty=1, limit_price=round(ask * 1.01, 2)))
    broker.cancel_order(order.id)  # asked at once, but the order is marketable
    clock.advance(5)
    assert broker.get_order(order.id).status == "filled"  # type: ignore[union-attr]


def test_cancel_all_and_close_all_answer_207_per_item(
    broker: SnapshotBroker, emulator: Emulator, exchange: SimExchange, clock: ManualClock
) -> None:
    first = broker.submit_order(OrderRequest("AAPL", "buy", "a-1", "limit", "day", qty=1, limit_price=1.0))
    second = broker.submit_order(OrderRequest("MSFT", "buy", "m-1", "limit", "day", qty=1, limit_price=1.0))
    results = broker.cancel_all_orders()
    assert {(r.target, r.status, r.ok) for r in results} == {(first.id, 200, True), (second.id, 200, True)}
    assert any(r.method == "DELETE" and r.path == "/v2/orders" for r in emulator.requests)
    clock.advance(5)
    exchange.set_position("BTC/USD", 0.01, 60_000.0)
    exchange.set_position("AAPL", 3, 190.0)
    exchange.set_position("TSLA", 2, 250.0)
    exchange.set_asset("TSLA", tradable=False)
    wire = raw(emulator, "DELETE", "/v2/positions", params={"cancel_orders": "true"})
    assert wire.status_code == 207
    assert {item["symbol"]: item["status"] for item in wire.json()} == {"AAPL": 200, "BTCUSD": 200, "TSLA": 422}
    exchange.set_position("TSLA", 2, 250.0)  # still held: close it again through the adapter
    closed = {r.target: r for r in broker.close_all_positions()}
    assert closed["TSLA"].status == 422 and closed["TSLA"].error is not None and not closed["TSLA"].ok
    assert closed["TSLA"].error.message == "asset TSLA is not tradable"


def test_the_crypto_fee_comes_out_of_the_coins(broker: SnapshotBroker, clock: ManualClock) -> None:
    broker.submit_order(OrderRequest("BTC/USD", "buy", "c-1", "market", "gtc", qty=0.01))
    clock.advance(5)
    order = broker.get_order_by_client_id("c-1")
    assert order is not None and order.filled_qty == 0.01  # the order reports the gross quantity
    (position,) = broker.snapshot(DataNeeds()).positions or ()
    assert position.qty == pytest.approx(0.01 * (1 - 0.0025))  # the taker fee, in coins


def test_replaced_and_suspended_orders_pass_through(broker: SnapshotBroker, exchange: SimExchange, clock: ManualClock) -> None:
    order = broker.submit_order(OrderRequest("AAPL", "buy", "r-1", "limit", "day", qty=2, limit_price=1.0))
    clock.advance(5)
    new_id = exchange.replace_order(order.id, limit_price=1.5)  # as Alpaca may do itself after a corporate action
    old = broker.get_order(order.id)
    assert old is not None and (old.status, old.replaced_by, old.is_open) == ("replaced", new_id, False)
    replacement = broker.get_order(new_id or "")
    assert replacement is not None and (replacement.replaces, replacement.limit_price) == (order.id, 1.5)
    assert [o.id for o in broker.snapshot(DataNeeds()).open_orders or ()] == [new_id]
    exchange.suspend_order(new_id or "")
    (suspended,) = broker.snapshot(DataNeeds()).open_orders or ()
    assert suspended.status == "suspended" and suspended.is_open
    assert broker.get_order("00000000-0000-4000-8000-000000000000") is None


def test_a_pending_replace_refuses_a_cancel(broker: SnapshotBroker, exchange: SimExchange, clock: ManualClock) -> None:
    order = broker.submit_order(OrderRequest("AAPL", "buy", "p-1", "limit", "day", qty=1, limit_price=1.0))
    clock.advance(5)
    exchange.replace_order(order.id, limit_price=1.2, pending=True)
    assert broker.get_order(order.id).status == "pending_replace"  # type: ignore[union-attr]
    with pytest.raises(BrokerError) as caught:
        broker.cancel_order(order.id)
    assert (caught.value.status, caught.value.code, caught.value.reason) == (422, 42210000, "invalid")
    clock.advance(5)
    replaced = broker.get_order(order.id)
    assert replaced is not None and replaced.status == "replaced" and replaced.replaced_by


# --- quotes and option chains -----------------------------------------------------------------------------------


def test_quote_sides_at_zero_pass_through(emulator: Emulator, broker: SnapshotBroker, exchange: SimExchange) -> None:
    exchange.set_quote_mode("AAPL", QuoteMode(no_bid=True))
    exchange.set_quote_mode("BTC/USD", QuoteMode(no_ask=True))
    wire = raw(emulator, "GET", "/v2/stocks/quotes/latest", params={"symbols": "AAPL"}).json()["quotes"]["AAPL"]
    assert wire["bp"] == 0 and wire["ap"] > 0
    quotes = broker.snapshot(DataNeeds(stocks=("AAPL",), crypto=("BTC/USD",))).quotes
    assert quotes["AAPL"].bid == 0 and quotes["AAPL"].ask > 0 and not quotes["AAPL"].two_sided
    assert quotes["BTC/USD"].ask == 0 and quotes["BTC/USD"].bid > 0 and not quotes["BTC/USD"].two_sided


def test_each_quote_keeps_its_own_time(broker: SnapshotBroker, exchange: SimExchange, clock: ManualClock) -> None:
    frozen = clock.now() - timedelta(minutes=7)  # a thin ticker whose last quote is minutes old
    exchange.set_quote_mode("TSLA", QuoteMode(frozen_at=frozen))
    quotes = broker.snapshot(DataNeeds(stocks=("AAPL", "TSLA"))).quotes
    assert quotes["TSLA"].timestamp <= frozen < quotes["AAPL"].timestamp


def test_option_chains_are_paged_a_thousand_at_a_time(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    today = clock.now().date()
    before = api.requests_made
    chain = api.get_option_chain("SPY", today, today + timedelta(days=365))
    pages = [r for r in emulator.requests if r.path == "/v1beta1/options/snapshots/SPY"]
    assert len(chain) > 2000 and len(pages) == api.requests_made - before == 3
    assert [r.query.get("limit") for r in pages] == [["1000"]] * 3
    assert "page_token" not in pages[0].query and all(r.query["page_token"] for r in pages[1:])
    assert len({c.symbol for c in chain}) == len(chain)
    too_many = raw(emulator, "GET", "/v1beta1/options/snapshots/SPY", params={"limit": "1001"})
    assert too_many.status_code == 400


def test_contracts_without_greeks_or_with_only_a_quote_are_kept(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    today = clock.now().date()
    wire = raw(emulator, "GET", "/v1beta1/options/snapshots/SPY", params={"limit": "1000"}).json()["snapshots"]
    shapes = {tuple(sorted(s)) for s in wire.values()}
    assert ("latestQuote",) in shapes and ("latestQuote", "latestTrade") in shapes  # no greeks, no IV
    chain = {c.symbol: c for c in api.get_option_chain("SPY", today, today + timedelta(days=60))}
    assert set(chain) == set(wire)
    bare = [c for symbol, c in chain.items() if "greeks" not in wire[symbol]]
    assert bare and all(c.greeks is None and c.implied_volatility is None and c.ask > 0 for c in bare)
    full = [c for symbol, c in chain.items() if "greeks" in wire[symbol]]
    assert all(c.greeks is not None and c.greeks.delta == c.delta for c in full)


def test_option_data_names_its_feed(api: AlpacaAPI, emulator: Emulator, clock: ManualClock) -> None:
    today = clock.now().date()
    api.get_option_chain("SPY", today, today + timedelta(days=30))
    assert emulator.requests[-1].query["feed"] == ["indicative"]
    opra = make_api(emulator, clock, options_feed="opra")
    with pytest.raises(BrokerError) as caught:  # no OPRA subscription
        opra.get_option_chain("SPY", today, today + timedelta(days=30))
    assert (caught.value.status, caught.value.reason) == (403, "forbidden")
    emulator.opra_subscription = True
    assert opra.get_option_chain("SPY", today, today + timedelta(days=30))
    assert emulator.requests[-1].query["feed"] == ["opra"]


def test_option_contract_quotes_keep_their_time_and_sides(api: AlpacaAPI, exchange: SimExchange, clock: ManualClock) -> None:
    today = clock.now().date()
    chain = api.get_option_chain("SPY", today, today + timedelta(days=30))
    target = chain[0].symbol
    exchange.set_quote_mode(target, QuoteMode(no_bid=True, frozen_at=clock.now() - timedelta(minutes=20)))
    contract = next(c for c in api.get_option_chain("SPY", today, today + timedelta(days=30)) if c.symbol == target)
    assert contract.bid == 0 and contract.ask > 0 and contract.quote_time <= clock.now() - timedelta(minutes=20)


def test_unknown_symbols_are_left_out_and_malformed_ones_refused(broker: SnapshotBroker, exchange: SimExchange) -> None:
    exchange.set_asset("ZZZQ", exists=False)
    snap = broker.snapshot(DataNeeds(stocks=("AAPL", "ZZZQ")))
    assert set(snap.quotes) == {"AAPL"} and snap.missing_quotes == ("ZZZQ",) and snap.complete
    bad = broker.snapshot(DataNeeds(stocks=("aapl!",)))
    assert [(e.operation, e.status, e.reason) for e in bad.errors] == [("stock_quotes", 400, "invalid")]


# --- assets, account ----------------------------------------------------------------------------------------------


def test_assets_give_status_and_crypto_increments(emulator: Emulator, broker: SnapshotBroker, exchange: SimExchange) -> None:
    wire = raw(emulator, "GET", "/v2/assets/BTCUSD").json()
    assert (wire["symbol"], wire["class"], wire["price_increment"]) == ("BTC/USD", "crypto", "1")
    assert isinstance(wire["min_order_size"], str) and "e" not in wire["min_order_size"]
    btc = broker.get_asset("BTC/USD")
    assert btc is not None and (btc.symbol, btc.active, btc.tradable, btc.fractionable) == ("BTC/USD", True, True, True)
    assert btc.price_increment == 1 and btc.min_trade_increment == 1e-9 and 0 < (btc.min_order_size or 0) < 0.001
    eth = broker.get_asset("ETH/USD")
    assert eth is not None and eth.price_increment == pytest.approx(0.1)
    aapl = broker.get_asset("AAPL")
    assert aapl is not None and aapl.asset_class == "us_equity" and aapl.min_order_size is None
    exchange.set_asset("ZZZQ", exists=False)
    exchange.set_asset("OLDCO", status="inactive", tradable=False)
    assert broker.get_asset("ZZZQ") is None  # 404
    old = broker.get_asset("OLDCO")
    assert old is not None and not old.active and not old.tradable
    exchange.set_asset("FRAC", fractionable=False)
    assert broker.get_asset("FRAC").fractionable is False  # type: ignore[union-attr]
    assert {"BTC/USD", "ETH/USD"} <= {a.symbol for a in broker.get_assets("crypto")}
    sol = broker.get_asset("SOL/USD")  # a pair the exchange has not priced yet, asked for as SOLUSD
    assert sol is not None and (sol.symbol, sol.asset_class) == ("SOL/USD", "crypto")


def test_account_flags_and_buying_powers(broker: SnapshotBroker, exchange: SimExchange) -> None:
    import dataclasses

    exchange.flags = dataclasses.replace(
        exchange.flags, crypto_status="INACTIVE", options_approved_level=3, options_trading_level=1, trade_suspended_by_user=True
    )
    account = broker.snapshot(DataNeeds()).account
    assert account is not None
    assert (account.crypto_status, account.options_trading_level, account.options_approved_level) == ("INACTIVE", 1, 3)
    assert account.trade_suspended_by_user and not account.usable
    assert account.non_marginable_buying_power == account.options_buying_power == 100_000


def test_the_days_cash_movements_come_from_intraday_adjustments(broker: SnapshotBroker, exchange: SimExchange) -> None:
    exchange.move_cash(-500, "CSW")
    exchange.move_cash(25, "DIV")
    account = broker.snapshot(DataNeeds()).account
    assert account is not None and account.non_trade_cash_today == -475
    assert account.non_trade_cash_source == "intraday_adjustments"
    assert account.equity - account.last_equity - account.non_trade_cash_today == pytest.approx(0)


def test_without_intraday_adjustments_the_days_activities_are_read(
    emulator: Emulator, broker: SnapshotBroker, exchange: SimExchange, clock: ManualClock
) -> None:
    emulator.intraday_adjustments = False
    clock.advance(-3 * 86_400)
    exchange.move_cash(1_000, "CSD")  # Friday before its close: in last_equity already, not cash moved since
    clock.advance(3 * 86_400)
    exchange.move_cash(-300, "CSW")
    exchange.move_cash(-1.5, "FEE")
    snap = broker.snapshot(DataNeeds())
    account = snap.account
    assert account is not None and account.non_trade_cash_source == "activities"
    assert account.non_trade_cash_today == -301.5
    assert [a.activity_type for a in account.non_trade_activities] == ["CSW", "FEE"]
    read = [r for r in emulator.requests if r.path == "/v2/account/activities"]
    assert len(read) == 1 and read[0].query["category"] == ["non_trade_activity"] and read[0].query["direction"] == ["asc"]
    assert "activity_types" not in read[0].query  # every non-trade type: a list of them missed the ones left off it


def test_an_acats_cash_transfer_is_cash_moved_not_a_loss(emulator: Emulator, api: AlpacaAPI, exchange: SimExchange) -> None:
    """ACATC (cash moved out by an ACATS transfer) was neither asked for nor counted: 5,000 USD gone read as a 5 %
    trading loss, the daily-loss kill condition, and its flatten sold every position. It is cash moved."""
    from engine.trading.facts_builder import daily_pnl_pct

    emulator.intraday_adjustments = False
    exchange.move_cash(-5_000, "ACATC")
    account = api.get_account()
    assert account.non_trade_cash_today == -5_000 and account.non_trade_cash_unknown is None
    assert daily_pnl_pct(account) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("kind", ["ACATS", "JNLS", "OCT", "JNL", "FOPT", "NEWTYPE"])
def test_holdings_moved_in_or_out_make_the_days_cash_unknown(
    emulator: Emulator, api: AlpacaAPI, exchange: SimExchange, kind: str
) -> None:
    """Securities (ACATS, JNLS), on-chain crypto (OCT), a journal of either kind, a type no list knows: the equity
    moves by a value net_amount does not give. Left out, it was a trading loss; now the day's cash moved is
    unknown and the daily P&L missing (the kill condition halts, selling nothing), the reason said."""
    from engine.trading.facts_builder import daily_pnl_pct

    emulator.intraday_adjustments = False
    exchange.transfer_holdings(-5_000, kind)
    account = api.get_account()
    assert account.non_trade_cash_today is None and daily_pnl_pct(account) is None
    assert account.non_trade_cash_unknown is not None and f"the {kind} activity" in account.non_trade_cash_unknown


def test_trade_like_activities_and_transfers_before_the_close_leave_the_cash_known(
    emulator: Emulator, api: AlpacaAPI, exchange: SimExchange, clock: ManualClock
) -> None:
    """An option expiring or a split exchanges value inside the account (its effect is the P&L's); a transfer
    booked before the close last_equity is from is in last_equity already. Neither makes the day's cash unknown."""
    emulator.intraday_adjustments = False
    exchange.transfer_holdings(-2_000, "ACATS")  # Monday, mid-session: before the close
    clock.advance(86_400)  # Tuesday: last_equity is Monday's close
    exchange.transfer_holdings(0, "OPEXP")
    exchange.transfer_holdings(0, "SPLIT")
    exchange.move_cash(-100, "CSW")
    account = api.get_account()
    assert (account.non_trade_cash_today, account.non_trade_cash_unknown) == (-100, None)


def test_an_activity_with_only_a_date_is_placed_by_its_id(
    emulator: Emulator, api: AlpacaAPI, exchange: SimExchange, clock: ManualClock
) -> None:
    """Alpaca's NonTradeActivities may carry `date` only. Dated the day of the close last_equity is from, it was
    dropped as before that close, although booked after it: a withdrawal at 18:00 yesterday was today's 5 % loss
    and a flatten. Its id begins with the New York time it was booked at, which places it."""
    emulator.intraday_adjustments, emulator.activity_created_at = False, False
    clock.set(clock.now().replace(hour=18))  # Monday 13:00 in New York: before its close
    exchange.move_cash(-1_000, "CSW")
    clock.set(clock.now().replace(hour=23))  # 18:00 in New York: after it
    exchange.move_cash(-5_000, "CSW")
    clock.advance(16 * 3_600)  # Tuesday 10:00: last_equity is Monday's close
    wire = raw(emulator, "GET", "/v2/account/activities").json()
    assert wire and all("created_at" not in a for a in wire)
    account = api.get_account()
    assert (account.non_trade_cash_today, account.non_trade_cash_unknown) == (-5_000, None)


def test_an_activity_that_cannot_be_placed_makes_the_days_cash_unknown(
    emulator: Emulator, api: AlpacaAPI, exchange: SimExchange, clock: ManualClock
) -> None:
    """Dated the day of the close, with no time and an id that says none: before the close it is in last_equity,
    after it cash moved since; either guess can read the whole amount as a trading loss. It is unknown."""
    import dataclasses

    emulator.intraday_adjustments, emulator.activity_created_at = False, False
    clock.set(clock.now().replace(hour=23))  # Monday 18:00 in New York
    booked = exchange.move_cash(-5_000, "CSW")
    exchange.activities[-1] = dataclasses.replace(booked, id="0f0e0d0c-0b0a-4909-8807-060504030201")
    clock.advance(16 * 3_600)  # Tuesday 10:00
    account = api.get_account()
    assert account.non_trade_cash_today is None
    assert "cannot be placed before or after the close" in (account.non_trade_cash_unknown or "")


def test_activities_are_paged_by_the_last_id(emulator: Emulator, api: AlpacaAPI, exchange: SimExchange) -> None:
    emulator.intraday_adjustments = False
    for _ in range(130):
        exchange.move_cash(1.0, "INT")
    assert api.get_account().non_trade_cash_today == 130
    pages = [r for r in emulator.requests if r.path == "/v2/account/activities"]
    assert len(pages) == 2 and pages[1].query["page_token"]


# --- errors by meaning ------------------------------------------------------------------------------------------


def submit_error(broker: SnapshotBroker, request: OrderRequest) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        broker.submit_order(request)
    return caught.value


def test_a_wash_trade_is_refused_422(broker: SnapshotBroker, exchange: SimExchange, clock: ManualClock) -> None:
    exchange.set_position("AAPL", 5, 190.0)
    ask = broker.snapshot(DataNeeds(stocks=("AAPL",))).quotes["AAPL"].ask
    broker.submit_order(OrderRequest("AAPL", "sell", "exit-1", "limit", "day", qty=5, limit_price=round(ask * 1.05, 2)))
    error = submit_error(broker, OrderRequest("AAPL", "buy", "entry-1", qty=1))  # would trade with our own sell
    assert (error.status, error.code, error.message) == (422, 42210000, "potential wash trade detected. use complex orders")
    assert (error.kind, error.reason) == ("rejected", "wash_trade")
    below = round(ask * 0.95, 2)  # a buy that cannot reach the sell is fine
    assert broker.submit_order(OrderRequest("AAPL", "buy", "entry-2", "limit", "day", qty=1, limit_price=below)).status


def test_a_crypto_buy_under_ten_dollars_is_refused(broker: SnapshotBroker) -> None:
    error = submit_error(broker, OrderRequest("BTC/USD", "buy", "c-5", "market", "gtc", notional=5))
    assert (error.status, error.code) == (403, 40310000)
    assert error.message == "cost basis must be >= minimal amount of order 10" and error.reason == "below_minimum"
    assert broker.submit_order(OrderRequest("BTC/USD", "buy", "c-10", "market", "gtc", notional=10)).status == "pending_new"


def test_insufficient_funds_and_forbidden_are_told_apart(broker: SnapshotBroker, exchange: SimExchange) -> None:
    import dataclasses

    poor = submit_error(broker, OrderRequest("AAPL", "buy", "big-1", qty=100_000))
    assert (poor.status, poor.message, poor.reason) == (403, "insufficient buying power", "insufficient_funds")
    short = submit_error(broker, OrderRequest("AAPL", "sell", "s-1", qty=1))
    assert (short.message, short.reason) == ("account is not allowed to short", "forbidden")
    exchange.flags = dataclasses.replace(exchange.flags, crypto_status="INACTIVE")
    crypto = submit_error(broker, OrderRequest("BTC/USD", "buy", "c-1", "market", "gtc", notional=50))
    assert (crypto.status, crypto.code, crypto.reason) == (403, 40310000, "forbidden")


def test_bad_keys_are_401_on_trading_and_403_on_data(emulator: Emulator, clock: ManualClock) -> None:
    from engine.brokers.ratelimit import TokenBucket

    wrong = AlpacaAPI("PKWRONGKEY000000", "wrongsecret00000000", paper=True, api_base_url=emulator.url,
                      data_base_url=emulator.url, timeout_seconds=2, bucket=TokenBucket(190, clock))  # fmt: skip
    with pytest.raises(BrokerError) as trading:
        wrong.get_account()
    with pytest.raises(BrokerError) as data:
        wrong.get_stock_quotes(["AAPL"])
    assert (trading.value.status, trading.value.code, trading.value.reason) == (401, 40110000, "unauthorized")
    assert (data.value.status, data.value.code, data.value.message) == (403, None, "forbidden.")
    assert (data.value.kind, data.value.reason) == ("unauthorized", "unauthorized")


def test_the_emulator_answers_429_past_its_budget(emulator: Emulator) -> None:
    emulator.rate_limit = 2
    answers = [raw(emulator, "GET", "/v2/clock") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == 42910000 and answers[2].headers["X-RateLimit-Remaining"] == "0"


# the 403 variant of a wash-trade refusal, as reported beside alpaca-java #145's 422 one
WASH_TRADE_403 = (
    '{"code":40310000,"message":"potential wash trade detected. use complex orders",'
    '"reject_reason":"opposite side market/stop order exists"}'
)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(status=429, body='{"code":42910000,"message":"rate limit exceeded"}'), "rate_limited"),
        (Fault(status=503, body='{"message":"service unavailable"}'), "server_error"),
        (Fault(status=403, body='{"message": "forbidden."}'), "unauthorized"),  # Alpaca-API #228: wrong key headers
        (Fault(status=403, body=WASH_TRADE_403), "wash_trade"),
        (Fault(status=403, body='{"code":40310100,"message":"trade denied due to pattern day trading protection"}'), "forbidden"),
        (Fault(status=403, body='{"code":40310000,"message":"insufficient balance for USD"}'), "insufficient_funds"),
        (Fault(status=422, body='{"code":42210000,"message":"notional amount must be >= 1.00"}'), "below_minimum"),
    ],
    ids=["429", "503", "403-forbidden", "403-wash", "403-pdt", "403-balance", "422-notional"],
)
def test_each_refusal_is_classified_through_the_adapter(
    broker: SnapshotBroker, emulator: Emulator, fault: Fault, reason: str
) -> None:
    emulator.faults.append(Fault(**{**fault.__dict__, "path_prefix": "/v2/orders", "method": "POST"}))
    assert submit_error(broker, OrderRequest("AAPL", "buy", "x-1", qty=1)).reason == reason
