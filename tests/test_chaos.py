"""tools/chaos.py, the seeded chaos driver, kept working: a few fixed seeds run briefly with every invariant
holding, a seed replays the same faults, and its checks fail what they must. The big runs are by hand
(docs/chaos.md: hundreds of seeds, whole hours of ticks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_tool

chaos: Any = load_tool("chaos")


@pytest.mark.parametrize("seed", [3, 20, 26])
def test_fixed_seeds_keep_every_invariant(tmp_path: Path, seed: int) -> None:
    """Three seeds that between them restart, crash mid-tick, throw stray positions, fee shortfalls, vanishing
    orders, refusals and clock steps at the engine (about a second each at this length)."""
    run = chaos.run_seed(seed, 250, fault_rate=0.2, keep=tmp_path)
    assert run.violations == [], chaos.describe(run)
    assert len(run.history) > 20  # the faults did come


def test_a_seed_replays_the_same_faults(tmp_path: Path) -> None:
    """The schedule is the seed's alone: `--seed S --ticks N` reproduces what a big run reported."""
    first = chaos.run_seed(5, 120, fault_rate=0.3, keep=tmp_path / "a")
    again = chaos.run_seed(5, 120, fault_rate=0.3, keep=tmp_path / "b")
    assert first.history == again.history and first.history
    assert _events(tmp_path / "a" / "seed_5" / "app.jsonl") == _events(tmp_path / "b" / "seed_5" / "app.jsonl")


def _events(log: Path) -> list[dict[str, Any]]:
    """The log's events without what a wall clock measured (a tick's duration)."""
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for event in events:
        event.pop("duration_ms", None)
    return events


def test_a_position_no_bot_owns_and_no_halt_is_a_violation(tmp_path: Path) -> None:
    """The position check fails a broker position the bots do not own while the system trades on, unhalted: here
    the stray is put at the broker and the engine told nothing (its reads are not taken)."""
    run = chaos.Chaos(1, 10, tmp_path, fault_rate=0.0)
    try:
        for tick in range(6):
            run.tick_no = tick
            run.one_tick()
            run.clock.advance(run.interval)
        run.exchange.set_position("MSFT", 2.0, 400.0)
        for tick in range(6, 6 + chaos.SETTLE_TICKS):
            run.tick_no = tick
            run.check_positions()  # as if ticks went by and nothing halted
    finally:
        run.engine.store.close()
        run.outside.close()
    assert any("position MSFT: broker 2, bots own 0" in v for v in run.violations), run.violations


def test_the_command_line_says_the_seed_and_exits_1_on_a_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A violation prints the seed, the tick, the fault history and the command that replays it, and exits 1."""

    def broken(seed: int, ticks: int, **_options: Any) -> Any:
        run = chaos.Chaos(seed, ticks, tmp_path / "run", fault_rate=0.0)
        run.outside.close()
        run.engine.store.close()
        run.history.append("0: the next 1 order(s) refused")
        run.violations.append("tick 0 (...): entry x sent while the system is halted")
        return run

    (tmp_path / "run").mkdir()
    monkeypatch.setattr(chaos, "run_seed", broken)
    assert chaos.main(["--seed", "7", "--ticks", "9"]) == 1
    out = capsys.readouterr().out
    assert (
        "seed 7: tick 0" in out and "python tools/chaos.py --seed 7 --ticks 9" in out and "0: the next 1 order(s) refused" in out
    )
