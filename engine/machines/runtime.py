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

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from transitions import EventData, Machine, State, Transition

from engine.config.errors import ConfigError
from engine.machines.actions import Intent
from engine.machines.spec import MachineSpec, TransitionSpec
from engine.rules import conditions
from engine.rules.book import CompiledRules, RuleBook, compile_rules
from engine.rules.errors import GuardError, MissingFact

GuardEvaluator = Callable[[str, Mapping[str, Any]], bool]


class _State(State):
    """transitions' State, entered and left without its debug logging and without walking an empty list of
    callbacks (none of ours has any): at a thousand bots changing state in one tick, that was a third of the cost
    of each transition (measured)."""

    def enter(self, event_data: EventData) -> None:
        if self.on_enter:
            event_data.machine.callbacks(self.on_enter, event_data)

    def exit(self, event_data: EventData) -> None:
        if self.on_exit:
            event_data.machine.callbacks(self.on_exit, event_data)


class _Transition(Transition):
    """transitions' Transition.execute (transitions 0.9), step for step: prepare callbacks, conditions, before
    callbacks, the state change (exit, set, enter), after callbacks; only the debug logging and the empty callback
    lists are left out. tests/machines/test_runtime.py holds it to the original's order of callbacks."""

    def execute(self, event_data: EventData) -> bool:
        machine = event_data.machine
        if self.prepare:
            machine.callbacks(self.prepare, event_data)
        if not self._eval_conditions(event_data):
            return False
        if machine.before_state_change or self.before:
            machine.callbacks(itertools.chain(machine.before_state_change, self.before), event_data)
        if self.dest:  # None: an internal transition, no change of state
            self._change_state(event_data)
        if self.after or machine.after_state_change:
            machine.callbacks(itertools.chain(self.after, machine.after_state_change), event_data)
        return True

    def _change_state(self, event_data: EventData) -> None:
        """Transition._change_state for states named by strings (ours are): exit the source, set the model's
        state, point the event at the destination, enter it, then the machine's final callbacks if it is final;
        the states looked up by name directly instead of through `get_state`'s checks."""
        machine = event_data.machine
        states = machine.states
        states[self.source].exit(event_data)
        assert self.dest is not None  # execute() changes state only for a transition with a destination
        dest = states[self.dest]
        setattr(event_data.model, machine.model_attribute, dest.value)
        event_data.state = dest
        dest.enter(event_data)
        if dest.final:
            machine.callbacks(machine.on_final, event_data)


class _Machine(Machine):
    state_cls = _State
    transition_cls = _Transition
HALTED = "halted"


class MachineModel:
    """One bot (or the system) as `transitions` sees it. `state` is set by the machine."""

    state: str
    trigger: Callable[[str], bool]  # added by `transitions` when the model joins a machine

    def __init__(self, bot_id: str):
        self.bot_id = bot_id
        self.intents: list[Intent] = []
        self.held: tuple[str, ...] = ()  # the guards that held for the transition firing now
        self.candidate: int | None = None  # the transition the guards selected, while it fires

    def __repr__(self) -> str:
        return f"MachineModel({self.bot_id!r}, state={getattr(self, 'state', None)!r})"


class StepResult(NamedTuple):
    """What one step did. `transition` is None when nothing fired. (A named tuple: one is made per bot per
    tick, and a frozen dataclass costs several times more to build.)"""

    bot_id: str
    source: str
    dest: str
    transition: TransitionSpec | None = None
    intents: tuple[Intent, ...] = ()
    guards_held: tuple[str, ...] = ()
    error: str | None = None
    deferred: bool = False  # a fact was missing because a broker read failed: nothing fired, no halt


Predicate = Callable[[Mapping[str, Any]], bool]
# A StepResult built from all its fields without the named tuple's __new__ (a Python function, which fills in the
# defaults): a third of the cost, for the one made per bot per tick (`step`, `_fire`); test_runtime.py holds the
# two to the same fields.
_new_tuple = tuple.__new__


@dataclass
class MachineRuntime:
    """`evaluate_guard(name, facts)` answers one named guard. `guards` (name -> compiled callable), when
    given, lets each transition's `when:` be compiled once into one callable: the fast path of the tick."""

    spec: MachineSpec
    evaluate_guard: GuardEvaluator
    guards: Mapping[str, Predicate] | None = None
    composites: Mapping[str, conditions.Condition] = field(default_factory=dict)  # a named guard's own `when:`
    # Compiles a state's `when:` trees into one function giving the index of the first that holds (-1: none):
    # `CompiledRules.first_holding`. Without it, a step asks the transitions' callables one by one.
    first_holding: Callable[[Sequence[conditions.Condition]], Callable[[Mapping[str, Any]], int]] | None = None
    machine: Machine = field(init=False)

    def __post_init__(self) -> None:
        self._selectors: dict[Callable[[EventData], bool], int] = {}  # each transition's condition -> its index
        self.machine = _Machine(
            model=[],
            states=list(self.spec.states),
            initial=self.spec.initial,
            transitions=[self._transition_config(t) for t in self.spec.transitions],
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=True,
        )
        self._when: dict[int, Predicate] = {t.index: self._compile(t.when) for t in self.spec.transitions}
        self._candidates: dict[str, tuple[tuple[TransitionSpec, Predicate], ...]] = {
            state: tuple((t, self._when[t.index]) for t in self.spec.from_state(state)) for state in self.spec.states
        }
        self._first: dict[str, Callable[[Mapping[str, Any]], int]] = {}
        if self.first_holding is not None:
            for state, candidates in self._candidates.items():
                self._first[state] = self.first_holding([t.when for t, _ in candidates])
        # The guards that held, known from the `when:` tree alone when it cannot short-circuit (None: walk it).
        self._held: dict[int, tuple[str, ...] | None] = {t.index: self._static_held(t.when, True) for t in self.spec.transitions}
        # Each (transition, source) as `transitions` built it, to be executed directly once the guards chose it.
        self._built: dict[tuple[int, str], Transition] = {}
        for event in self.machine.events.values():
            for source, built in event.transitions.items():
                for transition in built:
                    for condition in transition.conditions:
                        self._built[(self._selectors[condition.func], source)] = transition  # type: ignore[index]  # typed as str | Callable

    def _static_held(self, condition: conditions.Condition, value: bool) -> tuple[str, ...] | None:
        """The guards `_fire` would name for `condition` evaluating to `value`, when no short-circuit decides
        which are evaluated: a guard that holds is named (then, for a `when:` guard, those inside it that held);
        `all` true and `any` false evaluate every item. None when it depends on the facts."""
        if isinstance(condition, conditions.Ref):
            if not value:
                return ()
            inner = self.composites.get(condition.name)
            rest = () if inner is None else self._static_held(inner, True)
            return None if rest is None else (condition.name, *rest)
        if isinstance(condition, conditions.Not):
            return self._static_held(condition.item, not value)
        if value != isinstance(condition, conditions.All):
            return None  # `all` false or `any` true: which items were evaluated depends on the facts
        held: tuple[str, ...] = ()
        for item in condition.items:
            part = self._static_held(item, value)
            if part is None:
                return None
            held += part
        return held

    def _compile(self, condition: conditions.Condition) -> Predicate:
        """One callable for a `when:` tree, short-circuiting left to right like `conditions.evaluate`."""
        if isinstance(condition, conditions.Ref):
            name = condition.name
            if self.guards is not None and name in self.guards:
                return self.guards[name]
            evaluate = self.evaluate_guard
            return lambda facts: evaluate(name, facts)
        if isinstance(condition, conditions.Not):
            inner = self._compile(condition.item)
            return lambda facts: not inner(facts)
        parts = tuple(self._compile(item) for item in condition.items)
        if isinstance(condition, conditions.All):
            if not parts:
                return lambda facts: True
            if len(parts) == 1:
                return parts[0]
            return lambda facts: all(part(facts) for part in parts)
        if len(parts) == 1:
            return parts[0]
        return lambda facts: any(part(facts) for part in parts)

    def _selector(self, spec: TransitionSpec) -> Callable[[EventData], bool]:
        selector = self._selected(spec)
        self._selectors[selector] = spec.index
        return selector

    def _transition_config(self, spec: TransitionSpec) -> dict[str, Any]:
        return {
            "trigger": spec.trigger,
            "source": list(spec.sources),
            "dest": spec.dest,
            "conditions": [self._selector(spec)],
            "after": [self._action(name, spec.trigger) for name in spec.actions],
        }

    @staticmethod
    def _selected(spec: TransitionSpec) -> Callable[[EventData], bool]:
        """The guards were evaluated before the trigger: only the transition they selected may pass."""

        def condition(event: EventData) -> bool:
            model: MachineModel = event.model  # type: ignore[assignment]  # transitions types its models as object
            return model.candidate == spec.index

        return condition

    @staticmethod
    def _action(name: str, trigger: str) -> Callable[[EventData], None]:
        def action(event: EventData) -> None:
            model: MachineModel = event.model  # type: ignore[assignment]  # transitions types its models as object
            model.intents.append(Intent(name, model.bot_id, trigger, model.held))

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
        fact: then nothing fires and the step is simply deferred to the next tick.

        The guards are evaluated here, outside `transitions`; `transitions` then fires the one transition they
        selected, with its callbacks, so its trigger machinery runs only when something happens."""
        source = model.state
        first = self._first.get(source)
        if first is not None:
            try:
                index = first(facts)  # every candidate in one call: the common case
            except Exception:  # one raised: asked one by one below, which names it and fails closed
                pass
            else:
                if index < 0:  # nothing fires: most bots, most ticks (StepResult(model.bot_id, source, source))
                    return _new_tuple(StepResult, (model.bot_id, source, source, None, (), (), None, False))
                return self._fire(model, self._candidates[source][index][0], facts)
        for candidate, when in self._candidates[source]:
            try:
                if not when(facts):
                    continue
            except Exception as exc:  # fail closed: the transition does not fire and the bot halts
                error = f"{candidate.trigger}: {_named(exc, candidate, self.evaluate_guard, facts)}"
                if reads_failed and _missing_fact(exc):
                    return StepResult(model.bot_id, source, source, error=error, deferred=True)
                if HALTED in self.spec.states and source != HALTED:
                    self.force_halt(model)
                return StepResult(model.bot_id, source, model.state, error=error)
            return self._fire(model, candidate, facts)
        return StepResult(model.bot_id, source, source)

    def _fire(self, model: MachineModel, candidate: TransitionSpec, facts: Mapping[str, Any]) -> StepResult:
        """`transitions` executes the transition the guards chose (its conditions and callbacks, the state set on
        the model), from the `Transition` it built for this source: the event's dispatch, which would only
        look that transition up again, is skipped (about half the cost of a trigger, measured)."""
        source = model.state
        held = self._held[candidate.index]
        if held is None:
            named: list[str] = []

            def holds(name: str) -> bool:
                result = self.evaluate_guard(name, facts)
                if result:
                    named.append(name)
                    inner = self.composites.get(name)
                    if inner is not None:  # name the guard inside that made it hold (stop_loss_hit, not exit_rule_hit)
                        conditions.evaluate(inner, holds)
                return result

            conditions.evaluate(candidate.when, holds)  # again, only to name the guards that held, for the log
            held = tuple(named)
        model.held = held
        model.intents = []
        model.candidate = candidate.index
        machine = self.machine
        event = EventData(machine.states[source], machine.events[candidate.trigger], machine, model, (), {})
        event.transition = transition = self._built[(candidate.index, source)]
        try:
            if not transition.execute(event):
                raise RuntimeError(f"{self.spec.kind} {model.bot_id}: {candidate.trigger} from {source} did not fire")
        finally:
            model.candidate = None
        return _new_tuple(StepResult, (model.bot_id, source, model.state, candidate, tuple(model.intents), held, None, False))


def _named(error: BaseException, candidate: TransitionSpec, evaluate: GuardEvaluator, facts: Mapping[str, Any]) -> BaseException:
    """The error as the named guard that raised it: a compiled `when:` raises the bare cause, so the guards
    are walked once more, one by one, to find which."""
    if isinstance(error, GuardError):
        return error
    try:
        conditions.evaluate(candidate.when, lambda name: evaluate(name, facts))
    except Exception as named:
        return named
    return error


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
    composites = {name: conditions.parse(e.body["when"]) for name, e in book.guards.items() if "when" in e.body}
    return MachineRuntime(spec, compiled.guard_holds, compiled.guards, composites, compiled.first_holding), compiled
