"""The JSONL events that other tools read by name: built here and nowhere else, so their fields stay the same.

`transition` (machine, bot, from, to, trigger, guards) and `halt` (reason, conditions, flatten, until, by)
are contracts: jq one-liners in the README and the operator's tools select on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine.core.journal import Journal


def log_transition(
    journal: Journal, *, machine: str, bot: str, source: str, dest: str, trigger: str, guards: Iterable[str]
) -> None:
    journal.log("transition", machine=machine, bot=bot, trigger=trigger, guards=list(guards), **{"from": source, "to": dest})


def log_halt(
    journal: Journal,
    *,
    scope: str,
    reason: str,
    conditions: Iterable[str],
    flatten: bool,
    until: datetime | None,
    by: str,
) -> None:
    journal.log("halt", scope=scope, reason=reason, conditions=list(conditions), flatten=flatten, until=until, by=by)


def log_resume(journal: Journal, *, scope: str, by: str, reason: str | None = None, ended: int | None = None) -> None:
    fields: dict[str, object] = {"scope": scope, "by": by}
    if reason is not None:
        fields["reason"] = reason
    if ended is not None:
        fields["ended"] = ended
    journal.log("resume", **fields)
