"""The facts a guard may read, as `python -m engine facts` lists them: each config value's description names the
key it is read from, as written in the files. Read back from the fact's name (its first `_` taken for a dot) it
named keys no file has: `bot.id`, `chain.rules_dte_min`, `health.reference_symbols_stocks`."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from engine.paths import PROJECT_ROOT
from engine.rules.facts import BOT_KINDS, vocabulary

SCHEMAS = PROJECT_ROOT / "schemas"
BOT_BLOCK = {"momentum": ("momentum_bots", "items"), "options": ("optionsbot",), "crypto": ("cryptobot",)}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _has_key(schema: dict[str, Any], node: dict[str, Any], dotted: str) -> bool:
    for part in dotted.split("."):
        properties = _resolve(schema, node).get("properties", {})
        if part not in properties:
            return False
        node = properties[part]
    return True


@pytest.mark.parametrize("kind", sorted(BOT_KINDS))
def test_every_config_fact_names_the_key_it_is_read_from(kind: str) -> None:
    settings = json.loads((SCHEMAS / "settings.schema.json").read_text(encoding="utf-8"))
    bots = json.loads((SCHEMAS / "bots.schema.json").read_text(encoding="utf-8"))
    block: dict[str, Any] = bots
    for step in BOT_BLOCK[kind]:
        block = block["properties"][step] if step != "items" else block["items"]
    config = [fact for fact in vocabulary(kind).values() if fact.unit == "config"]
    assert {"chain_rules_dte_min", "health_reference_symbols_stocks", "bot_id"} & {f.name for f in config}
    for fact in config:
        found = re.fullmatch(r"Config value (\S+) \(see the schemas\)\..*", fact.description)
        assert found, fact.description
        key = found.group(1)
        assert _has_key(settings, settings, key) or _has_key(bots, block, key), (fact.name, key)
