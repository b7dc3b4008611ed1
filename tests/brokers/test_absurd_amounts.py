"""Answers whose every figure agrees with every other, and whose size no account has: an equity of 1e300, a position
of 1e15 shares. Each figure is a finite number and the identities hold (equity = cash + market values, market
value = qty x price), so only their size says they are junk. Read as money, an equity of 1e300 grew the budgets
and the room with it, and the bots sent orders for 2.5e297 shares of AAPL and 4e296 option contracts."""

from __future__ import annotations

from typing import Any

import pytest

from engine.brokers.alpaca import MAX_USD, AlpacaAPI
from engine.brokers.base import BrokerError, OrderRequest
from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig

ACCOUNT, POSITIONS, ORDERS, QUOTES = "/v2/account", "/v2/positions", "/v2/orders", "/v2/stocks/quotes/latest"
HUGE = "1" + "0" * 300  # 1e300, spelt as Alpaca spells money: a plain decimal string
RICH = {field: HUGE for field in ("equity", "cash", "last_equity", "buying_power", "regt_buying_power",
                                  "non_marginable_buying_power", "options_buying_power", "portfolio_value")}  # fmt: skip


def bad(call: Any) -> BrokerError:
    with pytest.raises(BrokerError) as caught:
        call()
    assert caught.value.kind == "bad_response", caught.value
    return caught.value


@pytest.mark.parametrize(
    "patch",
    [
        RICH,
        {"buying_power": HUGE},
        {"non_marginable_buying_power": "-" + HUGE},
        {"intraday_adjustments": "2000000000000"},
    ],
    ids=["rich", "buying_power", "non_marginable", "adjustments"],
)
def test_an_account_past_a_trillion_dollars_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, patch: dict[str, str]) -> None:
    emulator.faults.append(Fault(path_prefix=ACCOUNT, patch=patch))
    assert "USD, past 1e+12" in bad(api.get_account).message
    assert api.get_account().equity < MAX_USD  # the next answer is read


def test_a_position_of_1e15_shares_every_figure_consistent_is_a_bad_answer(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange
) -> None:
    exchange.set_position("AAPL", 3, 190.0)
    good = api.get_positions()
    patch = {"*.qty": "1000000000000000", "*.market_value": "190000000000000000", "*.cost_basis": "190000000000000000",
             "*.unrealized_pl": "0"}  # fmt: skip
    emulator.faults.append(Fault(path_prefix=POSITIONS, patch=patch))
    assert "AAPL's market_value" in bad(api.get_positions).message
    assert api.get_positions() == good


def test_a_contract_worth_nothing_held_by_the_quadrillion_is_a_bad_answer(
    api: AlpacaAPI, emulator: Emulator, exchange: SimExchange
) -> None:
    """Priced at 0 (an option may be), its market value is 0 whatever its qty: its cost still says what it is."""
    exchange.set_position("SPY261204C00500000", 2, 5.0)
    patch = {"*.qty": "1000000000000000", "*.current_price": "0", "*.market_value": "0"}
    emulator.faults.append(Fault(path_prefix=POSITIONS, patch=patch))
    assert "cost" in bad(api.get_positions).message


@pytest.mark.parametrize(
    "patch",
    [
        {"*.limit_price": "2000000000000"},
        {"*.qty": "10000000000", "*.limit_price": "1000"},  # each readable, together ten trillion dollars
        {"*.status": "partially_filled", "*.filled_qty": "1", "*.filled_avg_price": "2000000000000"},
    ],
)
def test_an_order_past_a_trillion_dollars_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator, patch: dict[str, str]) -> None:
    api.submit_order(OrderRequest("MSFT", "buy", "rest-1", "limit", "day", qty=1, limit_price=1.0))
    emulator.faults.append(Fault(path_prefix=ORDERS, method="GET", patch=patch))
    assert "past 1e+12" in bad(api.get_open_orders).message


def test_a_quote_past_a_trillion_dollars_is_a_bad_answer(api: AlpacaAPI, emulator: Emulator) -> None:
    emulator.faults.append(Fault(path_prefix=QUOTES, patch={"quotes.AAPL.ap": 1e300}))
    assert "AAPL's ask" in bad(lambda: api.get_stock_quotes(["AAPL", "SPY"])).message
    assert api.get_stock_quotes(["AAPL"])["AAPL"].ask < MAX_USD


def test_an_account_of_1e300_dollars_halts_and_no_order_is_sent(project: ProjectCopy, clock: ManualClock) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        emulator.faults.append(Fault(path_prefix=ACCOUNT, patch=RICH, times=0))
        rig.ticks(400)  # the bots entered within this many ticks when the account was read
        assert [r.body for r in emulator.requests if r.method in ("POST", "DELETE")] == []
        (halt, *_) = rig.store.halts("system")
        assert "the broker's answer could not be read (account:" in halt.reason and "past 1e+12" in halt.reason
