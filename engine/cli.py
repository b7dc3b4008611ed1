"""The command line: `python -m engine COMMAND ...` (and `python -m engine --validate`).

Exit codes are a contract other tools rely on:
  0  success
  1  a runtime failure (broker unreachable at start, another engine holds the state file, standard output that
     cannot be written but for a reader that closed the pipe, an unexpected error), a failing scenario in `test`,
     or `health` finding no recent tick
  2  invalid input: a bad config, machine or rule file, or bad command-line usage

`run` exits 0 when it stops on its own or on a first SIGINT/SIGTERM/SIGHUP (after the tick in progress); one
during its start-up checks, before the state file is opened, ends it with 128 + the signal's number (130, 143,
129), nothing written; a second signal ends it at once with that code, like a kill. `backtest` and `data
fetch` stopped by one exit with 128 + its number (what they wrote stays; the same fetch resumes it).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.paths import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_MACHINES_DIR,
    DEFAULT_RULES_DIR,
    PathKind,
    escaped,
    path_kind,
    unusable_output,
)

if TYPE_CHECKING:
    from datetime import date, datetime

    from engine.config.model import BotsConfig
    from engine.core.clock import ManualClock
    from engine.core.journal import Journal
    from engine.core.store import StateStore
    from engine.data.recorder import Recorder
    from engine.machines.spec import MachineSpec
    from engine.operator.local import LocalTime
    from engine.replay.fills import FillModel
    from engine.trading.runner import RunOptions
    from engine.validate import Report

_LINE_BREAKS = "\n\t"  # what a message of several problems keeps when it is escaped (`paths.escaped`)
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended


def _path(text: str) -> Path:
    """An argparse type for a path: empty text is refused (Path("") would silently be the working folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path")
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL byte: {text!r}")
    return Path(text)


def _add_file_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """--config, --machines and --rules, before the command (`top_level`) or after it. Only the top level holds
    the defaults: a command's own default replaced a folder given before the command (argparse writes a
    subparser's defaults over what the main parser read), and `--config other run` ran on ./config."""

    def default(value: Path) -> Any:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        type=_path,
        default=default(DEFAULT_CONFIG_DIR),
        metavar="DIR",
        help="folder holding settings.yaml and bots.yaml (default: config/)",
    )
    parser.add_argument(
        "--machines",
        type=_path,
        default=default(DEFAULT_MACHINES_DIR),
        metavar="DIR",
        help="folder of machine files (default: machines/)",
    )
    parser.add_argument(
        "--rules", type=_path, default=default(DEFAULT_RULES_DIR), metavar="DIR", help="folder of rule files (default: rules/)"
    )


def _add_state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-db",
        type=_path,
        default=None,
        metavar="PATH",
        help="SQLite state file (default: system.state_db_path in settings.yaml)",
    )
    parser.add_argument(
        "--log", type=_path, default=None, metavar="PATH", help="JSONL event log (default: system.log_path in settings.yaml)"
    )


class InvalidInput(Exception):
    """Bad input the user must fix; printed without a traceback, exit code 2."""


def _given_path(flag: str, path: Path, *, folder: bool) -> None:
    """A file or folder the user named on the command line, refused plainly when it is missing, of the wrong kind
    (a FIFO would hang a reader), or cannot be looked at."""
    try:
        found = path_kind(path)
    except OSError as exc:  # a folder on the way that may not be searched, a symlink loop
        raise InvalidInput(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from None
    if found.absent:
        raise InvalidInput(f"{flag} {path}: no such {'folder' if folder else 'file'}")
    if folder and found is not PathKind.FOLDER:
        raise InvalidInput(f"{flag} {path}: not a folder")
    if not folder and found is not PathKind.FILE:
        raise InvalidInput(f"{flag} {path}: not a regular file")


def _nameable(flag: str, path: Path) -> None:
    """A path the command will make and write (backtest's --out): one the system cannot even look up (a name too
    long) is refused in one line before anything runs. It was a traceback from the first `exists()` on it, after
    the whole config had been loaded (exit 1, an error no one expected). A file on the way is left to the
    command's own check of its folder, which says it in its words."""
    import errno

    from engine.core.lock import WRONG_KIND

    try:
        path_kind(path)
    except NotADirectoryError:
        return
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return
        said = f"{flag} {path}: cannot be used ({exc.strerror or exc})"
        raise (InvalidInput(said) if exc.errno in WRONG_KIND else RuntimeFailure(said)) from None


def _writable_folder(flag: str, path: Path) -> None:
    """A folder the command will write into, made now and tried, so a run never ends having written nothing."""
    from engine.paths import ensure_writable_folder

    try:
        ensure_writable_folder(path)
    except OSError as exc:
        try:
            found = path_kind(path)
        except OSError:  # a name too long, a symlink loop: said by the first error
            found = PathKind.NOTHING
        wrong_kind = not found.absent and found is not PathKind.FOLDER
        reason = "not a folder" if wrong_kind else f"cannot write there ({exc.strerror or exc})"
        raise InvalidInput(f"{flag} {path}: {reason}") from None


class RuntimeFailure(Exception):
    """A failure of the moment (a full disk, a file that may not be written); printed in one line, exit code 1."""


def _state_path(flag: str, path: Path | None) -> None:
    """The state file or the log, before anything opens it: InvalidInput saying what is wrong (`unusable_output`)."""
    if path is None:
        return
    reason = unusable_output(path, state=flag == "--state-db")
    if reason is not None:
        raise InvalidInput(f"{flag} {path}: {reason}")


def _state_path_error(exc: OSError) -> int:
    """An OSError met making the run's lock file beside the state file: one line, exit 2 when the path is of
    the wrong kind or missing, 1 when it cannot be used now (read-only, no space, no permission)."""
    from engine.core.lock import WRONG_KIND

    where = exc.filename if exc.filename is not None else "the state file"
    print(f"error: {where}: cannot be used ({exc.strerror or exc})", file=sys.stderr)
    return EXIT_INVALID if exc.errno in WRONG_KIND else EXIT_FAILURE


SIGNAL_COMMANDS = ("run", "backtest")  # the only commands that call a signal: the others never import signals.py
# The commands that never use settings.yaml's state file: they do not hold it to the machines either. A state
# renamed in machines/momentum.yaml, with the live state file still holding the old name, refused `backtest` (which
# runs on a state file of its own) and `test` of the very edit, and `table`, `snapshot` and `diagram` without
# --bot, though none of them reads a saved row.
NO_STATE_COMMANDS = ("backtest", "test", "table", "snapshot", "data", "emulator")


def _load(args: argparse.Namespace) -> Report:
    """Everything validated, or InvalidInput carrying every problem. The state file and the log, given or from
    settings.yaml, are looked at (not opened) first, so that no command opens a FIFO or makes a folder of a file."""
    from engine.config.errors import ConfigError
    from engine.validate import load_valid

    has_state = hasattr(args, "state_db")
    if has_state:
        _state_path("--state-db", args.state_db)
        _state_path("--log", args.log)
    command = getattr(args, "command", None)
    user_code = command in SIGNAL_COMMANDS
    saved_states = command not in NO_STATE_COMMANDS and not (command == "diagram" and not args.bot)
    try:
        report = load_valid(
            args.config, args.machines, args.rules, getattr(args, "state_db", None),
            user_code=user_code, saved_states=saved_states,
        )  # fmt: skip
    except ConfigError as exc:
        raise InvalidInput(problems_text(exc.problems)) from None
    if has_state:
        from engine.trading.runner import paths_for

        db, log = paths_for(report, args.state_db, args.log)  # settings.yaml's were looked at by validation
        _not_an_input(args, db, log)
    return report


def _not_an_input(args: argparse.Namespace, db: Path, log: Path) -> None:
    """The state file and the log are neither a file the engine reads (a command that writes would append its
    log to bots.yaml) nor one file for both (`validate.output_clashes`, which validation asks of settings.yaml's
    paths)."""
    from engine.validate import input_files, output_clashes

    clashes = output_clashes(log, db, input_files(args.config, args.machines, args.rules), state_name="--state-db")
    for name, flag, path in (("state", "--state-db", db), ("log", "--log", log)):
        if name in clashes:
            raise InvalidInput(f"{flag} {path}: {clashes[name]}")
    _not_a_companion(db)


def _not_a_companion(db: Path) -> None:
    """A --state-db that names a file kept beside a state file (`_companion_of`) is refused: it is no state."""
    owner = _companion_of(db)
    if owner is not None:  # `halt` wrote a database into the run's empty lock file and said "halted": no engine reads it
        raise InvalidInput(f"--state-db {escaped(str(db))}: is a file kept beside the state file {escaped(str(owner))} "
                           f"(SQLite's, or the run lock's), not a state file: give --state-db {escaped(str(owner))}")  # fmt: skip


def _companion_of(path: Path) -> Path | None:
    """The state file that `path` is kept beside (its run lock, SQLite's -wal, -shm or -journal), when there is one
    at the path the suffix leaves: such a file is never a state of its own (the lock file is emptied at each run's
    end, so it looked like "no state yet", and a halt was written into it)."""
    from engine.validate import _STATE_COMPANIONS

    for suffix in _STATE_COMPANIONS:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            owner = path.with_name(path.name.removesuffix(suffix))
            try:
                if owner.is_file():
                    return owner
            except OSError:  # cannot be looked at: not known to be one
                return None
    return None


def _to_stdout(path: Path) -> bool:
    """`-o -` or `-o /dev/stdout`: the output goes to standard output, as without -o."""
    return str(path) in ("-", "/dev/stdout")


def _output_file(flag: str, path: Path) -> None:
    """A file the command will write (-o, --out): refused before any work when it is a folder, a FIFO (which
    would hang the write) or a device, or its folder is missing or a file. A link is judged by what it names."""
    if _to_stdout(path):
        return
    try:
        path = path.resolve() if path.is_symlink() else path
        found = path_kind(path)
    except OSError as exc:
        raise InvalidInput(f"{flag} {path}: cannot be used ({exc.strerror or exc})") from None
    except RuntimeError:  # Python 3.11's resolve() of a link that leads back to itself: a traceback, exit 1
        raise InvalidInput(f"{flag} {path}: cannot be used (a symbolic link that leads back to itself)") from None
    if not found.absent and found is not PathKind.FILE:
        raise InvalidInput(f"{flag} {path}: {'a folder' if found is PathKind.FOLDER else 'not a regular file'}; give a file name")
    parent = path.parent
    try:
        parent_found = path_kind(parent)
    except OSError as exc:
        raise InvalidInput(f"{flag} {path}: cannot be used ({exc.strerror or exc})") from None
    if parent_found.absent:
        raise InvalidInput(f"{flag} {path}: no such folder {parent}")
    if parent_found is not PathKind.FOLDER:
        raise InvalidInput(f"{flag} {path}: {parent} is not a folder")


def _output_not_an_input(
    flag: str, path: Path, args: argparse.Namespace, report: Report | None = None, paths: tuple[Path, Path] | None = None
) -> None:
    """-o or --out naming a file the engine reads or keeps is refused before anything is written: `report --out
    state/trading_state.db` replaced the state file, its halts with it, by a page of HTML, and `table momentum -o
    machines/momentum.yaml` the machine by its table. Refused: a config, machine, rule or scenario file (a link or
    another spelling of one included), a new YAML file in those folders (the next --validate would read it), the
    state file and the files kept beside it, the log and `.env`. Without `report` (before validation), the state
    file and the log are those given on the command line; with it, settings.yaml's too (the running engine's,
    whatever file this command was given); `paths`: the state file and the log the command reads, when known."""
    import os

    from engine.validate import _STATE_COMPANIONS, _file_id, input_files

    if _to_stdout(path):
        return
    target = os.path.realpath(path)
    named = input_files(args.config, args.machines, args.rules).get(_file_id(path) or (-1, -1))
    if named is not None:
        reads = f"is {escaped(str(named))}, a file the engine reads"
        raise InvalidInput(f"{flag} {escaped(str(path))}: {reads}: give a file of its own")
    folders = (args.config, args.machines, args.machines / "scenarios", args.rules)
    if Path(target).suffix.lower() in (".yaml", ".yml") and any(os.path.dirname(target) == os.path.realpath(f) for f in folders):
        raise InvalidInput(f"{flag} {escaped(str(path))}: a YAML file in a folder the engine reads: write it elsewhere")
    states: list[Path | None] = [getattr(args, "state_db", None)]
    logs: list[Path | None] = [getattr(args, "log", None)]
    if report is not None and report.config is not None:  # settings.yaml's, whatever this command was given
        from engine.trading.runner import paths_for

        states, logs = [*states, paths_for(report, None, None)[0]], [*logs, paths_for(report, None, None)[1]]
    if paths is not None:
        states, logs = [*states, paths[0]], [*logs, paths[1]]
    kept: list[tuple[str, Path | None]] = [("the .env file", _env_path(args))]
    kept += [("the log", given) for given in logs]
    for state in states:
        kept.append(("the state file", state))
        if state is not None:
            kept += [(f"a file kept beside the state file {state}", Path(f"{state}{suffix}")) for suffix in _STATE_COMPANIONS]
    for what, file in kept:
        if file is None:
            continue
        same = _file_id(path) is not None and _file_id(path) == _file_id(file)
        if same or target == os.path.realpath(file):
            raise InvalidInput(f"{flag} {escaped(str(path))}: is {escaped(what)}: write it elsewhere")


def _write_output(flag: str, path: Path, data: str | bytes) -> None:
    """Write the whole file or nothing, as every data file is (`replace_whole`: a temporary file beside it, then
    renamed over it), so a full disk or an interruption never leaves half a file (or an old file cut short), and
    the temporary file a kill left is removed by the next write. A file written again keeps its mode."""
    from engine.data.files import replace_whole

    _output_file(flag, path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if _to_stdout(path):
        sys.stdout.flush()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()  # here, where a closed pipe is noticed (main's GuardedOutput), not at exit
        return
    path = path.resolve() if path.is_symlink() else path  # the file the link names is the one replaced

    def write(temporary: Path) -> None:
        temporary.write_bytes(payload)  # a new file gets what the umask allows
        with contextlib.suppress(FileNotFoundError):
            temporary.chmod(path.stat().st_mode & 0o7777)

    try:
        replace_whole(path, write, fsync=False)
    except OSError as exc:
        raise RuntimeFailure(f"error: {flag} {path}: cannot be written ({exc.strerror or exc})") from None


def problems_text(problems: Sequence[object]) -> str:
    """Every problem on its line, then a count: the one format of `--validate` and of every command's errors."""
    count = len(problems)
    return "\n".join([*(str(p) for p in problems), f"{count} error{'s' if count != 1 else ''}"])


def _machine(report: Report, kind: str) -> MachineSpec:
    spec = report.machines.get(kind)
    if spec is None:
        raise InvalidInput(f"no machine of kind '{kind}' (known: {', '.join(sorted(report.machines))})")
    return spec


def cmd_diagram(args: argparse.Namespace) -> int:
    from engine.machines import render

    if args.output is not None:
        _output_file("-o", args.output)
        _output_not_an_input("-o", args.output, args)
    report = _load(args)
    if args.output is not None:
        _output_not_an_input("-o", args.output, args, report)
    spec = _machine(report, args.kind)
    current = None
    if args.bot:
        from engine.config.checks import bot_kind, trading_bots
        from engine.core.names import did_you_mean
        from engine.core.store import StateStore
        from engine.trading.runner import paths_for

        assert report.config is not None
        kinds = {bot.bot_id: bot_kind(bot) for _path, bot in trading_bots(report.config.bots)}
        if args.bot not in kinds:
            raise InvalidInput(f"--bot: no bot '{args.bot}' in bots.yaml{did_you_mean(args.bot, kinds)}")
        if kinds[args.bot] != args.kind:
            kind = kinds[args.bot]
            article = "an" if kind[:1] in ("a", "e", "i", "o", "u") else "a"
            raise InvalidInput(f"--bot: '{args.bot}' is {article} {kind} bot: python -m engine diagram {kind} --bot {args.bot}")
        db, _log = paths_for(report, args.state_db, args.log)
        saved = None
        if not _nothing_saved(db):
            store = StateStore(db, reads_only=True)
            try:
                saved = store.machine_state(args.kind, args.bot)
            finally:
                store.close()
        if saved is None:
            print(f"no saved state for {args.kind} '{args.bot}' in {db}: showing the initial state", file=sys.stderr)
        current = saved.state if saved else spec.initial
        if current not in spec.states:  # a disabled bot's, left as it was (validation checks only what a run restores)
            print(f"{args.kind} '{args.bot}' is saved in state '{current}', which {spec.doc.path} no longer has "
                  "(bots.yaml does not run it): no state highlighted", file=sys.stderr)  # fmt: skip
    if args.format == "mermaid":
        _emit(render.mermaid(spec, current), args.output)
        return EXIT_OK
    try:
        import pygraphviz  # type: ignore[import-not-found]
    except ImportError:
        raise InvalidInput(
            f"--format {args.format} needs Graphviz bindings: pip install -e '.[diagrams]' (or use --format mermaid)"
        ) from None
    try:
        graph = pygraphviz.AGraph(string=render.dot(spec, current))
        data = graph.draw(format=args.format, prog="dot")
    except (pygraphviz.DotError, ValueError, OSError) as exc:  # Graphviz refused the text, or `dot` is missing
        said = " ".join(str(exc).split()) or type(exc).__name__
        raise RuntimeFailure(f"--format {args.format}: Graphviz could not draw the {args.kind} machine: {said}") from None
    if args.output:
        _write_output("-o", args.output, data)
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def _emit(text: str, output: Path | None) -> None:
    if output:
        _write_output("-o", output, text)
    else:
        sys.stdout.write(text)


def cmd_table(args: argparse.Namespace) -> int:
    from engine.machines import render

    if args.output is not None:
        _output_file("-o", args.output)
        _output_not_an_input("-o", args.output, args)
    report = _load(args)
    if args.output is not None:
        _output_not_an_input("-o", args.output, args, report)
    _emit(render.table(_machine(report, args.kind)), args.output)
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    """Run every good scenario file, then list the problems of the bad ones: exit 2 if a file is bad (its cases
    did not run), else 1 if a case failed."""
    from engine.machines.scenarios import read_cases, run_cases

    report = _load(args)
    assert report.config is not None and report.book is not None
    found = read_cases(args.machines, report.config, report.machines)
    failed = passed = 0
    for outcome in run_cases(found.cases, report.config, report.machines, report.book):
        case = outcome.case
        passed += outcome.passed
        failed += not outcome.passed
        mark = "ok  " if outcome.passed else "FAIL"
        # One line a case: its name and what it found echo the user's text (a name may hold a newline).
        print(escaped(f"{mark} {case.file}:{case.line}: {case.name}" + ("" if outcome.passed else f": {outcome.message}")))
    print(f"{passed} passed, {failed} failed")
    if found.not_run:
        bad = len({p.file for p in found.not_run})
        print(f"{bad} scenario file{'s' if bad != 1 else ''} not run:")
        print(escaped(problems_text(found.not_run), keep=_LINE_BREAKS))
        return EXIT_INVALID
    return EXIT_OK if failed == 0 else EXIT_FAILURE


def cmd_facts(args: argparse.Namespace) -> int:
    """The facts of one machine kind as a Markdown table; without KIND, every kind's, each under its name. It
    printed the momentum bot's facts alone, unnamed: read as "the facts guards may use" (README), an options or
    crypto bot's own facts, and the system's, were nowhere."""
    from engine.rules.book import shown_unit
    from engine.rules.builtins import BUILTINS
    from engine.rules.facts import all_kinds, vocabulary

    kinds = [args.kind] if args.kind is not None else list(all_kinds())
    for kind in kinds:
        if args.kind is None:
            print(f"{'' if kind == kinds[0] else chr(10)}## {kind}\n")
        print("| fact | type | unit | meaning |\n|---|---|---|---|")
        for fact in vocabulary(kind).values():
            values = f" One of: {', '.join(sorted(fact.values))}." if fact.values is not None else ""
            unit = shown_unit(kind, fact.name)  # a config value's from its name, as the unit check uses it; as `why` says it
            print(f"| {fact.name} | {fact.type} | {unit or '-'} | {fact.description}{values} |")
    print("\nBuilt-in guards: " + ", ".join(f"{name}({', '.join(b.params)}): {b.description}" for name, b in BUILTINS.items()))
    return EXIT_OK


def _env_path(args: argparse.Namespace) -> Path:
    """The `.env` a command reads (`_env`): the working folder's when there is one, else the one beside config/."""
    here = Path(".env")
    return here if here.exists() or here.is_symlink() else args.config.resolve().parent / ".env"


def _env(args: argparse.Namespace) -> dict[str, str]:
    """The keys and settings of the environment over `.env`: the working folder's `.env` when there is one (of
    whatever kind: a folder or a FIFO there is refused, never passed over for another file), else the one beside
    the config folder. A `.env` that cannot be read is bad input (exit 2), said without any of its bytes.

    Strict (`read_environment`: keys emptied by the environment, or under another tool's names, refused) unless the
    command was told `--broker sim`: the keys it refuses only matter to a command that may reach the account, and a
    user who names the simulator has said which broker is meant."""
    from engine.brokers.factory import EnvFileError, read_environment

    path = _env_path(args)
    try:
        return read_environment(path, strict=getattr(args, "broker", None) != "sim")
    except UnicodeDecodeError as exc:  # never the bytes themselves: the file holds keys
        raise InvalidInput(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8 (see .env.example)") from None
    except EnvFileError as exc:
        raise InvalidInput(str(exc)) from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _broker_choice(args: argparse.Namespace, report: Report, env: dict[str, str], *, orders: bool) -> tuple[str, str]:
    """(broker, why), or InvalidInput: one Alpaca key without the other, keys or hosts Alpaca's cannot be, a
    live/paper contradiction, or `--live` on the simulated exchange (the user asked for real money and would
    silently get a simulation). `orders`: whether the command may send orders (see `alpaca_environment`)."""
    from engine.brokers.base import BrokerError
    from engine.brokers.factory import alpaca_environment, choose_broker

    assert report.config is not None
    live = getattr(args, "live", False)
    try:
        name, why = choose_broker(getattr(args, "broker", None), report.config.settings, env)
        if name == "alpaca":  # keys, hosts and live/paper checked before anything runs: a config mistake is exit 2
            alpaca_environment(env, live, orders=orders)
    except BrokerError as exc:
        raise InvalidInput(f"error: {exc.message}") from None
    if live and name != "alpaca":
        raise InvalidInput(
            f"error: --live trades real money on Alpaca, but this run would use the simulated exchange ({why}); "
            "live trading needs Alpaca keys, ALPACA_PAPER=false and --live"
        )
    return name, why


def _local(report: Report) -> LocalTime:
    """Every time printed for a person is in system.timezone (engine/operator/local.py)."""
    from engine.operator.local import LocalTime

    assert report.config is not None
    return LocalTime(report.config.settings.system.timezone)


def _sim_clock(args: argparse.Namespace, report: Report) -> ManualClock:
    from engine.core.clock import ManualClock, parse_start

    assert report.config is not None
    given = getattr(args, "start", None)
    if given is not None and not given.strip():
        raise InvalidInput("--start: an empty time (give e.g. 2026-11-23T09:30:00-05:00)")
    if given is not None:
        try:
            return ManualClock(parse_start(given))
        except ValueError as exc:
            raise InvalidInput(_start_refused(given, exc)) from None
    return ManualClock(_sim_default_start(report))


def _start_refused(given: str, exc: ValueError) -> str:
    """--start's refusal in plain words: parse_start's own reasons name the value; Python's do not (an offset of
    +25:00 was "offset must be a timedelta strictly between -timedelta(hours=24) and ...")."""
    said = str(exc)
    if said.startswith(repr(given)) or said.startswith(f"'{given}'"):
        return f"--start: {escaped(said)}"
    if said.startswith(("month", "day", "year", "hour", "minute", "second")):  # a date or time out of its range
        return f"--start: {escaped(repr(given))}: {said}"
    return f"--start: {escaped(repr(given))} is not an ISO 8601 time with its UTC offset (e.g. 2026-11-23T06:30:00-08:00)"


def _sim_default_start(report: Report) -> datetime:
    """Where a simulation starts without --start: settings.yaml's `sim.start` (checked by validation), else the
    open of today's session (of the next one on a weekend or a holiday). Today is the date in system.timezone, the
    zone of the trading date and of every time printed: it was the machine's own (`date.today()`, TZ), so one
    config started its first day a session apart on a machine set to UTC+14 and on one set to New York."""
    from zoneinfo import ZoneInfo

    from engine.core.clock import SystemClock, default_sim_start, parse_start

    assert report.config is not None
    text = report.config.settings.sim.start
    if text:
        return parse_start(text)
    zone = ZoneInfo(report.config.settings.system.timezone)
    return default_sim_start(SystemClock().now().astimezone(zone).date(), zone)


def cmd_snapshot(args: argparse.Namespace) -> int:
    from engine.brokers.base import BrokerError
    from engine.brokers.factory import build_alpaca, build_sim
    from engine.brokers.render import snapshot_json
    from engine.core.clock import SystemClock
    from engine.trading.runner import RunError, refuse_placeholder_keys
    from engine.trading.universe import data_needs

    report = _load(args)
    assert report.config is not None
    env = _env(args)
    name, why = _broker_choice(args, report, env, orders=False)
    print(why, file=sys.stderr)
    try:
        if name == "sim":
            broker, _exchange = build_sim(report.config.settings, _sim_clock(args, report))
        else:
            refuse_placeholder_keys(env)
            broker = build_alpaca(report.config.settings, SystemClock(), env, live_flag=False, orders=False)
    except RunError as exc:  # keys still .env.example's placeholders: input to fix, as any key that cannot be right
        raise InvalidInput(f"error: {exc}") from None
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    snapshot = broker.snapshot(data_needs(report.config.bots))
    print(snapshot_json(snapshot))
    return EXIT_OK if snapshot.complete else EXIT_FAILURE


def cmd_emulator(args: argparse.Namespace) -> int:
    from engine.brokers.emulator import Emulator
    from engine.brokers.sim.exchange import SimExchange
    from engine.core.clock import FollowingClock, SystemClock

    report = _load(args)
    assert report.config is not None
    settings = report.config.settings
    # Real time by default, so that a real-time engine (`run --broker alpaca`) sees fresh quotes; with --start
    # the quotes carry simulated times, which such an engine rightly treats as stale.
    clock = FollowingClock(_sim_clock(args, report).now()) if args.start is not None else SystemClock()
    env = _env(args)
    key, secret = env.get("ALPACA_KEY") or None, env.get("ALPACA_SECRET") or None
    exchange = SimExchange(clock, seed=settings.sim.seed, starting_cash=settings.sim.starting_cash)
    emulator = Emulator(exchange, key=key, secret=secret, port=args.port)
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"Alpaca emulator on {emulator.url} (simulated time {clock.now().isoformat()}); Ctrl-C stops it.")
    print(f"  export ALPACA_API_BASE_URL={emulator.url} ALPACA_DATA_BASE_URL={emulator.url}")
    if key is None:
        print("  no ALPACA_KEY configured: requests are not authenticated")
    sys.stdout.flush()
    emulator.serve_forever()
    return EXIT_OK


def _run_options(args: argparse.Namespace) -> RunOptions:
    from engine.core.clock import parse_start
    from engine.trading.runner import RunOptions

    start = None
    if getattr(args, "start", None) is not None:
        if not args.start.strip():
            raise InvalidInput("--start: an empty time (give e.g. 2026-11-23T09:30:00-05:00)")
        try:
            start = parse_start(args.start)
        except ValueError as exc:
            raise InvalidInput(_start_refused(args.start, exc)) from None
    return RunOptions(
        broker=getattr(args, "broker", None),
        state_db=args.state_db,
        log=args.log,
        ticks=getattr(args, "ticks", None),
        once=getattr(args, "once", False),
        until_close=getattr(args, "until_close", False),
        start=start,
        live=getattr(args, "live", False),
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Stop signals are held from before the session opens until the database is closed, so a SIGTERM at any
    moment ends in a clean stop (during start-up: before the first tick), never in a half-closed state.

    The plain lines (the broker, the files, any halt in force, the summary) are the same whether or not a
    person watches; the live view (engine/operator/console.py, which imports rich) is added only at a
    terminal without --quiet, so a service's log stays clean."""

    from engine.trading.runner import (
        RunError,
        RunStopped,
        StopSignals,
        close_session,
        format_summary,
        halt_notice,
        open_session,
        run,
    )

    report = _load(args)
    options = _run_options(args)
    local = _local(report)
    env = _env(args)
    _broker_choice(args, report, env, orders=True)
    if args.record_append and args.record is None:
        raise InvalidInput("--record-append: continues a recording: give its folder with --record DIR")
    if args.record is not None:
        held = _engine_running_on(report, options)
        if held is not None:  # said as without --record: not as the recording folder the running engine holds too
            print(f"error: {held}", file=sys.stderr)
            return EXIT_FAILURE
    recorder = _recorder(args.record) if args.record is not None else None
    with StopSignals() as stop:
        try:
            session = open_session(report, options, env, lambda: _sim_default_start(report), stop)
        except BaseException as exc:
            if recorder is not None:
                recorder.close()  # its folder's lock released: nothing was recorded
            if isinstance(exc, RunStopped):  # a stop signal during the start-up checks: nothing written
                print(exc, file=sys.stderr)
                return exc.exit_code
            if isinstance(exc, RunError):
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INVALID if exc.invalid else EXIT_FAILURE
            if isinstance(exc, OSError) and file_error_code(exc) is None:  # the lock beside the state file
                return _state_path_error(exc)
            raise
        clash = None
        if recorder is not None:
            clash = _recording_clash(recorder, args.record, session.clock.now(), append=args.record_append)
        if clash is not None:
            close_session(session)  # the recorder with it
            print(clash, file=sys.stderr)
            return EXIT_INVALID
        try:
            from engine.trading.engine import freeze_long_lived

            freeze_long_lived()  # the engine is built: what lives as long as the run leaves the collector's sight
            session.recorder = recorder
            print(session.notice)
            _live_warnings(report)  # a live run with any of these gaps was refused: this is a paper or simulated one
            until = f" until {local(session.close_at)}" if session.close_at else ""
            print(f"state {session.store.path}, log {session.journal.path}; starting at {local(session.clock.now())}{until}")
            for line in halt_notice(session.store, session.clock.now(), local):
                print(line)
            sys.stdout.flush()
            console = None
            if not args.quiet and sys.stdout.isatty():
                from engine.operator.console import LiveConsole

                console = LiveConsole(session, options)
            if console is None:
                summary = run(session, options, stop)
            else:
                with console:
                    summary = run(session, options, stop, on_tick=console.tick)
            print(format_summary(summary, local))
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the run is the one to tell
                close_session(session)  # closes the recorder too (on every path: the end, a signal, an error)
            raise
        alerts = session.alerts
        close_session(session)
        shortfall = alerts.shortfall() if alerts is not None else None
        if shortfall is not None:  # only in the log, a dead alert service read as if the operator had been told
            print(f"warning: {shortfall}", file=sys.stderr)
    if recorder is not None:
        print(_recording_line(recorder, args.record, session.recording_error))
    return EXIT_OK


def _engine_running_on(report: Report, options: Any) -> str | None:
    """The refusal of a second `run` on a state file an engine holds (open_session's, word for word), told without
    taking the lock, or None. `run --record` locks its recording folder before the state file: a second run of
    the same command was refused "another recording is writing to this folder" (exit 2), not as one running
    engine per state file (exit 1, the holder's pid) as the README says of every second run."""
    from engine.core.lock import LockHeld, flock_holders, lock_path
    from engine.trading.runner import paths_for, running_pid

    db, _log = paths_for(report, options.state_db, options.log)
    if not flock_holders(lock_path(db)):
        return None
    return str(LockHeld(db, lock_path(db), running_pid(db)))


def _recorder(folder: Path) -> Recorder:
    """`run --record`'s recorder, its folder checked and locked before the run starts: a second recording into a
    folder another one is writing is refused now (exit 2), not found at its first quote and run unrecorded."""
    from engine.config.errors import ConfigError
    from engine.data.recorder import Recorder
    from engine.paths import folders_to_make

    made = folders_to_make(folder)  # removed again by the recorder's close if the run records nothing
    _writable_folder("--record", folder)
    recorder = Recorder(folder, made=made)
    try:
        recorder.hold_folder()
    except ConfigError as exc:  # DataError
        raise InvalidInput(problems_text(exc.problems)) from None
    return recorder


def _recording_clash(recorder: Recorder, folder: Path, start: datetime, *, append: bool = False) -> str | None:
    """Why `run --record` may not record into `folder` from `start`, or None: a folder holding a recording that
    reaches `start` or past it (another run's: a run on the same state file starts after its last tick) took none
    of this run's quotes until then, and the run ended exit 0 saying "recorded 0 quotes". Any earlier recording
    without `--record-append`: its replay showed the earlier run's last quote of a symbol this run never watched
    in this run's ticks, a quote no run had then (a bot of the replay's config trading on it, a position valued at
    it); continuing a recording (a restart of its run, with its symbols) is said with the flag (docs/data.md)."""
    last = recorder.last_tick()
    if last is not None and last >= start:
        return (f"--record {escaped(str(folder))}: holds another run's recording, up to {last.isoformat()}, not before "
                f"this run's start ({start.isoformat()}): none of this run's quotes until then could be recorded; record "
                "into another folder")  # fmt: skip
    if not recorder.found_recording or append:
        return None
    until = f", up to {last.isoformat()}" if last is not None else ""
    return (f"--record {escaped(str(folder))}: holds an earlier run's recording{until}: its replay would show that "
            "run's last quote of a symbol this run does not watch as the symbol's quote during this run; record into "
            "a new folder, or give --record-append to continue it (a restart of that run, watching its symbols)")  # fmt: skip


def _recording_line(recorder: object, folder: Path, stopped: str | None = None) -> str:
    """What `run --record` wrote; repeats of a quote already recorded (a feed's unchanged quote seen again next
    tick) are not news, every other skipped quote is."""
    from engine.data.recorder import Recorder
    from engine.paths import shown

    assert isinstance(recorder, Recorder)
    if recorder.lost:  # its folder deleted or moved away: none of the quotes counted is there to replay
        return f"the recording stopped before the run did ({stopped}); nothing it recorded is left in {shown(folder)}"
    symbols = recorder.symbols
    # the quotes on disk: a recording stopped by a failed write (a full disk) had taken more than it could write
    line = f"recorded {recorder.written} quotes of {len(symbols)} symbol{'s' if len(symbols) != 1 else ''} to {shown(folder)}"
    if recorder.unusable:  # replayed as read, but worth knowing: the feed gave these sides at 0, or crossed
        line += f", {recorder.unusable} of them not prices (a side at 0, or crossed: kept in unusable/)"
    if recorder.missing_quotes:  # asked for and not answered: replayed as not answered
        line += f", {recorder.missing_quotes} asked for and not answered (kept in missing/)"
    if stopped is not None:
        line = f"the recording stopped before the run did ({stopped}): {line}, until then"
    skipped = {why: n for why, n in recorder.skipped.items() if why != "the timestamp is not after the symbol's last"}
    if skipped:
        line += "; not recorded: " + ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items()))
    return line + f" (replay: python -m engine backtest --data {shown(folder)})"


def _open_state(args: argparse.Namespace) -> tuple[StateStore, Journal, datetime, Report]:
    """The state file, its log, and the state's own time (`_state_at`, for a halt), from the validated files."""
    from engine.trading.runner import paths_for

    report = _load(args)
    made = args.state_db is None  # settings.yaml's own path: the folder the first run makes, made for a halt before it
    opened = _state_at(*paths_for(report, args.state_db, args.log), halting=True, secrets=_keys_to_mask(args), make_folder=made)
    return (*opened, report)


def _keys_to_mask(args: argparse.Namespace) -> tuple[str, ...]:
    """The Alpaca keys that `halt`, `resume` and the status page's buttons mask in what they write, as the engine's
    journal masks them: a key pasted into a halt's reason went into the log and the state file as typed, and from
    there to `status`, `report`, the alerts and the page. A `.env` that cannot be read does not stop a halt: the
    environment's keys alone are masked then (the run refuses that `.env`, so no key of it is in use)."""
    from engine.brokers.factory import read_environment
    from engine.trading.runner import maskable_keys

    try:
        env = _env(args)
    except InvalidInput:
        env = read_environment()
    return maskable_keys(env)


def _state_at(
    db: Path, log: Path, *, halting: bool = False, secrets: Sequence[str] = (), make_folder: bool = False
) -> tuple[StateStore, Journal, datetime]:
    """The state file, its log, and the state's own time: on a simulation the simulated clock, so a halt or
    a resume typed beside a simulated run is stamped in the simulation's time, in SQLite and in the log. For a
    halt (`halting`) a saved simulated time that cannot be read is this machine's clock, said on stderr; every
    other command refuses it (a resume or a status cannot tell which halts are in force without it). The state
    file's folder is made only with `make_folder` (settings.yaml's own path, which the first run makes too): one a
    --state-db names that does not exist is a mistyped path no engine reads (`StateStore`'s make_folder)."""
    from engine.core.clock import ManualClock, SystemClock
    from engine.core.journal import Journal
    from engine.core.store import OPERATOR_WAIT_SECONDS, StateFileError, StateStore
    from engine.trading.runner import state_now

    store = StateStore(db, busy_wait_seconds=OPERATOR_WAIT_SECONDS, make_folder=make_folder)
    try:
        now, simulated = state_now(store, SystemClock().now())
    except StateFileError as exc:
        if not halting or exc.runtime:
            store.close()
            raise
        # A halt with no `until` is in force at any time, so it needs no simulated time: refused, the operator's
        # emergency halt was lost on a file that could still take it. Stamped with this machine's clock, and said.
        now, simulated = SystemClock().now(), False
        print(f"warning: {exc.message}; the halt is stamped with this machine's clock ({now.isoformat()}), not the "
              f"simulation's", file=sys.stderr)  # fmt: skip
    # A halt's log that cannot be opened (a folder given as --log) is said after the halt is in: refused at the
    # open, the operator's halt was lost for a log path typed wrong
    return store, Journal(log, ManualClock(now) if simulated else SystemClock(), secrets, unopened_ok=halting), now


def _nothing_saved(db: Path) -> bool:
    """Whether a reading command (status, why, report, health, diagram --bot, resume) has no state file to open:
    nothing at `db`, or a new empty file, which holds nothing (validation reads it so). Opened, an empty file gets a
    new database written into it by SQLite, and a reading command writes nothing: the path may name any file (a
    mistyped --state-db). An empty file a run has used, or with a -wal beside it, was cut to nothing: refused, exit 2
    (`store.cut_to_nothing`, as `run` and `halt` refuse it), never "no state yet"."""
    from engine.core.store import nothing_saved

    return nothing_saved(db)


def cmd_status(args: argparse.Namespace) -> int:
    """Reads only: a state file that does not exist is not created (nor the log), so a mistyped --state-db
    leaves nothing behind. Works while a config, machine or rule file is mid-edit (`_reading_files`)."""
    from engine.core.clock import SystemClock
    from engine.core.store import StateStore
    from engine.trading.runner import max_tick_age, state_now, status_text

    files = _reading_files(args)
    db, log = files.db, files.log
    if _nothing_saved(db):
        print(f"{db}: no state yet (nothing has run)")
        return EXIT_OK
    store = StateStore(db, reads_only=True)
    try:
        # one read transaction: a tick committing between two reads (its halt, and its machine's move to halted)
        # gave an answer half before it, half after
        with store.read_snapshot():
            now, _simulated = state_now(store, SystemClock().now())
            # a halt set before any run shows
            if store.meta("broker") is None and not store.machine_states() and not store.halts():
                print(f"{store.path}: no state yet (nothing has run)")
                return EXIT_OK
            # a simulation's halts run on simulated time: `now` is the state's own
            local = files.local if files.local is not None else _recorded_zone(store)
            text = status_text(store, now, local=local, bots=files.bots)
            if files.bots is None:
                text = text.replace("positions by bot:", "positions by bot (which of them no bot of bots.yaml manages: "
                                    "unknown, settings.yaml or bots.yaml cannot be read):", 1)  # fmt: skip
            from engine.core.terminal_text import one_line

            interval = files.loop_interval
            max_age = max_tick_age(interval) if interval is not None else None
            header = (f"state {store.path} (broker: {one_line(store.meta('broker') or 'none yet')}; as of {local(now)}"
                      f"{_tick_said(store, max_age, local)})")  # fmt: skip
            unsaved = _unsaved_lines(store, log, local)
        print(header)
        print(text)
        for line in unsaved:
            print(line)
    finally:
        store.close()
    return EXIT_OK


def _recorded_zone(store: StateStore) -> LocalTime:
    """The zone the state file counts its trading days in (meta.timezone, the last run's system.timezone), for
    `status` while settings.yaml cannot be read: today's counters are that zone's day. UTC when it records none."""
    from engine.operator.local import LocalTime
    from engine.operator.report import counting_zone

    return counting_zone(store, LocalTime("UTC"))


@dataclass(frozen=True)
class _ReadingFiles:
    """What `status` and `report` read beside the state file: the paths, the zone, bots.yaml (for the positions no
    bot manages; None when it cannot be read) and the loop interval (for STALE; None when settings.yaml cannot be
    read)."""

    db: Path
    log: Path
    local: LocalTime | None  # None: settings.yaml cannot be read, the state file's own zone is used
    bots: BotsConfig | None
    loop_interval: float | None
    configured: tuple[Path, Path] | None  # settings.yaml's state file and log (the running engine's), when it reads


def _reading_files(args: argparse.Namespace) -> _ReadingFiles:
    """Every file validated, as ever; or, while a config, machine or rule file cannot be read (mid-edit), what of
    them can be, with the problems and a warning on stderr: the running engine read its files at its start, and
    `status` and `report` are how an operator sees it meanwhile (they refused, exit 2, while the engine traded on). The state file
    and the log are settings.yaml's, or, when settings.yaml cannot be read, both --state-db and --log must be
    given: a state guessed would be one no engine runs on. A refusal that is not the files' (a state file or log
    that cannot be used, a saved state that no longer fits) stands as it was."""
    from engine.config.errors import ConfigError
    from engine.config.loader import load_config, load_settings, resolved
    from engine.operator.local import LocalTime
    from engine.trading.runner import paths_for
    from engine.validate import load_valid

    _state_path("--state-db", args.state_db)  # a path of the wrong kind (a FIFO) is refused first, as `_load` does:
    _state_path("--log", args.log)  # never opened below to learn whether the files are the problem
    try:
        report = _load(args)
    except InvalidInput as refused:
        try:  # the files alone: when they read, the refusal is the state file's or the paths', said as it was
            files = load_valid(args.config, args.machines, args.rules, user_code=False, saved_states=False)
        except ConfigError as exc:
            problems, what = problems_text(exc.problems), "the files above cannot be read"
        else:
            problems, what = _only_renamed_states(args, files, refused), "the files above no longer fit the saved state"
    else:
        assert report.config is not None
        db, log = paths_for(report, args.state_db, args.log)
        settings = report.config.settings
        every = settings.runner.loop_interval_seconds, paths_for(report, None, None)
        return _ReadingFiles(db, log, _local(report), report.config.bots, *every)
    try:
        settings_read = load_settings(args.config)
    except ConfigError:
        settings_read = None
    try:
        bots = load_config(args.config).bots
    except ConfigError:
        bots = None
    configured = None
    if settings_read is not None:
        system = settings_read.system
        configured = (resolved(args.config, system.state_db_path), resolved(args.config, system.log_path))
        db, log = args.state_db or configured[0], args.log or configured[1]
    elif args.state_db is None or args.log is None:
        raise InvalidInput(f"{problems}\n{args.command} cannot tell the state file and the log without settings.yaml: give "
                           f"both --state-db PATH and --log PATH (those of the running engine)")  # fmt: skip
    else:
        db, log = args.state_db, args.log
    _state_path("--state-db", db)
    _state_path("--log", log)
    _not_an_input(args, db, log)
    status = args.command == "status"
    unknown = [text for text, missing in (
        ("the times are in the zone the state file counts its days in (UTC when it records none)"
         + (" and no STALE is judged" if status else "") + " (settings.yaml)", settings_read is None),
        ("which positions no bot manages is not told (it needs settings.yaml and bots.yaml)", status and bots is None),
    ) if missing]  # fmt: skip
    said = f"; {'; '.join(unknown)}" if unknown else ""
    _warn(args, f"{problems}\nwarning: {what}; {args.command} reads the state file {db} as saved{said}")
    local = LocalTime(settings_read.system.timezone) if settings_read is not None else None
    interval = settings_read.runner.loop_interval_seconds if settings_read is not None else None
    return _ReadingFiles(db, log, local, bots, interval, configured)


def _warn(args: argparse.Namespace, text: str) -> None:
    """A warning of several lines on stderr, as every error is printed (`_main`): the keys masked (a problem quotes
    what the user wrote, a key pasted as a time zone included) and what a terminal would run escaped."""
    print(escaped(_without_keys(args, text), keep=_LINE_BREAKS), file=sys.stderr)


def _only_renamed_states(args: argparse.Namespace, files: Report, refused: InvalidInput) -> str:
    """The problems, when the files read and all that refused them is a saved machine state a machine file no
    longer has (a state renamed mid-edit: the running engine runs on the files it read); else `refused` as it was."""
    from engine.config.errors import ConfigError
    from engine.core.store import StateFileError
    from engine.paths import shown
    from engine.trading.runner import paths_for
    from engine.validate import load_valid

    saved = paths_for(files, args.state_db, args.log)[0]
    try:
        load_valid(args.config, args.machines, args.rules, saved, user_code=False)
    except StateFileError:  # the state file itself: as it was refused
        pass
    except ConfigError as exc:
        if all(p.file == shown(saved) and p.path.startswith("machine_states.") for p in exc.problems):
            return problems_text(exc.problems)
    raise refused from None


def _unsaved_lines(store: Any, log: Path, local: LocalTime) -> list[str]:
    """A halt the last run decided and could not save (its state file full: `halt_not_saved` in the log), which the
    state file does not show: `status` said "halt: none" while the next run would start halted."""
    from engine.core.terminal_text import one_line
    from engine.trading.unsaved import pending_unsaved_halts

    return [
        f"NOT SAVED: the last run halted at {local(h.at)} and could not save it in the state file (a full disk?): "
        f"{one_line(h.reason)}; the next run records it"
        + (f" until {local(h.until)}" if h.until is not None else " until `python -m engine resume`")
        for h in pending_unsaved_halts(store, log)
    ]


def _tick_said(store: StateStore, max_age: float | None, local: LocalTime) -> str:
    """When a real-time state was last ticked, for `status`'s header: "as of" is this machine's clock, and the
    state read is the last tick's, which for a hung or stopped engine is hours old. Without it a stale state read as
    current. Older than `health`'s default max age it is said STALE. A simulation's state is as of its own last
    tick (its clock), so nothing is added."""
    from engine.core.clock import SystemClock
    from engine.trading.runner import is_stale, last_tick

    age = last_tick(store, SystemClock().now())
    if age is None:
        return "; no tick recorded yet"
    if age.simulated:
        return ""
    said = f"; last tick {local(age.last)}, {age.seconds:.0f} s before"
    if max_age is None:  # settings.yaml cannot be read (`_reading_files`): the loop interval is not known
        said += " (STALE or not: unknown, settings.yaml cannot be read)"
    elif is_stale(age, max_age):
        said += f": STALE, older than {max_age:g} s (the engine is stuck or not running)"
    elif age.last > age.now:
        said += " (it is ahead of this machine's clock)"
    return said


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the last tick is younger than --max-age, 1 otherwise: for a container's or a supervisor's
    health check. It reads one row of the state file and never creates it (nor takes the run's lock). A last tick
    more than --max-age ahead of the clock is unhealthy too: it cannot tell that the loop is alive."""
    from datetime import datetime

    from engine.core.clock import SystemClock
    from engine.core.store import StateStore
    from engine.core.terminal_text import one_line
    from engine.trading.runner import (
        BACKTEST_BROKER,
        last_run,
        last_tick,
        no_end_said,
        running_pid,
    )

    db, max_age, local = _health_inputs(args)
    if _nothing_saved(db):
        print(f"unhealthy: no state file {db} (no run has started)")
        return EXIT_FAILURE
    store = StateStore(db, reads_only=True)
    try:
        age = last_tick(store, SystemClock().now())
        run = last_run(store)
    finally:
        store.close()
    if age is None:
        print(f"unhealthy: no tick recorded in {db} yet")
        return EXIT_FAILURE
    last = local(age.last)
    backtest = run is not None and run.get("broker") == BACKTEST_BROKER  # its ticks are the data's instants
    clock = (" on the backtest's clock (its data's time)" if backtest else " on the simulated clock") if age.simulated else ""
    # A recent last tick is not a live loop: a run that ended left one (a real-time run's is recent for max-age, a
    # simulation's age is always 0), and both were "healthy" for a run that had stopped, a simulation's for ever.
    if run is not None and run.get("ended_at"):
        ended = local(datetime.fromisoformat(run["ended_at"]))
        print(f"unhealthy: the last run ended {ended} ({one_line(str(run.get('reason')))}); last tick {last}{clock}")
        return EXIT_FAILURE
    if age.simulated and running_pid(db) is None:  # killed mid-run: no end recorded, and its age stays 0
        said = no_end_said(run) if run is not None else "no run recorded"
        print(f"unhealthy: no engine is running on {db} (the last run: {said}); last tick {last}{clock}")
        return EXIT_FAILURE
    ahead = (age.last - age.now).total_seconds()
    if ahead > max_age:  # age 0 would say "recent" for as long as the skew lasts, a dead engine included
        print(f"unhealthy: last tick {last} is {ahead:.0f} s ahead of this machine's clock{clock} "
              f"(the clock moved back, or the tick was written by a clock that ran ahead); max age {max_age:g} s")  # fmt: skip
        return EXIT_FAILURE
    healthy = age.seconds <= max_age
    verdict = "healthy" if healthy else "unhealthy"
    print(f"{verdict}: last tick {last}, age {age.seconds:.0f} s{clock} (max age {max_age:g} s)")
    return EXIT_OK if healthy else EXIT_FAILURE


def _health_inputs(args: argparse.Namespace) -> tuple[Path, float, LocalTime]:
    """What `health` needs, and nothing more: the state file (--state-db, or settings.yaml's), the max age
    (--max-age, or 3 x settings.yaml's loop_interval_seconds + 30) and the zone its one line shows the time in
    (settings.yaml's, UTC when it cannot be read). It judges the state, not the files: the running engine read them
    at its start and never reads them again, so a bots.yaml, machine or rule file mid-edit says nothing about it.
    Refusing on one (exit 2) made a container's HEALTHCHECK call a healthy engine unhealthy, and restart it into
    files that refuse to start. Only a settings.yaml that cannot be read when it is needed is refused (exit 2)."""
    from engine.config.errors import ConfigError
    from engine.config.loader import load_settings, resolved
    from engine.operator.local import LocalTime
    from engine.trading.runner import max_tick_age

    _state_path("--state-db", args.state_db)
    _state_path("--log", args.log)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        if args.state_db is None or args.max_age is None:
            raise InvalidInput(f"{problems_text(exc.problems)}\nhealth cannot tell the state file or the max age "
                               f"without settings.yaml: give --state-db PATH and --max-age SECONDS") from None  # fmt: skip
        _not_a_companion(args.state_db)
        return args.state_db, args.max_age, LocalTime("UTC")
    db = args.state_db or resolved(args.config, settings.system.state_db_path)
    _state_path("--state-db", db)
    _not_a_companion(db)
    max_age = args.max_age if args.max_age is not None else max_tick_age(settings.runner.loop_interval_seconds)
    return db, max_age, LocalTime(settings.system.timezone)


def cmd_halt(args: argparse.Namespace) -> int:
    from engine.core.journal import JournalError
    from engine.core.store import StateFileError
    from engine.trading.runner import never_run, new_state_file, operator_halt

    if not args.reason.strip():  # a halt nobody can explain later; refused before anything is opened
        raise InvalidInput("--reason: give the reason for the halt (it is recorded in SQLite and the log)")
    try:
        args.reason.encode("utf-8")
    except UnicodeEncodeError:  # bytes from the shell that are not UTF-8: SQLite and the log could not hold them
        raise InvalidInput("--reason: not UTF-8 text (write the reason in UTF-8)") from None

    try:
        store, journal, now = _open_state_to_halt(args)
    except StateFileError as exc:  # nothing is written before the file is open: said, not left to be guessed
        raise StateFileError(exc.path, f"{exc.what}; the halt is NOT recorded", runtime=exc.runtime) from None
    unlogged: JournalError | None = None
    reason = journal.scrubbed(args.reason)  # as recorded: a key in it is not printed back either
    fresh = False
    try:
        operator_halt(store, journal, args.reason, now)
        fresh = never_run(store)
    except JournalError:  # the halt is committed before its event is written: in force whatever the log says
        fresh = never_run(store)  # its event is written again at close, and said below if that fails too
    finally:  # closed, not left to the garbage collector: the halt is then in the state file itself, not its WAL
        try:
            journal.close()
        except JournalError as exc:
            unlogged = exc
        finally:
            store.close()
    if unlogged is not None:  # "error: log file ...: No space left" alone reads as "not halted"
        said = (f"error: {unlogged.message}; the halt IS recorded in {store.path} and in force (its event is not in "
                f"the log)")  # fmt: skip
        if not unlogged.runtime:  # a log path of the wrong kind (a folder): the user's input to fix
            raise InvalidInput(said)
        raise RuntimeFailure(said)
    from engine.core.terminal_text import one_line

    print(f"halted: {one_line(reason)} (until `python -m engine resume`); recorded in {store.path}")
    if fresh:
        print(f"warning: {new_state_file(store.path)}", file=sys.stderr)
    return EXIT_OK


def _open_state_to_halt(args: argparse.Namespace) -> tuple[StateStore, Journal, datetime]:
    """The state file and log for `halt`, which must work when it is needed most: while a half-edited config,
    machine or rule file cannot be read. The running engine read its files when it started, and stops at the halt
    written to its state file. Without the files settings.yaml names neither the state file nor the log, so the
    halt then needs both flags: a halt written to a guessed file would be one the engine never sees. Files that
    read but no longer fit the saved state (a machine file whose state was renamed mid-edit) are the same case:
    the engine runs on the files it read, and the halt must reach it."""
    from engine.config.errors import ConfigError
    from engine.config.loader import load_config
    from engine.core.store import StateFileError
    from engine.paths import shown
    from engine.trading.runner import paths_for
    from engine.validate import load_valid

    what = "the files above cannot be read"
    damaged: InvalidInput | None = None  # the refusal, when it is the saved state's content that cannot be read
    # A --state-db or --log that no command may use (a FIFO, a device) is refused as every command refuses it: the
    # fallback below would otherwise open it as a database to learn why the files were refused ("disk I/O error",
    # exit 1, a device given by mistake opened for writing)
    _state_path("--state-db", args.state_db)
    _state_path("--log", args.log)
    try:
        store, journal, now, _report = _open_state(args)
        return store, journal, now
    except InvalidInput as refused:
        try:  # the files alone: a damaged state file is said as it was
            report = load_valid(args.config, args.machines, args.rules, user_code=False, saved_states=False)
        except ConfigError as exc:
            problems = problems_text(exc.problems)
        else:
            saved = paths_for(report, args.state_db, args.log)[0]
            try:  # the files read: is it the saved state (validation's machine_states.*, or a row it cannot read)?
                load_valid(args.config, args.machines, args.rules, saved, user_code=False)
                raise refused from None  # not the files: a state file or log that cannot be used, said as it was
            except ConfigError as exc:
                if not all(p.file == shown(saved) for p in exc.problems):  # not (only) the state file: as it was
                    raise refused from None
                problems = problems_text(exc.problems)
                if all(p.path.startswith("machine_states.") for p in exc.problems):
                    what = "the files above no longer fit the saved state"
                else:  # a saved row that cannot be read: the halts table may take a halt all the same (tried below)
                    what, damaged = "the saved state above cannot be read", refused
    db, log = args.state_db, args.log
    if db is None or log is None:
        try:  # settings.yaml and bots.yaml may read though a machine or rule file does not
            config = load_config(args.config)
        except ConfigError:
            raise InvalidInput(f"{problems}\nthe halt is NOT recorded: the config cannot be read, so the state file and "
                               f"the log are not known; give both --state-db PATH and --log PATH (those of the running "
                               f"engine)") from None  # fmt: skip
        system = config.settings.system
        db = db or config.resolve(system.state_db_path)
        log = log or config.resolve(system.log_path)
    _state_path("--state-db", db)
    _state_path("--log", log)
    _not_an_input(args, db, log)
    try:
        opened = _state_at(db, log, halting=True, secrets=_keys_to_mask(args), make_folder=args.state_db is None)
    except StateFileError as exc:
        if damaged is None or exc.runtime:
            raise
        raise damaged from None  # the store itself refuses the file (a newer schema, a table it lacks): as validation said
    _warn(args, f"{problems}\nwarning: {what}; the halt goes to the state file {db} and the log {log}")
    return opened


def cmd_resume(args: argparse.Namespace) -> int:
    """Ends every halt in the state file. Where there is none (nothing at the path, or an empty file) no halt can be
    in force, and nothing is created: a new state file, its folder and a log made at a mistyped --state-db said
    "resumed: 0 halt(s) ended" while the engine stayed halted, and an empty file (the run's lock file) had a
    database written into it."""
    from engine.trading.runner import paths_for, resume_halts

    report = _load(args)
    db, log = paths_for(report, args.state_db, args.log)
    if _nothing_saved(db):
        print(f"{db}: no state yet (nothing has run): no halt to end, nothing written")
        return EXIT_OK
    store, journal, now = _state_at(db, log, secrets=_keys_to_mask(args))
    try:
        resumed = resume_halts(store, journal, now)  # what it ended, read in the transaction that ends them
    finally:
        journal.close()
        store.close()
    print(resumed.text)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """The status page (engine/operator/status_page.py): read-only but for its token-guarded halt/resume buttons.
    A non-loopback bind without HYDRA_SERVE_TOKEN is refused before anything is read (exit 2)."""
    import os

    from engine.operator.status_page import TOKEN_ENV, ServeRefused, check_bind, make_server
    from engine.trading.runner import paths_for

    token = os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        check_bind(args.host, token)
    except ServeRefused as exc:
        raise InvalidInput(f"error: {exc}") from None
    report = _load(args)
    db, log = paths_for(report, args.state_db, args.log)
    try:
        # settings.yaml's own state path: its folder is made by a halt as by the first run; a --state-db's is not
        server = make_server(report, db, log, args.host, args.port, token, _keys_to_mask(args), make_folder=args.state_db is None)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    buttons = "halt/resume need the token" if token else f"halt/resume are off ({TOKEN_ENV} is not set)"
    print(f"status page on {server.url} (state {db}; {buttons}); Ctrl-C stops it.")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.app.close()
    return EXIT_OK


def cmd_why(args: argparse.Namespace) -> int:
    """Reads the bot's saved state and the last tick's facts (engine/operator/why.py): works while `run` runs."""
    import json

    from engine.config.checks import trading_bots
    from engine.core.clock import SystemClock
    from engine.core.names import did_you_mean
    from engine.core.store import StateStore
    from engine.operator.why import WhyError, explain, render
    from engine.trading.runner import max_tick_age, paths_for, state_now

    report = _load(args)
    assert report.config is not None
    bots = [bot.bot_id for _path, bot in trading_bots(report.config.bots)]
    if args.bot not in bots:  # bad usage whatever the state: said before the state file is looked at
        raise InvalidInput(f"error: no bot '{args.bot}' in bots.yaml{did_you_mean(args.bot, bots)} (bots: {', '.join(bots)})")
    db, _log = paths_for(report, args.state_db, args.log)
    if _nothing_saved(db):
        print(f"{db}: no state yet (nothing has run)", file=sys.stderr)
        return EXIT_FAILURE
    store = StateStore(db, reads_only=True)
    try:
        with store.read_snapshot():  # the facts, the machines, the halts and the tick of one moment (see `status`)
            now, _simulated = state_now(store, SystemClock().now())  # a simulation's halts run on its own clock
            record = explain(store, report, args.bot, now)
            # a real-time state's last tick, as `status` says it: the facts of an engine stuck or stopped hours ago
            # read as the bot's present, with nothing beside them saying how old they are
            assert report.config is not None  # `health`'s default max age
            tick = _tick_said(store, max_tick_age(report.config.settings.runner.loop_interval_seconds), _local(report))
    except WhyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.close()
    record["stale"] = "STALE" in tick
    if args.json:
        print(json.dumps(record, indent=2, default=str))
        return EXIT_OK
    first, *rest = render(record, _local(report).tz).split("\n")
    print("\n".join([first + (tick if record["stale"] else ""), *rest]))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """The trading day (or days) for review, from SQLite and the JSONL (engine/operator/report.py); plotly is
    imported only for --out."""
    from engine.core.clock import SystemClock
    from engine.core.money import money
    from engine.core.store import StateStore
    from engine.operator.local import LocalTime
    from engine.operator.report import PROMPT_FILE, build_report, counting_zone, fill_prompt, render_html, render_text
    from engine.trading.runner import state_now

    if args.prompt_file is not None:
        if not args.prompt:
            raise InvalidInput("--prompt-file goes with --prompt")
        _given_path("--prompt-file", args.prompt_file, folder=False)
    if args.out is not None:
        _output_file("--out", args.out)
        _output_not_an_input("--out", args.out, args)
    asked = _report_days(args)  # bad usage whatever the state: said before the state file is looked at
    files = _reading_files(args)  # works while a config, machine or rule file is mid-edit
    db, log = files.db, files.log
    if args.out is not None:
        _output_not_an_input("--out", args.out, args, paths=files.configured)
    if _nothing_saved(db):
        print(f"{db}: no state yet (nothing has run)", file=sys.stderr)
        return EXIT_FAILURE
    store = StateStore(db, reads_only=True)
    try:
        with store.read_snapshot():  # the P&L, the trades and the halts of one moment (see `status`)
            # the zone the file's days are counted in: one zone for all of it (settings.yaml's said beside it, when
            # it can be read)
            local = counting_zone(store, files.local or LocalTime("UTC"))
            now, _simulated = state_now(store, SystemClock().now())
            first, last = asked or (local.day(now), local.day(now))
            data = build_report(store, log, first, last, local, now, files.local.name if files.local else None)
    finally:
        store.close()
    if args.out:
        _write_output("--out", args.out, render_html(data, local))
        print(f"wrote {args.out}: {data.period_text} ({len(data.trades)} trades, P&L {money(data.total_pnl)} USD)")
    if args.prompt:
        try:
            prompt = fill_prompt(data, local, args.prompt_file)
        except OSError as exc:
            raise InvalidInput(f"--prompt: cannot read {exc.filename}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # a template saved in another encoding, or a binary file named by mistake
            flag, path = ("--prompt-file", args.prompt_file) if args.prompt_file is not None else ("--prompt", PROMPT_FILE)
            where = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
            raise InvalidInput(f"{flag} {path}: not UTF-8 text ({where})") from None
        print(prompt)
    elif not args.out:
        print(render_text(data, local))
    return EXIT_OK


def _report_days(args: argparse.Namespace) -> tuple[date, date] | None:
    """--date D, or --from D --to D (either alone is that one day), else None: the state's own today (a
    simulation's simulated day), known once the state file is read. A flag given empty (`--date "$DAY"` with
    DAY unset) is a date that is not one, never "not given": that read gave today's report for the day asked."""
    from datetime import date as date_type

    def parse(flag: str, text: str) -> date_type:
        try:
            if not _DATE.fullmatch(text):  # fromisoformat also reads 20261123 and 2026-W48-1
                raise ValueError(text)
            return date_type.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{flag}: '{text}' is not a date (YYYY-MM-DD)") from None

    given = [name for name, value in (("date", args.date), ("from", args.from_), ("to", args.to)) if value is not None]
    if "date" in given and len(given) > 1:
        raise InvalidInput("give --date, or --from and --to, not both")
    if args.date is not None:
        day = parse("--date", args.date)
        return day, day
    if given:
        first = parse("--from", args.from_) if args.from_ is not None else parse("--to", args.to)
        last = parse("--to", args.to) if args.to is not None else first
        if last < first:
            raise InvalidInput(f"--to {last} is before --from {first}")
        return first, last
    return None


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}.*")
FIRST_YEAR, LAST_YEAR = 1900, 2199  # the years a date is read within (as --start and report's)


def _when(flag: str, text: str | None) -> date | datetime | None:
    """A date (YYYY-MM-DD), or an ISO datetime with its offset, within 1900-2199; None when the flag was not
    given."""
    from datetime import date as date_type
    from datetime import datetime as datetime_type

    if text is None:
        return None
    value: date_type | datetime_type | None = None
    try:
        if _DATE.fullmatch(text):
            value = date_type.fromisoformat(text)
        elif _DATETIME.fullmatch(text):
            value = datetime_type.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    if value is None:
        raise InvalidInput(f"{flag}: '{text}' is not a date (YYYY-MM-DD) or an ISO datetime with its offset")
    if re.search(r"[.,][0-9]{7,}", text):  # Python would cut the digits past the microsecond: not the time asked
        raise InvalidInput(f"{flag}: '{text}' is finer than a microsecond")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise InvalidInput(f"{flag}: '{text}' is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


def _in_order(args: argparse.Namespace, start: date | datetime | None, end: date | datetime | None) -> None:
    """--to before --from, said with the values as typed: past here they are instants (a day's start in New York or
    in system.timezone, in UTC), and the fetch's "end is not after the start" showed two equal ones. Two dates or two
    datetimes only; a date beside a datetime is the commands' own to compare."""
    from datetime import datetime as datetime_type

    if start is None or end is None or isinstance(start, datetime_type) != isinstance(end, datetime_type):
        return
    if end < start:  # both dates, or both aware datetimes (`_aware`)
        raise InvalidInput(f"--to {args.to} is before --from {args.from_}")


def _aware(flag: str, value: date | datetime | None) -> None:
    from datetime import datetime as datetime_type

    if isinstance(value, datetime_type) and value.tzinfo is None:
        raise InvalidInput(f"{flag}: {value.isoformat()} has no time zone: give an offset (e.g. +00:00) or a date")


def _bar() -> Any:
    """rich's progress bar, the same columns as `run`'s (engine/operator/console.py), on standard output."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), transient=True,
    )  # fmt: skip


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Bars from Alpaca's historical API (or the emulator, with ALPACA_DATA_BASE_URL) into `--out`/bars/, resumable
    (engine/data/fetch.py). Keys as `run --broker alpaca` reads them; crypto bars need none."""
    from engine.brokers.base import BrokerError
    from engine.brokers.factory import alpaca_environment, data_base_url, half_configured_keys, keys_configured
    from engine.brokers.symbols import asset_class_of
    from engine.config.errors import ConfigError
    from engine.data.fetch import FetchError, Timeframe, fetch, history_clients, unstorable
    from engine.paths import shown
    from engine.trading.runner import RunError, refuse_placeholder_keys

    start, end = _when("--from", args.from_), _when("--to", args.to)
    _aware("--from", start)
    _aware("--to", end)
    _in_order(args, start, end)
    try:
        timeframe = Timeframe.parse(args.timeframe)
    except ValueError as exc:
        raise InvalidInput(f"--timeframe: {exc}") from None
    symbols = list(dict.fromkeys(s.strip().upper() for s in args.symbols.split(",") if s.strip()))
    if not symbols:
        raise InvalidInput("--symbols: no symbol given (e.g. --symbols AAPL,BTC/USD)")
    refused = unstorable(symbols)
    if refused is not None:
        raise InvalidInput(f"--symbols: {refused}")
    report = _load(args)
    assert report.config is not None and start is not None and end is not None
    broker = report.config.settings.broker
    env = _env(args)
    half = half_configured_keys(env)
    if half is not None:  # as `run` says it: not a quiet fetch without keys (crypto), nor "keys are needed" (exit 1)
        raise InvalidInput(f"error: {half}")
    try:
        if keys_configured(env):
            refuse_placeholder_keys(env)
            alpaca = alpaca_environment(env, live_flag=False, orders=False, account=False)
            clients = history_clients(alpaca.key, alpaca.secret, data_base_url=alpaca.data_base_url)
        else:
            keyed = [s for s in symbols if asset_class_of(s) != "crypto"]
            if keyed:  # input to fix (exit 2), as `run --broker alpaca` without keys: no retry gets past it
                raise InvalidInput(f"error: ALPACA_KEY and ALPACA_SECRET are needed to fetch {', '.join(keyed)} (crypto "
                                   "bars need none): put your Alpaca keys in .env (see .env.example)")  # fmt: skip
            url = data_base_url(env)  # checked as with keys: an empty or unusable URL is refused, never the default
            clients = history_clients(None, None, data_base_url=url)
    except BrokerError as exc:
        if exc.kind == "config":  # keys or hosts that cannot be right: the user's to fix (exit 2)
            raise InvalidInput(f"error: {exc.message}") from None
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except RunError as exc:  # keys still .env.example's placeholders: input to fix (exit 2)
        raise InvalidInput(f"error: {exc}") from None
    per_minute = broker.max_requests_per_minute
    feed = args.feed or broker.stock_feed
    bar = _bar() if sys.stdout.isatty() else None
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task(f"{symbols[0]} (1/{len(symbols)})", total=1.0, status="")

    def progress(step: Any) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=step.fraction, description=f"{step.symbol} ({step.index + 1}/{step.symbols})",
                       status=f"{step.rows} bars, {step.requests} requests")  # fmt: skip

    from engine.core.stop import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # a service's stop: the window being written is left whole or not at all, one line
            result = fetch(clients, symbols, start, end, timeframe, args.out, progress=progress, feed=feed,
                           fmt=args.format, per_minute=per_minute)  # fmt: skip
    except ConfigError as exc:  # DataError: a stored file cannot be read (a bad bar from Alpaca is a FetchError, exit 1)
        raise InvalidInput(problems_text(exc.problems)) from None
    except ValueError as exc:
        raise InvalidInput(f"error: {exc}") from None
    except FetchError as exc:  # the data API's words in it, shown on one line (a newline, an escape: `one_line`)
        from engine.core.terminal_text import one_line

        kept = f"\n(the bars written before it stay in {shown(args.out)}; the same command resumes)" if exc.kept else ""
        if exc.nothing_stored:  # a first fetch refused before any bar: the folder is as it was, or not made
            kept = f"\n(no bar was stored: {shown(args.out)} is left as it was found)"
        print(f"error: {one_line(str(exc))}{kept}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"interrupted: the bars written stay in {shown(args.out)}; the same command resumes", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Terminated) else 130
    finally:
        if bar is not None:
            bar.stop()
    for s in result.symbols:
        if s.asked_from is None:
            line = f"{s.symbol}: nothing missing"
        else:
            line = f"{s.symbol}: {s.rows} bars written ({s.requests} request{'s' if s.requests != 1 else ''})"
        through = f", stored through {s.last.isoformat().replace('+00:00', 'Z')}" if s.last else ", no bars stored"
        where = f" in {shown(s.file)}" if s.file else ""
        note = f"; {s.note}" if s.note and s.asked_from is not None else ""
        print(line + through + where + note)
    waited = f", {result.waited_seconds:.0f} s waiting for the rate limit" if result.waited_seconds >= 1 else ""
    print(f"{result.rows} bars of {len(result.symbols)} symbols ({result.timeframe}) in {shown(result.out)}: "
          f"{result.requests} request{'s' if result.requests != 1 else ''}{waited}")  # fmt: skip
    return EXIT_OK


def cmd_backtest(args: argparse.Namespace) -> int:
    """The engine over recorded data (engine/replay/backtest.py), then the summary table and the files written."""
    from datetime import datetime as datetime_type
    from datetime import timezone

    from engine.config.errors import ConfigError
    from engine.paths import shown
    from engine.replay.backtest import BacktestError, DataBusy, MissingData, OutputFailed, run_backtest

    start, end = _when("--from", args.from_), _when("--to", args.to)
    _aware("--from", start)
    _aware("--to", end)
    _in_order(args, start, end)
    _given_path("--data", args.data, folder=True)
    if args.out is not None:
        _nameable("--out", args.out)
    if args.sweep is None and (args.jobs is not None or args.metric is not None or args.ray is not None):
        raise InvalidInput("--jobs, --metric and --ray go with --sweep")
    report = _load(args)
    assert report.config is not None
    if args.sweep is not None:
        return _backtest_sweep(args, report)
    cash = args.cash if args.cash is not None else report.config.settings.sim.starting_cash
    made = None if args.out is not None else _default_out(datetime_type.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    out: Path = args.out if made is None else made
    model = fill_model_of(args)
    secrets = _keys_to_mask(args)  # masked in the backtest's log and state file, as a run's journal masks them
    bar = _bar() if sys.stdout.isatty() else None
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("backtest", total=1.0, status="")
    local = _local(report)

    def progress(step: Any) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=step.fraction, status=f"{local(step.at)}: {step.frames} ticks, equity {step.equity:,.2f}")

    try:
        from engine.core.stop import Terminated, sigterm_raises
        from engine.trading.engine import freeze_long_lived

        freeze_long_lived()  # a process that runs one backtest: what is loaded lives as long as it
        try:
            with sigterm_raises():  # a service's stop: the ticks run so far committed, the log closed, one line
                result = run_backtest(report, args.data, start=start, end=end, cash=cash, out_dir=out,
                                      fill_model=model, progress=progress, secrets=secrets)  # fmt: skip
        except BaseException:
            _unmake(made)  # refused or stopped before it wrote anything: no empty folder left behind
            raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): what was kept said the same for both
        if bar is not None:
            bar.stop()
        import signal

        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        kept = (f"{shown(out)}/ keeps its state.db and app.jsonl up to the last tick run, and no report (summary.json "
                "is written last)") if (Path(out) / "state.db").exists() else "it had not started: nothing was written"
        print(f"{signal.Signals(signum).name}: the backtest stopped; {kept}", file=sys.stderr)
        return 128 + signum
    except MissingData as exc:
        bots = sorted({p.message.split(" ", 1)[0] for p in exc.problems})
        raise InvalidInput(f"no data for bot{'s' if len(bots) != 1 else ''} {', '.join(bots)}:\n"
                           + problems_text(exc.problems)) from None  # fmt: skip
    except ConfigError as exc:  # DataError: every problem of every file, as file:line:col
        raise InvalidInput(problems_text(exc.problems)) from None
    except (OutputFailed, DataBusy) as exc:  # a folder that cannot be used now: a runtime failure, as a full disk
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (BacktestError, ValueError) as exc:
        raise InvalidInput(f"error: {exc}") from None
    finally:
        if bar is not None:
            bar.stop()
    for note in result.notes:  # escaped: a recording's notes hold text any program wrote (a broker's error page)
        print(f"note: {escaped(note)}")
    print(backtest_table(result.summary))
    speed = f"{result.frames} ticks, {result.bar_events} bar-events in {result.wall_seconds:.2f} s"
    print(f"{local(result.start)} to {local(result.end)}: {speed}")
    print(f"wrote {shown(result.out_dir)}/: " + ", ".join(p.name for p in result.files))
    return EXIT_OK


def _backtest_sweep(args: argparse.Namespace, report: Report) -> int:
    """`backtest --sweep`: one backtest per combination (engine/replay/sweep.py), then the comparison table."""
    import os
    from datetime import datetime as datetime_type
    from datetime import timezone

    from engine.config.errors import ConfigError
    from engine.paths import shown
    from engine.replay import sweep
    from engine.replay.backtest import being_written
    from engine.replay.report import FigureNotFinite

    _given_path("--sweep", args.sweep, folder=False)
    busy = being_written(args.data)
    if busy is not None:  # told once, before the runs, not as the error of each of them
        raise RuntimeFailure(f"error: {busy}")
    metric = args.metric or sweep.DEFAULT_METRIC
    if args.ray is not None:
        try:
            import ray  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            raise InvalidInput("--ray needs the optional extra ray: pip install -e '.[ray]'") from None
    model = fill_model_of(args)  # refused before anything is written
    fees = {name: getattr(model, name) for name in FEE_FIELDS}
    made = None if args.out is not None else _default_out(datetime_type.now(timezone.utc).strftime("sweep-%Y%m%dT%H%M%SZ"))
    out: Path = args.out if made is None else made
    try:
        overrides, specs = sweep.prepare(args.sweep, report, out, machines_dir=args.machines, rules_dir=args.rules,
                                         data_dir=args.data, start=args.from_, end=args.to, cash=args.cash,
                                         fill_timing=args.fill_timing, slippage_bps=args.slippage_bps,
                                         env_file=_env_path(args), **fees)  # fmt: skip
    except BaseException as exc:
        _unmake(made)
        if isinstance(exc, ConfigError):
            raise InvalidInput(problems_text(exc.problems)) from None
        raise
    jobs = args.jobs or min(len(specs), os.cpu_count() or 1)
    pool = min(jobs, len(specs))  # the pool's size (sweep._pool_round): --jobs 64 for one run is one process
    where = f"on the Ray cluster at {args.ray}" if args.ray is not None else f"in {pool} process{'es' if pool != 1 else ''}"
    print(f"{len(specs)} run{'s' if len(specs) != 1 else ''} {where}, in {shown(out)}/")
    finished = 0

    def done(row: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        print(f"[{finished}/{len(specs)}] {row['run']}: {sweep.outcome(row)}", flush=True)

    rows = sweep.run_ray(specs, args.ray, done) if args.ray is not None else sweep.run_local(specs, jobs, done)
    rows = sweep.sweep_rows(rows, metric)
    try:
        sweep.write_csv(rows, overrides, out / "sweep.csv")
    except FigureNotFinite as exc:  # no sweep.csv: the sweep did not finish (each run's folder stays)
        print(f"error: {exc}: sweep.csv is not written", file=sys.stderr)
        return EXIT_FAILURE
    print(sweep.table(rows, overrides))
    print(f"sorted by {metric}; wrote {shown(out / 'sweep.csv')} (each run's config and state in run-NNN/)")
    return EXIT_INVALID if any(row.get("error") for row in rows) else EXIT_OK


def _default_out(stem: str) -> Path:
    """`backtests/STEM`, or `STEM-2`, `STEM-3`... when taken: made now, so that it is this command's. Named by the
    second, two backtests (or sweeps) started in one second without --out were given one folder: the second was
    refused "exists ... (give another --out)", an --out it had never given, or both ran into it. A folder that
    cannot be made is returned as it is, for the command's own check to say why (a read-only working folder)."""
    base = Path("backtests")
    for number in range(1, 1000):
        out = base / (stem if number == 1 else f"{stem}-{number}")
        try:
            out.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError:
            return out
        return out
    return base / stem  # a thousand in one second: refused by the command's own check, as any folder holding a run


def _unmake(made: Path | None) -> None:
    """The default folder made for a command that wrote nothing into it (refused, interrupted before its run)."""
    if made is not None:
        with contextlib.suppress(OSError):
            made.rmdir()  # only when empty: whatever the command wrote stays


HALTS_SHOWN = 5  # a backtest's halts listed under its table; the rest are in summary.json


def backtest_table(summary: dict[str, Any]) -> str:
    """Per bot and in total: trades, win rate, realized P&L, max drawdown (summary.json's figures); then the final
    equity and fees, and the halts (the first few)."""
    from engine.core.money import money

    def row(name: str, f: dict[str, Any]) -> list[str]:
        rate = f"{f['win_rate'] * 100:.1f} %" if f.get("win_rate") is not None else "-"
        drawdown = f"{f['max_drawdown_usd']:,.2f} ({f['max_drawdown_pct']:.2f} %)"
        return [name, str(f["trades"]), rate, money(f["realized_pnl"], group=True), drawdown]

    rows = [["bot", "trades", "win rate", "realized P&L", "max drawdown"]]
    rows += [row(bot, figures) for bot, figures in summary["bots"].items()]
    rows.append(row("total", summary["total"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows
    ]
    total = summary["total"]
    fees = money(total["fees"], sign=False, group=True)
    lines.append(f"final equity {total['final_equity']:,.2f} USD ({total['return_pct']:+.2f} %), fees {fees}")
    # a halt changes every figure above (no entry while it held): said here, not only in summary.json
    halts = total.get("halts") or []
    lines.append(f"halts: {len(halts) or 'none'}")
    for h in halts[:HALTS_SHOWN]:
        ended = h["ended_at"] or "the end"
        lines.append(f"  {escaped(str(h['scope']))} {h['started_at']} to {ended}: {escaped(str(h['reason']))}")
    if len(halts) > HALTS_SHOWN:
        lines.append(f"  and {len(halts) - HALTS_SHOWN} more (summary.json)")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.validate import validate

    started = time.perf_counter()
    _state_path("--state-db", getattr(args, "state_db", None))
    report = validate(args.config, args.machines, args.rules, getattr(args, "state_db", None))
    _live_warnings(report)
    if report.ok:
        for warning in report.warnings:  # never beside errors, as the live warnings: the errors first
            print(f"warning: {warning.headline}", file=sys.stderr)  # `headline` escapes what the user wrote
        print(f"{report.summary()} ({time.perf_counter() - started:.2f} s)")
        return EXIT_OK
    print(escaped(_without_keys(args, problems_text(report.problems)), keep=_LINE_BREAKS))
    return EXIT_INVALID


def _live_warnings(report: Report) -> None:
    """What `run --live` would refuse of these files (engine/trading/live_gate.py), as warnings: a paper account
    may be run with a thinner kill switch or preflight on purpose, so `--validate` passes them (exit 0), but says
    so, in the live refusal's own words. Not beside errors: a preflight.yaml gone is one, and would be told twice."""
    if not report.ok or report.config is None or report.book is None:  # the errors first: one may be the cause
        return
    from engine.trading.live_gate import live_refusal

    refusal = live_refusal(report.config.bots, report.book)
    for line in refusal.splitlines() if refusal is not None else ():
        print(escaped(f"warning: `run --live` would refuse: {line}"), file=sys.stderr)


_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _positive(what: str, most: float, least: float | None = None) -> Callable[[str], float]:
    """An argparse type for a positive number of `what` (seconds, an amount in USD), written as a number is (digits,
    a point, an exponent: Python's float() would also take '1_000', 'inf' or 'nan'), at most `most` and, when given,
    at least `least`."""

    def parse(text: str) -> float:
        if not _PLAIN_NUMBER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"not {what} (digits, a point for a fraction, e.g. 25000.50): {text!r}")
        value = float(text)
        if not 0 < value <= most or (least is not None and value < least):
            name = what.removeprefix("a ").removeprefix("an ")
            floor = f"a positive {name}" if least is None else f"{what} of at least {least:g}"
            raise argparse.ArgumentTypeError(f"must be {floor}, at most {most:,.0f}: {text!r}")
        return value

    return parse


_positive_seconds = _positive("a number of seconds", 366 * 86400)
# As sim.starting_cash: at least a cent. The simulated account shows cents, so less read as an equity of 0, the
# daily P&L (a percent of it) could not be read, and the replay halted at its first tick on the kill switch.
_positive_usd = _positive("an amount in USD", 1e12, least=0.01)


def _fill_number(what: str, example: str) -> Callable[[str], float]:
    """An argparse type for a fill model's number (`what`, e.g. "a number of basis points"): written as a number is
    (float() alone took '1_0' for 10). Infinity and NaN are read, for the fill model to refuse with its own range
    (`FillModel.__post_init__`), as a negative number is."""

    def parse(text: str) -> float:
        if not (_PLAIN_NUMBER.fullmatch(text.strip()) or re.fullmatch(r"[+-]?(inf|infinity|nan)", text.strip(), re.IGNORECASE)):
            raise argparse.ArgumentTypeError(f"not {what} (digits, a point for a fraction, e.g. {example}): {text!r}")
        return float(text)

    return parse


_bps = _fill_number("a number of basis points", "2.5")
_usd_each = _fill_number("an amount in USD", "0.005")
_fee_fraction = _fill_number("a fraction of the trade", "0.0025")


FEE_FIELDS = ("commission_per_share", "commission_per_contract", "crypto_maker_fee", "crypto_taker_fee")


def fill_model_of(args: argparse.Namespace) -> FillModel:
    """The fill model the backtest flags ask for (`--fill-timing`, `--slippage-bps`, the commissions, the crypto
    fees): one place for a single backtest and a sweep; InvalidInput (exit 2) with the model's own range when it
    refuses a value."""
    from engine.replay.fills import FillModel

    try:
        return FillModel(timing=args.fill_timing, slippage_bps=args.slippage_bps,
                         commission_per_share=args.commission_per_share,
                         commission_per_contract=args.commission_per_contract,
                         crypto_maker_fee=args.crypto_maker_fee, crypto_taker_fee=args.crypto_taker_fee)  # fmt: skip
    except ValueError as exc:
        raise InvalidInput(f"fill model: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535: out of range is bad usage (exit 2), not a bind() traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Trading Hydra: a fail-closed trading engine whose bots are state machines declared in YAML.",
    )
    parser.add_argument("--validate", action="store_true", help="check every config, machine and rule file")
    _add_file_options(parser, top_level=True)
    # `--validate --state-db PATH` is `validate --state-db PATH` (README): the saved machine states checked too. Kept
    # apart (`top_`) from a command's own, whose default None would write over one given before the command
    for flag, dest in (("--state-db", "top_state_db"), ("--log", "top_log")):
        what = "SQLite state file" if flag == "--state-db" else "JSONL event log"
        parser.add_argument(flag, dest=dest, type=_path, default=None, metavar="PATH", help=f"{what}, as after a command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser("validate", help="check every config, machine and rule file")
    _add_file_options(validate)
    _add_state_options(validate)  # the saved machine states are checked too
    validate.set_defaults(handler=cmd_validate)

    kinds = ["system", "portfolio", "momentum", "options", "crypto"]
    diagram = commands.add_parser("diagram", help="draw a machine (Mermaid by default)")
    diagram.add_argument("kind", choices=kinds)
    diagram.add_argument("--bot", help="highlight this bot's persisted current state")
    diagram.add_argument("--format", choices=["mermaid", "svg", "png"], default="mermaid")
    diagram.add_argument("-o", "--output", type=_path, help="write to this file instead of standard output")
    _add_file_options(diagram)
    _add_state_options(diagram)
    diagram.set_defaults(handler=cmd_diagram)

    table = commands.add_parser("table", help="print a machine's transition table as Markdown")
    table.add_argument("kind", choices=kinds)
    table.add_argument("-o", "--output", type=_path, help="write to this file instead of standard output")
    _add_file_options(table)
    table.set_defaults(handler=cmd_table)

    test = commands.add_parser("test", help="run the scenario tables in machines/scenarios/")
    _add_file_options(test)
    test.set_defaults(handler=cmd_test)

    snapshot = commands.add_parser("snapshot", help="print what the engine sees: one broker snapshot as JSON")
    snapshot.add_argument("--broker", choices=["sim", "alpaca"], help="default: settings.yaml broker.name (auto)")
    snapshot.add_argument("--start", metavar="ISO_DATETIME", help="sim only: the simulated time (default: a market open)")
    _add_file_options(snapshot)
    snapshot.set_defaults(handler=cmd_snapshot)

    emulator = commands.add_parser("emulator", help="serve the simulated exchange as a local Alpaca API on 127.0.0.1")
    emulator.add_argument("--port", type=_port, default=8765, help="default: 8765 (0: any free port)")
    emulator.add_argument("--start", metavar="ISO_DATETIME", help="simulated time at launch (default: real time)")
    _add_file_options(emulator)
    emulator.set_defaults(handler=cmd_emulator)

    run = commands.add_parser("run", help="run the trading loop (sim: a simulated trading day, no keys needed)")
    run.add_argument("--broker", choices=["sim", "alpaca"], help="default: settings.yaml broker.name (auto: sim without keys)")
    # one count of ticks or the other: `--once --ticks 5` ran one tick without a word
    how_long = run.add_mutually_exclusive_group()
    how_long.add_argument("--once", action="store_true", help="one tick, then stop")
    how_long.add_argument("--ticks", type=_positive_int, metavar="N", help="stop after N ticks")
    run.add_argument("--start", metavar="ISO_DATETIME", help="sim only: simulated start (default: a market open)")
    run.add_argument("--until-close", action="store_true", help="stop at the market close (the sim default)")
    run.add_argument("--live", action="store_true", help="trade real money: also needs ALPACA_PAPER=false")
    run.add_argument("--quiet", action="store_true", help="no live progress (also when standard output is not a terminal)")
    run.add_argument(
        "--record", type=_path, metavar="DIR", help="write every quote the engine reads to DIR/quotes/ (docs/data.md)"
    )
    run.add_argument(
        "--record-append", action="store_true", help="--record into a DIR holding an earlier run's recording: continue it"
    )
    _add_file_options(run)
    _add_state_options(run)
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="machines, the halt, positions by bot, today's counters")
    _add_file_options(status)
    _add_state_options(status)
    status.set_defaults(handler=cmd_status)

    halt = commands.add_parser("halt", help="halt all trading until `resume` (survives restarts)")
    halt.add_argument("--reason", required=True, help="why: recorded in SQLite and the log")
    _add_file_options(halt)
    _add_state_options(halt)
    halt.set_defaults(handler=cmd_halt)

    resume = commands.add_parser("resume", help="end every halt; the system re-arms only through preflight")
    _add_file_options(resume)
    _add_state_options(resume)
    resume.set_defaults(handler=cmd_resume)

    health = commands.add_parser("health", help="exit 0 if the last tick is recent, 1 if not (for health checks)")
    health.add_argument(
        "--max-age", type=_positive_seconds, metavar="SECONDS", help="default: 3 x runner.loop_interval_seconds + 30"
    )
    _add_file_options(health)
    _add_state_options(health)
    health.set_defaults(handler=cmd_health)

    serve = commands.add_parser("serve", help="a live status page on 127.0.0.1 (and /api/status as JSON)")
    serve.add_argument("--port", type=_port, default=8766, help="default: 8766 (0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1; any other address needs HYDRA_SERVE_TOKEN")
    _add_file_options(serve)
    _add_state_options(serve)
    serve.set_defaults(handler=cmd_serve)

    why = commands.add_parser("why", help="why a bot is in its state and did not trade: guards, facts, preflight")
    why.add_argument("bot", metavar="BOT", help="a bot_id from bots.yaml")
    why.add_argument("--json", action="store_true", help="the same as JSON, for tools")
    _add_file_options(why)
    _add_state_options(why)
    why.set_defaults(handler=cmd_why)

    report = commands.add_parser("report", help="a trading day (or days) for review: trades, P&L, halts, blocks, guards")
    report.add_argument("--date", metavar="YYYY-MM-DD", help="one trading day (default: the state's today: a simulation's own)")
    report.add_argument("--from", dest="from_", metavar="YYYY-MM-DD", help="first day of a range")
    report.add_argument("--to", metavar="YYYY-MM-DD", help="last day of a range")
    report.add_argument("--out", type=_path, metavar="FILE.html", help="write a self-contained HTML report with the equity curve")
    report.add_argument("--prompt", action="store_true", help="print tools/analyst_prompt.txt filled with the period's figures")
    report.add_argument("--prompt-file", type=_path, default=None, metavar="FILE", help="another prompt template for --prompt")
    _add_file_options(report)
    _add_state_options(report)
    report.set_defaults(handler=cmd_report)

    data = commands.add_parser("data", help="market data: `data fetch` downloads history bars")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    fetch = data_commands.add_parser("fetch", help="download bars from Alpaca's history into a data folder (resumable)")
    fetch.add_argument("--symbols", required=True, metavar="A,B", help="comma-separated: AAPL,BTC/USD, an option's OCC symbol")
    fetch.add_argument("--from", dest="from_", required=True, metavar="DATE", help="first New York day (or an ISO datetime)")
    fetch.add_argument("--to", required=True, metavar="DATE", help="last New York day, included (or an ISO datetime, excluded)")
    fetch.add_argument("--timeframe", default="1Min", help="[1-59]Min, [1-23]Hour or 1Day (default: 1Min)")
    fetch.add_argument("--out", type=_path, required=True, metavar="DIR", help="the data folder (bars go to DIR/bars/)")
    fetch.add_argument("--feed", choices=["iex", "sip"], help="stock feed (default: settings.yaml broker.stock_feed)")
    fetch.add_argument("--format", choices=["parquet", "csv"], help="of a new file (default: parquet); a file keeps its own")
    _add_file_options(fetch)
    fetch.set_defaults(handler=cmd_data_fetch)

    backtest = commands.add_parser("backtest", help="run the engine over recorded data; write the report to --out")
    backtest.add_argument("--data", type=_path, required=True, metavar="DIR", help="a data folder (docs/data.md)")
    backtest.add_argument("--from", dest="from_", metavar="DATE", help="first day in system.timezone (default: the data's)")
    backtest.add_argument("--to", metavar="DATE", help="last day, included (default: the data's)")
    backtest.add_argument(
        "--cash", type=_positive_usd, metavar="USD", help="starting cash (default: settings.yaml sim.starting_cash)"
    )
    backtest.add_argument("--out", type=_path, metavar="DIR", help="a new folder (default: backtests/<UTC time>/)")
    backtest.add_argument("--fill-timing", choices=["next", "submit"], default="next",
                          help="next: the row after the order (default); submit: the quote standing, as the sim")  # fmt: skip
    backtest.add_argument("--slippage-bps", type=_bps, default=2.0, metavar="BPS", help="market orders' slippage (default: 2)")
    backtest.add_argument("--commission-per-share", type=_usd_each, default=0.0, metavar="USD",
                          help="charged in cash on each share filled, at most 10 (default: 0, Alpaca's)")  # fmt: skip
    backtest.add_argument("--commission-per-contract", type=_usd_each, default=0.0, metavar="USD",
                          help="charged in cash on each option contract filled, at most 100 (default: 0, Alpaca's)")  # fmt: skip
    backtest.add_argument("--crypto-maker-fee", type=_fee_fraction, default=0.0015, metavar="FRACTION",
                          help="crypto limit orders' fee, of what is received (default: 0.0015, lowest tier)")  # fmt: skip
    backtest.add_argument("--crypto-taker-fee", type=_fee_fraction, default=0.0025, metavar="FRACTION",
                          help="crypto market orders' fee, of what is received (default: 0.0025, lowest tier)")  # fmt: skip
    backtest.add_argument("--sweep", type=_path, metavar="FILE", help="a grid of bots.yaml overrides: one backtest each")
    backtest.add_argument("--jobs", type=_positive_int, metavar="N", help="with --sweep: parallel processes (default: CPUs)")
    backtest.add_argument("--metric", choices=["realized_pnl", "trades", "win_rate", "sharpe", "max_drawdown_pct", "return_pct"],
                          help="with --sweep: sort sweep.csv by (default: return_pct)")  # fmt: skip
    backtest.add_argument("--ray", metavar="ADDRESS", help="with --sweep: run on this Ray cluster (needs the ray extra)")
    _add_file_options(backtest)
    backtest.set_defaults(handler=cmd_backtest)

    facts = commands.add_parser("facts", help="list the facts guards may use, with types and units")
    facts.add_argument("kind", choices=kinds, nargs="?", default=None, help="a machine kind (default: every kind)")
    facts.set_defaults(handler=cmd_facts)
    return parser


class GuardedOutput:
    """Standard output (text or its binary `buffer`) that a write can no longer fail: the first error (the reader
    of a pipe gone, `| head`; a full disk under `> file`; /dev/full) is kept in `failure.error` and everything
    written after it is dropped. A print is never where a command stops: an exception from it stopped `run`
    before its first tick and `backtest` after its last one (both exit 0, the run having done nothing), made
    `health`'s verdict exit 0 whatever it was, and any error but EPIPE (ENOSPC, EIO) was a traceback. Once
    failed, the descriptor is pointed at /dev/null, so the interpreter's own flush at exit does not fail again."""

    def __init__(self, inner: Any, failure: OutputFailure):
        self._inner = inner
        self._failure = failure

    def write(self, data: Any) -> int:
        if self._failure.error is None:
            try:
                return int(self._inner.write(data))
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed (a signal's sys.stdout.close())
                self._failure.failed(exc, self._inner)
        return len(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._failure.error is None:
            try:
                self._inner.flush()
            except (OSError, ValueError) as exc:
                self._failure.failed(exc, self._inner)

    @property
    def closed(self) -> bool:  # its own, not through __getattr__: read around every signal call (process_state)
        return bool(self._inner.closed)

    @property
    def buffer(self) -> GuardedOutput:
        return GuardedOutput(self._inner.buffer, self._failure)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self._inner, name)


class OutputFailure:
    """The first error met writing standard output, or None (`GuardedOutput`)."""

    def __init__(self) -> None:
        self.error: OSError | ValueError | None = None

    def failed(self, exc: OSError | ValueError, stream: Any) -> None:
        self.error = exc
        with contextlib.suppress(Exception):  # a stream without a descriptor (a test's capture) holds nothing
            fd = stream.fileno()
            import os

            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def line(self) -> str:
        assert self.error is not None
        why = self.error.strerror if isinstance(self.error, OSError) else None
        return (f"error: standard output cannot be written ({why or self.error}): the command ran to its "
                "end, but what it printed is not all there")


def main(argv: Sequence[str] | None = None) -> int:
    """The command, with standard output guarded (`GuardedOutput`): the command does all it does whether or not
    its output can be written. When it could not be (a full disk, a terminal gone), one line on stderr says so,
    and a command that would have exited 0 exits 1 (a runtime failure). A reader that closed the pipe (`status |
    head`) chose to read no more: nothing is said, and the command's code stands (`health`'s verdict, `run`'s
    completion)."""
    failure = OutputFailure()
    stdout = sys.stdout
    if stdout is None:  # started with standard output closed (`>&-`): what it is given is dropped, as asked
        # print() alone drops it; a command's own `sys.stdout.flush()` (serve, run) or `.isatty()` (backtest, data
        # fetch) was an AttributeError traceback on None: they are given the null device instead.
        import os

        # errors="replace": nothing is shown, so nothing to escape; strict, a path of bytes that are not UTF-8
        # (`--state-db` of such a name, printed by `status`) was a UnicodeEncodeError traceback on the null device
        with open(os.devnull, "w", encoding="utf-8", errors="replace") as null:
            sys.stdout = null
            try:
                return _main(argv)
            finally:
                sys.stdout = stdout  # None, as it was given
    _escape_what_cannot_be_shown(stdout)
    sys.stdout = GuardedOutput(stdout, failure)
    try:
        code = _main(argv)
    finally:
        sys.stdout = stdout
    if failure.error is not None and not isinstance(failure.error, BrokenPipeError):
        with contextlib.suppress(OSError):  # a terminal gone (SIGHUP) takes stderr with it: the code still says it
            print(failure.line(), file=sys.stderr)
        return code or EXIT_FAILURE
    return code  # the reader stopped reading (`| head`): it had what it wanted, and the command's own code stands


def _escape_what_cannot_be_shown(stream: Any) -> None:
    """A character standard output's encoding has no byte for (a path in `日本/` or a halt reason in `é` under a
    non-UTF-8 locale: LANG=de_DE.ISO-8859-1, LC_ALL=C without Python's UTF-8 mode, PYTHONIOENCODING=ascii) is
    written as a backslash escape, as Python writes stderr: it raised UnicodeEncodeError from the first print of
    such a path, a traceback with the run's state file already open. Bytes the locale could not decode (a path
    given on the command line, held as lone surrogates) are written back as they came, as Python's own
    `surrogateescape` does; every other character is written as before."""
    with contextlib.suppress(AttributeError, ValueError, OSError):  # not a text stream (a test's capture): as it is
        if stream.errors in ("strict", "surrogateescape"):
            stream.reconfigure(errors=_SHOWN)


def _shown_anyway(exc: UnicodeError) -> tuple[bytes, int]:
    """The encoding error handler of `_escape_what_cannot_be_shown`: surrogateescape's bytes, else an escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(code - 0xDC00)
        else:
            out += char.encode("ascii", "backslashreplace")
    return bytes(out), exc.end


_SHOWN = "trading_hydra_shown"
codecs.register_error(_SHOWN, _shown_anyway)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None and not args.validate:
        parser.print_help()
        return EXIT_INVALID
    if args.validate and args.command not in (None, "validate"):
        # `--validate run` ran the trading loop, `--validate halt` wrote a halt: the flag was dropped without a
        # word. A check of the files must never trade or change the state, so the two together are bad usage.
        parser.error(f"--validate checks the files and does nothing else: give it alone, or run '{args.command}' without it")
    _state_before_the_command(parser, args)
    _remember_keys(args)
    try:
        return int(cmd_validate(args) if args.command is None else args.handler(args))
    except InvalidInput as exc:
        said = escaped(_without_keys(args, str(exc)), keep=_LINE_BREAKS)
        print(said, file=sys.stdout if args.command in (None, "validate") else sys.stderr)
        return EXIT_INVALID
    except RuntimeFailure as exc:
        print(escaped(_without_keys(args, str(exc)), keep=_LINE_BREAKS), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C before `run` holds the signals, or in a command that reads: one line
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = file_error_code(exc)
        if code is None:  # a bug: its traceback as Python prints it, the keys masked (the message may quote one)
            import traceback

            print(_without_keys(args, "".join(traceback.format_exception(exc))), end="", file=sys.stderr)
            return EXIT_FAILURE
        print(escaped(_without_keys(args, f"error: {getattr(exc, 'message', exc)}"), keep=_LINE_BREAKS), file=sys.stderr)
        return code


def _state_before_the_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--state-db and --log given before the command, as --config is: `--validate --state-db PATH` was bad usage
    (exit 2) where `validate --state-db PATH` checked the saved states. Given on both sides with two values, or
    before a command that reads no state file, they are refused rather than one dropped without a word."""
    for flag, name in (("--state-db", "state_db"), ("--log", "log")):
        before = getattr(args, f"top_{name}")
        if before is None:
            continue
        if args.command is None:
            setattr(args, name, before)
            continue
        if not hasattr(args, name):
            parser.error(f"{flag}: '{args.command}' reads no state file; remove {flag}")
        after = getattr(args, name)
        if after is not None and after != before:
            parser.error(f"{flag} is given twice, before and after '{args.command}', with two paths: give it once")
        setattr(args, name, before)


def _remember_keys(args: argparse.Namespace) -> None:
    """The keys and the token of the environment and `.env`, told to every cut of text before the command reads
    anything (`journal.remember_secrets_from`, read at the first cut): a problem's excerpt or a data file's cell is
    cut where it is found, long before `_without_keys` masks the error, and a token cut there kept a piece no exact
    mask finds. A `.env` that cannot be read leaves the environment's keys, as for `_without_keys`."""
    from engine.core.journal import remember_secrets_from

    try:
        env_file: Path | None = _env_path(args).absolute()  # named now: the first cut may come from another folder
    except Exception:  # a config path that cannot be resolved: the environment's keys still are masked
        env_file = None

    def keys() -> tuple[str, ...]:
        from engine.brokers.factory import read_environment
        from engine.trading.runner import maskable_keys

        try:
            return maskable_keys(read_environment(env_file))
        except Exception:  # a .env that cannot be read: the command says so itself
            return maskable_keys(read_environment())

    remember_secrets_from(keys)


def _without_keys(args: argparse.Namespace, text: str) -> str:
    """`text` with the Alpaca keys of the environment and `.env` masked, as the journal masks them: an error
    quotes what the user wrote, and a key pasted where a value belongs (a time zone, a bot's name) was printed
    back by the problem refusing it, on a terminal, in CI's log and in a service's journal. A `.env` or a config
    folder that cannot be read leaves the environment's keys to mask (`_keys_to_mask`)."""
    from engine.core.journal import Secrets

    try:
        keys = _keys_to_mask(args)
    except Exception:  # a config path that cannot be resolved: the environment's keys still are masked
        from engine.brokers.factory import read_environment
        from engine.trading.runner import maskable_keys

        keys = maskable_keys(read_environment())
    try:
        return Secrets(keys).masked(text)
    except ValueError:  # no mask can stand in for these keys: the text holding one is not shown
        return text if not any(k in text for k in keys) else "error: the message holds an Alpaca key and is not shown"


def file_error_code(exc: BaseException) -> int | None:
    """The exit code of an error met on the state file or the log (both name the file and what is wrong in
    their one line), or None for any other error. Whatever command meets a file it cannot use stops there,
    having decided nothing on it: 1 when the file cannot be used now (read-only, locked, a full disk), 2 when
    its content or kind is wrong (damaged, another application's, a newer schema, a folder)."""
    from engine.core.journal import JournalError
    from engine.core.store import StateFileError

    if isinstance(exc, (StateFileError, JournalError)):
        return EXIT_FAILURE if exc.runtime else EXIT_INVALID
    return None


if __name__ == "__main__":
    sys.exit(main())
