"""Choosing and building the broker: `sim` or `alpaca`, paper unless the user says live twice.

Keys come from the environment or `.env` (python-dotenv); the environment wins. `ALPACA_PAPER` must say
`false` (any case; spaces and one pair of double quotes around it ignored) *and* the run must be given `--live`
for live trading; anything else is paper, and `--live` without it is refused. A paper run pointed at Alpaca's live
host is refused, and so are keys and base URLs that cannot be what they claim to be.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.brokers.base import BrokerError
from engine.brokers.ratelimit import TokenBucket
from engine.brokers.snapshot import SnapshotBroker
from engine.config.model import Settings
from engine.core.clock import Clock
from engine.core.journal import MIN_SECRET_LENGTH, SECRET_CHARACTERS
from engine.paths import PathKind, path_kind


@dataclass(frozen=True)
class AlpacaEnvironment:
    key: str
    secret: str
    paper: bool
    api_base_url: str | None
    data_base_url: str | None


class EnvFileError(Exception):
    """`.env` exists but cannot be read as KEY=VALUE lines: said with the file and line, never a value."""


# Alpaca's own hosts: a paper run must never be pointed at the live one (the SDK's `paper` flag only picks the
# default host; an override wins), and a live run pointed at the paper host is not what was asked for either.
LIVE_API_HOST = "api.alpaca.markets"
PAPER_API_HOST = "paper-api.alpaca.markets"
# How a live account's key ids begin (`PK` a paper account's): a convention Alpaca's dashboards follow, not a
# documented contract. Only this prefix is judged, on a paper run (`key_of_the_other_account`); any other key id is
# left to the broker, so the emulator's and a test's keys still work.
LIVE_KEY_PREFIX = "AK"
# Printable ASCII without spaces, quotes or backslashes (`SECRET_CHARACTERS`): what an HTTP header carries as given
# (a quote left by Docker's --env-file, a newline from a pasted key, would be sent, or land in an error that quotes
# the header), and what the masking of a cut word takes a secret to be made of.
_KEY_CHARACTERS = SECRET_CHARACTERS


# Every variable that holds a secret, masked wherever the engine shows or writes text (`runner.maskable_keys`):
# the broker's keys, and the status page's token (`status_page.TOKEN_ENV`, read from the environment by `serve`),
# which lets whoever holds it halt and resume the engine.
SECRET_VARIABLES = ("ALPACA_KEY", "ALPACA_SECRET", "HYDRA_SERVE_TOKEN")


# A `#` after a space on a variable's line: python-dotenv reads it as a comment (`ALPACA_PAPER=false # live` is
# `false`), systemd's EnvironmentFile and Docker's --env-file as part of the value (`false # live`, not false), so
# the same file would be read two ways. No value an ALPACA_* variable can hold has one.
_COMMENT_AFTER_VALUE = re.compile(r"\s#")


def read_environment(env_file: Path | None = None, *, strict: bool = False) -> dict[str, str]:
    """The process environment's `ALPACA_*` and secret variables over the values in `.env` (which never overrides
    what is already set).

    `strict` (the commands that talk to a broker): an `ALPACA_*` variable set empty (or to spaces) in the
    environment while `.env` gives it a value is refused (EnvFileError at its `.env` line). The environment wins,
    so the empty value hid the file's: both keys emptied ran the simulator instead of the account the file named,
    and one said that `.env`'s key "is not set". docker compose passes an unset `${ALPACA_KEY}` as empty.

    `.env` is read close to how systemd's `EnvironmentFile` reads it (`#` and `;` comments, no `${VAR}` expansion), so the engine
    and the service see the same values. A line that cannot be read, or an `ALPACA_*` variable given twice with
    different values, refuses the whole file (EnvFileError): a value that cannot be read is missing, and which of
    two values was meant is not something to guess. A `.env` that is a folder, a FIFO or a device is refused too
    (a FIFO would hang the read). UnicodeDecodeError and OSError pass through for the caller to name the file."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    if env_file is not None:
        values.update(_env_file_values(env_file, lines))
    environment = {k: v for k, v in os.environ.items() if k.startswith("ALPACA_") or k in SECRET_VARIABLES}
    for key, value in environment.items() if strict else ():
        if key.startswith("ALPACA_") and not value.strip() and values.get(key, "").strip():
            raise EnvFileError(
                f"{env_file}:{lines[key]}: {key} is also set in the environment, empty, and the environment wins over "
                f".env: unset it there (an unset ${{{key}}} is passed as empty by docker compose), or remove this line"
            )
    values.update(environment)
    for key in values if strict else ():
        meant = _meant_variable(key)
        if meant is not None and key in lines and not values.get(meant, "").strip():
            raise EnvFileError(f"{env_file}:{lines[key]}: {key} is not a variable the engine reads, and {meant} is not "
                               f"set: rename it {meant} (see .env.example)")  # fmt: skip
    return values


# Another spelling of a variable the engine reads: another case, or the names other Alpaca tools use (alpaca-py's
# examples and Alpaca's CLI: APCA_API_KEY_ID, APCA_API_SECRET_KEY, APCA_API_BASE_URL; ALPACA_API_KEY...).
_OTHER_NAMES = {
    "APCA_API_KEY_ID": "ALPACA_KEY",
    "ALPACA_API_KEY": "ALPACA_KEY",
    "ALPACA_API_KEY_ID": "ALPACA_KEY",
    "ALPACA_KEY_ID": "ALPACA_KEY",
    "APCA_API_SECRET_KEY": "ALPACA_SECRET",
    "ALPACA_SECRET_KEY": "ALPACA_SECRET",
    "ALPACA_API_SECRET_KEY": "ALPACA_SECRET",
    "ALPACA_API_SECRET": "ALPACA_SECRET",
    "APCA_API_BASE_URL": "ALPACA_API_BASE_URL",
    "ALPACA_BASE_URL": "ALPACA_API_BASE_URL",
    "APCA_API_DATA_URL": "ALPACA_DATA_BASE_URL",
    "ALPACA_DATA_URL": "ALPACA_DATA_BASE_URL",
}
_READ = ("ALPACA_KEY", "ALPACA_SECRET", "ALPACA_PAPER", "ALPACA_API_BASE_URL", "ALPACA_DATA_BASE_URL")


def _meant_variable(key: str) -> str | None:
    """The variable the engine reads that `key` (a name in `.env`) is another spelling of, or None."""
    upper = key.upper()
    if upper in _READ and key != upper:
        return upper
    return _OTHER_NAMES.get(upper)


def _env_file_values(path: Path, lines: dict[str, int] | None = None) -> dict[str, str]:
    """`.env`'s values; `lines`, when given, gets each key's first line."""
    import io

    from dotenv.parser import parse_stream

    found = path_kind(path)  # an OSError is the caller's to name, as one from reading it
    if found is PathKind.NOTHING:
        return {}
    if found is PathKind.LINK_TO_NOTHING:
        raise EnvFileError(f"{path}: a link to nothing, not a file of KEY=VALUE lines")
    if found is not PathKind.FILE:
        what = "a folder" if found is PathKind.FOLDER else "not a regular file"
        raise EnvFileError(f"{path}: {what}, not a file of KEY=VALUE lines (see .env.example)")
    text = path.read_bytes().decode("utf-8-sig")  # strict: UnicodeDecodeError is the caller's to name
    # systemd's EnvironmentFile takes `;` as a comment too (dotenv only `#`): blanked, so line numbers stand
    text = "".join("\n" if line.lstrip().startswith(";") else line for line in text.splitlines(keepends=True))
    values: dict[str, str] = {}
    lines = {} if lines is None else lines
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # python-dotenv counts a binding from the blank lines before it: the line the text starts on is said
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count("\n")
        if binding.error:
            raise EnvFileError(f"{path}:{line}: cannot be read as KEY=VALUE (see .env.example)")
        if binding.key is not None and binding.value is None:
            # `ALPACA_KEY` or `export ALPACA_KEY` alone, a shell's way to pass on a variable set elsewhere: no value
            # here, and systemd's EnvironmentFile ignores the line as invalid. Passed over, the key read as unset.
            raise EnvFileError(f"{path}:{line}: {binding.key} has no '=': cannot be read as KEY=VALUE (see .env.example)")
        if binding.key is None or binding.value is None:
            continue
        key = binding.key
        if key.startswith("ALPACA_") and _COMMENT_AFTER_VALUE.search(binding.original.string.partition("=")[2]):
            raise EnvFileError(
                f"{path}:{line}: {key} has a comment after its value, which python-dotenv drops but systemd's "
                "EnvironmentFile (the service) reads as part of the value: put the comment on a line of its own"
            )
        if key in values and key.startswith("ALPACA_") and values[key] != binding.value:
            raise EnvFileError(f"{path}:{line}: {key} is set again with another value (first on line {lines[key]}): keep one")
        values[key] = binding.value
        lines.setdefault(key, line)
    return values


def keys_configured(env: Mapping[str, str]) -> bool:
    return bool(env.get("ALPACA_KEY")) and bool(env.get("ALPACA_SECRET"))


def half_configured_keys(env: Mapping[str, str]) -> str | None:
    """The sentence for one key given without the other, else None: neither a broker choice nor a default."""
    has_key, has_secret = bool(env.get("ALPACA_KEY")), bool(env.get("ALPACA_SECRET"))
    if has_key == has_secret:
        return None
    given, missing = ("ALPACA_KEY", "ALPACA_SECRET") if has_key else ("ALPACA_SECRET", "ALPACA_KEY")
    return f"{given} is set but {missing} is not: set both (see .env.example), or remove both to use the simulated exchange"


def check_key(name: str, value: str) -> str:
    """The key as given, or BrokerError naming the variable and never its value. The journal and the adapter mask
    keys exactly, which a key shorter than MIN_SECRET_LENGTH cannot be (it would mangle ordinary words); Alpaca's
    are 20 and 40 characters."""
    if not _KEY_CHARACTERS.fullmatch(value):
        raise BrokerError("config", f"{name} holds spaces, quotes, control or non-ASCII characters: it is not an Alpaca key")
    if len(value) < MIN_SECRET_LENGTH:
        raise BrokerError("config", f"{name} is shorter than {MIN_SECRET_LENGTH} characters: it is not an Alpaca key")
    return value


def paper_setting_is_false(value: str | None) -> bool:
    """`ALPACA_PAPER` says `false`: any case, spaces around it and one pair of double quotes around it ignored.
    Anything else (unset, empty, `0`, `no`, an unbalanced quote, `'false'` in single quotes) is not `false`."""
    if value is None:
        return False
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text.lower() == "false"


def _base_url(env: Mapping[str, str], name: str) -> str | None:
    from urllib.parse import urlsplit

    if name not in env:
        return None
    value = env[name].strip().rstrip("/")
    if not value:
        # The SDK would silently treat an empty override as the real paper host.
        raise BrokerError("config", f"{name} is set but empty; unset it or give a URL")
    problem = None
    if not re.fullmatch(r"[\x21-\x7e]+", value):
        problem = "it holds spaces, control or non-ASCII characters"
    else:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  # a port that is not a number, or past 65535, raises here
        except ValueError:
            parts, problem = None, "it cannot be read as a URL"
        if parts is not None:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problem = "it is not an http:// or https:// URL with a host"
            elif parts.username is not None or parts.password is not None:
                problem = "it holds a user name or password (keys go in ALPACA_KEY and ALPACA_SECRET)"
            elif parts.query or parts.fragment:
                problem = "it holds a query or a fragment"
            else:
                problem = _client_reads_another_host(value, parts.hostname)
    if problem:
        raise BrokerError("config", f"{name} is not a usable base URL: {problem} (e.g. http://127.0.0.1:8765)")
    return value


def _client_reads_another_host(url: str, judged: str) -> str | None:
    """Why `url` cannot be used when the HTTP client would connect to another host than the one judged here,
    else None. requests decodes escapes in a host (`https://api%2ealpaca%2emarkets` is sent to
    api.alpaca.markets), so the live/paper check must see the host the request goes to, or refuse the URL."""
    import requests
    from urllib3.util import parse_url

    try:
        prepared = requests.Request("GET", f"{url}/v2/account").prepare().url or ""
        reached = parse_url(prepared).host or ""
    except (requests.RequestException, ValueError):
        return "it cannot be read as a URL"
    if _plain_host(reached) != _plain_host(judged):
        return "the HTTP client reads its host as another (an escape such as %2e, or a backslash): write the host plainly"
    return None


def _plain_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def data_base_url(env: Mapping[str, str]) -> str | None:
    """ALPACA_DATA_BASE_URL checked as a run checks it (for `data fetch` of crypto bars, which needs no keys)."""
    return _base_url(env, "ALPACA_DATA_BASE_URL")


def _host(url: str | None) -> str | None:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "").rstrip(".").lower() if url else None


def alpaca_environment(
    env: Mapping[str, str], live_flag: bool, *, orders: bool = True, account: bool = True
) -> AlpacaEnvironment:
    """The keys, hosts and account to use, or BrokerError(kind="config") saying what is wrong (never a value).

    `orders`: whether the command may send orders (`run`). One that only reads (`snapshot`, `data fetch`) reads
    the account ALPACA_PAPER names, live included, without `--live`: reading is not trading. Either way a host
    that contradicts the account (a paper account pointed at the live host, or the reverse) is refused, and so is
    a key id whose prefix names the other account (`key_of_the_other_account`). `account`: whether the command
    uses the trading account at all (`data fetch` reads only market data, which either account's keys may read)."""
    half = half_configured_keys(env)
    if half is not None:
        raise BrokerError("config", half)
    if not keys_configured(env):
        raise BrokerError("config", "ALPACA_KEY and ALPACA_SECRET are needed for --broker alpaca (see .env.example)")
    key, secret = check_key("ALPACA_KEY", env["ALPACA_KEY"]), check_key("ALPACA_SECRET", env["ALPACA_SECRET"])
    paper_false = paper_setting_is_false(env.get("ALPACA_PAPER"))
    if live_flag and not paper_false:
        raise BrokerError("config", "--live was given but ALPACA_PAPER is not 'false'; live trading needs both")
    live = (live_flag or not orders) and paper_false
    api_base_url = _base_url(env, "ALPACA_API_BASE_URL")
    host = _host(api_base_url)
    if not live and host == LIVE_API_HOST:
        needs = "ALPACA_PAPER=false and --live" if orders else "ALPACA_PAPER=false"
        raise BrokerError(
            "config",
            f"ALPACA_API_BASE_URL points at the live host {LIVE_API_HOST} but this run is paper: the live account needs "
            f"{needs}; unset ALPACA_API_BASE_URL for paper trading",
        )
    if live and host == PAPER_API_HOST:
        raise BrokerError("config", f"--live was given but ALPACA_API_BASE_URL points at the paper host {PAPER_API_HOST}")
    mismatch = key_of_the_other_account(key, live=live, orders=orders) if account else None
    if mismatch is not None:
        raise BrokerError("config", mismatch)
    return AlpacaEnvironment(
        key=key,
        secret=secret,
        paper=not live,
        api_base_url=api_base_url,
        data_base_url=_base_url(env, "ALPACA_DATA_BASE_URL"),
    )


def key_of_the_other_account(key: str, *, live: bool, orders: bool = True) -> str | None:
    """The sentence refusing a live account's key id (see LIVE_KEY_PREFIX) where the paper account is used, else
    None; it names the variable and the prefix checked, never the key. A paper run with a live key id was sent to
    the broker (refused at the first request, or, with a base URL override, the live key sent to whatever host that
    names). The reverse, a live run with a paper key id, is left to the broker, which refuses it at the first
    request (a halt, KEYS_REFUSED): nothing of the live account is exposed by it, and a key id that merely looks
    like a paper one does not stop a live run the user asked for twice."""
    if not live and key.startswith(LIVE_KEY_PREFIX):
        how = "ALPACA_PAPER=false and --live" if orders else "ALPACA_PAPER=false"
        return (
            f"ALPACA_KEY starts with {LIVE_KEY_PREFIX}, as a live account's key id does, but this run uses the paper "
            f"account (the live one needs {how}): put the paper account's keys in ALPACA_KEY and ALPACA_SECRET"
        )
    return None


def choose_broker(requested: str | None, settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    """(broker name, a sentence saying why), from the flag, then settings.yaml, then whether keys exist."""
    name = requested or settings.broker.name
    if name != "auto":
        return name, f"broker '{name}' ({'--broker' if requested else 'settings.yaml broker.name'})"
    half = half_configured_keys(env)
    if half is not None:  # neither alpaca nor, silently, the simulated exchange: the user meant one of them
        raise BrokerError("config", half)
    if keys_configured(env):
        return "alpaca", "broker 'alpaca' (keys are configured)"
    return "sim", "broker 'sim': no Alpaca keys are configured, so the built-in simulated exchange is used"


def build_alpaca(
    settings: Settings, clock: Clock, env: Mapping[str, str], live_flag: bool, *, orders: bool = True
) -> SnapshotBroker:
    """`orders`: as `alpaca_environment`'s (False for a command that only reads)."""
    from engine.brokers.alpaca import AlpacaAPI

    alpaca_env = alpaca_environment(env, live_flag, orders=orders)
    api = AlpacaAPI(
        alpaca_env.key,
        alpaca_env.secret,
        paper=alpaca_env.paper,
        api_base_url=alpaca_env.api_base_url,
        data_base_url=alpaca_env.data_base_url,
        timeout_seconds=settings.broker.request_timeout_seconds,
        bucket=TokenBucket(settings.broker.max_requests_per_minute, clock),
        data_bucket=TokenBucket(settings.broker.max_data_requests_per_minute, clock),
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
