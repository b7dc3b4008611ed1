"""Choosing and building the broker: `sim` or `alpaca`, paper unless the user says live twice.

Keys come from the environment or `.env` (python-dotenv); the environment wins. `ALPACA_PAPER` must say
`false` (any case; spaces and quotes around it ignored) *and* the run must be given `--live` for live trading;
anything else is paper.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.brokers.base import BrokerError
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.snapshot import SnapshotBroker
from engine.config.model import Settings
from engine.core.clock import Clock


@dataclass(frozen=True)
class AlpacaEnvironment:
    key: str
    secret: str
    paper: bool
    api_base_url: str | None
    data_base_url: str | None


def read_environment(env_file: Path | None = None) -> dict[str, str]:
    """The process environment over the values in `.env` (which never overrides what is already set)."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update({k: v for k, v in os.environ.items() if k.startswith("ALPACA_")})
    return values


def keys_configured(env: Mapping[str, str]) -> bool:
    return bool(env.get("ALPACA_KEY")) and bool(env.get("ALPACA_SECRET"))


def _base_url(env: Mapping[str, str], name: str) -> str | None:
    if name not in env:
        return None
    value = env[name].strip().rstrip("/")
    if not value:
        # The SDK would silently treat an empty override as the real paper host.
        raise BrokerError("config", f"{name} is set but empty; unset it or give a URL")
    return value


def alpaca_environment(env: Mapping[str, str], live_flag: bool) -> AlpacaEnvironment:
    if not keys_configured(env):
        raise BrokerError("config", "ALPACA_KEY and ALPACA_SECRET are needed for --broker alpaca (see .env.example)")
    paper_setting = env.get("ALPACA_PAPER", "true").strip().strip('"').lower()
    if live_flag and paper_setting != "false":
        raise BrokerError("config", "--live was given but ALPACA_PAPER is not 'false'; live trading needs both")
    live = live_flag and paper_setting == "false"
    return AlpacaEnvironment(
        key=env["ALPACA_KEY"],
        secret=env["ALPACA_SECRET"],
        paper=not live,
        api_base_url=_base_url(env, "ALPACA_API_BASE_URL"),
        data_base_url=_base_url(env, "ALPACA_DATA_BASE_URL"),
    )


def choose_broker(requested: str | None, settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    """(broker name, a sentence saying why), from the flag, then settings.yaml, then whether keys exist."""
    name = requested or settings.broker.name
    if name != "auto":
        return name, f"broker '{name}' ({'--broker' if requested else 'settings.yaml broker.name'})"
    if keys_configured(env):
        return "alpaca", "broker 'alpaca' (keys are configured)"
    return "sim", "broker 'sim': no Alpaca keys are configured, so the built-in simulated exchange is used"


def build_alpaca(settings: Settings, clock: Clock, env: Mapping[str, str], live_flag: bool) -> SnapshotBroker:
    from engine.brokers.alpaca import AlpacaAPI

    alpaca_env = alpaca_environment(env, live_flag)
    api = AlpacaAPI(
        alpaca_env.key,
        alpaca_env.secret,
        paper=alpaca_env.paper,
        api_base_url=alpaca_env.api_base_url,
        data_base_url=alpaca_env.data_base_url,
        timeout_seconds=settings.broker.request_timeout_seconds,
        bucket=TokenBucket(settings.broker.max_requests_per_minute, clock),
        feed=settings.broker.stock_feed,
        options_feed=options_feed(settings),
        clock=clock,
    )
    return SnapshotBroker(api, clock, settings.broker)


def options_feed(settings: Settings) -> str:
    """`options.feed` in settings.yaml: `indicative` (Alpaca's free feed, and the default) or `opra` (a paid
    subscription). Read defensively: the setting is added to the schema and model separately."""
    options = getattr(settings, "options", None)
    return str(getattr(options, "feed", None) or "indicative")


def build_sim(settings: Settings, clock: Clock):
    from engine.brokers.sim.api import SimAPI
    from engine.brokers.sim.exchange import SimExchange

    exchange = SimExchange(clock, seed=settings.sim.seed, starting_cash=settings.sim.starting_cash)
    return SnapshotBroker(SimAPI(exchange), clock, settings.broker), exchange
