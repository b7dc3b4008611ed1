"""`python -m engine snapshot` against sim, and against the emulator through the alpaca adapter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import SystemClock
from engine.paths import PROJECT_ROOT
from tests.brokers.conftest import KEY, SECRET

KEYS = ("account", "positions", "open_orders", "quotes", "option_chains", "clock", "broker_requests")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", "snapshot", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**base, **(env or {})},
        timeout=60,
    )


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def test_snapshot_on_sim() -> None:
    result = run("--broker", "sim", "--start", "2026-11-23T10:00:00-05:00")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(KEYS) <= set(data)
    assert data["account"]["equity"] == 100000.0 and isinstance(data["broker_requests"], int)
    assert data["clock"]["is_open"] is True  # the instant asked for (the clock keeps it in UTC)
    assert datetime.fromisoformat(data["taken_at"]) == datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    assert set(data["quotes"]) == {"AAPL", "SPY", "QQQ", "BTC/USD", "ETH/USD"}
    assert set(data["option_chains"]) == {"SPY", "QQQ"}


def test_snapshot_through_the_alpaca_adapter_against_the_emulator() -> None:
    # The emulator on real time, as the command's own clock is: a market clock from another day saying open until a
    # close that has passed by ours is an answer that is not about now (alpaca.CLOCK_LAG), and is refused.
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {
            "ALPACA_KEY": KEY,
            "ALPACA_SECRET": SECRET,
            "ALPACA_API_BASE_URL": emulator.url + "/",
            "ALPACA_DATA_BASE_URL": emulator.url,
        }
        result = run("--broker", "alpaca", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout, parse_constant=_no_constants)  # strict JSON: missing greeks are null, not NaN
    assert set(KEYS) <= set(data) and data["errors"] == []
    contracts = [c for chain in data["option_chains"].values() for c in chain]
    assert any(c["delta"] is None for c in contracts) and any(c["delta"] is not None for c in contracts)
    assert data["account"]["cash"] == 100000.0
    assert data["broker_requests"] == 8  # account, positions, orders, stocks, crypto, 2 chains, clock
    assert SECRET not in result.stdout + result.stderr


def test_snapshot_with_an_empty_base_url_fails_closed() -> None:
    result = run("--broker", "alpaca", env={"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": ""})
    assert result.returncode == 2 and "empty" in result.stderr and "Traceback" not in result.stderr


def test_the_emulator_command_serves_the_alpaca_adapter() -> None:
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}, "ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET}
    server = subprocess.Popen([sys.executable, "-m", "engine", "emulator", "--port", str(port)], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until it listens
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        result = run("--broker", "alpaca", env={"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET,
                                               "ALPACA_API_BASE_URL": url, "ALPACA_DATA_BASE_URL": url})  # fmt: skip
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["errors"] == [] and data["account"]["equity"] == 100000.0
        # real time by default: the quotes are fresh for a real-time engine
        from datetime import datetime, timezone

        ages = [
            (datetime.now(timezone.utc) - datetime.fromisoformat(q["timestamp"])).total_seconds() for q in data["quotes"].values()
        ]
        assert max(ages) < 30
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_keys_emptied_in_the_environment_over_env_files_are_refused_not_the_simulator(tmp_path) -> None:
    """`.env` names an account; the environment (docker compose's unset `${ALPACA_KEY}`) sets both keys empty and
    wins: the command took that for no keys and answered from the simulated exchange, exit 0."""
    (tmp_path / ".env").write_text(f"ALPACA_KEY={KEY}\nALPACA_SECRET={SECRET}\n", encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    folders = [f"--{name}={PROJECT_ROOT / name}" for name in ("config", "machines", "rules")]
    result = subprocess.run([sys.executable, "-m", "engine", "snapshot", *folders], capture_output=True, text=True,
                            cwd=tmp_path, env={**base, "ALPACA_KEY": "", "ALPACA_SECRET": ""}, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        ".env:1: ALPACA_KEY is also set in the environment, empty, and the environment wins over .env: unset it "
        "there (an unset ${ALPACA_KEY} is passed as empty by docker compose), or remove this line"
    )
    assert result.stdout == "" and KEY not in result.stderr


def test_keys_under_another_tools_names_are_not_refused_when_the_simulator_is_named(tmp_path) -> None:
    """alpaca-py's own names in `.env` (APCA_API_KEY_ID) are refused where the engine would read no keys and fall back
    to the simulator unasked; with `--broker sim` the user asked for it, and the keys are not read at all."""
    (tmp_path / ".env").write_text(f"APCA_API_KEY_ID={KEY}\nAPCA_API_SECRET_KEY={SECRET}\n", encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    folders = [f"--{name}={PROJECT_ROOT / name}" for name in ("config", "machines", "rules")]
    command = [sys.executable, "-m", "engine", "snapshot", *folders, "--start", "2026-11-23T10:00:00-05:00"]
    asked = subprocess.run([*command, "--broker", "sim"], capture_output=True, text=True, cwd=tmp_path, env=base, timeout=60)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["account"]["equity"] > 0
    unasked = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=base, timeout=60)
    assert unasked.returncode == 2 and unasked.stderr.strip().startswith(".env:1: APCA_API_KEY_ID is not a variable")
