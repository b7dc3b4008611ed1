"""How a path is named in a message: never the thing that breaks the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.paths import shown


def test_a_path_below_the_working_folder_is_shown_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "state" / "db.sqlite") == str(Path("state") / "db.sqlite")
    assert shown(Path("/elsewhere/x")) == "/elsewhere/x"


def test_a_symlink_loop_is_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert shown(loop / "state.db") == str(loop / "state.db")
