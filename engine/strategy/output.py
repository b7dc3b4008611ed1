"""What a signal prints: kept from the process's standard output and error, and logged as `signal_output` events.

`run --log /dev/stdout` (a supervisor's journal) writes the JSONL log to standard output. A signal's
`print("x", end="")` went there too, between two of the log's writes: the next event's line began with it and
was no JSON any more (20 of 47 lines of a 20-tick run). So while the tick's signals are asked, sys.stdout and
sys.stderr are stand-ins (`captured`) that keep what is written, marked with the bot whose signal wrote it, and
the engine logs it afterwards, one event a bot a tick, cut short. A stand-in closed by the code (`sys.stdout.close()`)
stays open: closing it closes nothing of the engine's. What is written to the process's descriptors themselves
(`os.write(1, ...)`, `sys.__stdout__`) is not kept: a signal must not write there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# What a bot's signal may print in a tick that is kept, in characters, stdout and stderr each: the rest is counted.
# Bounds the memory of a signal printing in a loop until its time budget stops it.
KEPT_CHARS = 2_000


class Printed:
    """Who is printing (`bot`, set before each bot's signal is asked) and what each bot printed this tick."""

    def __init__(self) -> None:
        self.bot = ""
        self.text: dict[tuple[str, str], list[str]] = {}
        self.kept: dict[tuple[str, str], int] = {}
        self.dropped: dict[tuple[str, str], int] = {}

    def add(self, stream: str, text: str) -> None:
        key = (self.bot, stream)
        room = KEPT_CHARS - self.kept.get(key, 0)
        if room > 0:
            self.text.setdefault(key, []).append(text[:room])
            self.kept[key] = self.kept.get(key, 0) + min(len(text), room)
        if len(text) > room:
            self.dropped[key] = self.dropped.get(key, 0) + len(text) - max(room, 0)

    def by_bot(self) -> dict[str, dict[str, str]]:
        """bot -> {"stdout": text, "stderr": text} of what it printed, each cut at KEPT_CHARS and saying so."""
        events: dict[str, dict[str, str]] = {}
        for (bot, stream), parts in self.text.items():
            text = "".join(parts)
            if (dropped := self.dropped.get((bot, stream), 0)) > 0:
                text += f"... ({dropped} more characters)"
            events.setdefault(bot, {})[stream] = text
        return events


class _StandIn:
    """sys.stdout or sys.stderr while signals are asked: text written is kept in `printed`; never closed."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, printed: Printed, stream: str):
        self._printed, self._stream = printed, stream

    def write(self, text: Any) -> int:
        if not isinstance(text, str):  # as a text stream answers
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._printed.add(self._stream, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the code's close of its standard output: nothing of the engine's to close
        pass

    @property
    def closed(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False


@contextmanager
def captured() -> Iterator[Printed]:
    """sys.stdout and sys.stderr as stand-ins for the block (the tick's signals), put back after it whatever the
    code did to them (process_state halts a bot that replaced them, and sets the stand-ins back meanwhile)."""
    printed = Printed()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _StandIn(printed, "stdout"), _StandIn(printed, "stderr")
    try:
        yield printed
    finally:
        sys.stdout, sys.stderr = stdout, stderr
