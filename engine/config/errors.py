"""Errors that point at a place in a user's file.

Every problem the engine finds in a YAML file becomes one `Problem`, so that the command line can print them
all at once, sorted, as `file:line:col: path: message` (the format editors and CI logs turn into links).
A problem may carry an excerpt (the line as written and a caret under the column) for the errors a reader
cannot place from the key path alone, such as a YAML syntax error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engine.paths import escaped

PathPart = str | int

# Wider lines are shown as a window around the column, so a minified or binary-looking line stays readable.
_EXCERPT_WIDTH = 100


# A URL as written in a file: its scheme, then what follows `://` up to a space, a quote or YAML's flow punctuation.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^\s'\"\],}]+)")


# A secret's variable given a value, as in .env (`ALPACA_SECRET=...`) or as YAML (`ALPACA_SECRET: ...`): a .env
# pasted into a YAML file is quoted by the problem (a syntax error's line) with the value after the name.
_SECRET_SET = re.compile(r"\b((?:ALPACA_KEY|ALPACA_SECRET|HYDRA_SERVE_TOKEN)[\"']?\s*[=:]\s*)([^\s]+)")


def without_urls(text: str, *, same_width: bool = False) -> str:
    """`text` with what follows each URL's `scheme://` masked, and the value given to a secret's variable: an
    apprise URL written where a name belongs (`alerts.urls_env: tgram://BOT_TOKEN/CHAT`) carries its token, a
    .env pasted into settings.yaml the keys, and the problem that says so must not print them on a terminal, in
    CI's log or in a service's journal. `same_width` masks character for character, so a caret under the line
    still points where it did."""
    if "://" not in text and "ALPACA_" not in text and "HYDRA_" not in text:
        return text

    def mask(m: re.Match[str], sep: str) -> str:
        return f"{m.group(1)}{sep}{'*' * len(m.group(2)) if same_width else '***'}"

    text = _URL.sub(lambda m: mask(m, "://"), text)
    return _SECRET_SET.sub(lambda m: mask(m, ""), text)


def format_path(path: Sequence[PathPart]) -> str:
    """`('momentum_bots', 0, 'session')` -> `momentum_bots[0].session`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def caret_excerpt(line_text: str, col: int, width: int = 1) -> str:
    """Two indented lines: `line_text` as written and a caret (`^`, `width` long) under 1-based column `col`.

    Tabs before the column are kept in the caret line, so the caret sits under the same character in a
    terminal whatever its tab width.
    """
    # A control character would move the caret or the terminal's cursor; each is shown as one '?'.
    text = "".join(ch if ch == "\t" or ch.isprintable() else "?" for ch in line_text.rstrip("\r\n"))
    start = max(0, col - 1)
    shown_from = 0
    if len(text) > _EXCERPT_WIDTH:
        shown_from = max(0, min(start - _EXCERPT_WIDTH // 2, len(text) - _EXCERPT_WIDTH))
        # a key pasted into the line and cut by the window kept the part inside it, which no exact mask finds
        # (imported here: --validate of files with no long line never pays for the journal's import)
        from engine.core.journal import window

        text = window(text, shown_from, shown_from + _EXCERPT_WIDTH)
        start -= shown_from
        # the caret stays under the window too: under a 5,000-character name it was 5,000 carets on one line
        width = min(width, max(1, len(text) - start))
    prefix = "..." if shown_from else ""
    pad = "".join(ch if ch == "\t" else " " for ch in text[: min(start, len(text))])
    pad += " " * max(0, start - len(text))
    return f"    {prefix}{text}\n    {' ' * len(prefix)}{pad}{'^' * max(1, width)}"


@dataclass(frozen=True, order=True)
class Problem:
    """One error in one file, with a 1-based line and column (0 when the place is the whole file).

    `excerpt` (not part of equality or order) is printed below the one-line form, indented: see `caret_excerpt`.
    A message is one line (`headline` escapes a line break in it); what is shown under it belongs in `excerpt`.
    """

    file: str
    line: int
    col: int
    path: str
    message: str
    excerpt: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # every problem of every file is made here: a URL quoted by any check (a value, a key, the line under a
        # YAML error) is masked once for all of them (`without_urls`)
        object.__setattr__(self, "path", without_urls(self.path))
        object.__setattr__(self, "message", without_urls(self.message))
        object.__setattr__(self, "excerpt", without_urls(self.excerpt, same_width=True))

    @property
    def headline(self) -> str:
        """The one-line form, `file:line:col: path: message`, always one line.

        The file's name, the path and the message echo what the user wrote (keys, state and trigger names, values),
        and YAML lets a quoted key hold a newline, an escape sequence or a line separator (U+2028): printed as
        written, one bad key would print lines that read as further `file:line:col:` problems to a person or to
        the tool reading the output. So every character that is not printable is shown as its Python escape,
        here, where every problem of every command is put into words; text that is printable is unchanged.
        """
        where = f"{escaped(self.file)}:{self.line}:{self.col}"
        message = escaped(self.message)
        return f"{where}: {escaped(self.path)}: {message}" if self.path else f"{where}: {message}"

    def __str__(self) -> str:
        return f"{self.headline}\n{self.excerpt}" if self.excerpt else self.headline


class ConfigError(Exception):
    """Raised when a file or a set of files cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
