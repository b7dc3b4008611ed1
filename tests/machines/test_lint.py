"""`--validate` lints machines and rules: each mistake reported at its file and line, with a suggestion."""

from __future__ import annotations

import re
import time
from itertools import pairwise
from pathlib import Path

import pytest

from engine.config.errors import Problem
from engine.validate import validate
from tests.conftest import ProjectCopy


def problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules).problems


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def test_shipped_files_are_clean(project: ProjectCopy) -> None:
    assert problems(project) == []


def test_a_missing_portfolio_machine_is_refused(project: ProjectCopy) -> None:
    """machines/portfolio.yaml deleted validated, and every tick of the run then raised an AttributeError (the
    budgets read the PortfolioBot's state, which no machine gave it) and halted the system."""
    (project.machines / "portfolio.yaml").unlink()
    (project.machines / "scenarios" / "portfolio.yaml").unlink(missing_ok=True)
    p = only(problems(project))
    assert (
        p.message == f"no machine of kind 'portfolio' (every bot kind needs one): {p.file}/portfolio.yaml is missing; put it back"
    )


def test_a_missing_machine_is_said_once_not_again_by_its_scenarios(project: ProjectCopy) -> None:
    """machines/system.yaml deleted was also told by machines/scenarios/system.yaml ("kind: no machine of kind
    'system'"), a problem that follows from the first; and the missing file was never named."""
    (project.machines / "system.yaml").unlink()
    p = only(problems(project))
    assert p.file.endswith("machines") and p.message.endswith("machines/system.yaml is missing; put it back"), p


def test_a_machine_of_a_required_kind_in_another_file_is_not_said_missing_by_file(project: ProjectCopy) -> None:
    (project.machines / "portfolio.yaml").rename(project.machines / "budgets.yaml")
    assert problems(project) == []


def test_unknown_guard_with_suggestion(project: ProjectCopy) -> None:
    project.replace("machines/momentum.yaml", "when: entry_signal\n", "when: entry_signl\n")
    p = only(problems(project))
    assert p.file.endswith("machines/momentum.yaml") and p.line == project.line_of("machines/momentum.yaml", "entry_signl")
    assert "unknown guard 'entry_signl' (did you mean 'entry_signal'?)" in p.message


def test_unknown_state(project: ProjectCopy) -> None:
    project.replace("machines/crypto.yaml", "dest: managing", "dest: manageing")
    p = only(problems(project))
    assert p.line == project.line_of("machines/crypto.yaml", "manageing") and "did you mean 'managing'" in p.message


def test_unknown_action(project: ProjectCopy) -> None:
    project.replace("machines/options.yaml", "actions: [open_entry]", "actions: [open_entri]")
    p = only(problems(project))
    assert "unknown action" in p.message and "did you mean 'open_entry'" in p.message


def test_unknown_fact_in_a_guard_expression(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "expr: worst_position_pnl_pct <= -exits_stop_loss_pct", "expr: position_pnl <= -exits_stop_loss_pct"
    )
    p = only(problems(project))
    assert p.file.endswith("rules/guards.yaml") and p.path == "guards.stop_loss_hit.expr"
    assert p.line == project.line_of("rules/guards.yaml", "position_pnl <=")
    assert "unknown fact 'position_pnl'" in p.message and "did you mean 'position_pnl_pct'" in p.message


def test_type_mismatch_in_an_expression(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "expr: trades_today < risk_max_trades_per_day", "expr: trades_today < 'three'")
    p = only(problems(project))
    assert p.path == "guards.under_trade_cap.expr" and "expression error" in p.message


def test_a_fact_another_kind_lacks(project: ProjectCopy) -> None:
    # near_close reads an options-only config value; using it in the momentum machine is an error.
    project.replace("machines/momentum.yaml", "when: exit_rule_hit", "when: {any: [exit_rule_hit, near_close]}")
    p = only(problems(project))
    assert "exits_flatten_before_close_minutes" in p.message and "momentum machines" in p.message


def test_unreachable_state(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "    dest: armed\n", "    dest: idle\n")
    found = problems(project)
    messages = [p.message for p in found]
    assert "state 'armed' cannot be reached from 'idle'" in messages


def test_state_with_no_way_back_to_idle(project: ProjectCopy) -> None:
    project.replace(
        "machines/portfolio.yaml",
        "  - trigger: withdraw\n    source: armed\n    dest: idle\n",
        "  - trigger: withdraw\n    source: armed\n    dest: halted\n",
    )
    project.replace(
        "machines/portfolio.yaml",
        "  - trigger: resume\n    source: halted\n    dest: idle\n",
        "  - trigger: resume\n    source: halted\n    dest: armed\n",
    )
    found = problems(project)
    assert {p.message for p in found} >= {"state 'armed' has no path back to 'idle'", "state 'halted' has no path back to 'idle'"}


def test_halted_not_enterable_from_a_state(project: ProjectCopy) -> None:
    project.replace(
        "machines/system.yaml",
        "    source: [idle, armed]\n    dest: halted\n    when: kill_triggered",
        "    source: [idle]\n    dest: halted\n    when: kill_triggered",
    )
    project.replace(
        "machines/system.yaml",
        "    source: [idle, armed]\n    dest: halted\n    when: halt_active",
        "    source: [idle]\n    dest: halted\n    when: halt_active",
    )
    p = only(problems(project))
    assert p.message == "'halted' cannot be entered from state 'armed'"
    assert p.line == project.line_of("machines/system.yaml", "  armed:")


@pytest.mark.parametrize("trigger", ["trigger", "may_arm", "to_idle", "is_armed", "step"])
def test_trigger_that_collides_with_the_model_api(project: ProjectCopy, trigger: str) -> None:
    project.replace("machines/system.yaml", "trigger: disarm", f"trigger: {trigger}")
    found = problems(project)
    if trigger == "step":  # not part of the model's API: allowed
        assert found == []
    else:
        assert "collides with the model's own API" in only(found).message


def test_missing_canonical_state(project: ProjectCopy) -> None:
    project.replace("machines/crypto.yaml", "  managing:\n", "  manage_phase:\n")
    found = problems(project)
    assert any("crypto machines need the state 'managing'" in p.message for p in found)


def test_composite_guard_naming_an_unknown_guard(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "when: {any: [flatten_requested, stop_loss_hit", "when: {any: [flatten_request, stop_loss_hit"
    )
    p = only(problems(project))
    assert p.path == "guards.exit_rule_hit.when.any[0]" and "did you mean 'flatten_requested'" in p.message


def test_every_unknown_guard_of_a_composition_is_told_at_its_own_line(project: ProjectCopy) -> None:
    """Of a composite guard only the first unknown name was told, and of both files at the `when:` key, lines
    above the item to fix."""
    project.replace(
        "rules/guards.yaml",
        "when: {any: [flatten_requested, stop_loss_hit, take_profit_hit, time_stop_hit]}",
        "when:\n      any:\n        - flatten_request\n        - stop_loss_hit\n        - take_profit_ht\n        - time_stop_hit",
    )
    project.replace(
        "machines/momentum.yaml",
        "    when: {all: [may_open, entry_signal]}",
        "    when:\n      all:\n        - may_opn\n        - not: entry_signl",
    )
    found = [(p.file.rsplit("/", 2)[-2:], p.line, p.col, p.path) for p in problems(project)]
    guards, momentum = "rules/guards.yaml", "machines/momentum.yaml"
    assert found == [
        (["machines", "momentum.yaml"], project.line_of(momentum, "- may_opn"), 11, "transitions[18].when.all[0]"),
        (["machines", "momentum.yaml"], project.line_of(momentum, "not: entry_signl"), 16, "transitions[18].when.all[1].not"),
        (["rules", "guards.yaml"], project.line_of(guards, "- flatten_request"), 11, "guards.exit_rule_hit.when.any[0]"),
        (["rules", "guards.yaml"], project.line_of(guards, "- take_profit_ht"), 11, "guards.exit_rule_hit.when.any[2]"),
    ], found


def test_kill_condition_without_a_switch_in_bots_yaml(project: ProjectCopy) -> None:
    project.replace("rules/kill_conditions.yaml", "  anomaly_halt:", "  anomaly_stop:")
    found = problems(project)
    assert any("not a key of exitbot.kill_conditions" in p.message for p in found)
    assert any("no rule for kill condition 'anomaly_halt'" in p.message for p in found)


def test_machine_schema_error_points_at_the_key(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "    reason: The halt ended", "    reasn: The halt ended")
    p = only(problems(project))
    assert "unknown key 'reasn' (did you mean 'reason'?)" in p.message
    assert p.line == project.line_of("machines/system.yaml", "reasn")


# --- bounded time: every check is linear, and a file over the size limit is refused (issue 13, item 7) ---------


# Guards of the shipped rules, one `when:` to each transition from a state past its first: the same `when:` twice
# from one state is refused (the second never fires).
_WHENS = (
    "in_trade_window", "past_trade_end", "past_manage_until", "preflight_ok", "under_trade_cap",
    "under_position_cap", "entry_signal", "entry_filled", "entry_failed", "entry_timed_out", "stop_loss_hit",
    "take_profit_hit", "time_stop_hit", "flatten_requested", "exit_rule_hit", "holds_position", "exit_stalled",
)  # fmt: skip


def chain_machine(states: int, transitions: int, *, spread: str = "*") -> str:
    """A momentum machine of `states` states in a chain, each able to halt and go back to idle, and `transitions`
    transitions in all, counted as the limit counts them (once per source state): valid, so every check runs,
    the graph ones included. The rest leave from every state, as many as fit, written as `spread` says: "*" as
    `source: '*'`, "list" as the list of every state but the destination, "none" not at all; then from one state
    each. No two transitions from one state have the same `when:` (up to len(_WHENS) of them)."""
    names = ["idle", "armed", "entering", "in_position", "managing", "halted"] + [f"s{i}" for i in range(states - 6)]
    chain = ["idle", "armed", "entering", "in_position", "managing", *names[6:]]
    edges = [
        "{trigger: halt, source: '*', dest: halted, when: bot_halted}",
        "{trigger: resume, source: halted, dest: idle, when: flat}",
        *(f"{{trigger: step_{i}, source: {a}, dest: {b}, when: flat}}" for i, (a, b) in enumerate(pairwise(chain))),
        *(f"{{trigger: back_{i}, source: {name}, dest: idle, when: {_WHENS[0]}}}" for i, name in enumerate(chain[1:])),
    ]
    left = transitions - (len(names) - 1) - 1 - 2 * (len(chain) - 1)
    assert left >= 0, "too few transitions for the chain"
    wide = len(names) - 1  # a wildcard leaves every state but its destination
    # Never into armed or halted: an edge that arms listed above one that halts from the same state is refused.
    dests = [name for name in names if name not in ("armed", "halted")]
    wildcards = left // wide if spread != "none" else 0
    for i in range(wildcards):
        dest = dests[i % len(dests)]
        source = "'*'" if spread == "*" else "[" + ", ".join(n for n in names if n != dest) + "]"
        edges.append(f"{{trigger: any_{i}, source: {source}, dest: {dest}, when: {_WHENS[(1 + i) % len(_WHENS)]}}}")
    for i in range(left % wide if spread != "none" else left):
        source = chain[1 + i % (len(chain) - 1)]
        when = _WHENS[(1 + wildcards + i // (len(chain) - 1)) % len(_WHENS)]
        edges.append(f"{{trigger: one_{i}, source: {source}, dest: idle, when: {when}}}")
    lines = ["kind: momentum", "description: A machine at the size limits.", "initial: idle", "states:"]
    lines += [f"  {name}: {{description: State {name}.}}" for name in names]
    lines += ["transitions:", *(f"  - {edge}" for edge in edges)]
    return "\n".join(lines) + "\n"


def test_a_machine_at_the_limits_is_linted_in_linear_time(project: ProjectCopy) -> None:
    """Linear, measured against the same machine at a quarter of the limits on the same machine and moment: four
    times the size takes about four times as long (a quadratic check would take sixteen). Not an absolute figure,
    which a loaded CI machine's two cores would make fail at random; the absolute bound only catches a hang."""
    from engine.machines.spec import MAX_STATES, MAX_TRANSITIONS

    for scenario in project.machines.glob("scenarios/momentum_*.yaml"):  # cases of the shipped machine, not this one
        scenario.unlink()

    def linted(states: int, transitions: int) -> float:
        (project.machines / "momentum.yaml").write_text(chain_machine(states, transitions), encoding="utf-8")
        started = time.perf_counter()
        found = problems(project)
        assert found == [], found[:3]
        return time.perf_counter() - started

    quarter = min(linted(MAX_STATES // 4, MAX_TRANSITIONS // 4) for _ in range(2))
    full = linted(MAX_STATES, MAX_TRANSITIONS)
    if full >= 8 * quarter + 0.5:  # once more, in case another process had the core: a slow check stays slow
        full = min(full, linted(MAX_STATES, MAX_TRANSITIONS))
    assert full < 8 * quarter + 0.5 and full < 20, (full, quarter)


def test_a_5_mb_machine_file_is_answered_in_under_5_seconds(project: ProjectCopy) -> None:
    text = chain_machine(5000, 85000, spread="none")
    assert len(text) > 5_000_000
    (project.machines / "momentum.yaml").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    p = only(problems(project))
    assert time.perf_counter() - started < 5
    assert p.file.endswith("machines/momentum.yaml") and (p.line, p.col) == (1, 1) and "over the limit" in p.message


def test_too_many_states_or_transitions_are_refused_with_the_limit(project: ProjectCopy) -> None:
    from engine.machines.spec import MAX_STATES, MAX_TRANSITIONS

    text = chain_machine(MAX_STATES + 1, MAX_TRANSITIONS + 1)
    (project.machines / "momentum.yaml").write_text(text, encoding="utf-8")
    found = problems(project)
    written = text.count("\n  - {trigger")
    assert [p.message for p in found] == [
        f"{MAX_STATES + 1} states: a machine may have at most {MAX_STATES}",
        f'{MAX_TRANSITIONS + 1} transitions ({written} as written; one counts once per source state, `source: "*"` '
        f"once per state it leaves): a machine may have at most {MAX_TRANSITIONS}",
    ]
    assert [p.path for p in found] == ["states", "transitions"]


@pytest.mark.parametrize("spread", ["*", "list"])
def test_a_wildcard_counts_once_per_state_it_leaves_up_to_the_limit(project: ProjectCopy, spread: str) -> None:
    """Ten `source: '*'` over 200 states are 1,990 transitions to the runtime and the lint, as ten lists of the
    199 other states are: both count so toward MAX_TRANSITIONS (a wildcard counted once let a machine of 2,000
    written wildcards, 398,000 transitions, through)."""
    from engine.machines.spec import MAX_STATES, MAX_TRANSITIONS

    for scenario in project.machines.glob("scenarios/momentum_*.yaml"):
        scenario.unlink()
    path = project.machines / "momentum.yaml"
    at_limit = chain_machine(MAX_STATES, MAX_TRANSITIONS, spread=spread)
    path.write_text(at_limit, encoding="utf-8")
    assert problems(project) == []
    over = chain_machine(MAX_STATES, MAX_TRANSITIONS + 1, spread=spread)
    written = over.count("\n  - {trigger")
    assert written < MAX_TRANSITIONS
    path.write_text(over, encoding="utf-8")
    (p,) = problems(project)
    assert (p.path, p.line) == ("transitions", over.splitlines().index("transitions:") + 1)
    assert p.message.startswith(f"{MAX_TRANSITIONS + 1} transitions")
    assert p.message.endswith(f": a machine may have at most {MAX_TRANSITIONS}")


def test_a_machine_with_thousands_of_mistakes_reports_the_first_hundred(project: ProjectCopy) -> None:
    from engine.machines.lint import MAX_PROBLEMS_PER_MACHINE

    bad = "".join(f"  - {{trigger: t{i}, source: [nowhere_{i}], dest: idle}}\n" for i in range(1500))
    project.replace("machines/crypto.yaml", "transitions:\n", "transitions:\n" + bad)
    started = time.perf_counter()
    found = [p for p in problems(project) if p.file.endswith("crypto.yaml")]
    assert time.perf_counter() - started < 4
    assert len(found) == MAX_PROBLEMS_PER_MACHINE + 1
    assert found[0].message == "1400 more problems in this machine are not shown: fix the ones above first"
    assert "unknown state 'nowhere_0'" in found[1].message


# --- one broken file never hides the others (issue 13, item 10) -----------------------------------------------


def test_a_rules_file_that_cannot_be_parsed_does_not_stop_the_machines_from_being_checked(project: ProjectCopy) -> None:
    project.replace("rules/guards.yaml", "guards:\n", "guards:\n  broken: [\n")
    project.replace("machines/crypto.yaml", "dest: managing", "dest: manageing")
    project.replace("config/bots.yaml", 'trade_start: "06:35"', 'trade_start: "25:00"')
    found = problems(project)
    assert [(Path(p.file).name, p.message.split(":")[0]) for p in found] == [
        ("bots.yaml", "'25"),
        ("crypto.yaml", "unknown state 'manageing' (did you mean 'managing'?)"),
        ("guards.yaml", "YAML syntax error"),
    ]


def test_two_broken_machine_files_and_a_broken_rule_file_in_one_run(project: ProjectCopy) -> None:
    project.replace("machines/momentum.yaml", "initial: idle", "initial: idle\n  oops: 1")
    project.replace("machines/options.yaml", "dest: managing", "dest: manageing")
    project.replace("machines/system.yaml", "kind: system", "kind: system\nkind: system")
    project.replace("rules/kill_conditions.yaml", "kill_conditions:", "kill_conditions:\n\tbad: tab")
    found = problems(project)
    assert sorted({Path(p.file).name for p in found}) == ["kill_conditions.yaml", "momentum.yaml", "options.yaml", "system.yaml"]
    assert len(found) == 4, "\n".join(map(str, found))
    assert any("did you mean 'managing'" in p.message for p in found)


def test_a_machine_file_with_a_schema_error_does_not_hide_the_lint_of_the_others(project: ProjectCopy) -> None:
    project.replace("machines/system.yaml", "    reason: The halt ended", "    reasn: The halt ended")
    project.replace("machines/crypto.yaml", "dest: managing", "dest: manageing")
    found = problems(project)
    assert len(found) == 2
    assert any("unknown state 'manageing'" in p.message for p in found)


def test_a_typo_in_a_guard_no_machine_uses_is_reported_by_validate(project: ProjectCopy) -> None:
    project.replace(
        "rules/guards.yaml", "guards:\n", "guards:\n  not_used_yet:\n    description: Spare.\n    expr: holds_positon\n"
    )
    p = only(problems(project))
    assert p.path == "guards.not_used_yet.expr" and "did you mean 'holds_position'" in p.message


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_rule_book_without_any_preflight_check_is_refused(project: ProjectCopy, how: str) -> None:
    """rules/preflight.yaml deleted (or its section left empty) validated OK, and every entry then passed
    preflight: market closed, quotes stale, the account blocked, the daily loss past its limit (the gate still
    holds the system's arming and the bot's limits, nothing else). As with preflight.yml, which the engine passes
    over, every check vanishing is refused."""
    path = project.rules / "preflight.yaml"
    if how == "deleted":
        path.unlink()
    else:
        path.write_text("preflight: {}\n", encoding="utf-8")
    p = only(problems(project))
    assert p.path == "preflight" and "no preflight check" in p.message, p


def test_one_preflight_check_is_enough_for_the_rule_book(project: ProjectCopy) -> None:
    (project.rules / "preflight.yaml").write_text("preflight:\n  market_open:\n    description: Open.\n    expr: tradable_now\n")
    assert problems(project) == []


def test_a_missing_kill_condition_is_said_where_the_kill_conditions_are_written(project: ProjectCopy) -> None:
    """It was said at rules/guards.yaml:0:0, the first rule file by name, which holds no kill condition."""
    text = (project.rules / "kill_conditions.yaml").read_text(encoding="utf-8")
    start = text.index("  api_failure_halt:")
    (project.rules / "kill_conditions.yaml").write_text(text[:start] + text[text.index("  data_stale_halt:") :])
    p = only(problems(project))
    assert p.file.endswith("rules/kill_conditions.yaml") and p.path == "kill_conditions", p
    assert p.line == project.line_of("rules/kill_conditions.yaml", "kill_conditions:") and p.col == 1, p
    assert "no rule for kill condition 'api_failure_halt'" in p.message


@pytest.mark.parametrize(
    ("file", "section", "kind", "words"),
    [
        ("guards.yaml", "guards", "guard", "the machines use 20 guards (bot_halted, "),
        ("kill_conditions.yaml", "kill_conditions", "kill condition", "the kill switch would have no rule "),
        ("preflight.yaml", "preflight", "preflight check", "every entry would go out whatever the market"),
        ("signals.yaml", "signals", "signal", "no bot's signal.mode in bots.yaml names a declared signal"),
    ],
)
def test_a_rule_file_gone_is_named_once_without_what_follows_from_it(
    project: ProjectCopy, file: str, section: str, kind: str, words: str
) -> None:
    """rules/guards.yaml deleted was told as 86 unknown guards of the machines, never naming the file; a deleted
    kill_conditions.yaml as four problems at `rules:0:0`, signals.yaml as each bot's unknown signal mode."""
    (project.rules / file).unlink()
    p = only(problems(project))
    assert (p.file, p.line, p.col, p.path) == (str(project.rules), 0, 0, section), p
    assert p.message.startswith(f"no {kind} in {project.rules}/: {project.rules}/{file} is missing; {words}"), p.message
    assert p.message.endswith(f"; put it back, or declare them under {section}:"), p.message


def test_a_rule_section_emptied_is_said_once_at_its_file(project: ProjectCopy) -> None:
    (project.rules / "kill_conditions.yaml").write_text("kill_conditions: {}\n", encoding="utf-8")
    p = only(problems(project))
    assert p.message.startswith(f"no kill condition in {project.rules}/: the kill switch would have no rule"), p.message
    assert f"put the shipped kill conditions back in {project.rules}/kill_conditions.yaml" in p.message


def test_a_bot_machine_without_entering_is_refused_saying_why(project: ProjectCopy) -> None:
    """The engine cancels at a restart every working entry of a bot whose machine is not in `entering`
    (engine/trading/engine.py, `_cancel_abandoned_entries`), but validation did not require the state: a momentum
    machine that named it `buying` validated, and a restart cancelled the entry it was waiting on."""
    for path in [project.machines / "momentum.yaml", *(project.machines / "scenarios").glob("momentum*.yaml")]:
        path.write_text(re.sub(r"\bentering\b", "buying", path.read_text(encoding="utf-8")), encoding="utf-8")
    p = only(problems(project))
    assert p.file.endswith("momentum.yaml") and p.path == "states"
    assert p.message.startswith("momentum machines need the state 'entering': the engine keeps a bot's working entry")
    assert "a restart cancels it as abandoned" in p.message


def test_an_entry_that_waits_elsewhere_than_entering_is_refused(project: ProjectCopy) -> None:
    """With `entering` kept but an `open_entry` leading elsewhere, the entry worked while the machine was in that
    other state: the restart's check of `entering` took it for abandoned all the same."""
    momentum = "machines/momentum.yaml"
    project.replace(momentum, "    source: armed\n    dest: entering\n", "    source: armed\n    dest: in_position\n")
    p = only(problems(project))
    assert p.path == "transitions[9].dest" and p.line == project.line_of(momentum, "trigger: enter") + 2
    assert "an entry sent here waits in 'in_position'" in p.message and "make 'entering' the destination" in p.message


NOT_READY = "{not: system_ready}"
NOT_READY_NOR_KILL = "{all: [{not: system_ready}, {not: kill_triggered}]}"
SHADOWS = "a `when` that holds whenever this one's does"


@pytest.mark.parametrize(
    ("first", "second", "how"),
    [
        (NOT_READY, NOT_READY, "the same `when`"),
        (NOT_READY, NOT_READY_NOR_KILL, SHADOWS),
        ("{any: [{not: system_ready}, kill_triggered]}", NOT_READY, SHADOWS),
        (NOT_READY_NOR_KILL, "{all: [{not: kill_triggered}, {not: system_ready}]}", "the same `when`"),
    ],
)
def test_a_transition_shadowed_by_an_earlier_when_from_its_state_is_refused(
    project: ProjectCopy, first: str, second: str, how: str
) -> None:
    """A transition listed after another from the same state with the same `when:` (or one its own implies by form)
    can never fire: the first fires on every tick it could. It validated, and `diagram` and `table` drew it as a
    live edge."""
    system = "machines/system.yaml"
    project.replace(system, "  halted:\n    description:", "  parked:\n    description: Parked.\n  halted:\n    description:")
    project.replace(system, "source: [idle, armed]", "source: [idle, armed, parked]", count=2)
    project.replace(system, f"    when: {NOT_READY}\n", f"    when: {first}\n")
    extra = (
        f"  - trigger: park\n    source: armed\n    dest: parked\n    when: {second}\n"
        "  - trigger: unpark\n    source: parked\n    dest: idle\n    when: system_ready\n"
    )
    path = project.root / system
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    p = only(problems(project))
    assert p.path == "transitions[5].when" and p.line == project.line_of(system, "trigger: park") + 3
    disarm = project.line_of(system, "trigger: disarm")
    assert p.message.startswith(f"never fires from 'armed': transition 'disarm' (line {disarm}) comes first"), p.message
    assert how in p.message


def test_different_whens_from_one_state_still_validate(project: ProjectCopy) -> None:
    """A `when:` that does not imply an earlier one (`not system_ready` after `not system_ready and not
    kill_triggered`) can fire: let be."""
    system = "machines/system.yaml"
    project.replace(system, f"    when: {NOT_READY}\n", f"    when: {NOT_READY_NOR_KILL}\n")
    path = project.root / system
    settle = f"  - trigger: settle\n    source: armed\n    dest: idle\n    when: {NOT_READY}\n"
    path.write_text(path.read_text(encoding="utf-8") + settle, encoding="utf-8")
    assert problems(project) == []
