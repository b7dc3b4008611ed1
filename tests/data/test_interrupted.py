"""The data commands interrupted, raced and pointed at folders in odd states, through the real commands in
subprocesses: two fetches into one folder at once, a fetch resumed after the history it continues changed (or
with another timeframe), a stored file cut short, an `--out` that is or lies under a file, Ctrl-C at the moment a
window's file is put in place. After each, every file is whole or told to be broken, the exit code follows the
README (0 ok, 1 a failure of the moment, 2 bad input, 130 Ctrl-C), and the next command works or says what to do.
(Kills at failpoints, a full disk and a failing data API are in test_fetch_faults.py; recordings in
test_recorder_crash.py and tests/test_backtest_command.py.)"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Emulator, Fault, History
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.data.fetch import LOCK_FILE, FetchError, fetch, history_clients
from engine.data.files import read_bars
from tests.brokers.conftest import KEY, SECRET
from tests.conftest import ProjectCopy
from tests.data.conftest import contents

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
# AAPL: one window; BTC/USD: two (a week of minute bars is one window): about a second a fetch
FETCH = ["data", "fetch", "--symbols", "AAPL,BTC/USD", "--from", "2026-10-01", "--to", "2026-10-09"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(SimExchange(ManualClock(NOW), seed=7), key=KEY, secret=SECRET) as running:
        yield running


@pytest.fixture
def emulator_clean(emulator: Emulator) -> Iterator[Emulator]:
    emulator.faults.clear()
    emulator.requests.clear()
    history = emulator.history
    yield emulator
    emulator.faults.clear()
    emulator.history = history


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ProjectCopy:
    copy = ProjectCopy(tmp_path_factory.mktemp("interrupted") / "project")
    copy.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    copy.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', 'pairs: ["BTC/USD"]')
    return copy


def files(project: ProjectCopy) -> list[str]:
    return ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]


def env_for(emulator: Emulator | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "TRADING_HYDRA_FAILPOINT"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if emulator is not None:
        env.update({"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_DATA_BASE_URL": emulator.url})
    return env


def engine(project: ProjectCopy, emulator: Emulator | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args, *files(project)], capture_output=True, text=True,
                          cwd=project.root, env=env_for(emulator), timeout=120)  # fmt: skip


def fetch_here(emulator: Emulator, folder: Path, symbols: tuple[str, ...] = ("AAPL", "BTC/USD"), to: date = date(2026, 10, 9),
               timeframe: str = "1Min") -> int:  # fmt: skip
    """`FETCH` in this process (the command's own code, without the second it takes to start): rows written."""
    clients = history_clients(KEY, SECRET, data_base_url=emulator.url)
    return fetch(clients, list(symbols), date(2026, 10, 1), to, timeframe, folder, clock=ManualClock(NOW)).rows


@pytest.fixture(scope="module")
def whole(project: ProjectCopy, emulator: Emulator) -> dict[str, bytes]:
    """The folder one uninterrupted fetch makes."""
    result = engine(project, emulator, *FETCH, "--out", "whole")
    assert result.returncode == 0, result.stderr
    return contents(project.root / "whole")


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


# --- two fetches into one folder -----------------------------------------------------------------------------------


def test_a_second_fetch_into_a_folder_being_fetched_is_refused(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both used to run: each read a file, appended its window and renamed it over the other's, so a window one
    wrote could vanish under the other's rename and leave a hole nobody saw (or the slower one stopped with 'rows
    older than what is there', exit 2, as if the user's input were wrong). The folder is now locked while a fetch
    runs; the second is refused before it asks for anything, and the first ends as if alone."""
    arrived, released = threading.Event(), threading.Event()
    original = emulator_clean.take_fault

    def hold_the_first_request(method: str, path: str) -> Fault | None:
        if path.endswith("/bars") and not arrived.is_set():
            arrived.set()
            released.wait(60)
        return original(method, path)

    monkeypatch.setattr(emulator_clean, "take_fault", hold_the_first_request)
    first = subprocess.Popen([sys.executable, "-m", "engine", *FETCH, "--out", "both", *files(project)], cwd=project.root,
                             env=env_for(emulator_clean), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert arrived.wait(60)
        second = engine(project, emulator_clean, *FETCH, "--out", "both")
    finally:
        released.set()
        out, err = first.communicate(timeout=120)
    one_line_error(second, 1)
    assert second.stderr.startswith("error: another fetch is writing to both now (it holds both/.fetch.lock)"), second.stderr
    assert first.returncode == 0, err
    asked = len([r for r in emulator_clean.requests if r.path.endswith("/bars")])
    assert f"in both: {asked} requests" in out  # the first fetch's alone
    assert contents(project.root / "both") == whole
    assert fetch_here(emulator_clean, project.root / "both") == 0  # one after the other is fine: the lock went


def test_a_fetch_killed_outright_leaves_its_folder_unlocked(project: ProjectCopy, emulator_clean: Emulator, tmp_path: Path) -> None:
    """The lock is the kernel's: what holds it dies with the process, however it dies; the file stays, empty."""
    folder = tmp_path / "data"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | "
                               "os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
                               str(folder / LOCK_FILE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        clients = history_clients(KEY, SECRET, data_base_url=emulator_clean.url)
        with pytest.raises(FetchError, match="another fetch is writing to"):
            fetch(clients, ["AAPL"], date(2026, 10, 1), date(2026, 10, 2), "1Min", folder)
        assert not emulator_clean.requests and not (folder / "bars").exists()
        holder.kill()
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert fetch(clients, ["AAPL"], date(2026, 10, 1), date(2026, 10, 2), "1Min", folder).rows == 780
    with (folder / LOCK_FILE).open("rb") as lock:  # released at the end of the fetch
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# --- a resume that would join two histories ------------------------------------------------------------------------


def test_a_fetch_resumed_after_the_history_changed_is_refused_not_joined(
    project: ProjectCopy, emulator_clean: Emulator
) -> None:
    """A stored file is only ever appended to, and the resume asked only for the bars after it: bars of a history
    corrected since (here: another seed of the emulator's model; live, a correction, or another feed) were joined
    to the stored ones without a word, one file of two histories. The resume now asks for the last stored bar
    again and checks it came back as stored."""
    fetch_here(emulator_clean, project.root / "changed")
    before = contents(project.root / "changed")
    emulator_clean.history = History(8)
    later = ["data", "fetch", "--symbols", "AAPL,BTC/USD", "--from", "2026-10-01", "--to", "2026-10-16"]
    resumed = engine(project, emulator_clean, *later, "--out", "changed")
    one_line_error(resumed, 2)
    assert resumed.stderr.startswith("changed/bars/AAPL.parquet:0:0: AAPL: the data API's bar at 2026-10-09T19:59:00Z is "
                                     "not the one stored: stored open "), resumed.stderr  # fmt: skip
    assert "Nothing was written: fetch into a new --out, or move changed/bars/AAPL.parquet away" in resumed.stderr
    assert contents(project.root / "changed") == before  # nothing joined, nothing half-written
    assert fetch_here(emulator_clean, project.root / "changed-fresh", ("AAPL",), to=date(2026, 10, 16))  # what it says works


def test_a_fetch_resumed_with_another_timeframe_is_refused(project: ProjectCopy, emulator_clean: Emulator) -> None:
    """Hour bars were appended after minute bars in the same file (the file has no timeframe of its own)."""
    fetch_here(emulator_clean, project.root / "frames", ("AAPL",))
    before = contents(project.root / "frames")
    hourly = engine(project, emulator_clean, "data", "fetch", "--symbols", "AAPL", "--from", "2026-10-01", "--to",
                    "2026-10-16", "--timeframe", "1Hour", "--out", "frames")  # fmt: skip
    one_line_error(hourly, 2)
    assert "AAPL: the data API has no bar at 2026-10-09T19:59:00Z, where the stored bars end" in hourly.stderr
    assert contents(project.root / "frames") == before


def test_a_resume_checks_the_seam_without_an_extra_request(emulator_clean: Emulator, tmp_path: Path) -> None:
    clients = history_clients(KEY, SECRET, data_base_url=emulator_clean.url)
    fetch(clients, ["AAPL"], date(2026, 10, 1), date(2026, 10, 2), "1Min", tmp_path / "parts")
    emulator_clean.requests.clear()
    resumed = fetch(clients, ["AAPL"], date(2026, 10, 1), date(2026, 10, 5), "1Min", tmp_path / "parts")
    assert resumed.requests == 1 and resumed.rows == 390  # Monday's session; the seam bar is not written twice
    fetch(clients, ["AAPL"], date(2026, 10, 1), date(2026, 10, 5), "1Min", tmp_path / "whole")
    assert read_bars(tmp_path / "parts", "AAPL") == read_bars(tmp_path / "whole", "AAPL")


# --- stored files broken, --out of the wrong kind ------------------------------------------------------------------


def test_a_stored_file_cut_short_names_the_file_and_what_to_do(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes]
) -> None:
    """A file cut short (copied while written, a disk that lost its end): the fetch and the backtest both refuse it,
    naming it (exit 2); the fetch also says how to go on, and doing so ends with the uninterrupted fetch's bytes."""
    folder = project.root / "cut"
    for name, data in whole.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data[: len(data) // 2] if name == "bars/BTC-USD.parquet" else data)
    resumed = engine(project, emulator_clean, *FETCH, "--out", "cut")
    one_line_error(resumed, 2)
    assert resumed.stderr.startswith("cut/bars/BTC-USD.parquet:0:0: not a whole Parquet file"), resumed.stderr
    assert "move cut/bars/BTC-USD.parquet away (or delete it), and the same command fetches BTC/USD afresh" in resumed.stderr
    backtest = engine(project, None, "backtest", "--data", "cut", "--out", "bt-cut")
    one_line_error(backtest, 2)
    assert "cut/bars/BTC-USD.parquet:0:0: not a whole Parquet file" in backtest.stderr
    (folder / "bars" / "BTC-USD.parquet").unlink()
    fetch_here(emulator_clean, folder)
    assert contents(folder) == whole


def test_an_out_that_is_or_lies_under_a_file_is_said_so(project: ProjectCopy, emulator_clean: Emulator) -> None:
    """It was `a-file/data/bars/AAPL:0:0: cannot be read: Not a directory`: a path that names nothing there."""
    (project.root / "a-file").write_text("not a folder\n")
    result = engine(project, emulator_clean, *FETCH, "--out", "a-file/data")
    one_line_error(result, 2)
    assert result.stderr == "error: a-file/data cannot be a data folder (--out): a-file is a file\n"
    for out, says in [("a-file", "a-file is a file: the data folder (--out) is a folder, which holds bars/"),
                      ("a-file/deeper/data", "a-file/deeper/data cannot be a data folder (--out): a-file is a file")]:
        with pytest.raises(ValueError) as refused:
            fetch_here(emulator_clean, project.root / out)
        assert str(refused.value) == says.replace("a-file", str(project.root / "a-file"))
    assert not emulator_clean.requests
    assert (project.root / "a-file").read_text() == "not a folder\n"


# --- Ctrl-C -----------------------------------------------------------------------------------------------------------

# The real command, with a Ctrl-C (or the SIG named in the environment) sent to itself at the Nth window put in place
# (between writing the new file and renaming it over the old one): the failpoint a kill test uses, made to send
# SIGINT or SIGTERM instead of SIGKILL.
INTERRUPTED_AT = """
import os, signal, sys
import engine.core.failpoints as failpoints
hits = 0
def reach(name):
    global hits
    if name == "data_before_rename":
        hits += 1
        if hits == int(os.environ["NTH"]):
            os.kill(os.getpid(), getattr(signal, os.environ.get("SIG", "SIGINT")))
failpoints.reach = reach
from engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_ctrl_c_while_a_window_is_put_in_place_keeps_the_windows_before_and_resumes(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes], sig: str, code: int
) -> None:
    """A service's stop (SIGTERM), or the terminal closed (SIGHUP), as Ctrl-C: each killed the fetch outright, with
    no word and a temporary file left."""
    out = f"stopped-by-{sig}"  # a folder of its own: the project is shared by the module's tests
    env = {**env_for(emulator_clean), "NTH": "3", "SIG": sig}  # AAPL's two weeks are written; BTC/USD's first is not
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_AT, *FETCH, "--out", out, *files(project)],
                            capture_output=True, text=True, cwd=project.root, env=env, timeout=120)  # fmt: skip
    one_line_error(result, code)
    assert result.stderr == f"interrupted: the bars written stay in {out}; the same command resumes\n"
    folder = project.root / out
    assert sorted(contents(folder)) == [LOCK_FILE, "bars/AAPL.parquet"]  # no temporary file, no half of one
    assert contents(folder)["bars/AAPL.parquet"] == whole["bars/AAPL.parquet"]
    fetch_here(emulator_clean, folder)
    assert contents(folder) == whole


def test_ctrl_c_mid_backtest_says_what_it_kept_as_sigterm_does(project: ProjectCopy, emulator_clean: Emulator,
                                                                whole: dict[str, bytes]) -> None:  # fmt: skip
    folder = project.root / "bt-data"
    for name, data in whole.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    env = {**env_for(None), "NTH": "1"}  # writing trades.csv, the report's first file
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_AT, "backtest", "--data", "bt-data", "--from", "2026-10-05",
                             "--to", "2026-10-05", "--out", "bt-ctrl-c", *files(project)],
                            capture_output=True, text=True, cwd=project.root, env=env, timeout=120)  # fmt: skip
    one_line_error(result, 130)
    assert result.stderr.startswith("SIGINT: the backtest stopped; bt-ctrl-c/ keeps its state.db"), result.stderr



def test_a_fetch_whose_lock_file_is_deleted_locks_it_again_before_it_writes(tmp_path: Path) -> None:
    """A cleanup deleting hidden files under a running fetch let a second fetch lock a new file and write beside the
    first (chaos run). The first takes the lock again before each window; if a second took it meanwhile, the first
    stops before writing."""
    from engine.data.fetch import _folder_lock

    folder = tmp_path / "data"
    with _folder_lock(folder) as keep:
        (folder / LOCK_FILE).unlink()
        keep()  # nobody else took it: locked again
        with pytest.raises(FetchError, match="another fetch is writing to"), _folder_lock(folder):
            pass
        (folder / LOCK_FILE).unlink()
        # a second fetch, started while the file was gone
        with _folder_lock(folder), pytest.raises(FetchError, match="was deleted or replaced while this fetch ran"):
            keep()


@pytest.mark.parametrize("how", ["folder", "file", "replaced"])
def test_a_file_deleted_under_a_fetch_stops_it_rather_than_start_it_again_without_its_first_windows(
    emulator_clean: Emulator, tmp_path: Path, how: str
) -> None:
    """Each window's write reads the file and appends to it: deleted under the fetch (a cleanup's `rm -rf data/`),
    the next window started the file again from there, and the fetch said it had written every bar; a resumed
    fetch would then find nothing missing. It stops before the next window, saying what is gone."""
    import shutil

    from engine.data.fetch import FetchProgress

    folder = tmp_path / "data"
    file = folder / "bars" / "BTC-USD.parquet"

    def remove(step: FetchProgress) -> None:
        if file.exists() and step.symbol == "BTC/USD":
            if how == "folder":
                shutil.rmtree(folder)
            elif how == "file":
                file.unlink()
            else:
                file.rename(tmp_path / "elsewhere.parquet")
                shutil.copy(tmp_path / "elsewhere.parquet", file)

    clients = history_clients(KEY, SECRET, data_base_url=emulator_clean.url)
    with pytest.raises(FetchError, match=r"BTC-USD\.parquet was deleted or replaced while this fetch ran") as caught:
        fetch(clients, ["BTC/USD"], date(2026, 10, 1), date(2026, 10, 9), "1Min", folder, clock=ManualClock(NOW),
              progress=remove)  # fmt: skip
    assert not caught.value.kept
    assert how == "replaced" or not file.exists()  # nothing written after the hole
