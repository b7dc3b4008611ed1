"""Trading strategy code the user owns: entry signals. Everything else about a bot lives in YAML.

The user's module (engine/strategy/signals.py) is imported only through `load_signals`, never at the import of
an engine module, and only by the commands that call a signal (`run`, `backtest`: cli.SIGNAL_COMMANDS): a syntax
error, a failing import or a `sys.exit()` in it is then one problem `--validate` places in the file, and the
commands that must work whatever the user's code says (`halt`, `resume`, `status`, `health`) never run it.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MODULE = "engine.strategy.signals"
SHOWN = "engine/strategy/signals.py"

SignalFunction = Callable[[Sequence[float], Mapping[str, Any]], bool]


class SignalsUnreadable(Exception):
    """engine/strategy/signals.py could not be imported, or its SIGNALS is not a dict of functions (`message`
    says which, at `line` and `col` of the file when there is a place: 0 otherwise)."""

    def __init__(self, message: str, line: int = 0, col: int = 0):
        super().__init__(message)
        self.file, self.message, self.line, self.col = SHOWN, message, line, col


_handed_out: list[Any] = []  # the module whose functions a rule book was given (at most one)

# How long the module's import may take (its top level and what it imports) before it is stopped, as a signal's
# call is (engine/strategy/watchdog.py): a top level that never returned hung `--validate`, and `run` before it
# had opened anything, while the positions of the run before went unmanaged. Generous: a heavy library's first
# import on a slow disk takes tens of seconds.
IMPORT_SECONDS = 60.0


def load_signals() -> dict[str, SignalFunction]:
    """The user's SIGNALS, from a fresh run of their module whenever an earlier rule book of this process was
    given its functions: a signal that keeps state in the module (a global counter, a cache) starts each backtest
    of a sweep as it starts a run of its own, so a sweep's results do not depend on `--jobs` or on the runs before.
    State kept elsewhere (another module, a class attribute of an imported one) is not reset: a signal must be pure.

    Its top level is the user's code too, held to what a signal's call is (`process_state`): a module that changed
    the working directory at import made every config file read after it "cannot read file: No such file", and
    one that forked went on in the child as a second `run`.

    Raises SignalsUnreadable, with the place in the file when there is one; a Ctrl-C is let through."""
    from engine.strategy import process_state
    from engine.strategy.watchdog import CALL, SignalTimeout, watching

    try:
        with watching(IMPORT_SECONDS):  # its watchdog thread started: not one the module's code left running
            baseline, threads = process_state.Baseline(), process_state.threads()
            CALL.since = CALL.clock()
            try:
                module = sys.modules.get(MODULE)
                if module is None:
                    module = importlib.import_module(MODULE)
                elif _handed_out and _handed_out[0] is module:
                    module = importlib.reload(module)
            finally:
                CALL.since = None
                changed = process_state.restored(baseline, threads)  # a fork's child ends here
    except KeyboardInterrupt:
        raise
    except SignalTimeout as exc:
        sys.modules.pop(MODULE, None)
        raise SignalsUnreadable(
            f"failed to import: it ran past {IMPORT_SECONDS:g} s and was stopped (a loop that never ends? a network "
            "call without a timeout?)",
            _line_in_signals(exc),
        ) from None
    except SyntaxError as exc:
        sys.modules.pop(MODULE, None)  # a reload that failed leaves the old module: never run code that is not the file's
        if exc.filename and not _is_signals(exc.filename):  # a module it imports
            raise SignalsUnreadable(f"failed to import: SyntaxError in {exc.filename}:{exc.lineno}: {exc.msg}") from None
        raise SignalsUnreadable(f"cannot be read: {exc.msg}", exc.lineno or 0, exc.offset or 0) from None
    except BaseException as exc:  # an import that fails, or code at its top level that raises or calls sys.exit()
        sys.modules.pop(MODULE, None)
        raise SignalsUnreadable(f"failed to import: {describe(exc)}", _line_in_signals(exc)) from None
    if changed is not None:
        sys.modules.pop(MODULE, None)
        raise SignalsUnreadable(f"at import, its code {changed}")
    signals = getattr(module, "SIGNALS", None)
    if not isinstance(signals, dict) or not all(isinstance(k, str) and callable(f) for k, f in signals.items()):
        raise SignalsUnreadable(f"SIGNALS must be a dict of names to functions, not {type(signals).__name__}")
    _handed_out[:] = [module]
    return dict(signals)


def describe(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` of an exception raised by the user's code, never raising itself (a __str__ that raises)
    and never longer than `limit` characters (a message holding a whole price history; a key it quotes, cut in
    two, masked whole: `journal.clipped`)."""
    from engine.core.journal import clipped

    return clipped(described(exc), limit)


def described(exc: BaseException) -> str:
    """`describe` uncut: for a caller that masks the keys before it cuts (`journal.quoted`), so that no cut leaves
    the first characters of a key in the message (the user's code may quote one: an HTTP error of its own)."""
    name = type_name(exc, "an exception whose type's name could not be read")
    try:
        message = str(exc)
        return f"{name}: {message}" if message else name
    except Exception:
        return f"{name}: (its message could not be read)"


def type_name(value: object, unread: str) -> str:
    """The name of what the user's code raised or answered, or `unread`: a metaclass's `__name__` may be a property
    that raises, and the engine's own words about that code would have raised with it."""
    try:
        return str(type(value).__name__)
    except Exception:
        return unread


def _line_in_signals(exc: BaseException) -> int:
    """The line of the user's module where `exc` was raised, or passed through (0: not in it)."""
    return next((f.lineno or 0 for f in reversed(traceback.extract_tb(exc.__traceback__)) if _is_signals(f.filename)), 0)


def _is_signals(filename: str) -> bool:
    return filename.replace("\\", "/").endswith(SHOWN)
