"""`python -m engine data fetch` killed, out of disk or failed by the data API mid-way, then run again (issue:
history fidelity, class B). Whatever happened, the folder is readable as it stands (no half-written file), the
exit code follows the README's contract, and the same command run again asks only for what is missing and ends
with exactly the bytes of a fetch that was never interrupted. Each fetch is a subprocess against the in-process
emulator on 127.0.0.1."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.data.dataset import DataSet
from engine.data.files import last_timestamp
from tests.brokers.conftest import KEY, SECRET
from tests.conftest import ProjectCopy
from tests.data.conftest import contents

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
FETCH = ["data", "fetch", "--symbols", "AAPL,BTC/USD", "--from", "2026-10-01", "--to", "2026-10-31", "--timeframe", "1Min"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(SimExchange(ManualClock(NOW), seed=7), key=KEY, secret=SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ProjectCopy:
    """The bots that trade what is fetched: mom_AAPL and crypto_core on BTC/USD alone (for the backtest)."""
    copy = ProjectCopy(tmp_path_factory.mktemp("fetch") / "project")
    copy.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    copy.replace("config/bots.yaml", 'pairs: ["BTC/USD", "ETH/USD"]', 'pairs: ["BTC/USD"]')
    return copy


def env_for(emulator: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "TRADING_HYDRA_FAILPOINT"))}
    return {**env, "ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_DATA_BASE_URL": emulator.url,
            "PYTHONDONTWRITEBYTECODE": "1", **extra}  # fmt: skip


def engine(project: ProjectCopy, emulator: Emulator, *args: str, file_limit: int | None = None,
           **extra: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    def limit() -> None:  # a disk that fills: past `file_limit` bytes a write fails with EFBIG (File too large)
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    return subprocess.run([sys.executable, "-m", "engine", *args, *files], capture_output=True, text=True,
                          cwd=project.root, env=env_for(emulator, **extra), timeout=120, preexec_fn=limit)  # fmt: skip


@pytest.fixture(scope="module")
def whole(project: ProjectCopy, emulator: Emulator) -> dict[str, bytes]:
    """The folder one uninterrupted fetch makes."""
    result = engine(project, emulator, *FETCH, "--out", "whole")
    assert result.returncode == 0, result.stderr
    made = contents(project.root / "whole")
    assert sorted(made) == [".fetch.lock", "bars/AAPL.parquet", "bars/BTC-USD.parquet"]
    return made


@pytest.fixture
def emulator_clean(emulator: Emulator) -> Iterator[Emulator]:
    emulator.faults.clear()
    emulator.requests.clear()
    yield emulator
    emulator.faults.clear()


def bar_starts(emulator: Emulator) -> list[tuple[str, str]]:
    return [(r.query["symbols"][0], r.query["start"][0]) for r in emulator.requests if r.path.endswith("/bars")]


def rerun_completes(project: ProjectCopy, emulator: Emulator, out: str, whole: dict[str, bytes]) -> None:
    """The folder as left is readable; the same command again asks only from the last stored bar on (which it
    checks), and ends with exactly the bytes of the uninterrupted fetch (no leftover temporary file either)."""
    folder = project.root / out
    DataSet.open(folder)  # readable as it stands: raises DataError otherwise
    stored = {s: last_timestamp(folder, "bars", s) for s in ("AAPL", "BTC/USD")}
    emulator.requests.clear()
    again = engine(project, emulator, *FETCH, "--out", out)
    assert again.returncode == 0, again.stderr
    firsts: dict[str, str] = {}
    for symbol, start in bar_starts(emulator):
        firsts.setdefault(symbol, start)
    for symbol, last in stored.items():
        if last is not None and symbol in firsts:  # it resumed at the last stored bar, not from the start
            assert datetime.fromisoformat(firsts[symbol]) == last
    assert contents(folder) == whole


def test_a_kill_while_writing_a_file_leaves_a_readable_folder_and_the_rerun_completes_it(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes]
) -> None:
    """SIGKILL between writing a window's file and renaming it into place (the 7th write: BTC/USD's second week).
    The readers ignored the hidden temporary file, but it stayed for ever: the folder fetched again was never
    the folder an uninterrupted fetch makes. The next write of that file now deletes a dead writer's leftovers."""
    killed = engine(project, emulator_clean, *FETCH, "--out", "killed", TRADING_HYDRA_FAILPOINT="data_before_rename:7")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = project.root / "killed"
    leftovers = [p.name for p in (folder / "bars").iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".BTC-USD.parquet.")
    # the folder as the kill left it is what a backtest reads (two days of it, to keep the test short)
    backtest = engine(project, emulator_clean, "backtest", "--data", "killed", "--from", "2026-10-05", "--to",
                      "2026-10-06", "--out", "bt", "--cash", "50000")  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    rerun_completes(project, emulator_clean, "killed", whole)


def test_a_kill_while_waiting_for_a_page_loses_nothing_written(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while a page is on its way (the emulator holds the 8th request until the child is dead)."""
    import threading

    arrived, released = threading.Event(), threading.Event()
    original = emulator_clean.take_fault
    count = {"bars": 0}

    def hold(method: str, path: str) -> Fault | None:
        if path.endswith("/bars"):
            count["bars"] += 1
            if count["bars"] == 8:
                arrived.set()
                released.wait(60)
        return original(method, path)

    monkeypatch.setattr(emulator_clean, "take_fault", hold)
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    child = subprocess.Popen([sys.executable, "-m", "engine", *FETCH, "--out", "held", *files], cwd=project.root,
                             env=env_for(emulator_clean), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert arrived.wait(60)
        child.kill()
        assert child.wait(60) == -signal.SIGKILL
    finally:
        released.set()
        if child.poll() is None:
            child.kill()
            child.wait()
    monkeypatch.setattr(emulator_clean, "take_fault", original)
    rerun_completes(project, emulator_clean, "held", whole)


def test_a_full_disk_exits_1_with_one_line_and_the_rerun_completes_it(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes]
) -> None:
    """A write past the file size limit failed with an OSError traceback out of the fetch (exit 1 only because
    Python exits 1 on any traceback). Now it is a FetchError: one line naming the symbol and the file."""
    limit = len(whole["bars/BTC-USD.parquet"]) // 2  # AAPL fits; BTC/USD's file outgrows it half-way
    assert len(whole["bars/AAPL.parquet"]) < limit
    full = engine(project, emulator_clean, *FETCH, "--out", "full", file_limit=limit)
    assert full.returncode == 1, full.stderr
    assert full.stderr.startswith("error: BTC/USD: cannot write ") and "File too large" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr and "the same command resumes" in full.stderr
    folder = project.root / "full"
    assert not [p for p in (folder / "bars").iterdir() if p.name.startswith(".")]  # the temporary file is gone
    assert last_timestamp(folder, "bars", "BTC/USD") is not None  # the windows before it stay
    rerun_completes(project, emulator_clean, "full", whole)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_exits_1_with_one_line(project: ProjectCopy, emulator_clean: Emulator) -> None:
    folder = project.root / "readonly"
    (folder / "bars").mkdir(parents=True)
    (folder / "bars").chmod(0o555)
    try:
        result = engine(project, emulator_clean, *FETCH, "--out", "readonly")
    finally:
        (folder / "bars").chmod(0o755)
    assert result.returncode == 1 and result.stderr.startswith("error: AAPL: cannot write "), result.stderr
    assert "Permission denied" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault(status=500), "the data API answered 500"),
        (Fault(disconnect=True), "ConnectionError"),
        (Fault(status=200, body="<html>maintenance</html>", content_type="text/html"), "JSONDecodeError"),
        (Fault(patch={"bars.BTC/USD.7.l": -3.0}), "the data API sent a bar at 2026-10-15T04:07:00Z that has low -3.0"),
        (Fault(patch={"next_page_token": "QlRDL1VTRHwx"}, times=0), "next_page_token 'QlRDL1VTRHwx' a second time"),
        (Fault(patch={"bars.BTC/USD.3.v": True}), "whose 'v' is true, a JSON boolean, not a number"),  # volume 1.0
    ],
    ids=["500", "disconnect", "html", "bad-bar", "token-repeats", "boolean-price"],
)
def test_the_data_api_failing_mid_way_exits_1_and_the_rerun_completes_it(
    project: ProjectCopy, emulator_clean: Emulator, whole: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
    fault: Fault, says: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    """From BTC/USD's third week on (its 5th page; AAPL's 5 windows are one page each). A bad bar was a DataError
    (exit 2, 'invalid input'); a repeated token made the fetch ask for the same page for ever."""
    original = emulator_clean.take_fault
    count = {"bars": 0}

    def failing(method: str, path: str) -> Fault | None:
        if path.endswith("/bars"):
            count["bars"] += 1
            if count["bars"] == 10 or (fault.times == 0 and count["bars"] > 10):
                return fault
        return original(method, path)

    monkeypatch.setattr(emulator_clean, "take_fault", failing)
    out = f"failed-{request.node.callspec.id}"
    result = engine(project, emulator_clean, *FETCH, "--out", out)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: BTC/USD: ") and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert last_timestamp(project.root / out, "bars", "BTC/USD") == datetime(2026, 10, 15, 3, 59, tzinfo=timezone.utc)
    monkeypatch.setattr(emulator_clean, "take_fault", original)
    rerun_completes(project, emulator_clean, out, whole)


def test_the_data_apis_words_are_printed_on_one_line(project: ProjectCopy, emulator_clean: Emulator) -> None:
    """A 500 whose text (a proxy's page, not JSON) holds a newline and an escape sequence was printed as it came: a
    second line of the server's making under `error:` (here one that looks like the engine's own), and a
    clear-screen on the terminal. Both are shown escaped now, on the error's one line."""
    fault = Fault(status=500, body="busy\nerror: none \x1b[2J", content_type="text/plain", times=0)
    emulator_clean.faults.append(fault)
    result = engine(project, emulator_clean, *FETCH, "--out", "one-line")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: AAPL: the data API answered 500: "), result.stderr
    assert "busy\\nerror: none \\x1b[2J" in lines[0] and "\x1b" not in result.stderr
