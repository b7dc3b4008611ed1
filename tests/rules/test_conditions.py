"""`conditions.false_part`: the part of a `when` that keeps a transition from firing, for `why`.

Under `not`, the guard that stops a transition is one that holds; `why` looked for a guard that was false and so
named none (and called the transition "holds, but an earlier one fires") or named the wrong one. The table covers
every form the guard language has (a name, all, any, not, and their nesting; none means always)."""

from __future__ import annotations

import pytest

from engine.rules import conditions

TRUE_GUARDS = {"a", "b"}  # a and b hold; x and y do not


def holds(name: str) -> bool:
    return name in TRUE_GUARDS


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (None, None),  # no `when`: always holds
        ("a", None),
        ("x", "x"),
        ({"not": "x"}, None),
        ({"not": "a"}, "not a"),
        ({"not": {"not": "x"}}, "x"),
        ({"all": ["a", "b"]}, None),
        ({"all": ["a", "x", "y"]}, "x"),  # the first false item, where evaluation stops
        ({"all": ["a", {"not": "b"}]}, "not b"),  # manage_exposure's form: holds_position and not bot_halted
        ({"any": ["x", "a"]}, None),
        ({"any": ["x", "y"]}, "x or y"),  # no item alone: none of them holds
        ({"any": ["x"]}, "x"),
        ({"any": ["x", {"not": "a"}]}, "x or not a"),
        ({"not": {"any": ["x", "a"]}}, "not a"),  # `a` holds, so the `any` holds
        ({"not": {"all": ["a", "b"]}}, "not (a and b)"),  # both hold: neither alone
        ({"not": {"all": ["a", "x"]}}, None),
        ({"all": ["a", {"any": ["x", {"all": ["b", "y"]}]}]}, "x or y"),
        ({"not": {"any": ["x", {"not": "y"}]}}, "y"),  # `not y` holds inside; negated, `y` is what is false
    ],
)
def test_the_false_part_of_every_guard_form(when: object, expected: str | None) -> None:
    """What `why` names as stopping the transition; None exactly when the condition holds."""
    condition = conditions.parse(when)
    part = conditions.false_part(condition, holds)
    assert (conditions.render(part) if part is not None else None) == expected
    assert (part is None) == conditions.evaluate(condition, holds)
    if part is not None:  # the part named is itself false: it alone explains the whole
        assert not conditions.evaluate(part, holds)
