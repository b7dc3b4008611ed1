"""The operator's own writes (`halt`, `resume`, the page's buttons) mask the broker's keys, and the page's token,
as the engine's journal masks them: a key pasted into a halt's reason was written to the log and the state file
as typed, then printed by `status`, `report`, the alerts and the status page (which loopback readers see
without any token)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.cli import main
from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy
from tests.operator.test_status_page import TOKEN, bearer, call, serving
from tests.trading.conftest import Rig

KEY, SECRET = "PKTESTKEY0123456789", "sk-test-secret-0123456789abcdef"
FILES = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
         "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip


def _reasons(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT reason FROM halts")]
    finally:
        conn.close()


def test_a_key_in_a_halt_reason_is_masked_in_the_log_the_state_file_and_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    monkeypatch.setenv("ALPACA_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET", SECRET)
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    state = ["--state-db", str(db), "--log", str(log), *FILES]
    assert main(["halt", "--reason", f"rotating {KEY} / {SECRET}", *state]) == 0
    assert main(["status", *state]) == 0
    assert main(["resume", *state]) == 0
    out = capsys.readouterr()
    written = [log.read_text(), *_reasons(db)]
    for text in (out.out, out.err, *written):
        assert KEY not in text and SECRET not in text, text
    assert any("rotating " in text for text in written)  # the rest of the reason is kept


def test_a_key_or_the_token_in_a_halt_from_the_page_is_masked(project: ProjectCopy, rig: Rig) -> None:
    from engine.operator.status_page import make_server
    from engine.validate import load_valid

    rig.ticks(2)
    rig.engine.journal.flush()
    report = load_valid(project.config, project.machines, project.rules)
    with serving(project, rig.store.path, rig.log, TOKEN) as server:  # the helper's server, for its plumbing
        assert server.app.secrets == (TOKEN,)  # the page's own token is masked with no key configured
    server = make_server(report, rig.store.path, rig.log, "127.0.0.1", 0, TOKEN, secrets=(KEY, SECRET, "short"))
    assert server.app.secrets == (KEY, SECRET, TOKEN)  # a value too short to be a key is not one to mask
    server.server_close()
    with serving(project, rig.store.path, rig.log, TOKEN) as server:
        server.app.secrets = (KEY, SECRET, TOKEN)
        reason = f"pasted {TOKEN} and {SECRET}"
        status, body, _ = call(server, "/api/halt", method="POST", body={"reason": reason}, headers=bearer(TOKEN))
        assert status == 200 and body["ok"], body
        _, record, _ = call(server, "/api/status")
    for text in (body["message"], str(record["halts"]), rig.log.read_text(), *_reasons(rig.store.path)):
        assert TOKEN not in text and SECRET not in text, text
    assert record["halts"][0]["reason"].startswith("pasted ")


def test_the_pages_token_in_a_halt_reason_from_the_command_line_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """HYDRA_SERVE_TOKEN lets whoever holds it halt and resume the engine, yet only the page's buttons masked it:
    typed into `halt --reason`, it went into the log and the state file, and from there to `status`, `report`,
    the alerts and the page, which loopback readers see without any token."""
    monkeypatch.chdir(tmp_path)
    for name in ("ALPACA_KEY", "ALPACA_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HYDRA_SERVE_TOKEN", TOKEN)
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    state = ["--state-db", str(db), "--log", str(log), *FILES]
    assert main(["halt", "--reason", f"token {TOKEN} leaked", *state]) == 0
    assert main(["status", *state]) == 0
    out = capsys.readouterr()
    written = [log.read_text(), *_reasons(db)]
    for text in (out.out, out.err, *written):
        assert TOKEN not in text, text
    assert any("token " in text and " leaked" in text for text in written)


def test_every_secret_variable_is_masked_and_the_pages_token_is_one() -> None:
    """The one list of what is masked (`maskable_keys`) names the page's own variable, so a rename of either is
    caught; values too short to mask without mangling words are left out, and one value is masked once."""
    from engine.brokers.factory import SECRET_VARIABLES
    from engine.operator.status_page import TOKEN_ENV
    from engine.trading.runner import maskable_keys

    assert TOKEN_ENV in SECRET_VARIABLES
    env = {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, TOKEN_ENV: f" {TOKEN} "}
    assert maskable_keys(env) == (KEY, SECRET, TOKEN)  # as `serve` reads it: spaces around it are not the token
    assert maskable_keys({TOKEN_ENV: "short", "ALPACA_KEY": KEY, "ALPACA_SECRET": KEY}) == (KEY,)


def test_the_page_masks_a_key_it_finds_in_the_state_file_or_the_machines(
    project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers mask what they record, but the page read the state file as it found it: a halt's reason recorded
    by an older engine or another tool, or a key pasted into a machine's description, went to every
    loopback reader (no token needed there) as written. Every JSON answer now leaves with the secrets masked."""
    monkeypatch.chdir(tmp_path)
    for name in ("ALPACA_KEY", "ALPACA_SECRET"):
        monkeypatch.delenv(name, raising=False)
    machine = project.machines / "system.yaml"
    machine.write_text(machine.read_text().replace("description: ", f"description: {KEY} ", 1))
    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    assert main(["run", "--ticks", "1", "--quiet", "--state-db", str(db), "--log", str(log), *files]) == 0
    assert main(["halt", "--reason", "placeholder", "--state-db", str(db), "--log", str(log), *files]) == 0
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE halts SET reason = ?", (f"recorded raw: {SECRET}",))  # as a writer that did not mask
    conn.close()
    with serving(project, db, log, TOKEN) as server:
        server.app.secrets = (KEY, SECRET, TOKEN)
        status, record, _ = call(server, "/api/status")
    text = json.dumps(record)
    assert status == 200 and KEY not in text and SECRET not in text, text
    assert record["halts"][0]["reason"] == "recorded raw: ***"
    system = next(m for m in record["machines"] if m["kind"] == "system")
    assert "%% system: *** The whole engine" in system["diagram"]["mermaid"]  # the machine's description
