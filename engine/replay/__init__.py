"""Replay and backtest (issue 9, items 4-6): the same `Engine.tick()`, machines, guards and order path, on the
simulated exchange fed by recorded market data instead of synthetic paths.

Modules, in the order data flows:
- `fills`: `FillModel`, how orders fill on recorded data (documented in docs/backtest.md);
- `feed`: `FramePrices`, the exchange's price source over a `DataSet`'s frames, one frame at a time;
- `exchange`: `ReplayExchange`, the simulator's order handling and Alpaca's rules with the fill model and the
  exchange calendar's hours;
- `backtest`: `run_backtest`, the engine ticked over the data on a `ManualClock`;
- `report`: what a run leaves in its folder (summary.json, trades.csv, equity.csv, report.html).
"""
