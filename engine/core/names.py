"""Names a user may have mistyped: the one place that suggests the nearest known name.

The suggestion is kept as data (`nearest`) until a message is printed (`did_you_mean`), so tools that read
errors as data get the name, and every message that suggests a name says it the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name`, or None when nothing is close enough to be a likely typo. One that differs
    only in case comes first: difflib weighs case like any letter, and `'active'` found nothing near `'ACTIVE'`."""
    known = sorted(known)
    same = [candidate for candidate in known if candidate.casefold() == str(name).casefold()]
    if same:
        return same[0]
    found = difflib.get_close_matches(str(name), known, n=1)
    return found[0] if found else None


def did_you_mean(name: str, known: Iterable[str], *, list_when_none: bool = False) -> str:
    """` (did you mean 'x'?)`, or (with `list_when_none`) ` (known: a, b, c)`, or ''; appended to a message."""
    known = sorted(known)
    guess = nearest(name, known)
    if guess is not None:
        return f" (did you mean '{guess}'?)"
    if list_when_none and known:
        return f" (known: {', '.join(known)})"
    return ""


def unknown_name_message(what: str, name: str, known: Iterable[str]) -> str:
    """`unknown guard 'x' (did you mean 'y'?)`: the one wording for every unknown name."""
    return f"unknown {what} '{name}'" + did_you_mean(name, known)
