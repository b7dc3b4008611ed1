"""Every problem prints as one line, whatever the user's text it echoes: a key, a state name, a value.

YAML lets a quoted key or value hold a newline, an escape sequence or a Unicode line separator. Echoed as
written, `"a\\n config/bots.yaml:1:1: fake": 1` printed a second line that read as another problem to a person
and to any tool that reads `file:line:col:` lines; a scenario's name did the same to `test`'s report.
"""

from __future__ import annotations

import re

import pytest

from engine.cli import main
from engine.config.errors import Problem
from tests.conftest import ProjectCopy

# Each is a line break to a terminal or to str.splitlines, or reorders or hides what follows it.
HOSTILE = {
    "newline": "\\n",
    "carriage return": "\\r",
    "escape sequence": "\\e[2J",
    "next line (U+0085)": "\\N",
    "line separator (U+2028)": "\\L",
    "paragraph separator (U+2029)": "\\P",
    "right-to-left override (U+202E)": "\\u202e",
    "vertical tab": "\\v",
    "form feed": "\\f",
}
HEADLINE = re.compile(r"^\S+:\d+:\d+: ")


def _validate(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> list[str]:
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    code = main(["validate", *files, "--state-db", str(project.root / "none.db")])
    out = capsys.readouterr().out
    assert code == 2, out
    return out.split("\n")[:-1]  # every line break counts: splitlines() would also split at U+2028 and friends


def test_keys_and_values_with_line_breaks_print_one_line_per_problem(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = "".join(f'  "{name}{code} config/bots.yaml:1:1: fake": 1\n' for name, code in HOSTILE.items())
    project.replace("config/bots.yaml", "  cooloff_minutes: 390\n", "  cooloff_minutes: 390\n" + keys)
    # A state name (the lint echoes it) and a value (the schema echoes it), in other files.
    project.replace("machines/crypto.yaml", "dest: halted", 'dest: "halted\\nmachines/crypto.yaml:1:1: fake"')
    zone = 'timezone: "America/Los_Angeles\\u2028config/settings.yaml:1:1: fake"'
    project.replace("config/settings.yaml", "timezone: America/Los_Angeles", zone)
    lines = _validate(project, capsys)
    assert lines[-1] == f"{len(HOSTILE) + 2} errors"
    problems = lines[:-1]
    assert len(problems) == len(HOSTILE) + 2, "\n".join(problems)
    assert all(HEADLINE.match(line) and line.isprintable() for line in problems), problems
    bots = [line for line in problems if "/config/bots.yaml:" in line.split(": ", 1)[0]]
    assert len(bots) == len(HOSTILE)
    assert any("exitbot.newline\\n config/bots.yaml:1:1: fake: unknown key 'newline\\n config" in line for line in bots)
    assert any("exitbot.line separator (U+2028)\\u2028 config/bots.yaml:1:1: fake:" in line for line in bots)
    assert any("unknown state 'halted\\nmachines/crypto.yaml:1:1: fake'" in line for line in problems)
    assert any("'America/Los_Angeles\\u2028config/settings.yaml:1:1: fake' is not a known time zone" in line for line in problems)


def test_ordinary_keys_print_as_written(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> None:
    project.replace("config/bots.yaml", "  cooloff_minutes: 390\n", "  cooloff_minute: 390\n  'caf\u00e9 \u2014 \\n': 1\n")
    line = project.line_of("config/bots.yaml", "cooloff_minute:")
    bots = project.config / "bots.yaml"
    assert _validate(project, capsys) == [
        f"{bots}:1:1: exitbot: missing required key 'cooloff_minutes'",
        f"{bots}:{line}:3: exitbot.cooloff_minute: unknown key 'cooloff_minute' (did you mean 'cooloff_minutes'?)",
        f"{bots}:{line + 1}:3: exitbot.caf\u00e9 \u2014 \\n: unknown key 'caf\u00e9 \u2014 \\n' (allowed: cooloff_minutes, "
        "enabled, kill_conditions)",
        "3 errors",
    ]


def test_the_headline_escapes_every_part_and_keeps_printable_text() -> None:
    problem = Problem("a\nb.yaml", 3, 4, "x.k\u2028ey", "unknown key 'k\u2028ey' \u00e9t\u00e9 \u2014 \U0001f600")
    assert problem.headline == "a\\nb.yaml:3:4: x.k\\u2028ey: unknown key 'k\\u2028ey' \u00e9t\u00e9 \u2014 \U0001f600"
    assert str(Problem("f.yaml", 1, 1, "", "m\r\n", "    excerpt\n    ^")) == "f.yaml:1:1: m\\r\\n\n    excerpt\n    ^"


def test_an_expression_error_keeps_its_caret_under_the_one_line(project: ProjectCopy, capsys: pytest.CaptureFixture[str]) -> None:
    """The caret is the problem's excerpt (indented lines below it), no longer lines inside its message."""
    project.replace("rules/guards.yaml", "expr: trades_today < risk_max_trades_per_day", "expr: trades_today < 'three'")
    out = _validate(project, capsys)
    found = [line for line in out if "compares 'trades_today'" in line]
    assert len(found) == 1 and HEADLINE.match(found[0])
    at = out.index(found[0])
    assert out[at + 1 : at + 3] == ["    trades_today < 'three'", "                 ^"]


def test_a_scenario_name_with_a_newline_is_one_line_of_the_test_report(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = project.machines / "scenarios" / "crypto.yaml"
    text = scenario.read_text(encoding="utf-8")
    name = "a second position may be added under max_concurrent_positions (2)"
    scenario.write_text(text.replace(f"name: {name}", 'name: "one\\nFAIL machines/scenarios/x.yaml:1: forged"'))
    files = ["--config", str(project.config), "--machines", str(project.machines), "--rules", str(project.rules)]
    main(["test", *files])
    out = capsys.readouterr().out.split("\n")
    assert not any(line.startswith("FAIL machines/scenarios/x.yaml") for line in out)
    assert sum("one\\nFAIL machines/scenarios/x.yaml:1: forged" in line for line in out) == 1


def test_the_caret_under_a_long_token_stays_as_wide_as_the_line_shown(project: ProjectCopy) -> None:
    """A wide line is shown as a window of it, but the caret under a long token (a 400-digit number, a name of
    thousands of letters) ran its whole length: one line of hundreds of carets."""
    from engine.validate import validate

    number = "9" * 400
    project.replace("rules/guards.yaml", "expr: open_positions < risk_max_concurrent_positions", f"expr: open_positions < {number}")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    shown, caret = problem.excerpt.splitlines()
    assert len(caret) <= len(shown) and caret.strip() and set(caret.strip()) == {"^"}, problem.excerpt


@pytest.mark.parametrize("value", [
    "xxx {key} " + "y" * 82 + " : z",  # the error at the end: the window (100 wide) starts 7 characters into the key
    "a : " + "y" * 80 + " {key} tail",  # the error at the start: the window ends 3 characters into it
])  # fmt: skip
def test_a_key_pasted_into_a_long_line_is_not_shown_in_part_by_the_excerpt(
    project: ProjectCopy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A line wider than the excerpt is shown as a window around the column; the window cut a key pasted into the
    line, and the part inside it was printed (`...KEY0123456789`): the command line's mask, which knows the keys,
    finds only whole ones. The cut word is masked whole, character for character (the caret still points)."""
    key, secret = "PKPASTEDKEY012345678", "pastedsecret0123456789abcdefghijklmnopqr"
    monkeypatch.setenv("ALPACA_KEY", key)
    monkeypatch.setenv("ALPACA_SECRET", secret)
    monkeypatch.chdir(project.root)
    project.replace("config/settings.yaml", "  timezone: America/Los_Angeles", f"  timezone: {value.format(key=key)}")
    code = main(["--validate", "--config", str(project.config), "--machines", str(project.machines),
                 "--rules", str(project.rules)])  # fmt: skip
    said = capsys.readouterr()
    text = said.out + said.err
    assert code == 2 and "YAML syntax error" in text, text
    assert not any(key[i : i + 3] in text for i in range(len(key) - 2)), text
    shown, caret = text.splitlines()[1:3]
    assert len(shown) > 100 and "***" in shown and set(caret.strip()) == {"^"}, text
