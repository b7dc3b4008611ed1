"""The README's table of optional keys ("Keys the project added to the original files are optional and have
defaults") against the schemas that give those defaults: a key the schemas let a user leave out must be in the
table (or under a key that is, such as `alerts`), with the default the schema fills in. Keys added later
(`health.max_spread_pct`, `options.feed`, the chain rules' quote age and spread) were missing from it, so a
reader of the README could not know they existed nor what a file without them meant."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from engine.paths import PROJECT_ROOT, SCHEMAS_DIR


def defaults(node: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Dotted key -> the schema's default, for every property that has one."""
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        if "default" in node and path:
            found[".".join(path)] = node["default"]
        for name, sub in node.get("properties", {}).items():
            found |= defaults(sub, (*path, name))
        for combined in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(combined, []):
                found |= defaults(sub, path)
    return found


def table() -> dict[str, str]:
    """Dotted key -> its default as the README's table writes it (the cell's backticked text, or the cell)."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("| file | key | default | meaning |")
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        _file, keys, written, _meaning = (cell.strip() for cell in line.strip("|").split("|"))
        names, values = re.findall(r"`([^`]+)`", keys), [v.strip().strip("`") for v in written.split(", ")]
        for i, name in enumerate(names):
            rows[name] = values[i] if len(values) == len(names) else written
    return rows


SCHEMA_DEFAULTS = {
    key: value
    for name in ("settings", "bots")
    for key, value in defaults(json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))).items()
}


@pytest.mark.parametrize("key", sorted(SCHEMA_DEFAULTS))
def test_every_optional_key_is_in_the_readmes_table_with_its_default(key: str) -> None:
    rows = table()
    documented = [k for k in rows if key == k or key.startswith(k + ".")]
    if isinstance(SCHEMA_DEFAULTS[key], dict) and any(k.startswith(key + ".") for k in rows):
        return  # a section (`broker: {}`) whose keys have their rows
    assert documented, f"{key} has a default in schemas/ but no row in the README's table"
    default, written = SCHEMA_DEFAULTS[key], rows[documented[0]]
    if documented[0] == key and isinstance(default, (int, float, str)) and not isinstance(default, bool) and default != "":
        if isinstance(default, str):
            assert written == default, (key, written, default)
        else:
            assert float(written) == float(default), (key, written, default)
