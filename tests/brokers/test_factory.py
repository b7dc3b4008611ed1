"""Choosing the broker and reading the environment: paper unless told twice, no silent empty base URL."""

from __future__ import annotations

import pytest

from engine.brokers.base import BrokerError
from engine.brokers.factory import alpaca_environment, choose_broker, read_environment
from engine.config.loader import load_config
from engine.paths import PROJECT_ROOT
from tests.brokers.conftest import KEY as EMULATOR_KEY
from tests.brokers.conftest import SECRET as EMULATOR_SECRET

SETTINGS = load_config(PROJECT_ROOT / "config").settings
KEYS = {"ALPACA_KEY": "PKTESTKEY0123456789", "ALPACA_SECRET": "secret0123456789"}
LIVE_KEYS = {"ALPACA_KEY": "AKTESTKEY0123456789", "ALPACA_SECRET": "secret0123456789"}  # a live account's key id


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
    keys = LIVE_KEYS if outcome == "live" else KEYS
    env = {**keys, **({"ALPACA_PAPER": paper_value} if paper_value is not None else {})}
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


# --- hostile or careless input (the command line and the environment probed as a user would) ------------------


@pytest.mark.parametrize("paper_value", ['"false', 'false"', '""false""', "'false'", "false # live", "0", "no", ""])
def test_a_paper_setting_that_is_not_plainly_false_never_goes_live(paper_value: str) -> None:
    with pytest.raises(BrokerError) as caught:
        alpaca_environment({**KEYS, "ALPACA_PAPER": paper_value}, live_flag=True)
    assert caught.value.kind == "config" and "ALPACA_PAPER is not 'false'" in str(caught.value)
    assert alpaca_environment({**KEYS, "ALPACA_PAPER": paper_value}, live_flag=False).paper is True


@pytest.mark.parametrize("env", [{"ALPACA_KEY": KEYS["ALPACA_KEY"]}, {"ALPACA_SECRET": KEYS["ALPACA_SECRET"]},
                                 {**KEYS, "ALPACA_SECRET": ""}])  # fmt: skip
def test_one_key_without_the_other_is_refused_not_taken_for_no_keys(env: dict[str, str]) -> None:
    with pytest.raises(BrokerError) as caught:
        choose_broker(None, SETTINGS, env)
    assert "is set but" in caught.value.message and KEYS["ALPACA_SECRET"] not in str(caught.value)
    assert choose_broker("sim", SETTINGS, env)[0] == "sim"  # asked for by name: the keys do not matter


@pytest.mark.parametrize(("name", "value"), [
    ("ALPACA_KEY", "k3y"), ("ALPACA_SECRET", "s3cr"), ("ALPACA_KEY", "PKTESTKEY0123456789\n"),
    ("ALPACA_SECRET", "secret with space 0123"), ("ALPACA_SECRET", "secret0123456789é"), ("ALPACA_KEY", '"PKTESTKEY0123456789"'), ("ALPACA_SECRET", "'secret0123456789'"),
])  # fmt: skip
def test_a_key_that_cannot_be_an_alpaca_key_is_refused_without_its_value(name: str, value: str) -> None:
    """A key under 8 characters is not masked by the journal or the adapter; a newline goes into an HTTP header,
    whose error would carry it."""
    with pytest.raises(BrokerError) as caught:
        alpaca_environment({**KEYS, name: value}, live_flag=False)
    assert caught.value.kind == "config" and name in str(caught.value) and value.strip() not in str(caught.value)


def test_a_paper_run_pointed_at_the_live_host_is_refused() -> None:
    """The SDK's paper flag only picks the default host: an override at the live host would trade real money."""
    for url in ("https://api.alpaca.markets", "https://API.Alpaca.Markets./", "https://api.alpaca.markets:443/v2"):
        with pytest.raises(BrokerError) as caught:
            alpaca_environment({**KEYS, "ALPACA_API_BASE_URL": url}, live_flag=False)
        assert "live host" in str(caught.value)
    live = {**LIVE_KEYS, "ALPACA_PAPER": "false"}
    with pytest.raises(BrokerError, match="points at the paper host"):
        alpaca_environment({**live, "ALPACA_API_BASE_URL": "https://paper-api.alpaca.markets"}, live_flag=True)
    assert alpaca_environment({**live, "ALPACA_API_BASE_URL": "https://api.alpaca.markets"}, live_flag=True).paper is False
    assert alpaca_environment({**KEYS, "ALPACA_API_BASE_URL": "https://paper-api.alpaca.markets"}, False).paper is True


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1:9", "127.0.0.1:9", "http://", "http://127.0.0.1:99999",
                                 "http://user:pw@127.0.0.1:9", "http://127.0.0.1:9/?x=1", "http://127.0.0.1:9/\x00"])  # fmt: skip
def test_an_unusable_base_url_is_refused_before_any_request(url: str) -> None:
    from engine.brokers.factory import data_base_url

    for name in ("ALPACA_API_BASE_URL", "ALPACA_DATA_BASE_URL"):
        with pytest.raises(BrokerError) as caught:
            alpaca_environment({**KEYS, name: url}, live_flag=False)
        assert caught.value.kind == "config" and f"{name} is not a usable base URL" in str(caught.value)
    with pytest.raises(BrokerError):
        data_base_url({"ALPACA_DATA_BASE_URL": url})
    with pytest.raises(BrokerError):
        data_base_url({"ALPACA_DATA_BASE_URL": "  "})


def _env_file(tmp_path, monkeypatch: pytest.MonkeyPatch, content: bytes):
    for name in ("ALPACA_KEY", "ALPACA_SECRET", "ALPACA_PAPER"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("content", "line"), [
    (b'ALPACA_KEY=PKTESTKEY0123456789\nALPACA_PAPER="false\n', 2),
    (b"ALPACA_KEY=PKTESTKEY0123456789\nthis is not a line\nALPACA_PAPER=false\n", 2),
])  # fmt: skip
def test_an_env_file_line_that_cannot_be_read_refuses_the_file(tmp_path, monkeypatch, content: bytes, line: int) -> None:
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, content)
    with pytest.raises(EnvFileError) as caught:
        read_environment(path)
    assert str(caught.value).startswith(f"{path}:{line}: cannot be read") and "PKTEST" not in str(caught.value)


def test_an_alpaca_variable_given_twice_with_two_values_refuses_the_file(tmp_path, monkeypatch) -> None:
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, b"ALPACA_PAPER=true\nALPACA_PAPER=true\nOTHER=1\nOTHER=2\nALPACA_PAPER=false\n")
    with pytest.raises(EnvFileError) as caught:
        read_environment(path)
    assert str(caught.value) == f"{path}:5: ALPACA_PAPER is set again with another value (first on line 1): keep one"


def test_env_file_variants_read_as_systemd_would(tmp_path, monkeypatch) -> None:
    """CRLF, `export`, a UTF-8 BOM and quotes are read; `${VAR}` is not expanded (systemd and Docker do not)."""
    content = b'\xef\xbb\xbfexport ALPACA_KEY="PKTESTKEY0123456789"\r\nALPACA_SECRET=secret0123456789\r\nX=false\r\nALPACA_PAPER=${X}\r\n'
    env = read_environment(_env_file(tmp_path, monkeypatch, content))
    assert (env["ALPACA_KEY"], env["ALPACA_SECRET"], env["ALPACA_PAPER"]) == ("PKTESTKEY0123456789", "secret0123456789", "${X}")
    with pytest.raises(BrokerError):
        alpaca_environment(env, live_flag=True)


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling link"])
def test_an_env_file_that_is_not_a_file_is_refused_not_skipped(tmp_path, kind: str) -> None:
    import os

    from engine.brokers.factory import EnvFileError

    path = tmp_path / ".env"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would hang
    else:
        path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(EnvFileError):
        read_environment(path)
    alpaca_set = {k: v for k, v in os.environ.items() if k.startswith("ALPACA_")}
    assert read_environment(tmp_path / "absent") == alpaca_set  # no .env at all: the environment alone


@pytest.mark.parametrize("url", [
    "https://api%2ealpaca%2emarkets", "https://api%2Ealpaca.markets/", "https://%61pi.alpaca.markets",
])  # fmt: skip
def test_a_live_host_spelled_with_escapes_is_refused_as_the_client_would_reach_it(url: str) -> None:
    """The HTTP client decodes `%2e` in a host (requests prepares `https://api%2ealpaca%2emarkets` as
    `https://api.alpaca.markets`), while the paper check read the host as written: a paper run with live keys
    in .env and such a URL sent its orders to the live account without ALPACA_PAPER=false or --live."""
    for live_flag, env in ((False, KEYS), (True, {**KEYS, "ALPACA_PAPER": "false"})):
        with pytest.raises(BrokerError) as caught:
            alpaca_environment({**env, "ALPACA_API_BASE_URL": url}, live_flag=live_flag)
        assert caught.value.kind == "config" and "ALPACA_API_BASE_URL is not a usable base URL" in str(caught.value)


def test_an_emulator_url_spelled_with_escapes_is_refused_though_the_client_would_reach_it(emulator) -> None:
    """The same disagreement against the emulator on loopback, with the real alpaca-py client: the escaped host
    is the emulator to requests, so the check must judge the host the client connects to, or refuse the URL."""
    from engine.brokers.factory import build_alpaca
    from engine.core.clock import SystemClock

    port = emulator.url.rsplit(":", 1)[1]
    escaped = f"http://127%2e0%2e0%2e1:{port}"
    env = {"ALPACA_KEY": EMULATOR_KEY, "ALPACA_SECRET": EMULATOR_SECRET, "ALPACA_API_BASE_URL": escaped}
    with pytest.raises(BrokerError) as caught:
        build_alpaca(SETTINGS, SystemClock(), env, live_flag=False)
    assert caught.value.kind == "config" and "reads its host as another" in str(caught.value)
    plain = build_alpaca(SETTINGS, SystemClock(), {**env, "ALPACA_API_BASE_URL": emulator.url}, live_flag=False)
    assert plain.api.get_account().equity > 0


# --- a key id of the other account (Alpaca's live key ids start AK, paper ones PK) ------------------------------


@pytest.mark.parametrize(("env", "live_flag", "orders", "phrase"), [
    ({**LIVE_KEYS}, False, True, "ALPACA_KEY starts with AK, as a live account's key id does, but this run uses the paper account"),
    ({**LIVE_KEYS, "ALPACA_PAPER": "false"}, False, True, "the live one needs ALPACA_PAPER=false and --live"),  # one switch
    ({**LIVE_KEYS, "ALPACA_API_BASE_URL": "http://127.0.0.1:9"}, False, True, "starts with AK"),  # an override: still paper
    ({**LIVE_KEYS}, False, False, "the live one needs ALPACA_PAPER=false)"),  # `snapshot` reads the paper account
])  # fmt: skip
def test_a_key_id_of_the_other_account_is_refused_up_front(
    env: dict[str, str], live_flag: bool, orders: bool, phrase: str
) -> None:
    """A paper run with a live key id was sent to the broker (refused there at the first request, or, with a base
    URL override, the live key sent to whatever host that names): refused before anything, saying the prefix it
    judged and never the key."""
    with pytest.raises(BrokerError) as caught:
        alpaca_environment(env, live_flag, orders=orders)
    said = str(caught.value)
    assert caught.value.kind == "config" and phrase in said, said
    assert env["ALPACA_KEY"] not in said and env["ALPACA_SECRET"] not in said and "\n" not in said


def test_a_key_id_of_the_right_account_or_of_no_known_prefix_passes() -> None:
    """Only the two prefixes are judged: the emulator's keys, and any key id Alpaca may issue in another form, are
    the broker's to accept; market data (`data fetch`) is read with either account's keys."""
    assert alpaca_environment({**LIVE_KEYS, "ALPACA_PAPER": "false"}, live_flag=True).paper is False
    assert alpaca_environment(KEYS, live_flag=False).paper is True
    # a live run given a paper key id (PK) is the broker's to refuse: the user asked for live twice
    assert alpaca_environment({**KEYS, "ALPACA_PAPER": "false"}, live_flag=True).paper is False
    other = {"ALPACA_KEY": "EMULATORKEY0123", "ALPACA_SECRET": "secret0123456789"}
    assert alpaca_environment(other, live_flag=False).paper is True
    assert alpaca_environment({**other, "ALPACA_PAPER": "false"}, live_flag=True).paper is False
    assert alpaca_environment({**other, "ALPACA_KEY": "akLOWERCASE0123"}, live_flag=False).paper is True
    assert alpaca_environment(LIVE_KEYS, live_flag=False, orders=False, account=False).key == LIVE_KEYS["ALPACA_KEY"]


@pytest.mark.parametrize("line", ["ALPACA_PAPER=false # live", "ALPACA_PAPER='false'  # live", "ALPACA_PAPER=false\t#x",
                                  "export ALPACA_PAPER=\"false\" # live"])  # fmt: skip
def test_a_comment_after_an_alpaca_value_refuses_the_file(tmp_path, monkeypatch, line: str) -> None:
    """python-dotenv drops ` # live` and read `false`; systemd's EnvironmentFile (the service reads the same .env)
    keeps it in the value, `false # live`, which is not false: one file, two readings of the live switch."""
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, f"ALPACA_KEY={KEYS['ALPACA_KEY']}\n{line}\n".encode())
    with pytest.raises(EnvFileError) as caught:
        read_environment(path)
    said = str(caught.value)
    assert said.startswith(f"{path}:2: ALPACA_PAPER has a comment after its value") and "false" not in said, said


def test_a_hash_inside_a_value_or_a_comment_line_is_read_as_before(tmp_path, monkeypatch) -> None:
    """Only a `#` after a space is a comment to python-dotenv; one inside a key, a comment on its own line, and a
    comment after another application's variable are read as they were."""
    content = b"# paper keys\nALPACA_KEY=PKTEST#KEY0123456789\nOTHER=1 # theirs\nALPACA_PAPER=true\n"
    env = read_environment(_env_file(tmp_path, monkeypatch, content))
    assert (env["ALPACA_KEY"], env["OTHER"], env["ALPACA_PAPER"]) == ("PKTEST#KEY0123456789", "1", "true")


@pytest.mark.parametrize("emptied", [("ALPACA_KEY",), ("ALPACA_KEY", "ALPACA_SECRET"), ("ALPACA_SECRET",)])
def test_an_alpaca_variable_emptied_in_the_environment_over_env_files_value_is_refused(
    tmp_path, monkeypatch: pytest.MonkeyPatch, emptied: tuple[str, ...]
) -> None:
    """The environment wins over `.env`, and docker compose passes an unset `${ALPACA_KEY}` as an empty string:
    both keys emptied so ran the simulator instead of the account `.env` named, and one said that the key `.env`
    sets "is not set". The commands that reach a broker refuse it at the `.env` line (`strict`); the others, which
    read the keys only to mask them, still read the environment as it is."""
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, b"ALPACA_PAPER=true\nALPACA_KEY=PKTESTKEY0123456789\nALPACA_SECRET=secret0123456789\n")
    for name in emptied:
        monkeypatch.setenv(name, " " if name == "ALPACA_SECRET" else "")
    with pytest.raises(EnvFileError) as caught:
        read_environment(path, strict=True)
    first = emptied[0]
    assert str(caught.value).startswith(f"{path}:{2 if first == 'ALPACA_KEY' else 3}: {first} is also set in the environment, empty")
    assert "PKTEST" not in str(caught.value) and "secret0123" not in str(caught.value)
    assert read_environment(path)[first].strip() == ""  # not strict: the environment as it is


def test_an_empty_alpaca_variable_with_nothing_in_env_file_is_left_to_the_broker_checks(tmp_path, monkeypatch) -> None:
    path = _env_file(tmp_path, monkeypatch, b"ALPACA_PAPER=true\n")
    monkeypatch.setenv("ALPACA_KEY", "")
    monkeypatch.setenv("ALPACA_SECRET", "")
    assert read_environment(path, strict=True)["ALPACA_KEY"] == ""


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"APCA_API_KEY_ID=PKTESTKEY0123456789\nAPCA_API_SECRET_KEY=secret0123456789\n", "1: APCA_API_KEY_ID"),
        (b"ALPACA_API_KEY=PKTESTKEY0123456789\nALPACA_SECRET_KEY=secret0123456789\n", "1: ALPACA_API_KEY"),
        (b"ALPACA_KEY=PKTESTKEY0123456789\nalpaca_secret=secret0123456789\n", "2: alpaca_secret"),
        (b"# live\nAlpaca_Paper=false\n", "2: Alpaca_Paper"),
    ],
)
def test_a_key_under_another_spelling_with_the_engines_own_unset_is_refused(
    tmp_path, monkeypatch: pytest.MonkeyPatch, content: bytes, said: str
) -> None:
    """alpaca-py's examples name the keys APCA_API_KEY_ID and APCA_API_SECRET_KEY, others ALPACA_API_KEY: a `.env`
    written so was read as no keys at all, and `broker.name: auto` ran the simulator instead of the account (a
    lower-case `alpaca_paper=false` stayed paper). Refused at the line with the name to give it, never the value."""
    from engine.brokers.factory import EnvFileError

    for name in ("ALPACA_API_BASE_URL", "ALPACA_DATA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    path = _env_file(tmp_path, monkeypatch, content)
    with pytest.raises(EnvFileError) as caught:
        read_environment(path, strict=True)
    line, name = said.split(": ")
    meant = {"APCA_API_KEY_ID": "ALPACA_KEY", "ALPACA_API_KEY": "ALPACA_KEY"}.get(name, name.upper())
    assert str(caught.value) == (f"{path}:{line}: {name} is not a variable the engine reads, and {meant} is not set: "
                                 f"rename it {meant} (see .env.example)")  # fmt: skip
    assert "PKTEST" not in str(caught.value)


def test_another_tools_name_beside_the_engines_own_is_let_be(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `.env` shared with another Alpaca tool may hold its names too: the engine's own are set, nothing is lost."""
    content = b"APCA_API_KEY_ID=PKTESTKEY0123456789\nALPACA_KEY=PKTESTKEY0123456789\nALPACA_SECRET=secret0123456789\n"
    env = read_environment(_env_file(tmp_path, monkeypatch, content), strict=True)
    assert env["ALPACA_KEY"] == "PKTESTKEY0123456789"


@pytest.mark.parametrize(("content", "said"), [
    (b"ALPACA_SECRET=secret0123456789\nALPACA_KEY\n", "2: ALPACA_KEY has no '='"),
    (b"# shell style\n\nexport ALPACA_KEY\n", "3: ALPACA_KEY has no '='"),
])  # fmt: skip
def test_a_name_without_a_value_refuses_the_file(tmp_path, monkeypatch, content: bytes, said: str) -> None:
    """`ALPACA_KEY` or `export ALPACA_KEY` alone (a shell passes on a variable set elsewhere so) was passed over:
    the key read as unset, and systemd's EnvironmentFile ignores the line as invalid."""
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, content)
    with pytest.raises(EnvFileError) as caught:
        read_environment(path)
    assert str(caught.value) == f"{path}:{said}: cannot be read as KEY=VALUE (see .env.example)"


def test_a_line_after_blank_lines_is_told_at_its_own_line(tmp_path, monkeypatch) -> None:
    """python-dotenv counts a line from the blank lines before it: the second value was said to be on line 2."""
    from engine.brokers.factory import EnvFileError

    path = _env_file(tmp_path, monkeypatch, b"ALPACA_PAPER=true\n\n\nALPACA_PAPER=false\n")
    with pytest.raises(EnvFileError) as caught:
        read_environment(path)
    assert str(caught.value) == f"{path}:4: ALPACA_PAPER is set again with another value (first on line 1): keep one"
    path = _env_file(tmp_path, monkeypatch, b"X=1\n\n  \nthis is not a line\n")
    with pytest.raises(EnvFileError, match=rf"^{path}:4: cannot be read"):
        read_environment(path)


def test_each_api_gets_the_budget_its_setting_names(emulator) -> None:
    """The market-data API is a budget apart from trading's (reference §7): `broker.max_data_requests_per_minute`
    sizes the data bucket, `broker.max_requests_per_minute` the trading one, as settings.yaml names them."""
    import dataclasses

    from engine.brokers.alpaca import AlpacaAPI
    from engine.brokers.factory import build_alpaca
    from engine.core.clock import SystemClock

    broker = dataclasses.replace(SETTINGS.broker, max_requests_per_minute=150, max_data_requests_per_minute=9000)
    settings = dataclasses.replace(SETTINGS, broker=broker)
    env = {"ALPACA_KEY": EMULATOR_KEY, "ALPACA_SECRET": EMULATOR_SECRET, "ALPACA_API_BASE_URL": emulator.url}
    api = build_alpaca(settings, SystemClock(), env, live_flag=False).api
    assert isinstance(api, AlpacaAPI)
    assert (api.bucket.capacity, api.data_bucket.capacity) == (150, 9000)
