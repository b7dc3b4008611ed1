"""Alerts (engine/operator/alerts.py) delivered to a webhook receiver on 127.0.0.1 through apprise's json://.

No test sleeps to pass: retries wait `backoff(attempt)` seconds, zero here, and a stuck service is a target
blocked on an Event, released at the end."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.config.errors import ConfigError
from engine.config.loader import load_config
from engine.config.model import AlertSettings, Settings
from engine.core.clock import ManualClock, default_sim_start
from engine.core.journal import Journal, read_events
from engine.core.store import SYSTEM_SCOPE, StateStore
from engine.operator import alerts as alerts_module
from engine.operator.alerts import Alerter, AppriseTarget, Reading
from engine.paths import PROJECT_ROOT
from engine.trading.events import log_halt
from engine.trading.runner import RunError, RunOptions, Session, close_session, open_session, operator_halt, run
from engine.validate import load_valid
from tests.conftest import ProjectCopy

AT = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
NO_WAIT = lambda _attempt: 0.0  # noqa: E731


class Receiver:
    """A webhook on 127.0.0.1 that answers each POST with the next scripted status (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = deque(statuses)
        self.posts: list[tuple[int, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = receiver.statuses.popleft() if receiver.statuses else 200
                receiver.posts.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict[str, Any]]:
        return [body for status, body in self.posts if status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _settings(**alerts: Any) -> Settings:
    settings = load_config(PROJECT_ROOT / "config").settings
    return dataclasses.replace(settings, alerts=AlertSettings(enabled=True, urls_env=("HYDRA_ALERT_URL",), **alerts))


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "app.jsonl", ManualClock(AT))


def test_a_halt_is_delivered_with_its_reason_and_the_url_is_never_logged(tmp_path: Path, receiver: Receiver) -> None:
    journal = _journal(tmp_path)
    alerter = Alerter(_settings(), [AppriseTarget("HYDRA_ALERT_URL", receiver.url)], journal, backoff=NO_WAIT).start()
    log_halt(
        journal,
        scope=SYSTEM_SCOPE,
        reason="daily loss limit",
        conditions=["max_daily_loss_halt"],
        flatten=True,
        until=None,
        by="exitbot",
    )
    alerter.close(timeout=10)
    journal.close()
    [body] = receiver.delivered()
    assert body["title"] == "Trading Hydra HALT: daily loss limit"
    assert "max_daily_loss_halt" in body["message"] and "2026-11-23 07:00 PST" in body["message"]  # system.timezone
    log = (tmp_path / "app.jsonl").read_text()
    assert receiver.url.split("://")[1] not in log
    assert read_events(tmp_path / "app.jsonl")[-1] == {
        "ts": AT.isoformat(),
        "event": "alerts_closed",
        "sent": 1,
        "failed": 0,
        "dropped": 0,
        "undelivered": 0,
    }


def test_a_service_that_fails_twice_gets_the_alert_on_the_third_try(tmp_path: Path) -> None:
    receiver = Receiver(statuses=(500, 500))
    journal = _journal(tmp_path)
    alerter = Alerter(_settings(), [AppriseTarget("HYDRA_ALERT_URL", receiver.url)], journal, backoff=NO_WAIT).start()
    log_halt(
        journal,
        scope=SYSTEM_SCOPE,
        reason="broker down",
        conditions=["api_failure_halt"],
        flatten=False,
        until=None,
        by="exitbot",
    )
    alerter.close(timeout=10)
    journal.close()
    receiver.server.shutdown()
    assert [status for status, _ in receiver.posts] == [500, 500, 200]
    assert receiver.delivered()[0]["title"] == "Trading Hydra HALT: broker down"
    failed = [e for e in read_events(tmp_path / "app.jsonl") if e["event"] == "alert_failed"]
    assert [(e["attempt"], e["reason"], e["scheme"], e["target"], e["retry_in_s"]) for e in failed] == [
        (1, "HTTP 500", "json", "HYDRA_ALERT_URL", 0.0),
        (2, "HTTP 500", "json", "HYDRA_ALERT_URL", 0.0),
    ]
    assert "127.0.0.1" not in json.dumps(failed)  # the scheme only, never the URL


def test_a_dead_service_is_given_up_after_max_attempts_and_counted(tmp_path: Path) -> None:
    receiver = Receiver(statuses=(503, 503, 503))
    journal = _journal(tmp_path)
    alerter = Alerter(_settings(max_attempts=3), [AppriseTarget("HYDRA_ALERT_URL", receiver.url)], journal, backoff=NO_WAIT)
    alerter.start()
    journal.log("resume", scope="all", by="operator")
    alerter.close(timeout=10)
    journal.close()
    receiver.server.shutdown()
    events = read_events(tmp_path / "app.jsonl")
    assert [e["retry_in_s"] for e in events if e["event"] == "alert_failed"] == [0.0, 0.0, None]  # None: given up
    assert events[-1]["failed"] == 1 and events[-1]["sent"] == 0


class FakeTarget:
    name, scheme = "HYDRA_ALERT_URL", "test"

    def __init__(self, release: threading.Event | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.release = release
        self.entered = threading.Event()

    def send(self, title: str, body: str) -> str | None:
        self.entered.set()
        if self.release is not None:
            self.release.wait()
        self.sent.append((title, body))
        return None


def test_the_daily_loss_warns_once_a_day_at_80_percent_of_the_limit(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    target = FakeTarget()
    readings = iter([Reading(-0.5), Reading(-0.81, True, 99190.0), Reading(-0.9, True), Reading(-0.95, False)])
    alerter = Alerter(_settings(), [target], journal, probe=lambda: next(readings), backoff=NO_WAIT).start()
    for _ in range(4):
        journal.log("tick", system="armed")
    journal.log("trade", bot="mom_AAPL", pnl=-120.5, fees=0.0)
    alerter.close(timeout=10)
    journal.close()
    titles = [title for title, _ in target.sent]
    assert titles == [
        "Trading Hydra: daily loss -0.81 % nearing the limit",
        "Trading Hydra: the market closed (2026-11-23 07:00 PST)",
    ]
    assert "past 80 % of the 1 % limit" in target.sent[0][1]


def test_the_loss_warning_comes_again_on_the_brokers_next_day(tmp_path: Path) -> None:
    """The daily P&L is the broker's, over a New York day (equity - last_equity): its day starts at midnight New
    York, 21:00 in Los Angeles (system.timezone). Keyed by Los Angeles' date, a loss of the broker's new day,
    past 80 % of the limit at 22:00 there, was not warned of: the warning of 20:00 was the same date's."""
    clock = ManualClock(datetime(2026, 11, 24, 4, 0, tzinfo=timezone.utc))  # 20:00 Monday in Los Angeles
    journal = Journal(tmp_path / "app.jsonl", clock)
    target = FakeTarget()
    readings = iter([Reading(-0.85, False), Reading(-0.9, False), Reading(-0.86, False), Reading(-0.95, False)])
    alerter = Alerter(_settings(), [target], journal, probe=lambda: next(readings), backoff=NO_WAIT).start()
    journal.log("tick", system="armed")  # 20:00: warned
    clock.advance(1800)
    journal.log("tick", system="armed")  # 20:30, the same New York day: not again
    clock.advance(5400)
    journal.log("tick", system="armed")  # 22:00 Los Angeles, 01:00 Tuesday in New York: the broker's next day
    clock.advance(1800)
    journal.log("tick", system="armed")  # and once only
    alerter.close(timeout=10)
    journal.close()
    titles = [title for title, _ in target.sent]
    assert titles == [
        "Trading Hydra: daily loss -0.85 % nearing the limit",
        "Trading Hydra: daily loss -0.86 % nearing the limit",
    ]


def _session(project: ProjectCopy, options: RunOptions, env: dict[str, str]) -> Session:
    report = load_valid(project.config, project.machines, project.rules)
    options.state_db, options.log = project.root / "s.db", project.root / "app.jsonl"
    return open_session(report, options, env, default_sim_start(datetime(2026, 11, 23).date()))


def _enable(project: ProjectCopy, extra: str = "") -> None:
    with (project.config / "settings.yaml").open("a") as f:
        f.write(f"\nalerts:\n  enabled: true\n  urls_env: [HYDRA_ALERT_URL]\n{extra}")


def test_a_run_alerts_an_operator_halt_from_another_process_and_the_run_end(project: ProjectCopy, receiver: Receiver) -> None:
    _enable(project)
    options = RunOptions(ticks=10)
    session = _session(project, options, {"HYDRA_ALERT_URL": receiver.url})  # as read from .env
    operator = StateStore(session.store.path), Journal(session.journal.path, session.clock)

    def on_tick(_report: object) -> None:
        if session.engine.ticks == 3:  # `python -m engine halt` typed beside the run: only SQLite tells this engine
            operator_halt(*operator, "ops check", session.clock.now())

    try:
        run(session, options, on_tick=on_tick)
    finally:
        close_session(session)
        operator[0].close()
        operator[1].close()
    titles = [body["title"] for body in receiver.delivered()]
    assert titles[0] == "Trading Hydra HALT: ops check"
    assert titles[-1].startswith("Trading Hydra: the run ended (completed)")
    assert read_events(project.root / "app.jsonl")[-1]["event"] == "alerts_closed"


def test_an_alert_variable_that_is_not_set_refuses_the_run(project: ProjectCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_ALERT_URL", raising=False)
    _enable(project)
    with pytest.raises(RunError, match=r"HYDRA_ALERT_URL is not set in the environment or \.env"):
        _session(project, RunOptions(ticks=1), {})
    assert not (project.root / "app.jsonl").exists() or "tick" not in (project.root / "app.jsonl").read_text()


def test_a_stuck_service_never_slows_the_tick(project: ProjectCopy, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tick queues a heartbeat while the only target is stuck in its first send: the queue stays at its
    size (the oldest dropped, counted), the ticks stay fast, and close gives up after its timeout."""
    _enable(project, "  events: [heartbeat, fill]\n  heartbeat_minutes: 0.05\n  queue_size: 3\n")
    options = RunOptions(ticks=200)
    session = _session(project, options, {"HYDRA_ALERT_URL": receiver.url})
    release = threading.Event()
    stuck = FakeTarget(release)
    session.alerts._lanes[0].target = stuck
    tick_seconds: list[float] = []
    last = [time.perf_counter()]

    def on_tick(_report: object) -> None:
        now = time.perf_counter()
        tick_seconds.append(now - last[0])
        last[0] = now

    monkeypatch.setattr(alerts_module, "CLOSE_TIMEOUT_SECONDS", 0.05)
    alerter = session.alerts
    try:
        run(session, options, on_tick=on_tick)
        assert stuck.entered.is_set() and not stuck.sent  # the worker is inside its first send all along
        assert len(alerter._lanes[0].queue) == 3 and alerter.dropped > 150
        started = time.perf_counter()
    finally:
        close_session(session)
        release.set()
    assert time.perf_counter() - started < 2
    assert max(tick_seconds) < 0.5  # a tick on the sim takes about a millisecond; blocking would be forever
    closed = read_events(project.root / "app.jsonl")[-1]
    assert closed["event"] == "alerts_closed" and closed["undelivered"] == 4 and closed["dropped"] == alerter.dropped


def test_validate_refuses_a_url_in_clear(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> None:
    token = "123456789:AAbbCCddEEffGGhh"
    with (project.config / "settings.yaml").open("a") as f:
        f.write(f'\nalerts:\n  urls_env: ["tgram://{token}/42"]\n')  # refused even while alerts are off
    code = main(
        ["--validate", "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    )
    out = capsys.readouterr()
    assert code == 2
    assert "alerts.urls_env[0]: is a URL in clear" in out.out + out.err
    assert token not in out.out + out.err



@pytest.mark.parametrize(
    ("written", "said"),
    [
        # one URL without the brackets of a list: the schema's "is not a list" quoted it
        ("  urls_env: tgram://{token}/42\n", "alerts.urls_env: 'tgram://***' is not a list"),
        # the same URL twice: jsonschema's "has non-unique elements" quoted the list
        ("  urls_env: [tgram://{token}/42, tgram://{token}/42]\n", "has non-unique elements"),
        # a URL written as a key: "unknown key" quoted it
        ("  urls_env: [HYDRA_ALERT_URL]\n  tgram://{token}/42: 1\n", "unknown key 'tgram://***'"),
        # a YAML error on the URL's line: the excerpt under it printed the line as written, caret still in place
        ("  urls_env: [HYDRA_ALERT_URL]\n  urls_env: tgram://{token}/42\n", "duplicate key 'urls_env'"),
        # a .env pasted into settings.yaml: the line under the syntax error held the key as written
        ("  urls_env: [HYDRA_ALERT_URL]\nALPACA_SECRET={token}\n", "ALPACA_SECRET=******"),
    ],
)
def test_no_problem_with_settings_prints_a_url_it_quotes(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str], written: str, said: str
) -> None:
    token = "123456789:AAbbCCddEEffGGhhTOKEN"
    with (project.config / "settings.yaml").open("a") as f:
        f.write("\nalerts:\n" + written.format(token=token))
    code = main(
        ["--validate", "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    )
    out = capsys.readouterr()
    assert code == 2 and said in out.out + out.err, out.out + out.err
    assert token not in out.out + out.err and "AAbbCC" not in out.out + out.err

def test_apprise_is_not_imported_by_validate() -> None:
    import subprocess
    import sys

    code = "import sys, engine.cli as c; c.main(['--validate']); assert 'apprise' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, capture_output=True)


def test_an_exit_that_waits_is_alerted_by_default(tmp_path: Path) -> None:
    """A stop-loss that cannot go (the broker's positions unknown, the account's orders blocked, its last exit
    refused) is money: alerted among the default events, once a spell as the engine says it."""
    journal = _journal(tmp_path)
    target = FakeTarget()
    alerter = Alerter(_settings(), [target], journal, probe=lambda: Reading(0.0), backoff=NO_WAIT).start()
    journal.log("exit_waiting", bot="mom_AAPL", symbol="AAPL", owned=253.0, reason="the broker's positions could not be read lately")
    alerter.close(timeout=10)
    journal.close()
    [(title, body)] = [(t, b) for t, b in target.sent if "exit" in t]
    assert title == "Trading Hydra: an exit of AAPL is waiting"
    assert body.startswith("mom_AAPL: 253.0 AAPL to sell; the broker's positions could not be read lately")
    off = Alerter(_settings(events=("halt",)), [FakeTarget()], _journal(tmp_path / "b"), probe=lambda: Reading(0.0))
    assert "exit_waiting" not in off.events


def test_a_run_whose_alerts_all_failed_says_so_at_its_end(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alerts to a service that is down (here a closed port on 127.0.0.1): every failure is in the log, but the run
    ended with its usual summary and not a word on the terminal, as if the operator's phone had been told."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: each try is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HYDRA_ALERT_URL", f"json://127.0.0.1:{port}/hook?token=SECRETTOKENXYZ")
    _enable(project, "  events: [fill, daily_summary]\n  max_attempts: 1\n")
    code = main(["run", "--ticks", "60", "--quiet", "--start", "2026-11-23T09:30:00-05:00", "--config", str(project.config),
                 "--machines", str(project.machines), "--rules", str(project.rules),
                 "--state-db", str(project.root / "s.db"), "--log", str(project.root / "app.jsonl")])  # fmt: skip
    out, err = capsys.readouterr()
    closed = read_events(project.root / "app.jsonl")[-1]
    assert code == 0 and closed["event"] == "alerts_closed" and closed["failed"] > 0 and closed["sent"] == 0
    assert err.count("\n") == 1 and err.startswith(f"warning: alerts: 0 sent, {closed['failed']} failed")
    assert "alert_failed" in err and "SECRETTOKENXYZ" not in out + err


@pytest.mark.parametrize("url", ["tgram://not-a-token", ""])
def test_an_alert_url_that_cannot_be_used_is_bad_input_exit_2(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """A URL apprise refuses (or a variable left unset) is input to fix, as a bad key is: exit 2, which the
    systemd unit does not restart every 30 s, with the variable's name and never its value."""
    monkeypatch.setenv("HYDRA_ALERT_URL", url)
    _enable(project)
    code = main(["run", "--ticks", "1", "--quiet", "--config", str(project.config), "--machines", str(project.machines),
                 "--rules", str(project.rules), "--state-db", str(project.root / "s.db"),
                 "--log", str(project.root / "app.jsonl")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert "HYDRA_ALERT_URL" in err and (not url or url not in out + err)


class FailingTarget:
    name, scheme = "HYDRA_ALERT_URL_2", "test"

    def __init__(self) -> None:
        self.tries = 0

    def send(self, title: str, body: str) -> str | None:
        self.tries += 1
        return "HTTP 500"


def test_a_stuck_or_failing_destination_never_delays_the_others(tmp_path: Path) -> None:
    """Three destinations: one stuck in its send, one failing every try (retried after a long backoff), one
    well. The well one gets every alert at once: destinations are delivered to each on its own."""
    journal = _journal(tmp_path)
    release = threading.Event()
    stuck, failing, well = FakeTarget(release), FailingTarget(), FakeTarget()
    alerter = Alerter(_settings(max_attempts=3), [stuck, failing, well], journal, backoff=lambda _: 60.0).start()
    try:
        for reason in ("first", "second"):
            log_halt(journal, scope=SYSTEM_SCOPE, reason=reason, conditions=[], flatten=False, until=None, by="exitbot")
        deadline = time.monotonic() + 5
        # each lane is its own thread: on a loaded machine the failing one may make its first try after the well one
        # has delivered both (waiting for the well one alone, its count read 0)
        while (len(well.sent) < 2 or failing.tries < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [title for title, _ in well.sent] == ["Trading Hydra HALT: first", "Trading Hydra HALT: second"]
        assert failing.tries == 1  # waiting 60 s for its second try
    finally:
        alerter.close(timeout=0.2)
        release.set()
        journal.close()
    closed = read_events(tmp_path / "app.jsonl")[-1]
    assert closed["sent"] == 2 and closed["failed"] == 0 and closed["undelivered"] == 4  # 2 each: held and queued


def test_a_halt_alert_says_what_the_kill_switch_does_meanwhile(tmp_path: Path) -> None:
    """A bot's pause (its orders refused on their merits) and a bot's fault read alike in an alert ("HALT"), though
    the first keeps its positions and the second has them sold: the alert says which, by the kill switch's rule."""
    journal = _journal(tmp_path)
    target = FakeTarget()
    alerter = Alerter(_settings(), [target], journal, probe=lambda: Reading(0.0, True), backoff=NO_WAIT).start()
    log_halt(journal, scope="crypto_core", reason="orders refused repeatedly (insufficient_funds)", conditions=["refusals"],
             flatten=False, until=None, by="exitbot")  # fmt: skip
    log_halt(journal, scope="mom_AAPL", reason="signal failed: boom", conditions=["signal_error"], flatten=False, until=None,
             by="exitbot")  # fmt: skip
    alerter.close(timeout=10)
    journal.close()
    by_title = {title: body for title, body in target.sent}
    paused = by_title["Trading Hydra HALT: orders refused repeatedly (insufficient_funds)"].splitlines()[-1]
    faulted = by_title["Trading Hydra HALT: signal failed: boom"].splitlines()[-1]
    assert "its positions are kept, managed by its exits" in paused and "closes" not in paused, paused
    assert "the kill switch closes its positions" in faulted, faulted


def test_words_from_the_log_stay_on_their_line_and_sub_cent_figures_are_not_zero(tmp_path: Path) -> None:
    """A halt's reason is the operator's text or an exception's; a broker's message is the broker's. In an alert
    a newline in them forged lines ("Trading Hydra resumed" under a halt's title, a fake "scope" line) and an
    escape sequence reached whoever reads it in a terminal; `status` and the console show them escaped. The daily
    summary printed a round trip's -0.004 as -0.00 and its 0.003 of fees as 0.00."""
    journal = _journal(tmp_path)
    target = FakeTarget()
    alerter = Alerter(_settings(), [target], journal, probe=lambda: Reading(0.0, True), backoff=NO_WAIT).start()
    evil = "news\nTrading Hydra resumed\x1b[2J"
    log_halt(journal, scope=SYSTEM_SCOPE, reason=evil, conditions=["operator"], flatten=False, until=None, by="operator")
    journal.log("broker_error", operation="get_account", kind="server", reason="http", status=503, message="down\nall fine")
    journal.log("trade", bot="crypto_core", pnl=-0.004, fees=0.003)
    journal.log("run_end", reason="error: X: a\nb")
    alerter.close(timeout=10)
    journal.close()
    by_title = {title: body for title, body in target.sent}
    halt_title = "Trading Hydra HALT: news\\nTrading Hydra resumed\\x1b[2J"
    assert halt_title in by_title, list(by_title)
    assert by_title[halt_title].splitlines()[0] == "news\\nTrading Hydra resumed\\x1b[2J"
    assert len(by_title[halt_title].splitlines()) == 4
    assert by_title[halt_title].splitlines()[3].startswith("meanwhile: no entries, working entries cancelled; positions")
    broker = by_title["Trading Hydra broker error"]
    assert broker.splitlines()[0].endswith(": down\\nall fine"), broker
    summary = next(body for title, body in target.sent if title.startswith("Trading Hydra: the run ended (error: X: a\\nb)"))
    assert summary.splitlines()[1] == "crypto_core: -0.004 USD [1 trades], fees 0.003", summary
    assert "halts: news\\nTrading Hydra resumed\\x1b[2J" in summary
    assert all("\x1b" not in title + body for title, body in target.sent)


def test_the_daily_summary_says_from_when_its_figures_are(tmp_path: Path) -> None:
    """The summary at the close sums the trades this run heard since it started or since the last summary: a run
    started at 10:00 told 'total realized' without the morning's trades, under a title that reads as the day's.
    Its first line now says from when."""
    clock = ManualClock(AT)
    journal = Journal(tmp_path / "app.jsonl", clock)
    target = FakeTarget()
    readings = iter([Reading(0.0, True), Reading(0.0, False)])
    alerter = Alerter(_settings(), [target], journal, probe=lambda: next(readings), backoff=NO_WAIT).start()
    journal.log("run_start", broker="sim")
    clock.advance(3600)
    journal.log("trade", bot="mom_AAPL", pnl=-3.0, fees=0.0)
    journal.log("tick", system="armed")
    clock.advance(3600)
    journal.log("tick", system="armed")  # the market closed
    clock.advance(600)
    journal.log("run_end", reason="completed")
    alerter.close(timeout=10)
    journal.close()
    summaries = [body for title, body in target.sent if "closed" in title or "run ended" in title]
    assert [body.splitlines()[0] for body in summaries] == [
        "since 2026-11-23 07:00 PST (this run's trades and fills):",  # the run's start, not the day's
        "since 2026-11-23 09:00 PST (this run's trades and fills):",  # the close's summary
    ]
    assert "mom_AAPL: -3.00 USD [1 trades]" in summaries[0] and "mom_AAPL" not in summaries[1]


def test_alerts_enabled_with_no_event_are_refused_by_validate(project: ProjectCopy) -> None:
    """`events: []` with alerts enabled validated OK, and the run sent nothing, ever: no halt, no loss warning, no
    broker error, while settings.yaml said alerts were on (as urls_env naming no variable already was refused)."""
    with (project.config / "settings.yaml").open("a", encoding="utf-8") as f:
        f.write("\nalerts:\n  enabled: true\n  urls_env: [HYDRA_ALERT_URL]\n  events: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(project.config)
    (problem,) = caught.value.problems
    assert (problem.path, problem.line) == ("alerts.events", project.line_of("config/settings.yaml", "events: []")), problem
    assert "events lists none, so nothing would ever be sent" in problem.message
    project.replace("config/settings.yaml", "alerts:\n  enabled: true", "alerts:\n  enabled: false")
    load_config(project.config)  # alerts off: no event is what was asked


def test_a_fills_words_stay_on_their_line_in_its_title_and_body(tmp_path: Path) -> None:
    """The fill alert's title took the bot, side and symbol raw from the log, and its body the side and price: a
    newline forged a line of the alert, an escape sequence reached whoever reads it in a terminal. Every title is
    one line, whatever a handler put in it."""
    clock = ManualClock(AT)
    journal = Journal(tmp_path / "app.jsonl", clock)
    target = FakeTarget()
    alerter = Alerter(_settings(events=("fill", "heartbeat"), heartbeat_minutes=1), [target], journal,
                      probe=lambda: Reading(0.0, True), backoff=NO_WAIT).start()  # fmt: skip
    journal.log("run_start", broker="sim")
    journal.log("fill", bot="mom_AAPL\nTrading Hydra resumed", side="buy\x1b[2J", qty=1, symbol="AAPL\n", price="1\n2")
    clock.advance(120)
    journal.log("tick", system="armed\nhalt: none\x1b[8m")
    alerter.close(timeout=10)
    journal.close()
    assert [title for title, _ in target.sent] == [
        "Fill: mom_AAPL\\nTrading Hydra resumed buy\\x1b[2J AAPL\\n",
        "Trading Hydra is running",
    ]
    fill, heartbeat = (body for _, body in target.sent)
    assert len(fill.splitlines()) == 1 and "at 1\\n2 (" in fill
    assert len(heartbeat.splitlines()) == 1 and "system armed\\nhalt: none\\x1b[8m," in heartbeat
    assert all("\x1b" not in title + body for title, body in target.sent)


class RaisingTarget:
    name, scheme = "HYDRA_ALERT_URL_3", "test"

    def __init__(self) -> None:
        self.tries = 0

    def send(self, title: str, body: str) -> str | None:
        self.tries += 1
        raise RuntimeError("a plugin that raises")


def _broker_errors(settings: Settings, tmp_path: Path) -> tuple[ManualClock, Journal, FakeTarget, RaisingTarget, Alerter]:
    """A blip alerted, then an exit order refused three times within the quiet minutes that follow it. A second
    destination raises on every send: it must never stop the loop nor the other destination."""
    clock = ManualClock(AT)
    journal = Journal(tmp_path / "app.jsonl", clock)
    phone, broken = FakeTarget(), RaisingTarget()
    alerter = Alerter(settings, [phone, broken], journal, backoff=NO_WAIT).start()
    journal.log("run_start", broker="alpaca")
    journal.log("broker_error", operation="get_account", kind="server", reason="http", status=503, message="blip")
    for _ in range(3):
        clock.advance(40)
        journal.log("broker_error", operation="submit_order", kind="refused", reason="insufficient_qty", status=403,
                    message="insufficient qty available for order")  # fmt: skip
    return clock, journal, phone, broken, alerter


UNTOLD = "3 more broker errors: submit_order: refused/insufficient_qty x3"


def test_broker_errors_counted_in_the_quiet_minutes_are_told_when_they_end(tmp_path: Path) -> None:
    """After a broker_error alert the errors of the next 5 engine minutes were only counted, and told by the next
    broker error's alert alone: when the errors stopped within those minutes they were never told. They are told
    at the first tick past the minutes (engine time), with the operations that failed, and once."""
    clock, journal, phone, broken, alerter = _broker_errors(_settings(max_attempts=2), tmp_path)
    journal.log("tick", system="armed")  # 2 minutes in: still quiet
    clock.advance(180)
    journal.log("tick", system="armed")  # 5 minutes after the alert: told
    clock.advance(60)
    journal.log("tick", system="armed")
    journal.log("broker_error", operation="get_clock", kind="server", reason="http", status=503, message="again")
    alerter.close(timeout=10)
    journal.close()
    bodies = [body for title, body in phone.sent if title.startswith("Trading Hydra broker error")]
    assert len(bodies) == 3, phone.sent
    assert bodies[1].splitlines()[0] == UNTOLD
    assert "after the broker error alerted at 2026-11-23 07:00 PST" in bodies[1]
    assert bodies[2].startswith("get_clock: ") and "more" not in bodies[2]  # told already: not again
    assert broken.tries == 2 * 3 and alerter.failed == 3 and alerter.sent == 3  # the raising one: tried, counted


def test_broker_errors_untold_when_the_run_ends_are_told_at_its_end(tmp_path: Path) -> None:
    """A run that ends (run_end), or is closed without one, within the quiet minutes told nothing of the errors
    counted in them."""
    for with_run_end in (True, False):
        folder = tmp_path / str(with_run_end)
        folder.mkdir()
        _clock, journal, phone, _broken, alerter = _broker_errors(_settings(), folder)
        if with_run_end:
            journal.log("run_end", reason="SIGTERM")
        alerter.close(timeout=10)
        journal.close()
        told = [body for title, body in phone.sent if title == "Trading Hydra broker errors"]
        assert len(told) == 1 and told[0].startswith(UNTOLD), phone.sent
        if with_run_end:  # before the run's summary
            assert [t for t, _ in phone.sent].index("Trading Hydra broker errors") == 1


def test_the_summary_totals_pnl_as_status_and_report_do_not_from_trades_rounded_to_the_cent(tmp_path: Path) -> None:
    """From a run: the alerts' summary said +4.49 and -325.63 where `status` and `report` said +4.48 and -325.64. It
    added the `trade` events' P&L, each already rounded to the cent, where they round each bot's day once
    (`money.total`). It now totals the state file's trades that way, and so does the status page's equity curve:
    three trades of +1.004 are +3.01 (not 3 x 1.00), and with another bot's +1.004 the total is +4.01 (not the
    +4.02 of every trade added, then rounded)."""
    from types import SimpleNamespace
    from typing import cast

    from engine.core.money import cents, total
    from engine.core.store import TradeRow
    from engine.operator.alerts import engine_ledger
    from engine.operator.local import LocalTime
    from engine.operator.status_page import _equity

    clock = ManualClock(AT)
    journal = Journal(tmp_path / "app.jsonl", clock)
    store = StateStore(tmp_path / "s.db")
    day = AT.date()
    target = FakeTarget()
    ledger = engine_ledger(cast(Any, SimpleNamespace(store=store)))
    alerter = Alerter(_settings(), [target], journal, probe=lambda: Reading(0.0, True), backoff=NO_WAIT, ledger=ledger)
    alerter.start()
    journal.log("run_start", broker="sim")
    for bot in ["mom_AAPL", "mom_AAPL", "mom_AAPL", "crypto_core"]:
        clock.advance(60)
        at = clock.now()
        store.add_trade(TradeRow(bot, "AAPL", day, AT, at, 1.0, 100.0, 101.004, 1.004, 0.0, "take_profit"))
        store.add_realized_pnl(day, bot, 1.004)
        journal.log("trade", bot=bot, pnl=cents(1.004), fees=0.0)  # as the engine logs it (orders._close_trade)
    journal.log("run_end", reason="completed")
    alerter.close(timeout=10)
    journal.close()
    status_total = total(store.realized_pnl(day).values())  # what `status` and the status page's table say
    assert status_total == 4.01
    summary = next(body for title, body in target.sent if "run ended" in title)
    assert "mom_AAPL: +3.01 USD [3 trades]" in summary and "crypto_core: +1.00 USD [1 trades]" in summary, summary
    assert "total realized +4.01 USD" in summary, summary
    curve = _equity(store, day, LocalTime())
    assert curve["total"][-1][1] == status_total and curve["mom_AAPL"][-1][1] == 3.01
    store.close()
