"""`backtest --sweep --out` that is not an empty folder that can be written: one line, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import ProjectCopy

SWEEP = "momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.8]\n"


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
    with pytest.raises(ConfigError) as caught:
        read_sweep(sweep, load(momentum_project).config.bots_doc)
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
