"""`backtest --sweep --out` that is not an empty folder that can be written: one line, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, session_bars

SWEEP = "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.8]\n"


def _some_data(folder: Path) -> Path:
    """A data folder a backtest reads (one bar of AAPL): a sweep refuses a folder it cannot replay before it runs
    anything (`sweep._check_data`), and these tests are about --out, not about the data."""
    session_bars(folder, "AAPL", MONDAY_OPEN, [190.0])
    return folder


def _run(project: ProjectCopy, tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    (tmp_path / "data").mkdir()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP, encoding="utf-8")
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    code = main(["backtest", "--data", str(tmp_path / "data"), "--sweep", str(sweep), "--out", str(out), "--jobs", "1", *files])
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err
    return code, said.err


def test_an_out_that_is_a_file_is_refused(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a NotADirectoryError traceback (listing the file as a folder)."""
    out = tmp_path / "a-file"
    out.write_text("keep me\n", encoding="utf-8")
    code, err = _run(momentum_project, tmp_path, out, capsys)
    assert code == 2 and f"{out}:0:0: not a folder: a sweep writes a new folder (give another --out)" in err
    assert out.read_text(encoding="utf-8") == "keep me\n"


def test_an_out_that_cannot_be_made_is_refused(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under a file, the folder cannot be made: it was a traceback from the first run's mkdir."""
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    out = tmp_path / "a-file" / "sweep"
    code, err = _run(momentum_project, tmp_path, out, capsys)
    assert code == 2 and f"{out}:0:0: cannot write the sweep there (Not a directory)" in err


def test_an_unknown_key_is_told_once_not_once_per_value(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.config.errors import ConfigError
    from engine.replay.sweep import read_sweep
    from tests.replay.conftest import load

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("cryptobot.symbols: [[], [1]]\n", encoding="utf-8")
    config = load(momentum_project).config
    assert config is not None
    with pytest.raises(ConfigError) as caught:
        read_sweep(sweep, config.bots_doc)
    (problem,) = caught.value.problems
    assert problem.message.startswith("unknown key 'symbols'")


@pytest.mark.parametrize("inside", [".", "quotes/sw"])
def test_an_out_inside_the_data_folder_is_refused_and_nothing_is_written(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: str
) -> None:
    """Its runs' folders and sweep.csv in quotes/ made every later backtest of the folder refuse it."""
    code, err = _run(momentum_project, tmp_path, tmp_path / "data" / inside, capsys)
    assert code == 2 and "inside the data folder" in err
    assert list((tmp_path / "data").iterdir()) == []


def test_two_sweeps_into_one_out_at_once_never_share_it(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both found the folder empty; the second one's first run folder was then there already: a FileExistsError
    traceback, or, a moment earlier, both sweeps' runs in one folder. The first run's folder claims it."""
    from engine.config.errors import ConfigError
    from engine.replay import sweep
    from tests.replay.conftest import load

    _some_data(tmp_path / "data")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP, encoding="utf-8")
    report, out = load(momentum_project), tmp_path / "sw"

    def prepare() -> list[sweep.RunSpec]:
        return sweep.prepare(sweep_file, report, out, machines_dir=momentum_project.machines,
                             rules_dir=momentum_project.rules, data_dir=tmp_path / "data")[1]  # fmt: skip

    real = sweep._check_out
    others: list[list[sweep.RunSpec]] = []

    def the_other_one_prepares_meanwhile(folder: Path) -> None:  # found empty by this one, then by the other
        real(folder)
        if not others:
            others.append([])
            others[0] = prepare()

    monkeypatch.setattr(sweep, "_check_out", the_other_one_prepares_meanwhile)
    with pytest.raises(ConfigError) as refused:
        prepare()
    assert "another sweep is writing to it now" in refused.value.problems[0].message
    assert [Path(s.out_dir).name for s in others[0]] == ["run-001", "run-002"]
    assert sorted(p.name for p in out.iterdir()) == ["run-001", "run-002"]
    assert all((Path(s.config_dir) / "bots.yaml").is_file() for s in others[0])  # the other's left whole


def test_sweeps_started_in_one_second_without_out_get_a_folder_each(
    momentum_project: ProjectCopy, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default folder is named by the second: the second sweep was refused "not empty ... (give another --out)",
    a flag it had not given. It gets the name with -2."""
    from datetime import datetime, timedelta, timezone

    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    now = datetime.now(timezone.utc)
    for seconds in range(-2, 60):  # the folder of whichever second the command starts in is taken already
        taken = tmp_path / "backtests" / (now + timedelta(seconds=seconds)).strftime("sweep-%Y%m%dT%H%M%SZ")
        (taken / "run-001").mkdir(parents=True)
    _some_data(tmp_path / "data")
    (tmp_path / "sweep.yaml").write_text(SWEEP, encoding="utf-8")
    files = ["--config", str(momentum_project.config), "--machines", str(momentum_project.machines), "--rules",
             str(momentum_project.rules)]  # fmt: skip
    main(["backtest", "--data", "data", "--sweep", "sweep.yaml", "--jobs", "1", *files])
    said = capsys.readouterr()
    assert "give another --out" not in said.err and "Traceback" not in said.err
    made = [p for p in (tmp_path / "backtests").iterdir() if p.name.endswith("Z-2")]
    assert len(made) == 1 and (made[0] / "sweep.csv").is_file()
    assert f"in {Path('backtests') / made[0].name}/" in said.out
