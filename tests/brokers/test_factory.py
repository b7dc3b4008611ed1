"""Choosing the broker and reading the environment: paper unless told twice, no silent empty base URL."""

from __future__ import annotations

import pytest

from engine.brokers.base import BrokerError
from engine.brokers.factory import alpaca_environment, choose_broker, read_environment
from engine.config.loader import load_config
from engine.paths import PROJECT_ROOT

SETTINGS = load_config(PROJECT_ROOT / "config").settings
KEYS = {"ALPACA_KEY": "PKTESTKEY0123456789", "ALPACA_SECRET": "secret0123456789"}


def test_auto_is_sim_without_keys_and_says_so() -> None:
    name, why = choose_broker(None, SETTINGS, {})
    assert name == "sim" and "no Alpaca keys" in why
    assert choose_broker(None, SETTINGS, KEYS)[0] == "alpaca"
    assert choose_broker("sim", SETTINGS, KEYS)[0] == "sim"


@pytest.mark.parametrize(
    ("paper_value", "live_flag", "outcome"),
    [
        (None, False, "paper"),
        ("true", False, "paper"),
        ("false", False, "paper"),  # the environment alone is not enough
        ("false", True, "live"),
        ('"False"', True, "live"),  # quoted and capitalised, as .env files often are
        (None, True, "error"),  # the flag alone is refused
        ("true", True, "error"),
    ],
)
def test_live_needs_both_the_environment_and_the_flag(paper_value: str | None, live_flag: bool, outcome: str) -> None:
    env = {**KEYS, **({"ALPACA_PAPER": paper_value} if paper_value is not None else {})}
    if outcome == "error":
        with pytest.raises(BrokerError):
            alpaca_environment(env, live_flag)
    else:
        assert alpaca_environment(env, live_flag).paper is (outcome == "paper")


def test_live_flag_without_alpaca_paper_false_is_refused() -> None:
    with pytest.raises(BrokerError) as caught:
        alpaca_environment({**KEYS, "ALPACA_PAPER": "true"}, live_flag=True)
    assert caught.value.kind == "config"


def test_base_urls_lose_trailing_slashes_and_empty_ones_are_errors() -> None:
    env = alpaca_environment(
        {**KEYS, "ALPACA_API_BASE_URL": "http://127.0.0.1:9/", "ALPACA_DATA_BASE_URL": "http://127.0.0.1:9"}, False
    )
    assert (env.api_base_url, env.data_base_url) == ("http://127.0.0.1:9", "http://127.0.0.1:9")
    with pytest.raises(BrokerError) as caught:
        alpaca_environment({**KEYS, "ALPACA_API_BASE_URL": ""}, False)
    assert caught.value.kind == "config" and "empty" in str(caught.value)


def test_missing_keys_are_a_config_error() -> None:
    with pytest.raises(BrokerError) as caught:
        alpaca_environment({"ALPACA_KEY": "x"}, False)
    assert caught.value.kind == "config"


def test_env_file_is_read_and_the_environment_wins(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('ALPACA_KEY="fromfile"\nALPACA_SECRET="filesecret"\n', encoding="utf-8")
    monkeypatch.delenv("ALPACA_KEY", raising=False)
    monkeypatch.setenv("ALPACA_SECRET", "fromenv")
    env = read_environment(env_file)
    assert (env["ALPACA_KEY"], env["ALPACA_SECRET"]) == ("fromfile", "fromenv")


def test_the_options_feed_is_indicative_unless_the_settings_say_opra() -> None:
    from types import SimpleNamespace

    from engine.brokers.factory import options_feed

    assert options_feed(SETTINGS) == "indicative"
    assert options_feed(SimpleNamespace(options=SimpleNamespace(feed="opra"))) == "opra"  # type: ignore[arg-type]
