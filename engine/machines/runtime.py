"""The machines at run time: one `transitions.Machine` per kind, every bot of that kind a model of it.

The machine is built with `auto_transitions=False` and only with callables from the engine's own registries
(guards from the rule book, actions from engine/machines/actions.py); `transitions` would otherwise resolve
a string callback as any importable dotted path.

`step` is the one entry point: given a model and its facts it tries the transitions from the current state
in file order, fires the first whose guards hold, and returns what happened and the intents produced. It
touches nothing outside the model, so it is easy to test. A guard that raises fails closed: nothing fires
and the model is put in `halted`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transitions import EventData, Machine

from engine.config.errors import ConfigError
from engine.machines.actions import Intent
from engine.machines.spec import MachineSpec, TransitionSpec
from engine.rules import conditions
from engine.rules.book import CompiledRules, RuleBook, compile_rules
from engine.rules.errors import MissingFact

GuardEvaluator = Callable[[str, Mapping[str, Any]], bool]
HALTED = "halted"


class MachineModel:
    """One bot (or the system) as `transitions` sees it. `state` is set by the machine."""

    state: str

    def __init__(self, bot_id: str):
        self.bot_id = bot_id
        self.facts: Mapping[str, Any] = {}
        self.intents: list[Intent] = []
        self.guards_held: list[str] = []
        self.guard_error: BaseException | None = None
        self.candidate: int | None = None

    def __repr__(self) -> str:
        return f"MachineModel({self.bot_id!r}, state={getattr(self, 'state', None)!r})"


@dataclass(frozen=True)
class StepResult:
    """What one step did. `transition` is None when nothing fired."""

    bot_id: str
    source: str
    dest: str
    transition: TransitionSpec | None = None
    intents: tuple[Intent, ...] = ()
    guards_held: tuple[str, ...] = ()
    error: str | None = None
    deferred: bool = False  # a fact was missing because a broker read failed: nothing fired, no halt


@dataclass
class MachineRuntime:
    spec: MachineSpec
    evaluate_guard: GuardEvaluator
    machine: Machine = field(init=False)

    def __post_init__(self) -> None:
        self.machine = Machine(
            model=[],
            states=list(self.spec.states),
            initial=self.spec.initial,
            transitions=[self._transition_config(t) for t in self.spec.transitions],
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=True,
        )

    def _transition_config(self, spec: TransitionSpec) -> dict[str, Any]:
        return {
            "trigger": spec.trigger,
            "source": list(spec.sources),
            "dest": spec.dest,
            "conditions": [self._condition(spec)],
            "after": [self._action(name, spec.trigger) for name in spec.actions],
        }

    def _condition(self, spec: TransitionSpec) -> Callable[[EventData], bool]:
        def condition(event: EventData) -> bool:
            model: MachineModel = event.model
            if model.candidate != spec.index:  # only the transition being tried may pass
                return False
            held: list[str] = []

            def holds(name: str) -> bool:
                result = self.evaluate_guard(name, model.facts)
                if result:
                    held.append(name)
                return result

            try:
                passed = conditions.evaluate(spec.when, holds)
            except Exception as exc:  # fail closed: the transition does not fire and the bot halts
                model.guard_error = exc
                return False
            model.guards_held = held
            return passed

        return condition

    @staticmethod
    def _action(name: str, trigger: str) -> Callable[[EventData], None]:
        def action(event: EventData) -> None:
            event.model.intents.append(Intent(name, event.model.bot_id, trigger))

        return action

    def add(self, model: MachineModel, state: str | None = None) -> None:
        """Attach a model, restored to `state` (a persisted state) without running any action."""
        if state is not None and state not in self.spec.states:
            raise ValueError(f"state '{state}' of {model.bot_id} is not in the {self.spec.kind} machine")
        self.machine.add_model(model, initial=state or self.spec.initial)

    def force_halt(self, model: MachineModel) -> None:
        """Put a model in `halted` directly: the fail-closed answer to a guard that could not be evaluated."""
        self.machine.set_state(HALTED, model=model)

    def step(self, model: MachineModel, facts: Mapping[str, Any], *, reads_failed: bool = False) -> StepResult:
        """Fire the first transition whose guards hold. A guard that raises fails closed: nothing fires and the
        model is halted, except when `reads_failed` (a broker read failed this tick) and the guard only lacked a
        fact: then nothing fires and the step is simply deferred to the next tick."""
        source = model.state
        model.facts = facts
        model.intents = []
        model.guards_held = []
        model.guard_error = None
        try:
            for candidate in self.spec.from_state(source):
                model.candidate = candidate.index
                if model.trigger(candidate.trigger):
                    return StepResult(
                        model.bot_id, source, model.state, candidate, tuple(model.intents), tuple(model.guards_held)
                    )
                if model.guard_error is not None:
                    error = f"{candidate.trigger}: {model.guard_error}"
                    if reads_failed and _missing_fact(model.guard_error):
                        return StepResult(model.bot_id, source, source, error=error, deferred=True)
                    if HALTED in self.spec.states and source != HALTED:
                        self.force_halt(model)
                    return StepResult(model.bot_id, source, model.state, error=error)
        finally:
            model.candidate = None
        return StepResult(model.bot_id, source, source)


def _missing_fact(error: BaseException | None) -> bool:
    """Whether a guard failed only because a fact was missing (anywhere in the chain of causes)."""
    while error is not None:
        if isinstance(error, MissingFact):
            return True
        error = error.__cause__ or getattr(error, "cause", None)
    return False


def build_runtime(spec: MachineSpec, book: RuleBook) -> tuple[MachineRuntime, CompiledRules]:
    """The runtime of one machine kind with its guards compiled from the rule book (which must be valid)."""
    compiled, problems = compile_rules(book, spec.kind, needed=spec.guards_used())
    if problems:
        raise ConfigError(problems)
    return MachineRuntime(spec, compiled.guard_holds), compiled
