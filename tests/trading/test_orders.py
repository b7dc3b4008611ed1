"""The order path killed between two of its writes (engine/trading/orders.py), in process: the emulator behind the
real alpaca-py clients, real SQLite, a manual clock. What one step of the order path means must commit in one
transaction, or a kill between the writes leaves a state no later run repairs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Fault
from engine.core import failpoints
from engine.core.store import StateStore
from tests.brokers.conftest import OPEN
from tests.trading.test_order_faults import Desk, open_desk


class Crash(BaseException):
    """The process dies here (kill -9, power loss): nothing after this point runs, no `except Exception` sees it."""


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with open_desk(Desk, tmp_path, OPEN, timezone.utc) as opened:
        yield opened


def _die_at_the_first_commit_after_the_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arm the crash: the first transaction committed after an order's POST left (`state_committed`) is the
    last thing the process does."""
    posted: list[bool] = []

    def reach(name: str) -> None:
        if name == "before_post":
            posted.append(True)
        elif name == "state_committed" and posted:
            raise Crash(name)

    monkeypatch.setattr(failpoints, "reach", reach)


@pytest.mark.parametrize(
    ("body", "counter"),
    [
        ('{"code":42210000,"message":"qty must be a whole number"}', "rejections"),
        ('{"code":40310000,"message":"insufficient buying power"}', "refused:insufficient_funds"),
    ],
)
def test_a_refusal_and_its_count_survive_a_kill_together(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, body: str, counter: str
) -> None:
    """The broker refuses an entry; the process dies at the first commit after the POST. Whatever that commit
    held, the order's refusal is never on disk without its count: the ExitBot's repeated-rejections anomaly and
    the refusals' pause read the counts, and a refusal missing from them (the two used to commit apart) was one
    the next run never counted."""
    row = desk.intent()
    status = 422 if body.startswith('{"code":422') else 403
    desk.emulator.faults.append(Fault(status=status, body=body, path_prefix="/v2/orders", method="POST"))
    _die_at_the_first_commit_after_the_post(monkeypatch)
    with pytest.raises(Crash):
        desk.orders.send_pending()
    restarted = StateStore(desk.store.path)  # what the next run reads
    try:
        saved = restarted.order(row.client_order_id)
        assert saved is not None
        counted = restarted.counter(row.trading_date, "b1", counter)
        assert (saved.status, counted) in (("pending", 0), ("rejected", 1)), (saved.status, saved.error, counted)
        assert saved.status == "rejected"  # this commit is the refusal's: the kill came after it
    finally:
        restarted.close()
