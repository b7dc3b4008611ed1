"""Crypto entries meet the pair's rules (issue 14, item 11): limit prices on the pair's price increment, read
from `/v2/assets`, and no USD-quoted buy under 10 USD is ever sent (Alpaca would refuse it)."""

from __future__ import annotations

from decimal import Decimal

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.core.clock import ManualClock
from engine.core.store import OrderRow
from engine.trading.universe import crypto_assets
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig


def crypto_entries(rig: Rig) -> list[OrderRow]:
    return [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]


def on_increment(price: float, step: float) -> bool:
    return Decimal(repr(price)) % Decimal(repr(step)) == 0


def test_the_pairs_rules_are_read_from_the_broker(rig: Rig) -> None:
    assets = crypto_assets(rig.engine.broker, ("BTC/USD", "ETH/USD"))
    assert set(assets) == {"BTC/USD", "ETH/USD"}
    assert assets["BTC/USD"].price_increment == 1.0 and assets["ETH/USD"].price_increment == 0.1
    assert crypto_assets(rig.engine.broker, ()) == {}


def test_limit_prices_sit_on_the_pair_s_price_increment(rig: Rig) -> None:
    rig.until(lambda r: len(crypto_entries(r)) >= 2)
    assets = rig.engine.assets
    assert assets is not None
    for row in crypto_entries(rig):
        assert row.limit_price is not None and on_increment(row.limit_price, assets[row.symbol].price_increment or 0), row


def test_limit_prices_through_alpaca_py(project: ProjectCopy, clock: ManualClock) -> None:
    exchange = SimExchange(clock, seed=7)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        rig = make_rig(project, clock, broker=SnapshotBroker(make_api(emulator, clock), clock), exchange=exchange)
        rig.until(lambda r: any(row.symbol == "BTC/USD" for row in crypto_entries(r)))
        btc = [row for row in crypto_entries(rig) if row.symbol == "BTC/USD"]
        assert all(row.limit_price == int(row.limit_price or 0.5) for row in btc)  # BTC/USD's increment is 1 dollar
        assert [r for r in emulator.requests if r.path == "/v2/assets"]


def test_no_crypto_buy_under_10_usd_is_sent(project: ProjectCopy, clock: ManualClock) -> None:
    # a crypto budget of 0.05 USD sizes entries at 6.25 USD (0.75 % stop and spread): Alpaca refuses those
    project.replace("config/bots.yaml", "crypto_bucket_pct_of_daily_risk: 25", "crypto_bucket_pct_of_daily_risk: 0.005")
    project.replace("config/bots.yaml", "per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 0")
    rig = make_rig(project, clock)
    rig.ticks(300)
    assert crypto_entries(rig) == []
    assert any(e["bot"] == "crypto_core" and e["failed"] == ["size"] for e in rig.events("entry_blocked"))
    assert [r for r in rig.store.orders() if r.purpose == "entry"]  # the other bots' entries went out
