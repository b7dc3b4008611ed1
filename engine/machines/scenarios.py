"""Scenario tables: a user's own transition tests, written in YAML next to the machines.

Each case puts a bot of a kind in a state, gives it facts, takes one step with the real compiled rules,
and compares the destination, trigger and actions with what the user expects. Facts not given are false,
0 or empty (`worst_position_pnl_pct` not given is `position_pnl_pct`: one position), and the chosen bot's
bots.yaml values and settings.yaml values are facts as in the engine, so a threshold edited in bots.yaml
changes the outcome here exactly as it would in a trading day.

A scenario file is checked before it runs: every fact must be in the vocabulary of the file's machine kind
and have that fact's type (`holds_position: yes` is text, not a bool), every state, trigger and action must
exist. A file that breaks these is a bad file (exit 2, at its line), not a failed test: a test that fails
because its input is wrong says nothing about the rules. Every file is read and every good file runs, so one
bad file does not hide the results of the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.checks import bot_kind, trading_bots
from engine.config.errors import ConfigError, Problem
from engine.config.loader import Config
from engine.config.schema_check import load_checked, show_value, yaml_files
from engine.config.yaml_source import YamlDocument
from engine.core.names import did_you_mean, unknown_name_message
from engine.machines.actions import actions_for
from engine.machines.lint import REQUIRED_KINDS
from engine.machines.runtime import MachineModel, MachineRuntime, build_runtime
from engine.machines.spec import MachineSpec
from engine.paths import PathKind, path_kind, shown
from engine.rules.book import RuleBook
from engine.rules.facts import BOT_KINDS, Fact, bot_config_values, settings_values, vocabulary

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


@dataclass
class ScenarioFiles:
    """The cases of every good scenario file, and every problem of the bad ones (whose cases do not run)."""

    cases: list[Case] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Files naming a bot this bots.yaml does not have: written for another config (the shipped scenarios name
    # mom_AAPL; `--validate --config examples/...` checks another one). Not run; `test` lists them, `--validate`
    # does not fail on them, since the config and the machines are valid together.
    other_config: list[Problem] = field(default_factory=list)

    @property
    def not_run(self) -> list[Problem]:
        return sorted(set(self.problems) | set(self.other_config))


def _folder_problems(folder: Path) -> list[Problem]:
    """machines/scenarios/ may be missing (no scenarios yet), but what is there must be a folder that can be read.
    A file of that name, a link to nothing or a folder that cannot be listed left every scenario out without a
    word: `--validate` said OK and `test` "0 passed, 0 failed" with exit 0, so a CI running it stayed green."""
    try:
        found = path_kind(folder)
        if found is PathKind.NOTHING:
            return []
        if found is PathKind.FOLDER:
            os.listdir(folder)
            return []
        message = f"{found.value}, not a folder: scenario files go in a folder of this name (remove it for none)"
    except OSError as exc:
        message = f"cannot read the scenario files here: {exc.strerror or exc}"
    return [Problem(shown(folder), 0, 0, "", message)]


def read_cases(
    machines_dir: Path, config: Config | None, specs: Mapping[str, MachineSpec], *, machines_complete: bool = True
) -> ScenarioFiles:
    """Every scenario file checked; never raises for a bad file (see the module's docstring).

    `config` None (config/ is invalid) and `machines_complete` False (a machine file is) check what can be checked
    without them: `--validate` said only the config's or the machine's problems, and the scenario files' came one
    round of fixes later. A file's bot is then not looked up, and a file of a kind whose machine file is broken is
    not read further (its states are not known). Its cases are not for running (`test` needs both)."""
    found = ScenarioFiles()
    paths, found.problems = yaml_files(machines_dir / "scenarios")  # a scenarios.yml is said, not passed over
    found.problems.extend(_folder_problems(machines_dir / "scenarios"))
    for doc in load_checked(paths, "scenario.schema.json", found.problems):
        problems: list[Problem] = []
        if doc.data["kind"] not in specs and (not machines_complete or doc.data["kind"] in REQUIRED_KINDS):
            # its machine file is broken, or gone (a kind every run needs), and said so by the lint: its states,
            # triggers and actions are not known
            continue
        cases = list(_cases_of(doc, config, specs, problems, found.other_config))
        found.problems.extend(problems)
        if not problems:
            found.cases.extend(cases)
    return found


def load_cases(machines_dir: Path, config: Config, specs: Mapping[str, MachineSpec]) -> list[Case]:
    """Every case of every scenario file; raises ConfigError with every problem (schema, names, facts)."""
    found = read_cases(machines_dir, config, specs)
    if found.not_run:
        raise ConfigError(found.not_run)
    return found.cases


def _cases_of(
    doc: YamlDocument,
    config: Config | None,
    specs: Mapping[str, MachineSpec],
    problems: list[Problem],
    elsewhere: list[Problem],
) -> Iterator[Case]:
    data = doc.data
    kind = data["kind"]
    spec = specs.get(kind)
    if spec is None:
        problems.append(doc.problem(("kind",), f"no machine of kind '{kind}'"))
        return
    if "bot" in data and kind not in BOT_KINDS:
        # The system and the PortfolioBot read no bot's values: a `bot:` here was taken and ignored, as if the
        # cases ran with that bot's bots.yaml values.
        kinds = ", ".join(BOT_KINDS)
        problems.append(doc.problem(("bot",), f"a {kind} machine reads no bot's values: `bot:` is for {kinds}; remove it"))
        return
    bot_ids = [b.bot_id for _p, b in trading_bots(config.bots) if bot_kind(b) == kind] if config is not None else []
    bot_id = data.get("bot") or (bot_ids[0] if bot_ids else kind)
    if config is not None and kind in BOT_KINDS and bot_id not in bot_ids:
        elsewhere.append(doc.problem(("bot",), f"no {kind} bot '{bot_id}' in bots.yaml"))
        return
    known = vocabulary(kind)
    triggers = {t.trigger for t in spec.transitions}
    actions = actions_for(kind)
    _check_facts(doc, ("facts",), data.get("facts") or {}, known, problems)
    for index, case in enumerate(data["cases"]):
        at = ("cases", index)
        _check_facts(doc, (*at, "facts"), case.get("facts") or {}, known, problems)
        for key, where in (("state", (*at, "state")), ("expect", (*at, "expect", "state"))):
            name = case[key] if key == "state" else case["expect"]["state"]
            if name not in spec.states:
                problems.append(doc.problem(where, unknown_name_message("state", name, spec.states)))
        expect = case["expect"]
        if "trigger" in expect and expect["trigger"] not in triggers:
            message = unknown_name_message(f"trigger of the {kind} machine", expect["trigger"], triggers)
            problems.append(doc.problem((*at, "expect", "trigger"), message))
        for position, action in enumerate(expect.get("actions", ())):
            if action not in actions:
                message = unknown_name_message(f"action for {kind} machines", action, actions)
                problems.append(doc.problem((*at, "expect", "actions", position), message))
        facts = {**(data.get("facts") or {}), **(case.get("facts") or {})}
        line = doc.position(at)[0]
        yield Case(doc.path, line, kind, bot_id, case["name"], case["state"], facts, case["expect"])


def _check_facts(
    doc: YamlDocument, path: tuple[str | int, ...], facts: Mapping[str, Any], known: Mapping[str, Fact], problems: list[Problem]
) -> None:
    for name, value in facts.items():
        if name not in known:
            problems.append(doc.problem((*path, name), unknown_name_message("fact", name, known), of_key=True))
            continue
        message = fact_type_problem(known[name], value)
        if message:
            problems.append(doc.problem((*path, name), message))


_TYPE_WORDS = {
    "bool": "a bool (true or false)",
    "int": "an int (a whole number)",
    "float": "a float (a number)",
    "str": "a str (text)",
}


def fact_type_problem(fact: Fact, value: Any) -> str | None:
    """Why `value` cannot be `fact`'s value in a scenario, or None. null is allowed: a fact the engine could
    not read this tick (a guard that reads it fails closed, which a scenario may want to show)."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {
        "bool": isinstance(value, bool),
        "int": number and isinstance(value, int),
        "float": number,
        "str": isinstance(value, str),
    }[fact.type]
    if fits and fact.values is not None and value not in fact.values:
        # A value the engine never reads into this fact (the adapter refuses any other status): the case tests a
        # tick that cannot happen, and a typo (`ACTVE`) passed as a case of a blocked account
        hint = did_you_mean(value, fact.values, list_when_none=True)
        return f"{show_value(value)} is never a value of fact '{fact.name}'{hint}"
    if fits:
        return None
    unit = f", in {fact.unit}" if fact.unit and fact.unit != "config" else ""
    return f"{show_value(value)} is {_written_as(value)}, but fact '{fact.name}' is {_TYPE_WORDS[fact.type]}{unit}"


def _written_as(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "a mapping"


def run_case(
    case: Case,
    config: Config,
    specs: Mapping[str, MachineSpec],
    book: RuleBook,
    runtimes: dict[str, MachineRuntime] | None = None,
) -> Outcome:
    """One step of one case. `runtimes` (kind -> runtime) is a cache shared by the cases of one run, so the
    rules are compiled once per kind rather than once per case. An error inside the step fails the case."""
    try:
        return _run(case, config, specs, book, {} if runtimes is None else runtimes)
    except Exception as exc:  # one broken case must not stop the others: it fails, with the error
        return Outcome(case, False, f"error: {type(exc).__name__}: {exc}")


def run_cases(cases: Iterable[Case], config: Config, specs: Mapping[str, MachineSpec], book: RuleBook) -> Iterator[Outcome]:
    """Every case's outcome, in order, compiling each kind's rules once."""
    runtimes: dict[str, MachineRuntime] = {}
    for case in cases:
        yield run_case(case, config, specs, book, runtimes)


def one_position(facts: Mapping[str, Any]) -> Mapping[str, Any]:
    """A case's facts, with `worst_position_pnl_pct` the same as `position_pnl_pct` when it gives only that: one
    position, whose P&L is both. Cases written before the worst position had a fact of its own (the shipped stop
    loss reads it) keep saying what they said."""
    if "position_pnl_pct" in facts and "worst_position_pnl_pct" not in facts:
        return {**facts, "worst_position_pnl_pct": facts["position_pnl_pct"]}
    return facts


def _run(
    case: Case, config: Config, specs: Mapping[str, MachineSpec], book: RuleBook, runtimes: dict[str, MachineRuntime]
) -> Outcome:
    runtime = runtimes.get(case.kind)
    if runtime is None:
        runtime = runtimes[case.kind] = build_runtime(specs[case.kind], book)[0]
    model = MachineModel(case.bot_id)
    runtime.add(model, case.state)
    try:
        facts = {**quiet_facts(case.kind, config, case.bot_id), **one_position(case.facts)}
        result = runtime.step(model, facts)
    finally:
        runtime.machine.remove_model(model)
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
