"""Values a hand edit can leave in settings.yaml and bots.yaml that used to pass validation, or to be told only in
part: each is now refused at its line, with its key path, every one at once."""

from __future__ import annotations

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.yaml_source import parse_yaml
from engine.validate import validate
from tests.conftest import ProjectCopy

SETTINGS = "config/settings.yaml"


def _problems(project: ProjectCopy) -> list[str]:
    return [p.headline for p in validate(project.config, project.machines, project.rules).problems]


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("garbage", "'garbage' is not an ISO 8601 time with its UTC offset"),
        ("' '", "' ' is not an ISO 8601 time with its UTC offset"),
        ("'2026-11-23T09:30:00'", "'2026-11-23T09:30:00' has no UTC offset"),
        ("'9999-01-01T00:00:00+00:00'", "is outside the years 1900 to 2199"),
    ],
)
def test_a_sim_start_that_cannot_be_read_is_refused_by_validate(project: ProjectCopy, written: str, says: str) -> None:
    """`sim.start` was checked by no one: `--validate` passed, and `run` went on from the default start."""
    project.replace(SETTINGS, "options:\n", f"sim:\n  start: {written}\noptions:\n")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert (problem.line, problem.col, problem.path) == (project.line_of(SETTINGS, "start:"), 10, "sim.start")
    assert says in problem.message and "leave sim.start out" in problem.message


def test_a_readable_sim_start_still_validates(project: ProjectCopy) -> None:
    project.replace(SETTINGS, "options:\n", "sim:\n  start: '2026-11-23T06:30:00-08:00'\noptions:\n")
    assert _problems(project) == []


@pytest.mark.parametrize("key", ["log_path", "state_db_path"])
def test_a_path_holding_nul_is_refused_not_a_traceback(project: ProjectCopy, key: str) -> None:
    """`state_db_path: "a\\0b"` passed the schema, and validate then died opening it (ValueError: embedded null
    byte); a NUL `log_path` passed validation."""
    project.replace(SETTINGS, f"  {key}: ", f'  {key}: "a\\0b"\n  old_{key}: ')
    project.replace(SETTINGS, f"  old_{key}: ", "  # ")
    (problem,) = _problems(project)
    assert f"system.{key}: 'a\\x00b' is not a file path: a path cannot hold the character NUL" in problem


@pytest.mark.parametrize("key", ["log_path", "state_db_path"])
@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("~no_such_user_of_hydra/x", "'~no_such_user_of_hydra/x' names the home folder of the user 'no_such_user_of_hydra'"),
        ('"./\\ud800.x"', "'./\\ud800.x' cannot be a file name: U+D800 is half of a UTF-16 pair"),
    ],
)
def test_a_path_no_file_can_have_is_refused_at_its_key_not_a_traceback(
    project: ProjectCopy, key: str, written: str, says: str
) -> None:
    """A home folder Path.expanduser cannot find raised RuntimeError, and a lone surrogate UnicodeEncodeError when
    the path was looked at: `--validate`, `run` and every command reading settings.yaml ended in a traceback."""
    from engine.cli import main

    project.replace(SETTINGS, f"  {key}: ", f"  {key}: {written}\n  # ")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path == f"system.{key}" and problem.line == project.line_of(SETTINGS, f"{key}:")
    assert says in problem.message
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    assert main(["run", "--once", "--quiet", *files]) == 2


def test_a_date_is_one_problem_not_also_null_is_not_text(project: ProjectCopy) -> None:
    """An unquoted date was told twice: as a date at its value, and as "null is not text" at its key."""
    project.replace("config/bots.yaml", 'trade_start: "06:40"', "trade_start: 2026-11-23")
    project.replace("config/bots.yaml", "tickers: [SPY, QQQ]", "tickers: [SPY, 2020-01-01]")
    found = _problems(project)
    assert len(found) == 2, found
    assert "optionsbot.tickers[1]: YAML reads 2020-01-01 as a date" in found[0]
    assert "optionsbot.session.trade_start: YAML reads 2026-11-23 as a date" in found[1]


def test_every_value_python_cannot_build_is_told_at_once_with_its_key_path() -> None:
    """A date of month 13 stopped the parse at the first such value, with no key path."""
    text = "a:\n  b: 2026-13-01\n  c: !!int abc\n  d: .nan\n"
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "f.yaml")
    found = [(p.line, p.col, p.path, p.message.split(" (")[0]) for p in caught.value.problems]
    assert found == [
        (2, 6, "a.b", "this value cannot be read"),
        (3, 6, "a.c", "this value cannot be read"),
        (4, 6, "a.d", ".nan is not a number the engine can use: write a finite number"),
    ]
    assert "month must be in 1..12" in caught.value.problems[0].message


def test_a_key_python_cannot_build_is_a_problem_at_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml("x: 1\n2026-13-01: 1\n", "f.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.col) == (2, 1) and problem.message.startswith("this key cannot be read (month must be")


@pytest.mark.parametrize(
    ("key", "written", "says"),
    [
        ("log_path", "./config/settings.yaml", "is config/settings.yaml, a file the engine reads"),
        ("log_path", "rules/guards.yaml", "is rules/guards.yaml, a file the engine reads"),
        ("log_path", "machines/scenarios/system.yaml", "is machines/scenarios/system.yaml, a file the engine reads"),
        ("state_db_path", "./config/bots.yaml", "is config/bots.yaml, a file the engine reads"),
        ("log_path", "state/../state/trading_state.db", "is the same file as system.state_db_path"),
    ],
)
def test_a_log_or_state_path_naming_a_file_the_engine_reads_is_refused(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, key: str, written: str, says: str
) -> None:
    """`log_path: ./config/settings.yaml` passed validation, and `run` then appended its JSONL log to settings.yaml:
    the next command could not read the config at all."""
    assert says in _the_one_problem_at(project, monkeypatch, key, written).message


def test_run_refuses_a_log_path_naming_settings_yaml_and_writes_nothing(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    monkeypatch.chdir(project.root)
    project.replace(SETTINGS, "log_path: ./logs/app.jsonl", "log_path: ./config/settings.yaml")
    project.replace(SETTINGS, "state_db_path: ./state/trading_state.db", "state_db_path: ./st/s.db")
    before = (project.config / "settings.yaml").read_bytes()
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    assert main(["run", "--once", "--quiet", *files]) == 2
    said = capsys.readouterr()
    assert "system.log_path: is config/settings.yaml, a file the engine reads" in said.err + said.out
    assert "Traceback" not in said.err and (project.config / "settings.yaml").read_bytes() == before
    assert not (project.root / "st").exists()


@pytest.mark.parametrize(
    ("key", "make", "says"),
    [
        ("state_db_path", "link", "st/s.db: a link to nothing"),
        ("log_path", "link", "st/s.db: a link to nothing"),
        ("state_db_path", "under_file", "st/s.db: cannot be used (Not a directory)"),
        ("state_db_path", "fifo", "st/s.db: not a regular file (a FIFO, a device or a socket)"),
    ],
)
def test_validate_refuses_the_paths_run_would_refuse(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, key: str, make: str, says: str
) -> None:
    """`--validate` said OK to a state path that is a link to nothing, which `run` then refused (using it would make
    a file wherever the link points): validation and the command line judge the two paths one way."""
    import os

    monkeypatch.chdir(project.root)
    default = {"log_path": "./logs/app.jsonl", "state_db_path": "./state/trading_state.db"}[key]
    project.replace(SETTINGS, f"{key}: {default}", f"{key}: ./st/s.db")
    if make == "under_file":
        (project.root / "st").write_text("a file, not a folder\n")
    else:
        (project.root / "st").mkdir()
        if make == "link":
            (project.root / "st" / "s.db").symlink_to(project.root / "nowhere" / "x.db")
        else:
            os.mkfifo(project.root / "st" / "s.db")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert (problem.path, problem.line) == (f"system.{key}", project.line_of(SETTINGS, f"{key}:"))
    assert problem.message == says


@pytest.mark.parametrize(
    ("key", "written", "says"),
    [
        ("log_path", ".", "is a folder, not a log file"),
        ("log_path", "machines", "is a folder, not a log file"),
        (
            "log_path",
            "logs/",
            "'logs/' ends in '/', so it names a folder, not a file: name the file in it (e.g. 'logs/app.jsonl')",
        ),
        ("state_db_path", "state/", "'state/' ends in '/', so it names a folder"),
        ("state_db_path", "machines", "is a folder, not a state file"),  # was told as `machines:0:0:`, at no line
    ],
)
def test_a_log_or_state_path_naming_a_folder_is_refused_by_validate_as_by_run(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, key: str, written: str, says: str
) -> None:
    """`log_path: .` passed `--validate` and `run` then refused it ("is a folder, not a log file"); `logs/` passed
    both, and `run` wrote its log to a file named `logs` beside config/."""
    assert says in _the_one_problem_at(project, monkeypatch, key, written).message


def test_run_refuses_a_log_path_ending_in_a_slash_and_writes_nothing(
    project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    monkeypatch.chdir(project.root)
    project.replace(SETTINGS, "log_path: ./logs/app.jsonl", "log_path: logs/")
    project.replace(SETTINGS, "state_db_path: ./state/trading_state.db", "state_db_path: ./st/s.db")
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    assert main(["run", "--once", "--quiet", *files]) == 2
    said = capsys.readouterr()
    assert "system.log_path: 'logs/' ends in '/'" in said.err + said.out
    assert not (project.root / "logs").exists() and not (project.root / "st").exists()


def _the_one_problem_at(project: ProjectCopy, monkeypatch: pytest.MonkeyPatch, key: str, written: str) -> Problem:
    """settings.yaml's `key` (log_path or state_db_path) written as `written`: the one problem validation finds,
    told at that key's line."""
    monkeypatch.chdir(project.root)
    default = {"log_path": "./logs/app.jsonl", "state_db_path": "./state/trading_state.db"}[key]
    project.replace(SETTINGS, f"{key}: {default}", f"{key}: {written}")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert (problem.path, problem.line) == (f"system.{key}", project.line_of(SETTINGS, f"{key}:"))
    return problem


@pytest.mark.parametrize("written", ["0.0000001", "1e-300", "0.0004", "0.09"])
def test_a_loop_interval_the_simulated_clock_cannot_advance_by_is_refused(project: ProjectCopy, written: str) -> None:
    """`runner.loop_interval_seconds: 0.0000001` passed (above 0), and `run` on the simulated exchange never ended:
    the clock advances by a timedelta, whose resolution is a microsecond, so it stood still and the session's
    close never came (tens of thousands of ticks a second, all at 06:30:00, logged for ever). A few milliseconds
    moved it, but a session was millions of ticks (hours, and a log of as many lines)."""
    project.replace(SETTINGS, "loop_interval_seconds: 5", f"loop_interval_seconds: {written}")
    (problem,) = _problems(project)
    assert "runner.loop_interval_seconds:" in problem and "is less than the minimum of 0.1" in problem


@pytest.mark.parametrize("written", ["0.001", "1e-9", "0.004"])
def test_a_starting_cash_under_a_cent_is_refused(project: ProjectCopy, written: str) -> None:
    """`sim.starting_cash: 0.001` passed (above 0): the simulated account shows cents, so its equity read as 0, the
    daily P&L (a percent of it) could not be read, and the first tick halted on the kill switch, saying the engine
    could not read a fact, of a config `--validate` had passed."""
    project.replace(SETTINGS, "options:\n", f"sim:\n  starting_cash: {written}\noptions:\n")
    (problem,) = _problems(project)
    assert "sim.starting_cash:" in problem and "is less than the minimum of 0.01" in problem


def test_a_starting_cash_of_a_cent_still_validates(project: ProjectCopy) -> None:
    project.replace(SETTINGS, "options:\n", "sim:\n  starting_cash: 0.01\noptions:\n")
    assert _problems(project) == []


def test_a_loop_interval_of_a_tenth_of_a_second_still_validates(project: ProjectCopy) -> None:
    project.replace(SETTINGS, "loop_interval_seconds: 5", "loop_interval_seconds: 0.1")
    assert _problems(project) == []


def test_an_api_failure_window_shorter_than_a_tick_is_refused(project: ProjectCopy) -> None:
    """Broker failures are stamped with their tick's time and counted within api_failure_window_seconds. A window
    shorter than loop_interval_seconds holds one tick's failures at most: a broker failing a request every tick
    for ever never reached max_api_failures_in_window, and api_failure_halt could never trip, without a word."""
    project.replace(SETTINGS, "api_failure_window_seconds: 60", "api_failure_window_seconds: 4")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert (problem.line, problem.path) == (project.line_of(SETTINGS, "api_failure_window_seconds"), "health.api_failure_window_seconds")
    assert "4 s is shorter than runner.loop_interval_seconds (5 s)" in problem.message


def test_an_api_failure_window_of_one_tick_still_validates(project: ProjectCopy) -> None:
    project.replace(SETTINGS, "api_failure_window_seconds: 60", "api_failure_window_seconds: 5")
    assert _problems(project) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "path"),
    [
        ("config/bots.yaml", "ticker: AAPL", 'ticker: "AAPL\\n"', "momentum_bots[0].ticker"),
        ("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "06:35\\n"', "momentum_bots[0].session.trade_start"),
        ("config/bots.yaml", "bot_id: opt_core", 'bot_id: "opt_core\\n"', "optionsbot.bot_id"),
        ("machines/system.yaml", "trigger: arm", 'trigger: "arm\\n"', "transitions[2].trigger"),
        ("rules/guards.yaml", "  flat:", '  "flat\\n":', "guards.flat\\n"),
    ],
)
def test_a_name_or_value_ending_in_a_line_break_is_refused_at_its_place(
    project: ProjectCopy, file: str, old: str, new: str, path: str
) -> None:
    """jsonschema runs a schema's pattern with Python's `re`, whose `$` also matches before a final line break:
    `ticker: "AAPL\\n"` validated OK, and `run` exited 1 asking the broker for the symbol 'AAPL' and a newline (a
    state, a trigger, a guard or a bot id could end in one too). A pattern's `$` is the end of the text."""
    project.replace(file, old, new)
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.file.endswith(file) and problem.path == path.replace("\\n", "\n"), problem
    assert problem.line == project.line_of(file, new.strip()), problem


@pytest.mark.parametrize("key", ["log_path", "state_db_path"])
@pytest.mark.parametrize("written", ["|\n    ./state/x.db", '"./logs/a\\tb"', '"./logs/a\\e[2Jb"'])
def test_a_path_holding_a_line_break_or_a_control_character_is_refused(project: ProjectCopy, key: str, written: str) -> None:
    """`log_path: |` with the path below it validated, and the run wrote its log to a file whose name ends in a
    line break (the block keeps it); a tab or an escape sequence in a path is no file anyone means either."""
    project.replace(SETTINGS, f"  {key}: ", f"  {key}: {written}\n  # ")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path == f"system.{key}" and problem.line == project.line_of(SETTINGS, f"{key}:"), problem
    assert "is not a file path: a path cannot hold the character NUL (\\0), a line break" in problem.message
