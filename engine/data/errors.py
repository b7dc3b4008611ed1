"""Bad market data, reported like bad config: every problem of every file at once, each at its file and row."""

from __future__ import annotations

from engine.config.errors import ConfigError


class DataError(ConfigError):
    """A data folder, file or set of rows the engine refuses to use; `problems` holds every reason.

    A subclass of `ConfigError` so the command line prints it the same way and exits 2 (invalid input).
    """
