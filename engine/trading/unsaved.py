"""A halt the last run decided and could not save: recorded, and said, by the next start.

When the state file stops taking writes under a running engine (a full disk, past the file size limit), the tick
that meets it halts the system, cannot save that halt, logs `halt_not_saved` and stops the run (exit 1). The state
file then holds no halt, and the next start, once the disk had room again, traded on without a word: the halt
lived only in the log. So each start reads the end of its log for the `halt_not_saved` events of the last run
(those after the last `run_start`; a run stops at its first), records each halt still in force in the state file
(the ExitBot's one writer, with the end it was given) and says so in the run's first line.

Only the end of the log is read (`TAIL_BYTES`): a run stops right after such an event, so it is among the last
lines its run wrote, and a start never reads a whole log that may have grown for months. A line that cannot be
read (a kill cut it, another program's text) is passed over: this reads what the engine wrote, and refuses
nothing.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.core.journal import Journal
from engine.core.store import SYSTEM_SCOPE, StateStore, aware_time
from engine.trading.exitbot import record_halt

TAIL_BYTES = 256 * 1024  # what is read of the log's end: far more than the last lines of a run that stopped
NOT_SAVED = "halt_not_saved"
NOTED = "not saved by the run that decided it at {at}: recorded by the next start"


@dataclass(frozen=True)
class UnsavedHalt:
    at: datetime  # when the run decided it
    reason: str
    until: datetime | None  # None: until `resume` (an older engine's event says no end)

    @property
    def recorded_reason(self) -> str:
        """The reason recorded: the original's, with when it was decided; also what tells it recorded already."""
        return f"{self.reason} ({NOTED.format(at=self.at.isoformat())})"


def _tail_lines(log: Path) -> list[bytes]:
    """The log's last whole lines, or none when it cannot be read (it is then the journal's to refuse) or is not a
    regular file: a log written to a FIFO that a reader drains holds nothing to read back. Opened without waiting:
    `status`, which holds no write end, waited for ever on a FIFO no process wrote to."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            return []
        start = max(0, found.st_size - TAIL_BYTES)
        data = os.pread(fd, TAIL_BYTES, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    return lines[1:] if start > 0 else lines  # the first may be the end of a line begun before the tail


def _event(line: bytes) -> dict[str, object] | None:
    if b'"event":' not in line:
        return None
    try:
        record = json.loads(line)
    except ValueError:  # a line cut short, not UTF-8, not JSON
        return None
    return record if isinstance(record, dict) else None


def unsaved_halts(log: Path) -> list[UnsavedHalt]:
    """The halts the last run in `log` logged as not saved (`halt_not_saved` after its `run_start`)."""
    found: list[UnsavedHalt] = []
    for line in _tail_lines(log):
        record = _event(line)
        if record is None:
            continue
        if record.get("event") == "run_start":
            found = []
        elif record.get("event") == NOT_SAVED and record.get("scope", SYSTEM_SCOPE) == SYSTEM_SCOPE:
            try:
                at = aware_time(str(record["ts"]))
                until = aware_time(str(record["until"])) if record.get("until") else None
                found.append(UnsavedHalt(at, str(record["reason"]), until))
            except (KeyError, ValueError):  # not the engine's event as it writes it: not one this can record
                continue
    return found


def pending_unsaved_halts(store: StateStore, log: Path) -> list[UnsavedHalt]:
    """The last run's unsaved halts that no start has recorded yet: what `status` says until the next run does."""
    recorded = {h.reason for h in store.halts(SYSTEM_SCOPE)}
    return [h for h in unsaved_halts(log) if h.recorded_reason not in recorded]


def record_unsaved_halts(store: StateStore, journal: Journal, log: Path, now: datetime) -> list[str]:
    """Record the last run's unsaved halts that are still in force now; returns what the start says of each
    (also of one whose end has passed: the operator learns that the last run halted and why). Each is recorded
    once: a start that stops before its own `run_start` reaches the log finds it recorded already."""
    said: list[str] = []
    recorded = {h.reason for h in store.halts(SYSTEM_SCOPE)}
    for halt in unsaved_halts(log):
        reason = journal.scrubbed(halt.recorded_reason)
        if reason in recorded:
            continue
        if halt.until is None or halt.until > now:
            record_halt(store, journal, scope=SYSTEM_SCOPE, reason=halt.recorded_reason, conditions=("anomaly_halt",),
                        now=now, until=halt.until)  # fmt: skip
            recorded.add(reason)
            said.append(
                f"the last run halted and could not save it in the state file (a full disk?): recorded now: {halt.reason}"
            )
        else:
            said.append(f"the last run halted and could not save it in the state file (a full disk?); that halt has "
                        f"ended since ({halt.until.isoformat()}): {halt.reason}")  # fmt: skip
    return said
