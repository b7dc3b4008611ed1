"""Every bad-config case is rejected with the right file, line and key path (one case each)."""

from __future__ import annotations

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.loader import load_config
from engine.paths import PROJECT_ROOT
from engine.rules.book import load_rules
from tests.conftest import ProjectCopy

SIGNALS = load_rules(PROJECT_ROOT / "rules").signal_specs()


def problems_after(project: ProjectCopy, file: str, old: str, new: str, count: int = 1) -> list[Problem]:
    project.replace(f"config/{file}", old, new, count)
    with pytest.raises(ConfigError) as caught:
        load_config(project.config, SIGNALS)
    return caught.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def test_shipped_config_loads(project: ProjectCopy) -> None:
    config = load_config(project.config, SIGNALS)
    assert [b.bot_id for b in config.bots.momentum_bots] == ["mom_AAPL", "mom_TSLA"]
    assert config.bots.cryptobot.pairs == ("BTC/USD", "ETH/USD")
    assert config.settings.broker.name == "auto"  # an added key takes its default


def test_time_that_is_not_hhmm(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", 'trade_start: "06:35"', 'trade_start: "25:00"'))
    assert (p.file.endswith("config/bots.yaml"), p.line, p.col) == (True, 26, 20)
    assert p.path == "momentum_bots[0].session.trade_start"
    assert p.message == "'25:00' is not a time of day (HH:MM)"
    assert str(p).endswith("bots.yaml:26:20: momentum_bots[0].session.trade_start: '25:00' is not a time of day (HH:MM)")


def test_duplicate_bot_ids(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "bot_id: mom_TSLA", "bot_id: mom_AAPL"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "enabled: false") - 1, "momentum_bots[1].bot_id")
    assert "already used (line 22)" in p.message


def test_trade_end_before_trade_start(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", 'trade_end: "09:50"', 'trade_end: "06:00"'))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", '"06:00"'), "optionsbot.session.trade_end")


def test_manage_until_before_trade_end(project: ProjectCopy) -> None:
    problems = problems_after(project, "bots.yaml", 'manage_until: "12:55"', 'manage_until: "09:00"')
    p = only(problems)
    assert (p.line, p.path) == (28, "momentum_bots[0].session.manage_until")


def test_buckets_over_100(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "options_bucket_pct_of_daily_risk: 50", "options_bucket_pct_of_daily_risk: 60"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "buckets:"), "portfoliobot.buckets")
    assert "110" in p.message


def test_guardrail_min_above_max(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 30"))
    line = project.line_of("config/bots.yaml", "per_bot_min")
    assert (p.line, p.path) == (line, "portfoliobot.guardrails.per_bot_min_pct_of_daily_risk")


def test_inverted_dte_range(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "dte_min: 7", "dte_min: 60"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "dte_min"), "optionsbot.chain_rules.dte_min")


@pytest.mark.parametrize("ticker", ["BRK.B", "BF.A"])
def test_an_options_underlying_with_a_share_class_is_refused_at_its_place(project: ProjectCopy, ticker: str) -> None:
    """The OCC root of BRK.B's contracts is not in the Alpaca reference; the simulator named them BRK.B261204C...,
    which the engine took for a share. Refused rather than guessed."""
    p = only(problems_after(project, "bots.yaml", "tickers: [SPY, QQQ]", f"tickers: [SPY, {ticker}]"))
    assert (p.path, p.line) == ("optionsbot.tickers[1]", project.line_of("config/bots.yaml", ticker)), p
    assert p.message.startswith(f"'{ticker}' is a share class: ")


def test_inverted_delta_range(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "delta_min: 0.25", "delta_min: 0.75"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "delta_min"), "optionsbot.chain_rules.delta_min")


def test_unknown_timezone_with_suggestion(project: ProjectCopy) -> None:
    p = only(problems_after(project, "settings.yaml", "America/Los_Angeles", "America/Los_Angelos"))
    assert (p.file.endswith("settings.yaml"), p.line, p.col, p.path) == (True, 2, 13, "system.timezone")
    assert "did you mean 'America/Los_Angeles'" in p.message


def test_signal_mode_nothing_implements(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", '"placeholder_crypto_momo_v1"', '"placeholder_crypto_momo_v2"'))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "momo_v2"), "cryptobot.signal.mode")
    assert "did you mean 'placeholder_crypto_momo_v1'" in p.message


def test_signal_for_another_kind(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", '"placeholder_crypto_momo_v1"', '"placeholder_momentum_v1"'))
    assert p.path == "cryptobot.signal.mode" and "not crypto bots" in p.message


def test_undeclared_signal_param(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "params: {}", "params: {lookbak_ticks: 5}"))
    assert p.path == "momentum_bots[0].signal.params.lookbak_ticks"


@pytest.mark.parametrize(
    ("file", "old", "new", "path"),
    [
        ("bots.yaml", "max_trades_per_day: 5", "max_trades_per_day: 2.5", "optionsbot.risk.max_trades_per_day"),
        ("bots.yaml", "max_trades_per_day: 5", "max_trades_per_day: 5.0", "optionsbot.risk.max_trades_per_day"),
        ("settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 10.5", "risk.max_orders_per_minute"),
    ],
)
def test_integers_where_integers_are_meant(project: ProjectCopy, file: str, old: str, new: str, path: str) -> None:
    p = only(problems_after(project, file, old, new))
    assert (p.line, p.path) == (project.line_of(f"config/{file}", new), path)
    assert p.message.endswith("is not a whole number")


@pytest.mark.parametrize(
    ("file", "old", "new", "path"),
    [
        ("bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: -0.50", "momentum_bots[0].exits.stop_loss_pct"),
        ("bots.yaml", "default_notional_usd: 50", "default_notional_usd: 0", "cryptobot.execution.default_notional_usd"),
        ("settings.yaml", "loop_interval_seconds: 5", "loop_interval_seconds: 0", "runner.loop_interval_seconds"),
        (
            "settings.yaml",
            "api_failure_window_seconds: 60",
            "api_failure_window_seconds: -1",
            "health.api_failure_window_seconds",
        ),
    ],
)
def test_positive_percentages_and_intervals(project: ProjectCopy, file: str, old: str, new: str, path: str) -> None:
    p = only(problems_after(project, file, old, new))
    assert (p.line, p.path) == (project.line_of(f"config/{file}", new), path)


def test_misspelt_key_is_an_error_at_the_key(project: ProjectCopy) -> None:
    problems = problems_after(project, "bots.yaml", "stop_loss_pct: 0.60", "stop_los_pct: 0.60")
    unknown = [p for p in problems if "unknown key" in p.message]
    assert len(unknown) == 1 and len(problems) == 2  # the misspelling, and the key it was meant to be is missing
    p = unknown[0]
    line = project.line_of("config/bots.yaml", "stop_los_pct")
    assert (p.line, p.col, p.path) == (line, 7, "momentum_bots[1].exits.stop_los_pct")
    assert "did you mean 'stop_loss_pct'" in p.message


def test_fail_closed_cannot_be_turned_off(project: ProjectCopy) -> None:
    p = only(problems_after(project, "settings.yaml", "fail_closed: true", "fail_closed: false"))
    assert p.path == "safety.fail_closed" and p.message.startswith("false must be true")


def test_yaml_syntax_error_names_file_and_line(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "tickers: [SPY, QQQ]", "tickers: [SPY, QQQ"))
    assert p.file.endswith("bots.yaml") and p.line > 0 and "YAML syntax error" in p.message


def test_duplicate_yaml_key_is_an_error(project: ProjectCopy) -> None:
    p = only(problems_after(project, "settings.yaml", "  fail_closed: true\n", "  fail_closed: true\n  fail_closed: true\n"))
    assert p.file.endswith("settings.yaml") and p.line == 11 and "duplicate" in p.message


def test_all_errors_at_once_sorted_by_file_and_line(project: ProjectCopy) -> None:
    project.replace("config/settings.yaml", "max_orders_per_minute: 10", "max_orders_per_minute: 0")
    project.replace("config/bots.yaml", "dte_max: 45", "dte_max: 4.5")
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "6:35"')
    with pytest.raises(ConfigError) as caught:
        load_config(project.config, SIGNALS)
    problems = caught.value.problems
    assert [p.path for p in problems] == [
        "momentum_bots[0].session.trade_start",
        "optionsbot.chain_rules.dte_max",
        "risk.max_orders_per_minute",
    ]
    assert problems == sorted(problems)


# --- keys added for issue 14: defaults when absent, validated when present ----------------------------------


def test_the_seed_files_without_the_added_keys_take_the_defaults(project: ProjectCopy) -> None:
    for line in ("  max_spread_pct: 1.0", "options:", "  feed: indicative", "    max_quote_age_seconds: 120", "    max_spread_pct: 10"):
        file = "bots.yaml" if line.startswith("    ") else "settings.yaml"
        text = (project.config / file).read_text()
        kept = [x for x in text.splitlines(keepends=True) if not x.startswith(line)]
        assert len(kept) == len(text.splitlines()) - 1, line
        (project.config / file).write_text("".join(kept))
    config = load_config(project.config, SIGNALS)
    health = config.settings.health
    assert (health.max_spread_pct, health.reference_symbols.stocks, health.reference_symbols.crypto) == (1.0, "", "")
    assert config.settings.options.feed == "indicative"
    rules = config.bots.optionsbot.chain_rules
    assert (rules.max_quote_age_seconds, rules.max_spread_pct) == (120.0, 10.0)


def test_the_added_keys_are_read(project: ProjectCopy) -> None:
    project.replace("config/settings.yaml", "  # reference_symbols: {stocks: SPY}", "  reference_symbols: {stocks: SPY, crypto: BTC/USD}")
    project.replace("config/settings.yaml", "feed: indicative", "feed: opra")
    settings = load_config(project.config, SIGNALS).settings
    assert (settings.health.reference_symbols.stocks, settings.health.reference_symbols.crypto) == ("SPY", "BTC/USD")
    from engine.brokers.factory import options_feed

    assert options_feed(settings) == "opra"  # what the Alpaca adapter sends on every option data request


@pytest.mark.parametrize(
    ("file", "old", "new", "path", "message"),
    [
        ("settings.yaml", "max_spread_pct: 1.0", "max_spread_pct: 0", "health.max_spread_pct", "less than or equal to the minimum"),
        ("settings.yaml", "feed: indicative", "feed: sip", "options.feed", "is not one of"),
        ("settings.yaml", "  # reference_symbols: {stocks: SPY}", "  reference_symbols: {stocks: BTC/USD}", "health.reference_symbols.stocks", "is not a ticker"),
        ("settings.yaml", "  # reference_symbols: {stocks: SPY}", "  reference_symbols: {crypto: SPY}", "health.reference_symbols.crypto", "is not a crypto pair"),
        ("settings.yaml", "  # reference_symbols: {stocks: SPY}", "  reference_symbols: {stock: SPY}", "health.reference_symbols.stock", "unknown key"),
        ("bots.yaml", "max_quote_age_seconds: 120", "max_quote_age_seconds: 0", "optionsbot.chain_rules.max_quote_age_seconds", "less than or equal to the minimum"),
        ("bots.yaml", "    max_spread_pct: 10", "    max_spread_pct: -1", "optionsbot.chain_rules.max_spread_pct", "less than or equal to the minimum"),
    ],
)
def test_the_added_keys_are_validated(project: ProjectCopy, file: str, old: str, new: str, path: str, message: str) -> None:
    p = only(problems_after(project, file, old, new))
    assert p.path == path and message in p.message, p
    assert p.line == project.line_of(f"config/{file}", new.strip())


def test_a_crypto_entry_under_alpaca_s_minimum_is_refused_by_validate(project: ProjectCopy) -> None:
    p = only(problems_after(project, "bots.yaml", "default_notional_usd: 50", "default_notional_usd: 5"))
    assert (p.path, p.line) == ("cryptobot.execution.default_notional_usd", project.line_of("config/bots.yaml", "default_notional_usd"))
    assert p.message == "5 USD is under Alpaca's 10 USD minimum for a buy of BTC/USD, ETH/USD: every entry would be refused"


def test_the_crypto_minimum_applies_to_an_enabled_bot(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "default_notional_usd: 50", "default_notional_usd: 5")
    project.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', 'pairs: ["ETH/USD"]')
    project.replace("config/bots.yaml", "cryptobot:\n  enabled: true", "cryptobot:\n  enabled: false")
    load_config(project.config, SIGNALS)  # a disabled bot sends nothing


@pytest.mark.parametrize("pair", ["ETH/BTC", "SOL/USDT", "BTC/USDC"])
def test_a_pair_quoted_in_another_currency_than_usd_is_refused_at_its_place(project: ProjectCopy, pair: str) -> None:
    """ETH/BTC validated, and the CryptoBot sent it `notional: 50` (default_notional_usd, the budget, the room: all
    dollars) as 50 BTC, about 60,000 times the amount configured; its P&L and the day's loss were counted in BTC as
    dollars. Every amount the engine handles is in USD, so the pair is refused where it is written."""
    p = only(problems_after(project, "bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', f'pairs: ["BTC/USD", "{pair}"]'))
    assert (p.path, p.line) == ("cryptobot.pairs[1]", project.line_of("config/bots.yaml", pair)), p
    assert p.message == f"'{pair}' is not a crypto pair quoted in USD like BTC/USD (every amount the engine sizes, budgets and counts is in USD)"


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("", "null is not a number"),
        ("true", "true is not a number"),
        ("'15'", "'15' is not a number"),
        ("[1, 2]", "a list is not a number"),
        ("{a: 1}", "a mapping is not a number"),
    ],
)
def test_a_value_of_the_wrong_type_is_said_in_yaml_words_at_its_key(project: ProjectCopy, written: str, said: str) -> None:
    """The schema's own message spells values in Python (None, True, {'a': 1}); the user wrote YAML. A key with
    nothing after it is pointed at on its own line, not the next one."""
    new = f"max_price_staleness_seconds: {written}".rstrip()
    p = only(problems_after(project, "settings.yaml", "max_price_staleness_seconds: 15", new))
    assert p.path == "health.max_price_staleness_seconds" and p.message == said
    assert p.line == project.line_of("config/settings.yaml", new)


def _disable_stock_and_options_bots(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "bot_id: mom_AAPL\n    enabled: true", "bot_id: mom_AAPL\n    enabled: false")
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")


def test_a_zone_where_the_new_york_session_crosses_midnight_is_refused_for_stock_bots(project: ProjectCopy) -> None:
    """In Tokyo the session is 23:30-06:00: the trading date, and every daily counter and budget with it, would
    start again in the middle of it (a bot could make twice its max_trades_per_day)."""
    p = only(problems_after(project, "settings.yaml", "America/Los_Angeles", "Asia/Tokyo"))
    assert (p.file.endswith("settings.yaml"), p.line, p.col, p.path) == (True, 2, 13, "system.timezone")
    assert "crosses midnight in Asia/Tokyo (23:30-06:00 or 22:30-05:00)" in p.message
    assert "(mom_AAPL, opt_core)" in p.message  # the enabled ones; crypto trades around the clock
    _disable_stock_and_options_bots(project)
    assert load_config(project.config, SIGNALS).settings.system.timezone == "Asia/Tokyo"


def test_a_trade_window_that_never_meets_the_session_is_refused_at_its_start(project: ProjectCopy) -> None:
    """Europe/Berlin with the shipped windows: 06:35-09:30 there is hours before New York opens (15:30)."""
    problems = problems_after(project, "settings.yaml", "America/Los_Angeles", "Europe/Berlin")
    assert [(p.path, p.line) for p in problems] == [
        ("momentum_bots[0].session.trade_start", 26),
        ("optionsbot.session.trade_start", 63),
    ]  # mom_TSLA is disabled, the crypto bot trades around the clock
    assert "mom_AAPL trades 06:35-09:30 Europe/Berlin time, which never meets the New York session " in problems[0].message
    assert "(15:30-22:00 or 14:30-21:00 in Europe/Berlin)" in problems[0].message
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "15:35"', 2)
    project.replace("config/bots.yaml", 'trade_start: "06:40"', 'trade_start: "15:40"')
    project.replace("config/bots.yaml", '"09:30"', '"17:30"', 2)
    project.replace("config/bots.yaml", '"09:50"', '"17:50"')
    project.replace("config/bots.yaml", '"12:55"', '"21:55"', 3)
    assert load_config(project.config, SIGNALS).settings.system.timezone == "Europe/Berlin"


def test_a_trade_window_that_ends_at_the_open_is_refused(project: ProjectCopy) -> None:
    """America/New_York, the exchange's own zone, with the shipped windows: 06:35-09:30 ends at the open. It met
    the session only at the instant 09:30:00, where the bot armed and, a tick later, disarmed: it never entered, and
    validation had said OK. A window ending a minute after the open meets the session."""
    problems = problems_after(project, "settings.yaml", "America/Los_Angeles", "America/New_York")
    assert [(p.path, p.line) for p in problems] == [("momentum_bots[0].session.trade_start", 26)]
    assert "mom_AAPL trades 06:35-09:30 America/New_York time, which never meets the New York session" in problems[0].message
    project.replace("config/bots.yaml", 'trade_end: "09:30"', 'trade_end: "09:31"')
    assert load_config(project.config, SIGNALS).settings.system.timezone == "America/New_York"


def test_a_trade_window_of_one_instant_is_refused(project: ProjectCopy) -> None:
    """trade_start 10:00, trade_end 10:00: in_trade_window held at 10:00:00 only, where the bot armed; at the next
    tick it disarmed, so it never entered, and validation had said OK. A window a minute long is kept."""
    crypto = 'trade_start: "00:00"\n    trade_end: "23:59"'
    p = only(problems_after(project, "bots.yaml", crypto, 'trade_start: "10:00"\n    trade_end: "10:00"'))
    assert p.path == "cryptobot.session.trade_end" and "a window of one instant" in p.message
    project.replace("config/bots.yaml", 'trade_end: "10:00"', 'trade_end: "10:01"')
    assert load_config(project.config, SIGNALS).bots.cryptobot.session.trade_end == "10:01"


def test_a_session_closing_at_local_midnight_is_met_before_it(project: ProjectCopy) -> None:
    """Moscow: 17:30-00:00 in the northern winter; a window of 23:35-23:50 trades in it."""
    _disable_stock_and_options_bots(project)
    project.replace("config/bots.yaml", "bot_id: mom_AAPL\n    enabled: false", "bot_id: mom_AAPL\n    enabled: true")
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "23:35"')
    project.replace("config/bots.yaml", 'trade_end: "09:30"', 'trade_end: "23:50"')
    project.replace("config/bots.yaml", 'manage_until: "12:55"', 'manage_until: "23:55"')
    project.replace("config/bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 20")  # 23:35-23:55 holds no more
    project.replace("config/settings.yaml", "America/Los_Angeles", "Europe/Moscow")
    assert load_config(project.config, SIGNALS).bots.momentum_bots[0].session.trade_start == "23:35"


def test_an_options_window_entirely_within_the_flatten_before_the_close_is_refused(project: ProjectCopy) -> None:
    """Entries within exits.flatten_before_close_minutes of the close are refused (an entry would be flattened at
    once). 380 minutes before a 13:00 close is 06:40 Los Angeles time: the shipped 06:40-09:50 window would never
    enter, and validation said OK; the run logged one entry_blocked and traded nothing all day."""
    problems = problems_after(project, "bots.yaml", "flatten_before_close_minutes: 10", "flatten_before_close_minutes: 380")
    p = only(problems)
    assert (p.path, p.line) == ("optionsbot.exits.flatten_before_close_minutes", project.line_of("config/bots.yaml", "flatten_before"))
    assert "opt_core trades 06:40-09:50 America/Los_Angeles time, which never meets the New York session before its last" in p.message
    assert "(06:30-06:40 in America/Los_Angeles)" in p.message


def test_an_options_window_that_meets_the_session_before_the_flatten_still_validates(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "flatten_before_close_minutes: 10", "flatten_before_close_minutes: 379")
    assert load_config(project.config, SIGNALS).bots.optionsbot.exits.flatten_before_close_minutes == 379


@pytest.mark.parametrize(
    ("bot_id", "says"),
    [
        ("exitbot", "the kill switch's own id"),
        ("ExitBot", "the kill switch's own id"),
        ("system", "the system's own id"),
        ("portfolio", "the PortfolioBot's own id"),
        ("all", "what a resume of every halt is recorded under"),
        ("Total", "the name of the sum of every bot's P&L"),
    ],
)
def test_a_bot_id_the_engine_uses_itself_is_refused(project: ProjectCopy, bot_id: str, says: str) -> None:
    """A MomentumBot named `exitbot` validated: its orders carried the kill switch's prefix, and its first buy was
    taken for a flatten of a shared symbol, split among the bots holding it (none), so the fill vanished from
    its ledger. One named `system` wrote its halts, and its facts for `why`, as the whole system's."""
    p = only(problems_after(project, "bots.yaml", "bot_id: mom_AAPL", f"bot_id: {bot_id}"))
    assert (p.path, p.line) == ("momentum_bots[0].bot_id", project.line_of("config/bots.yaml", f"bot_id: {bot_id}"))
    assert f"bot id '{bot_id}' is taken by the engine" in p.message and says in p.message


def six_momentum_bots(project: ProjectCopy) -> None:
    """The shipped bots.yaml with mom_TSLA enabled and four more MomentumBots like it: 25 % / 6 = 4.17 each,
    lifted to the 5 % minimum, so with options at 25 (its max) and crypto at 25 they hold 80 % in all; with the
    options bucket's maximum raised to 50, 105 %."""
    project.replace("config/bots.yaml", "    enabled: false\n    ticker: TSLA", "    enabled: true\n    ticker: TSLA")
    text = (project.root / "config/bots.yaml").read_text(encoding="utf-8")
    start = text.index("  - bot_id: mom_TSLA")
    end = text.index("\n\n", start) + 1
    more = "".join(text[start:end].replace("TSLA", ticker) for ticker in ("MSFT", "NVDA", "AMZN", "GOOG"))
    (project.root / "config/bots.yaml").write_text(text[:end] + more + text[end:], encoding="utf-8")


def test_guardrail_minimum_lifting_the_shares_past_the_daily_risk(project: ProjectCopy) -> None:
    """Six MomentumBots share a 25 % bucket (4.17 % each), each lifted to the 5 % minimum: with options at 50 %
    and crypto at 25 %, the bots' budgets added up to 105 % of the daily risk, more than the day may lose."""
    six_momentum_bots(project)
    assert len(load_config(project.config, SIGNALS).bots.momentum_bots) == 6  # options capped at 25 by the max: 80 %
    p = only(problems_after(project, "bots.yaml", "per_bot_max_pct_of_daily_risk: 25", "per_bot_max_pct_of_daily_risk: 50"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "per_bot_min"), "portfoliobot.guardrails.per_bot_min_pct_of_daily_risk")
    assert "add up to 105 %" in p.message and "to 4.16 at most" in p.message and "mom_AAPL" in p.message, p.message
    project.replace("config/bots.yaml", "per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 4")
    load_config(project.config, SIGNALS)  # 6 x 4.17 + 50 + 25 = 100: the whole daily risk, not more


def test_a_stop_loss_of_100_percent_is_refused_at_its_place(project: ProjectCopy) -> None:
    """The engine only buys: a stop of 100 % fires once the position is worth nothing, when selling saves
    nothing. It validated, and the bot traded with its stop switched off while bots.yaml showed one."""
    p = only(problems_after(project, "bots.yaml", "stop_loss_pct: 0.30", "stop_loss_pct: 100"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "stop_loss_pct: 100"), "optionsbot.exits.stop_loss_pct")
    assert "no stop" in p.message and "below 100" in p.message, p.message


def test_a_time_stop_longer_than_trade_start_to_manage_until_is_refused(project: ProjectCopy) -> None:
    """manage_until flattens every position, and none opens before trade_start: a time stop longer than that span
    never fired (06:35-12:55 is 380 minutes), a setting silently ignored. The span itself is accepted."""
    p = only(problems_after(project, "bots.yaml", "time_stop_minutes: 25", "time_stop_minutes: 381"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "time_stop_minutes: 381"), "momentum_bots[0].exits.time_stop_minutes")
    assert "never fires" in p.message and "380 minutes at most" in p.message, p.message
    project.replace("config/bots.yaml", "time_stop_minutes: 381", "time_stop_minutes: 380")
    load_config(project.config, SIGNALS)


def test_a_crypto_time_stop_may_span_the_hour_the_clocks_repeat(project: ProjectCopy) -> None:
    """A CryptoBot trades at night: on the night the clocks go back its wall-clock window is an hour longer, so a
    time stop up to an hour past the span can fire then, and is let be; past that it is refused."""
    project.replace("config/bots.yaml", "time_stop_minutes: 240", "time_stop_minutes: 1499")
    load_config(project.config, SIGNALS)  # 00:00-23:59 is 1439 minutes, 1499 that night
    p = only(problems_after(project, "bots.yaml", "time_stop_minutes: 1499", "time_stop_minutes: 1500"))
    assert p.path == "cryptobot.exits.time_stop_minutes" and "1499 minutes at most" in p.message, p.message


def test_an_enabled_bot_whose_bucket_gives_it_nothing_is_refused(project: ProjectCopy) -> None:
    """A bucket at 0, with no guardrail minimum to lift it, gives its enabled bots a budget of 0: preflight
    `budget_known` blocked every entry, every tick, and the bot never traded while bots.yaml said enabled."""
    project.replace("config/bots.yaml", "per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 0")
    load_config(project.config, SIGNALS)
    p = only(problems_after(project, "bots.yaml", "momentum_bucket_pct_of_daily_risk: 25", "momentum_bucket_pct_of_daily_risk: 0"))
    assert (p.line, p.path) == (project.line_of("config/bots.yaml", "momentum_bucket"), "portfoliobot.buckets.momentum_bucket_pct_of_daily_risk")
    assert "mom_AAPL" in p.message and "mom_TSLA" not in p.message and "never enter" in p.message, p.message
    project.replace("config/bots.yaml", "- bot_id: mom_AAPL\n    enabled: true", "- bot_id: mom_AAPL\n    enabled: false")
    load_config(project.config, SIGNALS)  # no enabled bot in the bucket: nothing is lost


def test_a_guardrail_maximum_of_0_is_refused_while_bots_are_enabled(project: ProjectCopy) -> None:
    """per_bot_max_pct_of_daily_risk 0 clamps every share to 0: no enabled bot would ever enter."""
    project.replace("config/bots.yaml", "per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 0")
    p = only(problems_after(project, "bots.yaml", "per_bot_max_pct_of_daily_risk: 25", "per_bot_max_pct_of_daily_risk: 0"))
    assert p.path == "portfoliobot.guardrails.per_bot_max_pct_of_daily_risk"
    assert "mom_AAPL, opt_core, crypto_core" in p.message, p.message
