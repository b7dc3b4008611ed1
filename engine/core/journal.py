"""The JSONL event log: one JSON object a line, `ts` in UTC ISO 8601, `event` naming what happened.

Events are encoded as they happen, handed to the file a few hundred lines at a time, and flushed at the end of
each tick and before every order request (what a flush writes is on disk before the engine goes on). Values
are plain JSON; anything else is turned into a string. The engine never passes keys or secrets here, and the
journal masks every configured secret, whatever its length, wherever it appears in the text of an event (its
name, a field's name or value, at any depth; raw or as JSON escapes it), so a line never carries one (`Secrets`).

Listeners (the terminal's live view) are told of each event once its line is made, in the order of the log.
The hot path pays one truth test when nobody listens, and a listener that raises is dropped rather than
allowed to reach the tick: a display must never halt trading.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from json import encoder as json_encoder
from pathlib import Path
from typing import Any

from engine.core import failpoints
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


# Masks to write in a secret's place: the first that contains none of the secrets (a one-character secret
# could be part of "***"), so that masking never writes back what it removed.
_MASKS = ("***", "###", "~~~", "%%%", "^^^", "@@@")


# The shortest secret that can be masked exactly without masking ordinary words with it ("ord" would turn every
# "order" event into "***er"): a shorter one is refused, neither masked everywhere nor left unmasked. Alpaca's
# keys are 20 and 40 random characters; the broker factory refuses shorter ones with the same limit.
MIN_SECRET_LENGTH = 8


# A value quoted in a message (a broker's answer, a page of bars) is cut short there, but only once the message's
# secrets are masked (`Secrets.scrubbed`): cut first, a key straddling the cut kept its first characters, which no
# mask then finds. `quoted` marks the value and its limit with two control characters that no repr or JSON text
# holds (both escape them), and `scrubbed` masks the whole message, then cuts each quoted value, then the message.
_QUOTE, _UNQUOTE = "\x1e", "\x1f"
_QUOTED = re.compile("\x1e([0-9]+):([^\x1e\x1f]*)\x1f")


def quoted(text: str, limit: int) -> str:
    """`text`, to be shown cut to `limit` characters (with "...") once the message holding it is scrubbed; never
    cut here. The marks are removed from `text` itself (raw control characters, never part of a key)."""
    return f"{_QUOTE}{limit}:{text.replace(_QUOTE, '').replace(_UNQUOTE, '')}{_UNQUOTE}"


def _cut(text: str, limit: int) -> str:
    """Cut after the secrets are masked (`Secrets.scrubbed`), so a plain cut: the rule of `clipped` is for text
    cut before any mask could see it."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


# The characters a secret may hold: printable ASCII without spaces, quotes or backslashes (the broker factory
# refuses keys holding others). A run of them at least MIN_SECRET_LENGTH long with a letter in it may be a secret
# or hold one; a shorter run cannot hold any part of one (a key has no space to be split at), and a run without a
# letter is a number (a key id or secret of Alpaca's, or a token, of digits alone is not one the engine expects).
SECRET_CHARACTERS = re.compile(r"[\x21\x23-\x26\x28-\x5b\x5d-\x7e]+")


_known: frozenset[str] = frozenset()
"""Every secret this process masks: what each `Secrets` was made with, and what the command line's environment
and `.env` hold (`remember_secrets_from`). A cut of text made before the masks can see it (`clipped`, `window`)
masks what it leaves of any of them. Replaced whole, never changed in place, so a thread reading it never sees it
change under it."""
_sources: tuple[Callable[[], Iterable[str]], ...] = ()


def remember_secrets(values: Iterable[str]) -> None:
    """Add `values` to the secrets every later cut masks (`_masked_cut_words`); one shorter than MIN_SECRET_LENGTH
    is not a secret the engine masks, and is left out."""
    global _known
    new = {v for v in values if len(v) >= MIN_SECRET_LENGTH} - _known
    if new:
        _known = _known | new


def remember_secrets_from(source: Callable[[], Iterable[str]]) -> None:
    """`source()` remembered (`remember_secrets`) at the first cut that needs it, not now: the command line gives
    the keys of its environment and `.env` this way before it reads anything, and a command that cuts nothing
    (most: a cut is an error's excerpt) never pays for reading them."""
    global _sources
    _sources = (*_sources, source)


def _secrets_known() -> frozenset[str]:
    global _sources
    waiting, _sources = _sources, ()  # two threads at once may both call a source: remembering twice is harmless
    for source in waiting:
        remember_secrets(source())
    return _known


def _masked_cut_words(text: str, start: int, end: int) -> str:
    """`text[start:end]` with each word the two cuts go through masked character for character (so a caret under
    the text still points where it did) when the whole word could hold a secret: what is left of a key cut in two
    is no longer the key, so exact masking (`Secrets`), before or after, never finds it. Key-agnostic on purpose:
    it also covers a secret no one told the engine about (another account's key, a token).

    A word is letters, digits and `-_+/=.~`, and a secret may hold any printable character (a serve token with
    `!` or `#` in it, a space even): cut there, the word heuristic saw only the piece up to the punctuation, and
    the rest of the token was shown whole beside it. So every secret this process knows (`remember_secrets`)
    that a cut goes through is masked as well, whatever it holds, before the text is cut."""
    shown = list(text[start:end])
    for secret in _secrets_known():
        at = text.find(secret)
        while at != -1:
            if any(at < cut < at + len(secret) for cut in (start, end)):
                for i in range(max(at, start), min(at + len(secret), end)):
                    shown[i - start] = "*"
            at = text.find(secret, at + 1)
    for cut in (start, end):
        if not 0 < cut < len(text) or not (_secret_character(text[cut - 1]) and _secret_character(text[cut])):
            continue  # not inside a word
        word_start, word_end = cut, cut
        while word_start > 0 and _secret_character(text[word_start - 1]):
            word_start -= 1
        while word_end < len(text) and _secret_character(text[word_end]):
            word_end += 1
        if word_end - word_start >= MIN_SECRET_LENGTH and any(c.isalpha() for c in text[word_start:word_end]):
            for i in range(max(word_start, start), min(word_end, end)):
                shown[i - start] = "*"
    return "".join(shown)


# What a cut word is made of, for `_masked_cut_words`: the characters of keys and tokens as they are issued (letters,
# digits, `-_+/=.~`), narrower than SECRET_CHARACTERS. With all of those, a CSV header or a YAML flow list cut in
# its last field was one "word" from its first character, and the whole excerpt was masked: an error that showed
# nothing of what it was about.
_WORD_CHARACTER = re.compile(r"[A-Za-z0-9_\-+/=.~]")


def _secret_character(char: str) -> bool:
    return _WORD_CHARACTER.fullmatch(char) is not None


def clipped(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with "...", the word the cut goes through masked when it could hold a
    secret (`_masked_cut_words`): for every cut of text a user or a broker wrote (it may quote a key) made before
    the keys are masked, as a problem's excerpt or a data file's cell is."""
    if len(text) <= limit:
        return text
    return _masked_cut_words(text, 0, max(limit - 3, 0)) + "..."


def window(text: str, start: int, end: int) -> str:
    """`text[start:end]` (a window around a column of a long line), each word either edge goes through masked
    when it could hold a secret (`_masked_cut_words`), character for character."""
    return _masked_cut_words(text, max(start, 0), end)


class Secrets:
    """Configured secrets (the broker's keys), masked exactly wherever they appear in a text.

    Exact masking never changes ordinary text for a real key. The mask never holds a secret, and a text in which
    masking one secret brings another occurrence together (`x*` in `xx*`) is replaced whole: nothing that holds a
    secret is returned. ValueError for a secret shorter than MIN_SECRET_LENGTH."""

    def __init__(self, values: Iterable[str]):
        self.values: tuple[str, ...] = tuple(sorted({v for v in values if v}, key=len, reverse=True))
        if any(len(v) < MIN_SECRET_LENGTH for v in self.values):
            raise ValueError(f"a secret shorter than {MIN_SECRET_LENGTH} characters cannot be masked without masking words")
        mask = next((m for m in _MASKS if not any(v in m for v in self.values)), None)
        if mask is None:
            raise ValueError("no mask can stand in for these secrets: each holds the characters of every mask")
        self.mask = mask
        remember_secrets(self.values)  # a text cut before this masks it must not keep a piece of one (`clipped`)

    def __bool__(self) -> bool:
        return bool(self.values)

    def found_in(self, text: str) -> bool:
        return any(v in text for v in self.values)

    def masked(self, text: str) -> str:
        """`text` with every occurrence of every secret replaced by the mask (longest secret first)."""
        if not self.found_in(text):
            return text
        for value in self.values:
            text = text.replace(value, self.mask)
        return self.mask if self.found_in(text) else text

    def scrubbed(self, text: str, limit: int | None = None) -> str:
        """`text` masked, then each `quoted` value in it cut to its limit, then the whole cut to `limit`: no cut
        ever comes before the mask, so none leaves the first characters of a secret behind."""
        text = self.masked(text)
        text = _QUOTED.sub(lambda m: _cut(m.group(2), int(m.group(1))), text)
        text = text.replace(_QUOTE, "").replace(_UNQUOTE, "")
        return text if limit is None else text[:limit]

    def masked_value(self, value: Any) -> Any:
        """A decoded JSON value with every string in it masked, names of fields included, at any depth."""
        if isinstance(value, str):
            return self.masked(value)
        if isinstance(value, list):
            return [self.masked_value(v) for v in value]
        if isinstance(value, dict):
            return {self.masked(k): self.masked_value(v) for k, v in value.items()}
        return value  # numbers, true, false, null: made by the engine, never text a secret could be in


_LINES_HELD = 512  # lines gathered before one write to the file (a flush writes them all, whatever their number)


class JournalError(OSError):
    """The log file cannot be opened or written: one line naming the file and what is wrong.

    An OSError, so that what already stops on one (an order is not sent when its event cannot be flushed first)
    stops on this one too. `runtime` is False when the path holds something that is not a log file (a folder:
    the user's input to fix, exit 2), True when the file cannot be written now (permission, a full disk: exit 1)."""

    def __init__(self, path: Path, exc: OSError, *, wrong_kind: str | None = None):
        self.path = path
        if isinstance(exc, IsADirectoryError):
            wrong_kind = "a folder"
        self.runtime = wrong_kind is None
        what = f"is {wrong_kind}, not a log file" if wrong_kind else (exc.strerror or str(exc))
        super().__init__(exc.errno, f"log file {path}: {what}")

    def __str__(self) -> str:
        return str(self.strerror)

    @property
    def message(self) -> str:
        return str(self.strerror)


def ends_mid_line(path: Path, size: int) -> bool:
    """Whether a line-by-line file of `size` bytes ends in the middle of a line (a kill or a full disk cut its
    last one): appended to as it is, the next line written would be glued onto that broken one and lost to every
    reader with it, so the writer ends the broken line first. OSError when it cannot be read."""
    if size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) not in (b"\n", b"")


def _another_kind_of_file(path: Path) -> bool:
    """Whether `path` is a regular file whose first bytes are not one of the engine's lines, each a JSON object
    (a CSV, a picture, a text: `--log notes.csv` had the run's events appended to the user's file, exit 0). Only the
    start is looked at: a line a crash or a full disk cut is still read and appended after, as any log. A file that
    cannot be read, a device or a FIFO (`--log /dev/stdout` under a supervisor) is not judged."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return bool(head) and not head.startswith(b"{")


def _open_log(path: Path) -> int:
    """The log's descriptor, appending, its folder made if missing; JournalError when it cannot be opened, or when
    the file there is of another kind (`_another_kind_of_file`: the user's input, left as it was)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():  # os.open would give EISDIR only at the first write
            raise IsADirectoryError(21, "Is a directory", str(path))
        if _another_kind_of_file(path):
            wrong = "a file of another kind (it does not begin with a JSON line, as every log the engine writes does)"
            raise JournalError(path, OSError(errno.EINVAL, "not a log file"), wrong_kind=wrong)
        # Not blocking: a FIFO no process reads fails at once (ENXIO) instead of hanging the open. A device
        # or a FIFO that is read (`--log /dev/stdout` under a supervisor) is fine; writes then block as usual.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        os.set_blocking(fd, True)
    except JournalError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise JournalError(path, exc, wrong_kind="a FIFO that no process reads") from None
        raise JournalError(path, exc) from None
    return fd


class Journal:
    def __init__(self, path: Path, clock: Clock, secrets: Iterable[str] = (), *, unopened_ok: bool = False):
        """`unopened_ok`: a log that cannot be opened raises its JournalError at the first flush instead of here,
        for the operator's halt, which is committed before its event is written and must not be lost to a log
        path given wrong (a folder): the halt goes in, and the command then says the log could not take it."""
        self.path = path
        self._secrets = Secrets(secrets)
        # what a secret looks like inside a line: as given, and as the encoder escapes it (a quote, a backslash,
        # a non-ASCII character); a line holding either is decoded, masked string by string, and encoded again
        self._needles = tuple({form for v in self._secrets.values for form in (v, json_encoder.encode_basestring_ascii(v)[1:-1])})
        self._unopened: JournalError | None = None  # why the log could not be opened (`unopened_ok`)
        self._fd: int | None = None
        try:
            self._fd = _open_log(path)
        except JournalError as exc:
            if not unopened_ok:
                raise
            self._unopened = exc
        self._unwritten = bytearray()  # encoded lines the OS has not taken yet (see `_write_lines`)
        self._opened = self._identity(self._fd) if self._fd is not None else (0, 0, False)
        self.reopened = 0  # times the path named another file and the log went on in that one (`_follow_path`)
        # a line cut short (a crash, a full disk): ours starts on a line of its own
        if self._fd is not None and self._cut_short(self._fd):
            self._unwritten += b"\n"
        self._clock = clock
        self._encode = _line_encoder()
        self._stamped_at: datetime | None = None
        self._stamp = ""
        self._prefix = ""
        self._lines: list[str] = []  # lines not yet handed to the file: one write for many (`_LINES_HELD`)
        # each listener with the events it asked for (None: every event)
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self._told: frozenset[str] | None = frozenset()  # the events some listener asked for (None: every event)
        self.listener_errors: list[str] = []  # why listeners were dropped, for whoever added them

    @staticmethod
    def _identity(fd: int) -> tuple[int, int, bool]:
        """(device, inode, regular file) of an open log."""
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, stat.S_ISREG(st.st_mode)

    def _cut_short(self, fd: int) -> bool:
        """Whether the regular file ends in the middle of a line (`ends_mid_line`)."""
        if not self._opened[2]:
            return False
        try:
            return ends_mid_line(self.path, os.fstat(fd).st_size)  # `fd` is write-only
        except OSError:  # unreadable to us: nothing to tell
            return False

    def _follow_path(self) -> None:
        """Reopen the log when its path no longer names the file we hold open: rotated away (renamed) or deleted
        under a running engine, every later event would go to a file nobody reads. The new file at the path is
        created as at the start; when it cannot be, the error goes up (a log that cannot be written)."""
        assert self._fd is not None
        if not self._opened[2]:  # a FIFO or a device (`--log /dev/stdout`): nothing to rotate
            return
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._opened[:2]:
                return
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JournalError(self.path, exc) from None
        fd = _open_log(self.path)  # its folder too, if that went with it (`rm -rf logs/`)
        old, self._fd = self._fd, fd
        with contextlib.suppress(OSError):
            os.close(old)
        self._opened = self._identity(fd)
        self.reopened += 1
        if self._cut_short(fd) and not self._unwritten.startswith(b"\n"):
            self._unwritten[:0] = b"\n"

    def whole_at_path(self) -> bool:
        """Whether the file at the path holds every line this journal wrote: it is the file opened first, and the
        log never had to go on in another. A running engine's log is followed through a rotation (the lines before
        it are in the rotated file); a log that must be one whole file (a backtest's, which its report is read
        from) is incomplete otherwise. A path that cannot be looked at now proves nothing either way: True."""
        if self.reopened:
            return False
        if not self._opened[2]:
            return True
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return (st.st_dev, st.st_ino) == self._opened[:2]

    def scrubbed(self, text: str, limit: int | None = None) -> str:
        """`text` with the configured secrets masked, then its `quoted` values cut (`Secrets.scrubbed`): for what
        is kept beside the log, such as a halt's reason in SQLite, which `status` prints."""
        return self._secrets.scrubbed(text, limit)

    def log(self, event: str, **fields: Any) -> None:
        now = self._clock.now()
        if now != self._stamped_at:  # a tick logs many events at one instant: format its time once
            self._stamped_at, self._stamp = now, now.astimezone(timezone.utc).isoformat()
            self._prefix = '{"ts":' + json_encoder.encode_basestring_ascii(self._stamp) + ',"event":'
        # The line is the record {"ts", "event", **fields} as the encoder writes it, put together from the time's
        # text (once a tick), the event's name and the fields: the record itself is built only for listeners.
        body = self._encode(fields)
        line = self._prefix + json_encoder.encode_basestring_ascii(event) + ("}" if body == "{}" else "," + body[1:])
        masked: dict[str, Any] | None = None
        if self._needles and any(needle in line for needle in self._needles):
            # the time is the journal's own text (from the clock, never from input): only what was passed is masked
            shown, values = self._secrets.masked(event), self._secrets.masked_value(json.loads(body))
            masked = {"ts": self._stamp, "event": shown, **values}
            body = self._encode(values)
            line = self._prefix + json_encoder.encode_basestring_ascii(shown) + ("}" if body == "{}" else "," + body[1:])
        self._lines.append(line)
        if len(self._lines) >= _LINES_HELD:
            self._write_lines()
        told = self._told
        if told is None or event in told:  # the record is built only for an event some listener asked for
            self._tell(event, masked if masked is not None else {"ts": self._stamp, "event": event, **fields})

    def subscribe(self, listener: Listener, events: Iterable[str] | None = None) -> None:
        """`listener(record)` once each event's line is made (it reaches the file with the next batch or flush):
        `ts` (UTC text), `event`, then the fields as logged (datetimes still datetimes), or the line as written
        when a secret had to be masked in it. `events`: only the events of these names (as logged, before any
        masking); None: every event. A log nobody listens to, or no listener asked for, builds no record: a
        backtest's listener wants one event, and a record a line was a dict built and dropped each time."""
        self._listeners.append((listener, None if events is None else frozenset(events)))
        self._update_told()

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners = [pair for pair in self._listeners if pair[0] != listener]  # (a bound method is made anew)
        self._update_told()

    def _update_told(self) -> None:
        wanted = [events for _listener, events in self._listeners]
        self._told = None if None in wanted else frozenset().union(*(w for w in wanted if w is not None))

    def _tell(self, event: str, record: dict[str, Any]) -> None:
        for listener, events in tuple(self._listeners):
            if events is not None and event not in events:
                continue
            try:
                listener(record)
            except Exception as exc:
                self.unsubscribe(listener)
                self.listener_errors.append(f"{type(exc).__name__}: {exc}")

    def _write_lines(self) -> None:
        """Hand the held lines to the OS. What it does not take (a full disk) stays held, from the first byte it
        refused (the part of a line taken before it is taken back: `_take_back_part_of_a_line`), and the error,
        named after the file, goes up: an order whose event is not on disk is not sent.
        Counting the bytes taken is what keeps a retry from writing a line twice or leaving half of one: a
        buffered file may pass part of a batch on before it fails, and would then have the whole batch again."""
        if self._lines:
            self._unwritten += ("\n".join(self._lines) + "\n").encode("utf-8")
            self._lines.clear()
        if self._fd is None:
            raise self._unopened or JournalError(self.path, OSError(9, "the log is closed"))
        self._follow_path()
        failpoints.reach_midway("log_mid_line", self._write_part)  # the kill mid-write: the last line cut in half
        view = memoryview(self._unwritten)
        taken = 0
        end = -1  # where our last write ended in a regular file (-1: nothing taken yet, or not a regular file)
        try:
            while taken < len(view):
                taken += os.write(self._fd, view[taken:])
                if self._opened[2]:
                    end = os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError as exc:
            taken = self._take_back_part_of_a_line(view, taken, end)
            raise JournalError(self.path, exc) from None
        finally:
            view.release()
            del self._unwritten[:taken]

    def _write_part(self) -> None:
        """The held bytes but the second half of the last line, as a kill (or a power cut) in the middle of a write
        leaves the file: for the crash tests' `log_mid_line` only."""
        assert self._fd is not None
        data = bytes(self._unwritten)
        last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last line starts
        os.write(self._fd, data[: last + (len(data) - last) // 2])

    def _take_back_part_of_a_line(self, view: memoryview, taken: int, end: int) -> int:
        """After a write refused part way (a full disk takes what fits, then refuses the rest): the file cut back
        to the end of its last whole line, and how many bytes of `view` it then holds. Left as it was, the file
        ended in half a line that no reader can parse, and the line was written whole again after it once there
        was room. Only when our write is still the file's end (no other process, `halt`, appended since); else,
        or when the cut fails, the part stays and the retry goes on from the first byte refused."""
        kept = view[:taken].tobytes().rfind(b"\n") + 1
        if self._fd is None or end < 0 or kept == taken:
            return taken
        try:
            if os.fstat(self._fd).st_size != end:
                return taken
            os.ftruncate(self._fd, end - (taken - kept))
        except OSError:
            return taken
        return kept

    def flush(self) -> None:
        """Hand the held lines to the OS. The newline that ends a line found cut short goes only with a line of
        ours: a command that logged nothing (a resume refused on a locked state file) appended it alone, and so
        changed the log it was refused on; the next writer finds the line cut short and ends it then."""
        if self._lines or (self._unwritten and self._unwritten != b"\n"):
            self._write_lines()

    def discard(self) -> None:
        """Forget the events not yet handed to the OS: those of a decision undone because the log could not take
        them (the operator's resume on a full disk), which a later flush or `close` must not write as if it had
        been made. A part of a line the OS took and the file could not give back stays, and the next line starts on
        a line of its own."""
        self._lines.clear()
        self._unwritten.clear()
        if self._fd is not None and self._cut_short(self._fd):
            self._unwritten += b"\n"

    def close(self) -> None:
        """Flush, then close the file whatever the flush said (a full disk must not keep it open); the flush's
        error is raised after."""
        try:
            self.flush()
        finally:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event in a JSONL file (for `status`, tests and tools)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
