"""What a signal may not change in the process around it: the settings the engine itself relies on.

A signal is the user's code, run in the engine's own process and main thread. Some of what it can do there does
not raise and does not show in its answer, yet changes how every later tick runs, for every bot:
- the process's signal handlers (SIGINT, SIGTERM, SIGHUP: `run`'s orderly stop; SIGALRM: the watchdog's). Set
  to their defaults, a Ctrl-C or SIGTERM killed the process mid-tick, without `run_end` or its summary, and the
  watchdog's next alarm killed it too (`Alarm clock`); ignored, neither stopped the run, nor a hung signal;
- sys.stdout and sys.stderr replaced (None, a file of the user's) or closed: the run's summary and its errors
  went there, or the first print after a close was a traceback;
- the recursion limit lowered (the engine's or a library's code that nests deeper raises RecursionError), and
  a warnings filter that makes warnings errors (`simplefilter("error")` would turn a library's warning into an
  exception on the order path: a system halt). A limit raised, and filters that ignore or show warnings, are
  let be: numpy's first import adds four (`import numpy` inside a signal), and the engine relies on none;
- the working directory: a `--state-db` or `--log` given as a relative path then named another file, and the
  run stopped as if its state file had been replaced, its lock and log written in the new folder;
- a trace or profile function (sys.settrace, sys.setprofile; `breakpoint()` sets one): called on every line or
  call of the engine from then on, the tick many times slower, and what it raised raised in the engine's code;
- a thread started by the signal and still running when the call returned: the engine can neither stop it nor
  time it, and a non-daemon one held the process at its exit for as long as it ran;
- a fork (os.fork(), multiprocessing's fork): the child went on from the signal's return as a second engine on
  the same account, state file and log: both ticked, each printed a summary, and the state file read as a clock
  gone back and a position the broker did not hold. The child now ends at once (`os._exit`), before anything of
  the engine's runs in it, and the parent's bot halts.

So the engine takes a `Baseline` before the tick's signals (`Engine._ask_signals`) and `counts()` before each call,
and `_signal` (engine/trading/facts_builder.py) compares them after each call: when any of these changed,
`restored` puts back what can be put back and says what changed, and that bot halts for it (`signal_error`), as
for an exception. What it costs: about a microsecond a call (`os.getcwd()`, a system call, is half of it).

Not watched, because the engine does not depend on them: the time zone (TZ and time.tzset(): every time the
engine reads or shows is aware, in system.timezone), the `random` module's seed (the simulated exchange draws from
its own generators), the `decimal` context (the engine keeps money in floats), and the process's environment.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: the C half of `signal`
import _thread
import os
import signal
import sys
import warnings
from typing import Any

# The handlers the engine sets or relies on. `_signal.getsignal` is what `signal.getsignal` calls, without the
# conversion of the answer to an enum that made it take 4 µs: four of them a call was more than the signal.
WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)

State = tuple[Any, ...]


def taken() -> State:
    """The process settings a signal may not change, in a tuple compared with `==` (identity for the objects)."""
    getsignal = _signal.getsignal
    return (
        sys.stdout,
        sys.stderr,
        sys.getrecursionlimit(),
        getsignal(signal.SIGINT),
        getsignal(signal.SIGTERM),
        getsignal(signal.SIGHUP),
        getsignal(signal.SIGALRM),
        warnings.filters,
        tuple(warnings.filters),
        _cwd(),
        getattr(sys.stdout, "closed", False) or getattr(sys.stderr, "closed", False),
        sys.gettrace(),
        sys.getprofile(),
    )


class Baseline:
    """What the next signal call is held to: the settings `taken()` before the tick's signals, taken again after a
    call changed one that cannot be set back (a closed stream, a working directory deleted), so that the calls
    after it are not blamed for it: each bot halts for what its own code did."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = taken()


_forks = [0]  # how many times this process forked (os.register_at_fork below): a subprocess's fork+exec is not one
os.register_at_fork(after_in_parent=lambda: _forks.__setitem__(0, _forks[0] + 1))

Counts = tuple[int, int, int]

# How a child forked by a signal ends: at once, as a process the engine never was (no cleanup, no flush of what it
# shares with its parent: the log's buffer, the state file's connection). Not an exit code any command documents.
FORKED_CHILD_EXIT = 70


def counts() -> Counts:
    """(threads running, the main one aside; forks of this process; its pid), taken before each call: a thread or
    a fork cannot be undone, so each call is held to its own. `threading.active_count()` takes a lock and 0.5-1 µs;
    `_thread._count()` counts the same threads without one."""
    return int(_thread._count()), _forks[0], os.getpid()


def _cwd() -> str | None:
    """The working directory; None when it no longer exists (deleted under the running engine: not the signal's
    doing, and no reason to fail every tick)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def restored(baseline: Baseline, before_call: Counts) -> str | None:
    """None when nothing `taken()` holds changed since `baseline`, and no thread or fork came since `before_call`;
    else what the call did, in words ("changed the working directory; started a thread ..."), once everything that
    can be put back is (a thread cannot be stopped, a closed stream opened again). Never raises: a setting that
    cannot be put back (the old working directory deleted meanwhile) is said so in the answer."""
    threads_before, forks_before, pid = before_call
    if os.getpid() != pid:  # the child of a fork inside the call: it must not go on as a second engine
        os._exit(FORKED_CHILD_EXIT)
    before, now, running = baseline.state, taken(), int(_thread._count())
    if now == before and running <= threads_before and _forks[0] == forks_before:
        return None
    changed: list[str] = []
    stdout, stderr, limit, *handlers = before[:7]
    filters, rules, cwd, closed, tracer, profiler = before[7:]
    if now[0] is not stdout or now[1] is not stderr:
        sys.stdout, sys.stderr = stdout, stderr
        changed.append("replaced sys.stdout or sys.stderr")
    if now[2] < limit:
        sys.setrecursionlimit(limit)
        changed.append(f"lowered the recursion limit to {now[2]}")
    moved = [sig for sig, was, is_ in zip(WATCHED_SIGNALS, handlers, now[3:7], strict=True) if was is not is_ and was != is_]
    for sig, was in zip(WATCHED_SIGNALS, handlers, strict=True):
        if sig in moved and was is not None:  # None: set outside Python, which Python cannot set back
            signal.signal(sig, was)
    if moved:
        changed.append("changed the handlers of " + ", ".join(signal.Signals(sig).name for sig in moved))
    if now[8] != rules and any(f[0] == "error" and f not in rules for f in now[8]):
        warnings.filters = filters
        filters[:] = rules
        mutated = getattr(warnings, "_filters_mutated", None)  # what simplefilter itself calls (Python 3.10-3.12)
        if mutated is not None:
            mutated()
        changed.append("made warnings errors (a warnings filter of action 'error')")
    if now[9] != cwd and cwd is not None:
        try:
            os.chdir(cwd)
            changed.append("changed the working directory")
        except OSError as exc:
            changed.append(f"changed the working directory, which could not be set back ({exc.strerror})")
    if now[10] and not closed:  # a stream the engine holds cannot be opened again: what it prints there is lost
        changed.append("closed sys.stdout or sys.stderr")
    if now[11] is not tracer or now[12] is not profiler:
        sys.settrace(tracer)
        sys.setprofile(profiler)
        changed.append("set a trace or profile function (sys.settrace, sys.setprofile: a debugger's breakpoint?)")
    if running > threads_before:
        changed.append("started a thread that outlived the call, which the engine can neither stop nor time")
    if _forks[0] != forks_before:
        changed.append("forked the process (the child was ended: it would have gone on as a second engine)")
    baseline.state = taken()  # what could not be set back is the next call's starting point
    return "; ".join(changed) or None  # none: fewer threads (one of the engine's own ended meanwhile)
