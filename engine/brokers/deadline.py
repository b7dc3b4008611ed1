"""One deadline for a whole HTTP answer, its status line and headers as well as its body.

requests' read timeout bounds each read of the socket, not the answer: a server that sends a header line every few
seconds, each within the timeout, held a call for up to 100 of them (http.client's limit on header lines), minutes
against a timeout of seconds, and `read_body`'s deadline (engine/brokers/alpaca.py) only starts to count once the
headers are in. Here every read of an answer's socket, from the status line to the body's last byte, waits no longer
than what is left until the deadline, and none starts after it.

How: `bound_answers(session)` gives the session's connection pools a connection class whose responses (http.client's
`response_class`) read their socket through `_DeadlineIO`; `answer_by(deadline)` names the deadline for the
requests made inside it, on this thread (nested, the earlier one holds), and turns a failure once it has passed
into one BrokerError ("timeout": counted as any timeout by the engine's health window). Without a deadline named
the connections read as usual. requests and urllib3 are imported lazily, as alpaca-py is: `--validate` stays fast.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
from collections.abc import Iterator
from time import monotonic
from typing import Any

from engine.brokers.base import BrokerError

LATE = "the answer was still arriving at its deadline"
_local = threading.local()


@contextlib.contextmanager
def answer_by(deadline: float) -> Iterator[None]:
    """The requests made inside end by `deadline` (a `time.monotonic()` instant), headers and body; one that fails
    once it has passed (a read cut at the deadline, as the transport names it) is a BrokerError "timeout"."""
    import requests

    outer: float | None = getattr(_local, "deadline", None)
    _local.deadline = deadline if outer is None else min(outer, deadline)
    try:
        yield
    except requests.exceptions.RequestException:
        if monotonic() >= _local.deadline:
            raise BrokerError("timeout", LATE) from None
        raise
    finally:
        _local.deadline = outer


class _DeadlineIO(io.RawIOBase):
    """A response's socket reader (http.client's `SocketIO`), each read bounded by what is left until the deadline:
    none started after it, none waiting past it (the socket's timeout lowered for the read, then put back, so the
    connection's next request is sent under its own timeout)."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float):
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - monotonic()
        if left <= 0:
            raise TimeoutError(LATE)  # as the socket's own timeout: the transport names it a read timeout
        timeout = self._sock.gettimeout()
        self._sock.settimeout(left if timeout is None else min(timeout, left))
        try:
            read: int | None = self._raw.readinto(buffer)
            return read
        finally:
            with contextlib.suppress(OSError):  # closed under us: nothing to put back
                self._sock.settimeout(timeout)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # the socket's reference the response held (closed with the connection otherwise)
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading its socket through `_DeadlineIO` while a deadline is named (`answer_by`)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        deadline: float | None = getattr(_local, "deadline", None)
        if deadline is not None:
            raw = self.fp.detach()  # the socket's SocketIO, nothing read from it yet; detached, its buffer never closes it
            self.fp = io.BufferedReader(_DeadlineIO(raw, sock, deadline))


_POOLS: dict[str, type] | None = None


def _pools() -> dict[str, type]:
    """The pool classes by scheme, each making connections whose responses are `_DeadlineResponse` (built once)."""
    global _POOLS
    if _POOLS is None:
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        plain = type("DeadlineHTTPConnection", (HTTPConnection,), {"response_class": _DeadlineResponse})
        tls = type("DeadlineHTTPSConnection", (HTTPSConnection,), {"response_class": _DeadlineResponse})
        _POOLS = {
            "http": type("DeadlineHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("DeadlineHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
        }
    return _POOLS


def bound_answers(session: Any) -> str | None:
    """`session`'s HTTP and HTTPS connections read their answers within the deadline `answer_by` names. What is
    missing when requests no longer has what this hooks into (the answers would go unbounded): the caller refuses."""
    adapters = getattr(session, "adapters", None)
    if not adapters:
        return "requests changed: the session has no adapters"
    for adapter in adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None or not isinstance(getattr(manager, "pool_classes_by_scheme", None), dict):
            return f"requests changed: {type(adapter).__name__} has no pool classes to bound"
        manager.pool_classes_by_scheme = _pools()
        manager.clear()  # a pool made before (none, as the clients are new) would keep its own connections
    return None
