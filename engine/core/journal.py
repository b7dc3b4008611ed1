"""The JSONL event log: one JSON object a line, `ts` in UTC ISO 8601, `event` naming what happened.

Events are encoded as they happen, handed to the file a few hundred lines at a time, and flushed at the end of
each tick and before every order request (what a flush writes is on disk before the engine goes on). Values
are plain JSON; anything else is turned into a string. The engine never passes keys or secrets here, and the
journal refuses to write a line containing a configured secret.

Listeners (the terminal's live view) are told of each event once its line is made, in the order of the log.
The hot path pays one truth test when nobody listens, and a listener that raises is dropped rather than
allowed to reach the tick: a display must never halt trading.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from json import encoder as json_encoder
from pathlib import Path
from typing import IO, Any

from engine.core.clock import Clock

Listener = Callable[[dict[str, Any]], None]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _line_encoder() -> Callable[[Any], str]:
    """`json.dumps(record, default=_default, separators=(",", ":"))`, with the C encoder built once rather than
    on every call (`JSONEncoder.encode` builds one each time: half the cost of a line, measured). No circular
    check: a record is built from plain values by the engine, never from a structure that contains itself."""
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator: the same text, the standard way
        return json.JSONEncoder(default=_default, separators=(",", ":"), check_circular=False).encode
    encode = make(None, _default, json_encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_LINES_HELD = 512  # lines gathered before one write to the file (a flush writes them all, whatever their number)


class JournalError(OSError):
    """The log file cannot be opened or written: one line naming the file and what is wrong.

    An OSError, so that what already stops on one (an order is not sent when its event cannot be flushed first)
    stops on this one too. `runtime` is False when the path holds something that is not a log file (a folder:
    the user's input to fix, exit 2), True when the file cannot be written now (permission, a full disk: exit 1)."""

    def __init__(self, path: Path, exc: OSError):
        self.path = path
        self.runtime = not isinstance(exc, IsADirectoryError)
        what = "is a folder, not a log file" if isinstance(exc, IsADirectoryError) else (exc.strerror or str(exc))
        super().__init__(exc.errno, f"log file {path}: {what}")

    def __str__(self) -> str:
        return str(self.strerror)

    @property
    def message(self) -> str:
        return str(self.strerror)


class Journal:
    def __init__(self, path: Path, clock: Clock, secrets: Iterable[str] = ()):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise JournalError(path, exc) from None
        self._clock = clock
        self._secrets = tuple(s for s in secrets if s and len(s) >= 8)
        self._encode = _line_encoder()
        self._stamped_at: datetime | None = None
        self._stamp = ""
        self._prefix = ""
        self._lines: list[str] = []  # lines not yet handed to the file: one write for many (`_LINES_HELD`)
        self._listeners: list[Listener] = []
        self.listener_errors: list[str] = []  # why listeners were dropped, for whoever added them

    def log(self, event: str, **fields: Any) -> None:
        now = self._clock.now()
        if now != self._stamped_at:  # a tick logs many events at one instant: format its time once
            self._stamped_at, self._stamp = now, now.astimezone(timezone.utc).isoformat()
            self._prefix = '{"ts":' + json_encoder.encode_basestring_ascii(self._stamp) + ',"event":'
        # The line is the record {"ts", "event", **fields} as the encoder writes it, put together from the time's
        # text (once a tick), the event's name and the fields: the record itself is built only for listeners.
        body = self._encode(fields)
        line = self._prefix + json_encoder.encode_basestring_ascii(event) + ("}" if body == "{}" else "," + body[1:])
        redacted = False
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "***")
                redacted = True
        self._lines.append(line)
        if len(self._lines) >= _LINES_HELD:
            self._write_lines()
        if self._listeners:
            self._tell(json.loads(line) if redacted else {"ts": self._stamp, "event": event, **fields})

    def subscribe(self, listener: Listener) -> None:
        """`listener(record)` once each event's line is made (it reaches the file with the next batch or flush):
        `ts` (UTC text), `event`, then the fields as logged (datetimes still datetimes), or the line as written
        when a secret had to be masked in it."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _tell(self, record: dict[str, Any]) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(record)
            except Exception as exc:
                self._listeners.remove(listener)
                self.listener_errors.append(f"{type(exc).__name__}: {exc}")

    def _write_lines(self) -> None:
        """Lines that could not be written stay held (the next flush tries them again) and the error, named
        after the file, goes up: an order whose event is not on disk is not sent."""
        try:
            self._file.write("\n".join(self._lines) + "\n")
        except OSError as exc:
            raise JournalError(self.path, exc) from None
        self._lines.clear()

    def flush(self) -> None:
        if self._lines:
            self._write_lines()
        try:
            self._file.flush()
        except OSError as exc:
            raise JournalError(self.path, exc) from None

    def close(self) -> None:
        """Flush, then close the file whatever the flush said (a full disk must not keep it open); the flush's
        error is raised after."""
        try:
            self.flush()
        finally:
            with contextlib.suppress(OSError):  # the buffer's own flush failing again: the error above counts
                self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event in a JSONL file (for `status`, tests and tools)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
