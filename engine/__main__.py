"""`python -m engine ...`: see engine/cli.py.

Ctrl-C while the engine is still being imported, or while `main` builds its parser and reads the command line
(before its own handler can answer it), ends in one line and exit code 130, never a traceback: nothing has been
opened yet. Not covered: Ctrl-C in the first few tens of milliseconds, while Python itself starts (its `site`
imports, before any line of the engine runs): Python's own traceback, exit 1 (README, Stopping).

Once the command is done, the process ends without waiting for threads it did not start as daemons: every
thread of the engine's own is one, so such a thread is the user's (a signal's, which its bot halted for:
engine/strategy/process_state.py), and a thread that never ended held `run`'s process, its summary printed and
its files closed, for as long as it ran (systemd's stop then waited for its SIGKILL).
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
left = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
if left:
    try:
        shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
        print(f"not waiting for {len(left)} thread(s) the engine did not start: {shown}", file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # stderr gone, closed or None: the code still says how it went
        pass
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
sys.exit(code)
