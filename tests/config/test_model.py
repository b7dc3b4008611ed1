"""The schemas and the typed objects name the same keys, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from engine.config.model import BotsConfig, Settings
from engine.config.schema_check import load_schema
from engine.paths import SCHEMAS_DIR


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        document, _, pointer = schema["$ref"].partition("#")
        target = load_schema(document) if document else root
        for part in pointer.removeprefix("/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _pairs(cls: type, schema: dict[str, Any], root: dict[str, Any], where: str) -> Iterator[tuple[str, set, set]]:
    """(where, dataclass fields, schema properties) for `cls` and every dataclass nested in it."""
    schema = _resolve(schema, root)
    if schema.get("type") == "array":
        schema = _resolve(schema["items"], root)
    properties = schema.get("properties", {})
    fields = {f.name for f in dataclasses.fields(cls)}
    yield where, fields, set(properties)
    hints = typing.get_type_hints(cls)
    for name in fields & set(properties):
        hint = hints[name]
        if typing.get_origin(hint) is tuple:
            hint = typing.get_args(hint)[0]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _pairs(hint, properties[name], root, f"{where}.{name}")


@pytest.mark.parametrize(("cls", "schema_name"), [(Settings, "settings.schema.json"), (BotsConfig, "bots.schema.json")])
def test_schema_properties_equal_dataclass_fields(cls: type, schema_name: str) -> None:
    root = load_schema(schema_name)
    pairs = list(_pairs(cls, root, root, cls.__name__))
    assert len(pairs) > 5
    for where, fields, properties in pairs:
        assert fields == properties, f"{where}: only in model {fields - properties}, only in schema {properties - fields}"


def _properties(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            yield f"{path}.{name}", sub
        for key, sub in schema.items():
            yield from _properties(sub, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, sub in enumerate(schema):
            yield from _properties(sub, f"{path}[{index}]")


@pytest.mark.parametrize("schema_name", sorted(p.name for p in SCHEMAS_DIR.glob("*.schema.json")))
def test_every_property_has_a_description_and_objects_are_closed(schema_name: str) -> None:
    root = load_schema(schema_name)
    for where, sub in _properties(root, schema_name):
        resolved = _resolve(sub, root)
        assert resolved.get("description"), f"{where} has no description"
        if resolved.get("type") == "object" and "properties" in resolved:
            assert resolved.get("additionalProperties") is False, f"{where} accepts unknown keys"
