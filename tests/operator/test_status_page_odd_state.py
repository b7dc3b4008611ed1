"""`serve` against state that changes under it and requests an outside tester sends: the page never shows a
state file it no longer reads as if it were current, and no request makes the server print a traceback or
keep a thread forever."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import ManualClock
from engine.core.journal import Journal
from engine.core.store import StateStore
from engine.operator.status_page import StatusServer
from engine.trading.runner import operator_halt
from tests.conftest import ProjectCopy
from tests.operator.test_status_page import TOKEN, bearer, call, serving
from tests.trading.conftest import Rig

NOON = datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc)


def _state(path: Path, halt: str | None = None) -> None:
    """A state file, closed, with an operator halt in force when `halt` gives its reason."""
    store = StateStore(path)
    if halt is not None:
        journal = Journal(path.with_suffix(".jsonl"), ManualClock(NOON))
        operator_halt(store, journal, halt, NOON)
        journal.close()
    store.close()


def test_a_state_file_replaced_deleted_or_made_a_folder_is_never_shown_as_current(
    project: ProjectCopy, tmp_path: Path
) -> None:
    db = tmp_path / "served.db"
    _state(db)
    _state(tmp_path / "other.db", halt="restored from a backup")
    with serving(project, db, tmp_path / "app.jsonl") as server:
        status, record, _ = call(server, "/api/status")
        assert status == 200 and record["halted"] is False

        os.replace(tmp_path / "other.db", db)  # replaced: the new file is read, its halt shown
        status, record, _ = call(server, "/api/status")
        assert status == 200 and record["halted"] is True
        assert [h["reason"] for h in record["halts"]] == ["restored from a backup"]

        db.unlink()  # gone after it was read: said, never the last thing read
        status, body, _ = call(server, "/api/status")
        assert status == 503 and body == {"ok": False, "error": f"state file {db}: was read before but is gone now (moved or deleted)"}

        db.mkdir()
        status, body, _ = call(server, "/api/status")
        assert status == 503 and body["error"] == f"state file {db}: is a folder, not a state file"
        db.rmdir()

        db.write_bytes(b"not a database" * 1000)
        status, body, _ = call(server, "/api/status")
        assert status == 503 and "not a SQLite database" in body["error"] and "Traceback" not in body["error"]


def test_a_state_path_that_is_a_folder_is_not_no_state_yet(project: ProjectCopy, tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with serving(project, tmp_path / "state.db", tmp_path / "app.jsonl") as server:
        status, body, _ = call(server, "/api/status")
    assert status == 503 and "is a folder" in body["error"]


def _raw(server: StatusServer, data: bytes, *, timeout: float = 5) -> bytes:
    with socket.create_connection((str(server.server_address[0]), server.server_address[1]), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_odd_requests_get_an_answer_and_no_traceback(
    project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.ticks(2)
    with serving(project, rig.store.path, rig.log) as server:
        for host in ("[::1", "]", ""):  # not a host: refused like a foreign one
            assert _raw(server, f"GET /api/status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()).startswith(
                b"HTTP/1.0 421"
            )
        answer = _raw(server, b"GET /\x1b[2J\x1b[31mred HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 404")
        assert call(server, "/api/status?x=1&y=%3Cscript%3E")[0] == 200
        assert call(server, "/../../etc/passwd")[0] == 404
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "\x1b" not in err and "\\x1b[2J" in err  # the request line, made printable for the terminal


def test_a_client_gone_mid_answer_is_not_a_traceback_and_any_other_failure_is_one_line(
    project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(project, rig.store.path, rig.log) as server:
        for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
            try:
                raise error
            except OSError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("odd\nsecond line")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == "127.0.0.1: request failed: ValueError: odd\\nsecond line\n"


def test_half_a_request_gives_its_thread_back(project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    assert 0 < StatusServer.deadline_seconds <= 60  # the server's own bound
    monkeypatch.setattr(StatusServer, "deadline_seconds", 0.2)  # the same bound, short for the test
    with serving(project, rig.store.path, rig.log) as server:
        # the request line and no end of headers: answered 408 and closed once the deadline passes
        assert _raw(server, b"GET / HTTP/1.1\r\n", timeout=5).startswith(b"HTTP/1.0 408 ")
    assert sys.exc_info() == (None, None, None)


def test_a_halt_from_the_page_waits_for_a_tick_as_long_as_the_cli_halt(project: ProjectCopy, rig: Rig) -> None:
    """The Halt button is `python -m engine halt` (the same function), which waits OPERATOR_WAIT_SECONDS for a
    tick's write transaction: the page's connection kept SQLite's 5 s, so with a tick holding the lock for longer
    the button answered "halt failed: ... database is locked" where the CLI's halt went through."""
    from engine.core.store import OPERATOR_WAIT_SECONDS

    rig.ticks(2)
    with serving(project, rig.store.path, rig.log, token=TOKEN) as server:
        assert call(server, "/api/status")[0] == 200
        store = server.app.store()
        assert store is not None
        [(waits_ms,)] = store._conn.execute("PRAGMA busy_timeout").fetchall()
    assert waits_ms == OPERATOR_WAIT_SECONDS * 1000


def test_a_connection_that_never_sends_is_closed_quietly(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Browsers open connections they may never use (Chrome's preconnect). At its timeout http.server logs "Request
    timed out" before any request line was read, and the quiet log read `self.command`, not set yet: every such
    connection printed "request failed: AttributeError: 'StatusHandler' object has no attribute 'command'"."""
    monkeypatch.setattr(StatusServer, "deadline_seconds", 0.2)
    with serving(project, rig.store.path, rig.log) as server:
        assert _raw(server, b"", timeout=5) == b""  # closed by the server once its deadline passed, with no answer
        assert call(server, "/api/status")[0] == 200
    assert capsys.readouterr().err == ""


def test_a_halt_reason_that_is_not_utf8_text_is_the_requests_fault(project: ProjectCopy, rig: Rig) -> None:
    """JSON can carry a lone surrogate (\\ud800) that no UTF-8 file can hold: it reached SQLite and came back as
    500 "halt failed: UnicodeEncodeError"; the CLI's halt refuses it as bad input, and so does the page (400)."""
    rig.ticks(2)
    with serving(project, rig.store.path, rig.log, token=TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "a\ud800b"}, headers=bearer(TOKEN))
        assert status == 400 and body["error"] == "the reason is not UTF-8 text"
    assert not StateStore(rig.store.path).halts()


def test_an_empty_state_file_is_no_state_yet_and_left_empty(project: ProjectCopy, tmp_path: Path) -> None:
    """An empty file holds nothing: the page opened it and SQLite wrote a new database into it, then showed it as
    a state (has_state, no halt) where `status` says "no state yet"."""
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "s.db"
    db.touch()
    with serving(project, db, tmp_path / "state" / "app.jsonl") as server:
        status, record, _ = call(server, "/api/status")
    assert status == 200 and record["has_state"] is False
    assert db.read_bytes() == b"" and sorted(p.name for p in db.parent.iterdir()) == ["s.db"]


def test_a_state_file_cut_to_nothing_under_the_page_is_said_and_no_button_writes_over_it(
    project: ProjectCopy, tmp_path: Path
) -> None:
    """A state file cut to 0 bytes beside its lock file (a run used it) while the page serves it: the page showed
    "no state yet", and its Halt button wrote a new database over it (which the next run took as a fresh state,
    every halt and position gone). The page says what is wrong, as every command does, and neither button writes."""
    (tmp_path / "state").mkdir()
    db = tmp_path / "state" / "s.db"
    _state(db)
    Path(f"{db}.lock").touch()
    with serving(project, db, tmp_path / "state" / "app.jsonl", token=TOKEN) as server:
        assert call(server, "/api/status")[0] == 200
        db.write_bytes(b"")
        status, body, _ = call(server, "/api/status")
        assert status == 503 and "is empty (0 bytes), but a run has used it" in body["error"], body
        for action in ("halt", "resume"):
            status, body, _ = call(server, f"/api/{action}", method="POST", body={"reason": "news"}, headers=bearer(TOKEN))
            assert status == 500 and "is empty (0 bytes)" in body["error"], (action, body)
    assert db.read_bytes() == b"" and sorted(p.name for p in db.parent.iterdir()) == ["s.db", "s.db.lock"]


def test_the_halt_button_makes_no_folder_and_says_when_its_file_is_new(project: ProjectCopy, tmp_path: Path) -> None:
    """The page served a state path whose folder did not exist (a typo in --state-db): its Halt button made the
    folders and a new state file and answered "halted", read by no engine. Refused now, nothing made; and a halt
    that goes to a new file in a folder that exists (before the first run) says that no run has used it."""
    missing = tmp_path / "nowhere" / "s.db"
    with serving(project, missing, tmp_path / "app.jsonl", token=TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "news"}, headers=bearer(TOKEN))
    assert status == 500 and f"its folder {missing.parent} does not exist" in body["error"], body
    assert not missing.parent.exists()
    (tmp_path / "state").mkdir()
    new = tmp_path / "state" / "s.db"
    with serving(project, new, tmp_path / "state" / "app.jsonl", token=TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "news"}, headers=bearer(TOKEN))
    assert status == 200 and body["message"].startswith("halted: news"), body
    assert f"warning: {new} is a state file no run has used yet" in body["message"]


@pytest.mark.parametrize("reason", [None, 5, False, ["news"], {"text": "news"}])
def test_a_halt_reason_that_is_not_text_is_refused_not_recorded_as_its_repr(
    project: ProjectCopy, rig: Rig, reason: object
) -> None:
    """`{"reason": null}` was recorded as a halt whose reason is "None" (and 5 as "5", a list as "['news']"): a
    halt nobody can explain later, which the CLI refuses."""
    rig.ticks(2)
    with serving(project, rig.store.path, rig.log, token=TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": reason}, headers=bearer(TOKEN))
        assert status == 400 and body["error"] == "a halt needs a reason (text)"
    assert not StateStore(rig.store.path).halts()


def test_a_body_nested_past_the_parsers_depth_is_refused_as_not_json(
    project: ProjectCopy, rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """16 KB of `[` decodes to a RecursionError, not a ValueError: the server dropped the connection with no answer
    and printed "request failed: RecursionError" where any other body that is not JSON gets 400."""
    rig.ticks(2)
    with serving(project, rig.store.path, rig.log, token=TOKEN) as server:
        data = b"[" * 8000 + b"]" * 8000
        request = (b"POST /api/halt HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode() +
                   b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n")  # fmt: skip
        answer = _raw(server, request + data)
    assert answer.startswith(b"HTTP/1.0 400") and b"the body must be JSON" in answer
    assert "RecursionError" not in capsys.readouterr().err
    assert not StateStore(rig.store.path).halts()


def test_the_halt_button_records_a_halt_while_the_simulations_time_cannot_be_read(project: ProjectCopy, rig: Rig) -> None:
    """A saved simulated time that does not parse (meta sim_exchange "now": "nope"): the button answered "halt
    failed" and nothing was recorded, the operator's emergency halt lost on a file that could take it. A halt with
    no `until` needs no time: it is stamped with this machine's clock, and the answer says so."""
    rig.ticks(2)
    rig.store.set_meta("broker", "sim")
    rig.store.set_meta("sim_exchange", '{"version": 2, "now": "nope", "revision": 4}')
    with serving(project, rig.store.path, rig.log, token=TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "emergency"}, headers=bearer(TOKEN))
    assert status == 200 and body["message"].startswith("halted: emergency"), body
    assert "stamped with this machine's clock" in body["message"] and "sim_exchange" in body["message"]
    store = StateStore(rig.store.path)
    try:
        assert [h.reason for h in store.halts(open_only=True) if h.until is None] == ["emergency"]
    finally:
        store.close()


@pytest.mark.parametrize(
    "answer",
    ["Promise.reject(new TypeError('Failed to fetch'))",  # the server stopped, the network went
     "Promise.resolve({ ok: false, status: 502, json: () => Promise.reject(new SyntaxError('Unexpected token <')) })"],
)  # fmt: skip
def test_a_halt_from_the_page_that_gets_no_answer_says_so_never_the_last_result(answer: str) -> None:
    """The Halt button showed only what a JSON answer said: a request that failed (the server stopped, a proxy's
    HTML error page) threw inside the click handler, and the line under the buttons kept the previous action's
    words ("halted: ..."), or stayed empty, while the operator believed the halt had gone in."""
    import shutil
    import subprocess

    from engine.operator.status_page import SCRIPT

    node = shutil.which("node")
    if node is None:
        pytest.skip("the page's script is run with Node.js")
    act = SCRIPT[SCRIPT.index("async function act") : SCRIPT.index("const fromHash")]
    script = (
        "const nodes = {}; const $ = (id) => (nodes[id] = nodes[id] || { value: '', textContent: '', className: '' });"
        "const store = {}; const sessionStorage = { getItem: (k) => store[k], setItem: (k, v) => { store[k] = v; } };"
        "const token = () => sessionStorage.getItem('hydraToken') || ''; const refresh = () => {};"
        f"const fetch = () => {answer};"
        + act
        + "$('result').textContent = 'halted: an earlier halt (until resume)'; $('reason').value = 'news';"
        "act('halt').catch((e) => { nodes.result.textContent = 'THREW ' + e; })"
        ".then(() => console.log(JSON.stringify([nodes.result.textContent, nodes.result.className])));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
    text, css = json.loads(out)
    assert text.startswith("halt: no answer from the server") and "python -m engine status" in text, text
    assert css == "fail"


def test_a_machine_left_halted_after_its_halt_ran_out_says_what_comes_next(project: ProjectCopy, tmp_path: Path) -> None:
    """As `status` says it: the banner read "not halted" over a machine shown halted, with no word why."""
    from engine.operator.local import LocalTime
    from engine.operator.status_page import status_record
    from engine.validate import load_valid

    report = load_valid(project.config, project.machines, project.rules)
    store = StateStore(tmp_path / "s.db")
    store.save_machine_state("momentum", "mom_AAPL", "halted", NOON)
    store.save_machine_state("system", "system", "armed", NOON)
    store.start_halt("mom_AAPL", "losses", ("max_losses",), False, NOON, NOON.replace(minute=30))
    record = status_record(store, report, NOON.replace(hour=21), LocalTime("America/Los_Angeles"))
    machines = {m["bot"]: m for m in record["machines"]}
    assert record["halts"] == [] and machines["mom_AAPL"]["state"] == "halted"
    assert machines["mom_AAPL"]["note"].startswith("no halt is in force now: it leaves halted at its next tick")
    assert "python -m engine why mom_AAPL" in machines["mom_AAPL"]["note"]
    assert machines["system"]["note"] is None


def _show(record: dict[str, object]) -> tuple[str, str]:
    """The page script's `show()` run on `record` in Node.js, the nodes it draws stubbed: the banner's text and
    class."""
    import shutil
    import subprocess

    from engine.operator.status_page import SCRIPT

    node = shutil.which("node")
    if node is None:
        pytest.skip("the page's script is run with Node.js")
    show = SCRIPT[SCRIPT.index("function show(s)") : SCRIPT.index("async function refresh")]
    script = (
        "const nodes = {}; const $ = (id) => (nodes[id] = nodes[id] || { value: '', textContent: '', className: '' });"
        "const fill = () => {}; const machine = () => null; const table = () => null; const el = () => null;"
        "const equity = () => null; const money = (v) => String(v);"
        + show
        + f"show({json.dumps(record)}); console.log(JSON.stringify([nodes.banner.textContent, nodes.banner.className]));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
    text, css = json.loads(out)
    return text, css


def _real_time(path: Path, last_tick: datetime) -> None:
    from engine.trading.runner import LAST_TICK_KEY

    store = StateStore(path)
    try:
        store.set_meta("broker", "alpaca")
        store.set_meta(LAST_TICK_KEY, last_tick.isoformat())
    finally:
        store.close()


@pytest.mark.parametrize("halt", [None, "news at 10:00"])
def test_a_real_time_state_whose_engine_is_stuck_is_shown_stale_never_green(
    project: ProjectCopy, tmp_path: Path, halt: str | None
) -> None:
    """The page showed a real-time state last ticked hours ago (an engine hung or stopped) as a green "not halted",
    with nothing saying its age, where `status` and `why` say STALE: `/api/status` carries `stale` by their rule
    (`health`'s default max age: 3 x loop_interval_seconds + 30 s), with what it is measured from, and the banner
    says STALE in a colour that is not green."""
    from engine.core.clock import SystemClock

    db = tmp_path / "s.db"
    _state(db, halt)
    _real_time(db, SystemClock().now() - timedelta(hours=3))
    with serving(project, db, tmp_path / "app.jsonl") as server:
        status, record, _headers = call(server, "/api/status")
    assert status == 200 and record["stale"] is True
    assert record["stale_after_seconds"] == 3 * 5 + 30 and record["tick_age_seconds"] >= 3 * 3600
    assert record["last_tick"] is not None
    text, css = _show(record)
    assert text.startswith("STALE: last tick ") and "the engine is stuck or not running" in text, text
    assert css != "ok" and (css == "halted") == (halt is not None), css


def test_a_real_time_state_ticked_just_now_is_not_stale(project: ProjectCopy, tmp_path: Path) -> None:
    """The converse: a live engine's state is shown as it is, green when nothing is halted."""
    from engine.core.clock import SystemClock

    db = tmp_path / "s.db"
    _real_time(db, SystemClock().now())
    with serving(project, db, tmp_path / "app.jsonl") as server:
        _status, record, _headers = call(server, "/api/status")
    assert record["stale"] is False and record["tick_age_seconds"] <= 45
    assert _show(record) == ("not halted", "ok")


def test_the_page_reads_the_state_of_one_moment_never_half_of_a_tick(project: ProjectCopy, tmp_path: Path) -> None:
    """/api/status read the halts, then the machines, each in its own statement: a tick committing between the two
    (a kill switch's halt and the system machine's move to halted are one commit) gave "not halted", no halt, beside
    a system machine halted with "no halt is in force now". The commit is made to land between the two reads, as a
    running engine's would on its own schedule."""
    from engine.core.store import SYSTEM_SCOPE
    from engine.operator.local import LocalTime
    from engine.operator.status_page import StatusApp
    from engine.validate import load_valid

    db = tmp_path / "s.db"
    _real_time(db, datetime.now(timezone.utc))
    engine = StateStore(db)  # the running engine's connection
    engine.save_machine_state("system", "system", "armed", NOON)
    report = load_valid(project.config, project.machines, project.rules)
    app = StatusApp(report, db, tmp_path / "app.jsonl", LocalTime("UTC"), None, True)
    store = app.store()
    assert store is not None
    read_machines = store.machine_states

    def machine_states(kind: str | None = None) -> list[Any]:
        if not engine.halts():  # the tick's one commit, once, between the page's read of the halts and of the machines
            now = datetime.now(timezone.utc)
            with engine.transaction():
                engine.start_halt(SYSTEM_SCOPE, "kill condition: max_daily_loss_halt", ("max_daily_loss_halt",), True,
                                  now, now + timedelta(minutes=30))  # fmt: skip
                engine.save_machine_state("system", "system", "halted", now)
        return read_machines(kind)

    store.machine_states = machine_states  # type: ignore[method-assign]
    try:
        first, second = app.status(), app.status()
    finally:
        app.close()
        engine.close()
    (system,) = [m for m in first["machines"] if m["kind"] == "system"]
    assert first["halted"] is False and system["state"] == "armed" and system["note"] is None  # all before the tick
    (system,) = [m for m in second["machines"] if m["kind"] == "system"]
    assert second["halted"] is True and system["state"] == "halted"  # all after it


def test_resume_from_the_page_says_the_engine_halt_it_ended_though_committed_just_before(
    project: ProjectCopy, tmp_path: Path
) -> None:
    """The page's Resume read which halts the engine had set before its own write transaction: a kill switch's halt
    committed in between was ended too, the answer naming no condition of the engine's (which halts again at the
    next tick while it holds). The engine's commit is made to land just before the resume's transaction begins."""
    from engine.core.store import SYSTEM_SCOPE
    from engine.operator.local import LocalTime
    from engine.operator.status_page import StatusApp
    from engine.validate import load_valid

    db = tmp_path / "s.db"
    _state(db, "news at 10:00")
    _real_time(db, datetime.now(timezone.utc))
    engine = StateStore(db)
    report = load_valid(project.config, project.machines, project.rules)
    app = StatusApp(report, db, tmp_path / "app.jsonl", LocalTime("UTC"), TOKEN, True)
    store = app.store()
    assert store is not None
    write = store.transaction

    @contextmanager
    def transaction() -> Iterator[None]:
        if len(engine.halts()) == 1:  # the engine's tick commits its kill switch's halt now, once
            now = datetime.now(timezone.utc)
            engine.start_halt(SYSTEM_SCOPE, "kill condition: max_daily_loss_halt", ("max_daily_loss_halt",), True,
                              now - timedelta(seconds=1), now + timedelta(minutes=30))  # fmt: skip
        with write():
            yield

    store.transaction = transaction  # type: ignore[method-assign]
    try:
        answer = app.change("resume", "")
    finally:
        app.close()
    assert [h.ended_at is not None for h in engine.halts()] == [True, True]
    engine.close()
    assert answer["ok"] and answer["message"].startswith("resumed: 2 halt(s) ended"), answer
    assert "the engine set max_daily_loss_halt" in answer["message"], answer


def test_a_bot_saved_armed_under_a_system_halt_says_it_opens_nothing(project: ProjectCopy, tmp_path: Path) -> None:
    """As `status` says beside it: a bot's machine still reads armed until it steps, but the risk gate grants it no
    entry while the system is halted; the page showed it armed with no word why."""
    from engine.operator.local import LocalTime
    from engine.operator.status_page import status_record
    from engine.validate import load_valid

    report = load_valid(project.config, project.machines, project.rules)
    db = tmp_path / "s.db"
    _state(db, "news at 10:00")
    store = StateStore(db)
    try:
        store.save_machine_state("momentum", "mom_AAPL", "armed", NOON)
        store.save_machine_state("system", "system", "armed", NOON)
        record = status_record(store, report, NOON.replace(hour=21), LocalTime("America/Los_Angeles"))
    finally:
        store.close()
    machines = {m["bot"]: m for m in record["machines"]}
    assert machines["mom_AAPL"]["state"] == "armed"
    assert machines["mom_AAPL"]["note"] == "a system halt is in force: it opens nothing"
    assert machines["system"]["state"] == "halted" and machines["system"]["note"] is None


@pytest.mark.parametrize("action", ["halt", "resume"])
def test_a_chunked_body_is_refused_never_acted_on_unread(project: ProjectCopy, tmp_path: Path, action: str) -> None:
    """http.server reads no chunked body: with no Content-Length it was taken as empty, `/api/resume` ended every
    halt on a body it never read (and what was left of it was read as the next request). It is answered 411,
    nothing done."""
    db = tmp_path / "s.db"
    _state(db, "news at 10:00")
    chunk = b'{"reason": "x"}'
    with serving(project, db, tmp_path / "app.jsonl", token=TOKEN) as server:
        request = (f"POST /api/{action} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"  # fmt: skip
        answer = _raw(server, request)
    assert answer.startswith(b"HTTP/1.0 411") and b"Content-Length; nothing done" in answer, answer
    store = StateStore(db)
    try:
        assert [h.reason for h in store.halts(open_only=True)] == ["news at 10:00"]
    finally:
        store.close()


@pytest.mark.parametrize(
    "request_head",
    ["GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n",
     "GET http://evil.example/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
     f"POST http://evil.example/api/resume HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
     "Content-Length: 0\r\n"],
)  # fmt: skip
def test_every_host_a_request_names_must_be_loopback(project: ProjectCopy, tmp_path: Path, request_head: str) -> None:
    """On loopback only a loopback Host is answered (DNS rebinding), but only the first Host header was looked at:
    a second one, or an absolute request URI naming another host, was answered, and a resume acted on. More than one
    Host is a bad request, and an absolute URI's host is the one meant: each must be loopback."""
    db = tmp_path / "s.db"
    _state(db, "news at 10:00")
    with serving(project, db, tmp_path / "app.jsonl", token=TOKEN) as server:
        answer = _raw(server, (request_head + "\r\n").encode())
        assert answer.startswith(b"HTTP/1.0 421") and b"unexpected Host header" in answer, answer[:200]
        ok = _raw(server, b"GET http://127.0.0.1/api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.0 200"), ok[:200]  # a loopback absolute URI is as good as a path
    store = StateStore(db)
    try:
        assert [h.reason for h in store.halts(open_only=True)] == ["news at 10:00"]
    finally:
        store.close()
