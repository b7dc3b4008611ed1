"""The command line as a user meets it: exit codes, output format, no tracebacks for bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy


def run_engine(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=cwd or PROJECT_ROOT, timeout=60
    )


def test_validate_passes_on_the_shipped_config() -> None:
    result = run_engine("--validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ") and "bots" in result.stdout and "machines" in result.stdout


def test_validate_subcommand_is_the_same_check() -> None:
    assert run_engine("validate").returncode == 0


def test_invalid_config_exits_2_with_every_error_and_a_count(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "25:00"')
    project.replace("config/settings.yaml", "timezone: America/Los_Angeles", "timezone: Mars/Olympus")
    result = run_engine("--validate", "--config", "config", "--machines", "machines", "--rules", "rules", cwd=str(project.root))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "config/bots.yaml:26:20: momentum_bots[0].session.trade_start: '25:00' is not a time of day (HH:MM)"
    assert lines[1].startswith("config/settings.yaml:2:13: system.timezone: 'Mars/Olympus' is not a known time zone")
    assert lines[-1] == "2 errors"
    assert "Traceback" not in result.stdout + result.stderr


def test_yaml_syntax_error_exits_2_without_traceback(project: ProjectCopy) -> None:
    project.replace("config/settings.yaml", "runner:", "runner: [")
    result = run_engine("--validate", "--config", str(project.config))
    assert result.returncode == 2
    assert "settings.yaml:" in result.stdout and "YAML syntax error" in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_config_folder_is_an_error_not_a_crash(tmp_path) -> None:
    result = run_engine("--validate", "--config", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "cannot read file" in result.stdout
    assert "Traceback" not in result.stderr


def test_diagram_is_mermaid_with_guards_on_edges() -> None:
    result = run_engine("diagram", "momentum")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stateDiagram-v2")
    assert "s_armed --> s_entering : enter [entry_signal] / open_entry" in result.stdout
    assert "class " not in result.stdout  # nothing highlighted without --bot


def test_diagram_highlights_the_bots_persisted_state(tmp_path) -> None:
    from datetime import datetime, timezone

    from engine.core.store import StateStore

    db = tmp_path / "state.db"
    StateStore(db).save_machine_state("momentum", "mom_AAPL", "managing", datetime(2026, 1, 5, tzinfo=timezone.utc))
    result = run_engine("diagram", "momentum", "--bot", "mom_AAPL", "--state-db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("class s_managing current")


def test_table_lists_every_transition_in_order() -> None:
    result = run_engine("table", "system")
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith("| idle |") and "halted" in line]
    assert [r.split(" | ")[1] for r in rows] == ["kill", "halt"]


def test_engine_test_runs_the_scenario_tables(project: ProjectCopy) -> None:
    result = run_engine(
        "test", "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1].endswith("passed, 0 failed")
    project.replace("config/bots.yaml", "stop_loss_pct: 0.50", "stop_loss_pct: 0.70")
    result = run_engine(
        "test", "--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)
    )
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "a loss beyond stop_loss_pct closes the position" in result.stdout


def test_emulator_on_a_busy_port_is_a_clean_error() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_engine("emulator", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 1 and "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_svg_diagram_when_the_diagrams_extra_is_installed(tmp_path) -> None:
    import pytest

    pytest.importorskip("pygraphviz", reason="the optional 'diagrams' extra is not installed")
    out = tmp_path / "momentum.svg"
    result = run_engine("diagram", "momentum", "--format", "svg", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "entry_signal" in text and "in_position" in text


def test_one_error_is_counted_in_the_singular(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "dte_min: 7", "dte_min: 70")
    result = run_engine("--validate", "--config", str(project.config))
    assert result.returncode == 2 and result.stdout.splitlines()[-1] == "1 error"
    table = run_engine("table", "momentum", "--config", str(project.config))
    assert table.returncode == 2 and table.stderr.splitlines()[-1] == "1 error"


def test_diagram_says_when_a_bot_has_no_saved_state(tmp_path) -> None:
    result = run_engine("diagram", "momentum", "--bot", "mom_AAPL", "--state-db", str(tmp_path / "none.db"))
    assert result.returncode == 0 and "no saved state" in result.stderr and "class s_idle current" in result.stdout


# --- input that must never crash or hang validation (issue 13, items 5-12) -------------------------------------


def validate_project(project: ProjectCopy, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "--validate", "--config", "config", "--machines", "machines", "--rules", "rules"],
        capture_output=True,
        text=True,
        cwd=project.root,
        timeout=timeout,
    )


def test_files_that_are_not_utf8_are_named_without_a_traceback(project: ProjectCopy) -> None:
    latin1 = project.machines / "crypto.yaml"
    text = latin1.read_bytes()
    assert b"The CryptoBot trades" in text
    latin1.write_bytes(text.replace(b"The CryptoBot trades", "The CryptoBot café trades".encode("latin-1")))
    (project.rules / "blob.yaml").write_bytes(bytes(range(256)))
    result = validate_project(project)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "2 errors", result.stdout
    crypto_line = text[: text.index(b"The CryptoBot trades")].count(b"\n") + 1
    assert any(
        re.match(rf"machines/crypto\.yaml:{crypto_line}:\d+: not UTF-8 text \(byte 0xe9 at offset \d+\)", line) for line in lines
    )
    assert any(line.startswith("rules/blob.yaml:") and "binary data, not UTF-8 text (byte 0x80" in line for line in lines)


def test_an_alias_bomb_is_refused_at_once(project: ProjectCopy) -> None:
    bomb = ['lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    project.replace("config/bots.yaml", "momentum_bots:", "\n".join(bomb) + "\nmomentum_bots:")
    started = time.perf_counter()
    result = validate_project(project, timeout=20)
    assert time.perf_counter() - started < 5
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert (
        result.stdout.startswith("config/bots.yaml:")
        and "YAML anchors and aliases are not allowed in engine files (anchor '&l0')" in result.stdout
    )


def test_a_5_mb_machine_file_is_answered_in_under_5_seconds(project: ProjectCopy) -> None:
    line = "  - {trigger: step, source: idle, dest: armed, when: flat, reason: one of very many transitions}\n"
    path = project.machines / "momentum.yaml"
    path.write_text(path.read_text(encoding="utf-8") + line * (5_000_000 // len(line)), encoding="utf-8")
    started = time.perf_counter()
    result = validate_project(project, timeout=30)
    assert time.perf_counter() - started < 5
    assert result.returncode == 2 and result.stdout.splitlines() == [
        f"machines/momentum.yaml:1:1: file too large: {path.stat().st_size:,} bytes, over the limit of 1,048,576 bytes (1,024 KiB) "
        "for an engine file (split it, or check that it is the file you meant)",
        "1 error",
    ]


def test_every_broken_file_is_reported_in_one_run(project: ProjectCopy) -> None:
    project.replace("rules/preflight.yaml", "preflight:", "preflight:\n  broken: {")
    project.replace("machines/options.yaml", "dest: managing", "dest: manageing")
    project.replace("config/settings.yaml", "timezone: America/Los_Angeles", "timezone: Mars/Olympus")
    result = validate_project(project)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    heads = [line for line in result.stdout.splitlines() if re.match(r"\S+\.yaml:\d+:\d+: ", line)]
    assert [h.split(":")[0] for h in heads] == ["config/settings.yaml", "machines/options.yaml", "rules/preflight.yaml"]
    assert result.stdout.splitlines()[-1] == "3 errors"


def test_an_indentation_error_is_explained_with_a_caret_under_the_column(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "  armed:\n", "     armed:\n")
    result = validate_project(project)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    line = project.line_of("machines/system.yaml", "     armed:")
    head, shown, caret, count = result.stdout.splitlines()
    assert head.startswith(f"machines/system.yaml:{line}:6: YAML syntax error: this line is indented")
    assert "mapping values are not allowed here" not in result.stdout and "<block" not in result.stdout
    assert shown == "         armed:" and caret == "         ^" and count == "1 error"


def test_engine_test_runs_every_file_and_reports_wrong_fact_types_as_bad_files(project: ProjectCopy) -> None:
    project.replace("machines/scenarios/momentum_exits.yaml", "holds_position: true", "holds_position: yes")
    project.replace("machines/scenarios/crypto.yaml", "budget_usd: 250", "budget_usd: 250 USD")
    project.replace("machines/scenarios/system.yaml", "expect: {state: armed", "expect: {state: halted", count=1)
    result = run_engine("test", "--config", "config", "--machines", "machines", "--rules", "rules", cwd=str(project.root))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    assert (
        "ok   machines/scenarios/options.yaml" in out and "FAIL machines/scenarios/system.yaml" in out
    )  # files after the bad ones ran
    exits_line = project.line_of("machines/scenarios/momentum_exits.yaml", "holds_position: yes")
    assert (
        f"machines/scenarios/momentum_exits.yaml:{exits_line}:19: facts.holds_position: 'yes' is text, but fact 'holds_position' is a bool (true or false)"
        in out
    )
    crypto_line = project.line_of("machines/scenarios/crypto.yaml", "budget_usd")
    assert (
        f"machines/scenarios/crypto.yaml:{crypto_line}:15: facts.budget_usd: '250 USD' is text, but fact 'budget_usd' is a float"
        in out
    )
    assert "2 scenario files not run:" in out and out.splitlines()[-1] == "2 errors"


def test_a_damaged_state_file_is_reported_not_a_traceback(tmp_path) -> None:
    db = tmp_path / "trading_state.db"
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    result = run_engine("validate", "--state-db", str(db))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{db}:0:0: cannot read the saved machine states: not a SQLite database (file is not a database)",
        "1 error",
    ]


# --- report and why (issue 10) ----------------------------------------------------------------------------------


def _on_copy(project: ProjectCopy, *args: str) -> subprocess.CompletedProcess[str]:
    files = ["--config", "config", "--machines", "machines", "--rules", "rules", "--state-db", "s.db", "--log", "app.jsonl"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, *files], capture_output=True, text=True, cwd=project.root, env=env, timeout=60
    )


def test_report_text_html_and_prompt_for_the_simulated_day(project: ProjectCopy) -> None:
    assert _on_copy(project, "run", "--ticks", "900", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    text = _on_copy(project, "report")  # the state's own day: the simulation's
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("report 2026-11-23 (times in America/Los_Angeles)\nP&L by bot (realized, USD):")
    same = _on_copy(project, "report", "--date", "2026-11-23")
    assert same.returncode == 0 and same.stdout == text.stdout
    assert "trades: 0" in _on_copy(project, "report", "--date", "2026-11-20").stdout
    ranged = _on_copy(project, "report", "--from", "2026-11-22", "--to", "2026-11-24")
    assert ranged.stdout.startswith("report 2026-11-22 to 2026-11-24")

    html = _on_copy(project, "report", "--out", "day.html")
    assert html.returncode == 0 and html.stdout.startswith("wrote day.html: 2026-11-23 (")
    page = (project.root / "day.html").read_text(encoding="utf-8")
    assert "Plotly.newPlot" in page and not re.search(r"<script[^>]+src=", page)

    prompt = _on_copy(project, "report", "--prompt")
    assert prompt.returncode == 0 and "Period: 2026-11-23 (times in America/Los_Angeles)" in prompt.stdout
    assert not re.search(r"\{[a-z_]+\}", prompt.stdout)


def test_report_refuses_bad_dates_with_exit_2(project: ProjectCopy) -> None:
    assert _on_copy(project, "run", "--once", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    for args, message in (
        (("--date", "23/11/2026"), "--date: '23/11/2026' is not a date (YYYY-MM-DD)"),
        (("--date", "2026-11-23", "--from", "2026-11-20"), "give --date, or --from and --to, not both"),
        (("--from", "2026-11-24", "--to", "2026-11-23"), "--to 2026-11-23 is before --from 2026-11-24"),
    ):
        result = _on_copy(project, "report", *args)
        assert result.returncode == 2 and result.stderr.strip() == message and "Traceback" not in result.stderr


def test_report_and_why_before_anything_ran(project: ProjectCopy) -> None:
    for args in (("report",), ("why", "mom_AAPL")):
        result = _on_copy(project, *args)
        assert result.returncode == 1 and "no state yet (nothing has run)" in result.stderr
        assert not (project.root / "s.db").exists()


def test_the_exit_codes_of_status_and_why_with_nothing_to_explain_are_the_documented_ones(project: ProjectCopy) -> None:
    """The README's exit-code table listed neither: `status` before any run is an answer (exit 0, "no state yet"),
    while `why` and `report` have nothing to read (exit 1, said on stderr), and `why` of a bot disabled in
    bots.yaml, which never ticks, is exit 1 too; an unknown bot is bad usage (exit 2)."""
    status = _on_copy(project, "status")
    assert status.returncode == 0 and "no state yet (nothing has run)" in status.stdout
    assert _on_copy(project, "run", "--once", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    disabled = _on_copy(project, "why", "mom_TSLA")
    assert disabled.returncode == 1 and "'mom_TSLA' is disabled in bots.yaml" in disabled.stderr
    assert _on_copy(project, "why", "mom_NOPE").returncode == 2
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| 1 | a runtime failure"))
    assert "`why` of a bot disabled in bots.yaml" in row and "`status` and `resume` before any run exit 0" in row


def test_why_is_wired_with_text_and_json(project: ProjectCopy) -> None:
    assert _on_copy(project, "run", "--ticks", "20", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    text = _on_copy(project, "why", "mom_AAPL")
    assert text.returncode == 0, text.stderr
    assert "mom_AAPL (momentum) is" in text.stdout and "preflight:" in text.stdout
    as_json = _on_copy(project, "why", "mom_AAPL", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["kind"] == "momentum"
    unknown = _on_copy(project, "why", "mom_AAPLE")
    assert unknown.returncode == 2 and "no bot 'mom_AAPLE'" in unknown.stderr


BAD_USAGE = {
    "negative ticks": (["run", "--ticks", "-1"], "--ticks: must be 1 or more"),
    "zero ticks": (["run", "--ticks", "0"], "--ticks: must be 1 or more"),
    "serve port out of range": (["serve", "--port", "99999"], "--port: must be 0 to 65535"),
    "emulator port out of range": (["emulator", "--port", "-1"], "--port: must be 0 to 65535"),
    "negative max age": (["health", "--max-age", "-1"], "--max-age: must be a positive"),
    "unknown diagram kind": (["diagram", "nope"], "invalid choice: 'nope'"),
    "unknown table kind": (["table", "nope"], "invalid choice: 'nope'"),
    "unknown facts kind": (["facts", "nope"], "invalid choice: 'nope'"),
    "unknown flag": (["status", "--bogus"], "unrecognized arguments: --bogus"),
}


@pytest.mark.parametrize("case", sorted(BAD_USAGE))
def test_bad_usage_is_exit_2_with_the_flag_named(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    argv, phrase = BAD_USAGE[case]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and phrase in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "phrase"), [
    (["why", "nobody"], "no bot 'nobody' in bots.yaml"),
    (["halt", "--reason", "  "], "--reason: give the reason"),
])  # fmt: skip
def test_bad_input_to_the_state_commands_is_exit_2_before_the_state_is_opened(
    tmp_path, argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    db = tmp_path / "s.db"
    config = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
              "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    assert main([*argv, "--state-db", str(db), "--log", str(tmp_path / "a.jsonl"), *config]) == 2
    assert phrase in capsys.readouterr().err and not db.exists()


@pytest.mark.parametrize("content", [b"\xff\xfe\x00ALPACA_KEY=x\n", b"ALPACA_SECRET=caf\xe9\n"])
def test_an_env_file_that_is_not_utf8_is_exit_2_naming_it_without_its_bytes(
    tmp_path, content: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    (tmp_path / ".env").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALPACA_KEY", raising=False)
    monkeypatch.delenv("ALPACA_SECRET", raising=False)
    config = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
              "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    code = main(["run", "--once", "--quiet", "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "a.jsonl"), *config])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(".env: not UTF-8 text (byte ") and len(err.strip().splitlines()) == 1
    assert "caf" not in err and not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("argv", "phrase"), [
    (["run", "--once", "--record", "{tmp}/a_file"], "--record {tmp}/a_file: not a folder"),
    (["run", "--once", "--record", "{tmp}/a_file/below"], "--record {tmp}/a_file/below: cannot write there"),
    (["backtest", "--data", "{tmp}/a_file"], "--data {tmp}/a_file: not a folder"),
    (["backtest", "--data", "{tmp}/nothing"], "--data {tmp}/nothing: no such folder"),
    (["backtest", "--data", "{tmp}/loop"], "--data {tmp}/loop: cannot be read"),
    (["backtest", "--data", "{tmp}", "--sweep", "{tmp}/fifo"], "--sweep {tmp}/fifo: not a regular file"),
    (["backtest", "--data", "{tmp}", "--sweep", "{tmp}/nothing"], "--sweep {tmp}/nothing: no such file"),
])  # fmt: skip
def test_a_path_given_on_the_command_line_is_checked_before_anything_runs(
    tmp_path, argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO would hang its reader, a folder that cannot be written would end a run having recorded nothing."""
    from engine.cli import main

    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    db = tmp_path / "s.db"
    config = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
              "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    state = ["--state-db", str(db), "--log", str(tmp_path / "a.jsonl")] if argv[0] == "run" else []
    assert main([*(a.format(tmp=tmp_path) for a in argv), *state, *config]) == 2
    assert phrase.format(tmp=tmp_path) in capsys.readouterr().err and not db.exists()


@pytest.mark.parametrize(("argv", "phrase"), [
    (["diagram", "momentum", "--bot", "mom_AAPLE"], "--bot: no bot 'mom_AAPLE' in bots.yaml (did you mean 'mom_AAPL'?)"),
    (["diagram", "momentum", "--bot", "crypto_core"], "--bot: 'crypto_core' is a crypto bot: python -m engine diagram crypto"),
    (["diagram", "momentum", "--bot", "opt_core"], "--bot: 'opt_core' is an options bot: python -m engine diagram options"),
])  # fmt: skip
def test_diagram_of_a_bot_that_is_not_of_that_kind_is_exit_2(
    tmp_path, argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    config = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
              "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    assert main([*argv, "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "a.jsonl"), *config]) == 2
    said = capsys.readouterr()
    assert phrase in said.out + said.err and not (tmp_path / "s.db").exists()


def test_a_halt_reason_cannot_forge_lines_or_move_the_terminal(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's words go to SQLite as written; on a terminal a newline or an escape is shown as such."""
    from engine.cli import main

    config = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
              "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    state = ["--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "a.jsonl")]
    assert main(["halt", "--reason", "lunch\nhalt: none\x1b[2J", *state, *config]) == 0
    assert main(["status", *state, *config]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nhalt: none" not in out and "lunch\\nhalt: none\\x1b[2J" in out


def test_the_recording_line_says_when_the_recording_stopped_before_the_run(tmp_path) -> None:
    from engine.cli import _recording_line
    from engine.data.recorder import Recorder

    recorder = Recorder(tmp_path / "rec", fsync=False)
    assert _recording_line(recorder, tmp_path / "rec").startswith("recorded 0 quotes of 0 symbols to ")
    stopped = _recording_line(recorder, tmp_path / "rec", "OSError: No space left on device")
    assert stopped.startswith("the recording stopped before the run did (OSError: No space left on device): recorded 0")


@pytest.mark.parametrize("command", [["run", "--ticks", "5"], ["halt", "--reason", "x"], ["resume"], ["status"]])
def test_validate_with_another_command_is_bad_usage_and_does_nothing(project: ProjectCopy, command: list[str]) -> None:
    """`python -m engine --validate run` ran the trading loop (on Alpaca when keys are set), and `--validate halt`
    wrote a halt: the flag was dropped without a word as soon as a command was given. Asking to check the files
    must never trade or change the state: it is refused, exit 2, before anything is read or written."""
    done = _on_copy(project, "--validate", *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--validate checks the files and does nothing else: give it alone, or run '{command[0]}' without it" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (project.root / "s.db").exists() and not (project.root / "app.jsonl").exists()


def test_validate_with_the_validate_command_is_still_the_check(project: ProjectCopy) -> None:
    done = _on_copy(project, "--validate", "validate")
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout + done.stderr


def _in_project(project: ProjectCopy, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=project.root,
                          env=env, timeout=60)  # fmt: skip


@pytest.mark.parametrize("command", [["validate"], ["run", "--ticks", "1"]])
def test_a_config_folder_given_before_the_command_is_used_not_the_default(project: ProjectCopy, command: list[str]) -> None:
    """`python -m engine --config other/config run` ran on ./config: the command's own --config, left at its
    default, replaced the one given before the command (argparse's subparser defaults win), without a word."""
    shutil.copytree(project.config, project.root / "other")
    (project.root / "other" / "bots.yaml").write_text("not: [a, bots, file]\n", encoding="utf-8")  # ./config is valid
    done = _in_project(project, "--config", "other", *command)
    assert done.returncode == 2 and "other/bots.yaml" in done.stdout + done.stderr, done.stdout + done.stderr
    assert not (project.root / "state").exists() and not (project.root / "logs").exists()


@pytest.mark.parametrize("flag", ["--machines", "--rules"])
def test_a_machines_or_rules_folder_given_before_the_command_is_used(project: ProjectCopy, flag: str) -> None:
    (project.root / "empty").mkdir()
    done = _in_project(project, flag, "empty", "validate")
    assert done.returncode == 2 and "empty:0:0: no " in done.stdout, done.stdout + done.stderr
    assert _in_project(project, flag, "empty", "validate", flag, flag.strip("-")).returncode == 0  # the later one wins


def test_facts_without_a_kind_lists_every_kinds_facts_each_under_its_name() -> None:
    """`facts` printed the momentum bot's facts alone, unnamed, as if they were all the facts guards may use: the
    options and crypto bots' own facts and the system's were nowhere. With a kind, its one table as before."""
    from engine.rules.facts import all_kinds, vocabulary

    every = run_engine("facts")
    assert every.returncode == 0, every.stderr
    sections = re.split(r"^## (\w+)\n", every.stdout, flags=re.MULTILINE)
    assert sections[0] == "" and sections[1::2] == list(all_kinds())
    for kind, body in zip(sections[1::2], sections[2::2], strict=True):
        listed = [line.split(" | ")[0].removeprefix("| ") for line in body.splitlines() if line.startswith("| ")][1:]
        assert listed == list(vocabulary(kind)), kind
    one = run_engine("facts", "crypto")
    assert one.returncode == 0 and one.stdout.startswith("| fact | type | unit | meaning |\n") and "## " not in one.stdout
    assert "| execution_default_notional_usd |" in one.stdout  # the crypto bot's own


def test_run_once_with_a_count_of_ticks_is_bad_usage(tmp_path: Path) -> None:
    """`--once --ticks 5` ran one tick without a word: two counts of ticks, one of them ignored."""
    result = run_engine("run", "--once", "--ticks", "5", "--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "a.jsonl"))
    assert result.returncode == 2 and "not allowed with argument --once" in result.stderr
    assert not (tmp_path / "s.db").exists()


def _engine_commit_at_first(monkeypatch: pytest.MonkeyPatch, method: str, commit: Any, after: str | None = None) -> None:
    """`commit(engine)` from another connection (a running engine's tick, on its own schedule) just before the
    command's first call of StateStore.`method` (on a store that has called `after` already, when given: validation
    reads the machines through a store of its own first), once: the interleaving a live engine makes now and then,
    made every time."""
    from engine.core.store import StateStore

    real = getattr(StateStore, method)
    done: list[bool] = []
    began: set[int] = set()

    def wrapped(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        if not done and (after is None or id(self) in began):
            done.append(True)
            engine = StateStore(self.path)
            try:
                commit(engine)
            finally:
                engine.close()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, method, wrapped)
    if after is not None:
        read = getattr(StateStore, after)

        def noted(self: StateStore, *args: Any, **kwargs: Any) -> Any:
            began.add(id(self))
            return read(self, *args, **kwargs)

        monkeypatch.setattr(StateStore, after, noted)


def test_status_reads_the_state_of_one_moment_never_half_of_a_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` read the halts, then the machines, each in its own statement: a kill switch's halt and the system
    machine's move to halted (one commit) landing between the two gave "halt: none" under a system machine halted
    with "no halt is in force now". Its reads are one snapshot: all before the tick."""
    from datetime import datetime, timedelta, timezone

    from engine.cli import main
    from engine.core.store import SYSTEM_SCOPE, StateStore
    from engine.trading.runner import LAST_TICK_KEY

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    now = datetime.now(timezone.utc)
    store = StateStore(db)
    store.set_meta("broker", "alpaca")
    store.set_meta(LAST_TICK_KEY, now.isoformat())
    store.save_machine_state("system", "system", "armed", now)
    store.close()

    def kill(engine: StateStore) -> None:
        with engine.transaction():
            engine.start_halt(SYSTEM_SCOPE, "kill condition: max_daily_loss_halt", ("max_daily_loss_halt",), True,
                              now, now + timedelta(minutes=30))  # fmt: skip
            engine.save_machine_state("system", "system", "halted", now)

    _engine_commit_at_first(monkeypatch, "machine_states", kill, after="halts")
    files = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
             "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    assert main(["status", "--state-db", str(db), "--log", str(log), *files]) == 0
    out = capsys.readouterr().out
    system = next(line for line in out.splitlines() if line.startswith("  system "))
    assert "armed" in system and "halt: none" in out, out  # the moment before the tick, whole


def test_resume_says_the_engine_halt_it_ended_though_committed_just_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`resume` read which halts the engine had set before its own write transaction: a kill switch's halt
    committed in between was ended too, and the answer named no condition of the engine's (one that still holds
    halts again at the next tick). What it ended is read in the transaction that ends it."""
    from datetime import datetime, timedelta, timezone

    from engine.cli import main
    from engine.core.store import SYSTEM_SCOPE, StateStore

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    now = datetime.now(timezone.utc)
    store = StateStore(db)
    store.set_meta("broker", "alpaca")
    store.start_halt(SYSTEM_SCOPE, "news at 10:00", ("operator",), False, now - timedelta(minutes=5), None)
    store.close()

    def kill(engine: StateStore) -> None:
        engine.start_halt(SYSTEM_SCOPE, "kill condition: max_daily_loss_halt", ("max_daily_loss_halt",), True,
                          now - timedelta(seconds=1), now + timedelta(minutes=30))  # fmt: skip

    _engine_commit_at_first(monkeypatch, "transaction", kill)  # (the engine's own commit goes through it first)
    files = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
             "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    assert main(["resume", "--state-db", str(db), "--log", str(log), *files]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resumed: 2 halt(s) ended") and "the engine set max_daily_loss_halt" in out, out


def test_report_reads_the_state_of_one_moment_its_pnl_and_trades_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report` read the day's realized P&L, then the halts, then the trades, each in its own statement: a trade the
    engine closed in between was listed among the trades and missing from the P&L. Its reads are one snapshot."""
    from datetime import datetime, timezone

    from engine.cli import main
    from engine.config.loader import load_config
    from engine.core.store import StateStore, TradeRow
    from engine.operator.local import LocalTime

    db, log = tmp_path / "s.db", tmp_path / "app.jsonl"
    now = datetime.now(timezone.utc)
    store = StateStore(db)
    store.set_meta("broker", "alpaca")
    store.close()

    def close_a_trade(engine: StateStore) -> None:
        day = LocalTime(load_config(PROJECT_ROOT / "config").settings.system.timezone).day(now)  # the report's today
        with engine.transaction():
            engine.add_trade(TradeRow("mom_AAPL", "AAPL", day, now, now, 1.0, 100.0, 112.5, 12.5, 0.0, "take_profit"))
            engine.add_realized_pnl(day, "mom_AAPL", 12.5)

    _engine_commit_at_first(monkeypatch, "halts", close_a_trade, after="realized_pnl")
    files = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
             "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
    assert main(["report", "--state-db", str(db), "--log", str(log), *files]) == 0
    out = capsys.readouterr().out
    assert "trades: 0" in out and "12.5" not in out, out  # the moment before the trade, whole


def test_standard_output_closed_under_a_command_drops_what_follows_and_says_so() -> None:
    """From a run: a signal that called sys.stdout.close() (the user's code, in the engine's process) made the
    run's summary a ValueError traceback, exit 1, once its last tick was done. A closed stream is a failed output,
    as a full disk is: what follows is dropped, and the line on stderr says why."""
    import io

    from engine.cli import GuardedOutput, OutputFailure

    inner = io.StringIO()
    failure = OutputFailure()
    guarded = GuardedOutput(inner, failure)
    print("before", file=guarded)
    assert not guarded.closed
    inner.close()
    assert guarded.closed
    print("the summary", file=guarded)
    guarded.flush()
    assert isinstance(failure.error, ValueError)
    assert failure.line().startswith("error: standard output cannot be written (I/O operation on closed file)")


def test_a_diagram_graphviz_refuses_is_one_line_not_a_traceback(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DOT text Graphviz refused (a state named `node` written bare did) escaped `diagram --format svg` as
    pygraphviz's DotError: a traceback. The diagrams extra is optional and not installed here, so a stand-in
    module raises what pygraphviz raises; the command says it in one line, exit 1."""
    import types

    from engine.cli import main

    fake = types.ModuleType("pygraphviz")

    class DotError(ValueError):
        pass

    def refuse(string: str) -> None:
        raise DotError("Error: syntax error in line 9 near '->'\n")

    fake.DotError = DotError  # type: ignore[attr-defined]
    fake.AGraph = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pygraphviz", fake)
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    code = main(["diagram", "system", "--format", "svg", *files])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert err.strip() == "--format svg: Graphviz could not draw the system machine: Error: syntax error in line 9 near '->'"


@pytest.mark.parametrize("where", ["before", "after"])
def test_validate_takes_the_state_file_as_the_validate_command_does(project: ProjectCopy, where: str) -> None:
    """`python -m engine --validate --state-db PATH` was bad usage (exit 2, "invalid choice" of a command) while
    `validate --state-db PATH` checked the saved machine states; the README gives them as the same check."""
    folder = project.root / "a_folder"
    folder.mkdir()
    first = ["--validate"] if where == "before" else ["validate"]
    done = _in_project(project, *first, "--state-db", str(folder))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("a_folder:0:0: cannot read the saved machine states: is a folder"), done.stdout
    fresh = project.root / "new.db"
    done = _in_project(project, *first, "--state-db", str(fresh))
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout + done.stderr
    assert not fresh.exists()


def test_a_state_file_given_before_a_command_is_used_or_refused_never_dropped(project: ProjectCopy) -> None:
    """As --config before the command: the command's own default must not write over it."""
    mine = project.root / "mine.db"
    done = _in_project(project, "--state-db", str(mine), "halt", "--reason", "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert mine.exists() and not (project.root / "state").exists()
    done = _in_project(project, "--state-db", str(mine), "table", "system")
    assert done.returncode == 2 and "--state-db: 'table' reads no state file; remove --state-db" in done.stderr
    done = _in_project(project, "--state-db", str(mine), "status", "--state-db", str(project.root / "other.db"))
    assert done.returncode == 2 and "--state-db is given twice" in done.stderr
