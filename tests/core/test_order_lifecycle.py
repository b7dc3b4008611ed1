"""The order lifecycle table: every Alpaca status has a row, ended orders never move, illegal moves are refused."""

from __future__ import annotations

import pytest

from engine.core import order_lifecycle as lifecycle

ALPACA_STATUSES = {
    "new", "partially_filled", "filled", "done_for_day", "canceled", "expired", "replaced", "pending_cancel",
    "pending_replace", "pending_review", "accepted", "pending_new", "accepted_for_bidding", "stopped", "rejected",
    "suspended", "calculated", "held",
}  # fmt: skip


def test_every_alpaca_status_and_ours_has_a_row() -> None:
    assert ALPACA_STATUSES | {"pending", "unknown", "not_sent"} == set(lifecycle.TABLE)


def test_the_groups_partition_the_statuses() -> None:
    assert set(lifecycle.TABLE) == lifecycle.OPEN | lifecycle.ENDED
    assert not lifecycle.OPEN & lifecycle.ENDED
    assert "suspended" in lifecycle.WORKING and "replaced" in lifecycle.ENDED


def test_every_edge_has_a_reason_and_leads_to_a_known_status() -> None:
    for source, moves in lifecycle.TABLE.items():
        for dest, reason in moves.items():
            assert dest in lifecycle.TABLE and reason.strip(), (source, dest)


@pytest.mark.parametrize("ended", sorted(lifecycle.ENDED - {"not_sent"}))
def test_an_ended_order_never_moves(ended: str) -> None:
    for dest in lifecycle.TABLE:
        if dest != ended:
            with pytest.raises(lifecycle.IllegalOrderMove):
                lifecycle.check_move("c-1", ended, dest)


def test_legal_moves_give_their_reason_and_a_repeat_is_no_move() -> None:
    assert lifecycle.check_move("c-1", "pending", "new")
    assert lifecycle.check_move("c-1", "new", "filled")
    assert lifecycle.check_move("c-1", "new", "new") is None


def test_the_broker_cannot_send_an_order_back_to_one_of_our_statuses_or_an_unknown_one() -> None:
    with pytest.raises(lifecycle.IllegalOrderMove, match="'new' cannot become 'pending'"):
        lifecycle.check_move("c-1", "new", "pending")
    with pytest.raises(lifecycle.IllegalOrderMove):
        lifecycle.check_move("c-1", "new", "teleported")


def test_a_cancel_is_not_asked_of_an_order_whose_cancel_or_replace_is_pending() -> None:
    assert {"pending_cancel", "pending_replace"} == lifecycle.NO_CANCEL


def test_an_order_we_concluded_was_never_sent_is_adopted_when_the_broker_shows_it() -> None:
    # a POST that landed late or a lookup that lagged: the broker's account counts, never back to one of ours
    for dest in lifecycle.BROKER:
        assert lifecycle.check_move("c-1", "not_sent", dest)
    for ours in ("pending", "unknown"):
        with pytest.raises(lifecycle.IllegalOrderMove):
            lifecycle.check_move("c-1", "not_sent", ours)
