"""`backtest --sweep` stopped or killed midway: no worker left running, no half table, one line saying so.

Each test starts the real command in a session of its own (so every process it makes, the forkserver and the
workers included, can be found by the session id) and stops it once its first run is reported, by reading its
output, never after a guessed delay. A worker's death is a failpoint (engine/core/failpoints.py) inherited by
the workers through the environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.paths import PROJECT_ROOT
from engine.replay.sweep import WORKER_DIED
from tests.conftest import ProjectCopy
from tests.replay.test_sweep import _args, _data, _sweep

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds a session's processes in /proc")

GRID = """\
momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.5, 0.8]
momentum_bots[mom_AAPL].exits.take_profit_pct: [0.5, 1.0, 1.5]
"""
RUNS = 9


def _session(sid: int) -> list[int]:
    """The processes of session `sid` still running (a zombie is dead, only not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) ": state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _gone(sid: int, within: float = 15.0) -> list[int]:
    """Wait for the session to empty (workers notice their parent's end through a pipe, at once); what is left."""
    deadline = time.monotonic() + within
    while (left := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def sweep_command(momentum_project: ProjectCopy, tmp_path: Path) -> Iterator[list[str]]:
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    yield [sys.executable, "-m", "engine", *_args(momentum_project, data, sweep, "--out", str(tmp_path / "out"))]


def _start(command: list[str], *more: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command as a terminal starts it. SIGINT is set back to its default first: a test run in the background
    of a shell inherits it ignored, and a Python started so never turns it into KeyboardInterrupt."""
    return subprocess.Popen([*command, *more], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env, preexec_fn=_default_sigint)  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _after_first_run(child: subprocess.Popen[str]) -> None:
    """Read the command's output up to its first finished run: the grid is then midway, its workers busy."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("[1/"):
            return
    raise AssertionError(f"the sweep ended before its first run: {child.wait()}, {child.stderr and child.stderr.read()}")


def _finish(child: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = child.communicate(timeout=60)
    finally:
        for pid in _session(child.pid):  # what the old code left running: the test's own processes
            os.kill(pid, signal.SIGKILL)
    return out, err


def test_a_sweep_killed_outright_leaves_no_worker_running(sweep_command: list[str], tmp_path: Path) -> None:
    """They used to run the rest of the grid into the folder, then wait on their queue for ever."""
    child = _start(sweep_command, "--jobs", "2")
    try:
        _after_first_run(child)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        assert _gone(child.pid) == []
    finally:
        _finish(child)
    assert not (tmp_path / "out" / "sweep.csv").exists()


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_sigterm_or_ctrl_c_stops_a_sweep_at_once_saying_so(
    sweep_command: list[str], tmp_path: Path, signum: int, code: int, said: str
) -> None:
    """SIGTERM used to end it where it stood (workers left running); Ctrl-C (the whole process group, as a
    terminal sends it) used to wait for every run of the grid, while each idle worker printed a traceback."""
    child = _start(sweep_command, "--jobs", "2")
    try:
        _after_first_run(child)
        os.killpg(child.pid, signum)
        assert child.wait(timeout=30) == code
        assert _gone(child.pid) == []
    finally:
        _out, err = _finish(child)
    assert "Traceback" not in err, err
    assert f"{said}: the sweep stopped after " in err and f" of {RUNS} runs" in err and "sweep.csv is not written" in err
    assert not (tmp_path / "out" / "sweep.csv").exists()
    finished = list((tmp_path / "out").glob("run-*/summary.json"))
    assert 1 <= len(finished) < RUNS


def test_sigterm_stops_a_sweep_run_in_its_own_process(sweep_command: list[str], tmp_path: Path) -> None:
    """--jobs 1: the run in progress commits what it finished, as `backtest` does on Ctrl-C."""
    child = _start(sweep_command, "--jobs", "1")
    try:
        _after_first_run(child)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 143
    finally:
        _out, err = _finish(child)
    assert "Traceback" not in err and "SIGTERM: the sweep stopped after 1 of" in err, err
    assert not (tmp_path / "out" / "sweep.csv").exists()


def test_a_worker_that_dies_fails_its_runs_with_a_clear_error(sweep_command: list[str], tmp_path: Path) -> None:
    """A worker killed (OOM, kill -9) used to end the command in a BrokenProcessPool traceback, the runs that
    had finished unreported."""
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": "before_post"}  # each worker dies at its first order
    child = _start(sweep_command, "--jobs", "2", env=env)
    out, err = _finish(child)
    assert child.returncode == 2, err
    assert "Traceback" not in err, err
    assert WORKER_DIED in out
    rows = (tmp_path / "out" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + RUNS and all(WORKER_DIED in row for row in rows[1:])


def test_sweep_csv_is_whole_or_absent(sweep_command: list[str], tmp_path: Path) -> None:
    """Killed while the table is written (the failpoint between writing it and putting it in place): no
    sweep.csv, where a plain write left its first rows as a table that read as complete."""
    # each run writes trades.csv, equity.csv and summary.json whole (no report.html in a sweep): the table is next
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": f"data_before_rename:{3 * RUNS + 1}"}
    child = _start(sweep_command, "--jobs", "1", env=env)
    _out, err = _finish(child)
    assert child.returncode == -signal.SIGKILL, err
    assert len(list((tmp_path / "out").glob("run-*/summary.json"))) == RUNS
    assert not (tmp_path / "out" / "sweep.csv").exists()
