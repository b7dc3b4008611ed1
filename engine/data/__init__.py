"""Market data on disk: the folder format the backtest reads and `run --record` writes (docs/data.md).

Modules, lightest first, so a command imports only what it uses:
- `records`: the typed rows (`Bar`, `Quote`), the column sets and the symbol <-> file name mapping (stdlib only);
- `files`: reading one symbol's file strictly and writing (appending) to it (imports pyarrow);
- `dataset`: `DataSet`, a folder read whole and replayed as one clock (imports pyarrow);
- `recorder`: `Recorder`, quotes appended tick by tick, crash-safe (imports pyarrow).

This package imports none of them itself: `python -m engine --validate` must not pay for pyarrow.
"""
