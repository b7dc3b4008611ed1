"""Backtest speed: bar-events per second for 1, 10 and 100 symbols over a month of 1-minute bars (issue 9, item 7).

A bar-event is one symbol's bar replayed; the engine ticks once per minute of the data, whatever the number of
symbols, so a tick of 10 symbols carries 10 bar-events. The data is synthetic (a random walk per symbol over the
sessions of November 2026, written with engine/data/files.py as Parquet); the config is the shipped one with one
MomentumBot per symbol and the options and crypto bots off. Real SQLite and JSONL in a temporary folder.

For each size it prints the wall time of the ticks (building the engine included, the report not), bar-events a
second, ticks a second, beside them the replay's own cost (the data set's frames stepped through with no engine),
and the time the report took to write (summary, trades, equity and report.html).

    .venv/bin/python bench/backtest.py [--symbols 1 10 100] [--days 21] [--profile 10]

The profile is sorted by own time; BENCH_SORT=cumulative and BENCH_ROWS=45 in the environment change that.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.calendar import market_calendar  # noqa: E402
from engine.data.dataset import DataSet  # noqa: E402
from engine.data.files import write_bars  # noqa: E402
from engine.data.records import Bar  # noqa: E402
from engine.replay.backtest import run_backtest  # noqa: E402
from engine.trading.engine import freeze_long_lived  # noqa: E402
from engine.validate import load_valid  # noqa: E402

FIRST_DAY = date(2026, 11, 2)


def ticker(i: int) -> str:
    return "B" + "".join(chr(ord("A") + int(d)) for d in f"{i:04d}")


def write_project(folder: Path, symbols: list[str]) -> None:
    for name in ("config", "machines", "rules"):
        shutil.copytree(ROOT / name, folder / name)
    blocks = "".join(
        f"  - bot_id: mom_{symbol}\n    enabled: true\n    ticker: {symbol}\n"
        '    session: {trade_start: "06:35", trade_end: "09:30", manage_until: "12:55"}\n'
        "    risk: {max_trades_per_day: 3, max_concurrent_positions: 1}\n"
        "    exits: {stop_loss_pct: 0.5, take_profit_pct: 1.0, time_stop_minutes: 25}\n"
        '    signal: {mode: "placeholder_momentum_v1", params: {}}\n'
        for symbol in symbols
    )
    path = folder / "config" / "bots.yaml"
    # no minimum share: past 20 bots lifted to the shipped 5 % would hold more than the daily risk (refused)
    text = path.read_text().replace("per_bot_min_pct_of_daily_risk: 5", "per_bot_min_pct_of_daily_risk: 0")
    start, end = text.index("momentum_bots:\n"), text.index("optionsbot:")
    text = text[:start] + "momentum_bots:\n" + blocks + "\n" + text[end:]
    text = text.replace("optionsbot:\n  enabled: true", "optionsbot:\n  enabled: false")
    path.write_text(text.replace("cryptobot:\n  enabled: true", "cryptobot:\n  enabled: false"))


def write_data(folder: Path, symbols: list[str], days: int) -> int:
    sessions = market_calendar().sessions(FIRST_DAY, FIRST_DAY + timedelta(days=days * 2))[:days]
    rows = 0
    for n, symbol in enumerate(symbols):
        rng = random.Random(n)
        price = rng.uniform(20, 400)
        bars = []
        for session in sessions:
            at = session.open
            while at < session.close:
                close = round(price * (1 + rng.gauss(0, 0.0012)), 2)
                bars.append(
                    Bar(at, price, max(price, close) * 1.0005, min(price, close) * 0.9995, close, float(rng.randint(100, 5000)))
                )
                price = close
                at += timedelta(minutes=1)
        write_bars(folder, symbol, bars, fsync=False)
        rows += len(bars)
    return rows


def bench(count: int, days: int, profile: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        symbols = [ticker(i) for i in range(count)]
        write_project(folder, symbols)
        rows = write_data(folder / "data", symbols, days)
        report = load_valid(folder / "config", folder / "machines", folder / "rules")
        data = DataSet.open(folder / "data")
        started = time.perf_counter()
        frames = sum(1 for _ in data.frames(bars_known_after=timedelta(minutes=1)))
        replay_only = time.perf_counter() - started
        freeze_long_lived()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        called = time.perf_counter()
        result = run_backtest(report, data, out_dir=folder / "out")
        report_s = time.perf_counter() - called - result.wall_seconds  # the report's files, report.html included
        if profiler:
            profiler.disable()
            text = io.StringIO()
            order, rows = os.environ.get("BENCH_SORT", "tottime"), int(os.environ.get("BENCH_ROWS", "18"))
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(rows)
            print(text.getvalue())
        wall = result.wall_seconds
        return {
            "symbols": count,
            "bars": rows,
            "ticks": result.frames,
            "wall_s": wall,
            "bar_events_per_s": result.bar_events / wall,
            "ticks_per_s": result.frames / wall,
            "frames_only_per_s": frames / replay_only,
            "trades": result.summary["total"]["trades"],
            "report_s": report_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--days", type=int, default=21, help="sessions of 1-minute bars (21: a month)")
    parser.add_argument("--profile", type=int, default=None, help="print a profile of the run with this many symbols")
    args = parser.parse_args()
    header = ("symbols", "bars", "ticks", "wall s", "bar-events/s", "ticks/s", "frames alone/s", "trades", "report s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (7, 9, 6, 8, 13, 8, 15, 6, 8), strict=True)))
    for count in args.symbols:
        r = bench(count, args.days, args.profile == count)
        print(
            f"{r['symbols']:>7} {r['bars']:>9} {r['ticks']:>6} {r['wall_s']:>8.2f} {r['bar_events_per_s']:>13,.0f} "
            f"{r['ticks_per_s']:>8,.0f} {r['frames_only_per_s']:>15,.0f} {r['trades']:>6} {r['report_s']:>8.2f}"
        )


if __name__ == "__main__":
    main()
