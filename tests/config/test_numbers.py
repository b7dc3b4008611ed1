"""Numbers the engine cannot use are refused at their place, for every numeric key of both config files: an
integer too large for a float crashed the build (OverflowError), and an unbounded count of days or minutes
passed validation, then crashed the first tick that added it to a date (`dte_max: 10**19`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ruamel.yaml import YAML

from engine.config.errors import ConfigError, Problem
from engine.config.loader import load_config
from engine.config.schema_check import load_schema
from engine.paths import PROJECT_ROOT
from engine.rules.book import load_rules
from tests.conftest import ProjectCopy

SIGNALS = load_rules(PROJECT_ROOT / "rules").signal_specs()

# Held to a century where it is used (engine/trading/facts_builder.py): a huge value means "never stale".
UNBOUNDED = {"health.max_price_staleness_seconds"}


def numeric_keys(file: str) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(dotted path, key path) of every number written in the shipped config file (not signal params)."""
    data = YAML(typ="safe").load((PROJECT_ROOT / "config" / file).read_text(encoding="utf-8"))

    def walk(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, (*path, index))
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and "params" not in path:
            yield path

    for path in walk(data, ()):
        yield ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "["), path


CASES = [(file, shown, path) for file in ("settings.yaml", "bots.yaml") for shown, path in numeric_keys(file)]


def set_value(project: ProjectCopy, file: str, path: tuple[Any, ...], written: str) -> None:
    """Write `written` (YAML text) as the value at `path`, keeping every other line as it is."""
    yaml = YAML()
    target = project.config / file
    data = yaml.load(target.read_text(encoding="utf-8"))
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "@@VALUE@@"
    with target.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)
    target.write_text(target.read_text(encoding="utf-8").replace("'@@VALUE@@'", written).replace("@@VALUE@@", written))


def problems_of(project: ProjectCopy) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(project.config, SIGNALS)
    return caught.value.problems


def test_every_numeric_key_of_the_shipped_files_is_found() -> None:
    shown = {s for _f, s, _p in CASES}
    assert {"optionsbot.chain_rules.dte_max", "runner.loop_interval_seconds", "exitbot.cooloff_minutes"} <= shown


@pytest.mark.parametrize(("file", "shown", "path"), CASES, ids=[c[1] for c in CASES])
@pytest.mark.parametrize("written", ["1" + "0" * 400, "-1.0e+309"])
def test_a_number_past_what_the_engine_reads_is_refused_at_its_key(
    project: ProjectCopy, file: str, shown: str, path: tuple[Any, ...], written: str
) -> None:
    set_value(project, file, path, written)
    found = [p for p in problems_of(project) if p.path == shown]
    assert len(found) == 1, found
    assert "too large" in found[0].message


@pytest.mark.parametrize(("file", "shown", "path"), CASES, ids=[c[1] for c in CASES])
def test_a_number_in_range_for_a_float_but_not_for_the_engine_is_refused(
    project: ProjectCopy, file: str, shown: str, path: tuple[Any, ...]
) -> None:
    if shown in UNBOUNDED:
        pytest.skip("bounded where it is used")
    set_value(project, file, path, "10000000000000000")
    found = [p for p in problems_of(project) if p.path == shown]
    assert len(found) == 1 and "maximum" in found[0].message, found


def _numeric_properties(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") in ("number", "integer"):
            yield path, schema
        for key, value in schema.items():
            yield from _numeric_properties(value, f"{path}/{key}")


@pytest.mark.parametrize("name", ["settings.schema.json", "bots.schema.json"])
def test_every_number_in_the_config_schemas_has_a_maximum(name: str) -> None:
    """The class, not the samples: a key added later without a maximum fails here."""
    unbounded = [
        path for path, prop in _numeric_properties(load_schema(name)) if "maximum" not in prop and "exclusiveMaximum" not in prop
    ]
    allowed = {"/properties/health/properties/max_price_staleness_seconds"}
    assert set(unbounded) <= allowed, json.dumps(unbounded)


@pytest.mark.parametrize(
    ("written", "key", "says"),
    [
        ('{lookback_ticks: "abc"}', "lookback_ticks", "'abc' is not a number: the parameter is declared integer"),
        ("{lookback_ticks: 2.5}", "lookback_ticks", "2.5 is not a whole number: the parameter is declared integer"),
        ("{lookback_ticks: true}", "lookback_ticks", "true is not a number"),
        ("{min_move_pct: [1]}", "min_move_pct", "a list is not a number: the parameter is declared number"),
        ("{min_move_pct: null}", "min_move_pct", "null is not a number"),
        # a lookback of 0 compared the price with itself; -3 read an old price as the start, without a word
        ("{lookback_ticks: 0}", "lookback_ticks", "0 is below the parameter's minimum, 1"),
        ("{lookback_ticks: -3}", "lookback_ticks", "-3 is below the parameter's minimum, 1"),
    ],
)
def test_a_signal_parameter_of_the_wrong_type_is_refused(project: ProjectCopy, written: str, key: str, says: str) -> None:
    project.replace("config/bots.yaml", "params: {}", f"params: {written}")
    found = problems_of(project)
    assert [p.path for p in found] == [f"momentum_bots[0].signal.params.{key}"] and says in found[0].message, found


def test_a_signal_parameter_of_the_declared_type_is_read(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "params: {}", "params: {lookback_ticks: 6, min_move_pct: 1}")
    config = load_config(project.config, SIGNALS)
    assert dict(config.bots.momentum_bots[0].signal.params) == {"lookback_ticks": 6, "min_move_pct": 1}


def test_a_declared_default_of_the_wrong_type_is_refused(project: ProjectCopy) -> None:
    project.replace(
        "rules/signals.yaml", "lookback_ticks: {type: integer, default: 12,", "lookback_ticks: {type: integer, default: 12.5,"
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(project.rules)
    [p] = caught.value.problems
    assert p.path == "signals.placeholder_momentum_v1.params.lookback_ticks.default" and "not a whole number" in p.message


def test_a_declared_default_outside_its_bounds_is_refused(project: ProjectCopy) -> None:
    project.replace("rules/signals.yaml", "lookback_ticks: {type: integer, default: 12, minimum: 1,",
                    "lookback_ticks: {type: integer, default: 0, minimum: 1, maximum: 100,")  # fmt: skip
    project.replace("rules/signals.yaml", "min_move_pct: {type: number, default: 0.15,",
                    "min_move_pct: {type: number, default: 0.15, minimum: 1, maximum: 0,")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_rules(project.rules)
    found = sorted((p.path, p.message) for p in caught.value.problems)
    assert found == [
        ("signals.placeholder_crypto_momo_v1.params.min_move_pct.default", "0.15 is below the parameter's minimum, 1"),
        ("signals.placeholder_crypto_momo_v1.params.min_move_pct.minimum", "the minimum 1 is above the maximum 0"),
        ("signals.placeholder_momentum_v1.params.lookback_ticks.default", "0 is below the parameter's minimum, 1"),
    ]
