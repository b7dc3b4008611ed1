"""Scenario tables: a user's own transition tests, written in YAML next to the machines.

Each case puts a bot of a kind in a state, gives it facts, takes one step with the real compiled rules,
and compares the destination, trigger and actions with what the user expects. Facts not given are false,
0 or empty, and the chosen bot's bots.yaml values and settings.yaml values are facts as in the engine, so a
threshold edited in bots.yaml changes the outcome here exactly as it would in a trading day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.checks import bot_kind, trading_bots
from engine.config.errors import ConfigError, Problem
from engine.config.loader import Config
from engine.config.schema_check import load_checked
from engine.config.yaml_source import YamlDocument
from engine.core.names import unknown_name_message
from engine.machines.runtime import MachineModel, build_runtime
from engine.machines.spec import MachineSpec
from engine.rules.book import RuleBook
from engine.rules.facts import BOT_KINDS, bot_config_values, settings_values, vocabulary

_QUIET = {"bool": False, "float": 0.0, "int": 0, "str": ""}


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    kind: str
    bot_id: str
    name: str
    state: str
    facts: Mapping[str, Any]
    expect: Mapping[str, Any]

    @property
    def id(self) -> str:
        return f"{Path(self.file).stem}:{self.line}:{self.name}"


@dataclass(frozen=True)
class Outcome:
    case: Case
    passed: bool
    message: str


def quiet_facts(kind: str, config: Config, bot_id: str | None) -> dict[str, Any]:
    """Every fact of `kind` false, 0 or empty, then the settings' and the bot's config values."""
    facts = {name: _QUIET[fact.type] for name, fact in vocabulary(kind).items()}
    facts.update(settings_values(config.settings))
    if kind in BOT_KINDS:
        bot = next((b for _path, b in trading_bots(config.bots) if b.bot_id == bot_id), None)
        if bot is None:
            bot = next(b for _path, b in trading_bots(config.bots) if bot_kind(b) == kind)
        facts.update(bot_config_values(bot))
    return facts


def scenario_paths(machines_dir: Path) -> list[Path]:
    return sorted((machines_dir / "scenarios").glob("*.yaml"))


def load_cases(machines_dir: Path, config: Config, specs: Mapping[str, MachineSpec]) -> list[Case]:
    """Every case of every scenario file; raises ConfigError with every problem (schema, names, facts)."""
    cases: list[Case] = []
    problems: list[Problem] = []
    for doc in load_checked(scenario_paths(machines_dir), "scenario.schema.json", problems):
        cases.extend(_cases_of(doc, config, specs, problems))
    if problems:
        raise ConfigError(problems)
    return cases


def _cases_of(doc: YamlDocument, config: Config, specs: Mapping[str, MachineSpec], problems: list[Problem]) -> Iterator[Case]:
    data = doc.data
    kind = data["kind"]
    spec = specs.get(kind)
    if spec is None:
        problems.append(doc.problem(("kind",), f"no machine of kind '{kind}'"))
        return
    bot_ids = [b.bot_id for _p, b in trading_bots(config.bots) if bot_kind(b) == kind]
    bot_id = data.get("bot") or (bot_ids[0] if bot_ids else kind)
    if kind in BOT_KINDS and bot_id not in bot_ids:
        problems.append(doc.problem(("bot",), f"no {kind} bot '{bot_id}' in bots.yaml"))
        return
    known = vocabulary(kind)
    _check_facts(doc, ("facts",), data.get("facts") or {}, known, problems)
    for index, case in enumerate(data["cases"]):
        at = ("cases", index)
        _check_facts(doc, (*at, "facts"), case.get("facts") or {}, known, problems)
        for key, where in (("state", (*at, "state")), ("expect", (*at, "expect", "state"))):
            name = case[key] if key == "state" else case["expect"]["state"]
            if name not in spec.states:
                problems.append(doc.problem(where, unknown_name_message("state", name, spec.states)))
        facts = {**(data.get("facts") or {}), **(case.get("facts") or {})}
        line = doc.position(at)[0]
        yield Case(doc.path, line, kind, bot_id, case["name"], case["state"], facts, case["expect"])


def _check_facts(
    doc: YamlDocument, path: tuple[str | int, ...], facts: Mapping[str, Any], known: Mapping[str, Any], problems: list[Problem]
) -> None:
    for name in facts:
        if name not in known:
            problems.append(doc.problem((*path, name), unknown_name_message("fact", name, known), of_key=True))


def run_case(case: Case, config: Config, specs: Mapping[str, MachineSpec], book: RuleBook) -> Outcome:
    runtime, _compiled = build_runtime(specs[case.kind], book)
    model = MachineModel(case.bot_id)
    runtime.add(model, case.state)
    facts = {**quiet_facts(case.kind, config, case.bot_id), **case.facts}
    result = runtime.step(model, facts)
    fired = result.transition.trigger if result.transition else None
    actions = [i.action for i in result.intents]
    wrong = []
    if result.dest != case.expect["state"]:
        wrong.append(f"state {result.dest!r}, expected {case.expect['state']!r}")
    if "trigger" in case.expect and fired != case.expect["trigger"]:
        wrong.append(f"trigger {fired!r}, expected {case.expect['trigger']!r}")
    if "actions" in case.expect and actions != list(case.expect["actions"]):
        wrong.append(f"actions {actions}, expected {list(case.expect['actions'])}")
    if result.error:
        wrong.append(f"guard error: {result.error}")
    detail = f"{case.state} -> {result.dest} via {fired or 'nothing'}"
    return Outcome(case, not wrong, "; ".join(wrong) or detail)
