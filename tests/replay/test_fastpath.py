"""The backtest's shortcuts change nothing a run does: a run with them and a run without them write the same log
(each tick's duration aside), the same state file and the same report.

The shortcuts: the ExitBot keeps `unexplained`'s answer while its inputs stand and skips the counters it already
found quiet (engine/trading/exitbot.py), the engine hands the store the `why` record's encoder rather than its
bytes, so that with commits held only the record written is encoded (engine/core/store.py `save_last_facts`),
the replay's requests skip SimAPI's lock (engine/replay/api.py), its snapshot is read from the exchange without
the request layers (engine/replay/broker.py), and the bots of a tick share what only the tick
decides: their windows and the dict their facts are copied from (facts_builder.TickBots), and the preflight checks
that read only their kind's facts (preflight.KIND_FACTS); the ExitBot keeps a verdict with no kill condition
holding while every input it read stands (`ExitBot._kill_inputs`). Those last three are not the backtest's alone: every run
takes them, and this holds them to building each bot's facts and answering each check one bot at a time.

A backtest's account never holds what its bots do not explain, nor are its orders refused, so this cannot tell a
cache key that misses an input: the tests of halts (tests/trading/test_halts.py) and of a position that flips side
(tests/brokers/test_hostile_lifecycle.py) fail when either shortcut keeps an answer it should not."""

from __future__ import annotations

import functools
import json
import marshal
import sqlite3
import types
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.sim.api import SimAPI
from engine.brokers.snapshot import SnapshotBroker
from engine.replay import backtest as backtest_module
from engine.replay.backtest import run_backtest
from engine.trading import engine as engine_module
from engine.trading import exitbot
from engine.trading import preflight as preflight_module
from engine.trading.exitbot import ExitBot
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load, session_bars

TABLES = ("orders", "positions", "trades", "counters", "realized_pnl", "halts", "machine_states", "last_facts")


class _Forgetful(dict[str, Mapping[str, int]]):
    """A `_quiet` that never remembers: every bot's counters are looked at every tick, as before the shortcut."""

    def __setitem__(self, key: str, value: Mapping[str, int]) -> None:
        return None


def _without_shortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    anomalies = ExitBot.anomalies

    def every_counter(self: ExitBot, *args: Any, **kwargs: Any) -> int:
        self._quiet = _Forgetful()
        return anomalies(self, *args, **kwargs)

    monkeypatch.setattr(ExitBot, "anomalies", every_counter)
    monkeypatch.setattr(
        ExitBot, "_unexplained", lambda self, snapshot, moved: exitbot.unexplained(self.store, snapshot, moved)
    )
    # the record encoded every tick, as bytes
    monkeypatch.setattr(engine_module, "functools", types.SimpleNamespace(partial=lambda encode, *args: encode(*args)))
    monkeypatch.setattr(backtest_module, "ReplayAPI", SimAPI)  # every request through the lock, as the simulator's
    monkeypatch.setattr(backtest_module, "ReplayBroker", SnapshotBroker)  # the snapshot through the request layers
    monkeypatch.setattr(engine_module, "TickBots", lambda *args: None)  # each bot's windows and facts its own
    monkeypatch.setattr(preflight_module, "KIND_FACTS", frozenset())  # the kind's checks asked of every bot
    monkeypatch.setattr(ExitBot, "_kill_inputs", lambda self, facts, notes: (object(),))  # kills answered every tick


def _day(folder: Path) -> None:
    """Two sessions of AAPL going up and down in waves, so the bot enters, exits and waits on working orders."""
    for day_open in (MONDAY_OPEN, MONDAY_OPEN + timedelta(days=1)):
        closes = [190.0]
        for minute in range(1, 390):
            step = 0.08 if (minute // 30) % 2 == 0 else -0.09
            closes.append(round(closes[-1] + step, 2))
        session_bars(folder, "AAPL", day_open, closes)


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        event.pop("duration_ms", None)  # the one value of the log that is the wall clock's
        events.append(event)
    return events


def _state(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        state = {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in TABLES}
    conn.close()
    # the `why` record as `why` reads it: marshal marks objects referenced more than once when it meets them, so
    # the bytes of one record can differ with when it was encoded while the values read back are the same
    state["last_facts"] = [(scope, at, marshal.loads(body)) for scope, at, body in state["last_facts"]]
    return state


def test_a_backtest_with_its_shortcuts_does_what_one_without_them_does(
    momentum_project: ProjectCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _day(tmp_path / "data")
    report = load(momentum_project)
    fast = run_backtest(report, tmp_path / "data", out_dir=tmp_path / "fast", html=False)
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        run_backtest(report, tmp_path / "data", out_dir=tmp_path / "plain", html=False)
    assert fast.summary["total"]["trades"] >= 4  # entries, exits, working orders: the shortcuts had work to skip
    for name in ("summary.json", "trades.csv", "equity.csv"):
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert _events(tmp_path / "fast" / "app.jsonl") == _events(tmp_path / "plain" / "app.jsonl")
    assert _state(tmp_path / "fast" / "state.db") == _state(tmp_path / "plain" / "state.db")


def test_a_record_given_as_its_encoder_is_encoded_only_when_written_or_read(tmp_path: Path) -> None:
    from engine.core.store import StateStore

    store = StateStore(tmp_path / "state.db")
    store.hold_commits(3)
    encoded: list[int] = []

    def record(n: int) -> bytes:
        encoded.append(n)
        return marshal.dumps({"tick": n})

    at = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    for n in range(5):
        with store.transaction():
            store.save_last_facts([("tick", at + timedelta(minutes=n), functools.partial(record, n))])
    assert encoded == [2]  # the third transaction committed: only its record was written
    found = store.last_facts("tick")
    assert found is not None and marshal.loads(found[1]) == {"tick": 4} and found[0] == at + timedelta(minutes=4)
    store.last_facts("tick")
    assert encoded == [2, 4]  # read twice, encoded once
    store.close()
    assert encoded == [2, 4]
    reopened = StateStore(tmp_path / "state.db")
    found = reopened.last_facts("tick")
    assert found is not None and marshal.loads(found[1]) == {"tick": 4}
    reopened.close()
