"""Rules that can never hold, or always hold, whatever values their facts take: found before they run.

A kill condition that can never hold is a kill switch switched off without a word (`daily_pnl_pct > 0 and
daily_pnl_pct < 0`, `anomalies < 0`: a count is never negative); one that always holds halts at every tick, and a
preflight check that never holds blocks every entry. Reading a fact, they pass the constant rule (`book._CONSTANT`),
so this module decides the plain cases soundly, and leaves every other case alone (no false refusal); the book
says which of its answers it refuses (`book._NEVER_ALWAYS`):

- a literal is one fact compared with a constant (`x < 5`, `-2 >= x`, arithmetic of constants included), a fact
  compared with itself (`x < x`, `x == x`), or a true/false fact alone (`halted`, `not halted`);
- a conjunction (`and`, or `or` under `not`) is never true when one of its parts never is, or when its literals
  on one fact contradict each other (bounds that leave no value, two different strings, true and false);
- a disjunction is never true when none of its parts can be; "always" is "the negation can never hold";
- a part that reads no fact (`false`, a guard `'a' > 'b'`) has one answer at every tick, found by running it;
  the machines' lint asks to pass over such parts except where a transition halts or closes (`constants=False`).

A machine's `when:` trees write their guards out (book.CompiledRules.when_node), so the machines' lint shares one
`Memo` by machine: each guard's tree is looked into once, not once per transition naming it.

A fact's possible values are its declared type (an `int` fact is a whole number; a string is only compared for
equality here, never ordered; one with a closed set of values, `facts.Fact.values`, is one of them) and, for a
count or a level (`python -m engine facts`), 0 and up. Config values are
facts whose value validation does not assume, and arithmetic on a fact's side is not looked into. A fact that is
missing at run time makes the rule fail (an error, never true), which does not make a rule that cannot be true
useful: "never holds" means never true when it can be evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.rules import expressions
from engine.rules.expressions import Binary, Const, Fact, Guard, Logic, Node, Unary

_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}  # `c < x` is `x > c`
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}  # `not x < c` is `x >= c`


@dataclass(frozen=True)
class Domain:
    """The values a fact can take: whole numbers only (`integral`), and none under `minimum`; for a text fact whose
    values are a closed set (`facts.Fact.values`), that set."""

    integral: bool = False
    minimum: float | None = None
    values: frozenset[str] | None = None


@dataclass(frozen=True)
class _Literal:
    fact: str
    op: str
    value: bool | int | float | str | None  # None: the fact compared with itself


@dataclass
class _Facts:
    """The literals a conjunction holds, by fact."""

    by_fact: dict[str, list[_Literal]] = field(default_factory=dict)

    def add(self, literal: _Literal) -> None:
        self.by_fact.setdefault(literal.fact, []).append(literal)


class Memo:
    """The answers found so far, by node, for one set of domains: a machine's transitions share their guards' trees
    (the same objects), so each is looked into once, and a tree is looked into once per node, not once per level
    above it (a transition's `when:` holds up to expressions.MAX_NODES terms, and a machine thousands of them)."""

    def __init__(self) -> None:
        self._free: dict[int, tuple[Node, bool]] = {}  # id -> (the node, kept so its id is not reused; reads no fact)
        self._never: dict[tuple[int, bool, bool], tuple[Node, str | None]] = {}

    def reads_no_fact(self, node: Node) -> bool:
        found = self._free.get(id(node))
        if found is None:
            children: tuple[Node, ...] = ()
            if isinstance(node, Unary):
                children = (node.operand,)
            elif isinstance(node, Logic):
                children = node.operands
            elif isinstance(node, Binary):
                children = (node.left, node.right)
            elif isinstance(node, Guard):
                children = (node.body,)
            free = not isinstance(node, Fact) and all(self.reads_no_fact(child) for child in children)
            found = self._free[id(node)] = (node, free)
        return found[1]


def never_holds(node: Node, domains: Mapping[str, Domain], *, constants: bool = True, memo: Memo | None = None) -> str | None:
    """Why `node` can never be true, or None when it may be (or this cannot tell). With `constants=False` a part
    that reads no fact (`false`, a guard `'a' > 'b'`) is taken as one that may hold: a constant guard is how a
    transition is switched off on purpose, and only what the facts rule out is said. `memo` may be shared by
    calls with the same `domains`."""
    return _never(node, False, domains, constants, memo or Memo())


def always_holds(node: Node, domains: Mapping[str, Domain], *, memo: Memo | None = None) -> str | None:
    """Why `node` is true whenever it can be evaluated, or None when it may be false (or this cannot tell)."""
    return _never(node, True, domains, True, memo or Memo())


def _never(node: Node, negated: bool, domains: Mapping[str, Domain], constants: bool, memo: Memo) -> str | None:
    """Why `node` (its negation when `negated`) is never true, or None; each node's answer is found once."""
    key = (id(node), negated, constants)
    known = memo._never.get(key)
    if known is None:
        known = memo._never[key] = (node, _never_of(node, negated, domains, constants, memo))
    return known[1]


def _never_of(node: Node, negated: bool, domains: Mapping[str, Domain], constants: bool, memo: Memo) -> str | None:
    if memo.reads_no_fact(node):
        return _constant_never(node, negated) if constants else None
    if isinstance(node, Guard):
        return _never(node.body, negated, domains, constants, memo)
    if isinstance(node, Unary) and node.op == "not":
        return _never(node.operand, not negated, domains, constants, memo)
    if isinstance(node, Logic):
        conjunction = (node.op == "and") != negated
        if not conjunction:  # true when any part is: never only when none of them can be
            reasons = [_never(part, negated, domains, constants, memo) for part in node.operands]
            return None if any(r is None for r in reasons) else "; ".join(dict.fromkeys(r for r in reasons if r))
        for part in node.operands:
            reason = _never(part, negated, domains, constants, memo)
            if reason is not None:
                return reason
        found = _Facts()
        _gather(node, negated, found)
        return next((r for name, lits in found.by_fact.items() if (r := _contradiction(name, lits, domains))), None)
    literal = _literal(node, negated)
    if literal is None:
        return None
    return _contradiction(literal.fact, [literal], domains)


def _constant_never(node: Node, negated: bool) -> str | None:
    """Why a part that reads no fact is never true (its negation when `negated`): its one answer, found by running
    it (it reads nothing, so every tick gives the same); None when it is true, or raises (refused where written)."""
    if isinstance(node, Const) and node.type == "bool":
        return f"'{_shown(node.value)}' is written where the rule needs a fact" if node.value == negated else None
    try:
        value = expressions.compile_node(node).function({})
    except Exception:  # arithmetic refused where it is written, or an error at run time: nothing to say here
        return None
    if value is not negated:
        return None
    names = [part.name for part in expressions._walk(node) if isinstance(part, Guard)]
    what = f"the guard '{names[0]}'" if names else "a part"
    return f"{what} reads no fact and is {_shown(value)} at every tick"


def _gather(node: Node, negated: bool, found: _Facts) -> None:
    """Every literal a conjunction (its negation a disjunction) holds at its top level, through nested ones."""
    if isinstance(node, Guard):
        _gather(node.body, negated, found)
    elif isinstance(node, Unary) and node.op == "not":
        _gather(node.operand, not negated, found)
    elif isinstance(node, Logic):
        if (node.op == "and") != negated:
            for part in node.operands:
                _gather(part, negated, found)
    else:
        literal = _literal(node, negated)
        if literal is not None:
            found.add(literal)


def _literal(node: Node, negated: bool) -> _Literal | None:
    """`node` as one fact against a constant (or itself), negated when asked; None when it is not that plain."""
    if isinstance(node, Fact) and node.type == "bool":
        return _Literal(node.name, "==", not negated)
    if not isinstance(node, Binary) or node.op not in _FLIPPED:
        return None
    op = _NEGATED[node.op] if negated else node.op
    left, right = node.left, node.right
    if isinstance(left, Fact) and isinstance(right, Fact):
        return _Literal(left.name, op, None) if left.name == right.name else None
    if not isinstance(left, Fact):
        left, right, op = right, left, _FLIPPED[op]
    if not isinstance(left, Fact):
        return None
    value = _constant(right)
    return None if value is None else _Literal(left.name, op, value)


def _constant(node: Node) -> bool | int | float | str | None:
    if isinstance(node, Const):
        return node.value
    try:
        return expressions._constant_value(node)
    except (ZeroDivisionError, OverflowError):  # refused where it is written; nothing to say here
        return None


def _contradiction(name: str, literals: Iterable[_Literal], domains: Mapping[str, Domain]) -> str | None:
    """Why no value of the fact `name` satisfies every literal at once, or None."""
    literals = list(literals)
    for lit in literals:
        if lit.value is None and lit.op in ("<", ">", "!="):
            return f"'{name} {lit.op} {name}' compares the fact with itself, which is never true"
    constrained = [lit for lit in literals if lit.value is not None]
    if not constrained:
        return None
    values = [lit.value for lit in constrained]
    domain = domains.get(name, Domain())
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
        return _equalities(name, constrained, domain.values)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None  # cannot happen after the type check; nothing to decide
    return _interval(name, constrained, domain)


def _equalities(name: str, literals: list[_Literal], closed: frozenset[str] | None) -> str | None:
    """true/false and strings, by == and != only (a string's order is not looked into); `closed`, a text fact's
    every value when they are a closed set."""
    equal = {lit.value for lit in literals if lit.op == "=="}
    unequal = {lit.value for lit in literals if lit.op == "!="}
    if any(lit.op not in ("==", "!=") for lit in literals):
        return None
    if len(equal) > 1:
        return f"'{name}' is asked to be {' and '.join(sorted(_shown(v) for v in equal))} at once"
    if equal and equal <= unequal:
        value = next(iter(equal))
        return f"'{name}' is asked to be {_shown(value)} and not {_shown(value)} at once"
    if not equal and unequal >= {True, False}:
        return f"'{name}' is asked to be neither true nor false"
    if closed is not None and equal and not equal <= closed:
        return f"'{name}' is never {_shown(next(iter(equal - closed)))}"
    if closed is not None and not equal and unequal >= closed:
        return f"'{name}' is asked to be none of the values it can take"
    return None


def _interval(name: str, literals: list[_Literal], domain: Domain) -> str | None:
    """Numbers: the bounds every literal sets, within the fact's domain, must leave a value."""
    low, low_open, high, high_open = -math.inf, True, math.inf, True
    if domain.minimum is not None:
        low, low_open = domain.minimum, False
    excluded: set[float] = set()
    for lit in literals:
        value = float(lit.value)  # type: ignore[arg-type]  # a number: checked by the caller
        if lit.op in (">", ">=", "==") and (value > low or (value == low and lit.op == ">")):
            low, low_open = value, lit.op == ">"
        if lit.op in ("<", "<=", "==") and (value < high or (value == high and lit.op == "<")):
            high, high_open = value, lit.op == "<"
        if lit.op == "!=":
            excluded.add(value)
    if domain.integral:  # the whole numbers within the bounds: `x > 0 and x < 1` leaves none
        if math.isfinite(low):
            low, low_open = (math.floor(low) + 1 if low_open and low == math.floor(low) else math.ceil(low)), False
        if math.isfinite(high):
            high, high_open = (math.ceil(high) - 1 if high_open and high == math.ceil(high) else math.floor(high)), False
    empty = low > high or (low == high and (low_open or high_open))
    if not empty and low == high:
        empty = low in excluded
    if not empty and domain.integral and math.isfinite(low) and math.isfinite(high) and high - low < len(excluded):
        empty = all(float(v) in excluded for v in range(int(low), int(high) + 1))
    if not empty:
        return None
    written = " and ".join(f"{name} {lit.op} {lit.value:g}" for lit in literals)
    within = ""
    if domain.integral or domain.minimum is not None:
        within = f" ({'a whole number' if domain.integral else 'a number'}"
        within += f" from {domain.minimum:g} up)" if domain.minimum is not None else ")"
    return f"no value of '{name}'{within} is {written}"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# --- divisions by what can be 0 -------------------------------------------------------------------------------


def zero_divisors(node: Node, domains: Mapping[str, Domain]) -> list[Binary]:
    """Every division (`/`, `%`) in `node` whose divisor can be 0, in the order written: at run time it raises, the
    rule fails and the engine halts, every time the fact is 0 (`pnl_usd / budget_usd` with no budget). A divisor
    cannot be 0 when it is a constant other than 0 (one that is 0 is refused where written), a fact whose domain
    leaves out 0, a product or quotient of such, or a negation of one; and a fact is guarded by the expression
    itself when a part evaluated before the division rules 0 out: `and`'s earlier parts hold (`budget_usd > 0 and
    pnl_usd / budget_usd < -0.5`), `or`'s earlier parts failed (`budget_usd == 0 or pnl_usd / budget_usd > 0.1`);
    compiled rules short-circuit so, left to right. A guard in another named guard does not count: each guard may be
    used alone. A sum or a difference of facts is taken as one that may be 0."""
    found: list[Binary] = []
    _divisions(node, (), domains, found)
    return found


def _divisions(node: Node, known: tuple[_Literal, ...], domains: Mapping[str, Domain], found: list[Binary]) -> None:
    """The divisions in `node` that can divide by 0, `known` holding whenever `node` is evaluated."""
    if isinstance(node, Guard):
        _divisions(node.body, known, domains, found)
    elif isinstance(node, Unary):
        _divisions(node.operand, known, domains, found)
    elif isinstance(node, Logic):
        for part in node.operands:
            _divisions(part, known, domains, found)
            before = _Facts()  # what holds when the next part is evaluated: this one true (`and`) or false (`or`)
            _gather(part, node.op == "or", before)
            known += tuple(lit for lits in before.by_fact.values() for lit in lits if lit.value is not None)
    elif isinstance(node, Binary):
        _divisions(node.left, known, domains, found)
        _divisions(node.right, known, domains, found)
        if node.op in ("/", "%") and _may_be_zero(node.right, known, domains):
            found.append(node)


def _may_be_zero(node: Node, known: tuple[_Literal, ...], domains: Mapping[str, Domain]) -> bool:
    if isinstance(node, Fact):
        on_it = [lit for lit in known if lit.fact == node.name]
        return _contradiction(node.name, [*on_it, _Literal(node.name, "==", 0)], domains) is None
    if isinstance(node, Unary) and node.op in ("-", "+"):
        return _may_be_zero(node.operand, known, domains)
    if isinstance(node, Binary) and node.op == "*":
        return _may_be_zero(node.left, known, domains) or _may_be_zero(node.right, known, domains)
    if isinstance(node, Binary) and node.op == "/":
        return _may_be_zero(node.left, known, domains)
    if not expressions.facts_of(node):
        return _constant(node) in (0, None)
    return True
