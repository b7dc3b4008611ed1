"""A simulated run (`run --broker sim`) killed with SIGKILL on its order path, then restarted on the same state file.

The simulated exchange lives in the engine's own process and is saved in the same state file as the engine's
records. Whatever the moment of the kill, the next run must find the exchange and the engine agreeing: what the
engine booked (an order's answer, a fill, a position) the exchange holds too, so no restart halts on a difference
the two writes made between them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from typing import Any

import pytest

from engine.brokers.sim.persist import load_state
from engine.core import order_lifecycle as lifecycle
from engine.core.journal import read_events
from engine.core.store import StateStore
from tests.conftest import ProjectCopy
from tests.crash.test_kill_loop import eager
from tests.trading.test_run_command import command, without_keys

START = "2026-11-23T09:40:00-05:00"  # a Monday, ten minutes after the open


def _run(project: ProjectCopy, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = without_keys()
    env.pop("TRADING_HYDRA_FAILPOINT", None)
    if failpoint:
        env["TRADING_HYDRA_FAILPOINT"] = failpoint
    return subprocess.run(
        command(project, "run", "--broker", "sim", "--quiet", *args), capture_output=True, text=True, cwd=project.root,
        env=env, timeout=120,
    )  # fmt: skip


# order_committed: the broker's answer to an order (a send's, a lookup's, a fill read at a tick's sync) is
# committed; the tick's own save of the exchange comes later
@pytest.mark.parametrize("failpoint", ["order_committed:1", "order_committed:2", "order_committed:4", "after_post:1"])
def test_a_killed_sim_run_restarts_with_the_exchange_agreeing(project: ProjectCopy, failpoint: str) -> None:
    eager(project)
    killed = _run(project, "--ticks", "400", "--start", START, failpoint=failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]  # it did reach the point
    again = _run(project, "--ticks", "40")
    assert again.returncode == 0, again.stderr[-2000:]
    store = StateStore(project.root / "s.db")
    try:
        state = _owned_is_what_the_exchange_holds(store)
        # every order the exchange holds is one the engine recorded, in the same state (none lost, none invented)
        rows = {r.client_order_id: r for r in store.orders()}
        for order in state["orders"]:
            cid = order["request"]["client_order_id"]
            assert cid in rows, cid
            assert rows[cid].filled_qty == pytest.approx(order["filled_qty"]), (cid, rows[cid], order)
    finally:
        store.close()
    assert os.path.exists(project.root / "app.jsonl")


def _owned_is_what_the_exchange_holds(store: StateStore) -> dict[str, Any]:
    """No reconciliation halt, and what the bots own, summed by symbol, equal to what the saved simulated exchange
    holds; returns the saved exchange."""
    halts = [h.reason for h in store.halts()]
    assert not [r for r in halts if r.startswith("reconciliation")], halts
    owned: dict[str, float] = {}
    for p in store.positions():
        owned[p.symbol] = owned.get(p.symbol, 0.0) + p.qty
    state = load_state(store)
    assert state is not None
    held = {s: q for s, (q, _avg, _cls) in state["positions"].items() if abs(q) > 1e-9}
    assert {s: q for s, q in owned.items() if abs(q) > 1e-9} == pytest.approx(held), (owned, held)
    return state


POINTS = ["intent_committed", "before_post", "after_post", "order_updated", "order_committed"]


def _check_at_rest(project: ProjectCopy, *, clean: bool) -> None:
    """What must hold whenever the engine is not running: every order row in a status of the lifecycle's table, a
    log every line of which reads (a killed run left no half line that breaks a reader), and, after a run that
    ended by itself, what the bots own equal to what the saved exchange holds, with no reconciliation halt."""
    store = StateStore(project.root / "s.db")
    try:
        assert [(r.client_order_id, r.status) for r in store.orders() if r.status not in lifecycle.TABLE] == []
        read_events(project.root / "app.jsonl")  # raises on a line that is not whole JSON
        if not clean:
            return
        _owned_is_what_the_exchange_holds(store)
    finally:
        store.close()


@pytest.mark.parametrize("seed", [11, 29])
def test_a_sim_run_killed_at_random_points_over_restarts_keeps_its_invariants(project: ProjectCopy, seed: int) -> None:
    """Every bot on (options, crypto and stocks), a seeded choice of kill points and of their hit, several restarts in
    a row: after each, the state at rest holds together (`_check_at_rest`); the last run is not killed."""
    eager(project)
    project.replace("config/bots.yaml", "optionsbot:\n  enabled: false", "optionsbot:\n  enabled: true")
    project.replace("config/bots.yaml", "cryptobot:\n  enabled: false", "cryptobot:\n  enabled: true")
    rng = random.Random(seed)
    start: tuple[str, ...] = ("--start", START)
    for _ in range(5):
        failpoint = f"{rng.choice(POINTS)}:{rng.randint(1, 6)}"
        done = _run(project, "--ticks", "300", *start, failpoint=failpoint)
        assert done.returncode in (0, -signal.SIGKILL), (failpoint, done.stderr[-2000:])
        start = ()
        _check_at_rest(project, clean=done.returncode == 0)
    last = _run(project, "--ticks", "120")
    assert last.returncode == 0, last.stderr[-2000:]
    _check_at_rest(project, clean=True)
