"""The loop harness's fixtures (a rig on the simulated exchange), for the operator's commands."""

from tests.trading.conftest import clock, rig  # noqa: F401
