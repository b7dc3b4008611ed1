"""Guard expressions: a small typed language, parsed by Python's `ast`, compiled to one Python function per rule.

Why not a library: rule-engine, which compiled the first version, cost 0.25 s to import (half of
`python -m engine --validate`) and walked its tree on every evaluation (3 to 17 µs for the shipped guards,
evaluated for every bot on every tick). This module needs only `ast` and evaluates a simple guard in well under
1 µs (`bench/guards.py`).

The language (what rules/*.yaml, the tests and the README use, and no more):
- facts by name (`python -m engine facts KIND`, in ASCII), numbers in decimal (`2`, `0.5`, `1e3`; not `0x10`, `1_0`),
  strings (`'abc'`), `true`, `false`
- `and`, `or`, `not`, parentheses; `and`/`or` short-circuit left to right
- comparisons `<`, `<=`, `==`, `!=`, `>=`, `>`, one per comparison: a chain such as `a < b < c` is refused,
  because readers from other languages read it as `(a < b) < c`; write `a < b and b < c`
- arithmetic `+`, `-`, `*`, `/`, `%` and unary `-`, `+` on numbers
Everything else Python would parse (calls, attributes, subscripts, `is`, `in`, lambdas, comprehensions,
conditional expressions, `**`, bit operators...) is refused with a message and the column of the token.

Types: a fact is true/false, a number (int and float alike) or a string. Every operator is checked when the rule
is compiled: `==` and `!=` need both sides of one type (a number never equals a string, true never equals 1),
ordering compares two numbers or two strings, arithmetic takes numbers, `and`/`or`/`not` take true/false, and the
whole expression must give true/false. So `--validate` finds what would otherwise be a silent `False` at run time.

At run time (fail closed): a fact whose value is None is missing and reading it raises `MissingFact`; a fact
absent from the mapping raises KeyError (it never defaults); a value of the wrong type, or a NaN, raises
`FactTypeError`; a division by zero raises ZeroDivisionError. Callers turn any exception into a failed check, a
halted bot or a halt.

How it is compiled, and why it is safe: the user's text is only ever given to `ast.parse`, which builds a tree
and runs nothing. A whitelist turns that tree into the small typed tree below (`Node`); nothing else survives.
Python source is then generated from the typed tree alone: operators come from fixed tables, constants are
written with `repr` of a checked bool/int/float/str, every fact is read as `f['name']` (a string literal
subscript of the facts mapping, never an identifier from the user's text), and the function is compiled with
no builtins. The user's text is never given to `eval` or `exec`.

Generated code rather than a closure per node, because it measured faster: a closure per node costs a Python
call per node. Same typed tree, same facts, per evaluation on the development machine: a simple fact 0.035 µs
either way; a comparison 0.076 µs against 0.12 µs; an and/not of three facts 0.077 µs against 0.26 µs; a
composition of four guards 0.19 µs against 0.55 µs (rule-engine: 3.0, 5.8, 11.9 and 17.0 µs).
"""

from __future__ import annotations

import ast
import bisect
import functools
import math
import re
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from engine.config.errors import caret_excerpt
from engine.core.names import did_you_mean, nearest, unknown_name_message
from engine.rules.errors import ExpressionError, FactTypeError, GuardError, MissingFact

Type = Literal["bool", "number", "str"]
Predicate = Callable[[Mapping[str, Any]], bool]
_OF_FACT: dict[str, Type] = {"bool": "bool", "int": "number", "float": "number", "str": "str"}
COMPARISONS = ("<", "<=", "==", "!=", ">=", ">")
# How deep a checked tree may nest (`not not ... x`, `1 + 1 + ...`, guards composing guards). The generated Python
# nests one parenthesis per level, and CPython refuses more than 200 ("too many nested parentheses"); a machine's
# `when:` (itself at most 64 YAML levels) composes these trees, so the whole stays far below that bound.
MAX_DEPTH = 60
# How many nodes a tree may hold once written out (`size`). A composition writes out every guard it names wherever
# it names it, so guards composing the one before twice (`g2: {all: [g1, g1]}`, `g3: {all: [g2, g2]}`...) double
# at each step: 55 such guards, within MAX_DEPTH, wrote out 2^55 nodes, and `--validate` took 30 s at 23 and ran for
# ever after, as would every tick, which evaluates the whole. The shipped rules hold 24 at most.
MAX_NODES = 2000
MAX_INTEGER = 2**63 - 1
ARITHMETIC = ("+", "-", "*", "/", "%")


def described(type_: Type) -> str:
    return {"bool": "true/false", "number": "a number", "str": "a string"}[type_]


# --- the typed tree ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A checked expression: its type, and where it is written (column and width, 0 when built from params)."""

    type: Type
    column: int
    width: int


@dataclass(frozen=True)
class Fact(Node):
    name: str


@dataclass(frozen=True)
class Const(Node):
    value: bool | int | float | str


@dataclass(frozen=True)
class Unary(Node):
    op: str  # not, -, +
    operand: Node


@dataclass(frozen=True)
class Logic(Node):
    op: str  # and, or
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Binary(Node):
    op: str  # a comparison or an arithmetic operator
    left: Node
    right: Node


@dataclass(frozen=True)
class Guard(Node):
    """A named guard inside a composition: an error raised inside it is reported under its name."""

    name: str
    body: Node


def _shown(node: Node) -> str:
    return f"'{node.name}' ({described(node.type)})" if isinstance(node, Fact) else described(node.type)


# Builders: the one place where types are checked, used by the parser, the built-in guards and compositions.


def fact(name: str, types: Mapping[str, str], column: int = 0, unknown: Callable[[str], str] | None = None) -> Fact:
    """A fact read; `types` maps fact names to bool/int/float/str, `unknown` words the error for other names."""
    fact_type = types.get(name)
    if fact_type is None:
        message = unknown(name) if unknown else unknown_name_message("fact", name, types)
        raise ExpressionError("name", message, column, len(name), name=name, suggestion=nearest(name, types))
    return Fact(_OF_FACT[fact_type], column, len(name), name)


def const(value: bool | int | float | str, column: int = 0, width: int = 1) -> Const:
    if isinstance(value, bool):
        return Const("bool", column, width, value)
    if isinstance(value, int) and not -MAX_INTEGER <= value <= MAX_INTEGER:
        # Checked before isfinite, which cannot convert such an int to a float (OverflowError); the bound is the
        # config's own, which SQLite and JSON can hold.
        raise ExpressionError("syntax", f"number out of range (integers reach {MAX_INTEGER})", column, width)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ExpressionError("syntax", "number out of range", column, width)
        return Const("number", column, width, value)
    return Const("str", column, width, value)


def unary(op: str, operand: Node, column: int = 0, width: int = 1) -> Unary:
    wanted: Type = "bool" if op == "not" else "number"
    if operand.type != wanted:
        raise ExpressionError("type", f"'{op}' takes {described(wanted)}, not {_shown(operand)}", column, width)
    return Unary(wanted, column, width, op, operand)


def logic(op: str, operands: Sequence[Node], column: int = 0, width: int = 1) -> Node:
    """`and`/`or` of true/false operands; with none, `and` is true and `or` false (an empty all/any)."""
    if not operands:
        return const(op == "and", column, width)
    for operand in operands:
        if operand.type != "bool":
            reason = f"'{op}' joins true/false values, not {_shown(operand)}"
            raise ExpressionError("type", reason, operand.column, operand.width)
    if len(operands) == 1:
        return operands[0]
    return Logic("bool", column, width, op, tuple(operands))


def binary(op: str, left: Node, right: Node, column: int = 0, width: int = 1) -> Binary:
    """A comparison or arithmetic, type-checked: see the module's docstring for the rules."""
    if op in ARITHMETIC:
        for side in (left, right):
            if side.type != "number":
                raise ExpressionError("type", f"'{op}' takes numbers, not {_shown(side)}", column, width)
        if op in ("/", "%") and isinstance(right, Const) and right.value == 0:
            raise ExpressionError("type", "division by zero", right.column, right.width)
        node = Binary("number", column, width, op, left, right)
        _check_constant(node)
        return node
    if op not in COMPARISONS:
        raise ExpressionError("syntax", f"'{op}' is not an operator of the guard language", column, width)
    if left.type != right.type:
        reason = f"'{op}' compares {_shown(left)} with {_shown(right)}; both sides must be of one type"
        raise ExpressionError("type", reason, column, width)
    if op not in ("==", "!=") and left.type == "bool":
        raise ExpressionError("type", f"'{op}' orders numbers or strings, not true/false", column, width)
    return Binary("bool", column, width, op, left, right)


def _constant_value(node: Node) -> int | float | None:
    """The number an arithmetic tree of constants only gives (`1e308 * 10`, `1 / (2 - 2)`), or None when it reads a
    fact; raises ZeroDivisionError or OverflowError as Python would. Only called on a new node whose operands were
    checked already, so it never goes deeper than their own constant operands."""
    if isinstance(node, Const) and node.type == "number":
        return node.value  # type: ignore[return-value]  # a number constant holds an int or a float
    if isinstance(node, Unary) and node.op in ("-", "+"):
        value = _constant_value(node.operand)
        return None if value is None else (-value if node.op == "-" else value)
    if isinstance(node, Binary) and node.op in ARITHMETIC:
        left, right = _constant_value(node.left), _constant_value(node.right)
        if left is None or right is None:
            return None
        return _ARITHMETIC[node.op](left, right)
    return None


_ARITHMETIC: dict[str, Callable[[Any, Any], int | float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
}


def _check_constant(node: Binary) -> None:
    """Refuse arithmetic of constants that divides by zero or gives no finite number (`1e308 * 10` is infinity,
    which every comparison but != answers as if the limit were switched off), at its operator."""
    try:
        value = _constant_value(node)
    except ZeroDivisionError:
        raise ExpressionError("type", "division by zero", node.column, node.width) from None
    except OverflowError:
        value = math.inf
    if isinstance(value, float) and not math.isfinite(value):  # an int is exact, however large
        reason = "this arithmetic gives a number too large to use (over 1.8e308, which is infinity)"
        raise ExpressionError("type", reason, node.column, node.width)


def guard(name: str, body: Node) -> Guard:
    return Guard(body.type, 0, 0, name, body)


def depth(node: Node) -> int:
    """How many levels the tree nests (a fact or a constant is 1), walked without recursion so that a tree too
    deep for Python's stack is measured too."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, Unary):
            stack.append((current.operand, level + 1))
        elif isinstance(current, Logic):
            stack.extend((operand, level + 1) for operand in current.operands)
        elif isinstance(current, Binary):
            stack.extend(((current.left, level + 1), (current.right, level + 1)))
        elif isinstance(current, Guard):
            stack.append((current.body, level + 1))
    return deepest


def size(node: Node) -> int:
    """How many nodes the tree holds written out, a part that appears twice counted twice (as the generated code
    writes it twice, and a tick evaluates it twice). Each shared part is measured once, so a tree of guards
    composing guards is measured in the time of its distinct nodes, however large it is written out."""
    sizes: dict[int, int] = {}

    def measure(current: Node) -> int:
        known = sizes.get(id(current))
        if known is not None:
            return known
        if isinstance(current, Unary):
            found = 1 + measure(current.operand)
        elif isinstance(current, Logic):
            found = 1 + sum(measure(operand) for operand in current.operands)
        elif isinstance(current, Binary):
            found = 1 + measure(current.left) + measure(current.right)
        elif isinstance(current, Guard):
            found = 1 + measure(current.body)
        else:
            found = 1
        sizes[id(current)] = found
        return found

    return measure(node)


def too_deep(node: Node) -> str | None:
    """Why the tree cannot be compiled (it nests deeper than MAX_DEPTH), or None."""
    levels = depth(node)
    if levels <= MAX_DEPTH:
        return None
    return f"the expression nests {levels} levels deep; at most {MAX_DEPTH} (split it into guards composed with when:)"


def facts_of(node: Node) -> frozenset[str]:
    """Every fact the expression may read (whichever branch short-circuiting takes)."""
    return frozenset(n.name for n in _walk(node) if isinstance(n, Fact))


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Unary):
        yield from _walk(node.operand)
    elif isinstance(node, Logic):
        for operand in node.operands:
            yield from _walk(operand)
    elif isinstance(node, Binary):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, Guard):
        yield from _walk(node.body)


# --- parsing -----------------------------------------------------------------------------------------------

_BOOL_OPS: dict[type, str] = {ast.And: "and", ast.Or: "or"}
_UNARY_OPS: dict[type, str] = {ast.Not: "not", ast.USub: "-", ast.UAdd: "+"}
_BIN_OPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_CMP_OPS: dict[type, str] = {ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!=", ast.GtE: ">=", ast.Gt: ">"}
_REFUSED_OPS: dict[type, tuple[str, str]] = {
    ast.FloorDiv: ("//", "arithmetic is + - * / %"),
    ast.Pow: ("**", "arithmetic is + - * / %"),
    ast.MatMult: ("@", "arithmetic is + - * / %"),
    ast.LShift: ("<<", "arithmetic is + - * / %"),
    ast.RShift: (">>", "arithmetic is + - * / %"),
    ast.BitAnd: ("&", "write 'and'"),
    ast.BitOr: ("|", "write 'or'"),
    ast.BitXor: ("^", "write '!=' between two true/false values"),
    ast.Invert: ("~", "write 'not'"),
    ast.Is: ("is", "write '==' or '!='"),
    ast.IsNot: ("is not", "write '!='"),
    ast.In: ("in", "compare with '==' and join with 'or'"),
    ast.NotIn: ("not in", "compare with '!=' and join with 'and'"),
}
_REFUSED_NODES: dict[type, str] = {
    ast.Call: "calls are not part of the guard language",
    ast.Subscript: "indexing ([...]) is not part of the guard language",
    ast.Lambda: "lambda is not part of the guard language",
    ast.IfExp: "'... if ... else ...' is not part of the guard language; compose guards with when: all/any/not",
    ast.NamedExpr: "':=' is not part of the guard language",
    ast.List: "lists are not part of the guard language",
    ast.Tuple: "tuples (a comma) are not part of the guard language",
    ast.Set: "sets are not part of the guard language",
    ast.Dict: "dicts are not part of the guard language",
    ast.ListComp: "comprehensions are not part of the guard language",
    ast.SetComp: "comprehensions are not part of the guard language",
    ast.DictComp: "comprehensions are not part of the guard language",
    ast.GeneratorExp: "comprehensions are not part of the guard language",
    ast.JoinedStr: "f-strings are not part of the guard language",
    ast.Starred: "'*' is not part of the guard language",
    ast.Await: "await is not part of the guard language",
    ast.Yield: "yield is not part of the guard language",
    ast.YieldFrom: "yield is not part of the guard language",
    ast.Slice: "slices are not part of the guard language",
}
_SYNTAX_HINTS = {
    "=": "'=' is not a comparison: write '=='",
    "&": "write 'and'",
    "|": "write 'or'",
    "!": "write 'not', or '!=' to compare",
    "?": "there is no '?:'; compose guards with when: all/any/not",
}


def parse(text: str, types: Mapping[str, str], unknown: Callable[[str], str] | None = None) -> Node:
    """The typed tree of an expression over the facts `types` (name -> bool/int/float/str); raises
    ExpressionError with the column of the offending token. `unknown(name)` words the error for a name that is
    not a fact here (so the rule book can say that another machine kind has it)."""
    flat = text.replace("\r", " ").replace("\n", " ")  # a YAML block scalar may span lines; columns stay put
    body = flat.lstrip()
    indent = len(flat) - len(body)
    if not body.strip():
        raise ExpressionError("syntax", "the expression is empty", 0, len(text))
    try:
        tree = _parsed(body)
    except SyntaxError as exc:
        raise _syntax_error(body, exc, indent) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurd nesting
        raise ExpressionError("syntax", str(exc) or type(exc).__name__, indent) from None
    large = _too_many_terms(tree.body)
    if large:
        raise ExpressionError("syntax", large, indent, len(body.rstrip()))
    parser = _Parser(body, indent, types, unknown)
    try:
        node = parser.convert(tree.body)
    except RecursionError:
        raise ExpressionError("syntax", "the expression is nested too deeply", indent) from None
    deep = too_deep(node)
    if deep:
        raise ExpressionError("syntax", deep, indent, len(body.rstrip()))
    if node.type != "bool":
        reason = f"expression gives {described(node.type)}, not true/false"
        raise ExpressionError("result", reason, indent, len(body.rstrip()))
    return node


def _parsed(body: str) -> ast.Expression:
    """Python's tree of `body`, where what Python only warns about is a SyntaxError of the expression.

    `count < 1and ok` and `count < 0x1for ok` (read as `0x1f or ok`) parsed with a SyntaxWarning ("invalid
    decimal literal") that Python wrote to standard error as `<unknown>:1: SyntaxWarning: ...`, a line outside
    the `file:line:col` contract, once per reading, while the guard validated; `'\\d'` (an escape Python does not
    know, kept as a backslash) warns from Python 3.12 and is a DeprecationWarning before. Refused at the column.
    `catch_warnings` changes the process's filters for the moment of the parse: guards are parsed while the config
    is loaded, before the status page's or the alerts' threads start, never while they run."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SyntaxWarning)
        warnings.simplefilter("error", DeprecationWarning)
        return ast.parse(body, mode="eval")


def _too_many_terms(tree: ast.expr) -> str | None:
    """Why an expression is refused before it is checked: it holds more than MAX_NODES terms. Each term Python
    parsed (a fact, a constant, an operator) becomes one node of the typed tree, so such an expression could never
    be compiled into a `when:` (see MAX_NODES); refused here, a 1 MB expression costs the time of `ast.parse`, not
    the 18 s it took to check and compile before the composition's size was measured."""
    terms = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.expr):
            terms += 1
            if terms > MAX_NODES:
                return (
                    f"the expression holds more than {MAX_NODES:,} terms, more than can be compiled (split it into "
                    "guards composed with when:)"
                )
    return None


_NOT_ASCII = re.compile("[^\x00-\x7f]")


def _wider_than_a_byte(text: str) -> tuple[list[int], list[int]]:
    """For each character of `text` written in more than one UTF-8 byte: the byte offset just after it, and how
    many bytes more than characters the text holds up to there (for `_Parser.column`, by bisection)."""
    ends: list[int] = []
    extras: list[int] = []
    extra = 0
    for match in _NOT_ASCII.finditer(text):
        code = ord(match.group())
        width = 2 if code < 0x800 else 3 if code < 0x10000 else 4
        ends.append(match.start() + extra + width)
        extra += width - 1
        extras.append(extra)
    return ends, extras


def _syntax_error(body: str, exc: SyntaxError, indent: int) -> ExpressionError:
    # SyntaxError.offset is 1-based, in characters; 0 or None means "at the end of the text".
    column = (exc.offset - 1) if exc.offset else len(body.rstrip())
    column = min(max(column, 0), len(body))
    reason = exc.msg
    found = body[column : column + 1]
    while found in ("&", "|") and column > 0 and body[column - 1] == found:  # `&&`: point at the first one
        column -= 1
    after = body[column + 1 : column + 2]
    if found == "=" and after in ("<", ">"):
        reason += f" (write '{after}=')"
    elif found == "=" and after != "=" and body[column - 1 : column] not in ("<", ">", "!", "="):
        reason += f" ({_SYNTAX_HINTS['=']})"
    elif found in _SYNTAX_HINTS and found != "=":
        reason += f" ({_SYNTAX_HINTS[found]})"
    return ExpressionError("syntax", reason, column + indent)


# A number as the guard language writes one: decimal digits, a fraction, an exponent (no base prefix, no `_`).
_DECIMAL_LITERAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)


class _Parser:
    """The whitelist: Python's tree in, a typed `Node` out, or an ExpressionError at the offending token."""

    def __init__(self, body: str, indent: int, types: Mapping[str, str], unknown: Callable[[str], str] | None):
        self.body = body
        self.indent = indent
        self.types = types
        self.unknown = unknown
        # Decoding the text up to each node's offset took a time quadratic in the text: 11 s for a guard of 16,000
        # terms of `s == 'é'`, minutes for 1 MB. The offsets of its wide characters, once, make each column a bisection.
        self.wide = None if body.isascii() else _wider_than_a_byte(body)

    def column(self, byte_offset: int) -> int:
        """A column in characters of the text as written (ast counts UTF-8 bytes)."""
        if self.wide is None:
            return byte_offset + self.indent
        ends, extras = self.wide
        before = bisect.bisect_right(ends, byte_offset)
        return byte_offset - (extras[before - 1] if before else 0) + self.indent

    def span(self, node: ast.expr) -> tuple[int, int]:
        start = self.column(node.col_offset)
        end = self.column(node.end_col_offset) if node.end_col_offset is not None else start + 1
        return start, end - start

    def operator(self, left: ast.expr, right: ast.expr, word: str) -> tuple[int, int]:
        """Where the operator between two operands is written: after the left one and its closing parentheses."""
        column = self.column(left.end_col_offset or left.col_offset) - self.indent
        while column < len(self.body) and self.body[column] in " \t)":
            column += 1
        return column + self.indent, len(word)

    def refuse(self, reason: str, column: int, width: int) -> ExpressionError:
        return ExpressionError("syntax", reason, column, width)

    def convert(self, node: ast.expr) -> Node:
        column, width = self.span(node)
        if isinstance(node, ast.BoolOp):
            return logic(_BOOL_OPS[type(node.op)], [self.convert(v) for v in node.values], column, width)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, column)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            self.written_as_read(node, column, width)
            return self.name(node.id, column)
        if isinstance(node, ast.Constant):
            self.written_as_read(node, column, width)
            return self.constant(node.value, column, width)
        if isinstance(node, ast.Attribute):
            raise self.attribute(node, column, width)
        reason = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not part of the guard language")
        raise self.refuse(reason, column, width)

    def written_as_read(self, node: ast.Name | ast.Constant, column: int, width: int) -> None:
        """Refuse a name or a number that Python reads as something other than what is written: a name in other
        letters (Python folds the full-width `ｃount` into `count`), a number in another base or with `_` (`0x10`
        is 16, `1_0` is 10), or one so small it reads as 0 (`1e-400`). Each validated as the value Python made of
        it, which the guard's reader would not recognise in the file."""
        written = self.body[column - self.indent : column - self.indent + width]
        if isinstance(node, ast.Name):
            if written != node.id:
                reason = f"'{written}' is read by Python as '{node.id}': write names in ASCII letters, digits and '_'"
                raise self.refuse(reason, column, width)
            return
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if _DECIMAL_LITERAL.fullmatch(written) is None:
            raise self.refuse(f"write the number {written} in plain decimal digits (Python reads it as {value!r})", column, width)
        if value == 0 and any(digit in written.lower().partition("e")[0] for digit in "123456789"):
            raise self.refuse(f"the number {written} is too small: it reads as 0", column, width)

    def unary(self, node: ast.UnaryOp, column: int) -> Node:
        op = _UNARY_OPS.get(type(node.op))
        if op is None:
            symbol, hint = _REFUSED_OPS[type(node.op)]
            raise self.refuse(f"'{symbol}' is not part of the guard language ({hint})", column, len(symbol))
        return unary(op, self.convert(node.operand), column, len(op))

    def binop(self, node: ast.BinOp) -> Node:
        op = _BIN_OPS.get(type(node.op))
        symbol = op or _REFUSED_OPS.get(type(node.op), ("?", ""))[0]
        column, width = self.operator(node.left, node.right, symbol)
        if op is None:
            hint = _REFUSED_OPS.get(type(node.op), ("", "arithmetic is + - * / %"))[1]
            raise self.refuse(f"'{symbol}' is not part of the guard language ({hint})", column, width)
        return binary(op, self.convert(node.left), self.convert(node.right), column, width)

    def compare(self, node: ast.Compare) -> Node:
        operands = [node.left, *node.comparators]
        places = []
        for index, op_node in enumerate(node.ops):
            op = _CMP_OPS.get(type(op_node))
            symbol = op or _REFUSED_OPS[type(op_node)][0]
            column, width = self.operator(operands[index], operands[index + 1], symbol)
            if op is None:
                hint = _REFUSED_OPS[type(op_node)][1]
                raise self.refuse(f"'{symbol}' is not part of the guard language ({hint})", column, width)
            if index > 0:
                reason = "chained comparisons are not part of the guard language: write 'a < b and b < c'"
                raise self.refuse(reason, column, width)
            places.append((op, column, width))
        op, column, width = places[0]
        return binary(op, self.convert(node.left), self.convert(node.comparators[0]), column, width)

    def name(self, name: str, column: int) -> Node:
        if name in ("true", "false"):
            return const(name == "true", column, len(name))
        if name == "null":
            reason = "null is not part of the guard language: a missing fact makes the guard fail on its own"
            raise self.refuse(reason, column, len(name))
        return fact(name, self.types, column, self.unknown)

    def constant(self, value: Any, column: int, width: int) -> Node:
        if isinstance(value, bool):  # Python's True/False; the guard language writes them in lower case
            raise self.refuse(f"write {str(value).lower()}, in lower case", column, width)
        if value is None:
            reason = "None is not part of the guard language: a missing fact makes the guard fail on its own"
            raise self.refuse(reason, column, width)
        if isinstance(value, (int, float, str)):
            return const(value, column, width)
        raise self.refuse(f"{type(value).__name__} values are not part of the guard language", column, width)

    def attribute(self, node: ast.Attribute, column: int, width: int) -> ExpressionError:
        reason = "'.' is not part of the guard language; a config value's dots are underscores"
        parts: list[str] = []
        inner: ast.expr = node
        while isinstance(inner, ast.Attribute):
            parts.insert(0, inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name):
            flat = "_".join([inner.id, *parts])
            if flat in self.types:
                reason += f" (did you mean '{flat}'?)"
        return self.refuse(reason, column, width)


# --- compiling ---------------------------------------------------------------------------------------------


def _as_bool(name: str, value: Any) -> NoReturn:
    if value is None:
        raise MissingFact(name)
    raise FactTypeError(name, "true/false", value)


def _as_number(name: str, value: Any) -> int | float:
    if value is None:
        raise MissingFact(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return value  # a subclass of int or float (an IntEnum, numpy's float64): slower path, same answer
    raise FactTypeError(name, "a number", value)


def _as_str(name: str, value: Any) -> str:
    if value is None:
        raise MissingFact(name)
    if isinstance(value, str):
        return value
    raise FactTypeError(name, "a string", value)


def _finite(value: int | float) -> int | float:
    """`value`, a result of arithmetic, if it is a finite number (`x - x` is 0 for those only); else OverflowError."""
    if value - value == 0:
        return value
    raise OverflowError("the arithmetic gave a number too large to use (infinity or NaN)")


# What generated code may name: helpers only, never a builtin (no __builtins__ at all).
_RUNTIME: dict[str, Any] = {
    "_bool": bool,
    "_int": int,
    "_float": float,
    "_str": str,
    "_as_bool": _as_bool,
    "_as_number": _as_number,
    "_as_str": _as_str,
    "_finite": _finite,
    "_GuardError": GuardError,
    "_Exception": Exception,
}
# A fact read, checked inline: the common case costs one attribute load and an identity test.
_READ: dict[Type, str] = {
    "bool": "(_v if (_v := f[{key}]).__class__ is _bool else _as_bool({key}, _v))",
    "number": "(_v if ((_v := f[{key}]).__class__ is _float and _v == _v) or _v.__class__ is _int else _as_number({key}, _v))",
    "str": "(_v if (_v := f[{key}]).__class__ is _str else _as_str({key}, _v))",
}


def _literal(value: bool | int | float | str) -> str:
    text = repr(value)
    if isinstance(value, float) and not math.isfinite(value):  # const() refuses these; never emit a name
        raise ValueError(f"cannot emit {text}")
    return text


def _emit(node: Node, names: list[str]) -> str:
    if isinstance(node, Fact):
        return _READ[node.type].format(key=repr(node.name))
    if isinstance(node, Const):
        return _literal(node.value)
    if isinstance(node, Unary):
        return f"({'not ' if node.op == 'not' else node.op}{_emit(node.operand, names)})"
    if isinstance(node, Logic):
        joiner = {"and": " and ", "or": " or "}[node.op]
        return "(" + joiner.join(_emit(operand, names) for operand in node.operands) + ")"
    if isinstance(node, Binary):
        op = {o: o for o in (*COMPARISONS, *ARITHMETIC)}[node.op]  # a fixed table, never the node's own text
        if op in COMPARISONS:
            return f"({_emit(node.left, names)} {op} {_emit(node.right, names)})"
        # Arithmetic on floats never raises: past 1.8e308 it gives infinity, and infinity less infinity gives NaN,
        # which every comparison but != answers False (a kill condition that could never hold). `_finite` raises
        # instead, as a division by zero does. Its call's parentheses are the only ones: one level per level of
        # the tree, as before (CPython nests 200 at most, see MAX_DEPTH).
        return f"_finite({_emit(node.left, names)} {op} {_emit(node.right, names)})"
    if isinstance(node, Guard):
        names.append(node.name)
        return f"((_i := {len(names) - 1}) and {_emit(node.body, names)})"
    raise TypeError(f"not a node: {node!r}")


@dataclass(frozen=True)
class Compiled:
    """A compiled rule: the function, the facts it reads, and the Python it was generated as (for debugging)."""

    function: Predicate
    facts: frozenset[str]
    source: str


def compile_node(node: Node, name: str = "expression") -> Compiled:
    """One Python function `f(facts) -> bool` for a checked tree. Inside a composition, an error is raised as
    GuardError named after the innermost named guard that raised it."""
    names = [name]
    expression = _emit(node, names)
    if len(names) == 1:
        source = f"def _rule(f):\n    return {expression}\n"
        function = _generated(source, name, names)
    else:
        source, function = _guarded(f"        return {expression}\n", name, names)
    function.__name__ = function.__qualname__ = f"rule_{name}" if name.isidentifier() else "rule"
    return Compiled(function, facts_of(node), source)


def compile_first(nodes: Sequence[Node], name: str = "first") -> Callable[[Mapping[str, Any]], int]:
    """One Python function `f(facts) -> int`: the index of the first of `nodes` (checked boolean trees) that
    holds, tried in order with short-circuits, or -1. An error is raised as GuardError named after the innermost
    named guard that raised it (the caller finds which node raised by asking them one by one)."""
    names = [name]
    tests = "".join(f"        if {_emit(node, names)}:\n            return {i}\n" for i, node in enumerate(nodes))
    _source, function = _guarded(tests + "        return -1\n", name, names)
    function.__name__ = function.__qualname__ = "first_holding"
    return function


def _guarded(body: str, name: str, names: list[str]) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
    """`body` (statements indented for a `try:`) as a function whose errors are raised as GuardError, named after
    the innermost named guard that raised (`_i`, set by `_emit`)."""
    source = (
        "def _rule(f):\n"
        "    _i = 0\n"
        "    try:\n"
        f"{body}"
        "    except _GuardError:\n"
        "        raise\n"
        "    except _Exception as _e:\n"
        "        raise _GuardError(_names[_i], _e) from _e\n"
    )
    return source, _generated(source, name, names)


def _generated(source: str, name: str, names: list[str]) -> Callable[[Mapping[str, Any]], Any]:
    namespace: dict[str, Any] = {"__builtins__": {}, **_RUNTIME, "_names": tuple(names)}
    exec(_code(source, f"<rule {name}>"), namespace)  # generated from checked trees only
    function: Callable[[Mapping[str, Any]], Any] = namespace["_rule"]
    return function


@functools.lru_cache(maxsize=4096)
def _code(source: str, filename: str) -> types.CodeType:
    """The compiled code of a generated source: a pure function of its two arguments, and a code object is
    immutable (each `exec` of it makes a new function in its own namespace), so it is compiled once a process.
    Every machine kind compiles the shared guards, preflight and kill conditions again, and validation compiled
    them before: 137 of the 152 compilations of building the shipped engine were repeats (0.05-0.09 s of the
    0.17 s the engine took to build, measured; a one-symbol backtest's whole run is about 1 s)."""
    return compile(source, filename, "exec")


def compile_expression(text: str, types: Mapping[str, str], unknown: Callable[[str], str] | None = None) -> Compiled:
    """Parse, check and compile in one call; raises ExpressionError."""
    return compile_node(parse(text, types, unknown))


def pointer(text: str, error: ExpressionError) -> str:
    """The expression on one line and a caret under the offending token: a Problem's `excerpt` (a message is one
    line), drawn as every excerpt is, so that a control character in the expression cannot move the caret or the
    terminal's cursor."""
    flat = text.replace("\r", " ").replace("\n", " ")
    column = min(error.column, len(flat))
    width = max(1, min(error.width, len(flat) - column))
    return caret_excerpt(flat, column + 1, width)


# --- units ---------------------------------------------------------------------------------------------------

_UNIT_WORDS = {
    "%": "percent",
    "fraction": "a fraction (percent / 100)",
    "min": "minutes",
    "s": "seconds",
    "USD": "dollars",
    "count": "a count",
    "days": "days",
}


def check_units(node: Node, units: Mapping[str, str]) -> None:
    """Refuse a comparison, `+` or `-` of two sides whose units differ as the facts' units say (`python -m engine
    facts KIND`): `minutes_in_position >= health_max_price_staleness_seconds` type-checks (two numbers) and is off
    by sixty; `daily_pnl_pct <= -risk_global_max_daily_loss_pct * 100` waits for a hundred times the loss (off).
    `units` maps a fact to its unit (absent: unknown); a constant has none. `* 60` turns minutes into seconds,
    `/ 60` seconds into minutes, `/ 100` percent into a fraction and `* 100` back. A factor that is one of the
    unit conversions' numbers (24, 60, 100, 1000, 1440, 3600, 86400, or one over it) used on a unit it does not
    convert (`percent * 100`, `minutes / 60`) is the off-by-a-hundred or off-by-sixty mistake itself: its result
    has a unit of its own (`percent * 100`), which no fact has, so comparing it with a fact's unit is refused. Any
    other constant factor (`/ 2`, `* 1.5`) keeps the unit; a product of two facts has none."""
    _unit(node, units)


def check_values(node: Node, values: Mapping[str, frozenset[str]]) -> None:
    """Refuse `==` or `!=` of a text fact with a string it can never be: `account_status == 'ACTVE'` type-checks
    (two strings), and as a check blocked every entry; `!=` always holds, as a kill condition it would halt every
    tick. `values` maps a fact whose values are a closed set (`facts.Fact.values`) to that set. Said at the string,
    with the nearest value the fact can take."""
    for part in _walk(node):
        if not isinstance(part, Binary) or part.op not in ("==", "!="):
            continue
        if isinstance(part.left, Fact) and isinstance(part.right, Fact):
            left, right = values.get(part.left.name), values.get(part.right.name)
            if left is not None and right is not None and not left & right:  # `account_status == execution_tif`
                answer = "never holds" if part.op == "==" else "always holds"
                reason = f"'{part.left.name}' and '{part.right.name}' share no value, so '{part.op}' {answer}"
                raise ExpressionError("type", reason, part.column, part.width)
        for side, other in ((part.left, part.right), (part.right, part.left)):
            if not (isinstance(side, Fact) and isinstance(other, Const) and isinstance(other.value, str)):
                continue
            allowed = values.get(side.name)
            if allowed is None or other.value in allowed:
                continue
            answer = "never holds" if part.op == "==" else "always holds"
            hint = did_you_mean(other.value, allowed, list_when_none=True)
            reason = f"'{side.name}' is never {other.value!r}, so '{part.op}' {answer}{hint}"
            raise ExpressionError("type", reason, other.column, other.width)


def _unit(node: Node, units: Mapping[str, str]) -> str | None:
    if isinstance(node, Fact):
        return units.get(node.name)
    if isinstance(node, Unary):
        inner = _unit(node.operand, units)
        return None if node.op == "not" else inner
    if isinstance(node, Logic):
        for operand in node.operands:
            _unit(operand, units)
        return None
    if isinstance(node, Guard):
        _unit(node.body, units)
        return None
    if not isinstance(node, Binary):
        return None
    left, right = _unit(node.left, units), _unit(node.right, units)
    if node.op in ("*", "/"):
        return _scaled(node, left, right)
    if node.op == "%":
        return left
    if left is not None and right is not None and left != right:
        words = f"{_unit_words(left)}: {_shown_side(node.left)}, with {_unit_words(right)}: {_shown_side(node.right)}"
        what = "compares" if node.op in COMPARISONS else "adds or subtracts"
        reason = f"'{node.op}' {what} {words}: convert one side to the other's unit"
        raise ExpressionError("type", reason, node.column, node.width)
    return None if node.op in COMPARISONS else (left or right)


# The numbers of unit conversions (and one over each: `* 0.01` is `/ 100`): a factor among them that converts
# nothing for the unit it scales is taken for a conversion gone wrong, never for a scale.
_CONVERSION_NUMBERS = (24, 60, 100, 1000, 1440, 3600, 86400)
_CONVERSIONS: dict[tuple[str, str, int], str] = {
    ("*", "min", 60): "s",
    ("/", "s", 60): "min",
    ("/", "%", 100): "fraction",
    ("*", "fraction", 100): "%",
}


def _scaled(node: Binary, left: str | None, right: str | None) -> str | None:
    """The unit of `a * b` or `a / b`: a fact's unit converted by 60 or 100; scaled by a conversion's number that
    converts nothing for it, a unit of its own (`% * 100`, matching no fact's); scaled by another constant, the
    same unit; else none."""
    factor_right = _constant_value(node.right) if right is None else None
    factor_left = _constant_value(node.left) if left is None and node.op == "*" else None
    unit, factor = (left, factor_right) if factor_right is not None else (right, factor_left)
    if unit is None or factor is None:
        return None
    number = _conversion_number(abs(factor))
    if number is None:
        return unit
    op = node.op if number[1] else ("/" if node.op == "*" else "*")  # `* 0.01` is `/ 100`
    return _CONVERSIONS.get((op, unit, number[0]), f"{unit} {op} {number[0]}")


def _conversion_number(magnitude: int | float) -> tuple[int, bool] | None:
    """The conversion number `magnitude` is, and whether as itself (`100`) or as one over it (`0.01`), or None."""
    if magnitude == 0 or not math.isfinite(magnitude):
        return None
    for n in _CONVERSION_NUMBERS:
        if math.isclose(magnitude, n):
            return n, True
        if math.isclose(magnitude, 1 / n):
            return n, False
    return None


def _unit_words(unit: str) -> str:
    """A unit as the message says it: a scaled one (`% * 100`) in words too (`percent * 100`)."""
    base, _, rest = unit.partition(" ")
    return f"{_UNIT_WORDS.get(base, base)} {rest}" if rest else _UNIT_WORDS.get(unit, unit)


def _shown_side(node: Node) -> str:
    read = sorted(facts_of(node))
    return ", ".join(read) if read else "a constant"
