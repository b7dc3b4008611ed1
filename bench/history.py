"""Tick cost against the history in the state file: a fresh file vs one holding 50,000 past orders.

Every per-tick read is an index range over open orders, today's orders or open halts, so the history should
not show in the tick. Runs the shipped config (3 bots) on the simulated exchange for a number of ticks from
the open, on a fresh state file and on one seeded with past orders (ended, spread over the past year), and
prints the median tick of each, their ratio, and the SQLite statements per tick. Real SQLite and JSONL in a
temporary folder; no network.

    .venv/bin/python bench/history.py [--orders 50000] [--ticks 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.brokers.factory import build_sim  # noqa: E402
from engine.core.clock import ManualClock  # noqa: E402
from engine.core.journal import Journal  # noqa: E402
from engine.core.store import OrderRow, StateStore  # noqa: E402
from engine.trading.engine import Engine, freeze_long_lived  # noqa: E402
from engine.validate import load_valid  # noqa: E402

OPEN = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
ENDED = ("filled", "canceled", "expired", "rejected", "not_sent")


def seed_history(store: StateStore, orders: int) -> None:
    bots = ("mom_AAPL", "opt_core", "crypto_core")
    with store.transaction():
        for i in range(orders):
            at = OPEN - timedelta(days=1 + i % 365, minutes=i % 390)
            day: date = at.date()
            bot = bots[i % len(bots)]
            store.add_order(
                OrderRow(
                    f"{bot}-{day:%Y%m%d}-h{i:06d}", bot, day, "entry" if i % 2 else "exit", "AAPL", "buy", 1.0, None,
                    "market", None, "day", ENDED[i % len(ENDED)], f"b{i}", 1.0, 100.0, "history", None, at, at,
                )
            )


def run(ticks: int, orders: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report = load_valid(ROOT / "config", ROOT / "machines", ROOT / "rules")
        assert report.config is not None and report.book is not None
        clock = ManualClock(OPEN)
        broker, _exchange = build_sim(report.config.settings, clock)
        store = StateStore(folder / "state.db")
        seed_history(store, orders)
        engine = Engine(report.config, report.book, report.machines, broker, store, Journal(folder / "app.jsonl", clock), clock)
        freeze_long_lived()  # as `python -m engine run` does
        durations, queries = [], []
        for _ in range(ticks):
            tick = engine.tick()
            durations.append(tick.duration_ms)
            queries.append(tick.queries)
            clock.advance(report.config.settings.runner.loop_interval_seconds)
        assert engine.system.state == "armed", engine.system.state
        return {"median_ms": statistics.median(durations), "queries": statistics.median(queries), "orders": engine.orders.sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    fresh = run(args.ticks, 0)
    seeded = run(args.ticks, args.orders)
    print(f"{'state file':>26} {'median ms':>10} {'queries/tick':>13} {'orders sent':>12}")
    print(f"{'fresh':>26} {fresh['median_ms']:>10.3f} {fresh['queries']:>13.0f} {fresh['orders']:>12.0f}")
    label = f"{args.orders:,} past orders"
    print(f"{label:>26} {seeded['median_ms']:>10.3f} {seeded['queries']:>13.0f} {seeded['orders']:>12.0f}")
    print(f"ratio (history / fresh): {seeded['median_ms'] / fresh['median_ms']:.2f}x")


if __name__ == "__main__":
    main()
