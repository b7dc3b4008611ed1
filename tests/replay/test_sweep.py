"""`backtest --sweep`: a grid of bots.yaml overrides, one backtest per combination, one comparison table."""

from __future__ import annotations

import csv
import importlib.util
import signal
from pathlib import Path
from typing import Any

import pytest

from engine.cli import build_parser, main
from engine.replay.sweep import METRICS, RunSpec
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, session_bars

GRID = """\
momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.8]
momentum_bots[mom_AAPL].exits.take_profit_pct: [0.5, 1.0]
"""


def _data(folder: Path) -> Path:
    """AAPL over a session, up, down, up again: the momentum bot trades, and the exits change its P&L."""
    closes = [190.0]
    for minute in range(1, 390):
        closes.append(round(closes[-1] + (0.08 if (minute // 40) % 2 == 0 else -0.07), 2))
    session_bars(folder, "AAPL", MONDAY_OPEN, closes)
    return folder


def _args(project: ProjectCopy, data: Path, sweep: Path, *more: str) -> list[str]:
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    return ["backtest", "--data", str(data), "--sweep", str(sweep), *files, *more]


def _sweep(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_grid_runs_in_parallel_and_writes_one_sorted_row_per_combination(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    assert main(_args(momentum_project, data, sweep, "--jobs", "2", "--out", str(tmp_path / "a"))) == 0
    text = (tmp_path / "a" / "sweep.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    keys = ("momentum_bots[mom_AAPL].exits.stop_loss_pct", "momentum_bots[mom_AAPL].exits.take_profit_pct")
    assert sorted((r[keys[0]], r[keys[1]]) for r in rows) == [("0.3", "0.5"), ("0.3", "1.0"), ("0.8", "0.5"), ("0.8", "1.0")]
    returns = [float(r["return_pct"]) for r in rows]  # the default metric: equity's, open positions counted
    assert returns == sorted(returns, reverse=True) and len({r["realized_pnl"] for r in rows}) > 1  # the overrides mattered
    assert all(int(r["trades"]) > 0 and r["error"] == "" for r in rows)
    for row in rows:  # each run has its own config (only the swept values changed) and its own report
        run = tmp_path / "a" / row["run"]
        bots = (run / "config" / "bots.yaml").read_text()
        assert f"stop_loss_pct: {row[keys[0]]}\n" in bots and f"take_profit_pct: {row[keys[1]]}\n" in bots
        assert "stop_loss_pct: 0.60" in bots  # mom_TSLA untouched, as written
        assert (run / "summary.json").is_file() and (run / "state.db").is_file()
    out = capsys.readouterr().out
    assert "realized P&L" in out and "sorted by return_pct" in out
    # The same sweep again, in one process: the same bytes.
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--out", str(tmp_path / "b"))) == 0
    assert (tmp_path / "b" / "sweep.csv").read_text() == text
    # Another metric sorts the same rows another way.
    assert (
        main(_args(momentum_project, data, sweep, "--jobs", "2", "--metric", "max_drawdown_pct", "--out", str(tmp_path / "c")))
        == 0
    )
    drawdowns = [float(r["max_drawdown_pct"]) for r in csv.DictReader((tmp_path / "c" / "sweep.csv").open())]
    assert drawdowns == sorted(drawdowns)


def test_a_bad_key_or_value_exits_2_at_its_line_before_anything_runs(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data")
    sweep = _sweep(
        tmp_path,
        "momentum_bots[mom_AAPL].exits.stop_los_pct: [0.3]\n"
        "momentum_bots[mom_NOPE].exits.stop_loss_pct: [0.3]\n"
        "optionsbot.exits.take_profit_pct: [0.4, -1]\n"
        "cryptobot.risk.max_trades_per_day: [2, 2.5]\n",
    )
    assert main(_args(momentum_project, data, sweep, "--out", str(tmp_path / "out"))) == 2
    err = capsys.readouterr().err
    assert f"{sweep}:1:1: momentum_bots[mom_AAPL].exits.stop_los_pct: unknown key 'stop_los_pct'" in err
    assert f"{sweep}:2:1: momentum_bots[mom_NOPE].exits.stop_loss_pct: no bot 'mom_NOPE' in momentum_bots" in err
    assert f"{sweep}:3:41: optionsbot.exits.take_profit_pct: -1 is refused" in err
    assert f"{sweep}:4:40: cryptobot.risk.max_trades_per_day: 2.5 is refused" in err
    assert not (tmp_path / "out").exists()


def test_a_combination_the_engine_refuses_is_refused_before_anything_runs(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each value is valid alone (against bots.yaml's dte_max 45 and dte_min 7); dte_min 30 with dte_max 20 is not.
    # The OptionsBot, disabled in this project, is enabled by the sweep: a disabled bot's keys are not swept.
    text = "optionsbot.chain_rules.dte_min: [7, 30]\noptionsbot.chain_rules.dte_max: [20, 45]\noptionsbot.enabled: [true]\n"
    sweep = _sweep(tmp_path, text)
    code = main(_args(momentum_project, _data(tmp_path / "data"), sweep, "--out", str(tmp_path / "out")))
    err = capsys.readouterr().err
    assert code == 2, err
    said = "optionsbot.chain_rules.dte_min=30, optionsbot.chain_rules.dte_max=20, optionsbot.enabled=true"
    assert f"{sweep}:1:1: run-003 ({said}): " in err
    line = momentum_project.line_of("config/bots.yaml", "dte_min")
    assert (
        f"{momentum_project.config / 'bots.yaml'}:{line}:14: optionsbot.chain_rules.dte_min: dte_min 30 is above dte_max 20"
        in err
    )
    assert "run-001" not in err and "run-004" not in err
    assert not (tmp_path / "out").exists()


BARS = "timestamp,open,high,low,close,volume\n"
BROKEN = {  # a file of the data folder a backtest refuses (tests/data/test_bad_data.py has many more)
    "unsorted": BARS + "2026-11-23T14:31:00Z,1,1,1,1,1\n2026-11-23T14:30:00Z,1,1,1,1,1\n",
    "duplicate": BARS + "2026-11-23T14:30:00Z,1,1,1,1,1\n2026-11-23T14:30:00Z,1,1,1,1,1\n",
    "nan": BARS + "2026-11-23T14:30:00Z,1,1,1,NaN,1\n",
    "missing_column": "timestamp,open,high,low,volume\n2026-11-23T14:30:00Z,1,1,1,1\n",
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_data_file_refuses_the_sweep_up_front_as_a_backtest_refuses_it(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    """Every run reads the same folder: a broken file was run once per combination, and sweep.csv held the same
    error in every row (exit 2 only at the end). It is refused before anything is written, in `backtest --data`'s
    own words (file:line:col), with its exit code; a folder that holds no data at all too."""
    data = _data(tmp_path / "data")
    (data / "bars" / "TSLA.csv").write_text(BROKEN[broken], encoding="utf-8")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines), "--rules",
             str(momentum_project.rules)]  # fmt: skip
    plain = main(["backtest", "--data", str(data), *files, "--out", str(tmp_path / "one")])
    refusal = capsys.readouterr().err
    assert plain == 2 and f"{data / 'bars' / 'TSLA.csv'}:" in refusal
    assert main(_args(momentum_project, data, _sweep(tmp_path, GRID), "--jobs", "1", "--out", str(tmp_path / "out"))) == 2
    said = capsys.readouterr()
    assert said.err == refusal and "run-001" not in said.out + said.err
    assert not (tmp_path / "out").exists()


def test_a_data_folder_without_data_refuses_the_sweep_up_front(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same for every combination too: refused once, not a row of it per run; an empty --out given is left."""
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    assert main(_args(momentum_project, tmp_path / "data", _sweep(tmp_path, GRID), "--out", str(tmp_path / "out"))) == 2
    assert "holds neither a bars/ nor a quotes/ folder" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("window", [["--from", "2026-12-01"], ["--to", "2026-11-20"], ["--from", "2026-11-24", "--to", "2026-11-25"]])
def test_a_window_outside_all_the_data_refuses_the_sweep_up_front(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], window: list[str]
) -> None:
    """A single backtest refuses a window with no data before writing anything; a sweep ran every combination into
    it, each failing on the same missing data, and wrote their folders and a table of errors (up to a thousand)."""
    data = _data(tmp_path / "data")
    args = _args(momentum_project, data, _sweep(tmp_path, GRID), "--jobs", "1", "--out", str(tmp_path / "out"), *window)
    assert main(args) == 2
    said = capsys.readouterr()
    assert f"{data}:0:0: no data in the sweep's window (" in said.err
    assert "the data runs from 2026-11-23T14:31:00Z to 2026-11-23T21:00:00Z" in said.err
    assert "run-001" not in said.out + said.err and not (tmp_path / "out").exists()
    assert main(_args(momentum_project, data, _sweep(tmp_path, GRID), "--jobs", "1", "--out", str(tmp_path / "in"),
                      "--from", "2026-11-23")) == 0  # fmt: skip


def test_ray_without_the_extra_exits_2_saying_what_to_install(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed")
    sweep = _sweep(tmp_path, GRID)
    assert main(_args(momentum_project, _data(tmp_path / "data"), sweep, "--ray", "auto", "--out", str(tmp_path / "o"))) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")
def test_the_same_sweep_on_a_local_ray_instance(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--out", str(tmp_path / "local"))) == 0
    assert main(_args(momentum_project, data, sweep, "--ray", "local", "--out", str(tmp_path / "ray"))) == 0
    assert (tmp_path / "ray" / "sweep.csv").read_text() == (tmp_path / "local" / "sweep.csv").read_text()


def test_sweep_options_need_sweep_and_the_metrics_are_the_modules() -> None:
    for metric in METRICS:
        assert build_parser().parse_args(["backtest", "--data", ".", "--metric", metric]).metric == metric
    with pytest.raises(SystemExit):
        build_parser().parse_args(["backtest", "--data", ".", "--metric", "luck"])
    assert main(["backtest", "--data", ".", "--jobs", "2"]) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a million runs: every config folder was written and loaded before the first ran (no end in sight)
        ("momentum_bots[mom_AAPL].exits.stop_loss_pct: [{a}]\nmomentum_bots[mom_AAPL].exits.take_profit_pct: [{a}]\n"
         "momentum_bots[mom_AAPL].exits.time_stop_minutes: [{n}]\n",
         "1:1: 1,000,000 combinations (100 x 100 x 100): a sweep runs at most 1,000"),
        ("momentum_bots[mom_AAPL].exits.time_stop_minutes: [{m}]\n", "1:1: 1,001 combinations (1001): a sweep runs at most"),
        # the child was written over the parent's value, and the table showed the parent's, never run
        ("momentum_bots[mom_AAPL].exits: [{{stop_loss_pct: 0.3, take_profit_pct: 1.0, time_stop_minutes: 25}}]\n"
         "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.5]\n",
         "2:1: momentum_bots[mom_AAPL].exits.stop_loss_pct: sweeps a setting inside momentum_bots[mom_AAPL].exits (line 1)"),
        ("momentum_bots[mom_AAPL].signal.params.lookback_ticks: [5]\nmomentum_bots[mom_AAPL].signal: [{{}}]\n",
         "2:1: momentum_bots[mom_AAPL].signal: sweeps a setting that holds momentum_bots[mom_AAPL].signal.params.lookback_ticks"),
        # 1 and 1.0 are one value to the engine: two runs of the same thing
        ("momentum_bots[mom_AAPL].exits.stop_loss_pct: [1, 1.0]\n", "1:46: momentum_bots[mom_AAPL].exits.stop_loss_pct: a value is listed twice"),
    ],
    ids=["million", "one_past_the_limit", "parent_then_child", "child_then_parent", "int_and_float"],
)
def test_a_sweep_too_large_or_setting_a_value_twice_is_refused_before_anything_is_written(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    values = ", ".join(f"{0.1 + i / 1000:.3f}" for i in range(100))
    sweep = _sweep(tmp_path, text.format(a=values, n=", ".join(str(i) for i in range(1, 101)),
                                         m=", ".join(str(i) for i in range(1, 1002))))
    assert main(_args(momentum_project, _data(tmp_path / "data"), sweep, "--out", str(tmp_path / "out"))) == 2
    assert f"{sweep}:{expected}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_sweep_at_the_limit_runs(momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config.errors import ConfigError
    from engine.replay import sweep as sweeping
    from tests.replay.conftest import load

    monkeypatch.setattr(sweeping, "MAX_RUNS", 4)
    config = load(momentum_project).config
    assert config is not None
    bots = config.bots_doc
    at_limit = _sweep(tmp_path, GRID)  # 2 x 2
    assert [len(o.values) for o in sweeping.read_sweep(at_limit, bots)] == [2, 2]
    past = _sweep(tmp_path, GRID.replace("[0.5, 1.0]", "[0.5, 1.0, 1.5]"))
    with pytest.raises(ConfigError, match="6 combinations"):
        sweeping.read_sweep(past, bots)


def _spec(name: str) -> RunSpec:
    return RunSpec(name, (), "config", "machines", "rules", "data", name)


def test_the_run_blamed_for_a_dead_worker_is_the_one_it_had_started() -> None:
    """A broken pool says only that a worker died: the sweep blames the run that worker had started, never the
    runs the pool ended with SIGTERM beside it, which would otherwise use up their one retry for nothing."""
    from types import SimpleNamespace

    from engine.replay.sweep import _died_under

    def exits(**codes: int) -> dict[int, Any]:
        return {int(pid[1:]): SimpleNamespace(exitcode=code) for pid, code in codes.items()}

    unfinished = [_spec("run-002"), _spec("run-003"), _spec("run-004")]
    started = {11: "run-002", 12: "run-003"}  # run-004 was still waiting
    killed, ended = -signal.SIGKILL, -signal.SIGTERM
    assert _died_under(unfinished, started, exits(p11=killed, p12=ended)) == {"run-002": killed}
    assert _died_under(unfinished, started, exits(p11=killed, p12=killed)) == {"run-002": killed, "run-003": killed}
    # killed between runs: its last run had returned its row; the run beside it is not to blame
    assert _died_under(unfinished, {11: "run-001", 12: "run-003"}, exits(p11=killed, p12=ended)) == {}
    # no worker seen dying of itself (SIGTERM from outside looks like the pool's): each run in a worker is blamed
    assert _died_under(unfinished, started, exits(p11=ended, p12=ended)) == {"run-002": ended, "run-003": ended}
    assert _died_under(unfinished, started, {}) == {"run-002": None, "run-003": None}


def test_ties_are_in_grid_order_past_run_999() -> None:
    """A grid of MAX_RUNS (1,000) names its last run run-1000: ranked by its name's text, a tie put it between run-100
    and run-101, and a run without the metric or failed the same."""
    from engine.replay.sweep import sweep_rows

    def row(number: int, pnl: float | None, error: str = "") -> dict[str, Any]:
        return {"run": f"run-{number:03d}", "realized_pnl": pnl, "error": error}

    rows = [row(1000, 5.0), row(101, 5.0), row(100, 5.0), row(1000, None), row(999, None), row(1000, None, "x"),
            row(2, None, "x"), row(7, 9.0)]  # fmt: skip
    ranked = [(r["run"], r["error"]) for r in sweep_rows(rows, "realized_pnl")]
    assert ranked == [("run-007", ""), ("run-100", ""), ("run-101", ""), ("run-1000", ""), ("run-999", ""),
                      ("run-1000", ""), ("run-002", "x"), ("run-1000", "x")]  # fmt: skip


def test_the_runs_retried_are_named_in_grid_order_with_stretches_shortened() -> None:
    from engine.replay.sweep import _named

    order = {f"run-{n:03d}": n for n in range(1, 13)}
    runs = [_spec(f"run-{n:03d}") for n in (9, 2, 4, 5, 6, 7, 11, 12)]
    assert _named(runs, order) == "run-002, run-004 to run-007, run-009, run-011, run-012"


def test_a_run_stopped_by_an_unforeseen_error_fails_alone_with_its_traceback_kept(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk in one run (or a bug one combination meets) used to end the whole sweep in a traceback."""
    from engine.replay import backtest

    real = backtest.run_backtest

    def disk_full_in_run_002(*args: Any, **kwargs: Any) -> Any:
        if kwargs["out_dir"].name == "run-002":
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(backtest, "run_backtest", disk_full_in_run_002)
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, GRID)
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--out", str(tmp_path / "out"))) == 2
    rows = {r["run"]: r for r in csv.DictReader((tmp_path / "out" / "sweep.csv").open())}
    assert sorted(rows) == ["run-001", "run-002", "run-003", "run-004"]
    failed = rows.pop("run-002")["error"]
    assert failed.startswith("stopped by OSError: [Errno 28] No space left on device (traceback in ")
    assert "Traceback (most recent call last)" in (tmp_path / "out" / "run-002" / "error.txt").read_text()
    assert all(r["error"] == "" and int(r["trades"]) > 0 for r in rows.values())
    assert "Traceback" not in capsys.readouterr().err


def test_a_key_a_sweeps_run_raises_with_is_masked_in_its_row_log_and_state_file(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_module: Path
) -> None:
    """A backtest masks the keys in what it writes; a sweep's runs were given none, so a signal that raised with a
    key in its message wrote it into the run's app.jsonl, state.db and the comparison table's error. A worker now
    reads the keys to mask from its environment and from the `.env` the command read (by its path: no secret
    travels in a RunSpec, which a Ray cluster would carry)."""
    from engine.core.store import StateStore
    from engine.replay.sweep import run_one

    key, secret = "PKSWEEPKEY0123456789", "sweepsecret0123456789abcdefghijklmnopqrs"
    env_file = tmp_path / ".env"
    env_file.write_text(f"ALPACA_KEY={key}\nALPACA_SECRET={secret}\n", encoding="utf-8")
    user_module.write_text(
        "def momentum_breakout(prices, params):\n"
        f"    raise RuntimeError('auth failed for {key}')\n\n\n"
        "SIGNALS = {'momentum_breakout': momentum_breakout}\n",
        encoding="utf-8",
    )
    for variable in ("ALPACA_KEY", "ALPACA_SECRET", "HYDRA_SERVE_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    spec = RunSpec("run-001", (), str(momentum_project.config), str(momentum_project.machines),
                   str(momentum_project.rules), str(_data(tmp_path / "data")), str(tmp_path / "out"),
                   env_file=str(env_file))  # fmt: skip
    row = run_one(spec)
    log = (tmp_path / "out" / "app.jsonl").read_text()
    reasons = [h.reason for h in StateStore(tmp_path / "out" / "state.db").halts()]
    assert "auth failed for ***" in log and any("auth failed for ***" in r for r in reasons), reasons
    for text in (log, *reasons, str(row)):
        assert key not in text, text


def test_a_dotenv_linked_to_itself_does_not_stop_a_sweep(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweep gave its workers the `.env` by `resolve()`, which raises RuntimeError on a link that leads back to
    itself (Python 3.11): a traceback, exit 1, nothing run. A single backtest ran; the sweep runs too, its workers
    masking the environment's keys (found by tools/clifuzz.py)."""
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3]\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").symlink_to(".env")
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--out", str(tmp_path / "a"))) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "a" / "sweep.csv").is_file()


def test_the_pool_said_is_the_pool_started(momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--jobs 64` for a sweep of one run said "1 run in 64 processes": the pool is never larger than the runs."""
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3]\n")
    assert main(_args(momentum_project, data, sweep, "--jobs", "64", "--out", str(tmp_path / "out"))) == 0
    assert f"1 run in 1 process, in {tmp_path / 'out'}/" in capsys.readouterr().out
