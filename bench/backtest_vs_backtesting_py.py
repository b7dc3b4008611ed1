"""One symbol, one position, the same minute bars: this engine's backtest beside backtesting.py (issue 9, item 7).

Both run a momentum entry with a stop loss, a take profit and a time stop on one symbol over the same synthetic
month of 1-minute bars (bench/backtest.py's data). They do not do the same work: backtesting.py runs one
vectorised strategy function over a DataFrame; this engine runs every tick through its machines, guards,
preflight, kill switch, risk gate, order lifecycle, SQLite and JSONL, as a live run would. The figure is the
ratio of bar-events a second, measured in one run. backtesting.py is not a dependency of the project: install it
into the venv to measure (`.venv/bin/pip install backtesting`); without it only our side is printed.

    .venv/bin/python bench/backtest_vs_backtesting_py.py [--days 21]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from backtest import bench, ticker, write_data  # noqa: E402

from engine.data.files import read_bars  # noqa: E402


def backtesting_py(days: int) -> float | None:
    """Bar-events a second for backtesting.py on the same bars, or None when it is not installed."""
    try:
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]  # no type hints unless pandas-stubs is installed
        from backtesting import Backtest, Strategy  # type: ignore[import-not-found, import-untyped, unused-ignore]  # optional
    except ImportError:
        return None

    with tempfile.TemporaryDirectory() as tmp:
        symbol = ticker(0)
        write_data(Path(tmp), [symbol], days)
        bars = read_bars(Path(tmp), symbol)
    frame = pd.DataFrame(
        {"Open": [b.open for b in bars], "High": [b.high for b in bars], "Low": [b.low for b in bars],
         "Close": [b.close for b in bars], "Volume": [b.volume for b in bars]},
        index=pd.DatetimeIndex([b.timestamp for b in bars]),
    )  # fmt: skip

    class Momentum(Strategy):  # the shipped placeholder: up min_move_pct over lookback bars, last bar up
        lookback, min_move_pct, stop_pct, take_pct, time_stop = 12, 0.05, 0.5, 1.0, 25

        def init(self) -> None:
            self.entered = 0

        def next(self) -> None:
            close = self.data.Close
            if self.position:
                if len(self.data) - self.entered >= self.time_stop:
                    self.position.close()
                return
            moved = len(close) > self.lookback and (close[-1] / close[-1 - self.lookback] - 1) * 100 >= self.min_move_pct
            if moved and close[-1] > close[-2]:
                price = close[-1]
                self.buy(size=1, sl=price * (1 - self.stop_pct / 100), tp=price * (1 + self.take_pct / 100))
                self.entered = len(self.data)

    started = time.perf_counter()
    Backtest(frame, Momentum, cash=100_000, commission=0.0).run()
    return len(bars) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    args = parser.parse_args()
    ours = bench(1, args.days, profile=False)["bar_events_per_s"]
    theirs = backtesting_py(args.days)
    print(f"{'engine':>16} {'bar-events/s':>14}")
    print(f"{'trading-hydra':>16} {ours:>14,.0f}")
    if theirs is None:
        print("backtesting.py is not installed: .venv/bin/pip install backtesting")
        return
    print(f"{'backtesting.py':>16} {theirs:>14,.0f}")
    print(f"ratio (trading-hydra / backtesting.py): {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
