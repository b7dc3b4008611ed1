"""Static checks of machines against the rule book: what `transitions` never checks, `--validate` does.

Unknown states, guards, actions and facts (with the nearest valid name); unreachable states; states with no
way back to idle; a state from which halted cannot be entered; trigger names that would shadow the model's
own attributes; missing canonical states (the engine's code names some: `ENGINE_STATES`); missing machine
kinds; an entry from which no exit can be reached, or that waits elsewhere than in `entering`; an initial state
other than idle; an entry or an arming listed above a halt from the same state.

Every check is linear in the size of the machine (states plus edges, a `source: "*"` counting once per
state): the graph is walked once forwards from the initial state and once backwards from idle, never once
per state. A machine with very many mistakes reports the first `MAX_PROBLEMS_PER_MACHINE` and counts the
rest, so that the time spent suggesting names does not grow with the number of mistakes either.

When some rule files could not be read, a guard the machines use may be defined in one of them: unknown
guard names are then not reported (the unreadable file is), and everything else is still checked.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath

from engine.config.errors import PathPart, Problem
from engine.config.model import KillConditions
from engine.core.names import unknown_name_message
from engine.machines.actions import actions_for
from engine.machines.runtime import HALTED, MachineModel
from engine.machines.spec import MachineSpec, TransitionSpec
from engine.rules import bounds, conditions
from engine.rules.book import RuleBook, compile_rules, composed_too_large, fact_domains
from engine.rules.expressions import MAX_NODES, Node

CANONICAL_STATES = {
    "momentum": ("idle", "armed", "entering", "in_position", "managing", "halted"),
    "options": ("idle", "armed", "entering", "in_position", "managing", "halted"),
    "crypto": ("idle", "armed", "entering", "in_position", "managing", "halted"),
    "system": ("idle", "armed", "halted"),
    "portfolio": ("idle", "armed", "halted"),
}
# The states the engine's own code names (not only the machine files), and what it does with each: a machine
# that renames one validated, and the engine then judged its bots by a state they are never in.
ENGINE_STATES = {
    "entering": (
        "the engine keeps a bot's working entry order across a restart only while its machine is in 'entering' "
        "(engine/trading/engine.py); in any other state a restart cancels it as abandoned"
    ),
    "halted": "a halt puts the machine in 'halted', by that name",
    "idle": "every machine starts in 'idle'",
}
REQUIRED_KINDS = ("system", "portfolio", "momentum", "options", "crypto")  # the engine steps every one each tick
# Names `transitions` adds to every model, or that our model class holds.
_RESERVED_PREFIXES = ("may_", "is_", "to_")
MAX_PROBLEMS_PER_MACHINE = 100


def reachable(spec: MachineSpec, start: str) -> set[str]:
    """States reachable from `start` along declared transitions."""
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for transition in spec.from_state(state):
            if transition.dest not in seen:
                seen.add(transition.dest)
                queue.append(transition.dest)
    return seen


def reaching(spec: MachineSpec, target: str) -> set[str]:
    """States from which `target` can be reached along declared transitions (`target` included)."""
    into: dict[str, set[str]] = {}
    for source, transition in spec.edges():
        into.setdefault(transition.dest, set()).add(source)
    seen = {target}
    queue = deque([target])
    while queue:
        for source in into.get(queue.popleft(), ()):
            if source not in seen:
                seen.add(source)
                queue.append(source)
    return seen


class _Findings:
    """The problems of one machine file, at most MAX_PROBLEMS_PER_MACHINE; past that they are only counted, and
    a message given as a callable (one that looks for the nearest name) is never built."""

    def __init__(self, spec: MachineSpec):
        self.spec = spec
        self.problems: list[Problem] = []
        self.more = 0

    def add(self, path: tuple[PathPart, ...], message: str | Callable[[], str], *, of_key: bool = False) -> None:
        if len(self.problems) >= MAX_PROBLEMS_PER_MACHINE:
            self.more += 1
            return
        self.problems.append(self.spec.problem(path, message() if callable(message) else message, of_key=of_key))

    def result(self) -> list[Problem]:
        if not self.more:
            return self.problems
        summary = f"{self.more} more problems in this machine are not shown: fix the ones above first"
        return [*self.problems, Problem(self.spec.doc.path, 0, 0, "", summary)]


def lint_machine(spec: MachineSpec, book: RuleBook, *, rules_complete: bool = True) -> list[Problem]:
    """Every problem of one machine. `rules_complete=False` (a rule file could not be read) skips unknown guards."""
    found = _Findings(spec)
    states = spec.states
    if spec.initial not in states:
        found.add(("initial",), lambda: unknown_name_message("state", spec.initial, states))
    elif spec.initial != "idle" and "idle" in states:
        # A new bot (no saved state) or a fresh state file starts in `initial`: `armed` (or `in_position`) began
        # the first tick past the permission, the caps and the reconciliation that `idle` -> `armed` asks for.
        message = (
            f"initial state '{spec.initial}': every machine starts in 'idle' (not armed, nothing held), and gets "
            "further only through its guarded transitions; write `initial: idle`"
        )
        found.add(("initial",), message)
    for state in CANONICAL_STATES.get(spec.kind, ()):
        if state not in states:
            why = f": {ENGINE_STATES[state]}" if state in ENGINE_STATES else ""
            found.add(("states",), f"{spec.kind} machines need the state '{state}'{why}", of_key=True)

    known_actions = actions_for(spec.kind)
    structurally_ok = not found.problems
    for transition in spec.transitions:
        at: tuple[PathPart, ...] = ("transitions", transition.index)
        for source in transition.sources:
            if source not in states:
                found.add((*at, "source"), _unknown("state", source, states))
                structurally_ok = False
        if transition.dest not in states:
            found.add((*at, "dest"), _unknown("state", transition.dest, states))
            structurally_ok = False
        if transition.dest in transition.sources:
            found.add((*at, "dest"), f"'{transition.dest}' is both source and destination")
        for guard, where in conditions.places(transition.when):
            if guard not in book.guards and rules_complete:  # at its own item of an all/any/not
                found.add((*at, "when", *where), _unknown("guard", guard, book.guards))
        for index, action in enumerate(transition.actions):
            if action not in known_actions:
                found.add((*at, "actions", index), _unknown(f"action for {spec.kind} machines", action, known_actions))
            elif action in transition.actions[:index]:
                # Each name runs once per listing: `open_entry` twice sent two entries in one tick, each sized to the
                # bot's whole budget, so the bot risked twice what its config allows.
                message = f"action '{action}' is listed twice: it would run twice when the transition fires; keep one"
                found.add((*at, "actions", index), message)
        trigger_problem = _trigger_problem(spec, transition.trigger)
        if trigger_problem:
            found.add((*at, "trigger"), trigger_problem)

    used = [g for g in spec.guards_used() if g in book.guards]
    compiled, compile_problems = compile_rules(book, spec.kind, needed=used)
    memo = bounds.Memo()  # the transitions share their guards' trees: each is looked into once
    always_holds: dict[int, str] = {}  # transition index -> why its `when:` holds at every tick it can be evaluated
    for transition in spec.transitions:
        # The runtime writes each state's `when:` trees out into one function (CompiledRules.first_holding): a
        # `when: {all: [g, g, ...]}` of a large guard, thousands of times, would be compiled at every start.
        written = compiled.composed_size(transition.when)
        if written is not None and written > MAX_NODES:
            found.add(("transitions", transition.index, "when"), composed_too_large(written))
        elif written is not None and transition.when != conditions.TRUE:
            when = compiled.when_node(transition.when)
            _dead_problem(spec, transition, when, memo, found)
            reason = bounds.always_holds(when, fact_domains(spec.kind), memo=memo) if when is not None else None
            if reason is not None:
                always_holds[transition.index] = reason
    if structurally_ok:
        _graph_problems(spec, found)
        _always_problems(spec, found, always_holds)
        _shadowed_problems(spec, found, always_holds)
        _exit_problems(spec, found)
        _order_problems(spec, found)
    return [*found.result(), *compile_problems]


# What a transition does that protects: it halts (into `halted`, or records the system's halt) or it closes. One
# whose `when:` can never hold is that protection switched off without a word.
_PROTECTING_ACTIONS = ("close_position", "record_halt")


def _dead_problem(spec: MachineSpec, transition: TransitionSpec, when: Node | None, memo: bounds.Memo, found: _Findings) -> None:
    """A transition whose `when:` can never hold, whatever the facts (engine/rules/bounds.py): it never fires.

    Into `halted`, or closing, that is a halt or an exit switched off, so a guard that reads no fact (`'a' > 'b'`,
    `false`) counts too. Elsewhere a constant guard is how a transition is switched off on purpose (an entry kept
    off for a while): there only facts that rule each other out are said (`holds_position` and `flat`)."""
    if when is None or transition.when == conditions.TRUE:
        return
    protecting = transition.dest == "halted" or any(a in _PROTECTING_ACTIONS for a in transition.actions)
    reason = bounds.never_holds(when, fact_domains(spec.kind), constants=protecting, memo=memo)
    if reason is None:
        return
    if transition.dest == "halted":
        what = "a halt switched off without a word"
    elif protecting:
        done = [a for a in transition.actions if a in _PROTECTING_ACTIONS]
        what = f"its {', '.join(done)} switched off without a word"
    else:
        what = "it is dead; fix the guards or remove the transition"
    found.add(("transitions", transition.index, "when"), f"can never hold ({reason}), so it never fires: {what}")


def _unknown(what: str, name: str, known: Iterable[str]) -> Callable[[], str]:
    return lambda: unknown_name_message(what, name, known)


def _trigger_problem(spec: MachineSpec, trigger: str) -> str | None:
    clash = hasattr(MachineModel, trigger) or trigger.startswith(_RESERVED_PREFIXES) or trigger in ("trigger", "state", "machine")
    if clash:
        return f"trigger '{trigger}' collides with the model's own API; rename it"
    if trigger in spec.states:
        return f"trigger '{trigger}' has the name of a state; rename it"
    return None


def _graph_problems(spec: MachineSpec, found: _Findings) -> None:
    from_initial = reachable(spec, spec.initial)
    to_idle = reaching(spec, "idle") if "idle" in spec.states else None
    into_halted = {source for source, transition in spec.edges() if transition.dest == "halted"}
    for name in spec.states:
        where = ("states", name)
        if name not in from_initial:
            found.add(where, f"state '{name}' cannot be reached from '{spec.initial}'", of_key=True)
        if to_idle is not None and name not in to_idle:
            found.add(where, f"state '{name}' has no path back to 'idle'", of_key=True)
        if "halted" in spec.states and name != "halted" and name not in into_halted:
            found.add(where, f"'halted' cannot be entered from state '{name}'", of_key=True)


def _exit_problems(spec: MachineSpec, found: _Findings) -> None:
    """An `open_entry` whose destination reaches no transition carrying `close_position`: every state still had its
    way back to idle (`position_gone`, once flat), so the graph checks passed, and the run held each position it
    entered until something outside the machine (the daily-loss kill switch) sold it. One backward walk from the
    sources of every `close_position`, linear like the other checks. And a state an entry waits in with no
    `close_position` of its own: the exits are reachable (once the entry ends), but what is held meanwhile has none."""
    closing = {source for source, transition in spec.edges() if "close_position" in transition.actions}
    into: dict[str, set[str]] = {}
    for source, transition in spec.edges():
        into.setdefault(transition.dest, set()).add(source)
    can_close = set(closing)
    queue = deque(closing)
    while queue:
        for source in into.get(queue.popleft(), ()):
            if source not in can_close:
                can_close.add(source)
                queue.append(source)
    unguarded: dict[str, TransitionSpec] = {}  # a state an entry waits in with no exit of its own: its first entry
    for transition in spec.transitions:
        elsewhere = transition.dest != "entering" and "entering" in spec.states  # said on its own below
        if "open_entry" in transition.actions and not elsewhere and transition.dest in can_close - closing:
            unguarded.setdefault(transition.dest, transition)
        if "open_entry" in transition.actions and elsewhere:
            message = (
                f"an entry sent here waits in '{transition.dest}': {ENGINE_STATES['entering']}; make 'entering' "
                "the destination of every transition that opens"
            )
            found.add(("transitions", transition.index, "dest"), message)
        elif "open_entry" in transition.actions and transition.dest not in can_close:
            message = (
                "a position entered here could never be closed: no transition with `close_position` can be reached "
                f"from '{transition.dest}'; give the states that hold a position an exit"
            )
            found.add(("transitions", transition.index, "actions", transition.actions.index("open_entry")), message)
    for transition in unguarded.values():
        # A first entry filling in parts, or one added beside a position held, leaves the bot holding while it
        # waits in the state the entry leads to: without an exit from there, what it held went without its stop
        # loss, take profit and time stop until the entry filled, ended or timed out (an options trade lost 619 USD
        # against a budget of 247 so).
        message = (
            f"what the bot holds while an entry works in '{transition.dest}' (a part filled, or a position it adds "
            f"to) keeps no exits: no transition with `close_position` leaves '{transition.dest}', so a stop loss "
            "would wait until the entry ends; add one as the shipped machines do: from 'entering' when the bot "
            "holds a position and an exit rule hits, with actions [cancel_entry, close_position]"
        )
        found.add(("states", transition.dest), message, of_key=True)


def _order_problems(spec: MachineSpec, found: _Findings) -> None:
    """A transition that opens (`open_entry`) or arms (its destination `armed`) listed above a halt from the same
    state: the first transition that holds fires, so on a tick where both held the bot entered, or the system
    armed, and the halt was looked at only a tick later. Halts go first, as the shipped machines write them."""
    for state in spec.states:
        opening: list[TransitionSpec] = []
        for transition in spec.from_state(state):
            if transition.dest == "halted":
                for early in opening:
                    what = "opens a position" if "open_entry" in early.actions else "arms"
                    line = spec.doc.position(("transitions", transition.index))[0]
                    message = (
                        f"'{early.trigger}' {what} from '{state}' and is listed above '{transition.trigger}' (line "
                        f"{line}), which halts from there: when both hold the first fires, so the halt would be looked "
                        "at only after it; move the halts above it"
                    )
                    found.add(("transitions", early.index, "trigger"), message)
                opening.clear()
            elif "open_entry" in transition.actions or transition.dest == "armed":
                opening.append(transition)


def _always_problems(spec: MachineSpec, found: _Findings, always_holds: Mapping[int, str]) -> None:
    """What a transition without `when` (omitted means always) does to the others: from each of its sources it
    fires first every tick, so a transition listed after it from that source never fires (a halt included), and
    a cycle of such transitions changes the state every tick forever, running their actions each time.

    A `when:` that always holds (`always_holds`, by index: a guard `2 > 1`, or `{any: [flat, {not: flat}]}`) is
    the same: it was a way round both checks. While a fact it reads is missing it raises, which halts the bot
    there: the transitions after it are not asked then either."""
    first_always: dict[str, TransitionSpec] = {}
    shadowed: dict[int, tuple[TransitionSpec, list[str], TransitionSpec]] = {}
    for state in spec.states:
        for transition in spec.from_state(state):
            always = first_always.get(state)
            if always is not None:
                shadowed.setdefault(transition.index, (transition, [], always))[1].append(state)
            elif transition.when == conditions.TRUE or transition.index in always_holds:
                first_always[state] = transition
    for transition in spec.from_state(HALTED) if HALTED in spec.states else ():
        if transition.dest != HALTED and (transition.when == conditions.TRUE or transition.index in always_holds):
            # Every halt (the kill switch's, the operator's, the bot's own) ended at the next tick, whatever held
            # it: the machine left `halted` for `dest`, and came back only where a halt transition from there fired.
            why = _why_always(transition, always_holds) if transition.index in always_holds else "has no `when`"
            found.add(("transitions", transition.index, "trigger"), f"leaves '{HALTED}' for '{transition.dest}' and "
                      f"{why}: every halt would end at the next tick, whatever holds it; give it a `when` that waits "
                      "for the halt to end (as the shipped machines' resume does: may_resume)")  # fmt: skip
    for transition, sources, always in shadowed.values():
        guarded = always.index in always_holds
        why = _why_always(always, always_holds) if guarded else "has no `when`"
        fix = "give it a `when` that can be false" if guarded else "give it a `when`"
        message = (
            f"never fires from {_names(sources)}: transition '{always.trigger}' (line "
            f"{spec.doc.position(('transitions', always.index))[0]}) comes first from there and {why}, so it always "
            f"fires; {fix}, or move this transition above it"
        )
        found.add(("transitions", transition.index, "trigger"), message)
    for cycle in _cycles({state: t.dest for state, t in first_always.items()}):
        if len(cycle) == 1:  # a transition to its own state: said already ("is both source and destination")
            continue
        first = min((first_always[state] for state in cycle), key=lambda t: t.index)
        loop = " -> ".join([*cycle, cycle[0]])
        triggers = ", ".join(f"'{first_always[state].trigger}'" for state in cycle)
        looping = [first_always[state] for state in cycle if first_always[state].index in always_holds]
        what = "have no `when`, or one that always holds" if looping else "have no `when`"
        message = (
            f"the machine would change state every tick forever ({loop}): transitions {triggers} {what}, "
            "so each always fires; give one of them a `when`"
            + ("".join(f"; '{t.trigger}': {_why_always(t, always_holds)}" for t in looping))
        )
        found.add(("transitions", first.index, "trigger"), message)


def _shadowed_problems(spec: MachineSpec, found: _Findings, always_holds: Mapping[int, str]) -> None:
    """A transition listed after another from the same state whose `when:` holds whenever its own does: the same
    `when:` (an `all:`'s items in any order), or one it implies by its form (`{all: [a, b]}` after `a`, or after
    `{all: [b, a]}`; `a` after `{any: [a, b]}`). The first fires on every tick the second could, so the second
    never fires; it validated, and the diagram and the table drew it as a live edge. Only the form is looked at
    (guards by name, not what their expressions say), so nothing that can fire is refused. Past a transition that
    always fires the rest are said by `_always_problems`. Each `when:` is looked up in a set of the earlier ones'."""
    for state in spec.states:
        earlier: dict[object, TransitionSpec] = {}
        for transition in spec.from_state(state):
            if transition.when == conditions.TRUE or transition.index in always_holds:
                break
            first = next((earlier[key] for key in _implied(transition.when) if key in earlier), None)
            if first is not None:
                same = _key(first.when) == _key(transition.when)
                how = "the same `when`" if same else "a `when` that holds whenever this one's does"
                message = (
                    f"never fires from '{state}': transition '{first.trigger}' (line "
                    f"{spec.doc.position(('transitions', first.index))[0]}) comes first from there with {how}, so it "
                    "fires instead; remove this transition, or give it a `when` the first one's does not cover"
                )
                found.add(("transitions", transition.index, "when"), message)
            for key in _disjuncts(transition.when):
                earlier.setdefault(key, transition)


_MOST_CONJUNCTS = 6  # an `all:` of more is looked into as a whole and by its single items only (2**6 subsets)


def _key(when: conditions.Condition) -> object:
    """`when` as compared: an `all:` as the set of its items, whatever their order."""
    return frozenset(_key(item) for item in when.items) if isinstance(when, conditions.All) else when


def _implied(when: conditions.Condition) -> list[object]:
    """The keys of what `when` implies by its form: itself, each item of an `all:`, and each subset of its items
    (up to _MOST_CONJUNCTS of them)."""
    if not isinstance(when, conditions.All):
        return [when]
    items = list(dict.fromkeys(_key(item) for item in when.items))
    implied: list[object] = [frozenset(items), *items]
    if len(items) <= _MOST_CONJUNCTS:
        for mask in range(1, 2 ** len(items) - 1):
            subset = frozenset(item for bit, item in enumerate(items) if mask >> bit & 1)
            if len(subset) > 1:
                implied.append(subset)
    return implied


def _disjuncts(when: conditions.Condition) -> list[object]:
    """The keys of `when` and, for an `any:`, of each of its items: whichever of them holds, `when` does."""
    return [_key(when), *(_key(item) for item in when.items)] if isinstance(when, conditions.AnyOf) else [_key(when)]


def _why_always(transition: TransitionSpec, always_holds: Mapping[int, str]) -> str:
    return f"its `when` always holds (its negation cannot: {always_holds[transition.index]})"


def _names(states: Iterable[str]) -> str:
    return ", ".join(f"'{state}'" for state in states)


def _cycles(successor: Mapping[str, str]) -> list[list[str]]:
    """The cycles of a graph where each node has at most one successor, each once, from its first node met."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    for start in successor:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = successor.get(node)
        if node is not None and node in on_path:
            cycles.append(path[path.index(node) :])
        done.update(path)
    return cycles


def lint_all(
    specs: Mapping[str, MachineSpec],
    book: RuleBook,
    machines_dir: str,
    *,
    machines_complete: bool = True,
    rules_complete: bool = True,
) -> list[Problem]:
    """Lint every machine, the kill conditions, and check that every required kind is there.

    `machines_complete` / `rules_complete` say whether every machine / rule file could be read; when one could
    not, the checks that need all of them (a missing kind, a missing kill condition, an unknown guard) are
    skipped rather than reported against what is only unread.
    """
    problems: list[Problem] = []
    for spec in specs.values():
        # with no guard at all (rules/guards.yaml gone) every guard the machines name is unknown: said once, below
        problems.extend(lint_machine(spec, book, rules_complete=rules_complete and bool(book.guards)))
    if rules_complete:
        problems.extend(_kill_condition_problems(book))
        problems.extend(missing_sections(book, specs))
    if machines_complete:
        files = {PurePath(spec.doc.path).name for spec in specs.values()}
        for kind in REQUIRED_KINDS:
            if kind not in specs:
                # named when its shipped file is gone, as a rule file is (`missing_sections`)
                gone = f": {machines_dir}/{kind}.yaml is missing; put it back" if f"{kind}.yaml" not in files else ""
                message = f"no machine of kind '{kind}' (every bot kind needs one){gone}"
                problems.append(Problem(machines_dir, 0, 0, "", message))
    # A rule-file problem is found once per kind that compiles the rule; report it once.
    return sorted(set(problems))


# The file of rules/ each section is shipped in: named when no rule file declares any of that section
SHIPPED_RULE_FILES = {
    "guards": "guards.yaml",
    "preflight": "preflight.yaml",
    "kill_conditions": "kill_conditions.yaml",
    "signals": "signals.yaml",
}
_SECTION_NAMES = {"guards": "guard", "preflight": "preflight check", "kill_conditions": "kill condition", "signals": "signal"}


def missing_sections(book: RuleBook, specs: Mapping[str, MachineSpec]) -> list[Problem]:
    """A section of the rule book no file declares anything of, said once, naming its shipped file: a deleted
    rules/guards.yaml was told as 86 unknown guards of the machines, and never named, and a deleted
    kill_conditions.yaml as four problems at `rules:0:0`. The problems that follow from it (each unknown guard,
    each kill condition without a rule, each unknown signal mode) are not told beside it.

    No preflight check at all is refused too, though nothing else names one: every entry would pass preflight
    whatever the market, the quotes, the account or the day's loss (the gate still holds the system's arming and
    the bot's own limits, nothing else), and validation said OK. One check is the user's choice of what to ask;
    none is a file gone missing, as preflight.yml, which is refused. Guards are asked for only while a machine
    uses one."""
    folder = str(PurePath(book.files[0]).parent) if book.files else "rules"  # no file holds what is missing
    names = {PurePath(path).name for path in book.files}
    used = sorted({guard for spec in specs.values() for guard in spec.guards_used()})
    why = {
        "guards": f"the machines use {len(used)} guards ({', '.join(used[:3])}{', ...' if len(used) > 3 else ''})",
        "preflight": "every entry would go out whatever the market, the quotes, the account and the day's loss say",
        "kill_conditions": (
            "the kill switch would have no rule for any of bots.yaml's exitbot.kill_conditions "
            f"({', '.join(f.name for f in dataclasses.fields(KillConditions))})"
        ),
        "signals": "no bot's signal.mode in bots.yaml names a declared signal",
    }
    problems = []
    for section, file in SHIPPED_RULE_FILES.items():
        if book.entries[section] or (section == "guards" and not used):
            continue
        kind = _SECTION_NAMES[section]
        shipped = f"{folder}/{file}"
        if file not in names:
            fix = f"no {kind} in {folder}/: {shipped} is missing; {why[section]}; put it back"
        else:
            fix = f"no {kind} in {folder}/: {why[section]}; put the shipped {kind}s back in {shipped}"
        message = f"{fix}, or declare them under {section}:"
        problems.append(Problem(folder, 0, 0, section, message))
    return problems


def _kill_condition_problems(book: RuleBook) -> list[Problem]:
    """Kill conditions in rules/ and the switches in bots.yaml (exitbot.kill_conditions) must name the same set."""
    problems: list[Problem] = []
    if not book.kill_conditions:  # none at all: the file is gone (`missing_sections`), not each one
        return problems
    switches = {f.name for f in dataclasses.fields(KillConditions)}
    for name, entry in book.kill_conditions.items():
        if name not in switches:
            message = unknown_name_message("kill condition (not a key of exitbot.kill_conditions)", name, switches)
            problems.append(entry.problem(None, message))
    # Said where the kill conditions are written (the section's key in the file of the first one), or, when no
    # file has any, at the rules folder: the first rule file by name (guards.yaml, at line 0) holds none of them,
    # and sent the reader to the wrong file.
    first = next(iter(book.kill_conditions.values()), None)
    for name in sorted(switches - book.kill_conditions.keys()):
        message = f"no rule for kill condition '{name}' of bots.yaml"
        if first is not None:
            problems.append(first.doc.problem(("kill_conditions",), message, of_key=True))
        else:
            where = str(PurePath(book.files[0]).parent) if book.files else "rules"
            problems.append(Problem(where, 0, 0, "kill_conditions", f"{message}: declare it under kill_conditions:"))
    return problems
