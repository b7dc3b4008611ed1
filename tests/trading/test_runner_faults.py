"""Faults around a run that must never reach the user as a traceback, nor the tick as a stray exception: a second
stop signal (exit 130/143, as the README says, with the terminal left usable), a stop signal whose message
cannot be written, a lock file naming a pid no process can have, an unreadable .env.example, and Alpaca keys
too short to be masked without masking ordinary words.

The signal tests run the runner on the simulated exchange (no network) in a child process; the child signals
itself from inside the run, so nothing waits for real time to pass.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.brokers.base import BrokerError
from engine.core.journal import read_events
from engine.paths import PROJECT_ROOT
from engine.trading.runner import RunError, placeholder_keys, refuse_placeholder_keys, running_pid
from tests.conftest import ProjectCopy, read_terminal

CHILD = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from engine.trading.runner import RunOptions, StopSignals, close_session, open_session, run
from engine.validate import load_valid

config, machines, rules, root, signame, second = sys.argv[1:]
signum = getattr(signal, signame)
report = load_valid(Path(config), Path(machines), Path(rules))
start = datetime.fromisoformat("2026-11-23T09:30:00-05:00")
options = RunOptions(broker="sim", state_db=Path(root) / "s.db", log=Path(root) / "app.jsonl", ticks=1000, start=start)
session = open_session(report, options, {}, start)
with StopSignals() as stop:

    def on_tick(_report):
        if session.engine.ticks != 2:
            return
        session.journal.flush()
        if second == "no stderr":
            os.close(2)  # a supervisor's log reader gone: the handler's message cannot be written
        os.kill(os.getpid(), signum)
        while stop.reason is None:  # until the handler has run (it runs between two bytecodes of this thread)
            pass
        if second == "again":
            os.kill(os.getpid(), signum)
            print("still running after the second signal", flush=True)

    try:
        summary = run(session, options, stop, on_tick)
    finally:
        close_session(session)
print("reason", summary["reason"], "ticks", summary["ticks"], flush=True)
"""


def _child(project: ProjectCopy, signame: str, second: str, *, terminal: bool = False) -> tuple[int, str, str]:
    args = [sys.executable, "-c", CHILD, str(project.config), str(project.machines), str(project.rules), str(project.root),
            signame, second]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")} | {"TERM": "xterm-256color"}
    if not terminal:
        done = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    process = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE, cwd=PROJECT_ROOT, env=env)
    os.close(slave)
    try:
        shown = read_terminal(master)
    finally:
        _out, err = process.communicate(timeout=120)
    return process.returncode, shown, err.decode()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_second_signal_exits_at_once_with_128_plus_its_number_and_shows_the_cursor(project: ProjectCopy, signame: str) -> None:
    code, out, err = _child(project, signame, "again", terminal=True)
    signum = getattr(signal, signame)
    assert code == 128 + signum, (code, out, err)  # 130 / 143 / 129, as the README says: an exit code, not a death by signal
    assert (
        f"{signame}: stopping after the tick in progress" in err
        and f"{signame} again: exiting at once with {128 + signum}" in err
    )
    assert "still running" not in out and "reason" not in out and "Traceback" not in err
    assert "\x1b[?25h" in out  # a live view hid the cursor: it is shown again before the process goes
    events = read_events(project.root / "app.jsonl")
    assert [e["event"] for e in events].count("tick") == 2 and not [e for e in events if e["event"] == "run_end"]


def test_a_second_signal_writes_nothing_to_a_stdout_that_is_not_a_terminal(project: ProjectCopy) -> None:
    code, out, err = _child(project, "SIGTERM", "again")
    assert code == 143 and out == "", (out, err)


def test_a_stop_signal_whose_message_cannot_be_written_still_stops_cleanly(project: ProjectCopy) -> None:
    """The handler runs in the main thread wherever it stands (mid-tick included): its failed write to a closed
    stderr must not become an exception there."""
    code, out, _err = _child(project, "SIGTERM", "no stderr")
    assert code == 0 and out == "reason SIGTERM ticks 2\n", out
    assert read_events(project.root / "app.jsonl")[-1]["reason"] == "SIGTERM"


# --- `status` reads the lock file's pid; the first run reads .env.example -------------------------------------------


@pytest.mark.parametrize("text", ["99999999999999999999999\n", "0\n", "-5\n", "pid\n", "\xff\n"])
def test_a_pid_no_process_can_have_names_no_running_engine(tmp_path: Path, text: str) -> None:
    db = tmp_path / "s.db"
    Path(f"{db}.lock").write_text(text, encoding="latin-1")
    assert running_pid(db) is None  # never OverflowError from os.kill: `status` must not end in a traceback


def test_an_unreadable_env_example_still_refuses_the_shipped_placeholders(tmp_path: Path) -> None:
    example = tmp_path / ".env.example"
    example.write_bytes(b"ALPACA_KEY=\xff\xfe\n")
    assert placeholder_keys({"ALPACA_KEY": "YOUR_KEY", "ALPACA_SECRET": "real0123456789"}, example) == ["ALPACA_KEY"]


def test_keys_written_in_env_example_are_refused_without_being_quoted(tmp_path: Path) -> None:
    """Real keys written in .env.example, then the file copied to .env: refused as its placeholders, and the
    refusal quoted them (stderr, a service's journal). The shipped placeholders are still quoted."""
    key, secret = "PKREALKEYWRITTEN0123", "realsecretwrittenintheexample0123456789x"
    example = tmp_path / ".env.example"
    example.write_text(f'ALPACA_KEY="{key}"\nALPACA_SECRET="{secret}"\n')
    with pytest.raises(RunError) as refused:
        refuse_placeholder_keys({"ALPACA_KEY": key, "ALPACA_SECRET": secret}, example)
    said = str(refused.value)
    assert "ALPACA_KEY and ALPACA_SECRET still hold the placeholder of .env.example" in said
    assert key not in said and secret not in said and "the value written there" in said
    with pytest.raises(RunError, match="'YOUR_KEY'"):
        refuse_placeholder_keys({"ALPACA_KEY": "YOUR_KEY", "ALPACA_SECRET": secret}, example)


# --- Alpaca keys: refused when too short to be masked, masked wherever they appear -----------------------------------


def _api(key: str, secret: str) -> object:
    from engine.brokers.alpaca import AlpacaAPI
    from engine.brokers.ratelimit import TokenBucket
    from engine.core.clock import SystemClock

    return AlpacaAPI(key, secret, paper=True, api_base_url="http://127.0.0.1:9", data_base_url="http://127.0.0.1:9",
                     timeout_seconds=1, bucket=TokenBucket(190, SystemClock()))  # fmt: skip


@pytest.mark.parametrize(
    ("key", "secret", "name"), [("k3y", "secret0123456789", "ALPACA_KEY"), ("PKTESTKEY0123456789", "s3cr3t", "ALPACA_SECRET")]
)
def test_alpaca_keys_too_short_to_be_real_are_refused_not_left_unmasked(key: str, secret: str, name: str) -> None:
    with pytest.raises(BrokerError) as refused:
        _api(key, secret)
    assert refused.value.kind == "config" and f"{name} is shorter than 8 characters" in refused.value.message
    assert "k3y" not in str(refused.value) and "s3cr3t" not in str(refused.value)


def test_every_alpaca_message_is_masked_of_both_keys() -> None:
    from alpaca.common.exceptions import APIError

    key, secret = "PK8CHARS", "secret0123456789"  # the shortest key accepted is masked too
    api = _api(key, secret)
    error = api.to_error(APIError(f'{{"code": 40110000, "message": "key {key} with secret {secret} refused"}}'), "get_account")  # type: ignore[attr-defined]
    assert key not in str(error) and secret not in str(error) and "key *** with secret *** refused" in error.message
