"""Which keys a sweep may set: every key the schema knows, written in bots.yaml or left to its default.

A key bots.yaml leaves out was called "unknown" (with the keys the file happens to write as the list to choose
from), though the schema knows it: an optional key, simply not set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.loader import load_config
from engine.replay.sweep import prepare, read_sweep
from tests.conftest import ProjectCopy
from tests.replay.conftest import MONDAY_OPEN, load, session_bars

SPREAD = "    max_spread_pct: 10           # skip contracts whose spread is wider, in percent of the mid\n"


def _refused(project: ProjectCopy, tmp_path: Path, text: str) -> list[Problem]:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text, encoding="utf-8")
    config = load(project).config
    assert config is not None
    with pytest.raises(ConfigError) as caught:
        read_sweep(sweep, config.bots_doc)
    return caught.value.problems


def _prepared(project: ProjectCopy, tmp_path: Path, text: str) -> list[Path]:
    """Each run's config folder, written and loaded by the engine's own loader."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text, encoding="utf-8")
    session_bars(tmp_path / "data", "AAPL", MONDAY_OPEN, [190.0])  # a folder the sweep can replay (`_check_data`)
    _overrides, specs = prepare(sweep, load(project), tmp_path / "out", machines_dir=project.machines,
                                rules_dir=project.rules, data_dir=tmp_path / "data")  # fmt: skip
    return [Path(spec.config_dir) for spec in specs]


def test_an_optional_key_bots_yaml_leaves_out_is_swept(project: ProjectCopy, tmp_path: Path) -> None:
    project.replace("config/bots.yaml", SPREAD, "")
    runs = _prepared(project, tmp_path, "optionsbot.chain_rules.max_spread_pct: [5, 20]\n")
    spreads = [load_config(run).bots.optionsbot.chain_rules.max_spread_pct for run in runs]
    assert spreads == [5, 20]


def test_an_optional_mapping_bots_yaml_leaves_out_is_made_by_the_keys_that_fill_it(project: ProjectCopy, tmp_path: Path) -> None:
    """optionsbot.signal is optional (the bot then runs placeholder_options_v1 with its defaults)."""
    sweep = "optionsbot.signal.mode: [placeholder_options_v1]\noptionsbot.signal.params.min_move_pct: [0.2, 0.3]\n"
    runs = _prepared(project, tmp_path, sweep)
    signals = [load_config(run).bots.optionsbot.signal for run in runs]
    assert [(s.mode, dict(s.params)) for s in signals] == [
        ("placeholder_options_v1", {"min_move_pct": 0.2}),
        ("placeholder_options_v1", {"min_move_pct": 0.3}),
    ]
    written = (runs[0] / "bots.yaml").read_text(encoding="utf-8")
    assert "  signal:\n    mode: placeholder_options_v1\n    params:\n      min_move_pct: 0.2\n" in written


def test_a_key_that_leaves_an_optional_mapping_incomplete_is_told_once_and_not_called_unknown(
    project: ProjectCopy, tmp_path: Path
) -> None:
    (problem,) = _refused(project, tmp_path, "optionsbot.signal.mode: [placeholder_options_v1, other]\n")
    assert (problem.line, problem.col, problem.path) == (1, 1, "optionsbot.signal.mode")
    assert problem.message == (
        "optionsbot.signal: missing required key 'params' (bots.yaml does not set optionsbot.signal: set it there, "
        "or sweep optionsbot.signal whole)"
    )


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("optionsbot.chain_rules.max_sprad_pct", "unknown key 'max_sprad_pct' (did you mean 'max_spread_pct'?)"),
        (
            "optionsbot.nope.x",
            "unknown key 'nope' (allowed: bot_id, chain_rules, enabled, exits, risk, session, signal, tickers)",
        ),
        ("optionsbot.signal.nope", "unknown key 'nope' (allowed: mode, params)"),  # under a mapping bots.yaml leaves out
        (
            "optionsbot.nope[bot].x",
            "unknown key 'nope' (allowed: bot_id, chain_rules, enabled, exits, risk, session, signal, tickers)",
        ),
    ],
)
def test_a_key_the_schema_does_not_know_is_unknown_told_once(project: ProjectCopy, tmp_path: Path, key: str, said: str) -> None:
    project.replace("config/bots.yaml", SPREAD, "")
    (problem,) = _refused(project, tmp_path, f"{key}: [1, 2]\n")
    assert (problem.line, problem.col, problem.path, problem.message) == (1, 1, key, said)


def test_a_bot_in_a_list_bots_yaml_leaves_out_is_not_called_unknown(project: ProjectCopy, tmp_path: Path) -> None:
    (problem,) = _refused(project, tmp_path, "optionsbot.signal[x].mode: [a]\n")
    assert problem.message == "no bot 'x': optionsbot.signal is not set in bots.yaml"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("momentum_bots[mom_AAPL].exits.stop_loss_pct[0]",
         "momentum_bots[mom_AAPL].exits.stop_loss_pct is not a list: write momentum_bots[mom_AAPL].exits.stop_loss_pct"),
        ("exitbot[x].enabled", "exitbot is not a list: write exitbot.enabled"),
        ("momentum_bots[mom_AAPL].exits[x].stop_loss_pct",
         "momentum_bots[mom_AAPL].exits is not a list: write momentum_bots[mom_AAPL].exits.stop_loss_pct"),
        ("optionsbot.tickers.x", "optionsbot.tickers is a list: address a bot by its bot_id, optionsbot.tickers[bot_id]"),
    ],
)
def test_a_selector_on_what_is_no_list_is_corrected_as_the_key_was_written(
    project: ProjectCopy, tmp_path: Path, key: str, said: str
) -> None:
    """The correction named the bot by its index in the list (momentum_bots[0]), which the sweep file cannot use, and a
    selector on the last key ended it with a dot: `write momentum_bots[0].exits.stop_loss_pct.`"""
    (problem,) = _refused(project, tmp_path, f"{key}: [1]\n")
    assert (problem.path, problem.message) == (key, said)


TSLA_LOSS = "momentum_bots[mom_TSLA].exits.stop_loss_pct: [0.3, 0.5]\n"


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        (TSLA_LOSS, 1, "enabled: false in bots.yaml"),
        (f"momentum_bots[mom_TSLA].enabled: [false]\n{TSLA_LOSS}", 2, "the sweep's own enabled values"),
    ],
)
def test_a_key_of_a_bot_disabled_in_every_run_is_refused_at_its_line(
    project: ProjectCopy, tmp_path: Path, text: str, line: int, why: str
) -> None:
    """The shipped mom_TSLA is `enabled: false`: sweeping its stop loss ran every combination with the bot never
    ticking, and the table showed each value beside the same figures, as if it made no difference."""
    (problem,) = _refused(project, tmp_path, text)
    assert (problem.line, problem.col, problem.path) == (line, 1, "momentum_bots[mom_TSLA].exits.stop_loss_pct")
    assert problem.message == (
        f"momentum_bots[mom_TSLA] is disabled in every run ({why}): a disabled bot never trades, so every run "
        "would be the same; set enabled: true in bots.yaml, or sweep momentum_bots[mom_TSLA].enabled with true "
        "among its values"
    )


@pytest.mark.parametrize(
    "text",
    [f"momentum_bots[mom_TSLA].enabled: [true]\n{TSLA_LOSS}", f"{TSLA_LOSS}momentum_bots[mom_TSLA].enabled: [false, true]\n"],
)
def test_a_disabled_bot_swept_enabled_may_have_its_keys_swept(project: ProjectCopy, tmp_path: Path, text: str) -> None:
    """Enabled in some run, the bot's values make a difference there: the sweep stands."""
    config = load(project).config
    assert config is not None
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text, encoding="utf-8")
    assert len(read_sweep(sweep, config.bots_doc)) == 2


@pytest.mark.parametrize(
    ("bot", "key", "value"),
    [("portfoliobot", "cash_reserve_pct", "[10, 90]"), ("exitbot", "cooloff_minutes", "[5, 390]")],
)
def test_a_key_of_a_disabled_supervisor_is_refused_at_its_line(
    project: ProjectCopy, tmp_path: Path, bot: str, key: str, value: str
) -> None:
    """The check knew only the trading bots: a disabled portfoliobot's or exitbot's keys were swept, every run was
    the same, and the table showed each value beside the same figures. Enabled, the sweep stands."""
    project.replace("config/bots.yaml", f"{bot}:\n  enabled: true", f"{bot}:\n  enabled: false")
    (problem,) = _refused(project, tmp_path, f"momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3]\n{bot}.{key}: {value}\n")
    assert (problem.line, problem.col, problem.path) == (2, 1, f"{bot}.{key}")
    assert problem.message == (
        f"{bot} is disabled in every run (enabled: false in bots.yaml): a disabled {bot} does nothing, so every run "
        f"would be the same; set enabled: true in bots.yaml, or sweep {bot}.enabled with true among its values"
    )
    config = load(project).config
    assert config is not None
    sweep = tmp_path / "swept_on.yaml"
    sweep.write_text(f"{bot}.enabled: [true]\n{bot}.{key}: {value}\n", encoding="utf-8")
    assert len(read_sweep(sweep, config.bots_doc)) == 2


def test_every_part_of_bots_yaml_with_its_own_switch_is_a_bot_to_the_check() -> None:
    """The check of disabled bots missed the supervisors because it listed bots by hand: each top-level part of
    the bots schema with an `enabled` of its own must be one `_bot_of` knows, so a part added later is not missed."""
    import json

    from engine.paths import PROJECT_ROOT
    from engine.replay.sweep import _bot_of

    schema = json.loads((PROJECT_ROOT / "schemas" / "bots.schema.json").read_text(encoding="utf-8"))
    switched = [name for name, part in schema["properties"].items() if "enabled" in part.get("properties", {})]
    assert switched and all(_bot_of((name, "enabled", "x")) == (name,) for name in switched), switched
    assert _bot_of(("momentum_bots", 0, "exits", "stop_loss_pct")) == ("momentum_bots", 0)


def test_a_key_ending_in_a_line_break_is_not_the_key_without_it(project: ProjectCopy, tmp_path: Path) -> None:
    """`"momentum_bots[mom_AAPL].exits.stop_loss_pct\\n"` was taken as stop_loss_pct (`$` matches before a final
    newline), and sweep.csv's header then held a line break inside a column name; a trailing space was refused."""
    (problem,) = _refused(project, tmp_path, '"momentum_bots[mom_AAPL].exits.stop_loss_pct\\n": [0.3]\n')
    assert (problem.line, problem.col) == (1, 1)
    assert problem.message.startswith("'stop_loss_pct\\n' is not a key: write keys as a.b.c"), problem.message
