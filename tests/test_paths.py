"""How a path is named in a message: never the thing that breaks the message."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from engine.paths import PathKind, path_kind, shown


def test_a_path_below_the_working_folder_is_shown_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "state" / "db.sqlite") == str(Path("state") / "db.sqlite")
    assert shown(Path("/elsewhere/x")) == "/elsewhere/x"


def test_a_symlink_loop_is_shown_without_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the working folder, relative as any path; elsewhere, where only resolving could tell, as given."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    loop = tmp_path / "here" / "loop"
    loop.symlink_to(loop)
    assert shown(loop / "state.db") == os.path.join("loop", "state.db")
    away = tmp_path / "away"
    away.symlink_to(away)
    assert shown(away / "state.db") == str(away / "state.db")


def test_a_symlink_is_shown_as_itself_not_as_its_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`config/settings.yaml` linked to a file that is gone was named `config/nowhere.yaml`: a path the user never
    typed, and the file they edit never named."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.yaml").symlink_to("nowhere.yaml")
    (tmp_path / "config" / "bots.yaml").symlink_to(tmp_path / "elsewhere" / "bots.yaml")
    monkeypatch.chdir(tmp_path)
    assert shown(Path("config/settings.yaml")) == os.path.join("config", "settings.yaml")
    assert shown(tmp_path / "config" / "bots.yaml") == os.path.join("config", "bots.yaml")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.yaml").write_text("")
    (tmp_path / "config" / "link").symlink_to(tmp_path / "elsewhere" / "deeper")
    (tmp_path / "elsewhere" / "deeper").mkdir()
    # `..` after a linked folder leaves the link's target: the file read is elsewhere/x.yaml, not config/x.yaml
    assert shown(Path("config/link/../x.yaml")) == os.path.join("elsewhere", "x.yaml")


def test_what_is_at_a_path_is_told_without_opening_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a socket's name must be short: relative, below the working folder
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "to-nothing").symlink_to(tmp_path / "gone")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("sock")
        assert path_kind(Path("sock")) is PathKind.SOCKET
    assert path_kind(tmp_path / "file") is PathKind.FILE
    assert path_kind(tmp_path / "to-file") is PathKind.FILE  # a link is judged by what it names
    assert path_kind(tmp_path / "folder") is PathKind.FOLDER
    assert path_kind(tmp_path / "fifo") is PathKind.FIFO  # and never opened: that would wait for a writer
    assert path_kind(Path(os.devnull)) is PathKind.DEVICE
    assert path_kind(tmp_path / "gone") is PathKind.NOTHING
    assert path_kind(tmp_path / "gone" / "deeper") is PathKind.NOTHING
    assert path_kind(tmp_path / "to-nothing") is PathKind.LINK_TO_NOTHING
    assert PathKind.NOTHING.absent and PathKind.LINK_TO_NOTHING.absent and not PathKind.FILE.absent


def test_what_cannot_be_looked_at_is_the_callers_to_say(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(NotADirectoryError):
        path_kind(tmp_path / "file" / "below")
    with pytest.raises(OSError, match="symbolic links"):
        path_kind(loop)


def test_trying_a_folder_leaves_another_commands_probe_in_place(tmp_path: Path) -> None:
    """Two commands try one folder at once (two backtests given the same --out, two `run --record` into it): each
    makes a file, then removes it. Made under one name for all, the first removed the second's, whose own removal
    then failed (ENOENT), and it was told "cannot write there" of a folder it could write."""
    from engine.paths import ensure_writable_folder

    others = tmp_path / ".write-check"
    others.write_text("")  # the other command's probe, at this instant
    ensure_writable_folder(tmp_path)
    assert others.exists()
    ensure_writable_folder(tmp_path)  # and again while it is there
    assert sorted(p.name for p in tmp_path.iterdir()) == [".write-check"]  # ours removed, each time
