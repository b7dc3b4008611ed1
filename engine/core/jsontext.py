"""JSON text the engine reads back (log lines, `meta` values, a halt's conditions, a request's body), decoded so
that what cannot be read raises ValueError and nothing else.

`json.loads` raises RecursionError, not ValueError, for arrays or objects nested deeper than the interpreter's
recursion limit: a few kilobytes of `[` (a damaged file, another program's line, a hostile request). Every reader
already treats ValueError as "not what the engine wrote"; this is the one place the depth joins it, so no reader
ends in a traceback for it.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`; ValueError for text nested too deeply to decode (as for any text that is not JSON)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
