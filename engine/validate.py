"""`python -m engine --validate`: every file the engine reads, checked in one pass, every problem reported.

Order: rules first (the config's signal modes are checked against them), then the config, then the machines
against the rules. A folder that fails to load still lets the others be checked, so one run shows all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.config.errors import ConfigError, Problem
from engine.config.loader import Config, load_config
from engine.machines.lint import lint_all
from engine.machines.spec import MachineSpec, load_machines
from engine.paths import shown
from engine.rules.book import RuleBook, load_rules


@dataclass
class Report:
    """What validation found: the problems, and what was loaded (for the summary and for callers)."""

    problems: list[Problem] = field(default_factory=list)
    config: Config | None = None
    book: RuleBook | None = None
    machines: dict[str, MachineSpec] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        bots = self.config.bots if self.config else None
        trading = [*bots.momentum_bots, bots.optionsbot, bots.cryptobot] if bots else []
        enabled = sum(1 for b in trading if b.enabled)
        files = 2 + len(self.machines) + (len(self.book.files) if self.book else 0)
        rules = self.book.count() if self.book else 0
        return f"OK: {files} files, {len(trading)} bots ({enabled} enabled), {len(self.machines)} machines, {rules} rules"


def persisted_state_problems(db_path: Path, machines: dict[str, MachineSpec]) -> list[Problem]:
    """States saved in SQLite that the machine files no longer have: the engine could not restore them."""
    if not db_path.is_file():
        return []
    from engine.core.store import StateStore

    problems = []
    store = StateStore(db_path)
    try:
        for saved in store.machine_states():
            spec = machines.get(saved.kind)
            if spec is None:
                message = f"{saved.kind} '{saved.bot_id}' is saved, but there is no {saved.kind} machine"
            elif saved.state not in spec.states:
                message = f"{saved.kind} '{saved.bot_id}' is saved in state '{saved.state}', which {spec.doc.path} no longer has"
            else:
                continue
            problems.append(Problem(shown(db_path), 0, 0, f"machine_states.{saved.kind}.{saved.bot_id}", message))
    finally:
        store.close()
    return problems


def validate(config_dir: Path, machines_dir: Path, rules_dir: Path, state_db: Path | None = None) -> Report:
    report = Report()
    try:
        report.book = load_rules(rules_dir)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
    signals = report.book.signal_specs() if report.book else None
    try:
        report.config = load_config(config_dir, signals)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
    try:
        report.machines = load_machines(machines_dir)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
    if report.book is not None and report.machines:
        report.problems.extend(lint_all(report.machines, report.book, shown(machines_dir)))
    if report.config is not None and report.machines:
        db = state_db or report.config.resolve(report.config.settings.system.state_db_path)
        report.problems.extend(persisted_state_problems(db, report.machines))
    report.problems = sorted(set(report.problems))
    return report


def load_valid(config_dir: Path, machines_dir: Path, rules_dir: Path, state_db: Path | None = None) -> Report:
    """Validate and raise ConfigError unless everything is valid: what every command but `validate` uses."""
    report = validate(config_dir, machines_dir, rules_dir, state_db)
    if not report.ok:
        raise ConfigError(report.problems)
    return report
