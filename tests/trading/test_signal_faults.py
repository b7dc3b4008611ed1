"""The user's signal code as hostile input inside a tick: what it raises or answers halts its own bot only, and
nothing it does stops the tick, the other bots or their exits (see also test_halts.py)."""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from engine.core.stop import Terminated
from engine.strategy.watchdog import watching
from tests.conftest import ProjectCopy
from tests.strategy.test_watchdog import FakeClock, hangs_after
from tests.trading.conftest import Rig


class UserStop(BaseException):
    pass


def raising(exc: BaseException) -> Any:
    def signal_function(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        raise exc

    return signal_function


def assert_halted_alone(rig: Rig, said: str) -> None:
    assert rig.engine.system.state == "armed" and not rig.events("anomaly")
    (halt,) = rig.store.halts("mom_AAPL")
    assert halt.reason == f"signal failed: {said}"
    assert rig.engine.bot("mom_AAPL").model.state == "halted"
    assert not rig.store.halts("crypto_core") and rig.engine.bot("crypto_core").model.state != "halted"


@pytest.fixture
def run_handles_sigint() -> Iterator[None]:
    """SIGINT held as `run` holds it (runner.StopSignals records a stop, never raises)."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("exc", "said"), [
    (SystemExit(3), "SystemExit: 3"),
    (GeneratorExit(), "GeneratorExit"),
    (UserStop("mine"), "UserStop: mine"),
])  # fmt: skip
def test_a_signal_raising_a_base_exception_halts_its_bot_not_the_run(rig: Rig, exc: BaseException, said: str) -> None:
    """From a run: a signal calling sys.exit() ended `run` (exit 3) at the first tick with prices, and a
    GeneratorExit with a traceback: no bot's exits were managed any more."""
    rig.engine.bot("mom_AAPL").signal = raising(exc)
    rig.ticks(30)
    assert_halted_alone(rig, said)


def test_a_keyboard_interrupt_raised_by_the_signal_under_run_halts_its_bot(rig: Rig, run_handles_sigint: None) -> None:
    """Under `run` SIGINT never raises (StopSignals records it), so a KeyboardInterrupt is the code's: it ended
    the run as 'interrupted', exit 130, as if the operator had stopped it."""
    rig.engine.bot("mom_AAPL").signal = raising(KeyboardInterrupt())
    try:
        rig.ticks(30)
    except KeyboardInterrupt:  # not let through: it would end the test session
        pytest.fail("the signal's KeyboardInterrupt ended the tick")
    assert_halted_alone(rig, "KeyboardInterrupt")


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Terminated(signal.SIGTERM)])
def test_the_operators_ctrl_c_or_sigterm_inside_a_signal_still_stops_a_backtest(rig: Rig, exc: BaseException) -> None:
    """Where Ctrl-C raises (Python's default handler: a backtest, a sweep) or SIGTERM does (`sigterm_raises`), the
    exception met inside a signal is the operator's stop: it goes on up, no bot is halted for it."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    rig.engine.bot("mom_AAPL").signal = raising(exc)
    with pytest.raises(KeyboardInterrupt):
        rig.ticks(30)
    assert not rig.store.halts("mom_AAPL")


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Nameless(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name")


class OfANamelessType(metaclass=Nameless):
    def __repr__(self) -> str:
        return "odd"


class OfANamelessError(Exception, metaclass=Nameless):
    pass


class Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(("answer", "said"), [
    (lambda prices, params: Unprintable(), "answered (an object whose repr failed) (Unprintable), not True or False"),
    (raising(Unsayable()), "Unsayable: (its message could not be read)"),
    (raising(OfANamelessError("boom")), "an exception whose type's name could not be read: boom"),
    (lambda prices, params: OfANamelessType(), "answered odd (a type whose name could not be read), not True or False"),
])  # fmt: skip
def test_an_answer_or_exception_that_cannot_be_shown_halts_each_bot_alone(rig: Rig, answer: Any, said: str) -> None:
    """The repr of the answer (or the str of the exception) raised out of `_signal`: taken for the facts'
    fault, and, with two bots sharing the signal, for the engine's: a system halt instead of two bot halts."""
    for bot_id in ("mom_AAPL", "crypto_core"):
        rig.engine.bot(bot_id).signal = answer
    rig.ticks(30)
    assert rig.engine.system.state == "armed" and not rig.events("anomaly") and not rig.events("facts_error")
    for bot_id in ("mom_AAPL", "crypto_core"):
        (halt,) = rig.store.halts(bot_id)
        assert halt.reason == f"signal failed: {said}"


def test_a_huge_answer_is_cut_short_in_the_halt(rig: Rig) -> None:
    huge: Any = "yes" * 100_000  # a signal's answer that is no bool, on purpose
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: huge
    rig.ticks(30)
    (halt,) = rig.store.halts("mom_AAPL")
    assert len(halt.reason) < 300 and halt.reason.endswith("... (str), not True or False")


def test_a_signal_cannot_change_its_parameters_for_later_ticks(rig: Rig) -> None:
    """A signal that wrote to its `params` changed what bots.yaml says for every later tick of its bot, and
    silently. Each call gets a dict of its own: a write stays in that call, and ordinary code (a deepcopy, a
    json.dumps of the params as a cache key) works, which a read-only mapping broke."""
    import copy
    import json

    before = dict(rig.engine.bot("mom_AAPL").signal_params)
    seen: list[float] = []

    def rewrites(prices: Sequence[float], params: Any) -> bool:
        seen.append(params["min_move_pct"])
        json.dumps(copy.deepcopy(params))
        params["min_move_pct"] = -100.0  # "always enter"
        return False

    rig.engine.bot("mom_AAPL").signal = rewrites
    rig.ticks(30)
    assert dict(rig.engine.bot("mom_AAPL").signal_params) == before
    assert len(seen) > 1 and set(seen) == {before["min_move_pct"]}  # every call saw bots.yaml's value
    assert not rig.store.halts("mom_AAPL")


def test_a_hung_signal_halts_its_bot_and_the_others_go_on(rig: Rig) -> None:
    clock = FakeClock()
    rig.engine.bot("mom_AAPL").signal = hangs_after(clock, 10.0)
    with watching(5.0, clock=clock, period=0.005):
        rig.ticks(30)
    assert rig.engine.system.state == "armed" and not rig.events("anomaly")
    (halt,) = rig.store.halts("mom_AAPL")
    assert halt.reason.startswith("signal failed: SignalTimeout: the signal ran past its 5 s budget")
    assert rig.engine.bot("mom_AAPL").model.state == "halted"
    assert rig.engine.bot("crypto_core").model.state != "halted" and not rig.store.halts("crypto_core")


def test_run_holds_every_signal_call_to_the_budget_in_settings(project: ProjectCopy) -> None:
    """Through `run`, with a signal that spins for ever: stopped after health.max_signal_seconds of real time
    (0.05 s here), its bot halted, not asked again while halted, and the run goes to its last tick."""
    from datetime import date

    from engine.core.clock import default_sim_start
    from engine.trading.runner import RunOptions, close_session, open_session, run
    from engine.validate import load_valid

    project.replace("config/settings.yaml", "  max_spread_pct: 1.0", "  max_signal_seconds: 0.05\n  max_spread_pct: 1.0")
    calls: list[int] = []

    def spins(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        calls.append(1)
        while True:
            pass

    report = load_valid(project.config, project.machines, project.rules)
    options = RunOptions(ticks=60, state_db=project.root / "s.db", log=project.root / "app.jsonl")
    session = open_session(report, options, {}, default_sim_start(date(2026, 11, 23)))
    try:
        session.engine.bot("mom_AAPL").signal = spins
        run(session, options)
        assert session.engine.ticks == 60
        (halt,) = session.store.halts("mom_AAPL")
        assert halt.reason.startswith("signal failed: SignalTimeout: the signal ran past its 0.05 s budget")
        assert calls == [1]  # halted for its signal: not asked again, so no tick waits on it again
        assert session.engine.bot("crypto_core").model.state != "halted"
    finally:
        close_session(session)


SECRET = "testsecret0123456789abcdefghijklmnopqrstu"


@pytest.mark.parametrize("said", [
    "x" * 280 + f" {SECRET}",  # straddling the 300-character cut of what a signal raised
    f"refused with the header APCA-API-SECRET-KEY: {SECRET}",  # whole, within it
])  # fmt: skip
def test_a_signal_error_quoting_a_key_keeps_no_part_of_it(project: ProjectCopy, clock: Any, said: str) -> None:
    """The user's code may quote a key in what it raises (an HTTP error of its own). Its message was cut to 300
    characters before the journal masked it, so a key straddling the cut kept its first characters in the log;
    and the halt's reason went to SQLite unmasked, which `status` and the status page print."""
    from tests.trading.conftest import make_rig

    rig = make_rig(project, clock, secrets=(SECRET,))
    rig.engine.bot("mom_AAPL").signal = raising(ValueError(said))
    rig.ticks(30)
    (halt,) = rig.store.halts("mom_AAPL")
    assert halt.reason.startswith("signal failed: ValueError: ") and "***" in halt.reason, halt.reason
    rig.engine.journal.flush()
    logged = rig.log.read_text(encoding="utf-8")
    for text in (halt.reason, logged):
        assert SECRET[:4] not in text and "\x1e" not in text and "\\u001e" not in text
    assert len(halt.reason) <= len("signal failed: ") + 300


@pytest.fixture
def process_kept() -> Iterator[None]:
    """Whatever a test's signal changes in the process is put back after the test, whether or not the engine did."""
    import os
    import resource
    import sys
    import warnings

    stdout, stderr, limit, cwd = sys.stdout, sys.stderr, sys.getrecursionlimit(), os.getcwd()
    tracer, profiler = sys.gettrace(), sys.getprofile()
    file_size = resource.getrlimit(resource.RLIMIT_FSIZE)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)}
    with warnings.catch_warnings():
        yield
    sys.stdout, sys.stderr = stdout, stderr
    sys.setrecursionlimit(limit)
    os.chdir(cwd)
    sys.settrace(tracer)
    sys.setprofile(profiler)
    resource.setrlimit(resource.RLIMIT_FSIZE, file_size)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _chdir(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import os
    import tempfile

    os.chdir(tempfile.gettempdir())
    return False


def _ignore_sigterm(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return False


def _ignore_sigalrm(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    return True  # an answer that would enter: never acted on


def _quiet_stdout(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import io
    import sys

    sys.stdout = io.StringIO()
    return False


def _warnings_as_errors(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import warnings

    warnings.simplefilter("error")
    return False


def _tracer(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import sys

    def tracer(frame: Any, event: str, arg: Any) -> Any:  # called on every call of the engine's, had it been left
        return None

    sys.settrace(tracer)
    return False


def _file_size_limit(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return False  # the log would grow past it: SIGXFSZ kills the process


def _recursion_limit(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    import sys

    sys.setrecursionlimit(sys.getrecursionlimit() - 123)
    return False


@pytest.mark.parametrize(("function", "said"), [
    (_chdir, "changed the working directory"),
    (_ignore_sigterm, "changed the handlers of SIGTERM"),
    (_ignore_sigalrm, "changed the handlers of SIGALRM"),
    (_quiet_stdout, "replaced sys.stdout or sys.stderr"),
    (_warnings_as_errors, "made warnings errors (a warnings filter of action 'error')"),
    (_recursion_limit, "lowered the recursion limit to "),
    (_file_size_limit, "changed the resource limits RLIMIT_FSIZE"),
    (_tracer, "set a trace or profile function (sys.settrace, sys.setprofile: a debugger's breakpoint?)"),
])  # fmt: skip
def test_a_signal_that_changes_the_process_halts_its_bot_and_the_change_is_undone(
    rig: Rig, process_kept: None, function: Any, said: str
) -> None:
    """The user's code runs in the engine's process: from runs, a signal that called os.chdir() stopped `run` (its
    `--state-db rel.db` then named another file, read as replaced under it), one that set SIGTERM or SIGALRM
    aside took the orderly stop or the watchdog with it, and one that replaced sys.stdout took the run's summary.
    None of it raised, so its bot traded on. Now each is set back after the call, and its bot halts, named."""
    import os
    import sys
    import warnings

    before = (os.getcwd(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM), sys.stdout,
              list(warnings.filters), sys.getrecursionlimit(), sys.gettrace())  # fmt: skip
    rig.engine.bot("mom_AAPL").signal = function
    rig.ticks(30)
    assert_halted_alone(rig, said + str(sys.getrecursionlimit() - 123) if said.endswith(" ") else said)
    after = (os.getcwd(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM), sys.stdout,
             list(warnings.filters), sys.getrecursionlimit(), sys.gettrace())  # fmt: skip
    assert after == before
    assert not [e for e in rig.events("order") if e.get("bot") == "mom_AAPL"]


def test_a_thread_the_signal_leaves_running_halts_its_bot_and_one_it_joins_does_not(rig: Rig) -> None:
    """A thread started by a signal and still running when the call returns runs the user's code beyond the
    watchdog, and a non-daemon one held `run`'s process at its exit for as long as it ran. A pool the signal
    shuts down before it answers leaves nothing behind: its bot trades on."""
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    def leaves_one(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        threading.Thread(target=release.wait, daemon=True).start()
        return False

    def joins_its_pool(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        with ThreadPoolExecutor(2) as pool:
            return sum(pool.map(float, prices[-2:])) < 0

    rig.engine.bot("mom_AAPL").signal = leaves_one
    rig.engine.bot("crypto_core").signal = joins_its_pool
    try:
        rig.ticks(30)
    finally:
        release.set()
    assert_halted_alone(rig, "started a thread that outlived the call, which the engine can neither stop nor time")


def _leaves_one(release: threading.Event) -> Any:
    def signal_function(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        threading.Thread(target=release.wait, daemon=True).start()
        return False

    return signal_function


def _leaves_a_grandchild(release: threading.Event) -> Any:
    def signal_function(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        child = threading.Thread(target=lambda: threading.Thread(target=release.wait, daemon=True).start())
        child.start()
        child.join()  # the thread it started has ended; the one that one started runs on
        return False

    return signal_function


def _leaves_a_bare_one(release: threading.Event) -> Any:
    def signal_function(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        _thread.start_new_thread(release.wait, ())
        return False

    return signal_function


@pytest.mark.parametrize("leaves", [_leaves_one, _leaves_a_grandchild, _leaves_a_bare_one])
def test_only_the_threads_a_signal_call_starts_halt_its_bot_not_another_threads(rig: Rig, leaves: Any) -> None:
    """From a run with alerts on: the alerts' thread hands a message to apprise, whose pool starts a worker; when
    that happened while a signal ran (one of a few milliseconds was enough), the signal was blamed, its bot halted
    for `started a thread that outlived the call` and the kill switch closed what it held. Every thread of the
    process was counted. Now only those the call started count (from its own thread, or from one it started).
    Deterministic: the other thread starts its thread while the signal waits for it, told by events."""
    release, in_call, started = threading.Event(), threading.Event(), threading.Event()

    def alerts_thread() -> None:  # as the alerts' delivery does: a worker of its pool started whenever it needs one
        if in_call.wait(60):
            threading.Thread(target=release.wait, name="pool-worker", daemon=True).start()
            started.set()
            release.wait()  # and runs on, as the alerts' thread does

    def waits_while_another_thread_starts_one(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        if not started.is_set():
            in_call.set()
            if not started.wait(60):
                raise AssertionError("the other thread never started its own")
        return False

    elsewhere = threading.Thread(target=alerts_thread, daemon=True)
    elsewhere.start()  # before any call: the engine's own thread, running through the tick
    rig.engine.bot("mom_AAPL").signal = leaves(release)
    rig.engine.bot("crypto_core").signal = waits_while_another_thread_starts_one
    try:
        rig.ticks(30)
    finally:
        release.set()
        in_call.set()
        elsewhere.join()
    assert started.is_set()
    assert_halted_alone(rig, "started a thread that outlived the call, which the engine can neither stop nor time")


class PosesAsNumpyBool:
    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")


PosesAsNumpyBool.__module__, PosesAsNumpyBool.__name__ = "numpy", "bool_"


def test_an_answer_whose_truth_raises_halts_its_bot_alone(rig: Rig) -> None:
    """numpy's bool is taken as an answer, by its type's name; the truth of an object posing as one was read
    outside the code's protection, and what its __bool__ raised was taken for a fault of the engine's."""
    poser: Any = PosesAsNumpyBool()  # an answer of the wrong type, on purpose
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: poser
    rig.ticks(30)
    assert_halted_alone(rig, "ValueError: the truth value is ambiguous")


def test_a_signal_that_closes_standard_output_closes_only_its_stand_in(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """From a run: a signal's sys.stdout.close() closed the run's own standard output, and its summary was a
    ValueError traceback (exit 1). While signals are asked, sys.stdout is a stand-in that keeps what they print
    (engine/strategy/output.py): closing it closes nothing, and the bot trades on."""
    import sys

    def closes(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        sys.stdout.close()
        print("after the close")
        return False

    rig.engine.bot("mom_AAPL").signal = closes
    rig.ticks(5)
    assert not rig.store.halts("mom_AAPL") and not sys.stdout.closed
    print("the engine's own output")
    assert capsys.readouterr().out == "the engine's own output\n"


def test_what_a_signal_prints_is_logged_not_written_where_the_log_may_be(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """Under `run --log /dev/stdout` (a supervisor's journal) a signal's print("dbg", end="") went to the log's
    stream between two of its writes: 20 of a 20-tick run's 47 lines began with it and were no JSON. What a signal
    prints is now logged as one `signal_output` event a bot a tick, cut at 2,000 characters a stream."""
    import sys

    def chatty(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        print("dbg", len(prices), end="")
        print("x" * 5000, file=sys.stderr)
        return False

    rig.engine.bot("mom_AAPL").signal = chatty
    rig.ticks(3)
    assert capsys.readouterr() == ("", "")
    printed = [e for e in rig.events("signal_output") if e["bot"] == "mom_AAPL"]
    assert [e["stdout"] for e in printed] == ["dbg 1", "dbg 2", "dbg 3"]
    assert {e["stderr"] for e in printed} == {"x" * 2000 + "... (3001 more characters)"}
    assert not rig.store.halts("mom_AAPL") and not [e for e in rig.events("signal_output") if e["bot"] != "mom_AAPL"]


def test_a_signal_that_forks_ends_the_child_at_once_and_halts_its_bot(rig: Rig) -> None:
    """From a run: a signal that called os.fork() left two engines ticking on one account, one state file and one
    log (two summaries; the state file then read a clock gone back and a position the broker did not hold). The
    child now ends as the call returns (exit 70), before any of the engine's code runs in it, and the parent's bot
    halts for it."""
    import os

    parent = os.getpid()
    children: list[int] = []

    def forks(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        if not children:
            child = os.fork()
            if child:
                children.append(child)
            else:
                children.append(0)  # in the child: the tick must not go on from here
        return True  # an answer that would enter: never acted on

    rig.engine.bot("mom_AAPL").signal = forks
    rig.ticks(30)
    if os.getpid() != parent:  # the child went on as an engine (and through the ticks above): never past here
        os._exit(99)
    (child,) = children
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 70
    assert_halted_alone(rig, "forked the process (the child was ended: it would have gone on as a second engine)")
    assert not [e for e in rig.events("order") if e.get("bot") == "mom_AAPL"]


def test_the_budget_is_the_bots_for_the_tick_across_its_symbols(rig: Rig) -> None:
    """Each symbol's call had a budget of its own: crypto_core's two pairs, 3 s a call on a 5 s budget, held the
    tick 6 s and were never stopped (a bot of ten pairs at 4.9 s a call: 49 s a tick, every exit waiting). Its
    calls in a tick now share one budget: the second is stopped at 5 s, and the bot halts."""
    clock = FakeClock()
    stopped_at: list[float] = []

    def three_seconds_a_pair(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        clock.now += 3.0
        try:
            threading.Event().wait(1.0)  # the real time the watchdog has to stop it (past the budget: at once)
        except BaseException:
            stopped_at.append(clock.now)
            raise
        return False

    rig.engine.bot("crypto_core").signal = three_seconds_a_pair
    with watching(5.0, clock=clock, period=0.005):
        rig.ticks(3)
    (halt,) = rig.store.halts("crypto_core")
    assert halt.reason.startswith("signal failed: SignalTimeout: the signal ran past its 5 s budget"), halt.reason
    assert stopped_at == [6.0]  # in the tick's second call, the first to pass 5 s of the two
    assert not rig.store.halts("mom_AAPL") and rig.engine.system.state != "halted"


def test_what_a_library_does_on_its_first_import_inside_a_signal_is_let_be(rig: Rig, process_kept: None) -> None:
    """`import numpy` inside a signal adds warnings filters on its first call (four that ignore or always show a
    warning), and code that recurses raises the recursion limit: neither touches what the engine relies on, and
    neither halts the bot (an early version halted on any change to the filters or the limit)."""
    import sys
    import warnings

    limit = sys.getrecursionlimit()

    def imports_a_library(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        warnings.filterwarnings("ignore", message="numpy.ndarray size changed")
        warnings.simplefilter("always", UserWarning)
        sys.setrecursionlimit(limit + 1000)
        return False

    rig.engine.bot("mom_AAPL").signal = imports_a_library
    rig.ticks(30)
    assert not rig.store.halts("mom_AAPL") and rig.engine.bot("mom_AAPL").model.state != "halted"


def test_an_answer_given_after_the_budget_by_code_that_caught_the_timeout_is_none(rig: Rig) -> None:
    """Code that swallows BaseException is interrupted past its budget but not stopped (README): one that caught
    the SignalTimeout and answered True had that late answer taken, and its bot entered on it, not halted."""
    clock = FakeClock()

    def swallows_the_timeout(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        import contextlib

        clock.now += 10.0
        with contextlib.suppress(BaseException):  # the watchdog's SignalTimeout, on purpose
            threading.Event().wait(5.0)
        return True

    rig.engine.bot("mom_AAPL").signal = swallows_the_timeout
    with watching(5.0, clock=clock, period=0.005):
        rig.ticks(5)
    assert_halted_alone(rig, "the signal ran past its 5 s budget (health.max_signal_seconds), and answered all the "
                             "same (it caught the SignalTimeout raised in it)")  # fmt: skip
    assert not [e for e in rig.events("order") if e.get("bot") == "mom_AAPL"]


def test_a_tracer_that_raises_halts_its_bot_and_what_else_the_call_changed_is_set_back(rig: Rig, process_kept: None) -> None:
    """A trace function raises in the next Python call, the engine's check of what the signal changed: it
    stopped that check, so the working directory the signal had also changed stayed changed, and the next bot
    asked was halted for it. Python unsets a tracer that raised; the check runs again, and only the culprit halts."""
    import os
    import sys
    import tempfile

    here = os.getcwd()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        raise RuntimeError("a tracer that fails")

    def moves_and_traces(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        os.chdir(tempfile.gettempdir())
        sys.settrace(tracer)
        return False

    rig.engine.bot("mom_AAPL").signal = moves_and_traces
    rig.ticks(30)
    assert_halted_alone(rig, "RuntimeError: a tracer that fails")
    assert os.getcwd() == here and not rig.store.halts("opt_core")


def test_an_answer_whose_repr_never_returns_is_stopped_as_the_call_would_be(rig: Rig) -> None:
    """The repr of an answer that is no answer (and the message of what the code raised) is the user's code too,
    and was read after the call, outside its time budget: one that never returned held the tick, every exit and
    the kill switch for ever. It is read while the call is timed, and stopped as a hung call is."""
    clock = FakeClock()

    class SlowToSay:
        def __repr__(self) -> str:
            clock.now += 10.0
            threading.Event().wait(3.0)  # stopped at once past the budget; before, this wait ran out
            return "said, too late"

    slow: Any = SlowToSay()  # an answer of the wrong type, on purpose
    rig.engine.bot("mom_AAPL").signal = lambda prices, params: slow
    with watching(5.0, clock=clock, period=0.005):
        rig.ticks(3)
    (halt,) = rig.store.halts("mom_AAPL")
    assert halt.reason.startswith("signal failed: SignalTimeout: the signal ran past its 5 s budget"), halt.reason
    assert rig.engine.system.state != "halted" and not rig.store.halts("crypto_core")


def _recurses(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    return _recurses(prices, params)


def _allocates(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    return bool(bytearray(1 << 62))


@pytest.mark.parametrize(("function", "said"), [
    (_recurses, "RecursionError: maximum recursion depth exceeded"),
    (_allocates, "MemoryError"),
])  # fmt: skip
def test_a_signal_that_recurses_for_ever_or_asks_for_too_much_memory_halts_its_bot(rig: Rig, function: Any, said: str) -> None:
    """Checked, and already so: the RecursionError of real recursion and the MemoryError of a real allocation are
    the code's exceptions, raised and unwound inside the call: its bot halts alone, the tick goes on."""
    rig.engine.bot("mom_AAPL").signal = function
    rig.ticks(5)
    (halt,) = rig.store.halts("mom_AAPL")
    assert halt.reason.startswith(f"signal failed: {said}"), halt.reason
    assert rig.engine.system.state != "halted" and not rig.store.halts("crypto_core")
