"""`backtest --sweep --ray`: a task that fails is its run's error, not the end of the sweep; a stop is said.

Ray is not installed in the dev environment: these tests give the sweep a stand-in `ray` module
(tests/replay/ray_standin.py) that runs each task in this process, and a test says which task's worker dies, or
when a stop comes. The same `run_one` runs each task, as on a cluster.
"""

from __future__ import annotations

import csv
import signal
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.replay.sweep import RAY_TASK_FAILED
from tests.conftest import ProjectCopy
from tests.replay.ray_standin import Standin
from tests.replay.test_sweep import _args, _data, _sweep

GRID = "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.5, 0.8]\n"


@pytest.fixture
def ray(monkeypatch: pytest.MonkeyPatch) -> Standin:
    standin = Standin()
    monkeypatch.setitem(sys.modules, "ray", standin.module())
    return standin


def _sweep_args(project: ProjectCopy, tmp_path: Path) -> list[str]:
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    return _args(project, data, sweep, "--ray", "local", "--out", str(tmp_path / "out"))


def test_a_task_whose_worker_dies_is_its_runs_error_and_the_sweep_finishes(
    momentum_project: ProjectCopy, tmp_path: Path, ray: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ray.get` of a task whose worker died raised out of the sweep: a traceback, no sweep.csv, the finished runs'
    rows lost (the local pool goes on). Now its row holds the error (the first line of Ray's message: the rest
    names processes and addresses), the other runs finish, sweep.csv is written, and the command exits 2. Ray does
    not retry the task (`max_retries=0`): a retry would meet the dead attempt's files in the run's folder."""
    ray.crash = {"run-002"}
    assert main(_sweep_args(momentum_project, tmp_path)) == 2
    said = capsys.readouterr()
    assert "Traceback" not in said.err, said.err
    rows = {row["run"]: row for row in csv.DictReader((tmp_path / "out" / "sweep.csv").open(encoding="utf-8"))}
    assert sorted(rows) == ["run-001", "run-002", "run-003"]
    assert rows["run-002"]["error"] == (
        f"{RAY_TASK_FAILED} (WorkerCrashedError: The worker died unexpectedly while executing this task. Check "
        "python-core-worker-*.log files for more information.)"
    )
    assert all(rows[run]["error"] == "" and int(rows[run]["trades"]) > 0 for run in ("run-001", "run-003"))
    assert ray.options == [{"max_retries": 0}] and ray.started == ["run-001", "run-002", "run-003"]
    assert f"[2/3] run-002: error: {RAY_TASK_FAILED}" in said.out


def test_a_lost_cluster_is_the_error_of_every_run_not_finished(
    momentum_project: ProjectCopy, tmp_path: Path, ray: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ray.wait` itself raising (the cluster gone) was a traceback too: the runs finished keep their rows, the
    others get the error, and sweep.csv is written with them all."""
    ray.cluster_lost_after = 1
    assert main(_sweep_args(momentum_project, tmp_path)) == 2
    assert "Traceback" not in capsys.readouterr().err
    rows = {row["run"]: row for row in csv.DictReader((tmp_path / "out" / "sweep.csv").open(encoding="utf-8"))}
    assert rows["run-001"]["error"] == ""
    lost = f"{RAY_TASK_FAILED} (RaySystemError: System error: the cluster at 10.0.0.1:6379 is gone)"
    assert rows["run-002"]["error"] == rows["run-003"]["error"] == lost


def test_a_cluster_that_cannot_be_reached_is_every_runs_error_not_a_traceback(
    momentum_project: ProjectCopy, tmp_path: Path, ray: Standin, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ray.init` raising (a wrong address, a cluster down) was a traceback after the runs' folders were written:
    every run gets the error, sweep.csv says so, the command exits 2."""
    ray.unreachable = True
    assert main(_sweep_args(momentum_project, tmp_path)) == 2
    assert "Traceback" not in capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "out" / "sweep.csv").open(encoding="utf-8")))
    said = f"{RAY_TASK_FAILED} (ConnectionError: Could not find any running Ray instance at local)"
    assert len(rows) == 3 and all(row["error"] == said for row in rows) and ray.started == []


@pytest.mark.parametrize(("signum", "line", "code"), [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "interrupted", 130)])
def test_ctrl_c_or_sigterm_cancels_the_tasks_not_finished_and_says_how_many_ran(
    momentum_project: ProjectCopy,
    tmp_path: Path,
    ray: Standin,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    line: str,
    code: int,
) -> None:
    """The local pool's stop, on Ray: SIGTERM ended the command where it stood (the default action), and Ctrl-C
    was a KeyboardInterrupt out of `ray.wait`, the cluster's tasks left running into the folder. Now every task
    not finished is cancelled (force: a running one is ended), one line says how many runs finished, sweep.csv is
    not written, and the exit is 128 + the signal's number."""

    def stop_at_the_second(run: str) -> None:
        if run == "run-002":
            signal.raise_signal(signum)

    ray.before_run = stop_at_the_second
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal starts the command
    try:
        try:
            exit_code = main(_sweep_args(momentum_project, tmp_path))
        except SystemExit as exc:  # SIGTERM: the sweep's SystemExit(143), as the command's process exits
            exit_code = int(str(exc.code))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert exit_code == code
    err = capsys.readouterr().err
    assert f"{line}: the sweep stopped after 1 of 3 runs" in err and "Traceback" not in err, err
    assert ray.cancelled == [("run-002", True), ("run-003", True)]
    assert not (tmp_path / "out" / "sweep.csv").exists()
