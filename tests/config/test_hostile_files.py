"""Odd and hostile config files found by trying them through `--validate`: each was a traceback, a value read
otherwise than it was meant, or a config that meant other hours on another machine."""

from __future__ import annotations

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.yaml_source import parse_yaml
from engine.validate import validate
from tests.conftest import ProjectCopy

BOTS = "config/bots.yaml"
SETTINGS = "config/settings.yaml"


def problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules, project.root / "none.db").problems


# --- %YAML directives --------------------------------------------------------------------------------------


def test_a_yaml_1_1_directive_is_refused_where_it_is_written(project: ProjectCopy) -> None:
    """Under `%YAML 1.1` ruamel read `enabled: off` as false, `010` as 8 and `1:30` as 90, where YAML 1.2 reads
    text, 10 and text: one line at the top of bots.yaml switched the ExitBot off and still validated."""
    path = project.root / BOTS
    text = path.read_text(encoding="utf-8").replace("enabled: true", "enabled: off", 1)
    path.write_text("%YAML 1.1\n---\n" + text, encoding="utf-8")
    (p,) = problems(project)
    assert p.file.endswith(BOTS) and (p.line, p.col) == (1, 1)
    assert "'%YAML 1.1' is not allowed" in p.message and "off is false" in p.message


@pytest.mark.parametrize("version", ["1.0", "1.3", "1.99999999999999999999"])
def test_a_yaml_version_ruamel_asserts_on_is_a_problem_not_a_traceback(version: str) -> None:
    """`%YAML 1.3` failed an assertion inside ruamel (AssertionError: a traceback, exit 1)."""
    with pytest.raises(ConfigError) as caught:
        parse_yaml(f"%YAML {version}\n---\na: 1\n", "f.yaml")
    (p,) = caught.value.problems
    assert (p.line, p.col) == (1, 1) and f"'%YAML {version}' is not allowed" in p.message


def test_a_yaml_1_2_directive_is_still_read() -> None:
    doc = parse_yaml("%YAML 1.2\n---\na: off\nb: 010\n", "f.yaml")
    assert doc.data == {"a": "off", "b": 10} and doc.problems == []


# --- keys that are lists or mappings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("a: 1\n? [{y: 1}]\n: b\n", 2, 3),
        ("a: 1\n? {a: {b: 1}}\n: b\n", 2, 3),
        ("a: 1\n? - x\n  - {y: 1}\n: b\n", 2, 3),
        ("x: [{a: {b: 1}}: 2]\n", 1, 5),
    ],
)
def test_a_key_holding_a_mapping_is_a_problem_at_the_key_not_a_traceback(text: str, line: int, col: int) -> None:
    """ruamel raised TypeError ("unhashable type: 'CommentedMap'") while it built such a key."""
    doc = parse_yaml(text, "f.yaml")
    assert [(p.line, p.col) for p in doc.problems] == [(line, col)]
    assert "a list or a mapping cannot be a key" in doc.problems[0].message


def test_two_complex_keys_are_two_problems_not_a_duplicate_key() -> None:
    doc = parse_yaml("x: {[a]: 1, [b]: 2}\n", "f.yaml")
    assert [(p.line, p.col) for p in doc.problems] == [(1, 5), (1, 13)]


def test_a_complex_key_in_settings_yaml_fails_validation_at_its_line(project: ProjectCopy) -> None:
    path = project.root / SETTINGS
    path.write_text(path.read_text(encoding="utf-8") + "? [{y: 1}]\n: b\n", encoding="utf-8")
    found = problems(project)
    assert len(found) == 1 and found[0].file.endswith(SETTINGS), found
    assert found[0].line == len(path.read_text(encoding="utf-8").splitlines()) - 1


# --- empty files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the file is empty (or holds only comments)"),
        ("# nothing yet\n---\n...\n", "the file is empty (or holds only comments)"),
        ("~\n", "the file holds only null"),
    ],
)
def test_an_empty_or_null_file_is_one_problem(project: ProjectCopy, text: str, says: str) -> None:
    """It was said twice: "the file is empty" and the schema's "null is not a mapping (key: value)"."""
    (project.root / SETTINGS).write_text(text, encoding="utf-8")
    (p,) = problems(project)
    assert p.file.endswith(SETTINGS) and (p.line, p.col) == (1, 1) and says in p.message


# --- bots.yaml: ids ----------------------------------------------------------------------------------------


def test_bot_ids_that_differ_only_in_case_are_refused(project: ProjectCopy) -> None:
    """`mom_AAPL` and `MOM_AAPL` are one id to a person reading `status` or the broker's orders, and the prefix of
    both bots' client_order_ids, which the broker need not tell apart by case."""
    project.replace(BOTS, "bot_id: mom_TSLA", "bot_id: MOM_AAPL")
    (p,) = problems(project)
    assert p.path == "momentum_bots[1].bot_id" and p.line == project.line_of(BOTS, "MOM_AAPL")
    assert "differs from 'mom_AAPL' (line 22) only in case" in p.message


def test_the_same_bot_id_twice_is_still_said_as_already_used(project: ProjectCopy) -> None:
    project.replace(BOTS, "bot_id: opt_core", "bot_id: mom_AAPL")
    (p,) = problems(project)
    assert p.path == "optionsbot.bot_id" and "bot id 'mom_AAPL' is already used (line 22)" in p.message


# --- settings.yaml: time zones -----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "LOCALTIME"])
def test_a_zone_file_that_names_no_zone_is_refused(project: ProjectCopy, zone: str) -> None:
    """ZoneInfo reads `localtime` (this machine's zone: a laptop in California validated what a container in UTC
    then ran at other hours), `posixrules` and `Factory` (offset 0, "-00"). Only the time zone is said: the
    sessions are not checked against a zone that is not one."""
    project.replace(SETTINGS, "timezone: America/Los_Angeles", f"timezone: {zone}")
    (p,) = problems(project)
    assert p.path == "system.timezone" and f"'{zone}' is not a time zone but" in p.message


@pytest.mark.parametrize(
    ("zone", "meant", "says"),
    [
        ("right/America/Los_Angeles", "America/Los_Angeles", "leap-second variant"),
        ("right/UTC", "UTC", "leap-second variant"),
        ("posix/America/Los_Angeles", "America/Los_Angeles", "a second name of"),
    ],
)
def test_a_zone_of_the_leap_second_or_posix_tree_is_refused_with_its_plain_name(
    project: ProjectCopy, zone: str, meant: str, says: str
) -> None:
    """ZoneInfo reads `right/America/Los_Angeles`, and it validated: its clock counts the leap seconds, which the
    exchange's and the broker's do not, so it changes its hours at other instants. `posix/...` is the same zone
    again under a second name, and the state file records its days' zone by name. `right/UTC` was refused only by
    the sessions' check (06:35 UTC never meets the session), and a config of crypto alone took it. Said once, at
    the zone, with the name to write."""
    project.replace(SETTINGS, "timezone: America/Los_Angeles", f"timezone: {zone}")
    (p,) = problems(project)
    assert (p.path, p.line, p.col) == ("system.timezone", 2, 13)
    assert p.message.startswith(f"'{zone}' is ") and says in p.message and p.message.endswith(f": write '{meant}'")


@pytest.mark.parametrize("zone", ["America", "Europe", "A" * 300])
def test_a_zone_that_names_a_folder_or_is_too_long_is_a_problem_not_a_traceback(project: ProjectCopy, zone: str) -> None:
    """ZoneInfo opens the name as a file of the zone database: `America` raised IsADirectoryError and a name
    longer than the file system allows raised OSError (File name too long), both tracebacks of `--validate`."""
    project.replace(SETTINGS, "timezone: America/Los_Angeles", f"timezone: {zone}")
    (p,) = problems(project)
    assert p.path == "system.timezone" and (p.line, p.col) == (2, 13)
    assert f"'{zone}' is not a known time zone" in p.message
