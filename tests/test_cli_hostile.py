"""The command line and the environment as a hostile or careless user meets them: every bad input is one line,
its documented exit code, no traceback, and nothing written; live trading only when asked for twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.paths import PROJECT_ROOT
from tests.conftest import ProjectCopy

CONFIG = ["--config", str(PROJECT_ROOT / "config"), "--machines", str(PROJECT_ROOT / "machines"),
          "--rules", str(PROJECT_ROOT / "rules")]  # fmt: skip
KEY, SECRET = "PKHOSTILEKEY01234567", "hostilesecret0123456789abcdefghijklmnop"
LIVE_KEY = "AKHOSTILEKEY01234567"  # a live account's key id (Alpaca's start AK, paper ones PK)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder of its own (its `.env` is the one read) and an environment without Alpaca variables."""
    for name in [n for n in os.environ if n.startswith("ALPACA_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def state(folder: Path) -> list[str]:
    return ["--state-db", str(folder / "s.db"), "--log", str(folder / "a.jsonl")]


def main_(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from engine.cli import main

    code = main(argv)
    said = capsys.readouterr()
    return code, said.out + said.err


def assert_refused(code: int, text: str, expected_code: int, phrase: str, folder: Path) -> None:
    assert code == expected_code, text
    assert phrase in text, text
    assert "Traceback" not in text and KEY not in text and SECRET not in text
    assert not (folder / "s.db").exists() and not (folder / "a.jsonl").exists()


# --- live trading: never the default, never on a guess ---------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--broker", "sim"]])
def test_live_on_the_simulated_exchange_is_refused_not_run_as_a_simulation(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, extra: list[str]
) -> None:
    monkeypatch.setenv("ALPACA_PAPER", "false")
    code, text = main_(["run", "--live", "--once", "--quiet", *extra, *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, "--live trades real money on Alpaca, but this run would use the simulated exchange", here)
    assert len(text.strip().splitlines()) == 1


@pytest.mark.parametrize(("content", "phrase"), [
    ("DIR", ".env: a folder, not a file of KEY=VALUE lines"),
    ("FIFO", ".env: not a regular file"),
    (f"ALPACA_KEY={KEY}\nALPACA_SECRET={SECRET}\nALPACA_PAPER=true\nALPACA_PAPER=false\n".encode(),
     ".env:4: ALPACA_PAPER is set again with another value (first on line 3): keep one"),
    (f"ALPACA_KEY={KEY}\nALPACA_SECRET={SECRET}\nALPACA_PAPER='false\n".encode(), ".env:3: cannot be read as KEY=VALUE"),
    (f"ALPACA_KEY={KEY}\n".encode(), "ALPACA_KEY is set but ALPACA_SECRET is not"),
    (f"ALPACA_KEY={KEY}\nALPACA_SECRET=\n".encode(), "ALPACA_KEY is set but ALPACA_SECRET is not"),
])  # fmt: skip
@pytest.mark.parametrize("live", [False, True])
def test_an_env_file_that_is_not_plainly_readable_is_exit_2_and_nothing_runs(
    here: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, phrase: str, live: bool
) -> None:
    """A folder or FIFO named .env was passed over (and a run went on as a simulation); two values of one key,
    an unreadable line, or one key without the other were guessed at."""
    env = here / ".env"
    if content == "DIR":
        env.mkdir()
    elif content == "FIFO":
        os.mkfifo(env)
    else:
        assert isinstance(content, bytes)
        env.write_bytes(content)
    code, text = main_(["run", "--once", "--quiet", *(["--live"] if live else []), *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, phrase, here)
    assert len(text.strip().splitlines()) == 1


def test_the_environment_still_wins_over_a_readable_env_file(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (here / ".env").write_bytes(f"ALPACA_KEY={KEY}\r\nALPACA_SECRET={SECRET}\r\nALPACA_PAPER=false\r\n".encode())
    monkeypatch.setenv("ALPACA_PAPER", "true")
    monkeypatch.setenv("ALPACA_API_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ALPACA_DATA_BASE_URL", "http://127.0.0.1:9")
    code, text = main_(["run", "--live", "--once", "--quiet", *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, "--live was given but ALPACA_PAPER is not 'false'", here)


# --- secrets -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["HYDRA_SERVE_TOKEN", "ALPACA_SECRET"])
def test_a_secret_pasted_alone_into_a_yaml_file_is_not_printed_back(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A value pasted where a time zone belongs is quoted by the problem refusing it; the command line masked the
    Alpaca keys there but not the status page's token, which halts and resumes the engine."""
    secret = "Tok3nPastedIntoYaml0123"
    monkeypatch.setenv(variable, secret)
    config = here / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    settings = config / "settings.yaml"
    settings.write_text(settings.read_text().replace("timezone: America/Los_Angeles", f"timezone: {secret}"))
    files = ["--config", str(config), *CONFIG[2:]]
    code, text = main_(["--validate", *files], capsys)
    assert code == 2 and "is not a known time zone" in text and secret not in text, text


SERVE_TOKEN = "Serve!Tok3n#with(punct)0123456789"


@pytest.mark.parametrize("cut_at", [3, 6, 12, 20, 30])
def test_a_serve_token_cut_by_a_problems_excerpt_shows_no_piece_of_it(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cut_at: int
) -> None:
    """A long line under a YAML error is shown as a window around the column: a token with punctuation cut by
    the window's edge showed its words past the punctuation (`with`, `punct`, `0123456789`), which no exact mask
    finds. The token of the environment is known to the cut, and masked whole, wherever the edge falls."""
    from engine.core import journal

    monkeypatch.setattr(journal, "_known", frozenset(), raising=False)  # none remembered by another test
    monkeypatch.setenv("HYDRA_SERVE_TOKEN", SERVE_TOKEN)
    config = here / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    line = f"note: {'x' * 10} {SERVE_TOKEN} {'y' * 80}"
    edge = line.index(SERVE_TOKEN) + cut_at  # the window's first character, inside the token
    line = line[: edge + 50] + ": z" + line[edge + 50 :]  # a second ':' there, the error's column
    (config / "settings.yaml").write_text((config / "settings.yaml").read_text() + line + "\n")
    code, text = main_(["--validate", "--config", str(config), *CONFIG[2:]], capsys)
    assert code == 2 and "settings.yaml" in text and "y" * 20 in text, text
    for piece in ("Tok3n", "with", "punct", "0123456789", SERVE_TOKEN[cut_at:]):
        assert piece not in text, text


def test_a_crypto_fetch_with_an_unusable_data_url_is_refused_before_any_request(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without keys the data URL was read on its own, unchecked (an empty one even meant Alpaca's own host)."""
    monkeypatch.setenv("ALPACA_DATA_BASE_URL", "zzz")
    code, text = main_(["data", "fetch", "--symbols", "BTC/USD", "--from", "2026-01-05", "--to", "2026-01-05",
                        "--out", str(here / "d"), *CONFIG], capsys)  # fmt: skip
    assert code == 2 and "ALPACA_DATA_BASE_URL is not a usable base URL" in text and "Traceback" not in text
    assert not (here / "d").exists()


def test_a_fetch_of_a_symbol_that_is_not_one_is_exit_2_before_anything(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'BTC USD' (a space for the slash) was taken for a stock: exit 1, "ALPACA_KEY and ALPACA_SECRET are needed"."""
    code, text = main_(["data", "fetch", "--symbols", "BTC USD", "--from", "2026-01-05", "--to", "2026-01-05",
                        "--out", str(here / "d"), *CONFIG], capsys)  # fmt: skip
    assert code == 2 and "--symbols: 'BTC USD': not a symbol the data format can store" in text, text
    assert "ALPACA_KEY" not in text and not (here / "d").exists()


def test_a_fetch_of_an_option_contract_whose_expiry_is_no_date_names_it(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """AAPL261131C00190000 (November 31st) ended in a traceback, "day is out of range for month", naming no symbol."""
    code, text = main_(["data", "fetch", "--symbols", "SPY,AAPL261131C00190000", "--from", "2026-01-05", "--to",
                        "2026-01-05", "--out", str(here / "d"), *CONFIG], capsys)  # fmt: skip
    assert code == 2 and "Traceback" not in text, text
    assert ("--symbols: AAPL261131C00190000 is written as an option contract, but its expiry 2026-11-31 is no date "
            "(day is out of range for month)") in text, text  # fmt: skip
    assert not (here / "d").exists()


def test_a_key_with_a_newline_is_refused_without_being_printed(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPACA_KEY", KEY + "\n")
    monkeypatch.setenv("ALPACA_SECRET", SECRET)
    monkeypatch.setenv("ALPACA_API_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ALPACA_DATA_BASE_URL", "http://127.0.0.1:9")
    code, text = main_(["run", "--once", "--quiet", *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, "ALPACA_KEY holds spaces, quotes, control or non-ASCII characters", here)


@pytest.mark.parametrize(
    "command", [["--validate"], ["validate"], ["run", "--once", "--quiet"], ["status"], ["halt", "--reason", "x"]]
)
@pytest.mark.parametrize("where", ["env_file", "environment"])
def test_a_key_pasted_into_a_yaml_value_is_masked_in_the_problem(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str], where: str
) -> None:
    """A key pasted where a value belongs (as a time zone, a name) was quoted back by the problem that refuses it,
    on the terminal, in CI's log and in a service's journal: only a key written after its variable's name was
    masked. The keys of .env and of the environment are masked in every problem, with the problem still said: in the
    warning of a `halt` or a `status` that works on while a file cannot be read too (it printed the problem as read)."""
    if where == "env_file":
        (here / ".env").write_text(f"ALPACA_KEY={KEY}\nALPACA_SECRET={SECRET}\n", encoding="utf-8")
    else:
        monkeypatch.setenv("ALPACA_KEY", KEY)
        monkeypatch.setenv("ALPACA_SECRET", SECRET)
    config = here / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    settings = config / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    assert "timezone: America/Los_Angeles" in text
    text = text.replace("timezone: America/Los_Angeles", f"timezone: {SECRET}")
    settings.write_text(text, encoding="utf-8")
    argv = [*command, *(state(here) if command[0] in ("run", "status", "halt") else []), *CONFIG]
    argv[argv.index("--config") + 1] = str(config)
    code, said = main_(argv, capsys)
    # status shows the state, and halt records it, beside the problem while a file is mid-edit: exit 0
    assert code == (0 if command[0] in ("status", "halt") else 2), said
    assert "settings.yaml:2:13: system.timezone: '***' is not a known time zone" in said, said
    assert KEY not in said and SECRET not in said and "Traceback" not in said


def test_the_traceback_of_an_unexpected_error_is_printed_with_the_keys_masked(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no command expected went up to Python, whose traceback printed its message as raised: a key the
    message quoted (a broker's answer, a value read from a file) was on the terminal and in the service's journal.
    The traceback is still printed (a bug to report), with the keys masked, and the exit code is Python's, 1."""
    import engine.cli

    (here / ".env").write_text(f"ALPACA_KEY={KEY}\nALPACA_SECRET={SECRET}\n", encoding="utf-8")

    def unexpected(_args: object) -> int:
        raise RuntimeError(f"a value that holds the key {KEY} and the secret {SECRET}")

    monkeypatch.setattr(engine.cli, "cmd_snapshot", unexpected)
    code, said = main_(["snapshot", *CONFIG], capsys)
    assert code == 1 and "Traceback" in said and "RuntimeError: a value that holds the key *** and the secret ***" in said
    assert KEY not in said and SECRET not in said


# --- paths, values and dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["run", "--once", "--state-db", ""], ["run", "--once", "--log", ""], ["run", "--once", "--record", ""],
    ["--validate", "--config", ""], ["status", "--machines", ""], ["table", "momentum", "-o", ""],
    ["backtest", "--data", ""], ["report", "--out", ""],
])  # fmt: skip
def test_an_empty_path_is_bad_usage_not_the_working_folder(
    here: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Path("") is the working folder: `run --record ""` recorded into it, `--config ""` read it."""
    from engine.cli import main

    with pytest.raises(SystemExit) as exited:  # in a folder of its own: the old reading wrote nothing elsewhere
        main(argv)
    assert exited.value.code == 2 and "an empty path" in capsys.readouterr().err
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("command", [["run", "--once"], ["snapshot", "--broker", "sim"]])
def test_an_empty_start_is_refused_not_taken_as_no_start(
    here: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    extra = state(here) if command[0] == "run" else []
    code, text = main_([*command, "--start", " ", *extra, *CONFIG], capsys)
    assert_refused(code, text, 2, "--start: an empty time", here)


@pytest.mark.parametrize(("argv", "phrase"), [
    (["run", "--once", "--state-db", "{tmp}/fifo"], "--state-db {tmp}/fifo: not a regular file"),
    (["status", "--state-db", "{tmp}/fifo"], "--state-db {tmp}/fifo: not a regular file"),
    # `halt` looks again at why its files were refused, and opened the FIFO as a database to find out: "disk I/O
    # error", exit 1 (a device given by mistake was opened for writing)
    (["halt", "--reason", "x", "--state-db", "{tmp}/fifo"], "--state-db {tmp}/fifo: not a regular file"),
    (["resume", "--state-db", "{tmp}/fifo"], "--state-db {tmp}/fifo: not a regular file"),
    (["validate", "--state-db", "{tmp}/fifo"], "--state-db {tmp}/fifo: not a regular file"),
    (["run", "--once", "--state-db", "{tmp}/a_file/s.db"], "--state-db {tmp}/a_file/s.db: cannot be used"),
    (["run", "--once", "--log", "{tmp}/a_file/a.jsonl"], "--log {tmp}/a_file/a.jsonl: cannot be used"),
    (["halt", "--reason", "x", "--state-db", "{tmp}/a_file/deeper/s.db"], "--state-db {tmp}/a_file/deeper/s.db: cannot be used"),
    (["table", "momentum", "-o", "{tmp}"], "-o {tmp}: a folder; give a file name"),
    (["table", "momentum", "-o", "{tmp}/fifo"], "-o {tmp}/fifo: not a regular file"),
    (["diagram", "momentum", "-o", "{tmp}/nothing/d.mmd"], "-o {tmp}/nothing/d.mmd: no such folder {tmp}/nothing"),
    (["diagram", "momentum", "-o", "{tmp}/a_file/d.mmd"], "-o {tmp}/a_file/d.mmd: cannot be used"),
    (["report", "--out", "{tmp}"], "--out {tmp}: a folder; give a file name"),
    (["report", "--prompt", "--prompt-file", "{tmp}/fifo"], "--prompt-file {tmp}/fifo: not a regular file"),
    (["report", "--prompt-file", "{tmp}/a_file"], "--prompt-file goes with --prompt"),
    (["report", "--out", "{tmp}/" + "x" * 300], "File name too long"),  # tracebacks: is_symlink, exists raise
    (["run", "--once", "--record", "{tmp}/" + "x" * 300], "File name too long"),
    (["table", "momentum", "-o", "{tmp}/" + "x" * 300], "File name too long"),
])  # fmt: skip

def test_a_path_of_the_wrong_kind_is_exit_2_in_one_line_and_nothing_is_written(
    tmp_path: Path, argv: list[str], phrase: str
) -> None:
    """These were tracebacks (a state file below a file, -o a folder), exit 1 ("disk I/O error" on a FIFO), or a
    hang (a FIFO as -o or as the prompt template): run in a process, with a timeout."""
    (tmp_path / "a_file").write_text("not a folder")
    os.mkfifo(tmp_path / "fifo")
    argv = [a.format(tmp=tmp_path) for a in argv]
    extra = []
    if argv[0] not in ("table", "diagram", "validate"):  # the state files not given are kept in tmp_path
        for flag, default in (("--state-db", tmp_path / "s.db"), ("--log", tmp_path / "a.jsonl")):
            extra += [] if flag in argv else [flag, str(default)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    result = subprocess.run([sys.executable, "-m", "engine", *argv, *extra, *CONFIG], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=30)  # fmt: skip
    assert_refused(result.returncode, result.stdout + result.stderr, 2, phrase.format(tmp=tmp_path), tmp_path)
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1
    assert (tmp_path / "a_file").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "fifo"]


def test_a_fifo_as_the_prompt_template_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    result = subprocess.run(
        [sys.executable, "-m", "engine", "report", "--prompt", "--prompt-file", str(tmp_path / "fifo"), *state(tmp_path), *CONFIG],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "not a regular file" in result.stderr and "Traceback" not in result.stderr


def test_an_output_file_is_replaced_whole(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = here / "t.md"
    out.write_text("old content that is much longer than nothing\n" * 1000)
    code, _text = main_(["table", "momentum", "-o", str(out), *CONFIG], capsys)
    assert code == 0 and out.read_text().startswith("# momentum") and "old content" not in out.read_text()
    assert [p.name for p in here.iterdir()] == ["t.md"]  # no temporary file left


def test_an_output_file_killed_mid_write_keeps_the_old_file_and_the_next_write_leaves_no_temporary_file(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill between writing the temporary file and renaming it left a `.t.md.<random>.tmp` that no later write
    removed: each kill added one. The temporary file is now the data files' (`.t.md.<pid>.tmp`), removed by the
    next write once its writer is gone."""
    out = here / "t.md"
    out.write_text("old\n")
    env = {**os.environ, "TRADING_HYDRA_FAILPOINT": "data_before_rename:1"}
    killed = subprocess.run([sys.executable, "-m", "engine", "table", "momentum", "-o", str(out), *CONFIG],
                            capture_output=True, text=True, cwd=here, env=env, timeout=60)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    assert out.read_text() == "old\n" and len(list(here.iterdir())) == 2  # the old file whole, beside the temporary one
    code, text = main_(["table", "momentum", "-o", str(out), *CONFIG], capsys)
    assert code == 0 and out.read_text().startswith("# momentum"), text
    assert [p.name for p in here.iterdir()] == ["t.md"]


@pytest.mark.parametrize(("argv", "phrase"), [
    (["report", "--date", "20261123"], "--date: '20261123' is not a date (YYYY-MM-DD)"),
    (["report", "--date", "2026-W48-1"], "--date: '2026-W48-1' is not a date (YYYY-MM-DD)"),
    (["data", "fetch", "--symbols", "BTC/USD", "--from", "0001-01-01", "--to", "9999-12-31", "--out", "{tmp}/d"],
     "--from: '0001-01-01' is outside the years 1900 to 2199"),
    (["backtest", "--data", "{tmp}", "--from", "2026-W01-1"], "--from: '2026-W01-1' is not a date"),
    (["backtest", "--data", "{tmp}", "--to", "3000-01-01"], "--to: '3000-01-01' is outside the years 1900 to 2199"),
])  # fmt: skip
def test_a_malformed_or_out_of_range_date_is_exit_2(
    here: Path, capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str
) -> None:
    """`data fetch --from 0001-01-01` was an OverflowError traceback; 20261123 was read as a date."""
    from engine.cli import main

    if argv[0] == "report":  # a state to report on: a halt makes the state file
        assert main(["halt", "--reason", "x", *state(here), *CONFIG]) == 0
        capsys.readouterr()
    extra = state(here) if argv[0] == "report" else []
    code = main([*(a.format(tmp=here) for a in argv), *extra, *CONFIG])
    text = capsys.readouterr().err
    assert code == 2 and phrase.format(tmp=here) in text and "Traceback" not in text
    assert not (here / "d").exists()


@pytest.mark.parametrize("command", [
    ["data", "fetch", "--symbols", "BTC/USD", "--out", "{tmp}/d"],
    ["backtest", "--data", "{tmp}", "--out", "{tmp}/out"],
])  # fmt: skip
def test_to_before_from_is_said_with_the_dates_given(here: Path, capsys: pytest.CaptureFixture[str],
                                                     command: list[str]) -> None:
    """The fetch said "the end (2026-11-24T05:00:00+00:00) is not after the start (2026-11-24T05:00:00+00:00)": two
    equal instants, neither of them a date that was typed."""
    (here / "bars").mkdir()
    code, text = main_([*(a.format(tmp=here) for a in command), "--from", "2026-11-24", "--to", "2026-11-23", *CONFIG], capsys)
    assert code == 2 and "--to 2026-11-23 is before --from 2026-11-24" in text and "Traceback" not in text, text
    assert not (here / "d").exists() and not (here / "out").exists()


@pytest.mark.parametrize("text", ["1_0", "1,5", "0x10", "2 bps"])
def test_a_slippage_not_written_plainly_is_exit_2(here: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    """float() took '1_0' for 10 basis points: --cash refused the same text, --slippage-bps ran with it."""
    from engine.cli import main

    (here / "bars").mkdir()
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["backtest", "--data", str(here), "--out", str(here / "out"), "--slippage-bps", text, *CONFIG])
    said = capsys.readouterr().err
    assert exited.value.code == 2, said
    assert f"argument --slippage-bps: not a number of basis points (digits, a point for a fraction, e.g. 2.5): {text!r}" in said
    assert not (here / "out").exists()


def test_a_halt_reason_that_is_not_utf8_is_exit_2_before_the_state_is_opened(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes from the shell that are not UTF-8 arrive as lone surrogates: SQLite raised UnicodeEncodeError."""
    code, text = main_(["halt", "--reason", "lunch \udcff", *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, "--reason: not UTF-8 text", here)


@pytest.mark.parametrize("machine_zone", ["Etc/GMT-14", "Etc/GMT+12", "garbage"])
def test_a_first_simulated_day_is_today_in_system_timezone_whatever_the_machines_tz(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, machine_zone: str
) -> None:
    """Monday 2026-11-23 23:30 UTC is Monday 15:30 in Los Angeles (the shipped system.timezone) and already
    Tuesday on a machine at UTC+14: the first run started on Tuesday there, a session later than the same config
    on another machine, because "today" was the machine's (`date.today()`)."""
    import time
    from datetime import datetime, timezone

    from engine.core.clock import SystemClock

    monkeypatch.setattr(SystemClock, "now", lambda self: datetime(2026, 11, 23, 23, 30, tzinfo=timezone.utc))
    monkeypatch.setenv("TZ", machine_zone)
    time.tzset()
    try:
        code, text = main_(["run", "--once", "--quiet", *state(here), *CONFIG], capsys)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert code == 0, text
    assert "starting at 2026-11-23T06:30:00-08:00" in text, text


@pytest.mark.parametrize("locale_env", [
    {"PYTHONIOENCODING": "ascii"},
    {"PYTHONIOENCODING": "latin-1"},
    {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},  # an ASCII locale, without Python's UTF-8 mode
])  # fmt: skip
def test_a_locale_that_cannot_show_a_path_or_a_reason_gets_escapes_not_a_traceback(
    tmp_path: Path, locale_env: dict[str, str]
) -> None:
    """A project in `nu ü 日本/` and a halt reason in `café`, under an output encoding without those characters:
    the first print of the state file's path (`run`) or of the reason (`status`) raised UnicodeEncodeError, a
    traceback and exit 1, the run's state file already open."""
    root = tmp_path / "nu ü 日本"
    root.mkdir()
    folders = []
    for name in ("config", "machines", "rules"):
        shutil.copytree(PROJECT_ROOT / name, root / name)
        folders += [f"--{name}", str(root / name)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "LC_", "LANG", "PYTHONIOENCODING"))}

    def engine(*args: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "engine", *args, *folders], capture_output=True, cwd=tmp_path,
                              env={**env, **extra}, timeout=120)  # fmt: skip

    assert engine("halt", "--reason", "café").returncode == 0  # a UTF-8 locale writes the reason
    encoding = locale_env.get("PYTHONIOENCODING", "ascii")
    for args in (["run", "--once", "--quiet"], ["status"]):
        result = engine(*args, **locale_env)
        said = result.stdout + result.stderr
        assert result.returncode == 0 and b"Traceback" not in said, said.decode("utf-8", "replace")
        assert "café".encode(encoding, "backslashreplace") in result.stdout, result.stdout  # caf\xe9 in ASCII
    shown = engine("status", **locale_env).stdout
    if "LC_ALL" in locale_env:  # the path came in through the locale, as bytes: written back as they came
        assert str(root).encode() in shown, shown
    else:
        assert str(root).encode(encoding, "backslashreplace") in shown, shown


# --- signals -----------------------------------------------------------------------------------------------------


def test_ctrl_c_outside_the_run_loop_is_one_line_and_exit_130(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before `run` holds the signals (loading the config), or in any other command, Ctrl-C was a traceback."""
    import engine.cli

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.cli, "cmd_status", interrupted)
    code, text = main_(["status", *state(here), *CONFIG], capsys)
    assert code == 130 and text.strip() == "interrupted"


# --- from review: the contract's exit code for every live/paper and key mistake; reading is not trading --------


@pytest.mark.parametrize(("env", "flags", "phrase"), [
    ({"ALPACA_PAPER": "true"}, ["--live"], "--live was given but ALPACA_PAPER is not 'false'"),
    ({"ALPACA_API_BASE_URL": "https://api.alpaca.markets"}, [], "points at the live host api.alpaca.markets"),
    ({"ALPACA_PAPER": "false", "ALPACA_API_BASE_URL": "https://paper-api.alpaca.markets"}, ["--live"],
     "points at the paper host"),
    ({"ALPACA_KEY": "PKSHORT"}, [], "ALPACA_KEY is shorter than 8 characters"),
])  # fmt: skip
def test_every_live_paper_or_key_mistake_is_exit_2_before_anything_runs(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
    flags: list[str], phrase: str,
) -> None:
    """Exit 2 is bad usage, which the service does not restart on (exit 1 is restarted every 30 s)."""
    monkeypatch.setenv("ALPACA_KEY", KEY)
    monkeypatch.setenv("ALPACA_SECRET", SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, text = main_(["run", "--once", "--quiet", "--broker", "alpaca", *flags, *state(here), *CONFIG], capsys)
    assert code == 2, text
    assert phrase in text and "Traceback" not in text and SECRET not in text
    assert not (here / "s.db").exists()


@pytest.mark.parametrize(("key", "paper", "flags", "phrase"), [
    (LIVE_KEY, None, [], "ALPACA_KEY starts with AK, as a live account's key id does, but this run uses the paper account"),
    (LIVE_KEY, "false", [], "the live one needs ALPACA_PAPER=false and --live"),
])  # fmt: skip
def test_a_key_id_of_the_other_account_is_exit_2_in_one_line_before_anything_runs(
    here: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    paper: str | None,
    flags: list[str],
    phrase: str,
) -> None:
    """A paper run given a live key id went on to the broker: refused there at best,
    and with ALPACA_API_BASE_URL pointing elsewhere the live key was sent to that host. Now one line, exit 2,
    nothing written, and the key never shown (only the prefix judged)."""
    monkeypatch.setenv("ALPACA_KEY", key)
    monkeypatch.setenv("ALPACA_SECRET", SECRET)
    monkeypatch.setenv("ALPACA_API_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ALPACA_DATA_BASE_URL", "http://127.0.0.1:9")
    if paper is not None:
        monkeypatch.setenv("ALPACA_PAPER", paper)
    code, text = main_(["run", "--once", "--quiet", *flags, *state(here), *CONFIG], capsys)
    assert_refused(code, text, 2, phrase, here)
    assert len(text.strip().splitlines()) == 1 and key not in text


def test_a_live_accounts_env_still_serves_the_commands_that_only_read() -> None:
    """A live trader's .env (ALPACA_PAPER=false, the live host) is not refused by a command that sends no order
    (`snapshot`, `data fetch`): the refusal it met is about trading, and reading is not trading."""
    from engine.brokers.base import BrokerError
    from engine.brokers.factory import alpaca_environment

    env = {"ALPACA_KEY": LIVE_KEY, "ALPACA_SECRET": SECRET, "ALPACA_PAPER": "false",
           "ALPACA_API_BASE_URL": "https://api.alpaca.markets"}  # fmt: skip
    reads = alpaca_environment(env, live_flag=False, orders=False)
    assert reads.paper is False  # the live account is the one read
    with pytest.raises(BrokerError, match=r"this run is paper"):
        alpaca_environment(env, live_flag=False)  # a run without --live is still refused
    paper_reads = {**env, "ALPACA_PAPER": "true"}
    with pytest.raises(BrokerError, match="points at the live host"):
        alpaca_environment(paper_reads, live_flag=False, orders=False)  # a contradiction stays one


def test_a_semicolon_comment_in_env_is_a_comment_as_systemd_reads_it(here: Path) -> None:
    from engine.brokers.factory import read_environment

    (here / ".env").write_text(f"; keys for the paper account\nALPACA_KEY={KEY}\n  ; indented too\nALPACA_SECRET={SECRET}\n")
    values = read_environment(here / ".env")
    assert values["ALPACA_KEY"] == KEY and values["ALPACA_SECRET"] == SECRET


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_an_output_to_stdout_is_written_there(here: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    code, text = main_(["table", "momentum", "-o", target, *CONFIG], capsys)
    assert code == 0 and text.startswith("# momentum"), text
    assert not (here / "-").exists()


def test_an_output_through_a_link_replaces_the_file_it_names_and_keeps_its_mode(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = here / "real.md"
    real.write_text("old")
    real.chmod(0o600)
    (here / "link.md").symlink_to(real)
    code, text = main_(["table", "momentum", "-o", str(here / "link.md"), *CONFIG], capsys)
    assert code == 0, text
    assert (here / "link.md").is_symlink() and real.read_text() != "old" and (real.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("flag", ["--machines", "--rules", "--config"])
def test_a_folder_whose_name_is_too_long_is_a_problem_not_a_traceback(flag: str, tmp_path: Path) -> None:
    argv = [a if a != str(PROJECT_ROOT / flag.strip("-")) else str(tmp_path / ("x" * 300)) for a in CONFIG]
    for command in (["validate"], ["test"]):
        result = subprocess.run([sys.executable, "-m", "engine", *command, *argv], capture_output=True, text=True,
                                cwd=tmp_path, timeout=60)  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "x" * 300 in result.stdout + result.stderr


def test_a_value_echoed_in_an_error_cannot_drive_the_terminal(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bot id with an escape sequence and a carriage return was printed raw: the terminal acted on it."""
    code, text = main_(["diagram", "momentum", "--bot", "a\x1b[31mRED\rX", *CONFIG], capsys)
    assert code == 2 and "\x1b" not in text and "\r" not in text
    assert "--bot: no bot 'a\\x1b[31mRED\\rX' in bots.yaml" in text


@pytest.mark.parametrize("flag", ["--log", "--state-db"])
def test_a_state_file_or_log_that_is_a_config_file_is_refused_and_left_as_it_was(
    here: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """`run --log bots.yaml` appended the run's log to the user's bots.yaml."""
    import shutil

    for folder in ("config", "machines", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, here / folder)
    # bots.yaml as the log; as the state file, an empty YAML file (SQLite would take one for a new database, where
    # bots.yaml itself is refused as no database)
    target = here / "config" / ("bots.yaml" if flag == "--log" else "notes.yaml")
    if flag == "--state-db":
        target.write_bytes(b"")
    before = target.read_bytes()
    other = "--state-db" if flag == "--log" else "--log"
    argv = ["run", "--once", flag, str(target), other, str(here / "x"), "--config", str(here / "config"),
            "--machines", str(here / "machines"), "--rules", str(here / "rules")]  # fmt: skip
    code, text = main_(argv, capsys)
    assert code == 2 and f"{flag} {target}: is config/{target.name}, a file the engine reads" in text, text
    assert target.read_bytes() == before


def test_one_file_for_the_log_and_the_state_is_refused(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = main_(["halt", "--reason", "x", "--state-db", str(here / "s"), "--log", str(here / "s"), *CONFIG], capsys)
    assert code == 2 and "is the same file as --state-db" in text and not (here / "s").exists()


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal", ".lock"])
def test_a_log_that_is_one_of_the_state_files_own_files_is_refused(
    here: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """`--log state.db-wal` appended the log to SQLite's write-ahead log (deleted with the log in it at the run's
    end, or read back as frames of the state), `--log state.db.lock` to the run's lock file (emptied at its end)."""
    for command in (["run", "--once", "--quiet"], ["halt", "--reason", "x"]):
        code, text = main_([*command, "--state-db", str(here / "s.db"), "--log", str(here / f"s.db{suffix}"), *CONFIG], capsys)
        assert code == 2 and f"--log {here / f's.db{suffix}'}: is a file kept beside --state-db" in text, text
        assert list(here.glob("s.db*")) == []


# --- standard output that cannot be written: the reader gone (`| head -0`), a full disk (`> /dev/full`) -----------


def _stdout_fails(error: OSError, monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard output whose every write and flush fails as a closed pipe or a full disk does."""

    class Failing:
        def write(self, _data: object) -> int:
            raise error

        def flush(self) -> None:
            raise error

        def isatty(self) -> bool:
            return False

        @property
        def buffer(self) -> Failing:
            return self

    monkeypatch.setattr(sys, "stdout", Failing())


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), OSError(28, "No space left on device")],
                         ids=["EPIPE", "ENOSPC"])  # fmt: skip
def test_a_command_whose_output_cannot_be_written_does_its_work(
    here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    """A print was where a command stopped: a closed pipe ended `run` before its first tick, exit 0 (nothing
    traded, the operator told success), and a full disk was a traceback. The work is done whatever the output.
    Output lost to a full disk is said in one line, exit 1; a reader that closed the pipe chose to read no more:
    nothing is said, and the command's own code stands."""
    from engine.cli import main
    from engine.core.journal import read_events

    _stdout_fails(error, monkeypatch)
    code = main(["run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00", *state(here), *CONFIG])
    err = capsys.readouterr().err
    if isinstance(error, BrokenPipeError):
        assert code == 0 and err == "", err
    else:
        assert code == 1 and err.endswith(f"error: standard output cannot be written ({error.strerror}): the command ran "
                                          "to its end, but what it printed is not all there\n"), err  # fmt: skip
    assert "Traceback" not in err
    ends = [e for e in read_events(here / "a.jsonl") if e["event"] == "run_end"]
    assert [(e["reason"], e["ticks"]) for e in ends] == [("completed", 3)]  # the run ran
    assert main(["halt", "--reason", "unseen", *state(here), *CONFIG]) == (0 if isinstance(error, BrokenPipeError) else 1)
    monkeypatch.undo()
    for name in [n for n in os.environ if n.startswith("ALPACA_")]:
        monkeypatch.delenv(name)
    capsys.readouterr()
    assert main(["status", *state(here), *CONFIG]) == 0
    assert "unseen" in capsys.readouterr().out  # the halt was recorded, though its line was not shown


def test_standard_output_closed_by_its_reader_is_silent_and_keeps_the_command_s_code(tmp_path: Path) -> None:
    """The real pipe, read end closed before the command writes (`| head -0`): no traceback, no line (the reader
    had what it wanted), not even from the interpreter's own flush at exit, and the command's own exit code (a
    healthy `health` 0, a `why` of a bot that does not exist 2)."""
    files = ["--state-db", str(tmp_path / "s.db"), "--log", str(tmp_path / "a.jsonl"), *CONFIG]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    subprocess.run([sys.executable, "-m", "engine", "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00", *files],
                   check=True, capture_output=True, cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    for command, code in ((["status"], 0), (["health"], 1), (["why", "mom_AAPL"], 0), (["why", "nobody"], 2),
                          (["table", "momentum"], 0)):  # fmt: skip
        reader, writer = os.pipe()
        os.close(reader)
        try:
            result = subprocess.run([sys.executable, "-m", "engine", *command, *(files if command[0] != "table" else CONFIG)],
                                    stdout=writer, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, timeout=60)  # fmt: skip
        finally:
            os.close(writer)
        assert result.returncode == code, (command, result.stderr)
        assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, (command, result.stderr)
    closed = subprocess.run([sys.executable, "-m", "engine", "status", *files], stdout=None, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env, timeout=60, pass_fds=(), preexec_fn=lambda: os.close(1))  # fmt: skip
    assert closed.returncode == 0 and closed.stderr == "", closed.stderr  # `>&-`: the output was not wanted


def test_a_command_started_with_standard_output_closed_does_its_work(
    here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`>&-` leaves Python's sys.stdout None: print drops what it is given, but `run` (its progress's flush) and
    `backtest` (`isatty()` for its bar) called it directly: an AttributeError traceback, exit 1, `run` stopped before
    its first tick (found by tools/clifuzz.py; `serve` the same, after binding)."""
    from engine.cli import main

    files = ["--state-db", str(here / "s.db"), "--log", str(here / "a.jsonl"), *CONFIG]
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00", "--record", "rec", *files]) == 0
    assert main(["backtest", "--data", "rec", "--out", "bt", *CONFIG]) == 0
    assert sys.stdout is None  # as it was given
    said = capsys.readouterr()
    assert "Traceback" not in said.err and said.err == "", said.err
    assert (here / "bt" / "summary.json").is_file()


def test_standard_output_closed_takes_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    """The null device given for `>&-` encoded strictly: `status` printing a state file named in bytes that are not
    UTF-8 (surrogates in Python's str) was a UnicodeEncodeError traceback, exit 1 (found by tools/clifuzz.py)."""
    db = os.fsencode(str(tmp_path)) + b"/\xff\xfe state.db"
    files = [b"--state-db", db, b"--log", os.fsencode(str(tmp_path / "a.jsonl")), *map(os.fsencode, CONFIG)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    engine = [os.fsencode(sys.executable), b"-m", b"engine"]
    subprocess.run([*engine, b"run", b"--ticks", b"2", b"--start", b"2026-11-23T09:30:00-05:00", *files],
                   check=True, capture_output=True, cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    closed = subprocess.run([*engine, b"status", *files], stdout=None, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
                            timeout=60, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert closed.returncode == 0 and closed.stderr == b"", closed.stderr


@pytest.mark.parametrize("argv", [["table", "momentum", "-o"], ["diagram", "momentum", "-o"], ["report", "--out"]])
def test_an_output_file_that_is_a_link_to_itself_is_exit_2_in_one_line(
    here: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Python 3.11's resolve() raises RuntimeError ("Symlink loop"), not OSError, for a link that leads back to
    itself: `-o loop` was a traceback, exit 1 (found by tools/clifuzz.py)."""
    from engine.cli import main

    (here / "loop").symlink_to(here / "loop")
    state = ["--state-db", str(here / "s.db"), "--log", str(here / "a.jsonl")] if argv[0] != "table" else []
    code = main([*argv, str(here / "loop"), *state, *CONFIG])
    said = capsys.readouterr()
    assert code == 2 and "Traceback" not in said.err, said.err
    assert said.err.strip() == f"{argv[-1]} {here / 'loop'}: cannot be used (a symbolic link that leads back to itself)"
    assert not (here / "s.db").exists() and not (here / "a.jsonl").exists()


@pytest.mark.parametrize(("flag", "text", "said"), [
    ("--commission-per-share", "1_0", "not an amount in USD (digits, a point for a fraction, e.g. 0.005): '1_0'"),
    ("--commission-per-contract", "0x10", "not an amount in USD (digits, a point for a fraction, e.g. 0.005): '0x10'"),
    ("--crypto-maker-fee", "1,5", "not a fraction of the trade (digits, a point for a fraction, e.g. 0.0025): '1,5'"),
    ("--crypto-taker-fee", "25 bps", "not a fraction of the trade (digits, a point for a fraction, e.g. 0.0025): '25 bps'"),
])  # fmt: skip
def test_a_fee_flag_not_written_plainly_is_exit_2(here: Path, capsys: pytest.CaptureFixture[str], flag: str, text: str,
                                                  said: str) -> None:  # fmt: skip
    """The commissions and crypto fees are read as --slippage-bps is: a number written as one, or a usage error."""
    from engine.cli import main

    (here / "bars").mkdir()
    with pytest.raises(SystemExit) as exited:
        main(["backtest", "--data", str(here), "--out", str(here / "out"), flag, text, *CONFIG])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"argument {flag}: {said}" in err, err
    assert not (here / "out").exists()


@pytest.mark.parametrize(("flag", "text", "said"), [
    ("--commission-per-share", "-0.01", "fill model: commission_per_share must be a finite number, 0 or more, not -0.01"),
    ("--commission-per-contract", "inf", "fill model: commission_per_contract must be a finite number, 0 or more, not inf"),
    ("--crypto-taker-fee", "25", "fill model: crypto_taker_fee is a fraction of the trade, below 1 (0.0025 is 0.25 %), not 25.0"),
    # finite and 0 or more, and still no broker's: 1e308 a share overflowed the cash to -inf, summary.json not JSON
    ("--commission-per-share", "1e308", "fill model: commission_per_share must be at most 10 USD (no broker charges more), not 1e+308"),
    ("--commission-per-contract", "100.5", "fill model: commission_per_contract must be at most 100 USD (no broker charges more), not 100.5"),
])  # fmt: skip
def test_a_fee_the_fill_model_refuses_is_exit_2_in_its_words(here: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                                            text: str, said: str) -> None:  # fmt: skip
    """A number out of the fill model's range is refused by the model's own check, before any folder is made."""
    code, out = main_(["backtest", "--data", str(here), "--out", str(here / "out"), flag, text, *CONFIG], capsys)
    assert code == 2 and said in out and "Traceback" not in out, out
    assert not (here / "out").exists()


def test_the_fee_flags_reach_the_fill_model(here: Path, capsys: pytest.CaptureFixture[str], project: ProjectCopy) -> None:
    """Issue 9 asks for a configurable commission per share and contract and crypto fee: the command line had only
    --fill-timing and --slippage-bps, so `backtest` always ran with no commission and the lowest crypto tier. The
    flags given are the run's fill model (summary.json says it), and the commission comes out of the account."""
    from tests.replay.conftest import MONDAY_OPEN, only_momentum, session_bars

    only_momentum(project)
    closes = [190.0]
    for minute in range(1, 390):  # rises and falls by turns: the momentum bot enters and exits
        closes.append(round(closes[-1] + (0.08 if (minute // 40) % 2 == 0 else -0.07), 2))
    session_bars(here / "data", "AAPL", MONDAY_OPEN, closes)
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    runs = {}
    for name, extra in (("free", []), ("paid", ["--commission-per-share", "0.01", "--commission-per-contract", "0.65",
                                                 "--crypto-maker-fee", "0.001", "--crypto-taker-fee", "0.002"])):  # fmt: skip
        code, out = main_(["backtest", "--data", str(here / "data"), "--out", str(here / name), *extra, *files], capsys)
        assert code == 0, out
        runs[name] = json.loads((here / name / "summary.json").read_text())
    assert runs["paid"]["fill_model"] == {"timing": "next", "slippage_bps": 2.0, "commission_per_share": 0.01,
                                          "commission_per_contract": 0.65, "crypto_maker_fee": 0.001,
                                          "crypto_taker_fee": 0.002}  # fmt: skip
    free, paid = runs["free"]["total"], runs["paid"]["total"]
    assert free["trades"] > 0 and free["fees"] == 0 and paid["fees"] > 0
    assert paid["final_equity"] < free["final_equity"]
