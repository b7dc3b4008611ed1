"""`python -m engine data fetch`, `backtest` and `run --record` as a user types them (issue 9): in a subprocess,
against the in-process emulator's history on 127.0.0.1 and the simulated exchange."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.core.journal import read_events
from engine.data.dataset import DataSet
from engine.data.files import read_bars
from engine.paths import PROJECT_ROOT
from tests.brokers.conftest import KEY, SECRET
from tests.conftest import ProjectCopy
from tests.replay.conftest import only_momentum

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # Monday 10:00 in New York
MONDAY_OPEN = "2026-11-23T09:30:00-05:00"


def files(project: ProjectCopy) -> list[str]:
    return ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]


def without_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}


def engine(project: ProjectCopy, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args, *files(project)], capture_output=True, text=True,
                          cwd=project.root, env=env or without_keys(), timeout=120)  # fmt: skip


def state(project: ProjectCopy) -> list[str]:
    return ["--state-db", str(project.root / "s.db"), "--log", str(project.root / "app.jsonl")]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(SimExchange(ManualClock(NOW), seed=7), key=KEY, secret=SECRET) as running:
        yield running


def emulator_env(emulator: Emulator, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    return {**without_keys(), "ALPACA_KEY": key, "ALPACA_SECRET": secret,
            "ALPACA_API_BASE_URL": emulator.url, "ALPACA_DATA_BASE_URL": emulator.url}  # fmt: skip


@pytest.fixture
def no_options(project: ProjectCopy) -> ProjectCopy:
    """mom_AAPL and crypto_core: a day of their bars is fetched and replayed in about a second."""
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    return project


# --- data fetch ---------------------------------------------------------------------------------------------------


def test_fetch_then_backtest_writes_the_report(no_options: ProjectCopy, emulator: Emulator) -> None:
    project, env = no_options, emulator_env(emulator)
    args = ["data", "fetch", "--symbols", "AAPL,BTC/USD,eth/usd", "--from", "2026-11-19", "--to", "2026-11-19",
            "--timeframe", "1Min", "--out", "data"]  # fmt: skip
    fetched = engine(project, *args, env=env)
    assert fetched.returncode == 0, fetched.stderr
    lines = fetched.stdout.splitlines()
    assert lines[0] == "AAPL: 390 bars written (1 request), stored through 2026-11-19T20:59:00Z in data/bars/AAPL.parquet"
    assert lines[1].startswith("BTC/USD: 1440 bars written") and "data/bars/BTC-USD.parquet" in lines[1]
    assert lines[2].startswith("ETH/USD: 1440 bars written")
    assert lines[3] == "3270 bars of 3 symbols (1Min) in data: 3 requests"
    assert "\x1b[" not in fetched.stdout  # no progress bar off a terminal
    assert len(read_bars(project.root / "data", "BTC/USD")) == 1440

    again = engine(project, *args, env=env)  # resumable: only what could be missing is asked for
    assert again.returncode == 0, again.stderr
    # AAPL's day ends at 16:00 New York, before the New York day does: its evening is asked for (and has no bars)
    assert again.stdout.splitlines() == ["AAPL: 0 bars written (1 request), stored through 2026-11-19T20:59:00Z",
                                         "BTC/USD: nothing missing, stored through 2026-11-20T04:59:00Z",
                                         "ETH/USD: nothing missing, stored through 2026-11-20T04:59:00Z",
                                         "0 bars of 3 symbols (1Min) in data: 1 request"]  # fmt: skip

    started = time.monotonic()
    result = engine(project, "backtest", "--data", "data", "--out", "bt", "--cash", "50000")
    assert result.returncode == 0, result.stderr
    out = project.root / "bt"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["starting_cash"] == 50000
    assert (out / "trades.csv").read_text().startswith("bot,symbol,")
    assert "plotly" in (out / "report.html").read_text()[:200_000].lower()
    table = result.stdout.splitlines()
    assert table[0].split() == ["bot", "trades", "win", "rate", "realized", "P&L", "max", "drawdown"]
    assert [line.split()[0] for line in table[1:4]] == ["mom_AAPL", "crypto_core", "total"]
    assert table[3].split()[1] == str(summary["total"]["trades"])
    assert f"{summary['total']['realized_pnl']:+,.2f}" in table[3]
    assert result.stdout.rstrip().endswith("wrote bt/: summary.json, trades.csv, equity.csv, report.html, state.db, app.jsonl")
    assert time.monotonic() - started < 20


def test_fetch_without_keys_fetches_crypto_but_not_stocks(project: ProjectCopy, emulator: Emulator) -> None:
    env = {**without_keys(), "ALPACA_DATA_BASE_URL": emulator.url}
    args = ["data", "fetch", "--from", "2026-11-19", "--to", "2026-11-19", "--out", "data"]
    refused = engine(project, *args, "--symbols", "AAPL,BTC/USD", env=env)
    # no keys is input to fix (README: exit 2, as `run --broker alpaca` without keys), not a failure of the moment
    assert refused.returncode == 2 and "ALPACA_KEY and ALPACA_SECRET are needed to fetch AAPL" in refused.stderr
    crypto = engine(project, *args, "--symbols", "BTC/USD", "--timeframe", "1Hour", "--format", "csv", env=env)
    assert crypto.returncode == 0, crypto.stderr
    assert crypto.stdout.startswith("BTC/USD: 24 bars written") and (project.root / "data/bars/BTC-USD.csv").is_file()


@pytest.mark.parametrize("given", ["ALPACA_KEY", "ALPACA_SECRET"])
def test_fetch_refuses_one_key_without_the_other_as_run_does(project: ProjectCopy, emulator: Emulator, given: str) -> None:
    """One key without the other: `run` refuses it (exit 2, README: "not a quiet fallback"); `data fetch` took it
    for no keys at all: crypto was fetched without a word, and a stock was "keys are needed", exit 1."""
    env = {**without_keys(), given: KEY, "ALPACA_DATA_BASE_URL": emulator.url}
    args = ["data", "fetch", "--from", "2026-11-19", "--to", "2026-11-19", "--out", "data", "--timeframe", "1Hour"]
    for symbols in ("BTC/USD", "AAPL"):
        refused = engine(project, *args, "--symbols", symbols, env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert " is set but " in refused.stderr and KEY not in refused.stderr
    assert emulator.requests == [] and not (project.root / "data").exists()


def test_fetch_refuses_placeholder_keys_and_bad_input(project: ProjectCopy, emulator: Emulator) -> None:
    args = ["data", "fetch", "--symbols", "AAPL", "--from", "2026-11-19", "--to", "2026-11-19", "--out", "data"]
    placeholder = engine(project, *args, env=emulator_env(emulator, "YOUR_KEY", "YOUR_SECRET"))
    assert placeholder.returncode == 2 and "placeholder of .env.example" in placeholder.stderr
    assert emulator.requests == []  # refused before anything was sent
    for bad, message in ((["--timeframe", "90Min"], "--timeframe: timeframe '90Min'"),
                         (["--to", "2026-11-40"], "--to: '2026-11-40' is not a date"),
                         (["--to", "2026-11-18"], "--to 2026-11-18 is before --from 2026-11-19")):  # fmt: skip
        result = engine(project, *args, *bad, env=emulator_env(emulator))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_fetch_error_from_alpaca_exits_1(project: ProjectCopy, emulator: Emulator) -> None:
    result = engine(project, "data", "fetch", "--symbols", "AAPL", "--from", "2026-11-19", "--to", "2026-11-19",
                    "--out", "data", env=emulator_env(emulator, KEY, "wrong-secret"))  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error: AAPL: "), result.stderr
    # a first fetch that stored nothing leaves no folder holding only its lock, and says so
    assert "no bar was stored: data is left as it was found" in result.stderr and "Traceback" not in result.stderr
    assert not (project.root / "data").exists()


# --- backtest -----------------------------------------------------------------------------------------------------


def test_backtest_on_bad_data_exits_2_with_every_problem_at_its_line(project: ProjectCopy) -> None:
    bars = project.root / "data" / "bars"
    bars.mkdir(parents=True)
    (bars / "AAPL.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "2026-11-23T14:30:00Z,100,101,99,100.5,1000\n"
        "2026-11-23T14:30:00Z,100,101,99,100.5,1000\n"
        "2026-11-23T14:32:00Z,100,101,99,-1,1000\n",
        encoding="utf-8",
    )
    (bars / "BTC-USD.csv").write_text("timestamp,open,high,low,close,vol\n", encoding="utf-8")
    result = engine(project, "backtest", "--data", "data", "--out", "bt")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("data/bars/AAPL.csv:3:0: row 2: timestamp") and "duplicate" in line for line in lines), lines
    assert any(line.startswith("data/bars/AAPL.csv:4:0: row 3: ") for line in lines), lines
    assert any(line.startswith("data/bars/BTC-USD.csv:1:0: ") and "'vol'" in line for line in lines), lines
    assert lines[-1].endswith("errors") and "Traceback" not in result.stderr
    assert not (project.root / "bt").exists()


def test_backtest_names_the_bots_without_data(no_options: ProjectCopy) -> None:
    from engine.data.files import write_bars
    from tests.replay.conftest import minute_bars

    open_ = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
    write_bars(no_options.root / "data", "AAPL", minute_bars(open_, [100.0 + i * 0.01 for i in range(30)]), fsync=False)
    result = engine(no_options, "backtest", "--data", "data", "--out", "bt")
    assert result.returncode == 2
    assert result.stderr.startswith("no data for bot crypto_core:\n")
    assert "crypto_core trades BTC/USD, which has no data here" in result.stderr
    assert "crypto_core trades ETH/USD" in result.stderr and "mom_AAPL" not in result.stderr
    assert not (no_options.root / "bt").exists()


def test_backtest_usage_errors_exit_2(project: ProjectCopy, tmp_path: Path) -> None:
    missing = engine(project, "backtest", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    (tmp_path / "d").mkdir()
    for bad, message in ((["--from", "2026-13-01"], "--from: '2026-13-01' is not a date"),
                         (["--cash", "-5"], "must be an amount in USD of at least 0.01"),
                         # under a cent the simulated account showed 0: the replay halted at its first tick
                         (["--cash", "0.001"], "must be an amount in USD of at least 0.01"),
                         (["--cash", "1_000"], "not an amount in USD (digits"),  # Python's float() reads 1000
                         (["--cash", "inf"], "not an amount in USD (digits"),
                         (["--cash", "2000000000000"], "at most 1,000,000,000,000"),
                         (["--slippage-bps", "inf"], "slippage_bps must be a finite number"),
                         (["--slippage-bps", "20000"], "slippage_bps must be at most 10,000"),
                         (["--from", "2026-11-23T14:30:00.123456789Z"], "finer than a microsecond"),  # not cut
                         (["--from", "2026-11-23T09:30:00"], "has no time zone")):  # fmt: skip
        result = engine(project, "backtest", "--data", str(tmp_path / "d"), *bad)
        assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize("sweep", [False, True])
def test_an_out_folder_that_cannot_even_be_looked_up_is_exit_2_in_one_line(
    project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], sweep: bool
) -> None:
    """`--out` of 5,000 characters was an OSError traceback (exit 1) from the first `exists()` on it, in the
    backtest and in the sweep alike (found by tools/clifuzz.py)."""
    from engine.cli import main

    (tmp_path / "d").mkdir()
    (tmp_path / "sweep.yaml").write_text("momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.5, 1.0]\n")
    out = tmp_path / "/".join(["d" * 200] * 25)
    extra = ["--sweep", str(tmp_path / "sweep.yaml")] if sweep else []
    code = main(["backtest", "--data", str(tmp_path / "d"), *extra, "--out", str(out), *files(project)])
    said = capsys.readouterr()
    assert code == 2 and "Traceback" not in said.err and len(said.err.strip().splitlines()) == 1, said.err[:500]
    assert said.err.startswith(f"--out {out}: cannot be used (")


# --- run --record ---------------------------------------------------------------------------------------------------


def test_a_recorded_sim_run_backtests(project: ProjectCopy) -> None:
    run = engine(project, "run", "--ticks", "50", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "recorded 250 quotes of 5 symbols to rec (replay: python -m engine backtest --data rec)"
    data = DataSet.open(project.root / "rec")
    assert sorted(data.symbols) == ["AAPL", "BTC/USD", "ETH/USD", "QQQ", "SPY"]
    stamps = data.table("quotes", "AAPL").column("timestamp").to_pylist()
    assert len(stamps) == 50 and stamps[0] == datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
    assert next(e for e in read_events(project.root / "app.jsonl") if e["event"] == "recording_closed")["quotes"] == 250

    result = engine(project, "backtest", "--data", "rec", "--fill-timing", "submit", "--slippage-bps", "0")
    assert result.returncode == 0, result.stderr
    written = list((project.root / "backtests").iterdir())
    assert len(written) == 1 and len(written[0].name) == len("20261130T175000Z") and written[0].name.endswith("Z")
    summary = json.loads((written[0] / "summary.json").read_text())
    assert summary["period"]["frames"] == 50 and summary["fill_model"]["timing"] == "submit"
    assert (written[0] / "report.html").is_file() and (written[0] / "trades.csv").is_file()
    assert "50 ticks, 250 bar-events" in result.stdout


def test_a_backtest_from_a_working_folder_deleted_under_the_shell_says_so(project: ProjectCopy, tmp_path: Path) -> None:
    """`backtest` without --out writes to `backtests/` in the working folder: with that folder deleted (another
    terminal's `rm -r`), resolving it raised FileNotFoundError, a traceback and exit 1."""
    run = engine(project, "run", "--ticks", "5", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert run.returncode == 0, run.stderr
    gone = tmp_path / "gone"
    gone.mkdir()
    argv = [sys.executable, "-m", "engine", "backtest", "--data", str(project.root / "rec"), *files(project)]
    result = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone), *argv],
                            capture_output=True, text=True, env=without_keys(), timeout=120)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "the working folder it is relative to is gone" in result.stderr + result.stdout


def sigterm_once(project: ProjectCopy, command: list[str], ready: Callable[[], bool],
                 sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:  # fmt: skip
    """Start `command`, send it `sig` (SIGTERM) once `ready()` says it is where the test wants it, and wait for its end:
    (its exit code, stdout, stderr). Never left running."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root,
                               env=without_keys())  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.01)
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_a_recording_is_closed_on_sigterm(project: ProjectCopy) -> None:
    command = [sys.executable, "-m", "engine", "run", "--ticks", "1000000000", "--start", MONDAY_OPEN, "--record", "rec",
               *files(project), *state(project)]  # fmt: skip
    log = project.root / "app.jsonl"
    code, out, err = sigterm_once(project, command, lambda: log.exists() and log.read_text().count('"event":"tick"') >= 20)
    assert code == 0, err
    ticks = [e for e in read_events(project.root / "app.jsonl") if e["event"] == "tick"]
    data = DataSet.open(project.root / "rec")  # every part complete and readable
    stamps = data.table("quotes", "AAPL").column("timestamp").to_pylist()
    assert len(stamps) == len(ticks)  # the last tick's quotes were flushed at the close, not lost
    assert f"recorded {5 * len(ticks)} quotes of 5 symbols to rec" in out


def _long_data(project: ProjectCopy, sessions: int) -> None:
    from engine.core.calendar import market_calendar
    from engine.data.files import write_bars
    from tests.replay.conftest import minute_bars

    days = market_calendar().sessions(datetime(2026, 9, 1).date(), datetime(2026, 12, 31).date())[:sessions]
    bars = [b for i, d in enumerate(days) for b in minute_bars(d.open, [100.0 + (i + m % 40) * 0.01 for m in range(390)])]
    write_bars(project.root / "data", "AAPL", bars, fsync=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_backtest_stopped_by_sigterm_commits_its_ticks_and_says_so(project: ProjectCopy, sig: signal.Signals) -> None:
    """SIGTERM, or SIGHUP (the terminal closed), ended the process where it stood: up to 500 held ticks lost, the
    log not closed, nothing said."""
    only_momentum(project)
    _long_data(project, 80)
    command = [sys.executable, "-m", "engine", "backtest", "--data", "data", "--out", "bt", *files(project)]
    log = project.root / "bt" / "app.jsonl"
    # sent once ticks are running (the log is written in blocks)
    code, _out, err = sigterm_once(project, command, lambda: log.exists() and log.stat().st_size > 0, sig)
    assert code == 128 + sig, err
    assert err.startswith(f"{sig.name}: the backtest stopped; bt/ keeps its state.db and app.jsonl") and "Traceback" not in err
    assert not (project.root / "bt" / "summary.json").exists()
    assert not (project.root / "bt" / "state.db-wal").exists()  # closed, not left mid-transaction
    events = read_events(log)  # every line whole
    ticks = sum(1 for e in events if e["event"] == "tick")
    assert events[0]["event"] == "backtest_start" and 0 < ticks < 80 * 390
    with sqlite3.connect(project.root / "bt" / "state.db") as db:  # the held ticks were committed at the stop
        assert db.execute("SELECT count(*) FROM last_facts").fetchone()[0] == 1


@pytest.mark.parametrize("nth", [1, 3])
def test_a_backtest_killed_while_writing_its_report_leaves_no_summary(project: ProjectCopy, nth: int) -> None:
    """summary.json, which says the run finished, was written first, and each file with a plain write: a kill then
    left a summary beside no trades.csv, or half a file. Now each is whole or absent, and the summary comes last."""
    only_momentum(project)
    _long_data(project, 1)
    env = {**without_keys(), "TRADING_HYDRA_FAILPOINT": f"data_before_rename:{nth}"}  # trades.csv, ..., report.html
    killed = engine(project, "backtest", "--data", "data", "--out", "bt", env=env)
    assert killed.returncode == -signal.SIGKILL
    written = {p.name for p in (project.root / "bt").iterdir() if not p.name.startswith(".")}
    assert written - {"state.db", "app.jsonl", "state.db-wal", "state.db-shm"} == set(["trades.csv", "equity.csv"][: nth - 1])


def test_a_second_recording_into_a_folder_being_recorded_is_refused_before_the_run(project: ProjectCopy) -> None:
    """It used to be found at the first quote: the run went on unrecorded, and said '0 quotes of 5 symbols'."""
    from engine.data.recorder import Recorder

    with Recorder(project.root / "rec") as first:
        first.hold_folder()
        second = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert second.returncode == 2, second.stderr
    assert "another recording is writing to this folder now" in second.stderr and "Traceback" not in second.stderr
    assert not (project.root / "s.db").exists()  # refused before the state file was opened
    after = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert after.returncode == 0 and "recorded 5 quotes of 5 symbols to rec" in after.stdout  # the lock went with it


_RUNNING_WITH_RECORD = """
import sys
from pathlib import Path
from engine.core.lock import RunLock
from engine.data.recorder import Recorder
Recorder(Path(sys.argv[2])).hold_folder()  # as `run --record rec` holds them, the folder first
RunLock(Path(sys.argv[1])).acquire()
print("running", flush=True)
sys.stdin.read()
"""


def test_a_second_run_with_record_on_a_state_file_in_use_is_refused_as_any_second_run(project: ProjectCopy) -> None:
    """The same `run --record rec` started twice (a service restarted while the old one still stops): the second was
    refused "another recording is writing to this folder", exit 2, where the README says a second run on the state
    file exits 1 naming it and the pid of the engine holding it."""
    first = subprocess.Popen([sys.executable, "-c", _RUNNING_WITH_RECORD, str(project.root / "s.db"), str(project.root / "rec")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)  # fmt: skip
    try:
        assert first.stdout is not None and first.stdout.readline() == "running\n"
        second = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    finally:
        first.kill()
        first.wait(timeout=30)
    assert second.returncode == 1, second.stderr
    assert second.stderr == (f"error: {project.root / 's.db'} is in use by another engine (pid {first.pid}; lock "
                             f"{project.root / 's.db.lock'}): one running engine per state file\n")  # fmt: skip
    assert not (project.root / "s.db").exists() and not (project.root / "app.jsonl").exists()


def test_a_recording_folder_whose_last_part_is_cut_short_is_refused_before_the_run(project: ProjectCopy) -> None:
    """A recording goes on after a folder's last part, which it reads first: one cut short (a copy stopped half
    way, a damaged disk) was found at the first quote, and the run went on unrecorded ('0 quotes of 0 symbols')."""
    from engine.data.recorder import Recorder

    with Recorder(project.root / "rec") as first:
        first.record("AAPL", NOW, 187.0, 187.1)
    part = project.root / "rec" / "quotes" / "AAPL" / "part-000001.parquet"
    part.write_bytes(part.read_bytes()[:-20])  # mid-footer
    result = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{Path('rec', 'quotes', 'AAPL', 'part-000001.parquet')}:0:0: not a whole Parquet file" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 2
    assert not (project.root / "s.db").exists()  # refused before the state file was opened
    part.unlink()
    after = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert after.returncode == 0 and "recorded 5 quotes of 5 symbols to rec" in after.stdout, after.stderr


def test_a_recording_folder_whose_notes_or_lock_are_not_files_is_refused_before_the_run(project: ProjectCopy) -> None:
    """recording.jsonl a FIFO: the first note waited for a reader forever, and the run hung at its first tick. The
    lock a folder: a traceback. A link to /dev/null: the notes went nowhere and the recording stopped."""
    rec = project.root / "rec"
    rec.mkdir()
    for name, make, said in (("recording.jsonl", os.mkfifo, "is a FIFO, not a regular file"),
                             ("recording.jsonl", lambda p: os.symlink("/dev/null", p), "is a device, not a regular file"),
                             (".recording.lock", os.mkdir, "is a folder, not a regular file")):  # fmt: skip
        make(rec / name)
        result = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"{Path('rec', name)}:0:0: {said}"), result.stderr
        assert "Traceback" not in result.stderr and not (project.root / "s.db").exists()
        (rec / name).rmdir() if (rec / name).is_dir() and not (rec / name).is_symlink() else (rec / name).unlink()


def test_a_recording_folder_with_a_file_where_its_parts_go_is_refused_before_the_run(project: ProjectCopy) -> None:
    """quotes/, ticks/, unusable/ or a symbol's folder a file: the recording stopped at its first quote, and the run
    went on unrecorded and exited 0 ("the recording stopped before the run did")."""
    rec = project.root / "rec"
    for name in ("quotes", "ticks", "unusable", str(Path("quotes", "AAPL")), str(Path("missing", "BTC-USD"))):
        (rec / name).parent.mkdir(parents=True, exist_ok=True)
        (rec / name).write_text("")
        result = engine(project, "run", "--once", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"{Path('rec', name)}:0:0: is a regular file, not a folder"), result.stderr
        assert "Traceback" not in result.stderr and not (project.root / "s.db").exists()
        (rec / name).unlink()


def test_a_recording_folder_holding_another_runs_later_recording_is_refused(project: ProjectCopy) -> None:
    """A run on another state file recorded into a folder whose recording reaches past its start: every quote was
    skipped as not after the last, and the run ended exit 0 with "recorded 0 quotes". The same state file's next
    run starts after its last tick, and goes on recording."""
    first = engine(project, "run", "--ticks", "3", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert first.returncode == 0 and "recorded 15 quotes" in first.stdout, first.stdout + first.stderr
    other = ["--state-db", str(project.root / "other.db"), "--log", str(project.root / "other.jsonl")]
    clash = engine(project, "run", "--ticks", "3", "--start", MONDAY_OPEN, "--record", "rec", *other)
    assert clash.returncode == 2, clash.stdout + clash.stderr
    assert clash.stderr.startswith("--record rec: holds another run's recording, up to 2026-11-23T14:30:10+00:00")
    assert "recorded" not in clash.stdout and "Traceback" not in clash.stderr
    again = engine(project, "run", "--ticks", "3", "--record", "rec", "--record-append", *state(project))
    assert again.returncode == 0 and "recorded 15 quotes" in again.stdout, again.stdout + again.stderr


def test_a_run_refused_at_its_start_leaves_no_recording_folder(project: ProjectCopy) -> None:
    """`--record rec` is locked before the run starts: a run then refused (here a --start before the saved
    simulation's time) left rec/ made, holding only `.recording.lock`, a folder that looked recorded."""
    first = engine(project, "run", "--ticks", "3", "--start", MONDAY_OPEN, *state(project))
    assert first.returncode == 0, first.stdout + first.stderr
    refused = engine(project, "run", "--once", "--start", "2026-11-20T09:30:00-05:00", "--record", "rec", *state(project))
    assert refused.returncode == 2 and "is before the simulation's time" in refused.stderr, refused.stderr
    assert not (project.root / "rec").exists()


def test_a_recording_folder_holding_an_earlier_runs_recording_is_refused_unless_appended(project: ProjectCopy) -> None:
    """Two runs recorded into one folder, the second watching other symbols: its replay showed the first run's last
    quote of a symbol the second never watched as that symbol's quote all through the second run's ticks (a bot of
    the replay's config traded on it, a position was valued at it). A folder holding an earlier recording is refused
    (exit 2, before the run, nothing written to it) unless `--record-append` says it continues it: a restart of the
    same run, on its symbols."""
    first = engine(project, "run", "--ticks", "3", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert first.returncode == 0 and "recorded 15 quotes" in first.stdout, first.stdout + first.stderr
    rec = project.root / "rec"
    before = sorted(str(p.relative_to(rec)) for p in rec.rglob("*"))
    refused = engine(project, "run", "--ticks", "3", "--record", "rec", *state(project))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("--record rec: holds an earlier run's recording, up to 2026-11-23T14:30:10+00:00: "
                                     "its replay would show"), refused.stderr  # fmt: skip
    assert "--record-append" in refused.stderr and "Traceback" not in refused.stderr and "recorded" not in refused.stdout
    assert sorted(str(p.relative_to(rec)) for p in rec.rglob("*")) == before
    alone = engine(project, "run", "--ticks", "3", "--record-append", *state(project))
    assert alone.returncode == 2 and "--record-append: continues a recording" in alone.stderr, alone.stderr
    for name in ("ticks", "quotes", "unusable", "missing"):  # notes alone (a run killed before its first flush) count too
        shutil.rmtree(rec / name, ignore_errors=True)
    (rec / "recording.jsonl").write_text('{"event": "run", "at": "2026-11-23T14:30:00+00:00"}\n')
    notes_only = engine(project, "run", "--ticks", "3", "--record", "rec", *state(project))
    assert notes_only.returncode == 2 and "holds an earlier run's recording: its replay" in notes_only.stderr, notes_only.stderr


def test_the_backtest_table_shows_sub_cent_pnl_and_fees_not_zero() -> None:
    """A bot whose round trips came to -0.004 read '-0.00' in the terminal table, and 0.003 of fees '0.00'."""
    from engine.cli import backtest_table

    figures = {"trades": 1, "win_rate": 0.0, "realized_pnl": -0.004, "max_drawdown_usd": 0.01, "max_drawdown_pct": 0.0}
    summary = {"bots": {"crypto_core": figures},
               "total": {**figures, "final_equity": 99999.99, "return_pct": 0.0, "fees": 0.003}}  # fmt: skip
    table = backtest_table(summary)
    assert table.splitlines()[1].split()[4] == "-0.004", table
    assert "fees 0.003\nhalts: none" in table, table


def test_the_backtest_table_says_the_halts() -> None:
    """A run halted (a stale feed, a kill condition) for hours printed the same table as one that traded throughout:
    its halts were only in summary.json. The first five are listed under the table, reasons one line each."""
    from engine.cli import backtest_table

    figures = {"trades": 0, "win_rate": None, "realized_pnl": 0.0, "max_drawdown_usd": 0.0, "max_drawdown_pct": 0.0}
    halt = {"scope": "system", "reason": "kill condition: data_stale_halt\n(forged)", "conditions": ["data_stale_halt"],
            "started_at": "2026-11-23T15:36:00Z", "ended_at": None}  # fmt: skip
    summary = {"bots": {"mom_AAPL": figures},
               "total": {**figures, "final_equity": 100000.0, "return_pct": 0.0, "fees": 0.0, "halts": [halt] * 7}}  # fmt: skip
    lines = backtest_table(summary).splitlines()
    assert lines[-7:] == ["halts: 7", *["  system 2026-11-23T15:36:00Z to the end: kill condition: data_stale_halt\\n(forged)"] * 5,
                          "  and 2 more (summary.json)"], lines  # fmt: skip


def _transitions(log: Path) -> list[tuple[str, ...]]:
    return [(e["ts"], e["bot"], e["from"], e["to"], e["trigger"]) for e in read_events(log) if e["event"] == "transition"]


def _orders(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT client_order_id, symbol, side, qty, notional, status, created_at FROM orders "
                                  "ORDER BY client_order_id").fetchall()  # fmt: skip


@pytest.mark.parametrize("interval", ["7", "2.5"])
def test_a_run_ticking_between_its_quotes_times_replays_at_its_own_ticks(project: ProjectCopy, interval: str) -> None:
    """The simulator's quotes step every 5 s; a loop of 7 s (or 2.5 s) ticks between them. The replay ticked at each
    quote's time instead, so it decided at other instants than the run, on other quotes, and made other transitions
    and orders, without a word. The recording now holds its ticks (rec/ticks/), and the replay ticks there."""
    project.replace("config/settings.yaml", "loop_interval_seconds: 5", f"loop_interval_seconds: {interval}")
    run = engine(project, "run", "--ticks", "700", "--start", MONDAY_OPEN, "--record", "rec", *state(project))
    assert run.returncode == 0, run.stderr
    result = engine(project, "backtest", "--data", "rec", "--fill-timing", "submit", "--slippage-bps", "0", "--out", "bt")
    assert result.returncode == 0, result.stderr
    assert "700 ticks" in result.stdout and "note:" not in result.stdout, result.stdout
    recorded, replayed = _transitions(project.root / "app.jsonl"), _transitions(project.root / "bt" / "app.jsonl")
    assert len(recorded) > 5 and replayed == recorded
    assert _orders(project.root / "bt" / "state.db") == _orders(project.root / "s.db") != []


def test_a_recorded_weekend_run_replays_with_its_stock_bots_idle(project: ProjectCopy) -> None:
    """Saturday: only the crypto bot trades. The backtest refused the recording whole ('no data for bots mom_AAPL,
    opt_core ... only weekends, holidays or nights'), a check for New York times written as UTC, which a recording
    (the engine's own instants) cannot have. It replays now, as it ran."""
    run = engine(project, "run", "--ticks", "400", "--start", "2026-11-28T09:30:00-05:00", "--record", "rec", *state(project))
    assert run.returncode == 0, run.stderr
    result = engine(project, "backtest", "--data", "rec", "--fill-timing", "submit", "--slippage-bps", "0", "--out", "bt")
    assert result.returncode == 0, result.stderr
    recorded, replayed = _transitions(project.root / "app.jsonl"), _transitions(project.root / "bt" / "app.jsonl")
    assert any(t[1] == "crypto_core" and t[3] == "in_position" for t in recorded) and replayed == recorded
    assert not any(t[1] in ("mom_AAPL", "opt_core") and t[3] not in ("armed", "idle") for t in replayed)


def test_what_a_recorded_run_met_that_its_replay_cannot_have_is_told(project: ProjectCopy) -> None:
    """A run halted by the operator before it started, and one whose broker calls failed: neither can be replayed
    (a replay starts unhalted, and its broker never fails), and the replay traded on where the run had not, without
    a word. The run writes them to rec/recording.jsonl now, and the backtest of the folder says where it parts."""
    from engine.brokers.emulator import Fault
    from engine.core.clock import SystemClock

    halted = engine(project, "halt", "--reason", "maintenance", *state(project))
    assert halted.returncode == 0, halted.stderr
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        # the start's read of the positions fails first (a failure of the moment, left to the ticks), then the tick's
        emulator.faults.append(Fault(status=500, path_prefix="/v2/positions", times=2))
        run = engine(project, "run", "--broker", "alpaca", "--once", "--record", "rec", *state(project),
                     env=emulator_env(emulator))  # fmt: skip
    assert run.returncode == 0, run.stderr
    notes = [json.loads(line) for line in (project.root / "rec" / "recording.jsonl").read_text().splitlines()]
    assert [n["event"] for n in notes] == ["broker_error", "run"]
    assert notes[1]["halts"] == [{"scope": "system", "reason": "maintenance"}] and notes[1]["broker"] == "alpaca"
    result = engine(project, "backtest", "--data", "rec", "--out", "bt", "--cash", str(notes[1]["cash"]))
    assert result.returncode == 0, result.stderr
    assert "note: the recorded run was halted where the replay was not: system at " in result.stdout
    assert "(maintenance); the replay traded on where the run could not" in result.stdout
    assert "note: the recorded run's broker calls failed at 1 tick (the first at " in result.stdout
    assert "give --cash" not in result.stdout
    assert ("note: opt_core: the recorded run read its option chains from alpaca, which a recording does not hold; "
            "the replay prices contracts with the simulator's model") in result.stdout
    other = engine(project, "backtest", "--data", "rec", "--out", "bt2", "--cash", "5000")
    assert f"with cash {notes[1]['cash']:,.2f}, the replay with 5,000.00: give --cash" in other.stdout


def test_what_a_recording_says_is_shown_escaped_in_its_notes(project: ProjectCopy,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A halt's reason and a broker's message come from the recording's notes, which any program or hand may have
    written (a broker's HTML error page has newlines): printed as they were, a terminal acted on their escape
    sequences and a newline split a note in two."""
    from datetime import timedelta

    from engine.cli import main
    from engine.data.recorder import Recorder
    from tests.replay.conftest import only_momentum

    only_momentum(project)
    start = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
    with Recorder(project.root / "rec", fsync=False) as recorder:
        for i in range(30):
            recorder.record("AAPL", start + timedelta(seconds=5 * i), 187.0 + i * 0.01, 187.1 + i * 0.01)
            recorder.tick(start + timedelta(seconds=5 * i))
        recorder.note("halt", start + timedelta(seconds=20), scope="system", reason="operator\x1b[2J\x1b]0;title\x07")
        recorder.note("broker_error", start + timedelta(seconds=30), operation="get_account",
                      message="<html>\r\n<h1>502</h1>\n</html>")  # fmt: skip
    code = main(["backtest", "--data", str(project.root / "rec"), "--out", str(project.root / "bt"), *files(project)])
    out = capsys.readouterr().out
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert any("(operator\\x1b[2J\\x1b]0;title\\x07)" in note for note in notes), notes
    assert any("get_account: <html>\\r\\n<h1>502</h1>\\n</html>)" in note for note in notes), notes
    assert "\x1b" not in out and "\r" not in out and not any(line.startswith("<h1>") for line in out.splitlines())


def test_two_runs_recorded_into_one_folder_replay_as_one_without_a_note(project: ProjectCopy) -> None:
    """The next run of the same state recorded into the same folder (said with --record-append): its replay is the
    two runs', and says nothing (no lost ticks, no start inside a run, no halt or cash that differs)."""
    for start in (["--start", MONDAY_OPEN], ["--record-append"]):  # the second goes on from the state's time
        run = engine(project, "run", "--ticks", "300", *start, "--record", "rec", *state(project))
        assert run.returncode == 0, run.stderr
    notes = [json.loads(line) for line in (project.root / "rec" / "recording.jsonl").read_text().splitlines()]
    assert [n["event"] for n in notes] == ["run", "run"] and notes[1]["state_last_tick"] == notes[1]["recorded_last_tick"]
    result = engine(project, "backtest", "--data", "rec", "--fill-timing", "submit", "--slippage-bps", "0", "--out", "bt")
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout and "600 ticks" in result.stdout
    assert _transitions(project.root / "bt" / "app.jsonl") == _transitions(project.root / "app.jsonl")
