"""The rule book: the shipped rules compile for the kinds that use them, every rule is checked whether used or
not, problems point at the token in the YAML file, and compiled rules say which facts they read."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from engine.config.errors import Problem
from engine.machines.spec import load_machines
from engine.paths import PROJECT_ROOT
from engine.rules.book import RuleBook, check_all_rules, compile_expression, compile_rules, fact_types, facts_read, load_rules
from engine.rules.errors import GuardError, MissingFact
from engine.rules.facts import BOT_KINDS, SETTINGS_FACTS, SYSTEM_FACTS
from engine.validate import validate
from tests.conftest import ProjectCopy

BOOK = load_rules(PROJECT_ROOT / "rules")
SPECS = load_machines(PROJECT_ROOT / "machines")
_QUIET: dict[str, Any] = {"bool": False, "int": 0, "float": 0.0, "str": ""}


def quiet(kind: str, **values: Any) -> dict[str, Any]:
    return {**{name: _QUIET[t] for name, t in fact_types(kind).items()}, **values}


def add_guard(project: ProjectCopy, name: str, body: str) -> RuleBook:
    with (project.rules / "guards.yaml").open("a", encoding="utf-8") as f:
        f.write(f"  {name}:\n    description: Added by a test.\n{body}")
    return load_rules(project.rules)


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


# --- the shipped rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_shipped_rule_compiles_for_each_kind_that_uses_it(kind: str) -> None:
    used = SPECS[kind].guards_used()
    compiled, problems = compile_rules(BOOK, kind, needed=used)
    assert problems == []
    assert set(used) <= set(compiled.guards)
    if kind in BOT_KINDS:
        assert set(compiled.preflight) == set(BOOK.preflight)
    if kind == "system":
        assert set(compiled.kill_conditions) == set(BOOK.kill_conditions)


def test_every_shipped_rule_passes_the_check_of_all_rules() -> None:
    assert check_all_rules(BOOK) == []
    assert check_all_rules(BOOK, used=[g for spec in SPECS.values() for g in spec.guards_used()]) == []


def test_preflight_compiles_for_every_bot_kind_and_kill_conditions_for_the_system() -> None:
    for kind in BOT_KINDS:
        assert compile_rules(BOOK, kind, needed=[])[1] == []
    assert compile_rules(BOOK, "system", needed=[])[1] == []


# --- the facts each rule reads -------------------------------------------------------------------------------


def test_compiled_rules_name_the_facts_they_read() -> None:
    compiled, _ = compile_rules(BOOK, "momentum", needed=["may_open", "entry_timed_out", "near_close"][:2])
    assert compiled.guard_facts["under_trade_cap"] == {"trades_today", "risk_max_trades_per_day"}
    assert compiled.guard_facts["may_open"] == {
        "in_trade_window",
        "preflight_ok",
        "trades_today",
        "risk_max_trades_per_day",
        "open_positions",
        "risk_max_concurrent_positions",
    }
    assert compiled.guard_facts["entry_timed_out"] == {"minutes_since_entry_order"}  # a built-in
    assert compiled.preflight_facts["quotes_fresh"] == {"quote_age_s", "health_max_price_staleness_seconds"}
    system, _ = compile_rules(BOOK, "system")
    assert system.kill_facts["max_daily_loss_halt"] == {"daily_pnl_pct", "risk_global_max_daily_loss_pct"}
    assert set(system.kill_facts) == set(system.kill_conditions)
    assert set(system.guard_facts) == set(system.guards)


def test_guards_that_read_only_system_wide_facts_can_be_told_apart() -> None:
    compiled, _ = compile_rules(BOOK, "momentum", needed=SPECS["momentum"].guards_used())
    shared = {f.name for f in (*SYSTEM_FACTS, *SETTINGS_FACTS)}
    assert {n for n, facts in compiled.guard_facts.items() if facts <= shared} >= {"system_halted", "flatten_requested"}
    assert not compiled.guard_facts["may_open"] <= shared


def test_facts_read_and_compile_expression() -> None:
    assert facts_read("trades_today < risk_max_trades_per_day", "momentum") == {"trades_today", "risk_max_trades_per_day"}
    predicate, message = compile_expression("trades_today < 2", "crypto")
    assert message is None and predicate is not None and predicate(quiet("crypto")) is True
    predicate, message = compile_expression("trades_today < 'two'", "crypto")
    assert predicate is None and message is not None and message.startswith("expression error: ")
    assert compile_expression("trades_today < 2", "system") == (None, "fact 'trades_today' is not available to system machines")


# --- evaluation through the book ----------------------------------------------------------------------------


def test_a_composition_reports_the_guard_inside_it_that_failed() -> None:
    compiled, _ = compile_rules(BOOK, "momentum", needed=["may_open"])
    assert compiled.guard_holds(
        "may_open",
        quiet("momentum", in_trade_window=True, preflight_ok=True, risk_max_trades_per_day=2, risk_max_concurrent_positions=1),
    )
    with pytest.raises(GuardError) as caught:
        compiled.guard_holds("may_open", quiet("momentum", in_trade_window=True, preflight_ok=True, trades_today=None))
    assert caught.value.guard == "under_trade_cap" and isinstance(caught.value.cause, MissingFact)
    with pytest.raises(GuardError) as caught:
        compiled.guard_holds("under_trade_cap", quiet("momentum", trades_today=None))
    assert caught.value.guard == "under_trade_cap"


def test_a_check_that_cannot_be_evaluated_counts_as_failed() -> None:
    compiled, _ = compile_rules(BOOK, "momentum", needed=[])
    facts = quiet("momentum", quote_age_s=None, health_max_price_staleness_seconds=10)
    assert "quotes_fresh" in compiled.failed_checks(compiled.preflight, facts)


def test_a_builtin_guard_evaluates_and_is_type_checked(project: ProjectCopy) -> None:
    compiled, _ = compile_rules(BOOK, "momentum", needed=["entry_timed_out"])
    assert compiled.guards["entry_timed_out"](quiet("momentum", minutes_since_entry_order=2.5)) is True
    assert compiled.guards["entry_timed_out"](quiet("momentum", minutes_since_entry_order=1)) is False
    project.replace(
        "rules/guards.yaml",
        'params: {left: minutes_since_entry_order, op: ">=", right: 2}',
        'params: {left: holds_position, op: ">=", right: 2}',
    )
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["entry_timed_out"])[1])
    assert p.path == "guards.entry_timed_out.params"
    assert "built-in 'compare': '>=' compares 'holds_position' (true/false) with a number" in p.message


def test_every_wrong_builtin_parameter_is_told_at_its_own_value(project: ProjectCopy) -> None:
    """They were all said at `params`, and of a list of facts only the first unknown one."""
    project.replace(
        "rules/guards.yaml",
        'builtin: compare\n    params: {left: minutes_since_entry_order, op: ">=", right: 2}',
        "builtin: all_true\n    params: {facts: [holds_positon, tradable_now, tradable_nw], extra: 1}",
    )
    found = compile_rules(load_rules(project.rules), "momentum", needed=["entry_timed_out"])[1]
    line = project.line_of("rules/guards.yaml", "holds_positon")
    assert [(p.path, p.line, p.col) for p in found] == [
        ("guards.entry_timed_out.params.extra", line, 65),
        ("guards.entry_timed_out.params.facts[0]", line, 22),
        ("guards.entry_timed_out.params.facts[2]", line, 51),
    ]
    assert found[0].message == "built-in 'all_true' has no parameter 'extra'"
    assert found[1].message.startswith("unknown fact 'holds_positon' (did you mean 'holds_position'?)")


@pytest.mark.parametrize(
    ("right", "says"),
    [
        ("true", "true is not a fact name or a number"),
        ("null", "null is not a fact name or a number"),
        ("[2]", "a list is not a fact name or a number"),
    ],
)
def test_a_builtin_parameter_that_is_no_name_is_said_as_written(project: ProjectCopy, right: str, says: str) -> None:
    """`right: true` was "unknown fact 'True'", and `right: null` "unknown fact 'None'": names the file does not
    hold, in Python's spelling."""
    project.replace("rules/guards.yaml", 'op: ">=", right: 2}', f'op: ">=", right: {right}}}')
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["entry_timed_out"])[1])
    assert (p.path, p.message) == ("guards.entry_timed_out.params.right", says)


def test_a_builtin_operator_that_is_not_text_is_said_as_written(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", 'op: ">="', "op: true")
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["entry_timed_out"])[1])
    assert (p.path, p.message.split(" is not")[0]) == ("guards.entry_timed_out.params.op", "true")


# --- where a problem points ----------------------------------------------------------------------------------


def test_a_type_error_points_at_the_operator_in_the_yaml_line(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "expr: trades_today < risk_max_trades_per_day", "expr: trades_today < 'three'")
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["under_trade_cap"])[1])
    line = project.line_of("rules/guards.yaml", "trades_today < 'three'")
    text = (project.rules / "guards.yaml").read_text(encoding="utf-8").splitlines()[line - 1]
    assert (p.line, p.col) == (line, text.index("<") + 1)
    assert [p.message, *p.excerpt.splitlines()] == [
        "expression error: '<' compares 'trades_today' (a number) with a string; both sides must be of one type",
        "    trades_today < 'three'",
        "                 ^",
    ]


def test_an_unknown_fact_in_a_quoted_expression_points_at_the_name(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml",
        "expr: open_positions < risk_max_concurrent_positions",
        "expr: 'open_positions < risk_max_concurrent_position'",
    )
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["under_position_cap"])[1])
    text = (project.rules / "guards.yaml").read_text(encoding="utf-8").splitlines()[p.line - 1]
    assert p.col == text.index("risk_max_concurrent_position'") + 1
    assert p.message.startswith("unknown fact 'risk_max_concurrent_position' (did you mean 'risk_max_concurrent_positions'?)")


@pytest.mark.parametrize(
    "written",
    [
        ">-\n      open_positions <\n      risk_max_concurrent_position",  # folded
        "|\n      open_positions <\n        risk_max_concurrent_position",  # literal, the line more indented
        ">-\n      open_positions <\n\n      risk_max_concurrent_position",  # a blank line in it
        "open_positions <\n      risk_max_concurrent_position",  # a plain value that goes on below
        '"open_positions <\n      risk_max_concurrent_position"',  # a quoted one
    ],
)
def test_a_value_over_several_lines_points_at_the_token_s_own_line(project: ProjectCopy, written: str) -> None:
    """A token on a later line of the value was told at the value's first line (the `>` of a block), where an
    editor or a CI log's link opened, lines away from the name to fix."""
    project.replace("rules/guards.yaml", "expr: open_positions < risk_max_concurrent_positions", f"expr: {written}")
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["under_position_cap"])[1])
    line = project.line_of("rules/guards.yaml", "risk_max_concurrent_position")
    text = (project.rules / "guards.yaml").read_text(encoding="utf-8").splitlines()[line - 1]
    assert (p.line, p.col) == (line, text.index("risk_max") + 1), p
    assert "risk_max_concurrent_position" in p.excerpt.splitlines()[0]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_token_below_a_unicode_line_separator_is_placed_on_its_own_line(project: ProjectCopy, separator: str) -> None:
    """A line separator in a description above (not a line break to YAML, nor to an editor) split the file's lines
    once more for the token's place: the token was told at its value's start, not under the name to fix. Found by
    tools/configfuzz.py."""
    project.replace("rules/guards.yaml", "description: Local time is inside", f'description: "Local{separator}time is inside')
    project.replace("rules/guards.yaml", "(session.trade_start..trade_end).", '(session.trade_start..trade_end)."')
    written = "expr: risk_max_concurrent_positions > open_position"
    project.replace("rules/guards.yaml", "expr: open_positions < risk_max_concurrent_positions", written)
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["under_position_cap"])[1])
    lines = (project.rules / "guards.yaml").read_text(encoding="utf-8").split("\n")
    line = next(n for n, text in enumerate(lines, 1) if written in text)
    assert (p.line, p.col) == (line, lines[line - 1].index("open_position") + 1), p


def test_a_syntax_error_points_at_its_column(project: ProjectCopy) -> None:
    project.replace("rules/preflight.yaml", "expr: capital_room_usd > 0", "expr: capital_room_usd => 0")
    found = check_all_rules(load_rules(project.rules))
    p = only(found)
    text = (project.rules / "preflight.yaml").read_text(encoding="utf-8").splitlines()[p.line - 1]
    assert p.path == "preflight.capital_available.expr" and p.col == text.index("=>") + 1
    assert p.message.startswith("expression syntax error: invalid syntax (write '>=')")


# --- every rule checked, used or not -----------------------------------------------------------------------


def test_an_unused_guard_with_a_typo_is_found(project: ProjectCopy) -> None:
    book = add_guard(project, "quote_very_old", "    expr: quote_age > 60\n")
    p = only(check_all_rules(book))
    assert p.path == "guards.quote_very_old.expr" and p.line == project.line_of("rules/guards.yaml", "quote_age > 60")
    assert p.message.startswith("unknown fact 'quote_age' (did you mean 'quote_age_s'?)")
    for kind in SPECS:  # the machines' lint alone never compiles it
        assert compile_rules(book, kind, needed=SPECS[kind].guards_used())[1] == []


def test_an_unused_guard_with_a_type_error_is_found(project: ProjectCopy) -> None:
    book = add_guard(project, "weird", "    expr: holds_position == 1\n")
    assert only(check_all_rules(book)).message.startswith(
        "expression error: '==' compares 'holds_position' (true/false) with a number"
    )


def test_an_unused_guard_that_only_one_kind_can_read_is_fine(project: ProjectCopy) -> None:
    book = add_guard(project, "late", "    expr: minutes_to_close < exits_flatten_before_close_minutes / 2\n")
    assert check_all_rules(book) == []
    assert compile_rules(book, "momentum", needed=["late"])[1] != []


def test_the_most_useful_message_wins(project: ProjectCopy) -> None:
    # readable only by options machines, where it is a type error: that, not "not available to ...", is reported
    book = add_guard(project, "odd", "    expr: exits_flatten_before_close_minutes == 'soon'\n")
    assert only(check_all_rules(book)).message.startswith("expression error: '==' compares")


def test_unused_compositions_and_builtins_are_checked(project: ProjectCopy) -> None:
    add_guard(project, "loop_a", "    when: {all: [loop_b, flat]}\n")
    book = add_guard(project, "loop_b", "    when: {any: [loop_a]}\n")
    assert {p.message for p in check_all_rules(book)} == {
        "guard 'loop_a' is part of a cycle of compositions",
        "guard 'loop_b' is part of a cycle of compositions",
    }
    book = add_guard(project, "odd_builtin", "    builtin: all_true\n    params: {facts: [holds_position, trades_today]}\n")
    p = only([p for p in check_all_rules(book) if "odd_builtin" in p.path])
    assert p.message == "built-in 'all_true': 'and' joins true/false values, not 'trades_today' (a number)"


def test_guards_the_machines_use_are_left_to_their_lint(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "expr: trades_today < risk_max_trades_per_day", "expr: trades_today < risk_max_trade_per_day"
    )
    book = load_rules(project.rules)
    assert len(check_all_rules(book)) == 1
    used = [g for spec in SPECS.values() for g in spec.guards_used()]
    assert check_all_rules(book, used=used) == []  # may_open is used; under_trade_cap is part of it


def test_a_preflight_check_must_compile_for_every_bot_kind(project: ProjectCopy) -> None:
    project.replace("rules/preflight.yaml", "expr: tradable_now", "expr: tradable_now and exits_flatten_before_close_minutes > 0")
    found = check_all_rules(load_rules(project.rules))
    assert {p.message for p in found} == {
        "fact 'exits_flatten_before_close_minutes' is not available to momentum machines",
        "fact 'exits_flatten_before_close_minutes' is not available to crypto machines",
    }


def test_a_kill_condition_must_compile_for_the_system(project: ProjectCopy) -> None:
    project.replace("rules/kill_conditions.yaml", "expr: stale_markets > 0", "expr: stale_markets > 0 and holds_position")
    p = only(check_all_rules(load_rules(project.rules)))
    assert p.path == "kill_conditions.data_stale_halt.expr"
    assert p.message.startswith("fact 'holds_position' is not available to system machines")


# --- no rule-engine -----------------------------------------------------------------------------------------


def test_validating_imports_no_rule_engine() -> None:
    code = (
        "import sys\n"
        "from engine.validate import validate\n"
        "from engine.paths import PROJECT_ROOT as R\n"
        "from engine.rules.book import check_all_rules\n"
        "report = validate(R / 'config', R / 'machines', R / 'rules')\n"
        "assert report.ok, report.problems\n"
        "assert check_all_rules(report.book) == []\n"
        "assert 'rule_engine' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


@pytest.mark.parametrize(
    ("old", "what"),
    [
        ("    expr: position_pnl_pct >= exits_take_profit_pct\n", "expr"),
        ("    when: {all: [in_trade_window, preflight_ok, under_trade_cap, under_position_cap]}\n", "when"),
    ],
)
def test_params_beside_an_expr_or_a_when_are_refused_at_params(project: ProjectCopy, old: str, what: str) -> None:
    """Only a built-in reads `params:`; the schema allows them on every guard, so `params: {right: 5}` beside
    `expr: position_pnl_pct >= exits_take_profit_pct` validated and was ignored: the guard the user meant to change
    went on as it was."""
    project.replace("rules/guards.yaml", old, old + "    params: {right: 5}\n")
    found = validate(project.config, project.machines, project.rules).problems
    assert len(found) == 1, found
    (p,) = found
    assert p.path.endswith(".params") and p.line == project.line_of("rules/guards.yaml", "params: {right: 5}")
    assert p.message == (
        f"params are read only by a `builtin:` guard: this `{what}:` guard would ignore them; write the values into its `{what}:`"
    )


@pytest.mark.parametrize(
    "written",
    [
        "'open_positions >= 0 and ''a'' != ''b'' and open_positions < risk_max_concurrent_position'",  # '' in single quotes
        '"open_positions >= 0 and \\"a\\" != \\"b\\" and open_positions < risk_max_concurrent_position"',  # \" in double
        "\"open_positions >= 0 and \\x27a\\x27 != 'b' and open_positions < risk_max_concurrent_position\"",  # \x27 is '
        '"open_positions >= 0 and open_positions <\\\n      \\ risk_max_concurrent_position"',  # an escaped line break
        '"open_positions \\u003C\n      risk_max_concurrent_position"',  # \u003C is <, the token a line below
    ],
)
def test_a_token_after_an_escape_in_a_quoted_value_is_placed_at_itself(project: ProjectCopy, written: str) -> None:
    """An escape in a quoted value (`''` in single quotes, `\\"` or `\\x27` in double ones) is two or four characters
    of the file for one of the value: a token after it was told at the value's opening quote, not at itself."""
    project.replace("rules/guards.yaml", "expr: open_positions < risk_max_concurrent_positions", f"expr: {written}")
    p = only(compile_rules(load_rules(project.rules), "momentum", needed=["under_position_cap"])[1])
    line = project.line_of("rules/guards.yaml", "risk_max_concurrent_position")
    text = (project.rules / "guards.yaml").read_text(encoding="utf-8").splitlines()[line - 1]
    assert (p.line, p.col) == (line, text.index("risk_max") + 1), p
    assert p.message.startswith("unknown fact 'risk_max_concurrent_position'")
