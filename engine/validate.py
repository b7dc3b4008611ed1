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


def validate(config_dir: Path, machines_dir: Path, rules_dir: Path) -> Report:
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
    report.problems = sorted(set(report.problems))
    return report


def load_valid(config_dir: Path, machines_dir: Path, rules_dir: Path) -> Report:
    """Validate and raise ConfigError unless everything is valid: what every command but `validate` uses."""
    report = validate(config_dir, machines_dir, rules_dir)
    if not report.ok:
        raise ConfigError(report.problems)
    return report
