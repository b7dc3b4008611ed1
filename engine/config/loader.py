"""Load config/settings.yaml and config/bots.yaml: parse, schema-check, build typed objects, run the checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine.config import checks
from engine.config.build import build
from engine.config.errors import ConfigError, Problem
from engine.config.model import BotsConfig, Settings
from engine.config.schema_check import load_checked
from engine.config.yaml_source import YamlDocument

T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    """The user's validated configuration and the folder it came from."""

    settings: Settings
    bots: BotsConfig
    config_dir: Path
    settings_doc: YamlDocument
    bots_doc: YamlDocument

    def resolve(self, configured: str) -> Path:
        """A path from settings.yaml; relative paths are taken from the folder above config/."""
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (self.config_dir.resolve().parent / path)


def _load_one(path: Path, schema: str, cls: type[T], problems: list[Problem]) -> tuple[YamlDocument | None, T | None]:
    docs = load_checked([path], schema, problems)
    if not docs:
        return None, None
    try:
        return docs[0], build(cls, docs[0].data if docs[0].data is not None else {})
    except (TypeError, ValueError, OverflowError) as exc:
        # The schema should have refused whatever cannot be built; if a value slips past it, it is still a
        # problem in this file, never a traceback.
        problems.append(Problem(docs[0].path, 1, 1, "", f"a value in this file cannot be read: {exc}"))
        return None, None


def load_config(config_dir: Path, signals: Mapping[str, checks.DeclaredSignal] | None = None) -> Config:
    """Everything in one pass; raises ConfigError carrying every problem in both files.

    `signals` (mode -> declared params and kinds, from rules/signals.yaml) enables the signal-mode check.
    """
    problems: list[Problem] = []
    settings_doc, settings = _load_one(config_dir / "settings.yaml", "settings.schema.json", Settings, problems)
    bots_doc, bots = _load_one(config_dir / "bots.yaml", "bots.schema.json", BotsConfig, problems)
    if settings is not None and settings_doc is not None:
        for settings_check in checks.SETTINGS_CHECKS:
            problems.extend(settings_check(settings, settings_doc))
    if bots is not None and bots_doc is not None:
        for bots_check in checks.BOTS_CHECKS:
            problems.extend(bots_check(bots, bots_doc))
        if signals is not None:
            problems.extend(checks.signal_modes_known(bots, bots_doc, signals))
    if settings is not None and settings_doc is not None and bots is not None and bots_doc is not None:
        problems.extend(checks.sessions_in_zone(settings, settings_doc, bots, bots_doc))
    if problems:
        raise ConfigError(problems)
    assert settings is not None and bots is not None and settings_doc is not None and bots_doc is not None
    return Config(settings, bots, config_dir, settings_doc, bots_doc)
