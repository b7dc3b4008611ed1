"""Quotes written tick by tick as the engine sees them (`run --record DIR`), so any run can be replayed.

Crash behaviour, the reason for the layout: each symbol's quotes go to a parts folder, `quotes/AAPL/`, whose
current part (`part-000001.parquet`) is rewritten whole at each flush into a hidden temporary file that is then
renamed over it. A rename is atomic, so a kill at any instant leaves every part complete and readable: what is
lost is only what was buffered since the last flush: at most `flush_seconds` of quotes by the wall clock, and at
most `flush_rows` quotes, since a simulated day runs in two seconds and a kill in it would otherwise lose all of
it while the state file keeps every tick. A symbol's folder is made by its first write, so a recording killed
before any flush leaves no empty folder that a replay would read as a symbol without data. A part
holds at most `segment_rows` rows, then the next part starts, so a flush costs at most that many rows per symbol
however long the recording runs, and a day makes a handful of files, not thousands.

A quote that is not a price but is what a feed sends (a side at 0, Alpaca's empty side; a bid above the ask) is
what the engine read and acted on (it trades on no such quote), so a replay must read it too: it goes to
`unusable/<SYMBOL>/` parts beside `quotes/`, in the same order of time as the symbol's quotes, and is counted in
`unusable`. Left out, its replay showed the quote before it instead, a price the run never had then, and traded on
it. A quote no feed sends (a price that is not a number, below 0, not finite, a timestamp outside the years the
format holds or not after the symbol's last) is not written and is counted in `skipped`, so a bad tick from a feed
never makes the recording unreadable, never stops the recording, and never passes unnoticed either. A repeat of the
symbol's last instant (a feed's unchanged quote read again) is counted apart from an instant before it (a recording
into a folder that already holds later quotes, or a clock gone back): the first is routine, the second means the
quotes are lost.

Beside the quotes, `tick(at)` records the instant of each tick that read them, in `ticks/` (parts of one
`timestamp` column). A replay ticks at those instants and nowhere else (`DataSet.frames`), so a run whose ticks
fall between its quotes' times (a loop of 7 s over quotes that step every 5 s, a live feed) is replayed at its own
ticks, each seeing the quotes it saw, not at every quote's time. A flush writes the ticks after the quotes, so a
kill in the middle of one leaves quotes after the last tick (not replayed), never a tick without the quotes it
read.

A symbol the tick asked for and got no quote of (the feed left it out) is recorded by `missing(symbol, at)` in
`missing/<SYMBOL>/` (the tick's instant, one `timestamp` column), and its replay leaves it out of that tick's
answer too: shown the quote before, the engine saw a quote seconds old where the run saw none (a feed without its
stocks halts at once on stale data; its replay halted 15 s later).

What a replay cannot have is written to `recording.jsonl` by `note(event, at, **fields)`, one JSON object a line
(`run`: what the run held at its first recorded tick, positions, cash and the halts in force; `halt`: a halt that
came into force during the run; `broker_error`: a broker call that failed), so a backtest of the folder can say
where its replay is not the run's (`read_notes`). A kill can cut its last line, which the reader leaves out.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from engine.config.errors import Problem
from engine.core import jsontext
from engine.core.journal import ends_mid_line
from engine.core.store import aware_time
from engine.data.errors import DataError
from engine.data.files import (
    END_INSTANT,
    FIRST_INSTANT,
    RECORDING_LOCK,
    RECORDING_NOTES,
    TICKS,
    TIMESTAMP,
    micros,
    next_part,
    read_file,
    remove_leftovers,
    write_table,
)
from engine.data.records import MISSING, SUFFIXES, UNUSABLE, Format, Kind, file_stem
from engine.paths import PathKind, folders_to_make, path_kind, remove_unused

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Why a quote was not recorded (the keys of Recorder.skipped).
NOT_A_NUMBER = "a price is not a number"
OUT_OF_RANGE = f"the timestamp is outside the years {FIRST_INSTANT.year} to {END_INSTANT.year - 1}"
REPEAT = "the timestamp is not after the symbol's last"  # the same instant again: a feed's unchanged quote
BEFORE_LAST = "the timestamp is before the symbol's last recorded quote"
TICK_NOT_AFTER = "the tick is not after the recording's last tick"  # a recording into a folder holding later ticks
MISSING_NOT_AFTER = "a missing quote's tick is not after the symbol's last"
LOCK_FILE = RECORDING_LOCK  # hidden: readers ignore names that start with "."
NOTES_FILE = RECORDING_NOTES  # what the run met that its replay cannot have (`Recorder.note`)
_LEFTOVER = re.compile(r"^\.(part-\d+\.\w+)\.\d+\.tmp$")  # files.py's temporary name: .TARGET.PID.tmp


def _is_number(value: object) -> bool:
    """A real number that converts to a float (True is not a price, nor is the text "1.5"; 10**400 does not fit)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        return False
    try:
        float(value)
    except (OverflowError, ValueError):
        return False
    return True


@dataclass
class _Segment:
    """The current part of one symbol: every row it holds, and how many of them are on disk already."""

    path: Path
    last: int | None  # the symbol's last recorded instant, µs since the epoch (from disk at start)
    stamps: list[int] = field(default_factory=list)
    bids: list[float] = field(default_factory=list)
    asks: list[float] = field(default_factory=list)
    on_disk: int = 0


class Recorder:
    """Appends quotes to `folder/quotes/<symbol>/` parts; see the module's docstring for what a kill loses.

    Not thread-safe: the engine's loop is its only caller. `monotonic` is injectable so tests need no sleep.
    """

    def __init__(self, folder: Path | str, *, fmt: Format = "parquet", flush_seconds: float = 5.0, segment_rows: int = 5000,
                 fsync: bool = True, monotonic: Callable[[], float] = time.monotonic, flush_rows: int = 2500,
                 made: Sequence[Path] = ()):
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
        if flush_seconds < 0 or segment_rows < 1 or flush_rows < 1:
            raise ValueError("flush_seconds must be >= 0, segment_rows and flush_rows >= 1")
        self.folder = Path(folder)
        self.fmt: Format = fmt
        self.flush_seconds = flush_seconds
        self.segment_rows = segment_rows
        self.flush_rows = flush_rows
        self.fsync = fsync
        self._monotonic = monotonic
        self._flushed_at = monotonic()
        self._segments: dict[str, _Segment] = {}  # its `last` is the symbol's last quote, usable or not
        self._dirty: set[str] = set()
        self._unusables: dict[str, _Segment] = {}  # the quotes that are not prices (unusable/), by symbol
        self._dirty_unusable: set[str] = set()
        self.unusable = 0  # quotes taken that are not prices (a side at 0, crossed): in unusable/
        self._missings: dict[str, _Segment] = {}  # the ticks that got no quote of a symbol (missing/), by symbol
        self._dirty_missing: set[str] = set()
        self.missing_quotes = 0  # (symbol, tick) pairs recorded as missing
        self._unflushed = 0  # quotes recorded since the last flush, every symbol together
        self.skipped: Counter[str] = Counter()  # why -> how many quotes were not recorded
        self.recorded = 0  # quotes taken (buffered or written)
        self.written = 0  # of them, those on disk: fewer when a write failed (a full disk) and the rest was never written
        self._written_symbols: set[str] = set()  # the symbols of those on disk (`symbols`)
        self.flushes = 0
        self._closed = False
        self._lock: int | None = None  # the folder's lock file, held from the first quote to close()
        self._lock_id: tuple[int, int] | None = None  # (device, inode) of that lock file: the folder is still ours
        self.lost = False  # the folder was deleted or moved away under the recording: what it wrote is not there
        self._lasts: dict[Path, int | None] = {}  # a parts folder -> its last quote's stamp, read by hold_folder
        self._ticks: _Segment | None = None  # the instants of the ticks that read the quotes (`tick`)
        self._notes: IO[str] | None = None  # recording.jsonl, opened by the first note
        self._wrote_notes = False  # a note was written (`close` leaves the folder then, though no quote was)
        self.ticks = 0  # ticks taken (buffered or written)
        # the folder held an earlier recording when this one locked it (`hold_folder`): a row of ticks/, quotes/,
        # unusable/ or missing/, or notes. `run --record` refuses such a folder unless told to continue it
        self.found_recording = False
        # what `hold_folder` made (the folders, and the lock file when it was not there), removed again by `close`
        # when this recording wrote nothing: a run refused at its start left a folder holding only its lock
        self._made: tuple[list[Path], bool] | None = None
        self._made_before = list(made)  # the folders the caller made for it (`run --record` makes and tries DIR first)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def record(self, symbol: str, timestamp: datetime, bid: float, ask: float) -> bool:
        """Buffer one quote; True when it will be written, False when it was skipped (see `skipped`).

        Flushes when `flush_seconds` have passed since the last flush, or the symbol's part is full.
        """
        if self._closed:
            raise RuntimeError("the recorder is closed")
        offset = timestamp.utcoffset()
        if offset is None:
            raise ValueError(f"{timestamp!r} is naive: quotes are recorded at timezone-aware instants")
        segment = self._segments.get(symbol) or self._open(symbol)
        delta = timestamp - _EPOCH
        stamp = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        why = None
        if not (_is_number(bid) and _is_number(ask)):
            why = NOT_A_NUMBER
        else:
            bid, ask = float(bid), float(ask)
            if not (math.isfinite(bid) and math.isfinite(ask)):
                why = "a price is not a finite number"
            elif bid < 0 or ask < 0:
                why = "a price is below 0"
            elif not FIRST_INSTANT <= timestamp < END_INSTANT:
                why = OUT_OF_RANGE
            elif segment.last is not None and stamp == segment.last:
                why = REPEAT
            elif segment.last is not None and stamp < segment.last:
                why = BEFORE_LAST
        if why is not None:
            self.skipped[why] += 1
            return False
        segment.last = stamp
        unusable = bid == 0 or ask == 0 or bid > ask
        if unusable:  # read by the engine as no price: replayed as read, from its own parts
            self.unusable += 1
            segment = self._unusables.get(symbol) or self._open_unusable(symbol)
            segment.last = stamp
            self._dirty_unusable.add(symbol)
        else:
            self._dirty.add(symbol)
        segment.stamps.append(stamp)
        segment.bids.append(bid)
        segment.asks.append(ask)
        self.recorded += 1
        self._unflushed += 1
        if len(segment.stamps) >= self.segment_rows:
            self._write(symbol, unusable)
        if self._unflushed >= self.flush_rows or self._monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()
        return True

    def tick(self, at: datetime) -> bool:
        """Record the instant of a tick whose quotes were just recorded: a replay ticks there (the module's
        docstring). False, counted in `skipped`, when it is not after the recording's last tick."""
        self._check_instant(at)
        segment = self._ticks or self._open_ticks()
        if not self._appended(segment, at, TICK_NOT_AFTER):
            return False
        self.ticks += 1
        if len(segment.stamps) >= self.segment_rows:
            self._write_ticks()
        if self._monotonic() - self._flushed_at >= self.flush_seconds:
            self.flush()
        return True

    def _check_instant(self, at: datetime) -> None:
        """A tick's instant may be recorded: the recorder is open and the instant aware (what a tick and a missing
        quote both check before their segment is opened)."""
        if self._closed:
            raise RuntimeError("the recorder is closed")
        if at.utcoffset() is None:
            raise ValueError(f"{at!r} is naive: ticks are recorded at timezone-aware instants")

    def _appended(self, segment: _Segment, at: datetime, not_after: str) -> bool:
        """`at` appended to `segment`'s stamps (microseconds since the epoch), if it is in the format's range and
        after the segment's last; else False, counted in `skipped` (OUT_OF_RANGE, or `not_after`)."""
        delta = at - _EPOCH
        stamp = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        if not FIRST_INSTANT <= at < END_INSTANT:
            self.skipped[OUT_OF_RANGE] += 1
            return False
        if segment.last is not None and stamp <= segment.last:
            self.skipped[not_after] += 1
            return False
        segment.stamps.append(stamp)
        segment.last = stamp
        return True

    def last_tick(self) -> datetime | None:
        """The recording's last tick: this recording's, else the one the folder held when it began (None: none)."""
        segment = self._ticks or self._open_ticks()
        return _EPOCH + timedelta(microseconds=segment.last) if segment.last is not None else None

    def missing(self, symbol: str, at: datetime) -> bool:
        """Record that the tick at `at` asked for `symbol` and got no quote of it (the module's docstring). False,
        counted in `skipped`, when `at` is not after the last tick the symbol was recorded missing at."""
        self._check_instant(at)
        segment = self._missings.get(symbol) or self._open_missing(symbol)
        if not self._appended(segment, at, MISSING_NOT_AFTER):
            return False
        self.missing_quotes += 1
        self._dirty_missing.add(symbol)
        if len(segment.stamps) >= self.segment_rows:
            self._write_stamps(self._missings, symbol, MISSING)
        return True

    def note(self, event: str, at: datetime, **fields: Any) -> None:
        """Append one line to `recording.jsonl`: what the run met at `at` that its replay cannot have (see the
        module's docstring). Written at once (a kill loses at most a line being written), synced with the flush."""
        if self._closed:
            raise RuntimeError("the recorder is closed")
        if at.utcoffset() is None:
            raise ValueError(f"{at!r} is naive: notes are made at timezone-aware instants")
        if self._notes is None:
            if self._lock is None:
                self.hold_folder()
            self._still_ours()
            self._notes = (self.folder / NOTES_FILE).open("a", encoding="utf-8")
            if ends_mid_line(self.folder / NOTES_FILE, self._notes.tell()):  # an earlier run's, cut by a kill
                self._notes.write("\n")
        line = json.dumps({"event": event, "at": at.astimezone(timezone.utc).isoformat(), **fields}, default=str,
                          ensure_ascii=False)  # fmt: skip
        self._wrote_notes = True
        self._notes.write(line + "\n")
        self._notes.flush()

    def flush(self) -> None:
        """Write every symbol's new quotes now (each part replaced atomically), then the ticks that read them."""
        for symbol in sorted(self._dirty):
            self._write(symbol)
        for symbol in sorted(self._dirty_unusable):
            self._write(symbol, unusable=True)
        for symbol in sorted(self._dirty_missing):
            self._write_stamps(self._missings, symbol, MISSING)
        self._dirty_missing.clear()
        self._write_ticks()
        if self._notes is not None and self.fsync:
            os.fsync(self._notes.fileno())
        self._flushed_at = self._monotonic()
        self._unflushed = 0

    def close(self) -> None:
        """Flush and stop; closing twice is harmless."""
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True
                if self._notes is not None:
                    self._notes.close()
                    self._notes = None
                if self._lock is not None:
                    taken = self.recorded or self.ticks or self.missing_quotes or self._wrote_notes
                    if self._made is not None and self._made[1] and not taken:  # nothing to write: as it was found
                        remove_unused(self.folder / LOCK_FILE, self._made[0])
                    os.close(self._lock)  # also releases the lock
                    self._lock = None

    # --- parts ----------------------------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """The symbols this recording has written quotes of: on disk, not only taken (a flush stopped part way by a
        full disk wrote some symbols' parts and not the others')."""
        return sorted(self._written_symbols)

    def hold_folder(self) -> None:
        """Called by the first quote, or before, to refuse a second recording before its run starts (harmless
        twice). Lock the folder for this recording. Two recordings into one folder at once would each start the same
        next part and rename over each other's, silently keeping only the last writer's quotes, and each would
        take the other's temporary files for a killed flush's. One after the other is fine (the next part);
        at once, the second is refused. The lock is the kernel's (flock), so a kill releases it."""
        if self._lock is not None:
            return
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one recording per folder is then the user's to keep
            return
        path = self.folder / LOCK_FILE
        made = folders_to_make(self.folder) or self._made_before
        self.folder.mkdir(parents=True, exist_ok=True)
        self._refuse_odd_files()
        new_lock = not os.path.lexists(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataError([Problem(str(self.folder), 0, 0, "", "another recording is writing to this folder now "
                                     "(its lock is held): record into another folder")]) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd
        self._made = (made, new_lock)
        held = os.fstat(fd)
        self._lock_id = (held.st_dev, held.st_ino)
        # Each symbol's last part, which its recording goes on after, is read now: one that cannot be read (cut
        # short by a copy stopped half way, a damaged disk) refuses the recording before the run, not at its
        # first quote with the run going on unrecorded. So does a folder that cannot be listed (another user's,
        # copied with its modes), which was a traceback here, as the reader says it of a data folder.
        for kind in ("quotes", UNUSABLE, MISSING):
            quotes = self.folder / kind
            for folder in _listed(quotes) if quotes.is_dir() else []:
                if folder.is_dir() and folder not in self._lasts:
                    self._lasts[folder] = _listed_then(folder, functools.partial(_last_stamp, folder, kind))
                    next_part(folder, self.fmt)  # DataError now, not at the first quote, for a part named otherwise
        ticks = self.folder / TICKS
        if ticks.is_dir() and ticks not in self._lasts:
            self._lasts[ticks] = _listed_then(ticks, functools.partial(_last_stamp, ticks, "ticks"))
            next_part(ticks, self.fmt)
        self.found_recording = any(last is not None for last in self._lasts.values()) or _has_notes(self.folder)

    def _refuse_odd_files(self) -> None:
        """DataError, before the run, when the lock file or the notes file is there and is not a regular file. The
        lock opened as a folder was a traceback (IsADirectoryError) before the run; notes opened for appending to a
        FIFO wait for a reader forever, at the first recorded tick: the run hung there, trading nothing and ticking
        no more; a device (a link to /dev/null) took the notes away and stopped the recording at its first flush."""
        for name, what in ((LOCK_FILE, "the recording's lock"), (NOTES_FILE, "the recording's notes")):
            path = self.folder / name
            try:
                found = path_kind(path)
            except OSError as exc:
                raise DataError([Problem(str(path), 0, 0, "", f"cannot be used as {what}: {exc.strerror or exc}")]) from None
            if found not in (PathKind.NOTHING, PathKind.FILE):  # a link to nothing: a file made somewhere else
                raise DataError([Problem(str(path), 0, 0, "", f"is {found.value}, not a regular file, so it cannot be {what}: "
                                         "remove it, or record into another folder")])
        # The folders the parts go in, and each symbol's folder in them, are folders or not there yet. A file in
        # their place stopped the recording at its first quote, and the run went on unrecorded and ended exit 0.
        for kind in ("quotes", UNUSABLE, MISSING, TICKS):
            parts = self.folder / kind
            found = _kind_of(parts)
            paths = [parts]
            if found is PathKind.FOLDER and kind != TICKS:  # and each symbol's (a hidden name is no symbol's)
                paths = [entry for entry in _listed(parts) if not entry.name.startswith(".")]
            for path in paths:
                found = _kind_of(path)
                if found not in (PathKind.NOTHING, PathKind.FOLDER):
                    raise DataError([Problem(str(path), 0, 0, "", f"is {found.value}, not a folder, so a recording cannot "
                                             "write its parts there: remove it, or record into another folder")])

    def _still_ours(self) -> None:
        """DataError when the folder's lock file is no longer the one this recording holds: the folder was deleted
        or moved away under it (a cleanup job's `rm -rf rec/`). Each write makes the folders it needs, so the
        recording went on into a new, empty folder: the parts written before were gone, a later replay began
        mid-run, and the run still ended `recorded N quotes to rec`. Also another recording could lock the new
        folder and write beside this one. A lock file that cannot be looked at now proves nothing."""
        if self._lock_id is None:
            return
        path = self.folder / LOCK_FILE
        try:
            found = os.stat(path)
        except FileNotFoundError:
            found = None
        except OSError:
            return
        if found is None or (found.st_dev, found.st_ino) != self._lock_id:
            self.lost = True
            raise DataError([Problem(str(self.folder), 0, 0, "", "the recording folder was deleted or replaced during "
                                     f"the recording ({LOCK_FILE} is not the one it locked): the quotes recorded before are "
                                     "not in it; record again into a folder of its own")])  # fmt: skip

    def _open(self, symbol: str) -> _Segment:
        """The symbol's next part, after the last one a previous recording left (whose rows are not rewritten)."""
        if self._lock is None:
            self.hold_folder()
        stem = file_stem(symbol)
        base = self.folder / "quotes"
        single = [base / f"{stem}{suffix}" for suffix in SUFFIXES if (base / f"{stem}{suffix}").exists()]
        if single:
            raise DataError([Problem(str(single[0]), 0, 0, "", f"{symbol}'s quotes are this one file, so they cannot also be "
                                     f"recorded as parts in {base / stem}/: record into another folder")])
        folder = base / stem
        for path in (base, folder):  # a file where a folder belongs: said with the path, not as errno 17 or 20
            if path.exists() and not path.is_dir():
                raise DataError([Problem(str(path), 0, 0, "", f"is a file, so {symbol}'s quotes cannot be recorded as "
                                         f"parts in {folder}/: record into another folder")])
        unusable = self.folder / UNUSABLE / stem
        for path in (unusable.parent, unusable):
            if path.exists() and not path.is_dir():
                raise DataError([Problem(str(path), 0, 0, "", f"is a file, so {symbol}'s unusable quotes cannot be recorded "
                                         f"as parts in {unusable}/: record into another folder")])
        # Not made here but by the first write: an empty folder would read as a symbol recorded without data.
        last = self._lasts.pop(folder) if folder in self._lasts else _last_stamp(folder)
        last_unusable = self._lasts.pop(unusable) if unusable in self._lasts else _last_stamp(unusable, UNUSABLE)
        if last is None or (last_unusable is not None and last_unusable > last):
            last = last_unusable  # the symbol's last quote, in either folder: the next must come after it
        segment = _Segment(next_part(folder, self.fmt), last)
        self._segments[symbol] = segment
        return segment

    def _open_unusable(self, symbol: str) -> _Segment:
        """The symbol's next part of unusable quotes (its folder checked by `_open`, which always runs first)."""
        folder = self.folder / UNUSABLE / file_stem(symbol)
        segment = self._unusables[symbol] = _Segment(next_part(folder, self.fmt), self._segments[symbol].last)
        return segment

    def _open_missing(self, symbol: str) -> _Segment:
        """The symbol's next part of missing quotes, after the last one a previous recording left."""
        if self._lock is None:
            self.hold_folder()
        folder = self.folder / MISSING / file_stem(symbol)
        for path in (folder.parent, folder):
            if path.exists() and not path.is_dir():
                raise DataError([Problem(str(path), 0, 0, "", f"is a file, so the ticks without a quote of {symbol} cannot be "
                                         f"recorded as parts in {folder}/: record into another folder")])
        last = self._lasts.pop(folder) if folder in self._lasts else _last_stamp(folder, MISSING)
        segment = self._missings[symbol] = _Segment(next_part(folder, self.fmt), last)
        return segment

    def _write_stamps(self, segments: dict[str, _Segment], key: str, kind: Kind) -> None:
        """Write a segment of one `timestamp` column (missing quotes), and start the next part when it is full."""
        segment = segments[key]
        if len(segment.stamps) > segment.on_disk:
            self._still_ours()
            table = pa.table({"timestamp": pa.array(segment.stamps, pa.int64()).cast(TIMESTAMP)})
            write_table(segment.path, table, kind, fsync=self.fsync)
            segment.on_disk = len(segment.stamps)
            self.flushes += 1
        if len(segment.stamps) >= self.segment_rows:
            segments[key] = _Segment(next_part(segment.path.parent, self.fmt), segment.last)

    def _open_ticks(self) -> _Segment:
        """The ticks' next part, after the last one a previous recording left (whose rows are not rewritten)."""
        if self._lock is None:
            self.hold_folder()
        folder = self.folder / TICKS
        if folder.exists() and not folder.is_dir():
            raise DataError([Problem(str(folder), 0, 0, "", "is a file, so the run's ticks cannot be recorded as parts in "
                                     f"{folder}/: record into another folder")])
        last = self._lasts.pop(folder) if folder in self._lasts else _last_stamp(folder, "ticks")
        self._ticks = _Segment(next_part(folder, self.fmt), last)
        return self._ticks

    def _write_ticks(self) -> None:
        segment = self._ticks
        if segment is None:
            return
        if len(segment.stamps) > segment.on_disk:
            self._still_ours()
            table = pa.table({"timestamp": pa.array(segment.stamps, pa.int64()).cast(TIMESTAMP)})
            write_table(segment.path, table, "ticks", fsync=self.fsync)
            segment.on_disk = len(segment.stamps)
            self.flushes += 1
        if len(segment.stamps) >= self.segment_rows:  # full: the next tick starts the next part
            self._ticks = _Segment(next_part(segment.path.parent, self.fmt), segment.last)

    def _write(self, symbol: str, unusable: bool = False) -> None:
        segments, dirty = (self._unusables, self._dirty_unusable) if unusable else (self._segments, self._dirty)
        segment = segments[symbol]
        if len(segment.stamps) > segment.on_disk:
            self._still_ours()
            table = pa.table({
                "timestamp": pa.array(segment.stamps, pa.int64()).cast(TIMESTAMP),
                "bid": pa.array(segment.bids, pa.float64()),
                "ask": pa.array(segment.asks, pa.float64()),
            })
            write_table(segment.path, table, UNUSABLE if unusable else "quotes", fsync=self.fsync)
            self.written += len(segment.stamps) - segment.on_disk
            self._written_symbols.add(symbol)
            segment.on_disk = len(segment.stamps)
            self.flushes += 1
        if len(segment.stamps) >= self.segment_rows:  # full: the next quote starts the next part
            segments[symbol] = _Segment(next_part(segment.path.parent, self.fmt), segment.last)
        dirty.discard(symbol)


def _has_notes(folder: Path) -> bool:
    """Whether the folder's `recording.jsonl` holds anything (a run killed before its first flush wrote its `run`
    note, and no row); one that cannot be looked at counts as holding notes: it is a recording's file."""
    try:
        return os.stat(folder / NOTES_FILE).st_size > 0
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _kind_of(path: Path) -> PathKind:
    """`path_kind` of a path in the recording; DataError naming it when it cannot be looked at."""
    try:
        return path_kind(path)
    except OSError as exc:
        raise DataError([Problem(str(path), 0, 0, "", f"cannot be looked at: {exc.strerror or exc}")]) from None


def _listed(folder: Path) -> list[Path]:
    """The entries of a folder of the recording, in name order; DataError naming it when it cannot be listed."""
    return _listed_then(folder, lambda: sorted(folder.iterdir()))


T = TypeVar("T")


def _listed_then(folder: Path, read: Callable[[], T]) -> T:
    """`read()` of a folder of the recording; an OSError it meets (a folder that may not be listed) as a DataError
    naming the folder, as the reader says it of a data folder."""
    try:
        return read()
    except OSError as exc:
        raise DataError([Problem(str(folder), 0, 0, "", f"cannot be listed: {exc.strerror or exc}")]) from None


def _last_stamp(folder: Path, kind: Kind = "quotes") -> int | None:
    """The stamp (microseconds since the epoch) of the last row in a symbol's (or the ticks') parts folder, None when it has
    none; a last part that cannot be read is a DataError naming it. The temporary files of flushes a kill
    interrupted are deleted first; one whose writer still runs (a recording beside this one) is left alone."""
    entries = list(folder.iterdir()) if folder.is_dir() else []
    for name in sorted({m[1] for p in entries if (m := _LEFTOVER.fullmatch(p.name))}):
        remove_leftovers(folder / name)
    # In name order, as the reader joins them (next_part refuses a name that would not come last); the last part
    # with a row, since an empty part (a header only) is skipped over by the reader too.
    parts = sorted(p for p in entries if not p.name.startswith(".") and p.suffix in SUFFIXES)
    for part in reversed(parts):
        table, problems = read_file(part, kind, whole_lines=True)  # a recording's part: each line ended
        if problems:
            raise DataError(problems)
        if len(table):
            return micros(table.slice(len(table) - 1))[0]
    return None


def read_notes(folder: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The lines of a recording's `recording.jsonl` (none when it has none), and why any line could not be read.

    A last line without its end is the one a kill cut while it was written, and is left out without a word; any
    other line that is not a JSON object with an `event` and an aware `at`, or whose values are not of the kinds
    the recorder writes (`_note_problem`), is told, by number: a backtest computes with these values, and one of
    another kind was a traceback there (halts given as a number) or silently read as nothing (positions given as a
    list). A file that is not a regular file is told without being opened: reading a FIFO waits for a writer
    forever, and a device (a link to /dev/zero) never ends."""
    path = folder / NOTES_FILE
    try:
        found = path_kind(path)
    except OSError as exc:  # a symlink loop, a folder on the way that may not be searched
        return [], [f"{path} cannot be read: {exc.strerror or exc}"]
    if found.absent:
        return [], []
    if found is not PathKind.FILE:
        return [], [f"{path} is {found.value}, not a regular file (not opened)"]
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{path} cannot be read: {exc.strerror or exc}"]
    lines = text.split("\n")
    lines.pop()  # "" after a last line that ended; else the line a kill cut short
    notes: list[dict[str, Any]] = []
    unread: list[str] = []
    for number, line in enumerate(lines, 1):
        try:
            record = jsontext.loads(line)  # ValueError for a line nested too deeply, not a RecursionError
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                raise ValueError("not an event")
            at = datetime.fromisoformat(str(record.get("at")))
            if at.utcoffset() is None:
                raise ValueError("a naive time")
            record["at"] = at.astimezone(timezone.utc)  # OverflowError: year 1 at +05:00 is before year 1 in UTC
            _note_problem(record)
        except (ValueError, OverflowError):
            unread.append(f"{path}:{number}")
            continue
        notes.append(record)
    return notes, unread


def _finite_number(value: object) -> bool:
    """A JSON number a float holds, and finite: not True (an int to Python), not 1e400 written as digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _note_problem(record: dict[str, Any]) -> None:
    """ValueError when a note's values are not of the kinds `Recorder.note` is given for its event (what
    engine/trading/runner.py writes): a `run`'s cash and equity a finite number or null, its positions an object of
    numbers or null, its halts a list of objects, its last ticks a time with its zone or null; a `halt`'s and a
    `broker_error`'s texts text or null. Another event is read as it is: nothing computes with it."""
    event = record["event"]
    if event == "run":
        for key in ("cash", "equity"):
            if record.get(key) is not None and not _finite_number(record[key]):
                raise ValueError(f"{key} is not a number")
        positions = record.get("positions")
        if positions is not None and not (isinstance(positions, dict) and all(map(_finite_number, positions.values()))):
            raise ValueError("positions are not quantities by symbol")
        halts = record.get("halts")
        if halts is not None and not (isinstance(halts, list) and all(isinstance(h, dict) for h in halts)):
            raise ValueError("halts are not a list of halts")
        for key in ("state_last_tick", "recorded_last_tick"):
            if record.get(key) is not None:
                aware_time(str(record[key])).astimezone(timezone.utc)
    elif event in ("halt", "broker_error"):
        for key in ("scope", "reason", "operation", "message"):
            if record.get(key) is not None and not isinstance(record[key], str):
                raise ValueError(f"{key} is not text")
