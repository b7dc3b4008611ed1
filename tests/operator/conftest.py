"""The loop harness's fixtures (a rig on the simulated exchange; `shared`: on examples/shared-ticker, two bots on
AAPL), for the operator's commands."""

from tests.trading.conftest import clock, rig  # noqa: F401
from tests.trading.test_shared_ticker import shared  # noqa: F401
