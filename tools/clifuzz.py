"""A seeded fuzzer of the command line: every command, with odd files, odd arguments and an odd environment, must
answer with its documented exit code in a line or two, never a traceback, and leave what the user had as it was.

Each case copies a prepared project (config/, machines/, rules/, a state file and a log a short simulated run
wrote, a data folder it recorded, a `.env`) into a folder of its own, picks a command (`validate`, `run`, `test`,
`status`, `why`, `report`, `table`, `diagram`, `facts`, `halt`, `resume`, `health`, `snapshot`, `serve`,
`emulator`, `data fetch`, `backtest` and its `--sweep`), and gives it one to three odd things: a path that is a
folder, a file, a FIFO, a dangling or looping link, a name that is not UTF-8 or is too long; a state file that is
empty, cut, another application's SQLite file (with a user_version of its own or none), of a newer schema, out
of WAL mode and altered by hand, a folder, locked by a running engine or by a writer; a log that is huge, torn,
binary, not UTF-8, a folder; dates and times in odd forms (2026-02-30, --from
after --to, 24:00, :60 seconds, offsets, no zone), numbers (NaN, inf, -0, 1e309, huge ints), empty and unicode
text (RTL marks, escapes, bytes the shell could not decode), a flag twice, a flag of another command, odd
environment variables (TZ, HOME unset, HYDRA_*, ALPACA_* always pointed at loopback), an odd `.env`. The command
runs in-process through `engine.cli.main`, or, for a share of the cases, as `python -m engine` with standard
input closed, standard output closed (`>&-`) or a pipe its reader closed (`| head -0`).

A failure is: a traceback (an exception out of `main`, or "Traceback" on stderr: exit 1 is documented for an
unexpected error, and that is a bug to report), an exit code outside the documented set, a non-zero exit that
says nothing, a refused command (non-zero exit) that changed, removed or added a file the user had (the state
file, the log, config, data), or any command that changed config/, machines/, rules/ or the data folder (none
writes them), or a case that takes too long. Each failure prints the seed, the case and the command to
reproduce it. The big run is by hand:

    PYTHONPATH=. .venv/bin/python tools/clifuzz.py --cases 500 --seed 1 --out /tmp/clifuzz

A failing case's folder is kept in `--out` (`case_SEED_N/`, with `failure.txt`); `--case N --seed S` replays one
case, `--keep` keeps every case's folder, `--command NAME` fuzzes only one command, `--subprocess F` is the share
of cases run as a process (default 0.1). Running as root, unreadable files cannot be made: those cases are left
out. Two refusals change files by design and are not failures: a halt the log cannot take (recorded in the state
file, said so), and, a known finding left as it is, a sweep whose runs all fail on damaged data (it runs them and
writes its table, exit 2, where a single backtest refuses the data before writing anything).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import io
import os
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("config", "machines", "rules")
# 06:40 in Los Angeles on a Monday: the shipped bots' windows are open
START = "2026-11-23T14:40:00+00:00"
DAY = "2026-11-23"
DEAD_URL = "http://127.0.0.1:9"  # loopback, nothing listens: no request ever leaves the machine
DOCUMENTED = {0, 1, 2}  # 130/143/129 only when a signal stops a command; the fuzzer sends none
KINDS = ["system", "momentum", "options", "crypto", "portfolio"]
BOTS = ["mom_AAPL", "mom_TSLA", "opt_core", "crypto_core"]
READ_ONLY = {"validate", "test", "status", "why", "report", "table", "diagram", "facts", "health", "snapshot"}

ODD_TEXT = [
    "", " ", "-", "--", "x", "é", "日本", "\u202e", "\u200f", "a\u202eb", "\u2028", "a\tb", "\x1b[31m", "\r", "a\nb",
    "a" * 5000, "'", '"', "%s", "{}", "$HOME", "~", "..", "/", "\\", "\udcff\udcfe", "x\udc80", "nan", "inf", "-0",
    "1e309", "0x10", "\ufeff", "\u0301", "NUL", "--help", "-h", "=", "@file", "mom_aapl", "MOM_AAPL", "mom_AAPL ",
]  # fmt: skip
ODD_NUMBERS = [
    "0", "-1", "1", "-0", "+1", "0.5", "1e309", "-1e309", "nan", "NaN", "inf", "-inf", "Infinity", "1e-400",
    "99999999999999999999999999999", str(2**63), str(2**64 + 1), "1_000", "0x10", "1,5", "١٢", "５", " 3 ", "",
    "3.", ".5", "1e3", "007", "2147483648", "9" * 400,
]  # fmt: skip
ODD_DATES = [
    "2026-02-30", "2026-02-29", "2024-02-29", "2026-13-01", "2026-00-10", "2026-11-23", "2026-11-22", "0001-01-01",
    "9999-12-31", "1899-12-31", "2200-01-01", "20261123", "2026/11/23", "23.11.2026", "2026-11-23T24:00:00+00:00",
    "2026-11-23T23:59:60+00:00", "2026-12-31T23:59:60Z", "2026-11-23T14:40:00", "2026-11-23T14:40:00Z",
    "2026-11-23T14:40:00+25:00", "2026-11-23T14:40:00-24:00", "2026-11-23T14:40:00+05:45", "2026-11-23 14:40",
    "2026-11-23T14:40:00.123456789+00:00", "2026-W48-1", "2026-327", "today", "now", "", " ", "2026-11-23\u200f",
    "２０２６-11-23", "2026-11-23T14:40:00+00:00[America/New_York]", "-2026-11-23", "2026-11-23T25:00:00+00:00",
    "1970-01-01T00:00:00+00:00", "2038-01-19T03:14:08+00:00", "2026-03-08T02:30:00-08:00", "2026-11-01T01:30:00-07:00",
]  # fmt: skip
ODD_URLS = ["notaurl", "http://[::1", "ftp://127.0.0.1", "http://127.0.0.1:99999", "http://127.0.0.1:9/v2/",
            "http://user:pass@127.0.0.1:9", "http://127.0.0.1:9\n"]  # fmt: skip
ODD_TZ = ["", "UTC", "Nowhere/Zone", "UTC+99", ":/etc/localtime", "../../etc/passwd", "EST5EDT", "America/New_York",
          "Pacific/Kiritimati", "\u202e", "x" * 300]  # fmt: skip


@dataclass
class Case:
    """One case: the folder, the command line, the environment, how it runs, and what was done to it."""

    root: Path
    command: str
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset
    notes: list[str] = field(default_factory=list)
    how: str = "inprocess"  # or: process, stdin-closed, stdout-closed, pipe-closed
    holders: list[Callable[[], None]] = field(default_factory=list)  # releases of locks held during the run
    endless: bool = False  # runs until stopped (serve, emulator, a run of 10**20 ticks): a process, stopped after a while

    @property
    def serves(self) -> bool:
        return self.endless or self.command in PROCESS_ONLY

    @property
    def db(self) -> Path:
        return self.root / "state" / "state.db"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "app.jsonl"


# --- the prepared project ---------------------------------------------------------------------------------------


def prepare(base: Path) -> Path:
    """A project folder with a state file, a log and a recorded data folder from a short simulated run."""
    if (base / "ready").exists():
        return base
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, base / folder)
    (base / ".env").write_text("# no keys: the simulated exchange\n", encoding="utf-8")
    files = ["--config", str(base / "config"), "--machines", str(base / "machines"), "--rules", str(base / "rules")]
    outputs = ["--state-db", str(base / "state" / "state.db"), "--log", str(base / "logs" / "app.jsonl")]
    argv = [
        "run",
        *files,
        *outputs,
        "--broker",
        "sim",
        "--ticks",
        "40",
        "--start",
        START,
        "--quiet",
        "--record",
        str(base / "data"),
    ]
    with _environment(base, {k: None for k in os.environ if k.startswith(("ALPACA_", "HYDRA_"))}):
        code, out, err, trace = call(argv)
    assert code == 0 and trace is None, (code, out, err, trace)
    (base / "out").mkdir()
    (base / "sweep.yaml").write_text("momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.5, 1.0]\n", encoding="utf-8")
    (base / "ready").write_text("")
    return base


def copy_case(base: Path, root: Path) -> None:
    if root.exists():
        _rmtree(root)
    shutil.copytree(base, root, symlinks=True)
    (root / "ready").unlink()
    for lock in root.rglob("*.lock"):
        lock.unlink()


def _rmtree(path: Path) -> None:
    def unblock(func: Callable[..., object], name: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o755)
            os.chmod(name, 0o755)
        with contextlib.suppress(OSError):
            func(name)

    shutil.rmtree(path, onerror=unblock)


# --- the baseline command lines ---------------------------------------------------------------------------------


def files_args(case: Case) -> list[str]:
    r = case.root
    return ["--config", str(r / "config"), "--machines", str(r / "machines"), "--rules", str(r / "rules")]


def state_args(case: Case) -> list[str]:
    return ["--state-db", str(case.db), "--log", str(case.log)]


def baseline(rng: random.Random, case: Case) -> list[str]:
    """The command's line as it works, before anything odd is done to it."""
    f, s, c = files_args(case), state_args(case), case.command
    kind, bot = rng.choice(KINDS), rng.choice(BOTS)
    if c == "validate":
        return rng.choice([["validate", *f, *s], ["--validate", *f], [*f, "--validate"]])
    if c == "run":
        if rng.random() < 0.2:  # a first run, on a state file of its own: today's open (TZ, the calendar)
            s = ["--state-db", str(case.root / "state" / "new.db"), "--log", str(case.root / "logs" / "new.jsonl")]
            return ["run", *f, *s, "--broker", "sim", "--ticks", "2", "--quiet"]
        return ["run", *f, *s, "--broker", "sim", "--ticks", str(rng.choice([1, 3, 10])), "--start", START, "--quiet"]
    if c == "test":
        return ["test", *f]
    if c in ("status", "resume", "health"):
        return [c, *f, *s]
    if c == "why":
        return ["why", bot, *f, *s, *rng.choice([[], ["--json"]])]
    if c == "report":
        extra = rng.choice([[], ["--date", DAY], ["--from", DAY, "--to", DAY], ["--prompt"]])
        return ["report", *f, *s, *extra, *rng.choice([[], ["--out", str(case.root / "out" / "report.html")]])]
    if c == "table":
        return ["table", kind, *f, *rng.choice([[], ["-o", str(case.root / "out" / "t.md")]])]
    if c == "diagram":
        return [
            "diagram",
            kind,
            *f,
            *s,
            *rng.choice([[], ["--bot", bot], ["--format", "mermaid", "-o", str(case.root / "out" / "d.mmd")]]),
        ]
    if c == "facts":
        return ["facts", *rng.choice([[], [kind]])]  # it reads no file: it takes no --config
    if c == "halt":
        return ["halt", "--reason", "fuzz", *f, *s]
    if c == "snapshot":
        return ["snapshot", "--broker", "sim", "--start", START, *f]
    if c == "serve":
        return ["serve", "--port", "0", *f, *s]
    if c == "emulator":
        return ["emulator", "--port", "0", "--start", START, *f]
    if c == "data":
        return ["data", "fetch", "--symbols", rng.choice(["AAPL", "BTC/USD", "AAPL,BTC/USD"]), "--from", DAY, "--to", DAY,
                "--out", str(case.root / "fetched"), *f]  # fmt: skip
    if c == "backtest":
        out = ["--out", str(case.root / "bt")]
        if rng.random() < 0.25:
            return [
                "backtest",
                "--data",
                str(case.root / "data"),
                "--sweep",
                str(case.root / "sweep.yaml"),
                "--jobs",
                "1",
                *out,
                *f,
            ]
        return ["backtest", "--data", str(case.root / "data"), *out, *f]
    raise AssertionError(c)


COMMANDS = {
    "validate": 3, "run": 4, "test": 1, "status": 4, "why": 3, "report": 4, "table": 1, "diagram": 2, "facts": 1,
    "halt": 3, "resume": 3, "health": 3, "snapshot": 2, "serve": 1, "emulator": 1, "data": 2, "backtest": 3,
}  # fmt: skip
PROCESS_ONLY = {"serve", "emulator"}  # they serve until stopped: run as a process, stopped after a while


# --- what can be made of a path ---------------------------------------------------------------------------------


def odd_path(rng: random.Random, case: Case, wants_folder: bool) -> tuple[str, str]:
    """(a path, what it is): something at a fresh name in the case's folder that is not what the flag wants."""
    odd = case.root / "odd"
    odd.mkdir(exist_ok=True)
    name = odd / f"p{rng.randrange(10**6)}"
    form = rng.randrange(12)
    if form == 0:
        name.mkdir()
        return str(name), "a folder" if not wants_folder else "an empty folder"
    if form == 1:
        name.write_text("not what you want\n")
        return str(name), "a file"
    if form == 2:
        os.mkfifo(name)
        return str(name), "a FIFO"
    if form == 3:
        name.symlink_to(odd / "nowhere")
        return str(name), "a dangling link"
    if form == 4:
        name.symlink_to(name)
        return str(name), "a link to itself"
    if form == 5:
        raw = os.fsencode(str(odd)) + b"/\xff\xfe" + str(rng.randrange(100)).encode()
        return os.fsdecode(raw), "a name that is not UTF-8 (missing)"
    if form == 6:
        return str(odd / ("n" * 300)), "a 300-character name"
    if form == 7:
        return str(odd / "/".join(["d" * 200] * 25)), "a 5000-character path"
    if form == 8:
        (odd / "file").write_text("x")
        return str(odd / "file" / "below"), "a path below a file"
    if form == 9:
        return str(odd / "missing" / "deep" / "x"), "a missing folder on the way"
    if form == 10:
        return rng.choice(["/dev/null", "/dev/zero", "/dev/full", "/proc/self/status", "/", "-"]), "a device or special"
    real = case.root / rng.choice(["config/bots.yaml", "config/settings.yaml", "machines/momentum.yaml", "state/state.db",
                                   "logs/app.jsonl", "config", ".env"])  # fmt: skip
    return str(real), f"another input ({real.relative_to(case.root)})"


PATH_FLAGS = {
    "--config": True, "--machines": True, "--rules": True, "--state-db": False, "--log": False, "--out": None,
    "-o": False, "--data": True, "--sweep": False, "--prompt-file": False, "--record": True,
}  # fmt: skip


def set_flag(argv: list[str], flag: str, value: str, *, add: bool = True) -> None:
    """`flag value` in argv: the existing one replaced, or added at the end."""
    if flag in argv:
        i = argv.index(flag)
        if i + 1 < len(argv):
            argv[i + 1] = value
            return
    if add:
        argv += [flag, value]


# --- mutations: each changes the case and returns a note, or None when it does not apply -------------------------


def m_path(rng: random.Random, case: Case) -> str | None:
    flags = [a for a in case.argv if a in PATH_FLAGS]
    if case.command == "run" and rng.random() < 0.3:
        flags.append("--record")
    if case.command == "report" and "--prompt" in case.argv:
        flags.append("--prompt-file")
    if not flags:
        return None
    flag = rng.choice(flags)
    wants = PATH_FLAGS[flag]
    at = case.argv.index(flag) + 1 if flag in case.argv else -1
    if 0 < at < len(case.argv) and rng.random() < 0.25 and os.path.lexists(case.argv[at]):
        # the very thing, at a name the shell could not decode (and that a terminal's locale may not show)
        odd = case.root / "odd"
        odd.mkdir(exist_ok=True)
        given = Path(case.argv[at])
        name = odd / os.fsdecode(b"\xff\xfe caf\xc3\xa9 \xe6\x97\xa5 " + os.fsencode(given.name))
        if given.is_dir():
            shutil.copytree(given, name, symlinks=True)
        else:
            shutil.copy2(given, name)
        case.argv[at] = str(name)
        return f"{flag} a copy at a name that is not UTF-8"
    value, what = odd_path(rng, case, bool(wants) if wants is not None else case.command in ("backtest", "data"))
    set_flag(case.argv, flag, value)
    return f"{flag} {what}"


def _good_db_bytes(case: Case) -> bytes:
    return case.db.read_bytes()


def m_state(rng: random.Random, case: Case) -> str | None:
    if "--state-db" not in case.argv and case.command not in ("run", "status", "halt", "resume"):
        return None
    db = case.db
    form = rng.randrange(13)
    if form == 0:
        db.write_bytes(b"")
        return "state file empty"
    if form == 11:  # many applications keep a schema number of their own: it must not pass for one of ours
        db.unlink()
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("create table notes (id integer primary key, body text)")
            version = rng.randint(1, 6)
            conn.execute(f"PRAGMA user_version={version}")
            conn.commit()
        return f"state file another application's SQLite, its user_version {version}"
    if form == 12:  # a copy out of WAL mode (a backup, a database browser's save), then altered by hand
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("CREATE TRIGGER mine AFTER INSERT ON halts BEGIN SELECT 1; END")
            conn.commit()
        return "state file in rollback mode with a trigger added"
    if form == 1:
        data = _good_db_bytes(case)
        db.write_bytes(data[: rng.randrange(1, len(data))])
        return "state file cut"
    if form == 2:
        db.unlink()
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("create table notes (id integer primary key, body text)")
            conn.execute("insert into notes (body) values ('mine')")
            conn.commit()
        return "state file another application's SQLite"
    if form == 3:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA user_version=999")
            conn.commit()
        return "state file of a newer schema"
    if form == 4:
        db.unlink()
        db.mkdir()
        return "state file a folder"
    if form == 5:
        changed = bytearray(_good_db_bytes(case))
        for _ in range(rng.randrange(1, 20)):
            changed[rng.randrange(len(changed))] = rng.randrange(256)
        db.write_bytes(bytes(changed))
        return "state file with bytes changed"
    if form == 6:
        db.write_bytes(os.urandom(rng.choice([10, 100, 4096, 100000])))
        return "state file random bytes"
    if form == 7:  # a running engine holds it
        import fcntl

        fd = os.open(str(db) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        case.holders.append(lambda: os.close(fd))
        return "state file's engine lock held"
    if form == 8:  # a writer in the middle of a transaction (a reader holds it too long)
        conn = sqlite3.connect(db, timeout=0.1, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        case.holders.append(conn.close)
        return "state file locked by an open write transaction"
    if form == 9:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            tables = [
                r[0] for r in conn.execute("select name from sqlite_master where type='table' and name not like 'sqlite_%'")
            ]
            if not tables:  # emptied by an earlier mutation
                return None
            table = rng.choice(tables)
            conn.execute(f'drop table "{table}"')
            conn.commit()
        return f"state file without table {table}"
    link = db.with_name("elsewhere.db")
    db.rename(link)
    db.symlink_to(link.name) if rng.random() < 0.5 else os.link(link, db)
    return "state file a link or a second name"


def m_log(rng: random.Random, case: Case) -> str | None:
    if "--log" not in case.argv and case.command not in ("run", "status", "report", "why"):
        return None
    log = case.log
    good = log.read_bytes()
    form = rng.randrange(10)
    if form == 0:
        with log.open("ab") as out:
            line = good.splitlines(keepends=True)[-1]
            out.write(line * (2_000_000 // len(line)))
        return "log huge (2 MB more of its last line)"
    if form == 1:
        log.write_bytes(good[: rng.randrange(1, len(good))])
        return "log torn"
    if form == 2:
        log.write_bytes(good + os.urandom(rng.choice([1, 100, 5000])))
        return "log ending in binary"
    if form == 3:
        log.write_bytes(os.urandom(4096))
        return "log all binary"
    if form == 4:
        log.unlink()
        log.mkdir()
        return "log a folder"
    if form == 5:
        log.write_bytes(good + b'{"ts": "\xff\xfe", "event": "tick"}\n')
        return "log with a line that is not UTF-8"
    if form == 6:
        odd = rng.choice([b"[]\n", b"1\n", b"null\n", b'{"ts": NaN}\n', b'{"ts": 1e999, "event": "tick"}\n',
                          b'{"event": "tick"}\n', b'{"ts": "2026-02-30T00:00:00+00:00", "event": "trade"}\n',
                          b'{"ts": "2026-11-23T14:40:00", "event": "halt"}\n', b"\x00" * 100 + b"\n",
                          b'{"ts": "2026-11-23T14:40:00+00:00", "event": "trade", "pnl": "x", "bot": 5}\n',
                          b'{"ts": "2026-11-23T14:40:00+00:00", "event": "fill", "qty": 1e400, "price": -0.0}\n',
                          b'{"a": ' * 5000 + b"\n", b"x" * 3_000_000 + b"\n"])  # fmt: skip
        log.write_bytes(good + odd)
        return f"log with an odd line {odd[:40]!r}"
    if form == 7:
        if rng.random() < 0.3:
            log.write_bytes(b"")
            return "log empty"
        return log_field(rng, log, good)
    if form == 8:
        log.unlink()
        return "log missing"
    log.write_bytes(good.replace(b"\n", b"\r\n"))
    return "log with CRLF"


ODD_JSON: list[object] = [None, "", "x", -1, 0, 1e308, -1e308, 2**70, [], {}, True, "2026-02-30T00:00:00+00:00",
                          "2026-11-23T14:40:00", "9999-12-31T23:59:59+00:00", "\u202e", "nan", {"a": [1]}, 0.1]  # fmt: skip


def log_field(rng: random.Random, log: Path, good: bytes) -> str:
    """Lines of the log with one field each given a value of another type or range, as a hand edit or another
    program's writer may leave them: every reader must take the line or leave it out, never fail on it."""
    import json

    lines = good.splitlines()
    notes = []
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(lines))
        event = json.loads(lines[i])
        key = rng.choice(list(event))
        value = rng.choice(ODD_JSON)
        event[key] = value
        lines[i] = json.dumps(event).encode()
        notes.append(f"{event.get('event')}.{key}={value!r:.30}")
    log.write_bytes(b"\n".join(lines) + b"\n")
    return "log fields: " + ", ".join(notes)


def m_date(rng: random.Random, case: Case) -> str | None:
    flags = {"run": ["--start"], "snapshot": ["--start"], "emulator": ["--start"], "report": ["--date", "--from", "--to"],
             "backtest": ["--from", "--to"], "data": ["--from", "--to"]}.get(case.command)  # fmt: skip
    if not flags:
        return None
    flag = rng.choice(flags)
    value = rng.choice(ODD_DATES)
    if rng.random() < 0.2 and case.command in ("report", "backtest", "data"):
        set_flag(case.argv, "--from", "2026-11-24")
        set_flag(case.argv, "--to", "2026-11-23")
        return "--from after --to"
    set_flag(case.argv, flag, value)
    return f"{flag} {value!r}"


def m_number(rng: random.Random, case: Case) -> str | None:
    flags = {"run": ["--ticks"], "health": ["--max-age"], "backtest": ["--cash", "--slippage-bps", "--jobs"],
             "serve": ["--port"], "emulator": ["--port"]}.get(case.command)  # fmt: skip
    if not flags:
        return None
    flag = rng.choice(flags)
    value = rng.choice(ODD_NUMBERS)
    if flag == "--jobs" and "--sweep" not in case.argv:
        case.argv += ["--sweep", str(case.root / "sweep.yaml")]
    set_flag(case.argv, flag, value)
    if flag == "--ticks" and value.strip().isdecimal() and int(value) > 10_000:
        case.endless = True  # as asked: the simulation goes on until stopped
    return f"{flag} {value!r}"


def m_text(rng: random.Random, case: Case) -> str | None:
    value = rng.choice(ODD_TEXT)
    c = case.command
    if c == "why":
        case.argv[1] = value
        return f"bot {value!r:.60}"
    if c in ("table", "diagram") or (c == "facts" and len(case.argv) > 1 and not case.argv[1].startswith("-")):
        case.argv[1] = value
        return f"kind {value!r:.60}"
    if c == "diagram" and rng.random() < 0.5:
        set_flag(case.argv, "--bot", value)
        return f"--bot {value!r:.60}"
    if c == "halt":
        set_flag(case.argv, "--reason", value)
        return f"--reason {value!r:.60}"
    if c == "data":
        flag = rng.choice(["--symbols", "--timeframe", "--feed", "--format"])
        value = rng.choice([value, "AAPL,,", ",", "BTC/USD/ETH", "btc/usd", "AAPL240119C00150000", "0Min", "60Min",
                            "24Hour", "1Week", "1day", "-1Min", "1Min " * 2])  # fmt: skip
        set_flag(case.argv, flag, value)
        return f"{flag} {value!r:.60}"
    if c == "serve":
        set_flag(case.argv, "--host", rng.choice([value, "0.0.0.0", "::", "localhost", "256.1.1.1", "example.invalid"]))
        return f"--host {case.argv[-1]!r:.60}"
    if c == "backtest":
        flag = rng.choice(["--metric", "--fill-timing", "--ray"])
        set_flag(case.argv, flag, value)
        return f"{flag} {value!r:.60}"
    if c == "run":
        set_flag(case.argv, "--broker", value)
        return f"--broker {value!r:.60}"
    return None


OTHER_FLAGS = [["--json"], ["--once"], ["--live"], ["--until-close"], ["--quiet"], ["--prompt"], ["--validate"],
               ["--broker", "alpaca"], ["--bot", "mom_AAPL"], ["--date", DAY], ["--reason", "x"], ["--format", "png"],
               ["--format", "svg"], ["--ticks", "2"], ["--once", "--ticks", "2"], ["--sweep"], ["--symbols", "AAPL"],
               ["--port", "1"], ["--help"], ["-h"], ["--"], ["--no-such-flag"], ["extra"], ["--state-db="], ["--log="],
]  # fmt: skip


def m_flags(rng: random.Random, case: Case) -> str | None:
    form = rng.randrange(3)
    if form == 0:  # a flag given twice, the second value odd
        flags = [
            i
            for i, a in enumerate(case.argv)
            if a.startswith("--") and i + 1 < len(case.argv) and not case.argv[i + 1].startswith("--")
        ]
        if not flags:
            return None
        i = rng.choice(flags)
        value = rng.choice([case.argv[i + 1], rng.choice(ODD_TEXT), rng.choice(ODD_DATES)])
        case.argv += [case.argv[i], value]
        return f"{case.argv[i]} twice, then {value!r:.60}"
    if form == 1:
        extra = rng.choice(OTHER_FLAGS)
        at = rng.randrange(1, len(case.argv) + 1)
        case.argv[at:at] = extra
        return f"{' '.join(extra)} at {at}"
    if case.command in ("validate",):
        return None
    at = rng.randrange(0, len(case.argv))  # a global flag (or a command) in another place
    item = rng.choice([["--validate"], ["--config", str(case.root / "config")], ["status"], ["run"]])
    case.argv[at:at] = item
    return f"{' '.join(item)} inserted at {at}"


def m_env(rng: random.Random, case: Case) -> str | None:
    form = rng.randrange(8)
    if form == 0:
        case.env["TZ"] = rng.choice(ODD_TZ)
        return f"TZ={case.env['TZ']!r:.40}"
    if form == 1:
        case.env["HOME"] = None
        return "HOME unset"
    if form == 2:
        case.env["HYDRA_SERVE_TOKEN"] = rng.choice(["", "short", "x" * 16, "é" * 16, "a b" * 8, "\x1b" * 20, "\udcff" * 16])
        return f"HYDRA_SERVE_TOKEN={case.env['HYDRA_SERVE_TOKEN']!r:.40}"
    if form == 3:  # keys: always with the hosts on loopback, where nothing listens
        key = rng.choice(["PKTESTKEY0000000000000000", "AKLIVE00000000000000", "", " ", "x", "é" * 20, "your_key_here"])
        secret = rng.choice(["s" * 40, "", "é" * 40, "your_secret_here"])
        case.env.update(ALPACA_KEY=key, ALPACA_SECRET=secret, ALPACA_API_BASE_URL=DEAD_URL, ALPACA_DATA_BASE_URL=DEAD_URL)
        if rng.random() < 0.5:
            case.env["ALPACA_SECRET"] = None
        return f"ALPACA_KEY={key!r:.30}, ALPACA_SECRET {'unset' if case.env['ALPACA_SECRET'] is None else repr(secret)[:30]}"
    if form == 4:
        case.env["ALPACA_PAPER"] = rng.choice(["", "false", "False", "0", "no", "maybe", "true ", "TRUE", "\u202e"])
        return f"ALPACA_PAPER={case.env['ALPACA_PAPER']!r}"
    if form == 5:
        name = rng.choice(["ALPACA_API_BASE_URL", "ALPACA_DATA_BASE_URL"])
        case.env[name] = rng.choice(ODD_URLS)
        return f"{name}={case.env[name]!r}"
    if form == 6:
        case.env[rng.choice(["LANG", "LC_ALL"])] = rng.choice(["C", "POSIX", "de_DE.ISO-8859-1", "xx_XX.nope", ""])
        return "odd locale"
    case.env[rng.choice(["HYDRA_ALERT_URL", "HYDRA_CONFIG", "PYTHONIOENCODING"])] = rng.choice(
        ["", "ascii", "latin-1", "tgram://x/y"]
    )
    return "odd HYDRA_/Python variable"


def m_dotenv(rng: random.Random, case: Case) -> str | None:
    env = case.root / ".env"
    form = rng.randrange(6)
    env.unlink()
    if form == 0:
        env.mkdir()
        return ".env a folder"
    if form == 1:
        os.mkfifo(env)
        return ".env a FIFO"
    if form == 2:
        env.write_bytes(b"ALPACA_KEY=\xff\xfe\n")
        return ".env not UTF-8"
    if form == 3:
        env.write_bytes(b"ALPACA_KEY=PK\x00X\nALPACA_SECRET=s\n")
        return ".env with a NUL"
    if form == 4:
        env.write_text("ALPACA_KEY=a\nALPACA_KEY=b\n")
        return ".env with a key twice"
    if rng.random() < 0.5:
        env.symlink_to(".env")
        return ".env a link to itself"
    env.symlink_to("nowhere")
    return ".env a dangling link"


def m_config_file(rng: random.Random, case: Case) -> str | None:
    if case.command in ("emulator",):
        return None
    target = case.root / rng.choice(["config/bots.yaml", "config/settings.yaml", "machines/momentum.yaml", "rules/guards.yaml"])
    if not target.exists():
        return None
    form = rng.randrange(5)
    target.unlink()
    if form == 0:
        target.mkdir()
        return f"{target.relative_to(case.root)} a folder"
    if form == 1:
        os.mkfifo(target)
        return f"{target.relative_to(case.root)} a FIFO"
    if form == 2:
        target.symlink_to("nowhere")
        return f"{target.relative_to(case.root)} a dangling link"
    if form == 3:
        target.write_bytes(b"")
        return f"{target.relative_to(case.root)} empty"
    if rng.random() < 0.5:
        target.symlink_to(target.name)
        return f"{target.relative_to(case.root)} a link to itself"
    return f"{target.relative_to(case.root)} missing"


def m_data(rng: random.Random, case: Case) -> str | None:
    """The recorded data folder a backtest reads: a part cut or garbled, notes odd, a folder where a file goes."""
    if case.command != "backtest":
        return None
    data = case.root / "data"
    parts = sorted(data.rglob("*.parquet"))
    form = rng.randrange(8)
    if form == 0:
        part = rng.choice(parts)
        raw = part.read_bytes()
        part.write_bytes(raw[: rng.randrange(len(raw))])
        return f"data: {part.relative_to(data)} cut"
    if form == 1:
        part = rng.choice(parts)
        part.write_bytes(os.urandom(rng.choice([0, 8, 1000])))
        return f"data: {part.relative_to(data)} random bytes"
    if form == 2:
        odd = rng.choice([b"", b"\xff\xfe\n", b"[]\n", b"{}\n", b'{"event": "x"}\n', b"{" * 3000 + b"\n", b'{"at": NaN}\n'])
        (data / "recording.jsonl").write_bytes((data / "recording.jsonl").read_bytes() + odd)
        return f"data: recording.jsonl + {odd[:30]!r}"
    if form == 3:
        shutil.rmtree(data / "ticks")
        return "data: no ticks/"
    if form == 4:
        (data / "quotes" / "AAPL" / "part-000002.parquet").mkdir()
        return "data: a folder named as a part"
    if form == 5:
        (data / "quotes" / "AAPL" / "part-000002.parquet").symlink_to("nowhere")
        return "data: a dangling link as a part"
    if form == 6:
        (data / "quotes" / "NOT A SYMBOL").mkdir()
        (data / "quotes" / "NOT A SYMBOL" / "part-000001.parquet").write_bytes(b"PAR1")
        return "data: an odd symbol's folder"
    os.mkfifo(data / "quotes" / "SPY" / "part-000002.parquet")
    return "data: a FIFO as a part"


PROMPTS = [b"{", b"}", b"{}", b"{0}", b"{unknown}", b"{{x}}", b"%s %(x)s", b"\xff\xfe", b"\x00" * 10, b"",
           b"{" + b"a" * 10000 + b"}", "\u202e{period}".encode(), b"x" * 3_000_000]  # fmt: skip


def m_prompt(rng: random.Random, case: Case) -> str | None:
    """report --prompt with a template of its own: braces, bytes that are not UTF-8, a huge one."""
    if case.command != "report":
        return None
    template = case.root / "odd_prompt.txt"
    text = rng.choice(PROMPTS)
    template.write_bytes(text)
    if "--prompt" not in case.argv:
        case.argv.append("--prompt")
    set_flag(case.argv, "--prompt-file", str(template))
    return f"--prompt-file {text[:30]!r}"


MUTATIONS: list[tuple[Callable[[random.Random, Case], str | None], int]] = [
    (m_path, 4), (m_state, 5), (m_log, 4), (m_date, 4), (m_number, 3), (m_text, 4), (m_flags, 3), (m_env, 3),
    (m_dotenv, 1), (m_config_file, 1), (m_data, 2), (m_prompt, 1),
]  # fmt: skip


# --- running ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(cwd: Path, env: dict[str, str | None]) -> Iterator[None]:
    saved = dict(os.environ)
    here = os.getcwd()
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "TZ" in env:
            time.tzset()
        os.chdir(cwd)
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
        time.tzset()


class _KeptBytes(io.BytesIO):
    """A byte buffer whose value outlives a close: the text layer over it closes it when the command closes its
    output, or when the layer is collected."""

    def close(self) -> None:
        pass


def call(argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """The command's exit code, stdout, stderr, and the traceback when it raised."""
    from engine import cli

    # Standard output as a process has it: text over a byte layer (`sys.stdout.buffer`), which `-o -` writes a
    # drawing through (a PNG is bytes). A StringIO has none: `diagram -o -` in-process raised AttributeError on
    # it (seed 64, case 581), the fuzzer's own false alarm; as a process the command writes its drawing. Characters
    # the encoding cannot take are escaped, not raised: how a process's output encodes them is the subprocess
    # cases' to judge.
    raw = _KeptBytes()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True)
    err = io.StringIO()
    code: int | None = None
    trace = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:
            trace = traceback.format_exc()
    with contextlib.suppress(ValueError):  # closed by the command: what it wrote before is in `raw` all the same
        out.flush()
    return code, raw.getvalue().decode("utf-8", errors="replace"), err.getvalue(), trace


def process_env(case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "HYDRA_"))}
    env["PYTHONPATH"] = str(ROOT)
    for k, v in case.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_process(case: Case, timeout: float) -> tuple[int | None, str, str, str | None]:
    """As a process: standard input closed, standard output closed, or a pipe whose reader left."""
    cmd = [sys.executable, "-m", "engine", *case.argv]
    redirect = {"stdin-closed": " <&-", "stdout-closed": " >&-"}.get(case.how, "")
    shell = ["sh", "-c", f'exec "$@"{redirect}', "sh", *cmd]
    proc = subprocess.Popen(shell, cwd=case.root, env=process_env(case), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    if case.how == "pipe-closed":
        assert proc.stdout is not None
        proc.stdout.close()
        proc.stdout = None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if case.serves:  # it served: stopped as a service is
            return (0 if proc.returncode in (0, 143, -15) else proc.returncode), _text(out), _text(err), None
        return None, _text(out), _text(err) + f"\n(timed out after {timeout} s)", None
    return proc.returncode, _text(out), _text(err), None


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def fingerprint(root: Path) -> dict[str, str]:
    """Every entry under root (links not followed, FIFOs not opened): its kind and, for a file, its bytes' hash."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            import stat

            if stat.S_ISLNK(st.st_mode):
                seen[rel] = "link:" + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                seen[rel] = "file:" + hashlib.sha1(Path(path).read_bytes()).hexdigest()
            else:
                seen[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return seen


NEVER_WRITTEN = ("config", "machines", "rules", "data", "sweep.yaml", ".env", "odd_prompt.txt")
# made by design even by a refused command: SQLite's companions of a file it opened, the engine's lock files
COMPANIONS = (".lock", "-wal", "-shm", "-journal")


def compare(before: dict[str, str], after: dict[str, str], code: int | None, command: str) -> list[str]:
    wrong = []
    for rel, was in before.items():
        now = after.get(rel)
        protected = rel.split(os.sep)[0] in NEVER_WRITTEN and not rel.endswith(COMPANIONS)
        refused = code not in (0, None) or command in READ_ONLY
        if now == was:
            continue
        if rel.endswith(COMPANIONS) or rel.startswith("odd" + os.sep):
            continue
        if protected or refused:
            if rel.split(os.sep)[0] == "state" and command in READ_ONLY and code == 0:
                continue  # a reader of SQLite may checkpoint its WAL into the file: the same content
            wrong.append(f"{rel}: {'removed' if now is None else 'changed'} by {command} (exit {code})")
    if code == 2:  # refused input makes nothing; a failure of the moment (1) may leave what a resume continues
        for rel in sorted(set(after) - set(before)):
            if rel.endswith(COMPANIONS) or rel.split(os.sep)[0] in ("out",):
                continue
            wrong.append(f"{rel}: made by {command}, which exited {code}")
    return wrong


def check(case: Case, code: int | None, out: str, err: str, trace: str | None) -> list[str]:
    wrong = []
    if trace is not None:
        wrong.append(f"raised:\n{trace}")
    if "Traceback" in err:
        wrong.append(f"a traceback on stderr (exit {code}):\n{err[-3000:]}")
    if code is None and trace is None:
        wrong.append(f"did not end: {err[-500:]!r}")
    elif code is not None and code not in DOCUMENTED and not (code in (0, 1) and case.serves):
        wrong.append(f"exit {code}, not a documented code: {err[-500:]!r}")
    if code not in (0, None) and not (out + err).strip() and case.how not in ("stdout-closed", "pipe-closed"):
        wrong.append(f"exit {code} and nothing said")
    return wrong


def shell_word(text: str) -> str:
    raw = os.fsencode(text)
    try:
        return shlex.quote(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "$'" + "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else f"\\x{b:02x}" for b in raw) + "'"


def repro(case: Case, seed: int, index: int) -> str:
    env = " ".join(f"{k}={shell_word(v)}" if v is not None else f"-u {k}" for k, v in case.env.items())
    redirect = {"stdin-closed": " <&-", "stdout-closed": " >&-", "pipe-closed": " | head -0"}.get(case.how, "")
    line = " ".join(shell_word(a) for a in case.argv)
    return (f"replay: PYTHONPATH=. python tools/clifuzz.py --seed {seed} --case {index}\n"
            f"  or, in {case.root}: env {env} PYTHONPATH={ROOT} python -m engine {line}{redirect}")  # fmt: skip


def build_case(seed: int, index: int, base: Path, work: Path, *, command: str | None, share: float) -> Case:
    rng = random.Random(f"{seed}:{index}")
    names, weights = zip(*COMMANDS.items(), strict=True)
    chosen = command or rng.choices(names, weights)[0]
    root = work / f"case_{seed}_{index}"
    copy_case(base, root)
    case = Case(root=root, command=chosen, argv=[])
    case.argv = baseline(rng, case)
    funcs, fweights = zip(*MUTATIONS, strict=True)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        for _attempt in range(5):
            try:
                note = rng.choices(funcs, fweights)[0](rng, case)
            except (OSError, sqlite3.Error, ValueError, IndexError) as exc:  # a file an earlier mutation made odd
                note = f"(mutation failed: {exc})"
            if note is not None:
                case.notes.append(note)
                break
    if case.serves or rng.random() < share:
        case.how = rng.choice(["process", "stdin-closed", "stdout-closed", "pipe-closed"])
    # never the network: whatever the case set, any Alpaca host is loopback where nothing listens
    for name in ("ALPACA_API_BASE_URL", "ALPACA_DATA_BASE_URL"):
        if "127.0.0.1" not in str(case.env.get(name)) and case.env.get(name) not in ("notaurl", "http://[::1"):
            case.env[name] = DEAD_URL
    return case


def run_case(seed: int, index: int, base: Path, work: Path, *, command: str | None = None, share: float = 0.1,
             timeout: float = 60) -> tuple[Case, list[str]]:  # fmt: skip
    """(the case, its failures)."""
    case = build_case(seed, index, base, work, command=command, share=share)
    clean = {k: None for k in os.environ if k.startswith(("ALPACA_", "HYDRA_"))}
    before = fingerprint(case.root)
    try:
        if case.how == "inprocess":
            with _environment(case.root, {**clean, **case.env}):
                code, out, err, trace = call(case.argv)
        else:
            code, out, err, trace = run_process(case, timeout=8 if case.serves else timeout)
    finally:
        for release in case.holders:
            with contextlib.suppress(Exception):
                release()
    failures = check(case, code, out, err, trace)
    # documented: a halt the log cannot take is still recorded in the state file and in force, and says so
    recorded = case.command == "halt" and "the halt IS recorded" in err
    # known, left alone: a sweep whose runs all fail on the data (a part cut short) has run them and written its
    # table (exit 2, one error per run), where a single backtest refuses the data before writing anything
    swept = case.command == "backtest" and "--sweep" in case.argv and re.search(r" in \d+ process(es)?, in ", out) is not None
    failures += compare(before, fingerprint(case.root), 0 if recorded or swept else code, case.command)
    case.notes.append(f"{case.how}, exit {code}: {(err.strip().splitlines() or [''])[-1][:200]}")
    return case, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--case", type=int, default=None, help="run only this case")
    parser.add_argument("--command", choices=sorted(COMMANDS), default=None, help="fuzz only this command")
    parser.add_argument("--subprocess", type=float, default=0.1, help="share of cases run as a process")
    parser.add_argument("--out", type=Path, default=None, help="keep failing cases here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep every case's folder")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a case may take before the fuzzer dies")
    parser.add_argument("--verbose", action="store_true", help="a line for every case")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="clifuzz_"))
    out.mkdir(parents=True, exist_ok=True)
    base = prepare(out / "base")
    indexes = [args.case] if args.case is not None else range(args.first, args.first + args.cases)
    failed = passed = 0
    for index in indexes:
        # what a case that hangs past --timeout was (faulthandler then ends the fuzzer with the stacks)
        (out / "current").write_text(f"seed {args.seed} case {index}: replay with --seed {args.seed} --case {index}\n")
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        case, failures = run_case(
            args.seed, index, base, out, command=args.command, share=args.subprocess, timeout=args.timeout / 2
        )
        faulthandler.cancel_dump_traceback_later()
        if args.verbose:
            print(f"case {index}: {case.command}: {'; '.join(case.notes)}", flush=True)
        if failures:
            failed += 1
            text = "\n".join(["notes:", *case.notes, repro(case, args.seed, index), "failures:", *failures])
            (case.root / "failure.txt").write_text(text, errors="backslashreplace")
            print(f"FAIL seed {args.seed} case {index}: {case.command}: {'; '.join(case.notes)}"[:600], flush=True)
            print(f"  {repro(case, args.seed, index)}"[:2000], flush=True)
            for failure in failures:
                lines = failure.strip().splitlines()
                print(f"  {lines[-1] if 'raise' in lines[0] or 'traceback' in lines[0] else lines[0]}"[:600], flush=True)
        else:
            passed += 1
            if not args.keep:
                _rmtree(case.root)
    print(f"{passed} passed, {failed} failed; kept in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
