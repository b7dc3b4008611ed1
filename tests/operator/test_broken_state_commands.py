"""Every command that reads or writes the state meets a broken state file with one line naming the file and
what is wrong, and the README's exit code (2: the file's content, 1: the file cannot be used now), never a
traceback; `run` sends nothing on it. In-process through `engine.cli.main` (fast), real SQLite files."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy

FILES = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
         "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
COMMANDS: dict[str, list[str]] = {
    "status": ["status"],
    "why": ["why", "mom_AAPL"],
    "report": ["report"],
    "health": ["health"],
    "halt": ["halt", "--reason", "probe"],
    "resume": ["resume"],
    "diagram": ["diagram", "momentum", "--bot", "mom_AAPL"],
    "run": ["run", "--ticks", "2", "--quiet"],
}


@pytest.fixture(scope="module")
def good_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state file after a short simulated run and an operator's halt."""
    folder = tmp_path_factory.mktemp("good")
    db, log = folder / "s.db", folder / "app.jsonl"
    assert main(["run", "--ticks", "30", "--quiet", "--state-db", str(db), "--log", str(log), *FILES[:2], *FILES[2:]]) == 0
    assert main(["halt", "--reason", "kept", "--state-db", str(db), "--log", str(log), *FILES]) == 0
    return db


def _sql(statement: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(statement)
        conn.close()

    return edit


DEEP = "[" * 100_000 + "]" * 100_000

# damage -> (how, a phrase of the message, the commands that do not read what is damaged)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, set[str]]] = {
    "newer schema": (_sql("PRAGMA user_version=99"), "newer than this engine", set()),
    "missing column": (_sql("ALTER TABLE halts DROP COLUMN until"), "lacks the column", set()),
    "another application's": (lambda p: _another(p), "not a Trading Hydra state file", set()),
    # health judges the last tick alone (its age, the last run): it reads no machine state, as it reads no file but
    # settings.yaml (tests/test_service.py), and a running engine would stop ticking on a row it cannot read
    "bad machine time": (_sql("UPDATE machine_states SET since = 'yesterday'"), "machine_states", {"halt", "health"}),
    "bad halt time": (_sql("UPDATE halts SET started_at = 'garbage'"), "table halts", {"health", "halt", "diagram"}),
    "bad halt conditions": (_sql("UPDATE halts SET conditions = '{x'"), "table halts", {"health", "halt", "diagram"}),
    "halt reason in bytes": (_sql("UPDATE halts SET reason = X'FF00'"), "table halts", {"health", "halt", "diagram"}),
    "position symbol in bytes": (
        _sql("UPDATE positions SET symbol = X'41' WHERE rowid = (SELECT min(rowid) FROM positions)"),
        "positions",
        {"health", "halt", "resume", "diagram"},  # why and report show the positions since 2026-12-03
    ),
    "bad position": (
        _sql("UPDATE positions SET opened_at = 'zz'"),
        "positions",
        {"health", "halt", "resume", "diagram"},  # why and report show the positions since 2026-12-03
    ),
    # why reads the simulation's clock as status does (to tell the halts in force now)
    "bad sim clock": (_sql("UPDATE meta SET value = '{' WHERE key = 'sim_exchange'"), "sim_exchange", {"diagram", "halt"}),
    "bad last run": (
        _sql("UPDATE meta SET value = '[' WHERE key = 'last_run'"),
        "meta 'last_run'",
        {"why", "report", "halt", "resume", "diagram", "run"},
    ),
    "bad last facts": (
        _sql("UPDATE last_facts SET body = X'00DEADBEEF'"),
        "last_facts",
        {"status", "report", "health", "halt", "resume", "diagram", "run"},
    ),
    "last facts of another shape": (
        lambda p: _reshape_facts(p),
        "last_facts",
        {"status", "report", "health", "halt", "resume", "diagram", "run"},
    ),
    "a folder": (lambda p: _a_folder(p), "is a folder", set()),
    # JSON nested past the recursion limit raised RecursionError, not ValueError: a traceback in every command
    "deeply nested last run": (
        _sql(f"UPDATE meta SET value = '{DEEP}' WHERE key = 'last_run'"),
        "meta 'last_run'",
        {"why", "report", "halt", "resume", "diagram", "run"},
    ),
    "deeply nested halt conditions": (
        _sql(f"UPDATE halts SET conditions = '{DEEP}'"), "table halts", {"health", "halt", "diagram"}
    ),
    "deeply nested sim clock": (
        _sql(f"UPDATE meta SET value = '{DEEP}' WHERE key = 'sim_exchange'"), "sim_exchange", {"diagram", "halt"}
    ),
}


def _reshape_facts(path: Path) -> None:
    """The why record decodes, but a bot's refused checks are a number where names belong (a traceback in `why`)."""
    import marshal
    import zlib

    conn = sqlite3.connect(path)
    with conn:
        body = bytes(conn.execute("SELECT body FROM last_facts WHERE scope = 'tick'").fetchone()[0])
        if body.startswith(b"\x00zlib:"):
            body = zlib.decompress(body[len(b"\x00zlib:") :])
        system, names, by_bot = marshal.loads(body)
        values, *_rest = by_bot["mom_AAPL"]
        by_bot["mom_AAPL"] = (values, 5, 7)
        conn.execute("UPDATE last_facts SET body = ? WHERE scope = 'tick'", (marshal.dumps((system, names, by_bot)),))
    conn.close()


def _another(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()


def _a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_state_file_is_one_line_and_exit_2(
    tmp_path, good_state: Path, damage: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    breaks, phrase, unaffected = DAMAGES[damage]
    breaks(db)
    code = main([*COMMANDS[command], "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    if command in unaffected:
        assert code in (0, 1), out + err  # it answered from what it could read (health/why: 1 when nothing is there)
        return
    # a saved simulation that cannot be read is a damaged state file too (tests/brokers/test_sim_persist.py)
    assert code == 2, out + err
    text = (err + out).strip()
    assert phrase in text and str(db.name) in text, text
    lines = [line for line in text.splitlines() if phrase in line]
    assert len(lines) == 1, text
    if command == "run":
        assert "ticks to" not in out  # no tick ran on it
        assert not log.exists() or '"event":"order"' not in log.read_text()


def _read_only_copy(state: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`state` copied to `db`, which SQLite then opens in its own read-only mode (tests run as root, whom file modes
    do not stop)."""
    import engine.core.store as store_module

    shutil.copy(state, db)
    real_connect = sqlite3.connect

    def read_only(name: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if name == str(db):
            return real_connect(f"file:{db}?mode=ro", *args, uri=True, **kwargs)
        return real_connect(name, *args, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, "connect", read_only)


def test_a_state_file_that_cannot_be_written_is_exit_1_and_the_halt_not_claimed(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only state (simulated here through SQLite's own read-only mode: tests run as root, which file
    modes do not stop): `halt` says it could not record the halt, exit 1, and does not print `halted`."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    _read_only_copy(good_state, db, monkeypatch)
    code = main(["halt", "--reason", "x", "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 1 and "halted:" not in out
    assert err.strip().splitlines() == [err.strip()] and f"state file {db}: cannot be written" in err
    assert "the halt is NOT recorded" in err  # "error: ... cannot be written" alone left the operator guessing


def test_a_resume_on_a_state_file_that_cannot_be_written_says_nothing_is_resumed(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read-only (SQLite's own read-only mode, as above): `resume` said only "error: state file ...: cannot be
    written", exit 1, leaving the operator to guess whether trading was resumed. It says every halt stays, and
    logs no `resume` event."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    _read_only_copy(good_state, db, monkeypatch)
    code = main(["resume", "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 1 and "resumed" not in out
    assert err.strip().splitlines() == [err.strip()] and "nothing is resumed: every halt stays in force" in err, err
    assert not log.exists() or '"event":"resume"' not in log.read_text().replace(" ", "")


# An operator's halt was refused (exit 2, nothing recorded) on a state file that could take it: the simulation's saved
# time unreadable (`halt` needs no time: a halt with no `until` is in force at any time), or a saved row that
# validation cannot read. Only a file the store itself refuses (a newer schema, a missing table) stops a halt.
@pytest.mark.parametrize("statement, stamp", [
    ("""UPDATE meta SET value = '{"version": 2, "now": "nope", "revision": 4}' WHERE key = 'sim_exchange'""", "clock"),
    ("UPDATE meta SET value = '{' WHERE key = 'sim_exchange'", "clock"),
    ("UPDATE machine_states SET since = 'yesterday'", "sim"),
])  # fmt: skip
def test_a_halt_is_recorded_while_the_saved_state_cannot_be_read(
    tmp_path, good_state: Path, statement: str, stamp: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.core.store import SYSTEM_SCOPE, StateStore

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    _sql("UPDATE halts SET ended_at = '2000-01-01T00:00:00+00:00', ended_by = 'operator'")(db)  # good_state's ended
    _sql(statement)(db)
    before = datetime.now(timezone.utc)
    code = main(["halt", "--reason", "emergency", "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("halted: emergency"), out + err
    assert "warning:" in err and "Traceback" not in err
    if stamp == "clock":  # said which time the halt carries
        assert "stamped with this machine's clock" in err and "sim_exchange" in err
    conn = sqlite3.connect(db)
    (started,) = conn.execute("SELECT started_at FROM halts WHERE reason = 'emergency' AND ended_at IS NULL").fetchone()
    conn.close()
    if stamp == "clock":
        assert datetime.fromisoformat(started) >= before.replace(microsecond=0)
    assert '"reason":"emergency"' in log.read_text().replace(" ", "")
    _sql("UPDATE meta SET value = 'alpaca' WHERE key = 'broker'")(db)  # the halt is in force at any time
    _sql("UPDATE machine_states SET since = '2026-01-01T00:00:00+00:00'")(db)
    store = StateStore(db)
    try:
        for when in (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc) + timedelta(days=3650)):
            halt = store.halt_in_force(SYSTEM_SCOPE, when)
            assert halt is not None and halt.reason == "emergency"
    finally:
        store.close()


# `resume` with no state file made one (and its folder, and a log) and said "resumed: 0 halt(s) ended", exit 0: at a
# mistyped --state-db the engine stays halted, with a new state file left where it was typed; an empty file at the
# path (the run's lock file) had a database written into it
@pytest.mark.parametrize("command", ["status", "why", "report", "health", "resume"])
def test_reading_commands_do_not_create_a_state_file(tmp_path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    db, log = tmp_path / "new" / "s.db", tmp_path / "new" / "app.jsonl"
    code = main([*COMMANDS[command], "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "no state" in out + err
    assert not db.exists() and not log.exists()


@pytest.mark.parametrize("command", ["halt", "resume", "run"])
def test_a_folder_at_the_log_path_is_one_line_and_exit_2(
    tmp_path, good_state: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    log.mkdir()
    code = main([*COMMANDS[command], "--state-db", str(db), "--log", str(log), *FILES])
    _out, err = capsys.readouterr()
    recorded = f"; the halt IS recorded in {db} and in force (its event is not in the log)" if command == "halt" else ""
    assert code == 2 and err.strip() == f"error: log file {log}: is a folder, not a log file{recorded}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_the_log_stops_the_run_with_exit_1_and_sends_nothing(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/full takes the file open and refuses every write (ENOSPC), as a disk that filled up would."""
    db = tmp_path / "s.db"
    code = main(["run", "--ticks", "40", "--quiet", "--state-db", str(db), "--log", "/dev/full", *FILES])
    _out, err = capsys.readouterr()
    assert code == 1 and err.strip().splitlines()[-1] == "error: log file /dev/full: No space left on device"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM orders WHERE status != 'not_sent'").fetchone()[0] == 0
    conn.close()


def test_halt_works_while_a_machine_file_no_longer_has_a_saved_state(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator mid-edit of a machine file (a state renamed) while the engine runs on the files it read at its
    start: the files validate alone, but not with the state saved in the old one. `halt` refused, exit 2, nothing
    recorded: the engine went on trading. It records the halt and says what disagrees, as for a file that cannot
    be read; `status` shows the state beside it, and `why` (which explains by the machine file) refuses (exit 2)."""
    from engine.core.store import StateStore

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    _sql("UPDATE machine_states SET state = 'cruising' WHERE bot_id = 'mom_AAPL'")(db)
    code = main(["halt", "--reason", "mid-edit", "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "saved in state 'cruising'" in err and "warning:" in err and out.startswith("halted: mid-edit")
    store = StateStore(db)
    try:
        assert "mid-edit" in [h.reason for h in store.halts(open_only=True)]
    finally:
        store.close()
    assert main(["why", "mom_AAPL", "--state-db", str(db), "--log", str(log), *FILES]) == 2
    # status shows the state as saved beside what disagrees (tests/test_cli_mid_edit.py)
    assert main(["status", "--state-db", str(db), "--log", str(log), *FILES]) == 0
    out, err = capsys.readouterr()
    assert "saved in state 'cruising'" in err and "cruising" in out


@pytest.mark.parametrize("command", ["status", "why", "report", "health", "diagram", "resume"])
def test_reading_commands_leave_an_empty_file_empty(tmp_path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file at the state path holds nothing (validation reads it so), but the reading commands opened it,
    and SQLite wrote a new database into it: whatever file --state-db named (a mistyped path, the run's lock file)."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    db.touch()
    code = main([*COMMANDS[command], "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code in (0, 1) and ("no state" in out + err or "no saved state" in err), out + err
    assert db.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


def _killed_engines_wal(good_state: Path, folder: Path) -> bytes:
    """A -wal as a killed engine leaves it: commits of `good_state` past its last checkpoint."""
    work = folder / "work"
    work.mkdir()
    shutil.copy(good_state, work / "s.db")
    conn = sqlite3.connect(work / "s.db")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    with conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('after_the_checkpoint', 'kept only in the -wal')")
    wal = (work / "s.db-wal").read_bytes()
    conn.close()
    shutil.rmtree(work)
    assert wal
    return wal


@pytest.mark.parametrize("beside", ["its lock file", "a -wal"])
@pytest.mark.parametrize("command", [*sorted(COMMANDS), "validate"])
def test_a_state_file_cut_to_nothing_is_refused_by_every_command_and_left_as_it_is(
    tmp_path, good_state: Path, beside: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file cut to 0 bytes (a copy or a save on a full disk, `: > state.db`) beside its lock file (a run has
    used it) or a -wal (a killed engine's last records) was refused by `run` alone: `status` said "no state yet",
    `health`, `why`, `report`, `resume`, `validate` and `diagram --bot` read it as nothing having run, and `halt`
    wrote a new database over it, SQLite deleting the -wal, the only copy of those records; the next run then took
    it as a fresh state. Every command now says so in one judgement (`store.cut_to_nothing`), exit 2, and writes
    nothing: the file, the lock and the -wal stay as they were, and no log is made."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    db.write_bytes(b"")
    kept = {}
    if beside == "a -wal":
        Path(f"{db}-wal").write_bytes(_killed_engines_wal(good_state, tmp_path))
        kept["s.db-wal"] = Path(f"{db}-wal").read_bytes()
    else:
        Path(f"{db}.lock").write_bytes(b"")
        kept["s.db.lock"] = b""
    argv = ["--validate"] if command == "validate" else COMMANDS[command]
    code = main([*argv, "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "is empty (0 bytes)" in out + err and "cut to nothing" in out + err and "no state yet" not in out + err
    assert "halted:" not in out and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == {"s.db": b"", **kept}


def test_a_first_run_on_a_new_empty_file_is_not_taken_for_one_cut_to_nothing(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty file with nothing beside it is a new one (`touch`): a first `run` makes the lock file beside it just
    before it opens the file, which must not then read as "a run has used it"."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    db.touch()
    assert main(["status", "--state-db", str(db), "--log", str(log), *FILES]) == 0
    assert "no state yet" in capsys.readouterr().out
    assert main([*COMMANDS["run"], "--state-db", str(db), "--log", str(log), *FILES]) == 0
    assert db.stat().st_size > 0


def test_a_halt_at_a_path_whose_folder_does_not_exist_is_refused_and_makes_nothing(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`halt --state-db` with a folder typed wrong made the folders and a new state file, and said "halted ...
    recorded", exit 0: a halt no engine reads, while the running one traded on. It is refused (exit 2, one line
    naming the path and saying the halt is NOT recorded), and nothing is made."""
    db, log = tmp_path / "stat" / "s.db", tmp_path / "app.jsonl"
    code = main(["halt", "--reason", "typo", "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 2 and "halted" not in out, out + err
    assert err.strip().splitlines() == [err.strip()] and f"state file {db}: its folder {db.parent} does not exist" in err
    assert "the halt is NOT recorded" in err and f"mkdir -p {db.parent}" in err
    assert list(tmp_path.iterdir()) == []


def test_a_halt_before_a_new_checkouts_first_run_makes_settings_yamls_state_folder(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """settings.yaml's own state path is the one the first run makes and reads: a halt before that run still makes its
    folder (a new checkout has no state/), and says that no run has used the file; only a --state-db's folder that
    does not exist is a path typed wrong."""
    monkeypatch.chdir(project.root)
    folders = ["--config", "config", "--machines", "machines", "--rules", "rules"]
    assert not (project.root / "state").exists()
    assert main(["halt", "--reason", "before the first run", *folders]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("halted: before the first run") and "is a state file no run has used yet" in err
    assert (project.root / "state" / "trading_state.db").stat().st_size > 0


def test_a_halt_written_to_a_new_state_file_says_no_run_has_used_it(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A halt before the first run is kept (the first run starts halted), but "halted ... recorded" alone read the
    same for a mistyped file name (a new file beside the engine's): it now says on stderr that no run has used the
    file, so an engine running on another one does not see it. A state file a run has used gets no such line."""
    new, log = tmp_path / "new.db", tmp_path / "app.jsonl"
    assert main(["halt", "--reason", "before the first run", "--state-db", str(new), "--log", str(log), *FILES]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("halted: before the first run") and f"recorded in {new}" in out
    assert f"warning: {new} is a state file no run has used yet" in err and err.count("\n") == 1, err
    used = tmp_path / "s.db"
    shutil.copy(good_state, used)
    assert main(["halt", "--reason", "news", "--state-db", str(used), "--log", str(log), *FILES]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("halted: news") and err == ""


def _without_root_override() -> list[str] | None:
    """The prefix that runs a command so that file modes bind it: none for a user that is not root; for root,
    setpriv dropping the capabilities that pass over them; None when that cannot be had."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"]


@pytest.mark.parametrize("command", ["status", "health", "why", "report"])
def test_a_reading_command_in_a_read_only_folder_says_it_cannot_read_not_write(tmp_path, good_state: Path, command: str) -> None:
    """In a folder the user may not write, SQLite cannot make the -wal and -shm it reads a WAL file through: `status`,
    `health`, `why` and `report` said "cannot be written (a read-only file or folder)", as if they had tried to change
    the state. They say the file cannot be read here and why (exit 1, a failure of the moment), and nothing is made."""
    import subprocess
    import sys

    prefix = _without_root_override()
    if prefix is None:
        pytest.skip("root, and no setpriv to drop the capability that passes over file modes")
    folder = tmp_path / "state"
    folder.mkdir()
    db, log = folder / "s.db", folder / "app.jsonl"
    shutil.copy(good_state, db)
    log.write_text("")
    os.chmod(db, 0o666)
    os.chmod(log, 0o666)
    os.chmod(folder, 0o555)
    try:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("ALPACA_")}
        done = subprocess.run([*prefix, sys.executable, "-m", "engine", *COMMANDS[command], "--state-db", str(db),
                               "--log", str(log), *FILES], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 1, done
    assert done.stderr.strip() == done.stderr.strip().splitlines()[0], done.stderr
    assert f"state file {db}: cannot be read here" in done.stderr and "cannot be written" not in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["app.jsonl", "s.db"]


YEAR_ONE = "0001-01-01T00:00:00+00:00"  # a time Python reads, and cannot move into America/Los_Angeles (year 0)


@pytest.mark.parametrize("statement", [
    f"UPDATE halts SET started_at = '{YEAR_ONE}'",
    f"UPDATE machine_states SET since = '{YEAR_ONE}' WHERE bot_id = 'mom_AAPL'",
    f"UPDATE last_facts SET at = '{YEAR_ONE}'",
    f"UPDATE trades SET closed_at = '{YEAR_ONE}'",
])  # fmt: skip
@pytest.mark.parametrize("command", ["status", "why", "report"])
def test_a_saved_time_at_the_calendars_start_is_shown_as_saved_not_a_traceback(
    tmp_path, good_state: Path, statement: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-edited or damaged time of year 1 reads, but shown in system.timezone it left the years Python has:
    status, why and report ended in an OverflowError traceback. It is shown as it was saved."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    _sql(statement)(db)
    code = main([*COMMANDS[command], "--state-db", str(db), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code in (0, 1) and "Traceback" not in err, out + err
    if command == "status" and "halts" in statement:
        assert f"kept (since {YEAR_ONE}, until resume)" in out  # the operator's halt of good_state, as saved


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_resume_the_log_cannot_take_ends_no_halt(tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The halts' end was committed before the log was written: on a full disk `resume` said "error" and exit 1,
    yet every halt was over and trading went on, with no `resume` event anywhere. Now nothing is resumed."""
    from engine.core.store import SYSTEM_SCOPE, StateStore

    db = tmp_path / "s.db"
    shutil.copy(good_state, db)
    code = main(["resume", "--state-db", str(db), "--log", "/dev/full", *FILES])
    _out, err = capsys.readouterr()
    assert code == 1 and err.strip().splitlines()[-1] == "error: log file /dev/full: No space left on device"
    store = StateStore(db)
    try:
        halt = store.halt_in_force(SYSTEM_SCOPE, datetime.now(timezone.utc) + timedelta(days=3650))
        assert halt is not None and halt.reason == "kept"  # good_state's operator halt, still in force
    finally:
        store.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_halt_the_log_cannot_take_is_in_force_and_says_so(tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A halt is committed first, whatever the log says: it must stop the engine. The command said only "error:
    log file ...: No space left on device", which reads as "not halted"; it now says the halt is in force."""
    from engine.core.store import SYSTEM_SCOPE, StateStore

    db = tmp_path / "s.db"
    shutil.copy(good_state, db)
    code = main(["halt", "--reason", "disk full", "--state-db", str(db), "--log", "/dev/full", *FILES])
    _out, err = capsys.readouterr()
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and f"the halt IS recorded in {db} and in force" in err
    store = StateStore(db)
    try:
        halt = store.halt_in_force(SYSTEM_SCOPE, datetime.now(timezone.utc) + timedelta(days=3650))
        assert halt is not None and halt.reason == "disk full"
    finally:
        store.close()


def test_a_halt_whose_log_is_a_folder_is_in_force_and_says_the_log_is_wrong(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`halt --log FOLDER` stopped at opening the log, exit 2, and recorded nothing: the operator's emergency halt
    was lost to a log path typed wrong (and a state file that did not exist yet was made empty). The halt is now
    committed, and the one line says the log cannot take its event, still exit 2 (the --log to fix). A resume with
    that log ends nothing: its event could not be written."""
    from engine.core.store import SYSTEM_SCOPE, StateStore

    folder = tmp_path / "logs"
    folder.mkdir()
    for db in (tmp_path / "new.db", tmp_path / "s.db"):
        if db.name == "s.db":
            shutil.copy(good_state, db)
        code = main(["halt", "--reason", "typo", "--state-db", str(db), "--log", str(folder), *FILES])
        _out, err = capsys.readouterr()
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"log file {folder}: is a folder" in err and f"the halt IS recorded in {db} and in force" in err
        assert main(["resume", "--state-db", str(db), "--log", str(folder), *FILES]) == 2
        assert "is a folder" in capsys.readouterr().err
        store = StateStore(db)
        try:
            halt = store.halt_in_force(SYSTEM_SCOPE, datetime.now(timezone.utc) + timedelta(days=3650))
            assert halt is not None and halt.reason in ("typo", "kept"), db
            assert any(h.reason == "typo" and h.ended_at is None for h in store.halts()), db
        finally:
            store.close()
    assert list(folder.iterdir()) == []


def test_resume_with_no_halt_in_force_says_nothing_was_resumed(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume` said "resumed: 0 halt(s) ended" when no halt was in force, and "resumed: 1 halt(s) ended" for a
    halt whose cooloff had run out (open until the engine's next tick ends it): 'resumed' where nothing was."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    args = ["resume", "--state-db", str(db), "--log", str(log), *FILES]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("resumed: 1 halt(s) ended")  # the halt `kept`
    assert main(args) == 0
    assert capsys.readouterr().out == "nothing to resume: no halt was in force\n"
    _sql("UPDATE halts SET ended_at = NULL, ended_by = NULL, until = '2000-01-01T00:00:00+00:00'")(db)  # run out
    assert main(args) == 0
    assert capsys.readouterr().out == "nothing to resume: no halt was in force\n"


def test_a_resume_of_a_kill_conditions_halt_says_the_next_tick_halts_again_while_it_holds(
    tmp_path, good_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume` of a halt the engine set (here the daily loss limit's) said only "resumed: 1 halt(s) ended": read as
    trading resumed, while the next tick halts again as long as the loss is still there. It names the condition
    and says so; an operator's own halt alone is resumed as before."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    args = ["resume", "--state-db", str(db), "--log", str(log), *FILES]
    _sql("INSERT INTO halts (scope, reason, conditions, flatten, started_at, until) VALUES ('system', "
         "'kill condition: max_daily_loss_halt', '[\"max_daily_loss_halt\"]', 1, '2026-12-02T14:32:25+00:00', "
         "'2999-01-01T00:00:00+00:00')")(db)  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("resumed: 2 halt(s) ended") and "max_daily_loss_halt" in out, out
    assert "the next tick halts again" in out and "operator" not in out.split("ended", 1)[1], out
    _sql("UPDATE halts SET ended_at = NULL, ended_by = NULL WHERE conditions = '[\"operator\"]'")(db)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out == "resumed: 1 halt(s) ended; the system re-arms only through preflight\n", out


@pytest.mark.parametrize("command", ["halt", "resume", "status", "run"])
def test_the_run_locks_file_given_as_the_state_file_is_refused_and_left_as_it_was(
    tmp_path, good_state: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's lock file beside a state file (s.db.lock, emptied at each run's end) read as "no state yet": `halt`
    wrote a database into it and said "halted" (exit 0), a halt no engine ever reads, and the next run's lock
    write damaged it. A file kept beside a state file is refused, naming the state file to give instead."""
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    shutil.copy(good_state, db)
    lock = tmp_path / "s.db.lock"
    lock.touch()
    code = main([*COMMANDS[command], "--state-db", str(lock), "--log", str(log), *FILES])
    out, err = capsys.readouterr()
    assert code == 2 and "halted" not in out, out + err
    assert f"is a file kept beside the state file {db}" in err and f"give --state-db {db}" in err, err
    assert lock.read_bytes() == b"" and not log.exists()
