"""The rule book: every file in rules/ merged, schema-checked, and compiled per machine kind.

Expressions are compiled with rule-engine against the typed vocabulary of each kind that uses them, so an
unknown fact, a type mismatch or a syntax error is found by `--validate`, with the nearest name suggested,
before the market opens. Nothing here uses `eval`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import rule_engine

from engine.config.errors import ConfigError, Problem
from engine.config.schema_check import load_checked
from engine.config.yaml_source import YamlDocument
from engine.core.names import did_you_mean, unknown_name_message
from engine.paths import shown
from engine.rules import builtins, conditions
from engine.rules.errors import GuardError, MissingFact
from engine.rules.facts import BOT_KINDS, Fact, all_kinds, vocabulary
from engine.strategy.signals import SIGNALS

SECTIONS = ("guards", "preflight", "kill_conditions", "signals")
_TYPES = {
    "bool": rule_engine.DataType.BOOLEAN,
    "float": rule_engine.DataType.FLOAT,
    "int": rule_engine.DataType.FLOAT,
    "str": rule_engine.DataType.STRING,
}


@dataclass(frozen=True)
class SignalSpec:
    """A declared signal's parameter names and the bot kinds that may use it."""

    params: frozenset[str]
    kinds: frozenset[str]


@dataclass(frozen=True)
class Entry:
    """One named rule as written: its section, name, body, and the document it came from."""

    section: str
    name: str
    body: Mapping[str, Any]
    doc: YamlDocument

    def problem(self, key: str | None, message: str) -> Problem:
        path = (self.section, self.name, key) if key else (self.section, self.name)
        return self.doc.problem(path, message, of_key=key is None)


@dataclass
class RuleBook:
    """The merged rule files."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    files: list[str] = field(default_factory=list)

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
            name: SignalSpec(frozenset(e.body.get("params", {})), frozenset(e.body["kinds"])) for name, e in self.signals.items()
        }


def load_rules(rules_dir: Path) -> RuleBook:
    """Read every rules/*.yaml; raises ConfigError with every problem found."""
    book = RuleBook()
    problems: list[Problem] = []
    paths = sorted(rules_dir.glob("*.yaml"))
    if not paths:
        raise ConfigError([Problem(shown(rules_dir), 0, 0, "", "no rule files (*.yaml) in this folder")])
    for doc in load_checked(paths, "rules.schema.json", problems):
        book.files.append(doc.path)
        if not isinstance(doc.data, dict):
            continue
        for section in SECTIONS:
            for name, body in (doc.data.get(section) or {}).items():
                entry = Entry(section, name, body, doc)
                earlier = book.entries[section].get(name)
                if earlier is not None:
                    line = earlier.doc.position((section, name), of_key=True)[0]
                    problems.append(entry.problem(None, f"{section} '{name}' is already defined ({earlier.doc.path}:{line})"))
                    continue
                book.entries[section][name] = entry
    problems.extend(_check_signals(book))
    if problems:
        raise ConfigError(problems)
    return book


def _check_signals(book: RuleBook) -> list[Problem]:
    problems = []
    for entry in book.signals.values():
        implementation = entry.body["implementation"]
        if implementation not in SIGNALS:
            hint = did_you_mean(implementation, SIGNALS)
            message = f"no function '{implementation}' in engine/strategy/signals.py{hint}"
            problems.append(entry.problem("implementation", message))
    return problems


# --- compilation -------------------------------------------------------------------------------------------


@cache
def _context(kind: str) -> rule_engine.Context:
    types = {name: _TYPES[fact.type] for name, fact in vocabulary(kind).items()}
    return rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(types), resolver=_resolve_fact)


def facts_read(text: str, kind: str) -> frozenset[str]:
    """The facts an (already valid) expression reads. Compiled again in a context of its own, because a
    context collects the symbols of every rule compiled in it."""
    types = {name: _TYPES[fact.type] for name, fact in vocabulary(kind).items()}
    context = rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(types), resolver=_resolve_fact)
    return frozenset(rule_engine.Rule(text, context=context).context.symbols)


def _resolve_fact(thing: Mapping[str, Any], name: str) -> Any:
    value = thing[name]
    if value is None:
        raise MissingFact(name)
    return value


def compile_expression(text: str, kind: str) -> tuple[rule_engine.Rule | None, str | None]:
    """(rule, None) or (None, message) for an expression over `kind`'s facts."""
    try:
        rule = rule_engine.Rule(text, context=_context(kind))
    except rule_engine.errors.SymbolResolutionError as exc:
        name = exc.symbol_name
        if any(name in vocabulary(other) for other in all_kinds()):
            return None, f"fact '{name}' is not available to {kind} machines"
        hint = f" (did you mean '{exc.suggestion}'?)" if getattr(exc, "suggestion", None) else ""
        return None, f"unknown fact '{name}'{hint}"
    except rule_engine.errors.RuleSyntaxError as exc:
        return None, f"expression syntax error: {exc.message}"
    except rule_engine.errors.EngineError as exc:
        return None, f"expression error: {getattr(exc, 'message', exc)}"
    result = rule.statement.expression.result_type
    if result not in (rule_engine.DataType.BOOLEAN, rule_engine.DataType.UNDEFINED):
        return None, f"expression gives a {result.name.lower()}, not true/false"
    return rule, None


Predicate = Callable[[Mapping[str, Any]], bool]


def _expression_predicate(rule: rule_engine.Rule) -> Predicate:
    def holds(facts: Mapping[str, Any]) -> bool:
        return bool(rule.evaluate(facts))

    return holds


def _builtin_predicate(entry: Entry, kind: str, problems: list[Problem]) -> Predicate | None:
    name = entry.body["builtin"]
    spec = builtins.BUILTINS.get(name)
    if spec is None:
        hint = did_you_mean(name, builtins.BUILTINS, list_when_none=True)
        problems.append(entry.problem("builtin", f"unknown built-in guard '{name}'{hint}"))
        return None
    params = dict(entry.body.get("params") or {})
    facts = vocabulary(kind)
    ok = True
    for key in params.keys() - spec.params.keys():
        problems.append(entry.problem("params", f"built-in '{name}' has no parameter '{key}'"))
        ok = False
    for key, param_kind in spec.params.items():
        if key not in params:
            problems.append(entry.problem("params", f"built-in '{name}' needs parameter '{key}'"))
            ok = False
            continue
        message = _param_problem(params[key], param_kind, facts)
        if message:
            problems.append(entry.problem("params", f"{key}: {message}"))
            ok = False
    if not ok:
        return None

    def holds(fact_values: Mapping[str, Any]) -> bool:
        return spec.function(fact_values, params)

    return holds


def _param_problem(value: Any, kind: str, facts: Mapping[str, Fact]) -> str | None:
    def unknown(name: Any) -> str | None:
        if isinstance(name, str) and name in facts:
            return None
        return unknown_name_message("fact", str(name), facts)

    if kind == "fact":
        return unknown(value)
    if kind == "facts":
        if not isinstance(value, list) or not value:
            return "must be a list of fact names"
        return next((m for m in (unknown(v) for v in value) if m), None)
    if kind == "op":
        return None if value in builtins.OPERATORS else f"'{value}' is not one of {', '.join(builtins.OPERATORS)}"
    if kind == "fact_or_number":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else unknown(value)
    if kind == "number":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "must be a number"
    return f"unknown parameter kind {kind}"


@dataclass
class CompiledRules:
    """The guards, preflight checks and kill conditions of one machine kind, ready to evaluate against facts."""

    kind: str
    guards: dict[str, Predicate]
    preflight: dict[str, Predicate]
    kill_conditions: dict[str, Predicate]
    flatten_on: frozenset[str]
    preflight_facts: dict[str, frozenset[str]] = field(default_factory=dict)  # the facts each check reads

    def guard_holds(self, name: str, facts: Mapping[str, Any]) -> bool:
        """Evaluate one named guard; any failure becomes GuardError (the caller fails closed)."""
        try:
            return self.guards[name](facts)
        except GuardError:
            raise
        except Exception as exc:  # every failure of a guard becomes GuardError; the caller halts the bot
            raise GuardError(name, exc) from exc

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
    names = _closure(book, book.guards if needed is None else needed)
    attempted: set[str] = set()
    for name in names:
        entry = book.guards.get(name)
        if entry is None:
            continue
        predicate = _compile_guard(book, entry, kind, guards, attempted, problems)
        attempted.add(name)
        if predicate is not None:
            guards[name] = predicate
    preflight: dict[str, Predicate] = {}
    preflight_facts: dict[str, frozenset[str]] = {}
    kills: dict[str, Predicate] = {}
    if kind in BOT_KINDS:
        preflight = _compile_checks(book.preflight.values(), kind, problems)
        preflight_facts = {name: facts_read(book.preflight[name].body["expr"], kind) for name in preflight}
    if kind == "system":
        kills = _compile_checks(book.kill_conditions.values(), kind, problems)
    flatten = frozenset(n for n, e in book.kill_conditions.items() if e.body.get("flatten", False))
    return CompiledRules(kind, guards, preflight, kills, flatten, preflight_facts), problems


def _compile_checks(entries: Iterable[Entry], kind: str, problems: list[Problem]) -> dict[str, Predicate]:
    compiled = {}
    for entry in entries:
        rule, message = compile_expression(entry.body["expr"], kind)
        if message:
            problems.append(entry.problem("expr", message))
        elif rule is not None:
            compiled[entry.name] = _expression_predicate(rule)
    return compiled


def _closure(book: RuleBook, needed: Iterable[str]) -> list[str]:
    """The needed guards and every guard their compositions use, each once, dependencies first."""
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in seen or name in trail:
            return
        entry = book.guards.get(name)
        if entry is not None and "when" in entry.body:
            for ref in conditions.refs(conditions.parse(entry.body["when"])):
                visit(ref, (*trail, name))
        seen.add(name)
        ordered.append(name)

    for name in needed:
        visit(name, ())
    return ordered


def _compile_guard(
    book: RuleBook,
    entry: Entry,
    kind: str,
    compiled: dict[str, Predicate],
    attempted: set[str],
    problems: list[Problem],
) -> Predicate | None:
    body = entry.body
    if "expr" in body:
        rule, message = compile_expression(body["expr"], kind)
        if message:
            problems.append(entry.problem("expr", message))
            return None
        assert rule is not None
        return _expression_predicate(rule)
    if "builtin" in body:
        return _builtin_predicate(entry, kind, problems)
    condition = conditions.parse(body["when"])
    for ref in conditions.refs(condition):
        if ref not in book.guards:
            problems.append(entry.problem("when", unknown_name_message("guard", ref, book.guards)))
            return None
        if ref not in compiled:
            if ref in attempted:  # it has errors of its own, already reported
                return None
            problems.append(entry.problem("when", f"guard '{ref}' is part of a cycle of compositions"))
            return None

    def holds(facts: Mapping[str, Any]) -> bool:
        def part(name: str) -> bool:
            try:
                return compiled[name](facts)
            except GuardError:
                raise
            except Exception as exc:  # named after the guard that failed, not the composition around it
                raise GuardError(name, exc) from exc

        return conditions.evaluate(condition, part)

    return holds


