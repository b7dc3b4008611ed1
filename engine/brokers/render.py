"""A snapshot as one JSON object, for `python -m engine snapshot`: money as numbers, times ISO 8601 with offset,
a value the broker did not send (an option contract's missing greeks) as null."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime
from typing import Any

from engine.brokers.base import Snapshot


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def snapshot_json(snapshot: Snapshot) -> str:
    return json.dumps(
        {
            "taken_at": snapshot.taken_at.isoformat(),
            "account": _plain(snapshot.account),
            "positions": _plain(snapshot.positions),
            "open_orders": _plain(snapshot.open_orders),
            "quotes": _plain(dict(snapshot.quotes)),
            "option_chains": _plain(dict(snapshot.option_chains)),
            "clock": _plain(snapshot.clock),
            "broker_requests": snapshot.broker_requests,
            "missing_quotes": list(snapshot.missing_quotes),
            "errors": [
                {
                    "operation": e.operation,
                    "kind": e.kind,
                    "reason": e.reason,
                    "status": e.status,
                    "code": e.code,
                    "message": e.message,
                }
                for e in snapshot.errors
            ],
        },
        indent=2,
    )
