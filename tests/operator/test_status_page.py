"""`serve`: /api/status carries what the page shows (machines shown halted at once, diagrams, positions, today's
trades and P&L, preflight, the equity curve, times in system.timezone), and the token rules: a non-loopback bind
needs a token, reads there need it, halt/resume always need it, and a foreign Host is refused on loopback."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.sim.persist import SimPersistence
from engine.cli import main
from engine.core.store import SYSTEM_SCOPE, StateStore
from engine.operator.status_page import ServeRefused, StatusServer, check_bind, is_loopback, make_server
from engine.trading.runner import operator_halt
from engine.validate import load_valid
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig

TOKEN = "s3cret-token-for-tests"


@contextmanager
def serving(project: ProjectCopy, db: Path, log: Path, token: str | None = None) -> Iterator[StatusServer]:
    report = load_valid(project.config, project.machines, project.rules)
    server = make_server(report, db, log, "127.0.0.1", 0, token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.app.close()


def call(server: StatusServer, path: str, *, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    text = raw.decode()
    return status, (json.loads(text) if got.get("Content-Type", "").startswith("application/json") else text), got


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def halted(rig: Rig) -> Rig:
    """A simulated morning with closed trades, saved as `run` saves a simulation (so the state's own time is the
    simulated clock), then an operator halt the machines have not ticked through yet."""
    rig.until(lambda r: len(r.store.trades()) >= 2, limit=3000)
    rig.store.set_meta("broker", "sim")
    SimPersistence(rig.exchange, rig.store)()
    operator_halt(rig.store, rig.engine.journal, "news at 10:00", rig.clock.now())
    rig.engine.journal.flush()
    return rig


def test_api_status_shows_the_halt_machines_positions_trades_preflight_and_equity(project: ProjectCopy, halted: Rig) -> None:
    with serving(project, halted.store.path, halted.log) as server:
        status, record, headers = call(server, "/api/status")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert record["has_state"] and record["simulated"] is True and record["timezone"] == "America/Los_Angeles"
    assert record["halted"] is True and record["controls"] is False
    (halt,) = record["halts"]
    assert halt["scope"] == SYSTEM_SCOPE and halt["reason"] == "news at 10:00" and halt["until"] is None

    machines = {(m["kind"], m["bot"]): m for m in record["machines"]}
    assert set(machines) == {(s.kind, s.bot_id) for s in halted.store.machine_states()}
    system = machines[("system", SYSTEM_SCOPE)]
    # shown halted at once, as `status` does, though its machine moves only at its next tick
    assert system["state"] == "halted" and system["moves_at_next_tick"] and system["saved_state"] != "halted"
    diagram = system["diagram"]
    assert {s["name"] for s in diagram["states"]} == {"idle", "armed", "halted"}
    assert any(t["from"] == "armed" and t["trigger"] == "kill" and t["to"] == "halted" for t in diagram["transitions"])
    assert diagram["mermaid"].startswith("stateDiagram-v2") and f"class s_{system['saved_state']} current" in diagram["mermaid"]

    positions = {(p.bot_id, p.symbol): p.qty for p in halted.store.positions()}
    assert {(bot, p["symbol"]): p["qty"] for bot, ps in record["positions"].items() for p in ps} == positions

    trades = halted.store.trades()
    today = record["today"]
    assert today["day"] == "2026-11-23" and len(today["trades"]) == len(trades)
    assert today["pnl_by_bot"] == {b: round(v, 2) for b, v in halted.store.realized_pnl(trades[0].trading_date).items()}
    assert record["equity"]["total"][-1][1] == round(sum(t.pnl for t in trades), 2)

    assert set(record["preflight"]) == {"mom_AAPL", "opt_core", "crypto_core"}
    checks = record["preflight"]["mom_AAPL"]["checks"]
    assert checks and {"name", "ok", "error"} <= set(checks[0])
    # every time shown is in system.timezone (Los Angeles in November)
    times = re.findall(r"T\d\d:\d\d:\d\d([+-]\d\d:\d\d)", json.dumps(record))
    assert times and set(times) == {"-08:00"}


def test_the_page_is_one_self_contained_document(project: ProjectCopy, halted: Rig) -> None:
    with serving(project, halted.store.path, halted.log) as server:
        status, page, headers = call(server, "/")
        missing, body, _ = call(server, "/nope")
    assert status == 200 and page.startswith("<!DOCTYPE html>") and "/api/status" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing is downloaded
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert missing == 404 and body["ok"] is False


def test_no_state_yet_is_shown_and_the_state_file_is_not_created(project: ProjectCopy, tmp_path: Path) -> None:
    db = tmp_path / "none" / "state.db"
    with serving(project, db, tmp_path / "app.jsonl") as server:
        status, record, _ = call(server, "/api/status")
    assert status == 200 and record["has_state"] is False and record["machines"] == [] and not db.exists()


def test_loopback_needs_no_token_and_anything_else_does() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ServeRefused, match="HYDRA_SERVE_TOKEN"):
            check_bind(host, None)
        check_bind(host, TOKEN)


def test_a_network_bind_behind_a_guessable_token_is_refused() -> None:
    """The token lets whoever holds it halt and resume the engine: five characters served that to the network."""
    for short in ("short", "x" * 15):
        with pytest.raises(ServeRefused, match=f"HYDRA_SERVE_TOKEN has {len(short)} characters, under 16"):
            check_bind("0.0.0.0", short)
        check_bind("127.0.0.1", short)  # on loopback only this machine's users reach it, as without a token
    check_bind("0.0.0.0", "x" * 16)


def test_serve_on_a_network_address_without_a_token_exits_2(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HYDRA_SERVE_TOKEN", raising=False)
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--config", str(project.config)]
    assert main([*argv, "--machines", str(project.machines), "--rules", str(project.rules)]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0" in err and "HYDRA_SERVE_TOKEN" in err
    monkeypatch.setenv("HYDRA_SERVE_TOKEN", "   ")  # blank is no token
    assert main([*argv, "--machines", str(project.machines), "--rules", str(project.rules)]) == 2


def test_reads_off_loopback_need_the_token(project: ProjectCopy, halted: Rig) -> None:
    with serving(project, halted.store.path, halted.log, TOKEN) as server:
        server.app.loopback = False  # as if bound to a network address: the rules follow the bind, not the socket
        assert call(server, "/api/status")[0] == 401
        assert call(server, "/api/status", headers=bearer("wrong"))[0] == 401
        status, record, _ = call(server, "/api/status", headers=bearer(TOKEN))
        assert status == 200 and record["halted"] and record["controls"] is True
        assert call(server, "/")[0] == 200  # the page holds no data; it asks for the token


def test_a_refused_request_is_logged_without_the_token_it_carried(
    project: ProjectCopy, halted: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    # `?token=` for the page's `#token=`, or a script's guess: the 401 is logged (stderr: a service's journal),
    # and its request line held the token; so did a path a client put it in
    with serving(project, halted.store.path, halted.log, TOKEN) as server:
        server.app.loopback = False
        capsys.readouterr()
        assert call(server, f"/api/status?token={TOKEN}")[0] == 401
        assert call(server, f"/api/{TOKEN}", method="POST", headers=bearer(TOKEN))[0] == 404
        assert call(server, f"/api/halt?t={TOKEN}", method="POST", body={"reason": "x"})[0] == 401
    err = capsys.readouterr().err
    assert "GET /api/status?... HTTP/1.1" in err and "/api/*** " in err and "/api/halt?..." in err, err
    assert TOKEN not in err


def test_a_foreign_host_header_is_refused_on_loopback(project: ProjectCopy, halted: Rig) -> None:
    with serving(project, halted.store.path, halted.log, TOKEN) as server:
        port = server.server_address[1]
        assert call(server, "/api/status", headers={"Host": f"attacker.example:{port}"})[0] == 421
        assert call(server, "/api/resume", method="POST", headers={"Host": "attacker.example", **bearer(TOKEN)})[0] == 421
        assert call(server, "/api/status", headers={"Host": f"localhost:{port}"})[0] == 200
    assert halted.store.halts(open_only=True)


def test_halt_and_resume_need_the_token_and_use_the_cli_functions(project: ProjectCopy, rig: Rig) -> None:
    rig.ticks(5)
    rig.engine.journal.flush()
    with serving(project, rig.store.path, rig.log) as server:  # no token configured: the buttons are off
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "x"}, headers=bearer("anything"))
        assert status == 403 and "HYDRA_SERVE_TOKEN" in body["error"]
    with serving(project, rig.store.path, rig.log, TOKEN) as server:
        assert call(server, "/api/halt", method="POST", body={"reason": "x"})[0] == 401
        assert call(server, "/api/halt", method="POST", body={"reason": "x"}, headers=bearer(TOKEN + "x"))[0] == 401
        assert call(server, "/api/halt", method="POST", body={"reason": "  "}, headers=bearer(TOKEN))[0] == 400
        assert call(server, "/api/halt", method="GET")[0] == 404
        assert not rig.store.halts()  # nothing refused wrote anything

        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "from the page"}, headers=bearer(TOKEN))
        assert status == 200 and body["ok"]
        assert call(server, "/api/status")[1]["halts"][0]["reason"] == "from the page"
        status, body, _ = call(server, "/api/resume", method="POST", headers=bearer(TOKEN))
        assert status == 200 and body["message"].startswith("resumed: 1 halt(s) ended")
        assert call(server, "/api/status")[1]["halted"] is False

    (halt,) = StateStore(rig.store.path).halts()
    assert halt.reason == "from the page" and halt.conditions == ("operator",) and halt.ended_at is not None
    events = [e for e in rig.events() if e["event"] in ("halt", "resume")]  # logged as the CLI logs them
    assert [(e["event"], e.get("by")) for e in events] == [("halt", "operator"), ("resume", "operator")]
    assert events[0]["reason"] == "from the page"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_halt_from_the_page_the_log_cannot_take_is_said_in_force(project: ProjectCopy, rig: Rig) -> None:
    """The halt is committed before its event is written, so it stops the engine whatever the log says. The page
    answered "halt failed: JournalError: ... No space left on device", shown as "refused: ...", which reads as not
    halted; it now says the halt is in force and that its event is not in the log, as `halt` does."""
    rig.ticks(3)
    rig.engine.journal.flush()
    with serving(project, rig.store.path, Path("/dev/full"), TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "disk full"}, headers=bearer(TOKEN))
        assert status == 200 and body["ok"], body
        assert body["message"].startswith("halted: disk full") and "NOT in the log" in body["message"]
        assert "No space left on device" in body["warning"]
        assert call(server, "/api/status")[1]["halted"] is True
        status, body, _ = call(server, "/api/resume", method="POST", headers=bearer(TOKEN))
        assert status == 500 and "No space left on device" in body["error"]  # not made: its event cannot be written
        assert call(server, "/api/status")[1]["halted"] is True
    (halt,) = StateStore(rig.store.path).halts(open_only=True)
    assert halt.reason == "disk full"


def test_a_halt_from_the_page_whose_log_is_a_folder_is_said_in_force(project: ProjectCopy, rig: Rig, tmp_path: Path) -> None:
    """A log that cannot even be opened (a folder) made the page's halt fail with nothing recorded; the halt is
    now in force and the answer says its event is not in the log. A resume there is refused: nothing ends."""
    rig.ticks(3)
    rig.engine.journal.flush()
    folder = tmp_path / "logs"
    folder.mkdir()
    with serving(project, rig.store.path, folder, TOKEN) as server:
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": "typo"}, headers=bearer(TOKEN))
        assert status == 200 and body["ok"], body
        assert "NOT in the log" in body["message"] and "is a folder" in body["warning"]
        assert call(server, "/api/resume", method="POST", headers=bearer(TOKEN))[0] == 500
        assert call(server, "/api/status")[1]["halted"] is True
    (halt,) = StateStore(rig.store.path).halts(open_only=True)
    assert halt.reason == "typo"


def test_resume_from_the_page_with_no_state_file_creates_none(project: ProjectCopy, tmp_path: Path) -> None:
    """The page's resume made a state file (and a log) where there was none, and said "resumed: 0 halt(s) ended"."""
    db, log = tmp_path / "new" / "s.db", tmp_path / "new" / "app.jsonl"
    with serving(project, db, log, TOKEN) as server:
        status, body, _ = call(server, "/api/resume", method="POST", headers=bearer(TOKEN))
        assert status == 200 and body["ok"] and "no state yet" in body["message"], body
    assert not db.exists() and not log.exists()


def test_sub_cent_pnl_and_fees_reach_the_page_and_are_shown_not_zero(project: ProjectCopy, tmp_path: Path) -> None:
    """/api/status rounded a trade's -0.004 to -0.0 and its 0.003 of fees to 0.0 before the page saw them, and the
    page's money() wrote what was left as +0.00 and 0.00: a loss and fees paid shown as none."""
    import shutil
    import subprocess
    from datetime import datetime, timedelta, timezone

    from engine.core.store import TradeRow
    from engine.operator.local import LocalTime
    from engine.operator.status_page import SCRIPT, status_record

    report = load_valid(project.config, project.machines, project.rules)
    store = StateStore(tmp_path / "s.db")
    now = datetime(2026, 11, 23, 16, 0, tzinfo=timezone.utc)
    local = LocalTime("America/Los_Angeles")
    day = local.day(now)
    store.add_realized_pnl(day, "crypto_core", -0.004)
    store.add_trade(TradeRow("crypto_core", "BTC/USD", day, now - timedelta(minutes=9), now - timedelta(minutes=4), 0.0001,
                             60000.0, 59960.0, -0.004, 0.003, "exit: stop_loss_hit"))  # fmt: skip
    today = status_record(store, report, now, local)["today"]
    assert (today["pnl_by_bot"], today["total_pnl"], today["fees"]) == ({"crypto_core": -0.004}, -0.004, 0.003)
    assert (today["trades"][0]["pnl"], today["trades"][0]["fees"]) == (-0.004, 0.003)
    node = shutil.which("node")
    if node is None:
        return  # the figures the page gets are checked; its money() is run where Node.js is installed
    money = SCRIPT[SCRIPT.index("function money") : SCRIPT.index("function fill")]
    script = money + "console.log([-0.004, 0.003, -1e-12, -0, 12.345, -0.005].map((v) => money(v)).join(' '), money(0.003, false));"
    shown = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    assert shown == "-0.004 +0.003 +0.00 +0.00 +12.35 -0.01 0.003", shown


def test_a_token_no_http_header_can_carry_is_refused_at_start(project: ProjectCopy, halted: Rig) -> None:
    """The server reads a header as Latin-1: a HYDRA_SERVE_TOKEN outside ASCII sent as UTF-8 (curl) was answered
    401 "a valid token is needed" though right, and one outside Latin-1 (a euro sign) a browser's fetch refuses to
    send at all, so the Halt button could never work with it; a control character cannot be typed into a header."""
    for token in ("jeton-s\u00e9curit\u00e9-du-serveur", "token-worth-100\u20ac-or-more"):
        with pytest.raises(ServeRefused, match="HYDRA_SERVE_TOKEN must be printable ASCII"):
            check_bind("127.0.0.1", token)
    with pytest.raises(ServeRefused, match="printable ASCII"):
        check_bind("0.0.0.0", "abc\x07defghijklmnopq")
    check_bind("0.0.0.0", "printable ASCII only, spaces too!")
