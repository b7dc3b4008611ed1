"""Text read from files (a halt's reason, a bot's name) made safe to print on one terminal line.

It lives below the trading and operator packages because both print such text: start-up's refusals as well as
`status`, `why` and the page."""

from __future__ import annotations


def one_line(text: str) -> str:
    """Text from the state file (a halt's reason: the operator's words, or an exception or a broker's message in
    a kill condition's) for a terminal: a newline would forge a line of the summary ("halt: none"), an escape
    sequence would recolour or clear the screen; both are shown as escapes, the rest as written."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
