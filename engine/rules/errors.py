"""Errors of rules: the ones raised while evaluating always fail closed; the compile-time one carries its place.

Compile-time errors carry data (the column, the name, the suggestion) rather than only text, so that
`--validate` can point at the token in the YAML file and tools can print them their own way.
"""

from __future__ import annotations

from typing import Any, Literal


class MissingFact(Exception):
    """A guard read a fact the engine could not determine this tick."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"fact '{name}' is missing (the engine could not read it)")


class FactTypeError(TypeError):
    """A fact's value is not of its declared type (or is NaN): a bug in what built the facts, so it fails closed
    instead of being compared as if it were right."""

    def __init__(self, name: str, expected: str, value: Any):
        self.name = name
        self.expected = expected
        self.value = value
        super().__init__(f"fact '{name}' is {value!r}, not {expected}")


class GuardError(Exception):
    """A guard could not be evaluated; the transition does not fire and the bot halts."""

    def __init__(self, guard: str, cause: BaseException):
        self.guard = guard
        self.cause = cause
        super().__init__(f"guard '{guard}' failed: {cause}")


Category = Literal["syntax", "type", "name", "result"]
_PREFIX: dict[str, str] = {"syntax": "expression syntax error: ", "type": "expression error: ", "name": "", "result": ""}


class ExpressionError(Exception):
    """An expression that does not compile. `column` (0-based, in characters of the expression as written) and
    `width` say which token is wrong; `name` and `suggestion` are set for an unknown fact."""

    def __init__(
        self,
        category: Category,
        reason: str,
        column: int = 0,
        width: int = 1,
        *,
        name: str | None = None,
        suggestion: str | None = None,
    ):
        self.category = category
        self.reason = reason
        self.column = column
        self.width = max(1, width)
        self.name = name
        self.suggestion = suggestion
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line message: `expression syntax error: ...`, `expression error: ...`, `unknown fact ...`."""
        return _PREFIX[self.category] + self.reason
