"""Trading Hydra: a fail-closed trading engine whose bots are finite state machines declared in YAML."""

__version__ = "0.1.0"
