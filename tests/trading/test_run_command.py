"""`python -m engine run / status / halt / resume` as a user types them."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.core.journal import read_events
from tests.conftest import ProjectCopy


def command(project: ProjectCopy, *args: str) -> list[str]:
    """`python -m engine ARGS` on the project's private copy of every file it reads or writes."""
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules),
             "--state-db", str(project.root / "s.db"), "--log", str(project.root / "app.jsonl")]  # fmt: skip
    return [sys.executable, "-m", "engine", *args, *files]


def without_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}


def engine(project: ProjectCopy, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(project, *args), capture_output=True, text=True, cwd=project.root, env=without_keys(), timeout=120
    )


def test_run_says_sim_without_keys_and_summarises(project: ProjectCopy) -> None:
    result = engine(project, "run", "--ticks", "40", "--start", "2026-11-23T09:30:00-05:00")
    assert result.returncode == 0, result.stderr
    assert "no Alpaca keys are configured" in result.stdout
    assert "40 ticks to 2026-11-23T09:33:20-05:00" in result.stdout
    assert "P&L by bot" in result.stdout and "crypto_core" in result.stdout
    events = read_events(project.root / "app.jsonl")
    assert events[0]["event"] == "run_start" and events[-1]["event"] == "run_end"
    assert all(e["ts"].endswith("+00:00") for e in events)
    assert len([e for e in events if e["event"] == "tick"]) == 40


def test_a_second_run_continues_the_simulation(project: ProjectCopy) -> None:
    engine(project, "run", "--ticks", "10", "--start", "2026-11-23T09:30:00-05:00")
    result = engine(project, "run", "--once")
    assert result.returncode == 0 and "continuing the simulation" in result.stdout
    assert "1 ticks to 2026-11-23T09:30:55-05:00" in result.stdout
    backwards = engine(project, "run", "--once", "--start", "2026-11-23T09:00:00-05:00")
    assert backwards.returncode == 1 and "before the simulation's time" in backwards.stderr


def test_halt_status_resume(project: ProjectCopy) -> None:
    engine(project, "run", "--ticks", "5", "--start", "2026-11-23T09:30:00-05:00")
    assert engine(project, "halt", "--reason", "news pending").returncode == 0
    status = engine(project, "status").stdout
    assert "system: news pending" in status and "until resume" in status
    run = engine(project, "run", "--ticks", "3")
    assert "system halted" in run.stdout
    assert engine(project, "resume").returncode == 0
    assert "halt: none" in engine(project, "status").stdout
    rerun = engine(project, "run", "--ticks", "3")
    assert "system armed" in rerun.stdout
    events = [e for e in read_events(project.root / "app.jsonl") if e["event"] in ("halt", "resume")]
    assert [(e["event"], e.get("by")) for e in events] == [("halt", "operator"), ("resume", "operator")]


def test_status_before_anything_ran(project: ProjectCopy) -> None:
    result = engine(project, "status")
    assert result.returncode == 0 and "no state yet" in result.stdout


def test_a_persisted_state_the_machines_no_longer_have_stops_the_run(project: ProjectCopy) -> None:
    engine(project, "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00")
    import sqlite3

    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("UPDATE machine_states SET state = 'cruising' WHERE bot_id = 'mom_AAPL'")
    result = engine(project, "run", "--once")
    assert result.returncode == 2 and "state 'cruising'" in result.stderr and "Traceback" not in result.stderr
    check = engine(project, "validate")
    assert check.returncode == 2
    assert "s.db:0:0: machine_states.momentum.mom_AAPL: momentum 'mom_AAPL' is saved in state 'cruising'" in check.stdout


def test_no_secret_reaches_the_log_or_the_database(project: ProjectCopy) -> None:
    (project.root / ".env").write_text('ALPACA_KEY="PKSHOULDNEVERAPPEAR1"\nALPACA_SECRET="secretvaluethatmustnotleak"\n')
    result = engine(project, "run", "--broker", "sim", "--ticks", "5", "--start", "2026-11-23T09:30:00-05:00")
    assert result.returncode == 0, result.stderr
    for path in (project.root / "app.jsonl", project.root / "s.db"):
        data = path.read_bytes()
        assert b"PKSHOULDNEVERAPPEAR1" not in data and b"secretvaluethatmustnotleak" not in data
    assert "secretvaluethatmustnotleak" not in result.stdout + result.stderr


def test_ctrl_c_stops_cleanly_after_the_current_tick(project: ProjectCopy) -> None:
    import signal
    import time

    process = subprocess.Popen(
        command(project, "run", "--start", "2026-11-23T09:30:00-05:00"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root, env=without_keys(),
    )  # fmt: skip
    log = project.root / "app.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and '"event":"tick"' in log.read_text()):
        time.sleep(0.01)  # waiting for the loop to be mid-run, not for time to pass
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "P&L by bot" in out
    events = read_events(project.root / "app.jsonl")
    ticks = [e for e in events if e["event"] == "tick"]
    assert events[-1]["event"] == "run_end" and 0 < len(ticks) < 4680 and events[-1]["ticks"] == len(ticks)


def test_live_trading_without_the_kill_switch_is_refused(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "exitbot:\n  enabled: true", "exitbot:\n  enabled: false")
    env = {**without_keys(), "ALPACA_KEY": "PKLIVEKEY00000001", "ALPACA_SECRET": "livesecret000000000",
           "ALPACA_PAPER": "false", "ALPACA_API_BASE_URL": "http://127.0.0.1:9", "ALPACA_DATA_BASE_URL": "http://127.0.0.1:9"}  # fmt: skip
    result = subprocess.run(command(project, "run", "--live", "--once"), capture_output=True, text=True,
                            cwd=project.root, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 1 and "live trading needs the kill switch" in result.stderr
    assert not (project.root / "app.jsonl").exists() and not (project.root / "s.db").exists()  # nothing left behind


def test_status_of_a_simulation_uses_simulated_time(project: ProjectCopy) -> None:
    engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00")
    status = engine(project, "status")
    assert "as of 2026-11-23T09:30:10-05:00" in status.stdout
