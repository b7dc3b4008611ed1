"""`serve` against state that changes under it and requests an outside tester sends: the page never shows a
state file it no longer reads as if it were current, and no request makes the server print a traceback or
keep a thread forever."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

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
