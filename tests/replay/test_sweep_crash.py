"""`backtest --sweep` stopped or killed midway: no worker left running, no half table, one line saying so; a
worker that dies costs its runs one retry in a new pool, not the rest of the sweep.

Each test starts the real command in a session of its own (so every process it makes, the forkserver and the
workers included, can be found by the session id) and stops it once its first run (or first retry) is reported,
by reading its output, never after a guessed delay. A worker's death is a failpoint (engine/core/failpoints.py):
for every worker, inherited through the environment; for one run only, armed by a module function the sweep
sends to its workers in place of run_one (`_victim_dies_once`, `_victim_dies_every_time`), its attempts counted
in a file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.context import ForkServerContext, ForkServerProcess
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.core import failpoints
from engine.core.stop import Terminated, sigterm_raises
from engine.paths import PROJECT_ROOT
from engine.replay import sweep as sweeping
from engine.replay.sweep import WORKER_DIED, RunSpec, run_one
from tests.conftest import ProjectCopy
from tests.replay.test_sweep import _args, _data, _sweep

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds a session's processes in /proc")

GRID = """\
momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.5, 0.8]
momentum_bots[mom_AAPL].exits.take_profit_pct: [0.5, 1.0, 1.5]
"""
RUNS = 9
HUNG = 300.0
"""Seconds after which a command that has not ended (or a session not emptied) is taken for hung: a bound, not a
wait, since each is waited for only until it happens. A whole sweep of three runs dying twice took 44 s of the 60
it had while two cores ran some twenty busy processes; a stop, whose workers are waited for 5 s each, had 30."""


def _stat(process: Path) -> list[str]:
    """The fields of a process's stat after "pid (name) ": state, ppid, pgrp, session, ...; none when it is gone."""
    try:
        stat = (process / "stat").read_text()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()


def _session(sid: int) -> list[int]:
    """The processes of session `sid` still running (a zombie is dead, only not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry)) and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _gone(sid: int, within: float = HUNG) -> list[int]:
    """Wait for the session to empty (workers notice their parent's end through a pipe, at once); what is left."""
    deadline = time.monotonic() + within
    while (left := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _command(project: ProjectCopy, tmp_path: Path, grid: str) -> list[str]:
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, grid)
    return [sys.executable, "-m", "engine", *_args(project, data, sweep, "--out", str(tmp_path / "out"))]


@pytest.fixture
def sweep_command(momentum_project: ProjectCopy, tmp_path: Path) -> Iterator[list[str]]:
    yield _command(momentum_project, tmp_path, GRID)


def _start(command: list[str], *more: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command as a terminal starts it. SIGINT and SIGHUP are set back to their defaults first: a test run in
    the background of a shell inherits SIGINT ignored (a Python started so never turns it into KeyboardInterrupt),
    and one run under nohup inherits SIGHUP ignored (the sweep then rightly outlives its terminal, exit 0)."""
    return subprocess.Popen([*command, *more], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env, preexec_fn=_as_a_terminal)  # fmt: skip


def _as_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _after_first_run(child: subprocess.Popen[str]) -> None:
    """Read the command's output up to its first finished run: the grid is then midway, its workers busy."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("[1/"):
            return
    raise AssertionError(f"the sweep ended before its first run: {child.wait()}, {child.stderr and child.stderr.read()}")


def _finish(child: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = child.communicate(timeout=HUNG)
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
        assert child.wait(timeout=HUNG) == -signal.SIGKILL
        assert _gone(child.pid) == []
    finally:
        _finish(child)
    assert not (tmp_path / "out" / "sweep.csv").exists()


@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_or_ctrl_c_stops_a_sweep_at_once_saying_so(
    sweep_command: list[str], tmp_path: Path, signum: int, code: int, said: str
) -> None:
    """SIGTERM used to end it where it stood (workers left running); Ctrl-C (the whole process group, as a
    terminal sends it) used to wait for every run of the grid, while each idle worker printed a traceback."""
    child = _start(sweep_command, "--jobs", "2")
    try:
        _after_first_run(child)
        os.killpg(child.pid, signum)
        assert child.wait(timeout=HUNG) == code
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
        assert child.wait(timeout=HUNG) == 143
    finally:
        _out, err = _finish(child)
    assert "Traceback" not in err and "SIGTERM: the sweep stopped after 1 of" in err, err
    assert not (tmp_path / "out" / "sweep.csv").exists()


def test_runs_that_kill_their_worker_every_time_fail_with_a_clear_error(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """A worker killed (OOM, kill -9) used to end the command in a BrokenProcessPool traceback, the runs that
    had finished unreported. Here every worker dies at its first order, in every pool: each run is retried once
    in a new pool, then fails with WORKER_DIED; the sweep ends (no pool after pool), each run reported once.
    Three runs, not nine: each try of each run starts a worker."""
    runs = 3
    command = _command(momentum_project, tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.5, 0.8]\n")
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": "before_post"}  # each worker dies at its first order
    child = _start(command, "--jobs", "2", env=env)
    out, err = _finish(child)
    assert child.returncode == 2, err
    assert "Traceback" not in err, err
    assert WORKER_DIED in out
    rows = (tmp_path / "out" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + runs and all(WORKER_DIED in row for row in rows[1:])
    assert len([line for line in out.splitlines() if line.startswith("[")]) == runs
    assert "a worker process of the sweep died running run-" in err and "; retried in a new pool: run-" in err
    assert "not retried (its worker died on its retry too): " in err


VICTIM = "run-002"


def _attempts(spec: RunSpec) -> Path:
    """The victim's attempts, a line each, beside the sweep's folder (tmp_path/out/run-NNN -> tmp_path)."""
    return Path(spec.out_dir).parents[1] / f"{VICTIM}.attempts"


def _victim_dies(spec: RunSpec, dying_attempts: int) -> dict[str, Any]:
    """run_one in a worker, except that the victim's first `dying_attempts` attempts kill the worker at their first
    order (SIGKILL, as the OOM killer would): mid-run, its folder holding a state.db and an app.jsonl but no
    summary.json."""
    if spec.name == VICTIM:
        attempts = _attempts(spec)
        before = len(attempts.read_text().splitlines()) if attempts.exists() else 0
        with attempts.open("a") as file:
            file.write("attempt\n")
        if before < dying_attempts:
            failpoints._ARMED = ("before_post", 1)
            failpoints._hits.clear()
    return run_one(spec)


def _victim_dies_once(spec: RunSpec) -> dict[str, Any]:
    return _victim_dies(spec, 1)


def _victim_dies_every_time(spec: RunSpec) -> dict[str, Any]:
    return _victim_dies(spec, sys.maxsize)


def test_a_run_whose_worker_dies_is_retried_in_a_new_pool_and_the_sweep_finishes_whole(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker killed used to fail every run not finished by then; now they run again, the victim's folder
    emptied of its cut-short attempt, and the sweep's table is the one of a sweep where no worker died."""
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    assert main(_args(momentum_project, data, sweep, "--jobs", "2", "--out", str(tmp_path / "clean"))) == 0
    capsys.readouterr()
    monkeypatch.setattr(sweeping, "run_one", _victim_dies_once)
    code = main(_args(momentum_project, data, sweep, "--jobs", "2", "--out", str(tmp_path / "out")))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / f"{VICTIM}.attempts").read_text() == "attempt\n" * 2
    assert (tmp_path / "out" / "sweep.csv").read_text() == (tmp_path / "clean" / "sweep.csv").read_text()
    assert len(list((tmp_path / "out").glob("run-*/summary.json"))) == RUNS
    for name in ("summary.json", "trades.csv"):  # the retry's report, whole, and the same as an undisturbed run's
        assert (tmp_path / "out" / VICTIM / name).read_bytes() == (tmp_path / "clean" / VICTIM / name).read_bytes()
    assert (tmp_path / "out" / VICTIM / "app.jsonl").read_text().count('"backtest_start"') == 1  # a fresh log
    progress = [line.split()[1] for line in out.splitlines() if line.startswith("[")]
    assert sorted(progress) == [f"run-{n:03d}:" for n in range(1, RUNS + 1)]  # each run reported once
    [said] = err.splitlines()
    assert said.startswith(f"a worker process of the sweep died running {VICTIM} (SIGKILL: killed, or out of memory); "
                           "retried in a new pool: run-0")  # fmt: skip
    assert "not retried" not in said


def test_a_run_that_kills_its_worker_every_time_fails_alone(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that kills its worker whatever happens (eats all memory) is tried twice, not for ever, and the runs
    the two broken pools took down with it still finish."""
    monkeypatch.setattr(sweeping, "run_one", _victim_dies_every_time)
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    code = main(_args(momentum_project, data, sweep, "--jobs", "2", "--out", str(tmp_path / "out")))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert (tmp_path / f"{VICTIM}.attempts").read_text() == "attempt\n" * 2
    rows = list(csv.DictReader((tmp_path / "out" / "sweep.csv").read_text().splitlines()))
    assert len(rows) == RUNS and rows[-1]["run"] == VICTIM
    assert {row["run"]: row["error"] for row in rows if row["error"]} == {VICTIM: WORKER_DIED}
    finished = sorted(path.parent.name for path in (tmp_path / "out").glob("run-*/summary.json"))
    assert finished == [f"run-{n:03d}" for n in range(1, RUNS + 1) if f"run-{n:03d}" != VICTIM]
    assert len([line for line in out.splitlines() if line.startswith("[")]) == RUNS
    first, second = err.splitlines()
    assert first.startswith(f"a worker process of the sweep died running {VICTIM} (SIGKILL") and "not retried" not in first
    assert f"; not retried (its worker died on its retry too): {VICTIM}" in second


def _after_first_retry(child: subprocess.Popen[str]) -> None:
    """Read the command's errors up to its first retry: a pool broke, the next is starting or running."""
    assert child.stderr is not None
    for line in child.stderr:
        if "; retried in a new pool: " in line:
            return
    raise AssertionError(f"the sweep ended before a retry: {child.wait()}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
def test_a_sweep_stopped_while_retrying_leaves_no_worker_running(
    sweep_command: list[str], tmp_path: Path, signum: int, code: int
) -> None:
    """The pools of the retries watch the sweep's process as the first did, and are stopped as it was: whatever
    ends the sweep's process (the signal to it alone), no worker outlives it."""
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": "before_post"}  # every worker dies: pool after pool
    child = _start(sweep_command, "--jobs", "2", env=env)
    try:
        _after_first_retry(child)
        os.kill(child.pid, signum)
        assert child.wait(timeout=HUNG) == code
        assert _gone(child.pid) == []
    finally:
        _out, err = _finish(child)
    assert "Traceback" not in err, err
    if signum == signal.SIGTERM:
        assert "SIGTERM: the sweep stopped after " in err and f" of {RUNS} runs" in err, err
    assert not (tmp_path / "out" / "sweep.csv").exists()


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


class _StoppedAtStart(ForkServerProcess):
    """A pool's worker whose start is followed at once by SIGTERM, before the pool has recorded it: the moment a
    stop is likeliest to find a pool in when it comes just after "retried in a new pool" on busy cores."""

    def start(self) -> None:
        super().start()
        assert self.pid is not None
        _STARTED.append(self.pid)
        signal.raise_signal(signal.SIGTERM)


class _StopAtStart(ForkServerContext):
    Process = _StoppedAtStart


_STARTED: list[int] = []


def _running(pid: int) -> bool:
    """Whether `pid` is a process still running (a zombie is dead, only not yet reaped)."""
    fields = _stat(Path(f"/proc/{pid}"))
    return bool(fields) and fields[0] != "Z"


def test_a_stop_while_a_pool_starts_its_workers_ends_every_worker_it_started(tmp_path: Path) -> None:
    """A worker forked but not yet recorded by the pool when SIGTERM came was left running: the sweep's process
    exited without it, and it printed a traceback (its semaphores removed under it). Every worker started is ended,
    and waited for, before the stop goes on."""
    _STARTED.clear()
    here = str(tmp_path)
    specs = [RunSpec(f"run-00{n}", (), here, here, here, here, here) for n in (1, 2, 3)]
    context = _StopAtStart()
    watched, parent_alive = context.Pipe(duplex=False)
    try:
        with sigterm_raises(), pytest.raises(Terminated):
            sweeping._pool_round(context, specs, 2, watched, parent_alive, None, [])
        assert _STARTED and [pid for pid in _STARTED if _running(pid)] == []
    finally:
        for pid in _STARTED:  # what the old code left running
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        watched.close()
        parent_alive.close()



_HANGUP_MEANWHILE = """
import os, signal
from multiprocessing import get_context, resource_tracker
from engine.replay import sweep
seen = []
signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
started = resource_tracker.ensure_running
def hung_up_meanwhile():
    os.kill(os.getpid(), signal.SIGHUP)  # the terminal closes while the tracker starts
    started()
resource_tracker.ensure_running = hung_up_meanwhile
sweep._helpers_ignore_sighup(get_context("spawn"))
print(seen, signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, set()))
"""


def test_a_hangup_while_the_helpers_start_reaches_the_sweep_after() -> None:
    """The helpers (the resource tracker, the fork server) start with SIGHUP ignored, so a closed terminal's hangup
    does not kill them. One that came in that window was dropped: the sweep ran on to its end, exit 0 where 129 was
    due. It is held back now and handled once the sweep's own handler is back, SIGHUP unblocked again. (In a process
    of its own: a signal sent to pytest's own process is not the sweep's.)"""
    done = subprocess.run([sys.executable, "-c", _HANGUP_MEANWHILE], capture_output=True, text=True, timeout=60,
                          cwd=PROJECT_ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{int(signal.SIGHUP)}] False", done.stdout
