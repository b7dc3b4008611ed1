"""The rule book: every file in rules/ merged, schema-checked, and compiled per machine kind.

Expressions, built-ins and compositions become typed trees (engine/rules/expressions.py) checked against the
vocabulary of each kind that uses them, so an unknown fact, a type mismatch or a syntax error is found by
`--validate`, at its column and with the nearest name suggested, before the market opens. Each rule then becomes
one generated function; the user's text itself is never evaluated.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from engine.config.checks import param_bounds_problem, param_type_problem
from engine.config.errors import ConfigError, Problem, format_path
from engine.config.schema_check import load_checked, show_value, yaml_files
from engine.config.yaml_source import LINE_BREAK, YamlDocument
from engine.core.names import did_you_mean, unknown_name_message
from engine.paths import shown
from engine.rules import bounds, builtins, conditions, expressions
from engine.rules.errors import ExpressionError, GuardError
from engine.rules.expressions import Node
from engine.rules.facts import BOT_KINDS, SYSTEM_KINDS, all_kinds, vocabulary
from engine.strategy import SignalFunction, SignalsUnreadable, load_signals

SECTIONS = ("guards", "preflight", "kill_conditions", "signals")
HISTORY_PARAM = "lookback_ticks"  # a signal's history where it declares none (`history_of`)


@dataclass(frozen=True)
class SignalSpec:
    """A declared signal's parameter names, the bot kinds that may use it, and each parameter's declared type
    (`integer` or `number`): a value in bots.yaml of another type would only fail inside a tick."""

    params: frozenset[str]
    kinds: frozenset[str]
    param_types: Mapping[str, str] = field(default_factory=dict)
    param_bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)  # (minimum, maximum)


@dataclass(frozen=True)
class Entry:
    """One named rule as written: its section, name, body, the document it came from, and that document's lines
    (to point at a token inside an expression)."""

    section: str
    name: str
    body: Mapping[str, Any]
    doc: YamlDocument
    lines: Sequence[str] = ()

    def problem(self, key: str | None, message: str) -> Problem:
        path = (self.section, self.name, key) if key else (self.section, self.name)
        return self.doc.problem(path, message, of_key=key is None)


@dataclass
class RuleBook:
    """The merged rule files."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    files: list[str] = field(default_factory=list)
    # engine/strategy/signals.py's SIGNALS, imported for this book (`load_signals`): what its bots call
    signal_functions: dict[str, SignalFunction] = field(default_factory=dict)

    @property
    def guards(self) -> dict[str, Entry]:
        return self.entries["guards"]

    @property
    def preflight(self) -> dict[str, Entry]:
        return self.entries["preflight"]

    @property
    def kill_conditions(self) -> dict[str, Entry]:
        return self.entries["kill_conditions"]

    @property
    def signals(self) -> dict[str, Entry]:
        return self.entries["signals"]

    def count(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def signal_specs(self) -> dict[str, SignalSpec]:
        """Signal mode -> what it accepts (for the config's signal check)."""
        return {
            name: SignalSpec(
                frozenset(e.body.get("params") or {}),
                frozenset(e.body["kinds"]),
                {param: spec["type"] for param, spec in (e.body.get("params") or {}).items()},
                {param: _bounds(spec) for param, spec in (e.body.get("params") or {}).items()},
            )
            for name, e in self.signals.items()
        }


def load_rules(rules_dir: Path, *, user_code: bool = True) -> RuleBook:
    """Read every rules/*.yaml; raises ConfigError with every problem found. `user_code=False`: the user's
    signals module is not imported (the commands that never call a signal must work while it is broken)."""
    book = RuleBook()
    paths, problems = yaml_files(rules_dir)
    if not paths:
        raise ConfigError([*problems, Problem(shown(rules_dir), 0, 0, "", "no rule files (*.yaml) in this folder")])
    by_shown = {shown(path): path for path in paths}
    for doc in load_checked(paths, "rules.schema.json", problems):
        book.files.append(doc.path)
        if not isinstance(doc.data, dict):
            continue
        lines = _lines(by_shown.get(doc.path))
        for section in SECTIONS:
            for name, body in (doc.data.get(section) or {}).items():
                entry = Entry(section, name, body, doc, lines)
                earlier = book.entries[section].get(name)
                if earlier is not None:
                    line = earlier.doc.position((section, name), of_key=True)[0]
                    problems.append(entry.problem(None, f"{section} '{name}' is already defined ({earlier.doc.path}:{line})"))
                    continue
                book.entries[section][name] = entry
    problems.extend(_check_signals(book, user_code=user_code))
    if problems:
        raise ConfigError(problems)
    return book


def _lines(path: Path | None) -> tuple[str, ...]:
    """The file's lines as the parser numbers them (`LINE_BREAK`): str.splitlines() also splits at U+2028, a form
    feed and others, and an expression's token below one was placed at its value's start, not at the token."""
    try:
        return tuple(LINE_BREAK.split(path.read_text(encoding="utf-8"))) if path else ()
    except OSError:  # read a moment ago; without it, problems point at the value instead of the token
        return ()


def _check_signals(book: RuleBook, *, user_code: bool = True) -> list[Problem]:
    problems = []
    functions: dict[str, SignalFunction] | None = None
    try:
        if user_code:
            functions = book.signal_functions = load_signals()
    except SignalsUnreadable as exc:  # said once, at its place in the file; the parameters are still checked
        problems.append(Problem(exc.file, exc.line, exc.col, "", exc.message))
    for entry in book.signals.values():
        implementation = entry.body["implementation"]
        if functions is None:
            pass
        elif implementation not in functions:
            hint = did_you_mean(implementation, functions)
            message = f"no function '{implementation}' in engine/strategy/signals.py{hint}"
            problems.append(entry.problem("implementation", message))
        else:
            declared = set(entry.body.get("params") or {})
            for param in sorted(required_signal_params(functions[implementation]) - declared):
                message = (
                    f"'{implementation}' in engine/strategy/signals.py reads the parameter '{param}', "
                    f"which this signal does not declare: declare it under params"
                )
                problems.append(entry.problem("params", message))
        problems.extend(_history_problems(entry))
        for param, spec in (entry.body.get("params") or {}).items():
            path = ("signals", entry.name, "params", param, "default")
            wrong = param_type_problem(spec["type"], spec["default"]) or param_bounds_problem(_bounds(spec), spec["default"])
            if wrong:
                problems.append(entry.doc.problem(path, wrong))
            low, high = _bounds(spec)
            if low is not None and high is not None and low > high:
                path = ("signals", entry.name, "params", param, "minimum")
                problems.append(entry.doc.problem(path, f"the minimum {low:g} is above the maximum {high:g}"))
    return problems


def history_of(body: Mapping[str, Any]) -> int | str:
    """How many ticks back a declared signal reads (`history`): a count, or the name of the integer parameter
    holding it; `lookback_ticks` where the signal declares none (the shipped signals' parameter)."""
    history = body.get("history", HISTORY_PARAM)
    return history if isinstance(history, (int, str)) else HISTORY_PARAM


def _history_problems(entry: Entry) -> list[Problem]:
    """A signal whose history the engine cannot tell: the prices it keeps for a symbol are the longest history
    of its bots' signals (and two more), so a signal reading further back than declared is handed fewer prices
    than it needs and never fires, without a word (`params: {window: 30}` read at most 14 prices)."""
    params = entry.body.get("params") or {}
    history = history_of(entry.body)
    if isinstance(history, int):
        return []
    spec = params.get(history)
    if spec is not None and spec["type"] == "integer":
        return []
    if "history" not in entry.body:
        return [entry.problem(None, "how many ticks back this signal reads is not declared: set `history:` to a number "
                                    f"of ticks or to the integer parameter that holds it (or declare {HISTORY_PARAM})")]
    if spec is None:
        hint = did_you_mean(history, params)
        return [entry.problem("history", f"'{history}' is not a parameter of this signal{hint}: name an integer parameter "
                                         "under params, or give a number of ticks")]
    return [entry.problem("history", f"'{history}' is a number parameter: a history is a whole number of ticks (declare "
                                     "it `type: integer`)")]


def _bounds(spec: Mapping[str, Any]) -> tuple[float | None, float | None]:
    return spec.get("minimum"), spec.get("maximum")


@cache
def _functions_in(path: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """The top-level functions of a source file, by name (parsed once; nothing when it cannot be read)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@cache
def required_signal_params(function: Callable[..., Any]) -> frozenset[str]:
    """The parameter names a signal function reads as `params["name"]` (its second argument, subscripted).

    Such a read raises KeyError when the name is not declared in rules/signals.yaml (only declared parameters
    get their defaults filled in), which would halt the system in the first tick instead of failing
    `--validate`. Read from the function's own source file (not through `inspect`, whose import alone costs
    `--validate` 5 ms); a function whose source cannot be read (an installed .pyc) is not checked."""
    code = getattr(function, "__code__", None)
    definition = _functions_in(code.co_filename).get(function.__name__) if code is not None else None
    if definition is None or len(definition.args.args) < 2:
        return frozenset()
    params = definition.args.args[1].arg
    return frozenset(
        node.slice.value
        for node in ast.walk(definition)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == params
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    )


# --- compilation -------------------------------------------------------------------------------------------

Predicate = Callable[[Mapping[str, Any]], bool]


@cache
def fact_types(kind: str) -> Mapping[str, str]:
    """Fact name -> bool/int/float/str for `kind` (cached: the vocabulary does not change while we run)."""
    return {name: fact.type for name, fact in vocabulary(kind).items()}


# A config value's unit is not declared beside it (its fact says `config`): its name ends in it, as the schemas
# word it (`exits.stop_loss_pct` is percent, as position_pnl_pct is; `health.max_price_staleness_seconds`). Days
# to expiry are days. A whole number with none of these endings is a count (`risk.max_trades_per_day`,
# `health.max_api_failures_in_window`: entries, orders, failures, positions), so `minutes_in_position >=
# risk_max_trades_per_day` is refused as minutes against a count; a fractional one without an ending (an option's
# delta) has no unit.
_CONFIG_UNITS = (
    ("_pct", "%"),
    ("_minutes", "min"),
    ("_seconds", "s"),
    ("_usd", "USD"),
    ("_dte_min", "days"),
    ("_dte_max", "days"),
)
_MEASURED_UNITS = frozenset({"%", "min", "s", "USD", "count"})


@cache
def fact_values(kind: str) -> Mapping[str, frozenset[str]]:
    """Fact name -> every value it can take, for the text facts whose values are a closed set (`Fact.values`):
    what `check_values` holds a comparison to, and `bounds` reasons with."""
    return {name: fact.values for name, fact in vocabulary(kind).items() if fact.values is not None}


@cache
def fact_units(kind: str) -> Mapping[str, str]:
    """Fact name -> unit, for the facts whose unit is known: what `check_units` compares."""
    units: dict[str, str] = {}
    for name, fact in vocabulary(kind).items():
        if fact.unit in _MEASURED_UNITS:
            units[name] = fact.unit
        elif fact.unit == "config" and fact.type in ("int", "float"):
            unit = next((unit for suffix, unit in _CONFIG_UNITS if name.endswith(suffix)), None)
            if unit is None and fact.type == "int":
                unit = "count"
            if unit is not None:
                units[name] = unit
    return units


def shown_unit(kind: str, name: str) -> str:
    """A fact's unit as every command shows it ("" when it has none): a config value's with the unit its name gives
    it (`fact_units`: what the unit check compares), "config, %". `facts` said "config, %" and `why` "config" alone
    for the same value, so that a stop loss of 0.8 read as no unit at all beside position_pnl_pct's "%"."""
    fact = vocabulary(kind).get(name)
    if fact is None:
        return ""
    units = fact_units(kind)
    return f"config, {units[name]}" if fact.unit == "config" and name in units else fact.unit


@cache
def _every_fact() -> frozenset[str]:
    return frozenset(name for kind in all_kinds() for name in vocabulary(kind))


@cache
def _unknown(kind: str) -> Callable[[str], str]:
    """How to word a name that is not a fact of `kind`: another kind's fact, or a typo with the nearest name."""

    def message(name: str) -> str:
        if name in _every_fact():
            return f"fact '{name}' is not available to {kind} machines"
        return unknown_name_message("fact", name, fact_types(kind))

    return message


def compile_expression(text: str, kind: str) -> tuple[Predicate | None, str | None]:
    """(predicate, None) or (None, message) for an expression over `kind`'s facts."""
    try:
        compiled = expressions.compile_expression(text, fact_types(kind), _unknown(kind))
    except ExpressionError as exc:
        return None, exc.message
    return compiled.function, None


def facts_read(text: str, kind: str) -> frozenset[str]:
    """The facts an (already valid) expression reads."""
    return expressions.facts_of(expressions.parse(text, fact_types(kind), _unknown(kind)))


def _expression_node(entry: Entry, kind: str, problems: list[Problem]) -> Node | None:
    text = entry.body["expr"]
    try:
        node = expressions.parse(text, fact_types(kind), _unknown(kind))
        expressions.check_units(node, fact_units(kind))
        expressions.check_values(node, fact_values(kind))
    except ExpressionError as exc:
        problems.append(_expression_problem(entry, text, exc))
        return None
    divisions = bounds.zero_divisors(node, fact_domains(kind))
    for division in divisions:  # each at its divisor, every one at once
        problems.append(_expression_problem(entry, text, _zero_divisor_error(text, division.right)))
    return None if divisions else node


def _zero_divisor_error(text: str, divisor: Node) -> ExpressionError:
    """A division whose divisor can be 0 by the facts' known bounds (`bounds.zero_divisors`): at run time the rule
    would raise whenever it is, and the engine halt. The way to write it that validation accepts, named."""
    column, width = divisor_span(divisor, text)
    written = text[column : column + width].strip() or "the divisor"
    read = sorted(expressions.facts_of(divisor))
    example = f"'{read[0]} > 0 and ...' or '{read[0]} != 0 and ...'" if read else "a divisor that cannot be 0"
    reason = (
        f"division by {written}, which can be 0 (the rule would fail and the engine halt whenever it is): rule 0 out "
        f"first in the same expression, {example}"
    )
    return ExpressionError("type", reason, column, width)


def divisor_span(node: Node, text: str) -> tuple[int, int]:
    """Where a divisor is written in `text`, as (column, width): a fact or a constant its own token, arithmetic from
    its first token to its last (an operator node's own place is its operator's), with the brackets it opens or
    closes. Brackets are no node: `-(-trades_today)` ended at its last token, and the warning quoted
    `-(-trades_today`; `(a) + (b)` was `a) + (b`."""
    parts = list(expressions._walk(node))
    start = min(part.column for part in parts)
    end = max(part.column + part.width for part in parts)
    depth = lowest = 0
    for char in text[start:end]:
        depth += (char == "(") - (char == ")")
        lowest = min(lowest, depth)
    for _ in range(-lowest):  # a ')' inside whose '(' is before the first token
        start = max(0, text.rfind("(", 0, start))
    for _ in range(depth - lowest):  # a '(' inside whose ')' is after the last
        end = text.find(")", end) + 1 or len(text)
    return start, end - start


def _expression_problem(entry: Entry, text: str, error: ExpressionError) -> Problem:
    """The problem at the offending token of an `expr:` value, with the expression and a caret under it."""
    path = (entry.section, entry.name, "expr")
    line, col = _token_place(entry.lines, *entry.doc.position(path), text, error.column)
    return Problem(entry.doc.path, line, col, format_path(path), error.message, expressions.pointer(text, error))


# How far below its key a value is followed to find a token (an expression is a few lines at most).
_MOST_LINES = 200


def _token_place(lines: Sequence[str], line: int, col: int, text: str, column: int) -> tuple[int, int]:
    """Where the token at `column` of the value `text` is written, 1-based: the value read from (`line`, `col`) as
    it is written, on one line or over several (a plain value that goes on below, a folded `>-` or literal `|`
    block, quotes), a run of spaces and line breaks in the file standing for a run of them in the value (YAML
    folds a line break into a space). A token on a later line was told at the value's first line, where the
    editor or CI link opened. An escape in double quotes (`\\"`, `\\x41`, a line break escaped) or `''` in single
    ones stands for the character it means, placed at its first character: a token after one was told at the value's
    start. When the file does not spell the value so up to the token, the value's start."""
    if not 1 <= line <= len(lines) or col < 1:
        return line, col
    row, start = line - 1, col - 1
    first = lines[row][start:]
    quote = first[:1] if first[:1] in ("'", '"') else ""
    if first[:1] in ("|", ">"):  # a block's text starts on the line below its header
        row, start = row + 1, 0
    elif quote:
        start += 1
    written: list[tuple[str, int, int]] = []  # each character from the value's start, a line break as "\n"
    for index in range(row, min(len(lines), row + _MOST_LINES)):
        here = lines[index]
        written.extend((here[at], index, at) for at in range(start if index == row else 0, len(here)))
        written.append(("\n", index, len(here)))
    decoded = _unescaped(written, quote) if quote else written
    if decoded is None:
        return line, col
    written = decoded
    at = read = 0  # spaces before the value's first character, in the file and in the value, are passed over
    while at < len(written) and written[at][0].isspace():
        at += 1
    while read < column and text[read].isspace():
        read += 1
    while read < column:
        if text[read].isspace():
            while read < column and text[read].isspace():
                read += 1
            if at >= len(written) or not written[at][0].isspace():
                return line, col
            while at < len(written) and written[at][0].isspace():
                at += 1
        elif at < len(written) and written[at][0] == text[read]:
            read += 1
            at += 1
        else:
            return line, col
    if at >= len(written) or (column < len(text) and written[at][0] != text[column]):
        return line, col
    return written[at][1] + 1, written[at][2] + 1


# YAML's escapes in double quotes that stand for one character (\\x, \\u and \\U take hexadecimal digits).
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "e": "\x1b",
    " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def _unescaped(written: list[tuple[str, int, int]], quote: str) -> list[tuple[str, int, int]] | None:
    """The characters of a quoted value as YAML reads them, each at the place of its first written character:
    `''` in single quotes is `'`, an escape in double quotes the character it stands for, and an escaped line
    break nothing (with the next line's indentation). None for an escape YAML would not have read."""
    out: list[tuple[str, int, int]] = []
    index = 0
    while index < len(written):
        char, row, column = written[index]
        following = written[index + 1][0] if index + 1 < len(written) else ""
        if quote == "'" and char == "'" and following == "'":
            out.append(("'", row, column))
            index += 2
        elif quote == '"' and char == "\\":
            if following == "\n":  # an escaped line break: the lines are joined without a space
                index += 2
                while index < len(written) and written[index][0] in " \t":
                    index += 1
                continue
            digits = _HEX_DIGITS.get(following)
            if digits is not None:
                code = "".join(c for c, _r, _c in written[index + 2 : index + 2 + digits])
                if len(code) != digits or any(c not in "0123456789abcdefABCDEF" for c in code):
                    return None
                out.append((chr(int(code, 16)), row, column))
                index += 2 + digits
            elif following in _ESCAPES:
                out.append((_ESCAPES[following], row, column))
                index += 2
            else:
                return None
        elif char == quote:  # the closing quote: the value ends here (an error at its end is placed on it)
            out.append((char, row, column))
            break
        else:
            out.append((char, row, column))
            index += 1
    return out


def _builtin_node(entry: Entry, kind: str, problems: list[Problem]) -> Node | None:
    name = entry.body["builtin"]
    spec = builtins.BUILTINS.get(name)
    if spec is None:
        hint = did_you_mean(name, builtins.BUILTINS, list_when_none=True)
        problems.append(entry.problem("builtin", f"unknown built-in guard '{name}'{hint}"))
        return None
    params = dict(entry.body.get("params") or {})
    at = (entry.section, entry.name, "params")
    ok = True
    for key in sorted(params.keys() - spec.params.keys()):
        problems.append(entry.doc.problem((*at, key), f"built-in '{name}' has no parameter '{key}'", of_key=True))
        ok = False
    for key, param_kind in spec.params.items():
        if key not in params:
            problems.append(entry.problem("params", f"built-in '{name}' needs parameter '{key}'"))
            ok = False
            continue
        # Each at its own value (each fact of a list at its item), every one at once: they were all said at
        # `params`, and of a list of facts only the first unknown one.
        for where, message in _param_problems(params[key], param_kind, kind):
            problems.append(entry.doc.problem((*at, key, *where), message))
            ok = False
    if not ok:
        return None
    try:
        node = spec.build(params, fact_types(kind), _unknown(kind))
        expressions.check_units(node, fact_units(kind))
        expressions.check_values(node, fact_values(kind))
        return node
    except ExpressionError as exc:
        problems.append(entry.problem("params", f"built-in '{name}': {exc.reason}"))
        return None


def _param_problems(value: Any, param_kind: str, kind: str) -> list[tuple[tuple[int, ...], str]]:
    """What is wrong with one built-in parameter: (where inside the value, message) for each mistake."""
    facts = fact_types(kind)

    def unknown(name: Any, what: str = "a fact name") -> list[tuple[tuple[int, ...], str]]:
        if not isinstance(name, str):
            # `right: true` was "unknown fact 'True'", `right:` left empty "unknown fact 'None'": a name in Python's
            # spelling that the file does not hold; the value is said as YAML writes it
            return [((), f"{show_value(name)} is not {what}")]
        return [] if name in facts else [((), _unknown(kind)(name))]

    if param_kind == "fact":
        return unknown(value)
    if param_kind == "facts":
        if not isinstance(value, list) or not value:
            return [((), "must be a list of fact names")]
        return [((index,), message) for index, item in enumerate(value) for _here, message in unknown(item)]
    if param_kind == "op":
        return [] if value in builtins.OPERATORS else [((), f"{show_value(value)} is not one of {', '.join(builtins.OPERATORS)}")]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if param_kind == "fact_or_number":
        return [] if number else unknown(value, "a fact name or a number")
    if param_kind == "number":
        return [] if number else [((), "must be a number")]
    return [((), f"unknown parameter kind {param_kind}")]


@dataclass
class CompiledRules:
    """The guards, preflight checks and kill conditions of one machine kind, ready to evaluate against facts.

    `*_facts` name the facts each rule reads (a composition's parts included), so the engine can evaluate once
    per tick what reads only system-wide facts."""

    kind: str
    guards: dict[str, Predicate]
    preflight: dict[str, Predicate]
    kill_conditions: dict[str, Predicate]
    flatten_on: frozenset[str]
    preflight_facts: dict[str, frozenset[str]] = field(default_factory=dict)
    guard_facts: dict[str, frozenset[str]] = field(default_factory=dict)
    kill_facts: dict[str, frozenset[str]] = field(default_factory=dict)
    preflight_nodes: dict[str, Node] = field(default_factory=dict)  # the checked trees, for `all_pass`
    guard_nodes: dict[str, Node] = field(default_factory=dict)  # the checked trees, for `first_holding`

    def first_holding(self, whens: Sequence[conditions.Condition]) -> Callable[[Mapping[str, Any]], int]:
        """One generated function for "which of these `when:` trees (a state's transitions, in file order) holds
        first": a machine's step in one call instead of one or more per transition. It returns -1 when none holds
        and raises whenever asking them in order would; the caller then asks them one by one, which says which."""
        return expressions.compile_first([_composition(when, self.guard_nodes) for when in whens], "step")

    def composed_size(self, when: conditions.Condition) -> int | None:
        """How many terms the `when:` tree holds once its guards are written out (expressions.size), or None when
        a guard it names is not compiled (unknown, or with problems of its own, reported already)."""
        if any(name not in self.guard_nodes for name in conditions.refs(when)):
            return None
        return expressions.size(_composition(when, self.guard_nodes))

    def when_node(self, when: conditions.Condition) -> Node | None:
        """The `when:` tree with its guards written out, as the runtime evaluates it, or None when a guard it names
        is not compiled (unknown, or with problems of its own, reported already)."""
        if any(name not in self.guard_nodes for name in conditions.refs(when)):
            return None
        return _composition(when, self.guard_nodes)

    def all_pass(self, names: Sequence[str]) -> Predicate:
        """One generated function for "every one of these preflight checks holds": the common answer for a bot,
        found in one call instead of one per check. It raises whenever one of them would; the caller then asks
        the checks one by one (`failed_checks`), which says which failed and why."""
        node = expressions.logic("and", [self.preflight_nodes[name] for name in names])
        return expressions.compile_node(node, "preflight").function

    def guard_holds(self, name: str, facts: Mapping[str, Any]) -> bool:
        """Evaluate one named guard; any failure becomes GuardError (the caller fails closed)."""
        try:
            return self.guards[name](facts)
        except GuardError:
            raise
        except Exception as exc:  # every failure of a guard becomes GuardError; the caller halts the bot
            raise GuardError(name, exc) from exc

    def check_errors(self, checks: Mapping[str, Predicate], facts: Mapping[str, Any]) -> dict[str, str]:
        """The checks that cannot be evaluated against these facts, with why (they count as failed)."""
        errors = {}
        for name, check in checks.items():
            try:
                check(facts)
            except Exception as exc:  # reported, and the check counts as failed (failed_checks)
                errors[name] = f"{type(exc).__name__}: {exc}"
        return errors

    def failed_checks(self, checks: Mapping[str, Predicate], facts: Mapping[str, Any]) -> list[str]:
        """Names of the checks that do not hold; a check that cannot be evaluated counts as failed."""
        failed = []
        for name, check in checks.items():
            try:
                if not check(facts):
                    failed.append(name)
            except Exception:  # a check that cannot be evaluated counts as failed
                failed.append(name)
        return failed


def compile_rules(book: RuleBook, kind: str, needed: Iterable[str] | None = None) -> tuple[CompiledRules, list[Problem]]:
    """Compile the guards `needed` (default: all) plus preflight and kill conditions for `kind`."""
    problems: list[Problem] = []
    guards: dict[str, Predicate] = {}
    guard_facts: dict[str, frozenset[str]] = {}
    guard_nodes: dict[str, Node] = {}
    for name, node in _guard_nodes(book, kind, book.guards if needed is None else needed, problems).items():
        compiled = expressions.compile_node(node, name)
        guards[name], guard_facts[name] = compiled.function, compiled.facts
        guard_nodes[name] = node
    preflight: dict[str, Predicate] = {}
    preflight_facts: dict[str, frozenset[str]] = {}
    preflight_nodes: dict[str, Node] = {}
    kills: dict[str, Predicate] = {}
    kill_facts: dict[str, frozenset[str]] = {}
    if kind in BOT_KINDS:
        for name, node in _check_nodes(book.preflight.values(), kind, problems).items():
            compiled = expressions.compile_node(node, name)
            preflight[name], preflight_facts[name] = compiled.function, compiled.facts
            preflight_nodes[name] = node
    if kind == "system":
        for name, node in _check_nodes(book.kill_conditions.values(), kind, problems).items():
            compiled = expressions.compile_node(node, name)
            kills[name], kill_facts[name] = compiled.function, compiled.facts
    flatten = frozenset(n for n, e in book.kill_conditions.items() if e.body.get("flatten", False))
    rules = CompiledRules(
        kind, guards, preflight, kills, flatten, preflight_facts, guard_facts, kill_facts, preflight_nodes, guard_nodes
    )
    return rules, problems


def check_all_rules(book: RuleBook, used: Iterable[str] = ()) -> list[Problem]:
    """Every guard, preflight check and kill condition, compiled whether a machine uses it or not, so a typo in
    a rule nobody uses yet is found now rather than the day someone does.

    Guards in `used` (and the guards they compose) are left to the machines' lint, which compiles them for the
    kinds that use them. Any other guard is an error only if it compiles for no kind at all; then the problems
    of the kind that got furthest are reported. Preflight checks must compile for every bot kind, kill
    conditions for the system."""
    problems: list[Problem] = []
    linted = set(guard_closure(book, [name for name in used if name in book.guards]))
    for name in book.guards:
        if name not in linted:
            problems.extend(p for p in _unused_guard_problems(book, name) if _guard_of(p) not in linted)
    for kind in BOT_KINDS:
        _check_nodes(book.preflight.values(), kind, problems)
    _check_nodes(book.kill_conditions.values(), "system", problems)
    return sorted(set(problems))


def _unused_guard_problems(book: RuleBook, name: str) -> list[Problem]:
    best: list[Problem] | None = None
    for kind in (*BOT_KINDS, *SYSTEM_KINDS):  # the widest vocabularies first: their suggestions are best
        found: list[Problem] = []
        _guard_nodes(book, kind, [name], found)
        if not found:
            return []
        if best is None or _usefulness(found) < _usefulness(best):
            best = found
    return best or []


def _usefulness(problems: list[Problem]) -> tuple[int, int, int]:
    """Lower is more useful: a kind that knows every fact (so what is left is a real error) beats one that lacks
    some, and a suggestion beats none."""
    elsewhere = sum("is not available to" in p.message for p in problems)
    no_hint = sum(p.message.startswith("unknown fact") and "did you mean" not in p.message for p in problems)
    return elsewhere, no_hint, len(problems)


def _guard_of(problem: Problem) -> str | None:
    section, _, rest = problem.path.partition(".")
    return rest.partition(".")[0] if section == "guards" else None


# The fact each section's rules decide together: it is not known yet while they are evaluated (preflight_ok is
# missing, so a check reading it fails for ever; kill_triggered reads false, so `not kill_triggered` halts every
# tick), and validation would otherwise pass a rule that can never work.
_DECIDED_BY = {
    "preflight": ("preflight_ok", "whether every preflight check passes, so a check cannot read it: it is not "
                                  "known while they run, and this check would fail on every tick"),
    "kill_conditions": ("kill_triggered", "whether a kill condition holds, so a kill condition cannot read it: it "
                                          "reads false while they run"),
}  # fmt: skip


# A check or a kill condition that reads no fact is a constant: one that never holds is a check or a kill switch
# switched off without a word; one that always holds blocks every entry, or halts at every tick.
_CONSTANT = {
    "preflight": "its answer is the same at every tick, so it checks nothing (or blocks every entry)",
    "kill_conditions": "its answer is the same at every tick, so it never fires (or halts at every tick)",
}


# A check or a kill condition that reads facts and still can never hold whatever their values (`daily_pnl_pct > 0
# and daily_pnl_pct < 0`, `anomalies < 0`), or a kill condition that always holds (`anomalies >= 0`): as a constant.
_NEVER_ALWAYS: dict[str, tuple[str, str | None]] = {
    "preflight": ("it would block every entry", None),
    "kill_conditions": ("it would never fire, a protection switched off", "it would halt at every tick"),
}


@cache
def fact_domains(kind: str) -> Mapping[str, bounds.Domain]:
    """Fact name -> the values it can take, as far as validation may assume them (`engine.rules.bounds`): a whole
    number for an int fact, 0 and up for a count or a level, and a text fact's closed set of values."""
    return {
        name: bounds.Domain(
            integral=fact.type == "int",
            minimum=0.0 if fact.unit in ("count", "level") else None,
            values=fact.values,
        )
        for name, fact in vocabulary(kind).items()
        if fact.type in ("int", "float") or fact.values is not None
    }


def _check_nodes(entries: Iterable[Entry], kind: str, problems: list[Problem]) -> dict[str, Node]:
    nodes = {}
    for entry in entries:
        node = _expression_node(entry, kind, problems)
        circular = _DECIDED_BY.get(entry.section)
        if node is not None and circular is not None and circular[0] in expressions.facts_of(node):
            problems.append(entry.problem("expr", f"the fact '{circular[0]}' is {circular[1]}"))
            continue
        if node is not None and circular is not None and not expressions.facts_of(node):
            # `1 > 2` reads no fact; `anomalies < 0` reads one, and never holds all the same (bounds, below)
            problems.append(entry.problem("expr", f"reads no fact: {_CONSTANT[entry.section]}"))
            continue
        if node is not None and circular is not None:
            never, always = _NEVER_ALWAYS[entry.section]
            reason = bounds.never_holds(node, fact_domains(kind))
            if reason is not None:
                problems.append(entry.problem("expr", f"can never hold ({reason}): {never}"))
                continue
            # A check that holds whenever its facts are known still fails while one is missing (a presence check
            # may be meant); a kill condition that does halts at every tick, which nobody means
            reason = bounds.always_holds(node, fact_domains(kind)) if always else None
            if reason is not None:
                problems.append(entry.problem("expr", f"always holds (its negation cannot: {reason}): {always}"))
                continue
        if node is not None:
            nodes[entry.name] = node
    return nodes


def _guard_nodes(book: RuleBook, kind: str, needed: Iterable[str], problems: list[Problem]) -> dict[str, Node]:
    """The typed tree of each guard needed and of every guard they compose, dependencies first."""
    nodes: dict[str, Node] = {}
    attempted: set[str] = set()
    for name in guard_closure(book, needed):
        entry = book.guards.get(name)
        if entry is None:
            continue
        node = _guard_node(book, entry, kind, nodes, attempted, problems)
        attempted.add(name)
        if node is not None:
            nodes[name] = node
    return nodes


def guard_closure(book: RuleBook, needed: Iterable[str]) -> list[str]:
    """The needed guards and every guard their compositions use, each once, dependencies first.

    Walked with an explicit stack, not recursion: a chain of compositions of any length is ordered here, and
    refused by _guard_node as too deep to compile, instead of overflowing Python's stack. A guard already on the
    path (a cycle) is not entered again; _guard_node reports the cycle."""
    ordered: list[str] = []
    seen: set[str] = set()
    for root in needed:
        if root in seen:
            continue
        on_path: set[str] = {root}
        stack: list[tuple[str, Iterator[str]]] = [(root, _composed(book, root))]
        while stack:
            name, refs = stack[-1]
            ref = next(refs, None)
            if ref is None:
                stack.pop()
                on_path.discard(name)
                if name not in seen:
                    seen.add(name)
                    ordered.append(name)
            elif ref not in seen and ref not in on_path:
                on_path.add(ref)
                stack.append((ref, _composed(book, ref)))
    return ordered


def _composed(book: RuleBook, name: str) -> Iterator[str]:
    """The guards a composition (`when:`) names, in order; none for any other guard."""
    entry = book.guards.get(name)
    if entry is None or "when" not in entry.body:
        return iter(())
    return iter(list(conditions.refs(conditions.parse(entry.body["when"]))))


def _guard_node(
    book: RuleBook,
    entry: Entry,
    kind: str,
    compiled: dict[str, Node],
    attempted: set[str],
    problems: list[Problem],
) -> Node | None:
    body = entry.body
    if "params" in body and "builtin" not in body:
        # Only a built-in reads its params: on an `expr:` or a `when:` guard they were taken and ignored, so
        # `params: {right: 5}` beside `expr: x >= 3` validated and the guard went on comparing with 3.
        what = "expr" if "expr" in body else "when"
        message = (
            f"params are read only by a `builtin:` guard: this `{what}:` guard would ignore them; write the values "
            f"into its `{what}:`"
        )
        problems.append(entry.problem("params", message))
        return None
    if "expr" in body:
        return _expression_node(entry, kind, problems)
    if "builtin" in body:
        return _builtin_node(entry, kind, problems)
    condition = conditions.parse(body["when"])
    # Every unknown name, each at its own item: only the first was told, and at the `when:` key, lines above it.
    unknown = [(ref, where) for ref, where in conditions.places(condition) if ref not in book.guards]
    for ref, where in unknown:
        path = (entry.section, entry.name, "when", *where)
        problems.append(entry.doc.problem(path, unknown_name_message("guard", ref, book.guards)))
    if unknown:
        return None
    for ref in conditions.refs(condition):
        if ref not in compiled:
            if ref in attempted:  # it has errors of its own, already reported
                return None
            problems.append(entry.problem("when", f"guard '{ref}' is part of a cycle of compositions"))
            return None
    node = _composition(condition, compiled)
    written = expressions.size(node)  # first: `depth` walks the tree written out, which this bounds
    if written > expressions.MAX_NODES:
        problems.append(entry.problem("when", composed_too_large(written)))
        return None
    levels = expressions.depth(node)
    if levels > expressions.MAX_DEPTH:
        message = f"the guards it composes nest {levels} levels deep; at most {expressions.MAX_DEPTH} can be compiled"
        problems.append(entry.problem("when", message))
        return None
    return node


def composed_too_large(written: int) -> str:
    """Why a composition (a guard's or a transition's `when:`) is refused: see expressions.MAX_NODES."""
    return (
        f"the guards it composes add up to {written:,} terms, each written out wherever it is used (a guard named "
        f"twice counts twice); at most {expressions.MAX_NODES:,} can be compiled"
    )


def _composition(condition: conditions.Condition, compiled: Mapping[str, Node]) -> Node:
    """A `when:` of guards as one tree: each part keeps its name, so an error inside is reported under it."""
    if isinstance(condition, conditions.Ref):
        return expressions.guard(condition.name, compiled[condition.name])
    if isinstance(condition, conditions.Not):
        return expressions.unary("not", _composition(condition.item, compiled))
    parts = [_composition(item, compiled) for item in condition.items]
    return expressions.logic("and" if isinstance(condition, conditions.All) else "or", parts)
