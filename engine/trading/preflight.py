"""Preflight at run time: every check of rules/preflight.yaml answered for every bot, each as rarely as it can be.

A check is put in one of three tiers by the facts it reads (`PreflightTiers`):
- shared: only system-wide facts. One answer per tick for every bot of a kind.
- gate: those and a few facts of the bot that most bots of a tick share: the risk gate's running counts
  (`orders_last_minute`, `capital_room_usd`), which differ from one bot to the next only after an entry is
  granted, and the facts fixed by the bot's kind and the tick (`KIND_FACTS`). One answer per set of those
  values within a tick: every bot of a kind, most ticks, between two grants.
- own: anything of the bot's. Every bot; all of them in one generated call when they all hold (most bots,
  most ticks), one by one otherwise, which says which failed.

A check that cannot be evaluated fails (fail closed). `TickPreflight.raised` says whether the last answer
included such a failure, so that the engine looks for the errors to log only then.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.rules.book import CompiledRules

Check = Callable[[Mapping[str, Any]], bool]
Checks = tuple[tuple[str, Check], ...]
# A bot's facts that every bot of its kind has alike within a tick (`facts_builder.bot_facts`: trades_crypto and
# trades_options follow from the kind, tradable_now from the kind and the clock). A check that reads only these
# besides the system's facts (crypto_enabled, options_level_ok, market_open as shipped) is answered once for all
# the bots of a kind instead of once a bot. Its answer is kept by the values it was given, as the gate counts'
# are, so a bot whose values differ gets an answer of its own, never another bot's.
KIND_FACTS = frozenset({"trades_crypto", "trades_options", "tradable_now"})
_ORDERED_KEPT = 4096  # sets of failing checks whose order `PreflightTiers.in_order` keeps


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
    keyed: tuple[str, ...]  # the facts a gate-tier answer is kept by: the gate's beyond the shared ones, sorted
    # failing checks -> the same in the rules' order (`in_order`): a few sets a run, kept from one tick to the next
    _ordered: dict[frozenset[str], tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def split(cls, compiled: CompiledRules, shared_facts: Iterable[str], gate_facts: Iterable[str]) -> PreflightTiers:
        shared_set = frozenset(shared_facts)
        gate_set = frozenset(gate_facts) | KIND_FACTS
        reads = compiled.preflight_facts
        checks = tuple(compiled.preflight.items())
        shared = tuple((n, c) for n, c in checks if reads[n] <= shared_set)
        gate = tuple((n, c) for n, c in checks if reads[n] <= gate_set and not reads[n] <= shared_set)
        own = tuple((n, c) for n, c in checks if not reads[n] <= gate_set)
        keyed = tuple(sorted(gate_set - shared_set))
        return cls(tuple(compiled.preflight), shared, gate, own, compiled.all_pass(tuple(n for n, _ in own)), keyed)

    def in_order(self, names: frozenset[str]) -> tuple[str, ...]:
        """`names` in the rules' order: the answer `failed` gives. Worked out once for each set of names that fail
        together (each tick asked again for the same few sets: outside its window, every bot fails the same)."""
        ordered = self._ordered.get(names)
        if ordered is None:
            if len(self._ordered) >= _ORDERED_KEPT:  # a bound, never reached by a run's few sets
                self._ordered.clear()
            ordered = self._ordered[names] = tuple(name for name in self.order if name in names)
        return ordered

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
        self._keyed = operator.itemgetter(*tiers.keyed)  # a bot's facts -> the values its gate-tier answer is kept by
        self._only_shared = tiers.in_order(shared_failed)  # when the rest all hold
        self._by_counts: dict[Any, tuple[tuple[str, ...], bool]] = {}  # the `keyed` facts' values -> its answer
        self._answers: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}  # -> every failure, in order
        self.raised = False  # whether a check of the last answer could not be evaluated

    def failed(self, facts: Mapping[str, Any]) -> tuple[str, ...]:
        counts = self._keyed(facts)
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
            answer = self._answers[key] = self._tiers.in_order(self._shared_failed.union(gate[0], own[0]))
        return answer
