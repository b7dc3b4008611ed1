"""What a sweep's row says of its run: the backtest's notes, the positions left open, no path of this machine."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.data.files import write_bars
from engine.replay.sweep import RunSpec
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, minute_bars, only_momentum, session_bars
from tests.replay.test_sweep import _args, _data, _sweep


def _rows(out: Path) -> dict[str, dict[str, str]]:
    return {row["run"]: row for row in csv.DictReader((out / "sweep.csv").open(encoding="utf-8"))}


def test_the_backtests_notes_are_in_sweep_csv_and_said_once_for_the_runs_they_concern(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`backtest` prints its notes (here: hourly bars replayed a minute after they start, their close seen early);
    a sweep of the same data threw them away, and gave a clean table and exit 0. Each row keeps its run's notes,
    and the command says each distinct note once, naming its runs."""
    bars = minute_bars(MONDAY_OPEN, [190.0 + i / 10 for i in range(7)])
    hourly = [bar._replace(timestamp=MONDAY_OPEN + timedelta(hours=i)) for i, bar in enumerate(bars)]
    write_bars(tmp_path / "data", "AAPL", hourly, fsync=False)
    session_bars(tmp_path / "data", "SPY", MONDAY_OPEN, [500.0] * 390)
    sweep = _sweep(tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.5, 0.8]\n")
    assert main(_args(momentum_project, tmp_path / "data", sweep, "--jobs", "1", "--out", str(tmp_path / "out"))) == 0
    rows = _rows(tmp_path / "out")
    note = "AAPL's bars are mostly 1:00:00 apart, but each bar is replayed 0:01:00 after its timestamp"
    assert all(row["notes"].startswith(note) for row in rows.values()), rows
    assert rows["run-001"]["notes"] == rows["run-002"]["notes"]  # the same data, the same text
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note")]
    assert len(said) == 1 and said[0].startswith(f"note (run-001, run-002): {note}"), said


def test_each_distinct_note_is_said_once_with_its_runs_in_grid_order() -> None:
    """A hundred runs on the same data say its note once; runs in a row are a stretch, as in the retry line."""
    from engine.replay.sweep import notes_said

    rows: list[dict[str, Any]] = [{"run": f"run-{n:03d}", "notes": ("data note",)} for n in (5, 1, 2, 3)]
    rows += [{"run": "run-004", "notes": ("data note", "run four's own")}, {"run": "run-1000", "notes": ()}]
    assert notes_said(rows) == ["note (run-001 to run-005): data note", "note (run-004): run four's own"]


def _open_loser(folder: Path) -> Path:
    """AAPL rises (the bot buys), then falls about 3 % until the data ends mid-session."""
    closes = [190.0]
    for minute in range(1, 16):
        closes.append(round(closes[-1] + (0.08 if (minute // 40) % 2 == 0 else -0.07), 2))
    closes += [round(closes[-1] - 0.02 * i, 2) for i in range(1, 300)]
    session_bars(folder, "AAPL", MONDAY_OPEN, closes)
    return folder


def test_by_default_a_run_that_kept_its_loser_open_ranks_below_one_that_cut_it(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ranked by realized P&L (the old default) the run whose long time stop never closed its loser came first
    (realized 0, yet 150 lost on the open position) and the table showed nothing of it. The default ranks by the
    return on equity, which counts open positions at their last price; the unrealized P&L and the positions open
    at the end are columns of sweep.csv and of the table."""
    sweep = _sweep(tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [5]\n"
                             "momentum_bots[mom_AAPL].exits.time_stop_minutes: [25, 370]\n")  # fmt: skip
    data = _open_loser(tmp_path / "data")
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--out", str(tmp_path / "out"))) == 0
    ranked = list(csv.DictReader((tmp_path / "out" / "sweep.csv").open(encoding="utf-8")))
    assert [row["run"] for row in ranked] == ["run-001", "run-002"], ranked
    cut, kept = ranked
    assert (cut["open_at_end"], float(cut["unrealized_pnl"])) == ("0", 0.0) and float(cut["realized_pnl"]) < 0
    assert kept["open_at_end"] == "1" and float(kept["unrealized_pnl"]) < float(cut["realized_pnl"]) < 0
    assert float(kept["realized_pnl"]) > float(cut["realized_pnl"])  # the old default's order, the wrong one
    out = capsys.readouterr().out
    assert "unrealized P&L" in out and "open at end" in out and "sorted by return_pct" in out
    assert main(_args(momentum_project, data, sweep, "--jobs", "1", "--metric", "realized_pnl",
                      "--out", str(tmp_path / "realized"))) == 0  # fmt: skip
    assert [row["run"] for row in csv.DictReader((tmp_path / "realized" / "sweep.csv").open())] == ["run-002", "run-001"]


def test_sweep_csv_holds_no_path_of_this_machine_so_another_checkout_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/backtest.md: sweep.csv holds no time or path. A run's error named the absolute data folder (the crypto
    bot enabled without its data) and an unforeseen error its traceback's absolute file: the same sweep from
    another checkout, into another --out, gave other bytes. Both now name paths relative to the sweep's folders."""
    from engine.replay import backtest

    real = backtest.run_backtest

    def disk_full_in_run_001(*args: Any, **kwargs: Any) -> Any:
        if kwargs["out_dir"].name == "run-001":
            raise OSError(28, "No space left on device", str(kwargs["out_dir"] / "state.db"))
        return real(*args, **kwargs)

    monkeypatch.setattr(backtest, "run_backtest", disk_full_in_run_001)
    texts = []
    for checkout in ("one", "two/deeper"):
        root = tmp_path / checkout
        project = ProjectCopy(root / "project")
        only_momentum(project)
        sweep = _sweep(root, "cryptobot.enabled: [false, true]\nmomentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3]\n")
        assert main(_args(project, _data(root / "data"), sweep, "--jobs", "1", "--out", str(root / "out"))) == 2
        texts.append((root / "out" / "sweep.csv").read_text(encoding="utf-8"))
        assert str(tmp_path) not in texts[-1], texts[-1]
    assert texts[0] == texts[1]
    rows = {row["run"]: row for row in csv.DictReader(texts[0].splitlines())}
    assert rows["run-001"]["error"] == ("stopped by OSError: [Errno 28] No space left on device: 'run-001/state.db' "
                                        "(traceback in run-001/error.txt)")  # fmt: skip
    assert rows["run-002"]["error"].startswith("<data>:0:0: crypto_core trades BTC/USD, which has no data here")


def test_unrooted_names_each_folder_of_the_sweep_and_nothing_that_only_begins_like_one() -> None:
    """The folders are taken out at a path's boundary: a sibling folder whose name begins like one stays whole."""
    from engine.replay.sweep import unrooted

    spec = RunSpec("run-002", (), "/s/out/run-002/config", "/s/machines", "/s/rules", "/s/data", "/s/out/run-002")
    said = ("/s/data:0:0: x; /s/data/bars/A.csv:1:2: y; /s/data2/bars/A.csv; /s/out/run-002/error.txt; "
            "/s/machines/momentum.yaml; /s/rules; /s/out")  # fmt: skip
    assert unrooted(said, spec) == ("<data>:0:0: x; <data>/bars/A.csv:1:2: y; /s/data2/bars/A.csv; run-002/error.txt; "
                                    "<machines>/momentum.yaml; <rules>; <out>")  # fmt: skip


def test_the_fill_models_charges_reach_each_run_through_its_spec(momentum_project: ProjectCopy, tmp_path: Path) -> None:
    """A sweep's runs were built with the fill model's timing and slippage only: a commission or a crypto fee tier
    given for the sweep would have been dropped, every run charged FillModel's defaults. `prepare` takes the four
    charges and each RunSpec carries them (defaults: FillModel's own) to `run_one`, wherever it runs."""
    from dataclasses import replace

    from engine.replay.fills import FillModel
    from engine.replay.sweep import prepare, run_one
    from tests.replay.conftest import load

    charges = ("commission_per_share", "commission_per_contract", "crypto_maker_fee", "crypto_taker_fee")
    data, sweep = _data(tmp_path / "data"), _sweep(tmp_path, "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3]\n")
    _overrides, (spec,) = prepare(sweep, load(momentum_project), tmp_path / "out", machines_dir=momentum_project.machines,
                                  rules_dir=momentum_project.rules, data_dir=data)  # fmt: skip
    assert {name: getattr(spec, name) for name in charges} == {name: getattr(FillModel(), name) for name in charges}
    given = {"commission_per_share": 0.05, "commission_per_contract": 0.65, "crypto_maker_fee": 0.001, "crypto_taker_fee": 0.002}
    _overrides, (charged,) = prepare(sweep, load(momentum_project), tmp_path / "charged", machines_dir=momentum_project.machines,
                                     rules_dir=momentum_project.rules, data_dir=data, commission_per_share=0.05,
                                     commission_per_contract=0.65, crypto_maker_fee=0.001, crypto_taker_fee=0.002)  # fmt: skip
    assert {name: getattr(charged, name) for name in charges} == given
    free_row, charged_row = run_one(spec), run_one(replace(charged, commission_per_contract=0.0))
    assert free_row["error"] == charged_row["error"] == "" and free_row["trades"] == charged_row["trades"] > 0
    assert charged_row["return_pct"] < free_row["return_pct"]  # the commission on each share was charged


def test_sweep_csv_refuses_a_figure_that_is_not_finite(tmp_path: Path) -> None:
    """sweep.csv wrote `inf` as a figure (a run whose cash overflowed), which reads as a number and sorts as the
    best return: the table is refused whole, naming the run and the column, and no file is left."""
    from engine.replay.report import FigureNotFinite
    from engine.replay.sweep import write_csv

    row = {"run": "run-001", "trades": 1, "return_pct": float("inf"), "notes": [], "error": None}
    with pytest.raises(FigureNotFinite, match=r"sweep\.csv: run-001 return_pct is inf, not a finite number"):
        write_csv([row], [], tmp_path / "sweep.csv")
    assert list(tmp_path.iterdir()) == []
    write_csv([{**row, "return_pct": 0.5}], [], tmp_path / "sweep.csv")
    assert (tmp_path / "sweep.csv").exists()
