"""Expressions and compositions nested too deeply for the generated Python are refused as errors of the file,
never raised as SyntaxError or RecursionError from inside `--validate` or a tick."""

from __future__ import annotations

import pytest

from engine.paths import PROJECT_ROOT as ROOT
from engine.rules import conditions, expressions
from engine.rules.book import Entry, RuleBook, compile_rules, load_rules
from engine.rules.errors import ExpressionError
from tests.conftest import ProjectCopy

TYPES = {"flag": "bool", "n": "int"}


def test_deepest_allowed_expression_compiles_and_one_more_is_refused() -> None:
    ok = "not " * (expressions.MAX_DEPTH - 1) + "flag"
    assert expressions.compile_expression(ok, TYPES).function({"flag": True}) is (expressions.MAX_DEPTH % 2 == 1)
    with pytest.raises(ExpressionError, match="nests 61 levels deep"):
        expressions.compile_expression("not " + ok, TYPES)


@pytest.mark.parametrize("text", ["not " * 250 + "flag", "n" + " + 1" * 300 + " > 0"])
def test_expressions_python_would_not_compile_are_expression_errors(text: str) -> None:
    with pytest.raises(ExpressionError):
        expressions.compile_expression(text, TYPES)


def _chain(book: RuleBook, length: int) -> None:
    """Guards chain0 .. chain{length}: each composes the next; the last is a fact."""
    template = book.guards["in_trade_window"]
    for i in range(length):
        body = {"description": "c", "when": f"chain{i + 1}"}
        book.entries["guards"][f"chain{i}"] = Entry("guards", f"chain{i}", body, template.doc)
    last = {"description": "c", "expr": "in_trade_window"}
    book.entries["guards"][f"chain{length}"] = Entry("guards", f"chain{length}", last, template.doc)


def test_a_chain_of_compositions_of_any_length_is_one_problem_not_a_recursion_error() -> None:
    book = load_rules(ROOT / "rules")
    _chain(book, 1500)
    _rules, problems = compile_rules(book, "momentum", ["chain0"])
    assert len(problems) == 1
    assert "nest 61 levels deep" in problems[0].message


def test_deepest_machine_when_over_deepest_guards_compiles() -> None:
    """A machine's `when:` (at most about 60 YAML levels) over guards at the depth limit still compiles."""
    book = load_rules(ROOT / "rules")
    _chain(book, expressions.MAX_DEPTH - 2)
    rules, problems = compile_rules(book, "momentum", ["chain0"])
    assert problems == []
    when: conditions.Condition = conditions.Ref("chain0")
    for _ in range(62):
        when = conditions.Not(when)
    step = rules.first_holding([when])
    assert step({"in_trade_window": True}) == 0  # an even number of nots over a guard that holds


@pytest.mark.parametrize("text", ["n < " + "9" * 60, "n > -" + "9" * 60, f"n < {2**63}"])
def test_integers_past_the_configs_bound_are_expression_errors(text: str) -> None:
    """Such an integer cannot be converted to a float to be checked: it was an OverflowError traceback."""
    with pytest.raises(ExpressionError, match="number out of range"):
        expressions.compile_expression(text, TYPES)


def test_the_largest_integer_is_a_number() -> None:
    assert expressions.compile_expression(f"n < {2**63 - 1}", TYPES).function({"n": 1}) is True


def test_a_rule_name_the_schema_refuses_says_what_a_name_may_be(project: ProjectCopy) -> None:
    """Rule names are the user's own: there is no list of allowed ones to show ("allowed: " with nothing after)."""
    from engine.validate import validate

    project.replace("rules/guards.yaml", "  past_manage_until:", "  Past_manage_until:")
    [problem] = [p for p in validate(project.config, project.machines, project.rules).problems if "Past_manage" in p.message]
    assert problem.message == (
        "unknown key 'Past_manage_until' (a name is lower-case letters, digits and '_', starting with a letter)"
    )


def _doubling(project: ProjectCopy, levels: int) -> None:
    """Guards twice0 .. twice{levels}, each composing the one before twice: shallow, but 2^levels written out."""
    lines = ["guards:", "  twice0: {description: c, expr: in_trade_window}"]
    lines += [f"  twice{i}: {{description: c, when: {{all: [twice{i - 1}, twice{i - 1}]}}}}" for i in range(1, levels + 1)]
    (project.rules / "twice.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_guards_composing_guards_twice_over_are_refused_at_the_first_too_large_not_compiled_for_ever(
    project: ProjectCopy,
) -> None:
    """Each level doubles what is written out (and what a tick evaluates): 23 levels took `--validate` 30 s, 55 (far
    within MAX_DEPTH) would never end. Now the first guard past MAX_NODES is the one problem, at once."""
    from engine.validate import validate

    _doubling(project, 55)
    problems = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    (p,) = problems
    assert p.file.endswith("rules/twice.yaml") and p.path == "guards.twice9.when" and p.line == 11
    assert "add up to 2,045 terms" in p.message and f"at most {expressions.MAX_NODES:,}" in p.message


def test_a_composition_at_the_limit_compiles(project: ProjectCopy) -> None:
    from engine.validate import validate

    _doubling(project, 8)  # 1,021 terms: 256 facts, 510 guards named, 255 `all`s
    assert validate(project.config, project.machines, project.rules, project.root / "none.db").problems == []


def test_a_transition_naming_a_guard_thousands_of_times_is_refused_at_its_when(project: ProjectCopy) -> None:
    """The runtime writes each state's `when:` trees out in one function, at every start."""
    from engine.validate import validate

    project.replace("machines/momentum.yaml", "when: may_open\n", "when: {all: [" + ", ".join(["may_open"] * 300) + "]}\n")
    (p,) = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert p.file.endswith("machines/momentum.yaml") and p.path.endswith(".when") and "terms" in p.message


def test_an_expression_of_more_terms_than_can_be_compiled_is_refused_before_it_is_checked() -> None:
    """A guard of 140,000 terms (1 MB) was checked and compiled whole, in 18 s, before a composition's size was
    measured; with wide characters, placing each term took minutes. Now it is refused once Python has parsed it."""
    at_limit = " or ".join(["flag"] * (expressions.MAX_NODES // 2))  # 1,000 facts and one `or`
    assert expressions.compile_expression(at_limit, TYPES).function({"flag": False}) is False
    over = " or ".join(["flag"] * expressions.MAX_NODES)
    with pytest.raises(ExpressionError, match=f"more than {expressions.MAX_NODES:,} terms") as caught:
        expressions.parse(over, TYPES)
    assert (caught.value.column, caught.value.width) == (0, len(over))


@pytest.mark.parametrize(
    "text",
    ["'é' == 'é' and nope", "'\U0001f600x' == 'ü€' and nope", "flag and 'e\u0301' == 'a' and nope", "nope"],
)
def test_columns_count_characters_after_wide_ones(text: str) -> None:
    """ast counts UTF-8 bytes; the error's column counts characters, as the caret under the text is drawn."""
    with pytest.raises(ExpressionError, match="nope") as caught:
        expressions.parse(text, TYPES)
    assert caught.value.column == text.index("nope")
