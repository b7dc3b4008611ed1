"""`python -m engine` (engine/__main__.py) as a process: what is left running in it once the command is done."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.paths import PROJECT_ROOT

LEAVES_A_THREAD = """

import threading

_FOREVER = threading.Event()


def _leaves_a_thread(prices, params):
    threading.Thread(target=_FOREVER.wait, name="users-own").start()  # not a daemon, and never ends
    return False


SIGNALS = {"momentum_breakout": _leaves_a_thread}
"""


def copy_of_the_project(root: Path, signals_tail: str) -> Path:
    """The engine, config, machines, rules and schemas copied to `root`, with `signals_tail` added to the copy's
    engine/strategy/signals.py (the user's module as a process imports it; the repository's is never edited)."""
    shutil.copytree(PROJECT_ROOT / "engine", root / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("config", "machines", "rules", "schemas"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder)
    signals = root / "engine" / "strategy" / "signals.py"
    signals.write_text(signals.read_text(encoding="utf-8") + signals_tail, encoding="utf-8")
    return root


def test_a_thread_a_signal_left_running_does_not_hold_the_process_at_its_exit(tmp_path: Path) -> None:
    """From a run: a signal that started a (non-daemon) thread that never ended kept `run` from exiting once its
    summary was printed, for as long as the thread ran: for ever here, and under systemd until its stop timed out
    and killed it. Its bot halts for the thread (`signal_error`), the run ends on time, and the halt is still in
    force after a restart."""
    root = copy_of_the_project(tmp_path / "copy", LEAVES_A_THREAD)

    def engine(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, capture_output=True, text=True, timeout=60)

    ran = engine("run", "--quiet", "--ticks", "20")
    assert ran.returncode == 0, ran.stderr
    assert "thread(s) the engine did not start: users-own" in ran.stderr  # one a bot: the three share the signal
    assert "Traceback" not in ran.stderr
    again = engine("run", "--quiet", "--ticks", "3")  # halted for its signal: not asked again, no thread started
    assert again.returncode == 0 and "not waiting" not in again.stderr, again.stderr
    status = engine("status")
    assert "signal failed: started a thread that outlived the call" in status.stdout, status.stdout


@pytest.fixture
def never_answers() -> Iterator[int]:
    """A port on loopback that accepts connections and never answers: an alert destination that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield server.getsockname()[1]
    done.set()
    server.close()
    for conn in held:
        conn.close()
    acceptor.join(10)


def test_an_alert_destination_that_never_answers_does_not_hold_the_process_past_the_alerts_close(
    tmp_path: Path, never_answers: int
) -> None:
    """From a run: with a destination that accepted and never answered, `run` gave up on its alerts after 5 s
    (README: "at most 5 s is spent delivering what is queued"), printed so, and then waited on: Python's exit joins
    the workers of apprise's thread pool, daemons or not, until apprise's read timeout gave up (4 s; here the
    URL's `rto=600` would make it ten minutes). The run now ends once its alerts are given up."""
    root = copy_of_the_project(tmp_path / "copy", "")
    settings = root / "config" / "settings.yaml"
    alerts = "\nalerts:\n  enabled: true\n  urls_env: [HYDRA_ALERT_URL]\n  events: [daily_summary]\n"
    settings.write_text(settings.read_text(encoding="utf-8") + alerts, encoding="utf-8")
    env = {**os.environ, "HYDRA_ALERT_URL": f"json://127.0.0.1:{never_answers}/h?rto=600&cto=600"}
    ran = subprocess.run([sys.executable, "-m", "engine", "run", "--quiet", "--ticks", "3"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "1 undelivered" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and "not waiting" not in ran.stderr, ran.stderr


def test_ctrl_c_before_main_handles_it_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Ctrl-C in the first tens of milliseconds landed in `main` building its parser (argparse), before its own
    handler: a KeyboardInterrupt traceback and the process killed by SIGINT. Anything out of `python -m engine` as a
    KeyboardInterrupt is one line and exit 130. Made deterministic: the copy's `main` is interrupted at its start."""
    root = copy_of_the_project(tmp_path / "copy", "")
    cli = root / "engine" / "cli.py"
    cli.write_text(cli.read_text(encoding="utf-8") + "\n\ndef main(argv=None):\n    raise KeyboardInterrupt\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "engine", "status"], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "interrupted\n" and done.stdout == ""
