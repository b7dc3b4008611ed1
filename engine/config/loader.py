"""Load config/settings.yaml and config/bots.yaml: parse, schema-check, build typed objects, run the checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.config import checks
from engine.config.build import build
from engine.config.errors import ConfigError, Problem
from engine.config.model import BotsConfig, Settings
from engine.config.partial import Watch, watched
from engine.config.schema_check import document_problems, schema_errors, untrusted_paths
from engine.config.yaml_source import YamlDocument, load_yaml
from engine.paths import shown

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
        return resolved(self.config_dir, configured)


def resolved(config_dir: Path, configured: str) -> Path:
    """A path from the settings.yaml of `config_dir`; relative paths are taken from the folder above config/."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (config_dir.resolve().parent / path)


@dataclass(frozen=True)
class SettingsPart:
    """settings.yaml as read: `watch` (engine/config/partial.py) when it failed its schema, and a check of it
    must run through it."""

    value: Settings
    doc: YamlDocument
    watch: Watch | None


class ConfigInvalid(ConfigError):
    """`load_config`'s refusal. `settings`: settings.yaml, unless its log or state path is no path this machine can
    look at (`checks.output_paths_usable`), for the checks that read nothing else: what a run would write
    (engine/validate.py) is said in the same run as a typo in bots.yaml or in another key of settings.yaml."""

    def __init__(self, problems: list[Problem], settings: SettingsPart | None):
        super().__init__(problems)
        self.settings = settings


@dataclass(frozen=True)
class _Part:
    """One file as read: its typed form, and `watch` when it failed its schema and is only fit for checking."""

    doc: YamlDocument
    value: Any
    watch: Watch | None


def _load_one(path: Path, schema: str, cls: type[T], problems: list[Problem], watch: Watch) -> _Part | None:
    """The file typed, or watched (`engine/config/partial.py`) when it has problems the named checks can look past."""
    try:
        doc = load_yaml(path, shown(path))
    except ConfigError as exc:  # it could not be read at all
        problems.extend(exc.problems)
        return None
    errors = schema_errors(doc, schema)
    found = document_problems(doc, schema, errors)
    problems.extend(found)
    if found:
        untrusted = untrusted_paths(doc, errors)
        if not isinstance(doc.data, dict) or () in untrusted:
            return None
        return _Part(doc, watched(cls, doc.data, path.name, untrusted, watch), watch)
    try:
        return _Part(doc, build(cls, doc.data if doc.data is not None else {}), None)
    except (TypeError, ValueError, OverflowError) as exc:
        # The schema should have refused whatever cannot be built; if a value slips past it, it is still a
        # problem in this file, never a traceback.
        problems.append(Problem(doc.path, 1, 1, "", f"a value in this file cannot be read: {exc}"))
        return None


def _checked(check: Callable[..., list[Problem]], *parts: _Part, extra: tuple[Any, ...] = ()) -> list[Problem]:
    """`check` on the parts' values and documents; through their Watch when one failed its schema."""
    args = [item for part in parts for item in (part.value, part.doc)]
    watch = next((part.watch for part in parts if part.watch is not None), None)
    if watch is None:
        return check(*args, *extra)
    return watch.run(check, *args, *extra)


def load_settings(config_dir: Path) -> Settings:
    """settings.yaml alone, read and checked as `load_config` reads and checks it, or ConfigInvalid with its
    problems. For the commands that judge the state file only (`health`, and `status` while another file is
    mid-edit): the running engine read every file at its start and never reads them again, so a bots.yaml, machine
    or rule file being edited says nothing about it, and refusing on one made a healthy engine "unhealthy"."""
    problems: list[Problem] = []
    watch = Watch()
    settings = _load_one(config_dir / "settings.yaml", "settings.schema.json", Settings, problems, watch)
    if settings is not None:
        for settings_check in checks.SETTINGS_CHECKS:
            problems.extend(_checked(settings_check, settings))
    if problems or settings is None:
        raise ConfigInvalid(problems, None)
    return settings.value


def load_config(config_dir: Path, signals: Mapping[str, checks.DeclaredSignal] | None = None) -> Config:
    """Everything in one pass; raises ConfigError carrying every problem in both files.

    `signals` (mode -> declared params and kinds, from rules/signals.yaml) enables the signal-mode check. The
    named checks run on a file that failed its schema too, each as far as the file's problems leave its input
    alone (`engine/config/partial.py`): one run says every error it can.
    """
    problems: list[Problem] = []
    watch = Watch()
    settings = _load_one(config_dir / "settings.yaml", "settings.schema.json", Settings, problems, watch)
    bots = _load_one(config_dir / "bots.yaml", "bots.schema.json", BotsConfig, problems, watch)
    paths_usable = settings is not None
    if settings is not None:
        for settings_check in checks.SETTINGS_CHECKS:
            found = _checked(settings_check, settings)
            paths_usable = paths_usable and not (found and settings_check is checks.output_paths_usable)
            problems.extend(found)
    if bots is not None:
        for bots_check in checks.BOTS_CHECKS:
            problems.extend(_checked(bots_check, bots))
        if signals is not None:
            problems.extend(_checked(checks.signal_modes_known, bots, extra=(signals,)))
    if settings is not None and bots is not None:
        problems.extend(_checked(checks.sessions_in_zone, settings, bots))
    if problems:
        usable = SettingsPart(settings.value, settings.doc, settings.watch) if settings is not None and paths_usable else None
        raise ConfigInvalid(problems, usable)
    assert settings is not None and bots is not None
    return Config(settings.value, bots.value, config_dir, settings.doc, bots.doc)
