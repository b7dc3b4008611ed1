"""The guard language: every form it accepts, every form it refuses (with the column), its types, and its
fail-closed run-time semantics."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from engine.rules import expressions
from engine.rules.errors import ExpressionError, FactTypeError, GuardError, MissingFact

TYPES = {
    "ok": "bool",
    "ready": "bool",
    "count": "int",
    "limit": "int",
    "pnl": "float",
    "stop": "float",
    "mode": "str",
    "side": "str",
}
FACTS: dict[str, Any] = {
    "ok": True,
    "ready": False,
    "count": 3,
    "limit": 5,
    "pnl": -0.6,
    "stop": 0.5,
    "mode": "paper",
    "side": "buy",
}


def run(text: str, facts: Mapping[str, Any] | None = None) -> bool:
    return expressions.compile_expression(text, TYPES).function(FACTS if facts is None else facts)


def error(text: str, types: Mapping[str, str] = TYPES) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        expressions.parse(text, types)
    return caught.value


# --- the grammar -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok", True),
        ("ready", False),
        ("true", True),
        ("false", False),
        ("not ready", True),
        ("ok and ready", False),
        ("ok or ready", True),
        ("ok and not ready and count < limit", True),
        ("not (ok and ready)", True),
        ("(ok or ready) and not ready", True),
        ("ready or ok and ready", False),  # and binds tighter than or
        ("count < limit", True),
        ("count <= 3", True),
        ("count == 3", True),
        ("count != 3", False),
        ("count >= 4", False),
        ("count > 2.5", True),
        ("pnl <= -stop", True),
        ("pnl >= +stop", False),
        ("count + 2 == limit", True),
        ("limit - count == 2", True),
        ("count * 2 > limit", True),
        ("count / 2 == 1.5", True),  # true division, as a reader expects
        ("limit % count == 2", True),
        ("count / (limit - 4) == 3", True),
        ("pnl / 2 <= -stop / 2", True),
        ("1e3 > 999", True),
        ("mode == 'paper'", True),
        ('mode != "live"', True),
        ("side < mode", True),  # strings order like words: 'buy' < 'paper'
        ("mode < side", False),
        ("ok == true", True),
        ("ready != false", False),
        ("(count > 1) == ok", True),
        ("  ok", True),  # a quoted YAML value may start with blanks
        ("ok and\n  count < limit", True),  # a YAML block scalar keeps its line breaks
    ],
)
def test_each_form_of_the_language(text: str, expected: bool) -> None:
    assert run(text) is expected


def test_the_result_is_exactly_a_bool() -> None:
    assert run("ok and ready") is False and run("ready or ok") is True


def test_int_and_float_facts_are_both_numbers() -> None:
    assert run("count < limit", {**FACTS, "count": 3.0, "limit": 5}) is True
    assert run("pnl <= -stop", {**FACTS, "pnl": -1, "stop": 1}) is True


# --- refused forms, each with its message and column ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("abs(pnl) > 1", "calls are not part of the guard language", 0),
        ("ok and exits.stop > 1", "'.' is not part of the guard language", 7),
        ("mode[0] == 'p'", "indexing ([...]) is not part of the guard language", 0),
        ("(lambda: ok)", "lambda is not part of the guard language", 1),
        ("[c for c in mode] == 1", "comprehensions are not part of the guard language", 0),
        ("ok if ready else ok", "'... if ... else ...' is not part of the guard language", 0),
        ("(ok := true)", "':=' is not part of the guard language", 1),
        ("[ok] == [ok]", "lists are not part of the guard language", 0),
        ("ok, ready", "tuples (a comma) are not part of the guard language", 0),
        ("{ok} == {ok}", "sets are not part of the guard language", 0),
        ("f'{mode}' == 'x'", "f-strings are not part of the guard language", 0),
        ("mode is 'paper'", "'is' is not part of the guard language (write '==' or '!=')", 5),
        ("mode is not 'x'", "'is not' is not part of the guard language", 5),
        ("mode in 'paper'", "'in' is not part of the guard language", 5),
        ("mode not in 'x'", "'not in' is not part of the guard language", 5),
        ("count ** 2 > 1", "'**' is not part of the guard language", 6),
        ("count // 2 > 1", "'//' is not part of the guard language", 6),
        ("ok & ready", "'&' is not part of the guard language (write 'and')", 3),
        ("ok | ready", "'|' is not part of the guard language (write 'or')", 3),
        ("ok ^ ready", "'^' is not part of the guard language", 3),
        ("~ok", "'~' is not part of the guard language (write 'not')", 0),
        ("0 < count < 5", "chained comparisons are not part of the guard language", 10),
        ("count < limit == ok", "chained comparisons", 14),
        ("(count) < (limit) < 9", "chained comparisons", 18),
        ("ok == True", "write true, in lower case", 6),
        ("pnl == None", "None is not part of the guard language", 7),
        ("pnl == null", "null is not part of the guard language", 7),
        ("mode == b'x'", "bytes values are not part of the guard language", 8),
        ("count == 1j", "complex values are not part of the guard language", 9),
        ("1e999 > count", "number out of range", 0),
        ("count = 3", "invalid syntax ('=' is not a comparison: write '==')", 6),
        ("count => 3", "invalid syntax (write '>=')", 6),
        ("ok && ready", "(write 'and')", 3),
        ("ok || ready", "(write 'or')", 3),
        ("!ok", "(write 'not', or '!=' to compare)", 0),
        ("ok ? ready : ok", "there is no '?:'", 3),
        ("(ok and ready", "'(' was never closed", 0),
        ("ok)", "unmatched ')'", 2),
        ("ok and", "invalid syntax", 6),
        ("  ", "the expression is empty", 0),
        ("  ok ! ready", "invalid syntax", 5),  # columns count the leading blanks
    ],
)
def test_refused_forms_say_what_and_where(text: str, message: str, column: int) -> None:
    found = error(text)
    assert found.category == "syntax"
    assert message in found.message and found.message.startswith("expression syntax error: ")
    assert found.column == column, found.message


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("count < 1and ok", "invalid decimal literal", 8),
        ("count < 0x1for ok", "invalid hexadecimal literal", 11),  # Python read `0x1f or ok`
        ("mode == '\\d' and ok", "invalid escape sequence", 8),
    ],
)
def test_what_python_only_warns_about_is_refused_without_a_word_on_stderr(
    text: str, message: str, column: int, recwarn: pytest.WarningsRecorder
) -> None:
    """Python wrote `<unknown>:1: SyntaxWarning: ...` to standard error, outside the one-line-per-problem output,
    and the guard validated."""
    found = error(text)
    assert message in found.message and found.message.startswith("expression syntax error: ")
    assert found.column == column, found.message
    assert not recwarn.list


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("count < 0x10", "write the number 0x10 in plain decimal digits (Python reads it as 16)", 8),
        ("count < 1_0", "write the number 1_0 in plain decimal digits (Python reads it as 10)", 8),
        ("count < 0o7 and ok", "(Python reads it as 7)", 8),
        ("pnl < 1e-400", "the number 1e-400 is too small: it reads as 0", 6),
        ("ok and \uff43ount < 3", "'\uff43ount' is read by Python as 'count': write names in ASCII", 7),
    ],
)
def test_what_python_reads_as_another_name_or_number_is_refused(text: str, message: str, column: int) -> None:
    """Validated as the value Python made of it (the full-width letter folded into ASCII, the hexadecimal read
    as 16, the underflow read as 0), each guard meant something its reader would not see in the file."""
    found = error(text)
    assert message in found.message, found.message
    assert found.column == column, found.message


@pytest.mark.parametrize("text", ["pnl < 1.5e-3", "pnl < .5", "pnl < 1.", "pnl < 0.0", "pnl > -1e3", "count < 10"])
def test_plain_decimal_numbers_stay_as_they_are(text: str) -> None:
    expressions.compile_expression(text, TYPES)


def test_a_dotted_config_name_suggests_its_fact() -> None:
    found = error("exits.stop_loss_pct > 1", {"exits_stop_loss_pct": "float"})
    assert "(did you mean 'exits_stop_loss_pct'?)" in found.message


def test_columns_count_characters_not_bytes() -> None:
    assert error("mode == 'é' and ok and count").column == 23  # `count`: 24 in UTF-8 bytes
    assert error("'éé' = mode").column == 5


def test_unknown_fact_carries_the_name_and_the_suggestion() -> None:
    found = error("ok and cuont < limit")
    assert found.message == "unknown fact 'cuont' (did you mean 'count'?)"
    assert (found.name, found.suggestion, found.column, found.width) == ("cuont", "count", 7, 5)


def test_the_caller_words_a_name_another_machine_kind_has() -> None:
    with pytest.raises(ExpressionError) as caught:
        expressions.parse("ok and margin > 1", TYPES, lambda name: f"fact '{name}' is not available to test machines")
    assert caught.value.message == "fact 'margin' is not available to test machines" and caught.value.column == 7


# --- types ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("count == 'three'", "'==' compares 'count' (a number) with a string; both sides must be of one type", 6),
        ("count != mode", "'!=' compares 'count' (a number) with 'mode' (a string)", 6),
        ("ok == 1", "'==' compares 'ok' (true/false) with a number", 3),
        ("count != ready", "'!=' compares 'count' (a number) with 'ready' (true/false)", 6),
        ("count < 'three'", "'<' compares 'count' (a number) with a string", 6),
        ("ok < ready", "'<' orders numbers or strings, not true/false", 3),
        ("ok + 1 > 2", "'+' takes numbers, not 'ok' (true/false)", 3),
        ("mode + side == 'x'", "'+' takes numbers, not 'mode' (a string)", 5),
        ("-ok", "'-' takes a number, not 'ok' (true/false)", 0),
        ("not count", "'not' takes true/false, not 'count' (a number)", 0),
        ("ok and count", "'and' joins true/false values, not 'count' (a number)", 7),
        ("mode or ok", "'or' joins true/false values, not 'mode' (a string)", 0),
        ("count / 0 > 1", "division by zero", 8),
        ("count % 0.0 > 1", "division by zero", 8),
    ],
)
def test_type_errors(text: str, message: str, column: int) -> None:
    found = error(text)
    assert found.category == "type" and found.message.startswith("expression error: ") and message in found.message
    assert found.column == column


@pytest.mark.parametrize(("text", "gives"), [("count", "a number"), ("count + 1", "a number"), ("mode", "a string")])
def test_the_expression_must_give_true_or_false(text: str, gives: str) -> None:
    assert error(text).message == f"expression gives {gives}, not true/false"


# --- run time: fail closed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ok", "count", "pnl", "mode"])
def test_a_missing_fact_raises_missing_fact(name: str) -> None:
    text = {"ok": "ok", "count": "count > 1", "pnl": "pnl < 1", "mode": "mode == 'x'"}[name]
    with pytest.raises(MissingFact) as caught:
        run(text, {**FACTS, name: None})
    assert caught.value.name == name


def test_an_absent_fact_raises_and_never_defaults() -> None:
    facts = dict(FACTS)
    del facts["count"]
    with pytest.raises(KeyError):
        run("count < limit", facts)


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("ok", {"ok": 1}),
        ("ok", {"ok": "true"}),
        ("count > 1", {"count": True}),  # a bool is not a number, even though Python says so
        ("count > 1", {"count": "3"}),
        ("pnl < 1", {"pnl": math.nan}),  # NaN compares false with everything: it would switch a rule off
        ("mode == 'x'", {"mode": 1}),
    ],
)
def test_a_value_of_the_wrong_type_raises(text: str, facts: dict[str, Any]) -> None:
    with pytest.raises(FactTypeError):
        run(text, {**FACTS, **facts})


def test_subclasses_of_the_declared_types_are_read() -> None:
    class Price(float):
        pass

    class Level(enum.IntEnum):
        HIGH = 7

    class Mode(str):
        pass

    assert run(
        "pnl < stop and count > limit and mode == 'paper'",
        {**FACTS, "pnl": Price(0.1), "count": Level.HIGH, "mode": Mode("paper")},
    )
    with pytest.raises(FactTypeError):
        run("pnl < stop", {**FACTS, "pnl": Price("nan")})


def test_division_by_zero_at_run_time_raises() -> None:
    with pytest.raises(ZeroDivisionError):
        run("pnl / (count - 3) < 1")
    with pytest.raises(ZeroDivisionError):
        run("limit % (count - 3) < 1")


class Recording(Mapping[str, Any]):
    """Facts that remember the order they were read in."""

    def __init__(self, values: Mapping[str, Any]):
        self.data = dict(values)
        self.read: list[str] = []

    def __getitem__(self, name: str) -> Any:
        self.read.append(name)
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_and_or_short_circuit_left_to_right() -> None:
    facts = Recording({**FACTS, "pnl": None})
    assert run("ready and pnl < 1", facts) is False  # pnl is missing but never read
    assert run("ok or pnl < 1", facts) is True
    assert facts.read == ["ready", "ok"]
    facts.read.clear()
    assert run("count < limit and not ready and ok", facts) is True
    assert facts.read == ["count", "limit", "ready", "ok"]
    with pytest.raises(MissingFact):
        run("pnl < 1 or ok", facts)  # the left side is read first, and it is missing


# --- compiled code -----------------------------------------------------------------------------------------


def test_generated_code_reads_facts_by_string_literal_and_has_no_builtins() -> None:
    compiled = expressions.compile_expression("ok and count < limit and mode == 'paper'", TYPES)
    code = compiled.function.__code__
    # every global the code names is one of the compiler's own helpers, never a name from the expression
    assert set(code.co_names) <= {*expressions._RUNTIME, "_names", "__class__"}
    assert {"ok", "count", "limit", "mode"} <= set(code.co_consts)
    assert compiled.function.__globals__["__builtins__"] == {}
    assert "f['count']" in compiled.source


def test_a_fact_named_like_python_code_is_still_only_a_string() -> None:
    types = {"__import__": "bool"}
    compiled = expressions.compile_expression("__import__", types)
    assert compiled.function({"__import__": True}) is True
    assert "__import__" not in compiled.function.__code__.co_names


def test_facts_read() -> None:
    node = expressions.parse("ok and (count < limit or pnl <= -stop)", TYPES)
    assert expressions.facts_of(node) == {"ok", "count", "limit", "pnl", "stop"}


def test_a_composition_names_the_innermost_guard_that_failed() -> None:
    inner = expressions.guard("loss", expressions.parse("pnl / (count - 3) < 1", TYPES))
    outer = expressions.logic("and", [expressions.guard("armed", expressions.parse("ok", TYPES)), inner])
    nested = expressions.logic(
        "or", [expressions.guard("either", outer), expressions.guard("never", expressions.parse("ready", TYPES))]
    )
    function = expressions.compile_node(nested, "top").function
    with pytest.raises(GuardError) as caught:
        function(FACTS)
    assert caught.value.guard == "loss" and isinstance(caught.value.cause, ZeroDivisionError)
    with pytest.raises(GuardError) as caught:
        function({**FACTS, "ok": None})
    assert caught.value.guard == "armed" and isinstance(caught.value.cause, MissingFact)
    assert function({**FACTS, "count": 4}) is True


def test_an_empty_all_holds_and_an_empty_any_does_not() -> None:
    assert expressions.compile_node(expressions.logic("and", [])).function({}) is True
    assert expressions.compile_node(expressions.logic("or", [])).function({}) is False


def test_pointer_puts_the_caret_under_the_token() -> None:
    text = "ok and cuont < limit"
    assert expressions.pointer(text, error(text)) == "    ok and cuont < limit\n           ^^^^^"
    text = "\tok = 1"
    assert expressions.pointer(text, error(text)).splitlines()[1] == "    \t   ^"


def test_a_source_compiled_again_shares_its_code_but_each_function_names_its_own_guards() -> None:
    """Generated code is compiled once a process (`_code`): the same source again, here under two compositions
    whose guards have other names, gets the same code object, and each function still raises with its own names
    and answers from its own facts."""

    def composed(first: str, second: str) -> Any:
        loss = expressions.parse("pnl / (count - 3) < 1", TYPES)
        parts = [expressions.guard(first, expressions.parse("ok", TYPES)), expressions.guard(second, loss)]
        return expressions.compile_node(expressions.logic("and", parts), "top").function

    one, other = composed("armed", "loss"), composed("ready_now", "too_far")
    assert one is not other and one.__code__ is other.__code__
    for function, guard in ((one, "loss"), (other, "too_far")):
        with pytest.raises(GuardError) as caught:
            function(FACTS)
        assert caught.value.guard == guard
    assert one({**FACTS, "count": 4}) is other({**FACTS, "count": 4}) is True
    assert one({**FACTS, "ok": False}) is False
