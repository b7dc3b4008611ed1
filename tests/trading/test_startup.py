"""Before a run starts: the broker accepts the keys, and every configured symbol exists and trades."""

from __future__ import annotations

import subprocess

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.config.loader import load_config
from engine.core.clock import SystemClock
from engine.trading.startup import check_broker
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import _emulator_env, command


def test_every_symbol_is_checked_and_each_failure_names_its_bot(project: ProjectCopy, clock) -> None:
    exchange = SimExchange(clock)
    exchange.set_asset("AAPL", exists=False)
    exchange.set_asset("SPY", status="inactive", tradable=False)
    exchange.set_asset("BTC/USD", fractionable=False)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        problems = check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots)
    assert problems == [
        "mom_AAPL: 'AAPL' is not a symbol the broker knows",
        "opt_core: 'SPY' is not tradable at the broker (status inactive, tradable False)",
        "crypto_core: 'BTC/USD' cannot be traded in fractions, which this bot's sizing needs",
    ]


def test_a_good_config_starts(project: ProjectCopy, clock) -> None:
    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:
        assert check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots) == []


def test_bad_keys_at_start_are_a_clear_error_and_a_non_zero_exit(project: ProjectCopy) -> None:
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {**_emulator_env(emulator), "ALPACA_SECRET": "not-the-secret-at-all-0123456789"}
        done = subprocess.run(
            command(project, "run", "--broker", "alpaca", "--once"), capture_output=True, text=True, cwd=project.root, env=env, timeout=120
        )
    assert done.returncode == 1, done.stderr
    assert "the broker refused the API keys" in done.stderr and "Traceback" not in done.stderr
    assert not (project.root / "state").exists()  # refused before anything was written


def test_a_symbol_of_another_asset_class_than_its_bot_trades_is_refused(project: ProjectCopy, clock) -> None:
    """`BTCUSD` is a ticker to the schema (capital letters) and, to Alpaca, the old spelling of the pair BTC/USD:
    /v2/assets/BTCUSD answers the crypto asset, which exists and trades. A MomentumBot (or the OptionsBot's
    underlying) given it passed the start-up check and ran as a stock bot on a coin: stock quotes that never come,
    orders with a stock's time in force. The asset's class must be the one its bot trades."""
    project.replace("config/bots.yaml", "ticker: AAPL", "ticker: BTCUSD")
    project.replace("config/bots.yaml", "tickers: [SPY, QQQ]", "tickers: [SPY, ETHUSD]")
    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:
        problems = check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots)
    assert problems == [
        "mom_AAPL: 'BTCUSD' is a crypto asset at the broker (BTC/USD), but a momentum bot trades stocks: give it "
        "a stock's ticker, or trade the pair with the cryptobot",
        "opt_core: 'ETHUSD' is a crypto asset at the broker (ETH/USD), but an options bot trades stocks' options: "
        "give it a stock's ticker, or trade the pair with the cryptobot",
    ]
