"""What the seeded drivers of the whole engine share: tools/answerfuzz.py (the broker's answers), tools/chaos.py
(faults and restarts on the simulator) and tests/trading/test_soak.py (a long run with crashes).

Each runs the engine tick by tick and, between ticks, reads what the engine wrote as an outsider would: the JSONL
log as it grows (`LogTail`), the snapshot each tick decided on (`RecordingBroker`). A seed's files go in a folder
of its own (`seed_folder`), and a command line names seeds one at a time or as a range (`seed_range`).

Loaded by the drivers as `fuzzkit` (tools/ is a folder of scripts, not a package: each puts this folder on
sys.path), and by the tests through tests/conftest.py `load_tool`.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.brokers.base import DataNeeds, Snapshot
from engine.brokers.snapshot import SnapshotBroker


class RecordingBroker(SnapshotBroker):
    """The engine's SnapshotBroker, keeping the tick's first snapshot (the one the tick decides on)."""

    first: Snapshot | None = None

    def snapshot(self, needs: DataNeeds) -> Snapshot:
        taken = super().snapshot(needs)
        if self.first is None:
            self.first = taken
        return taken


@dataclass
class LogTail:
    """A JSONL log read as it grows: each `read` takes the whole lines written since the last (a line still being
    written is read next time), so a check between ticks never mistakes the engine's half-written line for a
    broken one."""

    path: Path
    read_to: int = 0  # bytes of the log read so far
    lines: int = 0
    partial: bytes = b""  # what follows the last whole line, as last read

    def read(self, fail: Callable[[str], None], secrets: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The events of the new whole lines; `fail` is told of each line that does not parse, is not an event, or
        holds one of `secrets`."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.read_to)
            text = handle.read()
        *whole, self.partial = text.split(b"\n")
        events: list[dict[str, Any]] = []
        for raw in whole:
            self.lines += 1
            self.read_to += len(raw) + 1
            try:
                event = json.loads(raw)
            except ValueError:
                fail(f"log line {self.lines} does not parse: {raw[:120]!r}")
                continue
            if not isinstance(event, dict) or "event" not in event:
                fail(f"log line {self.lines} is not an event: {raw[:120]!r}")
            else:
                events.append(event)
            if any(secret.encode() in raw for secret in secrets):
                fail(f"log line {self.lines} holds a key")
        return events

    def ends_whole(self, fail: Callable[[str], None]) -> None:
        """At the end of a run: `fail` unless the log's last line ended (a crash's torn line is repaired at the
        next start, and a run that ended cleanly leaves none)."""
        if self.partial:
            fail(f"the log ends in a partial line: {self.partial[:120]!r}")


@contextlib.contextmanager
def seed_folder(keep: Path | None, seed: int, prefix: str) -> Iterator[Path]:
    """The folder of one seed's run: `keep/seed_N` when the files are to be kept (made new: an earlier run's files
    would be read as this one's), else a temporary folder removed after it."""
    if keep is not None:
        path = keep / f"seed_{seed}"
        path.mkdir(parents=True, exist_ok=False)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=f"{prefix}_{seed}_") as name:
        yield Path(name)


def seed_range(text: str) -> list[int]:
    """`--seeds 10-20` (both ends included) or `--seeds 7`."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))
