"""`python -m engine ...`: see engine/cli.py.

Ctrl-C while the engine is still being imported, or while `main` builds its parser and reads the command line
(before its own handler can answer it), ends in one line and exit code 130, never a traceback: nothing has been
opened yet. Not covered: Ctrl-C in the first few tens of milliseconds, while Python itself starts (its `site`
imports, before any line of the engine runs): Python's own traceback, exit 1 (README, Stopping).

Once the command is done, the process ends without waiting for threads it did not start as daemons: every
thread of the engine's own is one, so such a thread is the user's (a signal's, which its bot halted for:
engine/strategy/process_state.py), and a thread that never ended held `run`'s process, its summary printed and
its files closed, for as long as it ran (systemd's stop then waited for its SIGKILL).

Nor for a pool's worker still busy, daemon or not: Python's exit joins every worker of a `concurrent.futures`
thread pool (`threading._register_atexit`). apprise sends through one, from the alerts' daemon thread: a
destination that accepted and never answered held `run` past the 5 s its alerts may take at the end (README,
Alerts), until apprise's own read timeout (4 s, or a URL's `rto=`) gave up.
"""

import contextlib
import os
import sys
import threading

try:
    from engine.cli import main

    code = main()
except KeyboardInterrupt:  # its imports, or `main` before its own handler (building the parser, parsing the line)
    with contextlib.suppress(Exception, KeyboardInterrupt):  # a second Ctrl-C, or stderr gone: the code still says it
        print("interrupted", file=sys.stderr)
    sys.exit(130)


def _pool_workers_running() -> bool:
    """Whether a `concurrent.futures` thread pool has a worker alive, which Python's exit would wait for."""
    pools = sys.modules.get("concurrent.futures.thread")
    workers = getattr(pools, "_threads_queues", None) or {}  # thread -> its queue (Python 3.9 to 3.13)
    try:
        return any(worker.is_alive() for worker in list(workers))
    except RuntimeError:  # a pool started a worker as it was read: one runs
        return True


left = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
if left or _pool_workers_running():
    try:
        shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
        if left:  # a pool's worker is said by whatever started it (the alerts' `undelivered`)
            print(f"not waiting for {len(left)} thread(s) the engine did not start: {shown}", file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # stderr gone, closed or None: the code still says how it went
        pass
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
sys.exit(code)
