"""Preflight at run time: every check of rules/preflight.yaml answered for every bot, each as rarely as it can be.

A check is put in one of three tiers by the facts it reads (`PreflightTiers`):
- shared: only system-wide facts. One answer per tick for every bot of a kind.
- gate: those and the risk gate's running counts (`orders_last_minute`, `capital_room_usd`), which differ from
  one bot to the next only after an entry is granted. One answer per pair of counts within a tick.
- own: anything of the bot's. Every bot; all of them in one generated call when they all hold (most bots,
  most ticks), one by one otherwise, which says which failed.

A check that cannot be evaluated fails (fail closed). `TickPreflight.raised` says whether the last answer
included such a failure, so that the engine looks for the errors to log only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.rules.book import CompiledRules

Check = Callable[[Mapping[str, Any]], bool]
Checks = tuple[tuple[str, Check], ...]


def failing(checks: Sequence[tuple[str, Check]], facts: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    """The names of the checks that do not hold, and whether any of them raised (it then fails: fail closed)."""
    failed = []
    raised = False
    for name, check in checks:
        try:
            ok = check(facts)
        except Exception:  # fails closed; its error is looked for and logged by the engine
            ok, raised = False, True
        if not ok:
            failed.append(name)
    return tuple(failed), raised


@dataclass(frozen=True)
class PreflightTiers:
    """One kind's checks split by tier, in the rules' order, built once at start."""

    order: tuple[str, ...]
    shared: Checks
    gate: Checks
    own: Checks
    own_all_pass: Check  # "every own check holds", generated as one function

    @classmethod
    def split(cls, compiled: CompiledRules, shared_facts: Iterable[str], gate_facts: Iterable[str]) -> PreflightTiers:
        shared_set, gate_set = frozenset(shared_facts), frozenset(gate_facts)
        reads = compiled.preflight_facts
        checks = tuple(compiled.preflight.items())
        shared = tuple((n, c) for n, c in checks if reads[n] <= shared_set)
        gate = tuple((n, c) for n, c in checks if reads[n] <= gate_set and not reads[n] <= shared_set)
        own = tuple((n, c) for n, c in checks if not reads[n] <= gate_set)
        return cls(tuple(compiled.preflight), shared, gate, own, compiled.all_pass(tuple(n for n, _ in own)))

    def for_tick(self, system: Mapping[str, Any]) -> TickPreflight:
        """This tick's preflight: the shared checks answered now, against the system's facts."""
        shared_failed, shared_raised = failing(self.shared, system)
        return TickPreflight(self, frozenset(shared_failed), shared_raised)


class TickPreflight:
    """`preflight.failed(facts)`: the names of the checks that fail for one bot, in the rules' order (handed to
    the bots as the bound method: called faster than an instance with `__call__`)."""

    def __init__(self, tiers: PreflightTiers, shared_failed: frozenset[str], shared_raised: bool):
        self._tiers = tiers
        self._own_all_pass = tiers.own_all_pass
        self._shared_failed = shared_failed
        self._shared_raised = shared_raised
        self._only_shared = tuple(name for name in tiers.order if name in shared_failed)  # when the rest all hold
        self._by_counts: dict[tuple[Any, Any], tuple[tuple[str, ...], bool]] = {}  # the gate's counts -> its answer
        self._answers: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}  # -> every failure, in order
        self.raised = False  # whether a check of the last answer could not be evaluated

    def failed(self, facts: Mapping[str, Any]) -> tuple[str, ...]:
        counts = (facts["orders_last_minute"], facts["capital_room_usd"])
        gate = self._by_counts.get(counts)
        if gate is None:
            gate = self._by_counts[counts] = failing(self._tiers.gate, facts)
        try:
            own_hold = self._own_all_pass(facts)
        except Exception:  # one cannot be evaluated: asked one by one below, which says which
            own_hold = False
        if own_hold and not gate[0]:  # most bots, most ticks
            self.raised = self._shared_raised
            return self._only_shared
        own = ((), False) if own_hold else failing(self._tiers.own, facts)
        self.raised = self._shared_raised or gate[1] or own[1]
        key = (gate[0], own[0])
        answer = self._answers.get(key)
        if answer is None:  # a new combination this tick: put it in the rules' order once
            every = self._shared_failed.union(gate[0], own[0])
            answer = self._answers[key] = tuple(name for name in self._tiers.order if name in every)
        return answer
