"""The configuration as typed, immutable objects: the only form of config the rest of the engine reads.

Field names are the YAML keys exactly (a test checks them against the schemas), so a key in the user's file,
a property in the schema and an attribute here are always the same word. Defaults exist only for keys the
project added to the seed's files; every seed key is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

EMPTY: Mapping[str, Any] = MappingProxyType({})


# --- settings.yaml -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSettings:
    timezone: str
    log_path: str
    state_db_path: str


@dataclass(frozen=True)
class RunnerSettings:
    loop_interval_seconds: float


@dataclass(frozen=True)
class SafetySettings:
    fail_closed: bool
    allow_budget_fallback: bool
    global_cooldown_minutes: int


@dataclass(frozen=True)
class RiskSettings:
    global_max_daily_loss_pct: float
    max_orders_per_minute: int


@dataclass(frozen=True)
class ReferenceSymbols:
    """Per market, the symbol whose quote says whether the feed is alive ("": every watched symbol of the market)."""

    stocks: str = ""
    crypto: str = ""


@dataclass(frozen=True)
class HealthSettings:
    max_price_staleness_seconds: float
    max_api_failures_in_window: int
    api_failure_window_seconds: float
    max_spread_pct: float = 1.0
    reference_symbols: ReferenceSymbols = field(default_factory=ReferenceSymbols)
    max_signal_seconds: float = 5.0  # a bot's signal calls in a tick past it are stopped under `run` (watchdog.py)


@dataclass(frozen=True)
class BrokerSettings:
    name: Literal["auto", "sim", "alpaca"] = "auto"
    request_timeout_seconds: float = 10.0
    max_requests_per_minute: int = 190  # the trading API's budget
    max_data_requests_per_minute: int = 190  # the market-data API's, a separate one (reference §7)
    option_chain_cache_seconds: float = 60.0
    clock_cache_seconds: float = 30.0
    stock_feed: str = "iex"
    symbols_per_request: int = 100


@dataclass(frozen=True)
class OptionsSettings:
    feed: Literal["indicative", "opra"] = "indicative"


@dataclass(frozen=True)
class SimSettings:
    seed: int = 7
    starting_cash: float = 100_000.0
    start: str = ""


@dataclass(frozen=True)
class AlertSettings:
    """Notifications through apprise (engine/operator/alerts.py). `urls_env` names environment variables or .env
    keys that hold the URLs: a URL carries its service's token, so it never sits in this file in clear."""

    enabled: bool = False
    urls_env: tuple[str, ...] = ()
    events: tuple[str, ...] = ("halt", "resume", "loss_warning", "broker_error", "exit_waiting", "daily_summary")
    loss_warning_pct_of_limit: float = 80.0
    heartbeat_minutes: float = 60.0
    max_attempts: int = 5
    retry_backoff_seconds: float = 2.0
    queue_size: int = 100


@dataclass(frozen=True)
class Settings:
    system: SystemSettings
    runner: RunnerSettings
    safety: SafetySettings
    risk: RiskSettings
    health: HealthSettings
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    options: OptionsSettings = field(default_factory=OptionsSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)


# --- bots.yaml ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillConditions:
    api_failure_halt: bool
    data_stale_halt: bool
    max_daily_loss_halt: bool
    anomaly_halt: bool


@dataclass(frozen=True)
class ExitBotConfig:
    enabled: bool
    cooloff_minutes: int
    kill_conditions: KillConditions


@dataclass(frozen=True)
class Buckets:
    momentum_bucket_pct_of_daily_risk: float
    options_bucket_pct_of_daily_risk: float
    crypto_bucket_pct_of_daily_risk: float


@dataclass(frozen=True)
class Guardrails:
    per_bot_min_pct_of_daily_risk: float
    per_bot_max_pct_of_daily_risk: float


@dataclass(frozen=True)
class PortfolioBotConfig:
    enabled: bool
    cash_reserve_pct: float
    buckets: Buckets
    guardrails: Guardrails


@dataclass(frozen=True)
class Session:
    trade_start: str
    trade_end: str
    manage_until: str


@dataclass(frozen=True)
class BotRisk:
    max_trades_per_day: int
    max_concurrent_positions: int


@dataclass(frozen=True)
class Exits:
    stop_loss_pct: float
    take_profit_pct: float
    time_stop_minutes: int


@dataclass(frozen=True)
class Signal:
    mode: str
    params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class MomentumBotConfig:
    bot_id: str
    enabled: bool
    ticker: str
    session: Session
    risk: BotRisk
    exits: Exits
    signal: Signal


@dataclass(frozen=True)
class OptionsExits:
    take_profit_pct: float
    stop_loss_pct: float
    time_stop_minutes: int
    flatten_before_close_minutes: int


@dataclass(frozen=True)
class ChainRules:
    dte_min: int
    dte_max: int
    delta_min: float
    delta_max: float
    max_quote_age_seconds: float = 120.0
    max_spread_pct: float = 10.0


@dataclass(frozen=True)
class OptionsBotConfig:
    enabled: bool
    bot_id: str
    tickers: tuple[str, ...]
    session: Session
    risk: BotRisk
    exits: OptionsExits
    chain_rules: ChainRules
    signal: Signal = field(default_factory=lambda: Signal(mode="placeholder_options_v1"))


@dataclass(frozen=True)
class CryptoExecution:
    order_type: Literal["market", "limit"]
    tif: Literal["gtc", "ioc"]
    use_notional: bool
    default_notional_usd: float


@dataclass(frozen=True)
class CryptoBotConfig:
    enabled: bool
    bot_id: str
    pairs: tuple[str, ...]
    session: Session
    execution: CryptoExecution
    risk: BotRisk
    exits: Exits
    signal: Signal


@dataclass(frozen=True)
class BotsConfig:
    exitbot: ExitBotConfig
    portfoliobot: PortfolioBotConfig
    momentum_bots: tuple[MomentumBotConfig, ...]
    optionsbot: OptionsBotConfig
    cryptobot: CryptoBotConfig


TradingBotConfig = MomentumBotConfig | OptionsBotConfig | CryptoBotConfig
