"""The life of an order as a table: every status, the statuses it may move to, and why each move happens.

Two kinds of status share one table. Ours (`pending`, `unknown`, `not_sent`) describe an intent before the
broker has confirmed it; the rest are Alpaca's (reference/alpaca-api.md, "Order statuses"). A move the table
does not list is refused with `IllegalOrderMove`: the broker told us something that cannot happen to an
order in that state, and the engine halts rather than guess (fail closed).

Groups the rest of the engine reads, all derived from the table so there is one definition of each:
- LOCAL: intents the broker has not confirmed (sent only after a lookup by client_order_id);
- WORKING: at the broker and not done; it may still fill, so it counts as open and is cancelled on a halt;
- OPEN: LOCAL plus WORKING (a bot with an open order waits for it);
- ENDED: nothing more will happen to it. One exception: `not_sent` is our conclusion, and the broker may yet
  show the order (a POST that landed late, a lookup that lagged); then it is adopted (see _from_not_sent).
"""

from __future__ import annotations

from collections.abc import Mapping

# Statuses at which nothing more will happen to the order.
_ENDED = ("filled", "canceled", "expired", "rejected", "replaced", "not_sent")

# Alpaca's statuses at which the order may still fill or change.
_WORKING_AT_BROKER = (
    "new",
    "accepted",
    "pending_new",
    "accepted_for_bidding",
    "partially_filled",
    "pending_cancel",
    "pending_replace",
    "pending_review",
    "held",
    "calculated",
    "stopped",
    "suspended",
    "done_for_day",
)


def _from_working(status: str) -> dict[str, str]:
    """Where an order the broker is working may go next: any broker status (Alpaca reports the latest
    status only, so intermediate ones may be skipped), never back to one of ours."""
    moves = {other: "the broker reports the order's progress" for other in _WORKING_AT_BROKER if other != status}
    moves.update(
        filled="the rest of the order filled",
        canceled="the cancel took effect (ours, the broker's, or the day's end for a day order)",
        expired="a day or ioc order ran out of time",
        rejected="the broker refused it after accepting it",
        replaced="the broker replaced it with another order (replaced_by)",
    )
    return moves


def _from_local(status: str) -> dict[str, str]:
    moves = {broker: "the broker confirmed the order" for broker in _WORKING_AT_BROKER}
    moves.update(
        filled="the broker confirmed the order, already filled",
        canceled="the broker confirmed the order, already cancelled",
        expired="the broker confirmed the order, already expired",
        replaced="the broker confirmed the order, already replaced by another (followed to it: replaced_by)",
        rejected="the broker refused the order",
        not_sent="lookups by client_order_id proved the broker never got it",
    )
    if status == "pending":
        moves["unknown"] = "the send failed and the lookup could not tell whether the broker has it"
    else:
        moves["pending"] = "proved never sent and still recent: sent again with the same client_order_id"
    return moves


def _from_not_sent() -> dict[str, str]:
    """`not_sent` is our conclusion from lookups that answered 404, not the broker's word that the order is done:
    a POST that timed out may still land, or a lookup may not find an order yet. When the broker later shows the
    order, it is the broker's account that counts, so the order is adopted (its fills owned), never ignored."""
    shown = "the broker showed the order after all (lookups had not found it)"
    return {status: shown for status in (*_WORKING_AT_BROKER, "filled", "canceled", "expired", "rejected", "replaced")}


TABLE: Mapping[str, Mapping[str, str]] = {
    "pending": _from_local("pending"),
    "unknown": _from_local("unknown"),
    **{status: _from_working(status) for status in _WORKING_AT_BROKER},
    **{status: {} for status in _ENDED},
    "not_sent": _from_not_sent(),
}

LOCAL: frozenset[str] = frozenset({"pending", "unknown"})
BROKER: frozenset[str] = frozenset(TABLE) - LOCAL - {"not_sent"}  # every status Alpaca may report
WORKING: frozenset[str] = frozenset(_WORKING_AT_BROKER)
OPEN: frozenset[str] = LOCAL | WORKING
ENDED: frozenset[str] = frozenset(_ENDED)
NO_CANCEL: frozenset[str] = frozenset({"pending_cancel", "pending_replace"})  # a cancel now is refused or redundant


class IllegalOrderMove(Exception):
    """The broker reported a status the order cannot reach from where we last saw it."""

    def __init__(self, client_order_id: str, source: str, dest: str):
        self.client_order_id, self.source, self.dest = client_order_id, source, dest
        super().__init__(f"order {client_order_id}: '{source}' cannot become '{dest}'")


def known(status: str) -> bool:
    return status in TABLE


def check_move(client_order_id: str, source: str, dest: str) -> str | None:
    """The reason for the move, None when the status does not change; IllegalOrderMove when the table
    has no such edge (an unknown status included)."""
    if source == dest:
        return None
    reason = TABLE.get(source, {}).get(dest)
    if reason is None:
        raise IllegalOrderMove(client_order_id, source, dest)
    return reason
