"""Brokers: the engine sees the world only through `Broker.snapshot()` and sends orders through the same object.

`sim` is an in-process simulated exchange (the default), `alpaca` the adapter over alpaca-py, and the
emulator puts the simulated exchange behind Alpaca's REST API so the adapter is tested through the real SDK.
"""
