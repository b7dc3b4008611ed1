"""JSON text the engine reads back (log lines, `meta` values, a halt's conditions, a request's body), decoded so
that what cannot be read raises ValueError and nothing else.

`json.loads` raises RecursionError, not ValueError, for arrays or objects nested deeper than the interpreter's
recursion limit: a few kilobytes of `[` (a damaged file, another program's line, a hostile request). Every reader
already treats ValueError as "not what the engine wrote"; this is the one place the depth joins it, so no reader
ends in a traceback for it.

`loads_strict` is for text another program wrote (a broker's answer): `json.loads` also reads what RFC 8259 does
not allow and what two readers read two ways. A key given twice in one object keeps its last value (Go's decoder
does too; others keep the first or refuse), so `{"trading_blocked": true, "trading_blocked": false}` was read as
not blocked; and `NaN`, `Infinity` and `-Infinity` are no JSON at all (Alpaca's Go servers cannot write them).
"""

from __future__ import annotations

import json
from typing import Any


class Ambiguous(ValueError):
    """JSON text that is not JSON as RFC 8259 has it, or whose meaning depends on the reader: a key twice in one
    object, a NaN or an infinity, bytes that are not UTF-8. `key` is the key given twice (None for the others),
    kept as data: it is the other program's text, which a reader quotes as it quotes any (masked, then cut)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class TooDeep(ValueError):
    """JSON nested past the interpreter's recursion limit: not read (json.loads raises RecursionError)."""


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`; ValueError for text nested too deeply to decode (as for any text that is not JSON)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("JSON nested too deeply to read") from None


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # the common case is one comparison; the key is named only when there is one
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Ambiguous("a key is given twice in one object", key)
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise Ambiguous(f"{name} is not a JSON number")


_STRICT = json.JSONDecoder(object_pairs_hook=_one_value_per_key, parse_constant=_no_constant)
_ONE_VALUE_PER_KEY = json.JSONDecoder(object_pairs_hook=_one_value_per_key)


def loads_strict(data: str | bytes, *, non_finite: bool = False) -> Any:
    """`loads`, refusing with `Ambiguous` what RFC 8259 does not allow or two readers read two ways (see above).
    Bytes must be UTF-8, as RFC 8259 says JSON exchanged between systems is. About half again `loads`' time (the
    duplicate-key check runs once per object: 5 ms more on a 360 KB page of 1,000 option contracts).
    `non_finite`: NaN and Infinity read as floats, for a reader that checks every number itself and says where
    one is wrong (a fetch names the bar)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Ambiguous("the text is not UTF-8") from None
    try:
        return (_ONE_VALUE_PER_KEY if non_finite else _STRICT).decode(data)
    except RecursionError:
        raise TooDeep("JSON nested too deeply to read") from None
