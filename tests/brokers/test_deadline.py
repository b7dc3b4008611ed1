"""engine/brokers/deadline.py over TLS, as Alpaca is reached: the hook replaces the response class of both of
requests' pool classes, and every answer the adapter reads in a real run comes through the HTTPS one. The emulator
speaks plain HTTP, so these tests serve a few fixed answers over TLS on 127.0.0.1 (a certificate made for the test
with the system's openssl, trusted by the session alone) and read them through a session bound as the adapter's is.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import monotonic

import pytest
import requests

from engine.brokers.base import BrokerError
from engine.brokers.deadline import LATE, answer_by, bound_answers

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test's certificate")

BODY = b'{"status": "ACTIVE", "cash": "1000"}'


class _Answers(BaseHTTPRequestHandler):
    """/fast: the answer at once. /slow-headers: its header lines 0.05 s apart, ten of them."""

    def do_GET(self) -> None:
        if self.path == "/slow-headers":  # the status line at once, then each header line on its own
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            for n in range(10):
                self.wfile.write(f"X-Slow-{n}: {n}\r\n".encode())
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"Content-Type: application/json\r\n")
            self.wfile.write(f"Content-Length: {len(BODY)}\r\n\r\n".encode())
            self.wfile.write(BODY)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _session(cert: Path) -> requests.Session:
    """Bound as the adapter binds its clients' sessions. The certificate is given to each request, not the session:
    requests lets the environment's CA bundle override a session's own `verify`."""
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment
    assert bound_answers(session) is None
    return session


def test_an_answer_over_tls_reads_whole_through_the_bound_session(tls_server: tuple[str, Path]) -> None:
    """The hook must not break the live path: the same answer, read under a deadline and without one."""
    url, cert = tls_server
    session = _session(cert)
    with answer_by(monotonic() + 5):
        answer = session.get(f"{url}/fast", timeout=(2, 2), verify=str(cert))
    assert answer.status_code == 200 and answer.content == BODY
    assert session.get(f"{url}/fast", timeout=(2, 2), verify=str(cert)).json()["cash"] == "1000"  # no deadline named: as usual
    with answer_by(monotonic() + 5):
        assert session.get(f"{url}/slow-headers", timeout=(2, 2), verify=str(cert)).content == BODY  # slow, within the deadline


def test_header_lines_trickled_over_tls_end_at_the_deadline(tls_server: tuple[str, Path]) -> None:
    """Each header line comes well within the read timeout (2 s); the whole answer would take 0.5 s; the deadline
    is 0.2 s away: the call ends there, as one BrokerError timeout, not when the last line comes."""
    url, cert = tls_server
    session = _session(cert)
    started = monotonic()
    with pytest.raises(BrokerError) as caught, answer_by(started + 0.2):
        session.get(f"{url}/slow-headers", timeout=(2, 2), verify=str(cert))
    assert caught.value.kind == "timeout" and LATE in caught.value.message
    assert monotonic() - started < 0.45
