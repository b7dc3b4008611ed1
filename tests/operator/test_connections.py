"""`serve`'s limits (engine/operator/connections.py) through the real server: a client trickling its request is
cut off at the deadline while a normal request is answered, a full server cuts off its longest-reading connection
for a new one, and answers 503 at once only when every connection is past reading. Deadlines are set small here;
no test waits more than about a second."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from engine.operator.status_page import StatusServer
from tests.conftest import ProjectCopy
from tests.operator.test_status_page import call, serving
from tests.trading.conftest import Rig


def _connect(server: StatusServer) -> socket.socket:
    return socket.create_connection((str(server.server_address[0]), server.server_address[1]), timeout=2)


def _until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "the server did not get there in time"
        time.sleep(0.01)


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_trickling_request_is_cut_off_at_the_deadline_while_a_normal_one_is_answered(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: each byte started the 30 s socket timeout again, so one byte every 25 s held a thread for ever."""
    rig.ticks(2)
    monkeypatch.setattr(StatusServer, "deadline_seconds", 0.5)
    with serving(project, rig.store.path, rig.log) as server, _connect(server) as slow:
        started = time.monotonic()
        slow.sendall(b"GET /api/status HTTP/1.1\r\nX-Slow: ")
        answered: bytes | None = None
        while time.monotonic() - started < 5.0:  # ten times the deadline (a loaded machine), a byte every 0.05 s
            assert call(server, "/api/status")[0] == 200  # the operator is answered all along
            slow.settimeout(0.05)
            try:
                answered = _answer(slow)
                break
            except TimeoutError:
                slow.sendall(b"a")
        elapsed = time.monotonic() - started
    assert answered is not None, "the trickling client was never cut off"
    assert answered.startswith(b"HTTP/1.0 408 ") and b"not read within 0.5 s" in answered
    assert 0.5 <= elapsed < 5.0  # cut off: without the deadline the trickle went on for the whole loop


def test_a_full_server_cuts_off_its_longest_reading_connection_for_a_real_request(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.ticks(2)
    monkeypatch.setattr(StatusServer, "max_connections", 2)
    with serving(project, rig.store.path, rig.log) as server, _connect(server) as first, _connect(server) as second:
        first.sendall(b"GET / HTTP/1.1\r\n")  # half a request each, well within the (10 s) deadline
        second.sendall(b"GET / HTTP/1.1\r\n")
        _until(lambda: server.slots.counts() == (2, 2))  # both held, both reading; `first` accepted first
        assert call(server, "/api/status")[0] == 200  # at once, not after anyone's deadline
        assert _answer(first) == b""  # the one reading longest was closed to make room
        _until(lambda: server.slots.counts() == (1, 1))  # the second still waits for the rest of its request
        second.sendall(b"Host: 127.0.0.1\r\n\r\n")
        assert _answer(second).startswith(b"HTTP/1.0 200 ")


def test_a_server_full_of_requests_being_answered_says_503_at_once(
    project: ProjectCopy, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.ticks(2)
    monkeypatch.setattr(StatusServer, "max_connections", 2)
    with serving(project, rig.store.path, rig.log) as server:
        results: list[int] = []
        with server.app.lock:  # both requests read, then held answering (as a halt waits for a tick)
            waiting = [threading.Thread(target=lambda: results.append(call(server, "/api/status")[0])) for _ in range(2)]
            for thread in waiting:
                thread.start()
            _until(lambda: server.slots.counts() == (2, 0))
            with _connect(server) as third:
                refused = _answer(third)  # no request sent: answered without being read
        for thread in waiting:
            thread.join(5)
    assert refused.startswith(b"HTTP/1.0 503 ") and b"too many connections" in refused
    assert results == [200, 200]


def test_a_body_cut_short_is_refused_and_nothing_is_done(project: ProjectCopy, rig: Rig) -> None:
    """A POST whose body ends before its Content-Length (the client closed its side): what came was parsed as it was,
    and `{"reason": "x"}` of a promised 100 bytes halted the system."""
    from tests.operator.test_status_page import TOKEN

    rig.ticks(2)
    with serving(project, rig.store.path, rig.log, TOKEN) as server, _connect(server) as client:
        body = b'{"reason": "x"}'
        client.sendall(b"POST /api/halt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n" + body)  # fmt: skip
        client.shutdown(socket.SHUT_WR)
        answered = _answer(client)
    assert answered.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), answered
    assert b"the body was cut short (15 of 100 bytes)" in answered
    assert rig.store.halts(open_only=True) == []
