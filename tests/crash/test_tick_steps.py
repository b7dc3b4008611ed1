"""Kills at every step of a tick that leaves a different state on disk (engine/core/failpoints.py lists them), each
followed by a restart: `python -m engine run` on the simulator continuing its saved simulation, the operator's
`halt` and `resume`, and the Alpaca adapter against the emulator.

Whatever the step, the restarted run ends in a safe, explained state: it exits 0; every order the exchange holds is
one the engine recorded, with the same fill, and what the bots own is what the exchange holds (no reconciliation
halt); a halt in force before the kill is in force after it; the log reads, a line a kill cut short aside, and the
line after it is whole (the restart's first event is not glued onto it).
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.core.store import StateStore
from tests.brokers.conftest import KEY, SECRET
from tests.conftest import ProjectCopy
from tests.crash.scaled_clock import ScaledClock
from tests.crash.test_kill_loop import SPEED, check_invariants, eager, run_engine
from tests.crash.test_kill_loop import START as KILL_LOOP_START
from tests.crash.test_sim_kills import START, _check_at_rest, _run
from tests.trading.test_run_command import command, without_keys

# The daily-loss kill condition made to hold after the first losing round trip: a halt (and its flatten) mid-run.
LOSS_KILLS = (
    "rules/kill_conditions.yaml",
    "expr: daily_pnl_pct <= -risk_global_max_daily_loss_pct",
    "expr: daily_pnl_pct <= -0.002",
)


def _log_lines(project: ProjectCopy) -> tuple[list[dict[str, object]], list[int]]:
    """The log's events, and the numbers of the lines that do not read (a line a kill cut short)."""
    events, torn = [], []
    for number, line in enumerate((project.root / "app.jsonl").read_bytes().split(b"\n")[:-1], 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            torn.append(number)
    return events, torn


def _open_halts(project: ProjectCopy) -> list[str]:
    store = StateStore(project.root / "s.db")
    try:
        return [h.reason for h in store.halts(open_only=True)]
    finally:
        store.close()


# failpoint -> the config it needs ("": eager's): where in a tick the run dies
SIM_STEPS = {
    "tick_committed:30": "",  # the tick's states and intents committed, nothing sent
    "state_committed:40": "",  # a commit whose events are not in the log yet
    "basis_saved:1": "",  # the day's basis saved, the first tick undecided
    "log_mid_line:5": "",  # a torn write: half of the last line
    "after_cancel:1": "all bots",  # the broker took a cancel, nothing recorded (every kind of bot: some entries wait, and are cancelled)
    "halt_recorded:1": "loss kills",  # inside the tick that halts: the halt rolled back with it
}


@pytest.mark.parametrize("failpoint", list(SIM_STEPS))
def test_a_sim_run_killed_at_a_step_restarts_safe(project: ProjectCopy, failpoint: str) -> None:
    """Killed at one step, the simulated run restarts on its saved simulation and ends as if it had not died."""
    eager(project)
    if SIM_STEPS[failpoint] == "all bots":
        project.replace("config/bots.yaml", "optionsbot:\n  enabled: false", "optionsbot:\n  enabled: true")
        project.replace("config/bots.yaml", "cryptobot:\n  enabled: false", "cryptobot:\n  enabled: true")
    elif SIM_STEPS[failpoint] == "loss kills":
        project.replace(*LOSS_KILLS)
    killed = _run(project, "--ticks", "400", "--start", START, failpoint=failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]  # it did reach the point
    halted_before = _open_halts(project)
    again = _run(project, "--ticks", "60")
    assert again.returncode == 0, again.stderr[-2000:]
    _check_at_rest_with_torn_lines(project)
    assert set(halted_before) <= set(_open_halts(project))  # a halt in force stays in force
    if failpoint.startswith("halt_recorded"):  # rolled back with its tick, and found again by the restart
        assert halted_before == [] and [h for h in _open_halts(project) if "max_daily_loss_halt" in h]
    status = subprocess.run(command(project, "status"), capture_output=True, text=True, env=without_keys(), timeout=60)
    assert status.returncode == 0, status.stderr


def _check_at_rest_with_torn_lines(project: ProjectCopy) -> None:
    """`_check_at_rest` of a run that ended by itself, the log read line by line: a line a kill cut short is
    allowed once, never the last, and the restart's `run_start` follows it whole."""
    events, torn = _log_lines(project)
    assert len(torn) <= 1, torn
    if torn:
        after = [e for e in events if e.get("event") == "run_start"]
        assert len(after) == 2, after  # the killed run's and the restart's, both whole
    log = project.root / "app.jsonl"
    whole = log.read_bytes()
    log.write_bytes(b"\n".join(line for n, line in enumerate(whole.split(b"\n"), 1) if n not in torn))
    try:
        _check_at_rest(project, clean=True)
    finally:
        log.write_bytes(whole)


def _operator(project: ProjectCopy, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = without_keys()
    env.pop("TRADING_HYDRA_FAILPOINT", None)
    if failpoint:
        env["TRADING_HYDRA_FAILPOINT"] = failpoint
    return subprocess.run(command(project, *args), capture_output=True, text=True, cwd=project.root, env=env, timeout=60)


@pytest.mark.parametrize(
    ("failpoint", "halted"),
    [
        ("halt_recorded:1", True),  # the halt committed, its event never logged: in force all the same
        ("log_mid_line:1", True),  # its event cut in half: in force, and the log reads on
        ("resume_logged:1", True),  # the resume's event on disk, its commit not: every halt stays in force
        ("state_committed:1", False),  # the resume committed (its event first): resumed, though never said
    ],
)
def test_an_operator_command_killed_midway(project: ProjectCopy, failpoint: str, halted: bool) -> None:
    """`halt`, or `resume` after a halt, killed at one of its steps; then a run. The halt is in force exactly
    when its commit (or the resume's absence) says so, and the run says it in its summary."""
    eager(project)
    if failpoint.startswith(("resume", "state")):
        assert _operator(project, "halt", "--reason", "maintenance").returncode == 0
        killed = _operator(project, "resume", failpoint=failpoint)
    else:
        killed = _operator(project, "halt", "--reason", "maintenance", failpoint=failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = _run(project, "--ticks", "30", "--start", START)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (_open_halts(project) == ["maintenance"]) is halted
    assert ("HALT IN FORCE" in run.stdout) is halted, run.stdout
    events, torn = _log_lines(project)
    assert len(torn) == (1 if failpoint.startswith("log_mid_line") else 0), torn
    assert [e["event"] for e in events][-1] == "run_end"


@pytest.fixture
def emulator_clock(project: ProjectCopy) -> Iterator[tuple[Emulator, ScaledClock]]:
    eager(project)
    clock = ScaledClock(KILL_LOOP_START, time.time(), SPEED)
    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:
        yield emulator, clock


@pytest.mark.parametrize("failpoint", ["tick_committed:40", "state_committed:30"])
def test_an_alpaca_run_killed_at_a_step_restarts_safe(project: ProjectCopy, emulator_clock, failpoint: str) -> None:
    """The Alpaca adapter against the emulator (which outlives the engine, as Alpaca would): killed after a tick's
    commit or any commit before its events reach the log, the restart sends nothing twice and forgets nothing."""
    emulator, clock = emulator_clock
    assert run_engine(project, emulator, clock, 1500, failpoint) == -signal.SIGKILL
    assert run_engine(project, emulator, clock, 60, None) == 0
    check_invariants(project, emulator)


def _checkpoint_part_of_the_wal(db: Path, share: float) -> int:
    """Copy the latest committed version of the first `share` of the pages the -wal holds into the file, as a
    checkpoint killed part way leaves them (the -wal untouched); returns how many pages were copied."""
    wal = Path(f"{db}-wal").read_bytes()
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts, latest, committed = wal[16:24], {}, {}
    for offset in range(32, len(wal) - 24 - page_size + 1, 24 + page_size):
        if wal[offset + 8 : offset + 16] != salts:
            break  # a frame of an earlier generation of the -wal: not part of it
        page, size_after = struct.unpack(">II", wal[offset : offset + 8])
        latest[page] = offset
        if size_after:  # a commit frame
            committed = dict(latest)
    pages = sorted(committed)[: int(len(committed) * share)]
    with open(db, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size)
            f.write(wal[committed[page] + 24 : committed[page] + 24 + page_size])
    return len(pages)


def test_a_run_killed_mid_checkpoint_restarts_on_the_same_state(project: ProjectCopy) -> None:
    """SQLite copies the -wal's pages into the file at a checkpoint; a kill in the middle leaves some copied and
    the -wal whole. The state file is no `-wal of another file` to the next run: it opens, reads what was committed,
    and goes on."""
    eager(project)
    killed = _run(project, "--ticks", "300", "--start", START, failpoint="tick_committed:250")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _checkpoint_part_of_the_wal(project.root / "s.db", 0.5) > 0
    again = _run(project, "--ticks", "40")
    assert again.returncode == 0, again.stderr[-2000:]
    _check_at_rest(project, clean=True)
