"""The emulator outlives its clients: an engine killed mid-request (SIGKILL) resets its connection, which
must not print a traceback on the console of `python -m engine emulator` (nor in a crash test's output)."""

from __future__ import annotations

import socket
import struct

import pytest

from engine.brokers.emulator import Emulator


def test_a_connection_reset_mid_request_is_no_traceback(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    server = emulator._server
    assert server is not None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        client.sendall(b"GET /v2/acc")  # half a request line, then a reset (SO_LINGER 0), as a killed process leaves it
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        server.process_request_thread(accepted, address)  # the server's own path for one connection, in this thread
    assert capsys.readouterr().err == ""
