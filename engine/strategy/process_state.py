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
- a resource limit (resource.setrlimit): lowered, the engine could not open its files or connections, or the
  kernel killed it (SIGXFSZ as its log grew past RLIMIT_FSIZE, SIGXCPU);
- a thread started by the signal and still running when the call returned: the engine can neither stop it nor
  time it, and a non-daemon one held the process at its exit for as long as it ran. Only the call's own threads
  count: those started during the call from the thread that runs it, or from one of those. The engine's other
  threads start theirs whenever they need one (an alert's delivery and its HTTP pool's workers, the status page's
  requests); when every thread of the process counted, a signal of a few milliseconds was blamed for an alert's
  pool starting a worker meanwhile, its bot halted and the kill switch closed what it held;
- a fork (os.fork(), multiprocessing's fork): the child went on from the signal's return as a second engine on
  the same account, state file and log: both ticked, each printed a summary, and the state file read as a clock
  gone back and a position the broker did not hold. The child now ends at once (`os._exit`), before anything of
  the engine's runs in it, and the parent's bot halts.

So the engine takes a `Baseline` before the tick's signals (`Engine._ask_signals`) and `threads()` before each call,
and `_signal` (engine/trading/facts_builder.py) compares them after each call: when any of these changed,
`restored` puts back what can be put back and says what changed, and that bot halts for it (`signal_error`), as
for an exception. What a call costs, on 2026-12-03's slow machine (10 million additions in 1.0-1.5 s): 1.7-2.6 µs,
about 30 empty function calls, where `_signal` took 1.2-2.5 µs a call without it. Threads are told by a number
read before the call and compared after (`threads()`, `_starts`): 7,424 instructions a call for `threads()` and
`restored` together, where counting the process's threads took 8,391 (callgrind, 20,000 calls). Reading the working directory
and the trace functions each call cost as much again (os.getcwd() is a system call): they are read once a tick,
and a call is known to have changed them by Python's own audit events (`os.chdir`, `sys.settrace`, ...), counted
by a hook (sys.addaudithook: it stays for the process's life, a call of `_audited` per event of any code).

Not watched, because the engine does not depend on them: the time zone (TZ and time.tzset(): every time the
engine reads or shows is aware, in system.timezone), the `random` module's seed (the simulated exchange draws from
its own generators), the `decimal` context (the engine keeps money in floats), and the process's environment.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: the C half of `signal`
import _thread
import collections
import os
import resource
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

# The handlers the engine sets or relies on. `_signal.getsignal` is what `signal.getsignal` calls, without the
# conversion of the answer to an enum that made it take 4 µs: four of them a call was more than the signal.
WATCHED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
_SIGINT, _SIGTERM, _SIGHUP, _SIGALRM = (int(sig) for sig in WATCHED_SIGNALS)  # an enum's lookup costs a call's 0.1 µs

# Audit events of what is read once a tick, not each call (the working directory, the trace functions, the
# resource limits).
AUDITED = frozenset({"os.chdir", "os.fchdir", "sys.settrace", "sys.setprofile", "resource.setrlimit", "resource.prlimit"})
_events = [0]  # how many of them this process raised

# The process's latest thread starts, oldest first, each (its number, the starting thread's ident, the Thread, or
# None for a bare `_thread` one), and the number of the latest. A call notes that number before it runs
# (`threads()`) and, only when it moved, reads which starts were its own (`_outlived`). Starts come rarely (an
# alert's delivery, a status page's request): they are noted whether a call runs or not, by `_noting`.
RECENT_STARTS = 256
_starts: collections.deque[tuple[int, int, threading.Thread | None]] = collections.deque(maxlen=RECENT_STARTS)
_latest = [0]
_starts_lock = [_thread.allocate_lock()]  # a start's number and its record, written together (starts in any thread)
# The limits whose lowering stops the engine: open files (its state file, log and broker connections could not
# be opened), file size (SIGXFSZ kills it as the log grows past it), CPU time (SIGXCPU kills it), memory, stack.
LIMITS = {
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_DATA": resource.RLIMIT_DATA,
    "RLIMIT_STACK": resource.RLIMIT_STACK,
}


def _audited(event: str, _args: tuple[Any, ...]) -> None:
    if event in AUDITED:
        _events[0] += 1


sys.addaudithook(_audited)


def _noting(start: Callable[..., Any]) -> Callable[..., Any]:
    """`start` (the `_thread` function every thread of the process starts by), noting in `_starts` who starts
    each thread, in the thread that starts it. Python 3.11 raises no audit event for a thread's start (3.13 does),
    so the functions themselves are wrapped, once, as this module is imported: `threading`'s own reference, which
    Thread.start calls (a pool's workers, a Timer), and `_thread`'s, for code that starts one bare."""

    def starting(function: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(function, "__self__", None)  # Thread.start hands over its own bound `_bootstrap`
        with _starts_lock[0]:
            _latest[0] += 1
            _starts.append((_latest[0], _thread.get_ident(), owner if isinstance(owner, threading.Thread) else None))
        return start(function, *args, **kwargs)

    starting.__wrapped__ = start  # type: ignore[attr-defined]
    starting.noting = True  # type: ignore[attr-defined]
    return starting


# (3.10-3.12: threading._start_new_thread; 3.13: threading._start_joinable_thread, _thread.start_joinable_thread)
for _module, _name in ((threading, "_start_new_thread"), (threading, "_start_joinable_thread"),
                       (_thread, "start_new_thread"), (_thread, "start_new"), (_thread, "start_joinable_thread")):  # fmt: skip
    _start = getattr(_module, _name, None)
    if _start is not None and not getattr(_start, "noting", False):  # a reload of this module wraps nothing twice
        setattr(_module, _name, _noting(_start))
if not any(getattr(getattr(threading, name, None), "noting", False) for name in ("_start_new_thread", "_start_joinable_thread")):
    raise ImportError("this Python's threading starts its threads by a function the engine does not know")

# Forks of this process, counted in the parent and in the child (a subprocess's fork and exec is none: its child
# runs no Python). The child of a fork inside a signal's call sees its own count move, and ends there.
_forks = [0]
_child_forks = [0]
os.register_at_fork(
    after_in_parent=lambda: _forks.__setitem__(0, _forks[0] + 1),
    after_in_child=lambda: _child_forks.__setitem__(0, _child_forks[0] + 1),
)
# a lock another thread held at the fork stays held in the child, for ever: a new one there (a sweep's worker)
os.register_at_fork(after_in_child=lambda: _starts_lock.__setitem__(0, _thread.allocate_lock()))

# How a child forked by a signal ends: at once, as a process the engine never was (no cleanup, no flush of what it
# shares with its parent: the log's buffer, the state file's connection). Not an exit code any command documents.
FORKED_CHILD_EXIT = 70


def _closed(stream: Any) -> bool:
    return bool(getattr(stream, "closed", False))


class Baseline:
    """What the next signal call is held to, taken before the tick's signals, and again after a call changed what
    cannot be set back (a closed stream, a working directory deleted, a fork, a thread), so that the calls after it
    are not blamed for it: each bot halts for what its own code did. The working directory and the trace functions
    are read here only: a call changing them raises an audit event (`_events`)."""

    __slots__ = (
        "child_forks", "closable", "closed", "cwd", "events", "filters", "forks", "handlers", "limit", "limits",
        "profiler", "rules", "stderr", "stdout", "tracer",
    )  # fmt: skip

    def __init__(self) -> None:
        self.retake()

    def retake(self) -> None:
        self.stdout, self.stderr, self.closed = sys.stdout, sys.stderr, _closed(sys.stdout) or _closed(sys.stderr)
        # whether each stream says if it is closed (None and a stand-in of the user's may not): read each call
        self.closable = hasattr(sys.stdout, "closed"), hasattr(sys.stderr, "closed")
        self.limit = sys.getrecursionlimit()
        self.handlers = tuple(_signal.getsignal(sig) for sig in WATCHED_SIGNALS)
        self.filters: Any = warnings.filters  # a list (typeshed says Sequence): what a restore writes back into
        self.rules = tuple(warnings.filters)
        self.tracer, self.profiler = sys.gettrace(), sys.getprofile()
        self.cwd, self.limits = _audited_settings()
        self.events, self.forks, self.child_forks = _events[0], _forks[0], _child_forks[0]


# The working directory and the resource limits as last read, and the count of audit events then: each changes only
# by an audited call (os.chdir, resource.setrlimit, ...), so while the count stands they are read again from here,
# not by seven system calls a tick (a third of a Baseline's cost).
_settings_read: list[Any] = [-1, None, {}]


def _audited_settings() -> tuple[str | None, dict[str, tuple[int, int]]]:
    if _settings_read[0] != _events[0]:
        _settings_read[:] = [_events[0], _cwd(), {name: resource.getrlimit(limit) for name, limit in LIMITS.items()}]
    return _settings_read[1], _settings_read[2]


def threads() -> int:
    """Where the process's record of thread starts stands before a call (`restored` reads the starts after it): a
    thread cannot be undone, so each call is held to the threads it started itself. A list's item, as cheap as a
    read gets: this runs before every call of every bot's signal."""
    return _latest[0]


def _outlived(since: int) -> bool:
    """Whether a thread started during the call (after start number `since`) from this thread, the one that ran
    it, or from a thread it started, still runs. A bare `_thread` one leaves nothing to ask (no handle, and the
    process's count of threads counts it only once it has begun to run, maybe after the call returned): it counts
    as running. More starts during the call than the record keeps cannot be told apart: they count as the call's
    too (no engine thread starts so many). Either doubt is the call's own making."""
    with _starts_lock[0]:
        starts = [start[1:3] for start in _starts if start[0] > since]
        latest = _latest[0]
    if latest - since > len(starts):  # forgotten, the record being full
        return True
    mine = {_thread.get_ident()}
    for starter, thread in starts:  # in order: a thread's start is noted before those it makes
        if starter not in mine:
            continue  # another thread's: the engine's own
        if thread is None or thread.is_alive():
            return True
        elif thread.ident is not None:
            mine.add(thread.ident)  # ended, yet what it started is the call's too
    return False


def _cwd() -> str | None:
    """The working directory; None when it no longer exists (deleted under the running engine: not the signal's
    doing, and no reason to fail every tick)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def restored(baseline: Baseline, threads_before: int) -> str | None:
    """None when nothing the `baseline` holds changed, and no thread the call started (after `threads_before`, what
    `threads()` answered before it) still runs; else what the
    call did, in words ("changed the working directory; started a thread ..."), once everything that can be put
    back is (a thread cannot be stopped, a fork undone, a closed stream opened again). Never raises: a setting that
    cannot be put back (the old working directory deleted meanwhile) is said so in the answer.

    The test that nothing changed is written out, each part stopping the rest when it fails: it runs after every
    call of every bot's signal (a tuple of the same values built and compared each call cost three times as much)."""
    if _child_forks[0] != baseline.child_forks:  # the child of a fork inside the call: not a second engine
        os._exit(FORKED_CHILD_EXIT)
    getsignal, handlers, filters, closable = _signal.getsignal, baseline.handlers, warnings.filters, baseline.closable
    if (
        _events[0] == baseline.events
        and _latest[0] == threads_before
        and _forks[0] == baseline.forks
        and sys.stdout is baseline.stdout
        and sys.stderr is baseline.stderr
        and getsignal(_SIGINT) is handlers[0]
        and getsignal(_SIGTERM) is handlers[1]
        and getsignal(_SIGHUP) is handlers[2]
        and getsignal(_SIGALRM) is handlers[3]
        and filters is baseline.filters
        and len(filters) == len(baseline.rules)
        and (not filters or filters[0] is baseline.rules[0])
        and sys.getrecursionlimit() >= baseline.limit
        and (baseline.closed or not ((closable[0] and sys.stdout.closed) or (closable[1] and sys.stderr.closed)))
    ):
        return None
    return _set_back(baseline, threads_before)


def _set_back(baseline: Baseline, threads_before: int) -> str | None:
    """`restored` once something changed: each setting compared, set back where it can be, and said."""
    changed: list[str] = []
    if sys.stdout is not baseline.stdout or sys.stderr is not baseline.stderr:
        sys.stdout, sys.stderr = baseline.stdout, baseline.stderr
        changed.append("replaced sys.stdout or sys.stderr")
    if (limit := sys.getrecursionlimit()) < baseline.limit:
        sys.setrecursionlimit(baseline.limit)
        changed.append(f"lowered the recursion limit to {limit}")
    moved = [
        sig
        for sig, was in zip(WATCHED_SIGNALS, baseline.handlers, strict=True)
        if (now := _signal.getsignal(sig)) is not was and now != was
    ]
    for sig, was in zip(WATCHED_SIGNALS, baseline.handlers, strict=True):
        if sig in moved and was is not None:  # None: set outside Python, which Python cannot set back
            signal.signal(sig, was)
    if moved:
        changed.append("changed the handlers of " + ", ".join(signal.Signals(sig).name for sig in moved))
    rules = tuple(warnings.filters)
    if rules != baseline.rules and any(f[0] == "error" and f not in baseline.rules for f in rules):
        warnings.filters = baseline.filters
        baseline.filters[:] = baseline.rules
        mutated = getattr(warnings, "_filters_mutated", None)  # what simplefilter itself calls (Python 3.10-3.12)
        if mutated is not None:
            mutated()
        changed.append("made warnings errors (a warnings filter of action 'error')")
    if not baseline.closed and (_closed(sys.stdout) or _closed(sys.stderr)):  # cannot be opened again: what the
        changed.append("closed sys.stdout or sys.stderr")  # engine prints there is lost
    if _events[0] != baseline.events:  # an audited change: the working directory, a trace or profile function
        changed.extend(_set_back_audited(baseline))
    if _latest[0] != threads_before and _outlived(threads_before):
        changed.append("started a thread that outlived the call, which the engine can neither stop nor time")
    if _forks[0] != baseline.forks:
        changed.append("forked the process (the child was ended: it would have gone on as a second engine)")
    baseline.retake()  # what could not be set back is the next call's starting point
    # none: a thread the call started and ended (joined), one another thread started, filters that only ignore or
    # show warnings, a higher recursion limit, a change made and undone within the call
    return "; ".join(changed) or None


def _set_back_audited(baseline: Baseline) -> list[str]:
    """What changed of the settings read once a tick, set back."""
    changed: list[str] = []
    cwd = baseline.cwd
    if cwd is not None and _cwd() != cwd:
        try:
            os.chdir(cwd)
            changed.append("changed the working directory")
        except OSError as exc:
            changed.append(f"changed the working directory, which could not be set back ({exc.strerror})")
    if sys.gettrace() is not baseline.tracer or sys.getprofile() is not baseline.profiler:
        sys.settrace(baseline.tracer)
        sys.setprofile(baseline.profiler)
        changed.append("set a trace or profile function (sys.settrace, sys.setprofile: a debugger's breakpoint?)")
    moved = [name for name, limit in LIMITS.items() if resource.getrlimit(limit) != baseline.limits[name]]
    unset = []
    for name in moved:
        try:
            resource.setrlimit(LIMITS[name], baseline.limits[name])
        except (OSError, ValueError):  # a hard limit lowered: only a privileged process may raise it again
            unset.append(name)
    if moved:
        kept = f" ({', '.join(unset)} could not be set back)" if unset else ""
        changed.append(f"changed the resource limits {', '.join(moved)}{kept}")
    return changed
