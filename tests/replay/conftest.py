"""Shared helpers: a validated project copy, data folders written with engine/data/files.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.data.files import write_bars
from engine.data.records import Bar
from engine.validate import Report, load_valid
from tests.conftest import ProjectCopy

MONDAY_OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # 09:30 New York


def load(project: ProjectCopy) -> Report:
    return load_valid(project.config, project.machines, project.rules)


def only_momentum(project: ProjectCopy) -> None:
    """Just mom_AAPL: the options and crypto bots off, so a test's data needs AAPL alone."""
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    project.replace("config/bots.yaml", "cryptobot:\n  enabled: true", "cryptobot:\n  enabled: false")


def minute_bars(start: datetime, closes: Iterable[float], spread: float = 0.05) -> list[Bar]:
    """One bar a minute from `start`: open at the previous close, high and low `spread` around the two."""
    bars, previous = [], None
    for i, close in enumerate(closes):
        opened = close if previous is None else previous
        bars.append(
            Bar(start + timedelta(minutes=i), opened, max(opened, close) + spread, min(opened, close) - spread, close, 1000.0)
        )
        previous = close
    return bars


def session_bars(folder: Path, symbol: str, day_open: datetime, closes: list[float]) -> None:
    write_bars(folder, symbol, minute_bars(day_open, closes), fsync=False)


@pytest.fixture
def momentum_project(project: ProjectCopy) -> ProjectCopy:
    only_momentum(project)
    return project
