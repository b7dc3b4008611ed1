"""Limits that keep `serve` answering its operator whatever other clients do.

Why it exists: a socket timeout starts again with every byte received, so a client sending one byte every 25 s
held a server thread for ever under the old 30 s timeout, and enough of them held every thread. Two limits answer it:
- a deadline for reading a whole request (request line, headers and body together), however it trickles in: the
  time left is put on the socket before each read, and a request not read in time is answered 408 and closed;
- a bound on the connections served at once that keeps room for a real request: when it is reached, the
  connection that has been reading its request the longest is cut off (a real request is read in milliseconds;
  what is still reading is a slow or idle client, such as a browser's unused preconnect). Only when every
  connection is past reading (answering, or waiting for a tick to commit a halt) is the new one answered 503 at
  once, never queued. A cap alone would have let a few slow clients lock the operator out of the Halt button.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

DEADLINE_SECONDS = 10.0  # to read a request: a browser or curl sends one in milliseconds
MAX_CONNECTIONS = 16  # served at once; the page polls on one at a time


class DeadlineReader(io.RawIOBase):
    """A socket's bytes with a deadline for the whole request: each read may wait only the time left, so a trickle
    cannot stretch it. Past the deadline a read raises TimeoutError (the request handler's own timed-out path)
    and `expired` says so. Closing it leaves the socket to its server."""

    def __init__(self, sock: socket.socket, clock: Callable[[], float]):
        super().__init__()
        self._sock = sock
        self._clock = clock
        self.deadline = float("inf")
        self.expired = False
        self.received = 0  # bytes of this connection so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - self._clock()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the request was not read in time")
        self._sock.settimeout(left)
        try:
            got = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
        self.received += got
        return got


def answer_raw(sock: socket.socket, status: HTTPStatus, message: str) -> None:
    """A short JSON error written straight to the socket without waiting (the send buffer of a connection that
    has sent nothing back holds it), then the request's unread bytes dropped so closing does not reset the
    connection before the client reads the answer. For answers given outside a request handler: 503 from the
    accepting thread, 408 after a request's deadline."""
    body = json.dumps({"ok": False, "error": message}).encode()
    head = (
        f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(head.encode() + body)
        for _ in range(16):  # what has arrived, never a wait
            if not sock.recv(65536):
                break


@dataclass
class _Slot:
    started: float
    reading: bool = True


class ConnectionSlots:
    """The connections being served, and which of them are still reading their request."""

    def __init__(self, limit: int, clock: Callable[[], float]):
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[socket.socket, _Slot] = {}

    def admit(self, sock: socket.socket) -> bool:
        """Take a slot for a new connection, cutting off the longest-reading one if all are taken; False (the
        caller answers 503) when every connection is past reading."""
        with self._lock:
            if len(self._slots) >= self.limit:
                reading = [(slot.started, held) for held, slot in self._slots.items() if slot.reading]
                if not reading:
                    return False
                _started, victim = min(reading, key=lambda pair: pair[0])
                del self._slots[victim]
                with contextlib.suppress(OSError):  # its blocked read returns at once; its thread ends
                    victim.shutdown(socket.SHUT_RDWR)
            self._slots[sock] = _Slot(self._clock())
            return True

    def read_done(self, sock: socket.socket) -> None:
        """The request is in: from now on this connection is never the one cut off for a new one."""
        with self._lock:
            slot = self._slots.get(sock)
            if slot is not None:
                slot.reading = False

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._slots.pop(sock, None)

    def counts(self) -> tuple[int, int]:
        """(connections held, of which still reading their request)."""
        with self._lock:
            return len(self._slots), sum(slot.reading for slot in self._slots.values())
