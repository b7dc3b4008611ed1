"""What the simulated exchange costs: saving it each tick, pricing an option chain, its share of a simulated day.

1. The default simulated day (`python -m engine run`'s session, from the project's config/, machines/ and
   rules/, state and log in a temporary folder), with every call into the exchange and every save timed.
2. One save (the engine's `on_persist`) on the exchange that day left, inside a transaction as the engine calls
   it: when only the time moved (the first call of most ticks), when nothing moved (the second call of most
   ticks), when the account changed; and the full save every call that the hook did before (`json.dumps` of
   `to_state`, whose `to_state` also went through `dataclasses.asdict` then, so it was slower still).
3. Option chains: a chain a minute apart (each one priced afresh), and one contract priced alone.

    .venv/bin/python bench/sim_exchange.py [--calls 2000] [--chains 300] [--no-day]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.brokers.sim.api import SimAPI  # noqa: E402
from engine.brokers.sim.exchange import SimExchange  # noqa: E402
from engine.brokers.sim.persist import SimPersistence  # noqa: E402
from engine.core.clock import ManualClock  # noqa: E402
from engine.core.store import StateStore  # noqa: E402
from engine.trading.runner import RunOptions, open_session, run  # noqa: E402
from engine.validate import load_valid  # noqa: E402

OPEN = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("America/New_York"))


class Stopwatch:
    """Time spent inside the wrapped function, by operation (SimAPI._call's first argument) or as one."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)

    def wrap(self, function: Callable[..., Any], by_operation: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                key = str(args[1]) if by_operation else function.__qualname__
                self.seconds[key] += time.perf_counter() - started
                self.calls[key] += 1

        return timed


def simulated_day(folder: Path) -> tuple[dict[str, Any], Any]:
    """The default day as `python -m engine run` runs it, with the exchange's own time measured."""
    report = load_valid(ROOT / "config", ROOT / "machines", ROOT / "rules")
    options = RunOptions(state_db=folder / "state.db", log=folder / "app.jsonl", start=OPEN)
    api_watch, save_watch = Stopwatch(), Stopwatch()
    original_call, original_save = SimAPI._call, SimPersistence.__call__
    SimAPI._call = api_watch.wrap(original_call, by_operation=True)  # type: ignore[method-assign]
    SimPersistence.__call__ = save_watch.wrap(original_save)  # type: ignore[method-assign]
    try:
        session = open_session(report, options, {}, OPEN)
        started = time.perf_counter()
        summary = run(session, options)
        wall = time.perf_counter() - started
    finally:
        SimAPI._call, SimPersistence.__call__ = original_call, original_save  # type: ignore[method-assign]
    exchange, saves = sum(api_watch.seconds.values()), sum(save_watch.seconds.values())
    figures = {
        "ticks": summary["ticks"],
        "wall_s": wall,
        "exchange_s": exchange,
        "exchange_calls": sum(api_watch.calls.values()),
        "save_s": saves,
        "save_calls": sum(save_watch.calls.values()),
        "sim_s": exchange + saves,
        "share": (exchange + saves) / wall,
        "orders": summary["orders"],
        "fills": summary["fills"],
        "equity": summary["equity"],
        "by_operation": sorted(
            ((op, api_watch.seconds[op], api_watch.calls[op]) for op in api_watch.seconds), key=lambda r: -r[1]
        ),
    }
    return figures, session


def per_call_us(store: StateStore, call: Callable[[], None], before: Callable[[], None], calls: int) -> float:
    """Median microseconds of `call` in its own transaction (as the engine's second call is), `before` untimed."""
    samples = []
    for _ in range(calls):
        before()
        started = time.perf_counter()
        with store.transaction():
            call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def saving(exchange: SimExchange, folder: Path, calls: int) -> dict[str, float]:
    store = StateStore(folder / "save.db")
    clock = exchange.clock
    assert isinstance(clock, ManualClock)
    save = SimPersistence(exchange, store)

    def tick() -> None:
        clock.advance(5)

    def trade() -> None:
        clock.advance(5)
        exchange.changed()

    def full_save() -> None:
        store.set_meta("sim_exchange_full", json.dumps(exchange.to_state()))

    save()
    figures = {
        "state_bytes": float(len(json.dumps(exchange.to_state()))),
        "empty_transaction_us": per_call_us(store, lambda: None, lambda: None, calls),
        "full_save_us": per_call_us(store, full_save, tick, calls),
        "time_moved_us": per_call_us(store, save, tick, calls),
        "nothing_moved_us": per_call_us(store, save, lambda: None, calls),
        "account_changed_us": per_call_us(store, save, trade, calls),
    }
    store.close()
    return figures


def chains(count: int) -> dict[str, float]:
    clock = ManualClock(OPEN)
    exchange = SimExchange(clock)
    size = len(exchange.option_chain("SPY", 7, 45))
    started = time.perf_counter()
    for _ in range(count):
        clock.advance(60)
        exchange.option_chain("SPY", 7, 45)
    chain_us = (time.perf_counter() - started) / count * 1e6
    symbol = exchange.option_chain("SPY", 7, 45)[size // 2].symbol
    started = time.perf_counter()
    for _ in range(count):
        clock.advance(60)
        exchange.quote(symbol)
    alone_us = (time.perf_counter() - started) / count * 1e6
    return {"contracts": size, "chain_us": chain_us, "per_contract_us": chain_us / size, "alone_us": alone_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed saves per case")
    parser.add_argument("--chains", type=int, default=300, help="chains priced")
    parser.add_argument("--no-day", action="store_true", help="skip the simulated day (the saves then use a fresh exchange)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exchange = SimExchange(ManualClock(OPEN))
        if not args.no_day:
            day, session = simulated_day(folder)
            exchange = session.exchange
            print(
                f"simulated day: {day['ticks']} ticks in {day['wall_s']:.2f} s; the exchange {day['sim_s']:.3f} s "
                f"= {day['share']:.1%} (calls {day['exchange_s']:.3f} s over {day['exchange_calls']}, "
                f"saves {day['save_s']:.3f} s over {day['save_calls']}); {day['orders']} orders, {day['fills']} fills, "
                f"equity {day['equity']}"
            )
            for operation, seconds, calls in day["by_operation"]:
                print(f"  {operation:<14} {seconds * 1000:7.1f} ms over {calls:>5} calls, {seconds / calls * 1e6:6.1f} us each")
            session.journal.close()
            session.store.close()
        s = saving(exchange, folder, args.calls)
        print(f"save per call, median over {args.calls}, inside its own transaction (state {s['state_bytes']:.0f} bytes):")
        print(f"  empty transaction (baseline)        {s['empty_transaction_us']:8.1f} us")
        print(f"  before: full save every call        {s['full_save_us']:8.1f} us")
        print(f"  after: only the time moved          {s['time_moved_us']:8.1f} us")
        print(f"  after: nothing moved                {s['nothing_moved_us']:8.1f} us")
        print(f"  after: the account changed          {s['account_changed_us']:8.1f} us")
    c = chains(args.chains)
    print(
        f"option chain: {c['chain_us']:.0f} us per chain of {c['contracts']} contracts "
        f"({c['per_contract_us']:.2f} us a contract); one contract alone {c['alone_us']:.0f} us"
    )


if __name__ == "__main__":
    main()
