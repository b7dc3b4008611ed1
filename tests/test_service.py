"""Running the engine as a service: `engine health`, the systemd unit and the Dockerfile.

The signal and lock behaviour a supervisor relies on is tested on real runs in tests/trading/test_run_command.py;
here: the health check's verdicts, and that the shipped unit and image say what the README promises.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.cli import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, main
from engine.core.lock import RunLock
from engine.core.store import StateStore
from engine.paths import PROJECT_ROOT
from engine.trading.runner import LAST_RUN_KEY, LAST_TICK_KEY
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import engine

UNIT = PROJECT_ROOT / "deploy" / "trading-hydra.service"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"


def health(project: ProjectCopy, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["health", *args, "--config", str(project.config), "--machines", str(project.machines),
                 "--rules", str(project.rules), "--state-db", str(project.root / "s.db")])  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one line, for a supervisor's log
    return code, out


def real_time_state(project: ProjectCopy, last_tick: datetime | None) -> None:
    store = StateStore(project.root / "s.db")
    store.set_meta("broker", "alpaca")
    if last_tick is not None:
        store.set_meta(LAST_TICK_KEY, last_tick.isoformat())
    store.close()


def test_health_without_a_state_file_is_unhealthy_and_creates_nothing(project: ProjectCopy, capsys) -> None:
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith("unhealthy: no state file")
    assert list(project.root.glob("s.db*")) == []


def test_health_before_the_first_tick_is_unhealthy(project: ProjectCopy, capsys) -> None:
    real_time_state(project, None)
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and "no tick recorded" in out


def test_health_is_the_age_of_the_last_tick_against_max_age(project: ProjectCopy, capsys) -> None:
    now = datetime.now(timezone.utc)
    real_time_state(project, now - timedelta(seconds=20))
    code, out = health(project, capsys)
    assert code == EXIT_OK and out.startswith("healthy: last tick") and "(max age 45 s)" in out  # 3 x 5 s + 30 s
    code, out = health(project, capsys, "--max-age", "10")
    assert code == EXIT_FAILURE and out.startswith("unhealthy:") and "(max age 10 s)" in out
    real_time_state(project, now - timedelta(minutes=10))
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith("unhealthy:") and "age 60" in out


def test_a_last_tick_in_the_future_is_unhealthy_not_age_0(project: ProjectCopy, capsys) -> None:
    """A last tick ahead of the clock (the clock moved back, a state file from a machine whose clock ran ahead) says
    nothing about whether the loop is alive: read as age 0 it was "healthy" for as long as the skew lasts, a dead
    engine included. A skew within max-age is a tick just written."""
    now = datetime.now(timezone.utc)
    real_time_state(project, now + timedelta(days=180))
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith("unhealthy: last tick") and "ahead of this machine's clock" in out
    real_time_state(project, now + timedelta(seconds=5))
    code, out = health(project, capsys)
    assert code == EXIT_OK and out.startswith("healthy: last tick") and "age 0 s" in out


def test_the_default_max_age_follows_the_loop_interval(project: ProjectCopy, capsys) -> None:
    project.replace("config/settings.yaml", "loop_interval_seconds: 5", "loop_interval_seconds: 20")
    real_time_state(project, datetime.now(timezone.utc) - timedelta(seconds=60))
    code, out = health(project, capsys)
    assert code == EXIT_OK and "(max age 90 s)" in out


MID_EDIT = {  # a file the running engine read at its start, as it reads while someone is editing it
    "rules": ("rules/guards.yaml", "guards:\n", "guards:\n  broken: [\n"),
    "machine": ("machines/momentum.yaml", "states:", "states: [oops\n"),
    "bots": ("config/bots.yaml", "bots:", "bots: [oops\n"),
}


@pytest.mark.parametrize("edited", sorted(MID_EDIT))
def test_health_judges_the_state_whatever_file_is_mid_edit(project: ProjectCopy, capsys, edited: str) -> None:
    """The running engine read every file at its start and never reads them again: a rule, machine or bots.yaml
    file mid-edit says nothing about it. `health` validated them all and exited 2 while the engine ticked, and the
    image's HEALTHCHECK called it unhealthy, to be restarted into files that refuse to start. It reads settings.yaml
    (the state file, the loop interval) and the state file alone: 0 by a recent tick, 1 by a stale one."""
    project.replace(*MID_EDIT[edited])
    now = datetime.now(timezone.utc)
    real_time_state(project, now - timedelta(seconds=20))
    code, out = health(project, capsys)
    assert code == EXIT_OK and out.startswith("healthy: last tick") and "(max age 45 s)" in out
    real_time_state(project, now - timedelta(minutes=10))
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith("unhealthy:")


def test_health_without_settings_yaml_needs_the_state_file_and_the_max_age(project: ProjectCopy, capsys) -> None:
    """settings.yaml names the state file and the loop interval: mid-edit, `health` cannot tell them and says so
    (exit 2, as for any file it cannot read), unless --state-db and --max-age are both given; then it judges the
    state as ever (the time in UTC: the zone is settings.yaml's too)."""
    project.replace("config/settings.yaml", "system:", "system: [oops\n")
    real_time_state(project, datetime.now(timezone.utc) - timedelta(seconds=20))
    code = main(["health", "--config", str(project.config), "--state-db", str(project.root / "s.db")])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID and "give --state-db PATH and --max-age SECONDS" in err and "settings.yaml" in err
    code, out = health(project, capsys, "--max-age", "45")
    assert code == EXIT_OK and out.startswith("healthy: last tick") and "+00:00" in out
    code, out = health(project, capsys, "--max-age", "5")
    assert code == EXIT_FAILURE and out.startswith("unhealthy:")


@pytest.mark.parametrize("max_age", ["0", "-5", "soon", "inf"])
def test_health_refuses_a_max_age_that_is_not_a_positive_duration(project: ProjectCopy, max_age: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["health", "--max-age", max_age, "--state-db", str(project.root / "s.db")])
    assert exited.value.code == EXIT_INVALID


def test_health_of_a_simulation_is_on_the_simulated_clock(project: ProjectCopy, capsys) -> None:
    assert engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    store = StateStore(project.root / "s.db")  # as it reads while that run is still going: no end, its pid in the lock
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": "2026-11-23T14:30:00+00:00", "broker": "sim"}))
    store.close()
    with RunLock(project.root / "s.db"):  # held, its pid written, as by the engine that runs on it
        code, out = health(project, capsys)  # by the wall clock this tick is long past; by the simulation's, it is now
    assert code == EXIT_OK
    assert out == "healthy: last tick 2026-11-23T06:30:10-08:00, age 0 s on the simulated clock (max age 45 s)\n"


def test_a_run_that_ended_is_unhealthy_however_recent_its_last_tick(project: ProjectCopy, capsys) -> None:
    """A simulation's tick age is always 0 and a real-time run's last tick stays recent for max-age after it
    stopped: both said "healthy" for a run that had ended (a completed day, a SIGTERM, an error), a simulation's
    for ever. The run's recorded end says it is not running."""
    assert engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE
    assert out.startswith("unhealthy: the last run ended 2026-11-23T06:30:15-08:00 (completed); last tick 2026-11-23T06:30:10")
    now = datetime.now(timezone.utc)
    real_time_state(project, now - timedelta(seconds=5))
    store = StateStore(project.root / "s.db")
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": (now - timedelta(hours=1)).isoformat(),
                                             "ended_at": now.isoformat(), "reason": "SIGTERM\x1b[2J"}))  # fmt: skip
    store.close()
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith("unhealthy: the last run ended ") and "(SIGTERM\\x1b[2J)" in out


def test_a_simulation_no_engine_runs_on_is_unhealthy(project: ProjectCopy, capsys) -> None:
    """A simulation killed mid-run (kill -9, the machine stopped) records no end, and its tick age is 0 for ever:
    with no engine holding the state file it is not running."""
    assert engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    store = StateStore(project.root / "s.db")
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": "2026-11-23T14:30:00+00:00", "broker": "sim"}))
    store.close()
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE
    assert out.startswith("unhealthy: no engine is running on") and "stopped without a summary" in out


# --- the systemd unit --------------------------------------------------------------------------------------


def unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            assert key.strip() not in settings, f"{key} set twice"
            settings[key.strip()] = value.strip()
    return settings


def test_the_unit_stops_with_sigterm_restarts_on_failure_and_trades_paper() -> None:
    unit = unit_settings()
    assert unit["Type"] == "simple" and unit["KillSignal"] == "SIGTERM"
    assert int(unit["TimeoutStopSec"]) >= 30  # a tick stuck on a slow broker ends within a few request timeouts
    assert unit["Restart"] == "on-failure" and unit["RestartPreventExitStatus"] == "2"  # a bad config stays down
    # a stop asked for twice stays a stop, whichever of the README's three stop signals asked (129: SIGHUP)
    assert sorted(unit["SuccessExitStatus"].split()) == ["129", "130", "143"]
    root = unit["WorkingDirectory"]
    assert unit["EnvironmentFile"] == f"{root}/.env"
    command = shlex.split(unit["ExecStart"])
    assert command == [f"{root}/.venv/bin/python", "-m", "engine", "run", "--broker", "alpaca"]  # no --live
    assert set(unit["ReadWritePaths"].split()) == {f"{root}/state", f"{root}/logs"}  # where the settings put them


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """Verified with the repository in place of /opt/trading-hydra, so that ExecStart's interpreter exists."""
    root = unit_settings()["WorkingDirectory"]
    if not (PROJECT_ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the repository")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(root, str(PROJECT_ROOT)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


# --- the Dockerfile ----------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.replace("\\\n", " ").splitlines()
        if line.strip()
    ]


def test_the_image_runs_paper_trading_stops_with_sigterm_and_checks_the_last_tick() -> None:
    steps = instructions()
    found = dict(steps)
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert found["STOPSIGNAL"] == "SIGTERM"
    assert "python -m engine health" in found["HEALTHCHECK"] and found["HEALTHCHECK"].endswith("|| exit 1")
    assert found["CMD"] == '["python", "-m", "engine", "run", "--broker", "alpaca"]'  # no --live
    assert "pip install -e ." in found["RUN"]  # the engine finds schemas/ and the shipped files beside its package
    assert found["USER"] != "root"


def test_the_image_gets_what_it_copies_and_never_the_keys_or_the_state() -> None:
    ignored = [line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]

    def excluded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in ignored)

    copied = [source for kind, args in instructions() if kind == "COPY" for source in args.split()[:-1]]
    assert copied and all((PROJECT_ROOT / source).exists() and not excluded(source) for source in copied)
    for secret_or_state in (".env", "state", "logs", ".venv", ".git"):
        assert excluded(secret_or_state), secret_or_state
    assert {"engine", "schemas", "config", "machines", "rules", "pyproject.toml"} <= set(copied)


def in_image(path: Path) -> Path | None:
    """Where the image's COPY steps put a file of the repository (`path` relative to it), or None. A folder copied
    lands at its target; a file at its target, or inside it when the target ends with `/`; WORKDIR is /app."""
    for kind, args in instructions():
        if kind != "COPY":
            continue
        *sources, target = args.split()
        for source in map(Path, sources):
            into = Path("/app", target)
            if (PROJECT_ROOT / source).is_dir() and source in path.parents:
                return into / path.relative_to(source)
            if source == path:
                return into / path.name if target.endswith("/") or len(sources) > 1 else into
    return None


def test_the_image_holds_the_files_the_engine_reads_beside_its_package() -> None:
    """`report --prompt` reads tools/analyst_prompt.txt beside the package: the image copied no tools/, so
    `docker exec hydra python -m engine report --prompt` (a README command) was refused, "cannot read"."""
    from engine.operator.report import PROMPT_FILE

    assert in_image(Path("engine/cli.py")) == Path("/app/engine/cli.py")  # the package is at /app/engine
    wanted = PROMPT_FILE.relative_to(PROJECT_ROOT)
    assert in_image(wanted) == Path("/app") / wanted


@pytest.mark.parametrize("saved", ["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-12:00"])
def test_a_last_tick_at_the_calendars_ends_is_unhealthy_in_one_line(project: ProjectCopy, capsys, saved: str) -> None:
    """A hand-edited or damaged last tick at the ends of the calendar reads, but moved into system.timezone it left
    the years Python has: health ended in an OverflowError traceback. It is shown as saved, and unhealthy (long
    past, or far ahead of the clock)."""
    real_time_state(project, None)
    store = StateStore(project.root / "s.db")
    store.set_meta(LAST_TICK_KEY, saved)
    store.close()
    code, out = health(project, capsys)
    assert code == EXIT_FAILURE and out.startswith(f"unhealthy: last tick {saved}")
