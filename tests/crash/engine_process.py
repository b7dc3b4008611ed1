"""One engine process for the crash tests: the real Engine, the real Alpaca adapter and alpaca-py clients,
pointed at the emulator the test runs, on a ScaledClock shared with it. Runs `--ticks` ticks, or until a
failpoint (TRADING_HYDRA_FAILPOINT, engine/core/failpoints.py) kills it. Ticks are paced at the loop interval
of the shared clock, as `run` paces them in real time: faster would exceed Alpaca's rate limit, as it would live.

    python -m tests.crash.engine_process --project DIR --url URL --start ISO --anchor EPOCH --speed S --ticks N
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from engine.brokers.factory import build_alpaca
from engine.core.journal import Journal
from engine.core.store import StateStore
from engine.trading.engine import Engine
from engine.validate import load_valid
from tests.brokers.conftest import KEY, SECRET
from tests.crash.scaled_clock import ScaledClock


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--anchor", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--ticks", type=int, required=True)
    args = parser.parse_args()
    project = Path(args.project)
    report = load_valid(project / "config", project / "machines", project / "rules")
    assert report.config is not None and report.book is not None
    clock = ScaledClock(datetime.fromisoformat(args.start), args.anchor, args.speed)
    env = {"ALPACA_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_API_BASE_URL": args.url, "ALPACA_DATA_BASE_URL": args.url}
    broker = build_alpaca(report.config.settings, clock, env, live_flag=False)
    store = StateStore(project / "state.db")
    journal = Journal(project / "app.jsonl", clock)
    engine = Engine(report.config, report.book, report.machines, broker, store, journal, clock)
    interval = report.config.settings.runner.loop_interval_seconds
    for _ in range(args.ticks):  # paced like `run` against Alpaca: one tick per loop interval of the shared clock
        started = clock.now()
        engine.tick()
        time.sleep(max(0.0, interval - (clock.now() - started).total_seconds()) / clock.speed)
    journal.close()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
