"""Entry signals: the one place where a user's own edge goes, as a Python function.

A signal is declared in rules/signals.yaml (name, description, parameters with defaults, the bot kinds that
may use it) and implemented here under the `implementation` name. It receives the recent prices of the bot's
symbol, oldest first, one per tick of consecutive ticks (a gap between ticks or a stale quote starts them again),
and the bot's parameters (defaults filled in), and answers one question: enter now? It must be pure and fast; it
never sees the broker.

To add your own: write a function with the same signature, add it to SIGNALS, declare it in
rules/signals.yaml (with `history:`, how many ticks back it reads, unless it reads `lookback_ticks`: the
prices it is handed are that many and two more), set `signal.mode` in bots.yaml, then run
`python -m engine --validate`.

If it raises, or answers anything but True or False, its bot halts on its own (`signal_error`, the exception in
the halt's reason) until `python -m engine resume`; the kill switch closes what the bot holds, and the other bots
trade on. So does one that changes the engine's process (a signal handler, sys.stdout, the working directory,
warnings made errors, a lower recursion limit; a thread left running, a fork): the engine sets back what it can and
says what changed (engine/strategy/process_state.py). What it prints is logged (`signal_output` events in
logs/app.jsonl), not shown. Backtest it first (`python -m engine backtest`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

SignalFunction = Callable[[Sequence[float], Mapping[str, Any]], bool]


def momentum_breakout(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    """Placeholder: the price rose at least `min_move_pct` percent over the last `lookback_ticks` ticks,
    and the last tick was up. Deliberately simple; it exists to exercise the machines, not to make money."""
    lookback = int(params["lookback_ticks"])
    if lookback < 1:  # 0 would compare the price with itself, a negative count read an old price as the start
        raise ValueError(f"lookback_ticks must be 1 or more, not {lookback}")
    if len(prices) <= lookback:
        return False
    start, last = prices[-1 - lookback], prices[-1]
    if start <= 0:
        return False
    move_pct = (last - start) / start * 100
    return move_pct >= float(params["min_move_pct"]) and prices[-1] > prices[-2]


SIGNALS: dict[str, SignalFunction] = {
    "momentum_breakout": momentum_breakout,
}
