"""Parameter sweeps (issue 9, item 8): one backtest per combination of a grid of bots.yaml overrides.

A sweep file maps keys of bots.yaml to lists of values:

    momentum_bots[mom_AAPL].exits.stop_loss_pct: [0.3, 0.5, 0.8]
    cryptobot.risk.max_trades_per_day: [2, 4]

A bot inside a list is addressed by its bot_id (`momentum_bots[mom_AAPL]`), then a dotted path. A key the schema
knows may be swept though bots.yaml leaves it out (an optional key left to its default); only one the schema does
not know is "unknown". `read_sweep`
checks every key and every value against bots.yaml and its schema, each problem at its place in the sweep file;
`prepare` writes each combination's config (bots.yaml as written, with only the swept values changed) to its
own `run-NNN/config/` and validates it with the engine's own loader, so an invalid combination is refused
before anything runs. `run_one(spec) -> row` is the whole of one run: the local process pool and a Ray remote
call both run it, and `sweep_rows` sorts what they return into the comparison table.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import io
import itertools
import os
import re
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.config.errors import ConfigError, PathPart, Problem, format_path
from engine.config.yaml_source import YamlDocument, load_yaml
from engine.core.stop import Terminated, sigterm_raises
from engine.paths import escaped

# metric -> True when a larger value ranks first
METRICS: dict[str, bool] = {
    "realized_pnl": True,
    "trades": True,
    "win_rate": True,
    "sharpe": True,
    "max_drawdown_pct": False,
    "return_pct": True,
}
DEFAULT_METRIC = "return_pct"
"""The final equity's return on the starting cash: positions still open at the end count at their last price. By
realized P&L, a combination that never closed its loser (a long time stop) ranked above one that cut it, though
it lost more."""
SUMMARY_FIGURES = ("trades", "win_rate", "realized_pnl", "unrealized_pnl", "max_drawdown_usd", "max_drawdown_pct",
                   "sharpe", "return_pct")  # fmt: skip
"""The account's figures taken from each run's summary.json (its `total`)."""
FIGURES = (*SUMMARY_FIGURES[:4], "open_at_end", *SUMMARY_FIGURES[4:])
"""sweep.csv's figures: the summary's, and `open_at_end`, the positions still held when the data ended (the summary's
`open_positions`): a run's realized P&L says nothing of them, its unrealized P&L and return do."""
NOTE_SEPARATOR = " | "
"""Between a row's notes in sweep.csv's `notes` column (each note is one line, escaped as the terminal's)."""
BOTS_SCHEMA = "bots.schema.json"
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\[\]]+)\])?$")  # fullmatch: `$` matches before a final newline


@dataclass(frozen=True)
class Override:
    """One key of the sweep file: where it points in bots.yaml's data, and its values."""

    key: str
    path: tuple[PathPart, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, picklable and made of plain paths (the same on every machine of a cluster)."""

    name: str
    overrides: tuple[tuple[str, Any], ...]
    config_dir: str
    machines_dir: str
    rules_dir: str
    data_dir: str
    out_dir: str
    start: str | None = None  # ISO date or datetime, as the command line took it
    end: str | None = None
    cash: float | None = None
    fill_timing: str = "next"
    slippage_bps: float = 2.0
    # The fill model's charges, FillModel's own defaults (engine/replay/fills.py): every run is charged alike
    commission_per_share: float = 0.0
    commission_per_contract: float = 0.0
    crypto_maker_fee: float = 0.0015
    crypto_taker_fee: float = 0.0025
    # The `.env` the command read, by its path: a worker reads the keys and the token to mask from it and from its
    # own environment (`_secrets`), so no secret travels in a spec (to a Ray cluster, or a pickle on disk).
    env_file: str | None = None


def _secrets(env_file: str | None) -> tuple[str, ...]:
    """The keys and the token a worker masks in its run's log, state file and error: its environment's over the
    `.env` the command read, when this machine has it. A `.env` that cannot be read leaves the environment's alone
    (the command refused it already where it could read it)."""
    from engine.brokers.factory import read_environment
    from engine.trading.runner import maskable_keys

    path = Path(env_file) if env_file is not None else None
    try:
        return maskable_keys(read_environment(path if path is not None and path.is_file() else None))
    except Exception:  # an unreadable .env: the environment's keys are still masked
        return maskable_keys(read_environment())


def _resolve(key: str, data: Any) -> tuple[tuple[PathPart, ...], str | None, int | None]:
    """The data path `key` names in bots.yaml, or a message saying why it names none; and how much of the path
    bots.yaml holds (the index of the first key it leaves out, or None when it holds the whole path).

    A key bots.yaml leaves out is resolved all the same, the mappings on the way made when a value is set: an
    optional key (`optionsbot.signal`, a chain rule left to its default) may be swept. Whether the schema knows the
    key is not asked here (see `_unknown_key`): a key missing from the file is not thereby unknown."""
    path: list[PathPart] = []
    absent: int | None = None
    node = data
    segments = key.split(".")
    for number, segment in enumerate(segments):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            return (), f"{segment!r} is not a key: write keys as a.b.c, a bot in a list as momentum_bots[bot_id]", None
        name, selector = match.group(1), match.group(2)
        last = number == len(segments) - 1
        where = format_path(path) or "bots.yaml"
        if not isinstance(node, dict):
            return (), f"{where} holds no keys", None
        if name not in node:
            absent = len(path) if absent is None else absent
            path.append(name)
            if selector is not None:  # a list the file leaves out holds no bot to address
                return tuple(path), f"no bot '{selector}': {format_path(path)} is not set in bots.yaml", absent
            node = {}
            continue
        path.append(name)
        node = node[name]
        written = ".".join([*segments[:number], name])  # as the sweep names it: a bot by its bot_id, not its index
        if selector is not None:
            if not isinstance(node, list):
                rest = "".join(f".{s}" for s in segments[number + 1 :])
                return (), f"{written} is not a list: write {written}{rest}", None
            ids = [item.get("bot_id") for item in node if isinstance(item, dict)]
            if selector not in ids:
                return (), f"no bot '{selector}' in {format_path(path)} (bots: {', '.join(str(i) for i in ids)})", None
            index = ids.index(selector)
            path.append(index)
            node = node[index]
        elif isinstance(node, list) and not last:
            return (), f"{written} is a list: address a bot by its bot_id, {written}[bot_id]", None
    if path and path[-1] == "bot_id":
        return (), "a bot_id cannot be swept (the sweep addresses bots by it)", None
    return tuple(path), None, absent


def _set(root: Any, path: Sequence[PathPart], value: Any) -> None:
    """Set `value` at `path` in `root` (plain data or ruamel's round-trip nodes), making each mapping on the way
    that bots.yaml leaves out: a swept optional key may sit in an optional mapping the file does not write."""
    node = root
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = copy.deepcopy(value)


def apply(data: Any, changes: Iterable[tuple[tuple[PathPart, ...], Any]]) -> Any:
    """A deep copy of `data` with each path set to its value."""
    result = copy.deepcopy(data)
    for path, value in changes:
        _set(result, path, value)
    return result


def _unknown_key(bots_doc: YamlDocument, path: tuple[PathPart, ...]) -> str | None:
    """The schema's "unknown key" message for the last key of `path`, a key bots.yaml leaves out; None when the
    schema knows it (an optional key, simply not set). Asked of the schema, not of the file: only the schema says
    which keys exist."""
    from engine.config.schema_check import schema_problems

    probe = apply(bots_doc.data, [(path, {})])
    doc = YamlDocument(bots_doc.path, probe, bots_doc.key_positions, bots_doc.value_positions, bots_doc.lines)
    found = (p for p in schema_problems(doc, BOTS_SCHEMA) if p.path == format_path(path))
    return next((p.message for p in found if p.message.startswith("unknown key")), None)


def _bots_problems(data: Any, bots_doc: YamlDocument, signals: Mapping[str, Any] | None) -> list[Problem]:
    """What the engine's loader (engine/config/loader.py) finds in bots.yaml's data: the schema, then the checks."""
    from engine.config import checks
    from engine.config.build import build
    from engine.config.model import BotsConfig
    from engine.config.schema_check import schema_problems

    doc = YamlDocument(bots_doc.path, data, bots_doc.key_positions, bots_doc.value_positions, bots_doc.lines)
    problems = schema_problems(doc, BOTS_SCHEMA)
    if problems:
        return problems
    try:
        bots = build(BotsConfig, data)
    except (TypeError, ValueError, OverflowError) as exc:  # as the loader: a value past the schema is still a problem
        return [Problem(doc.path, 1, 1, "", f"a value in this file cannot be read: {exc}")]
    for check in checks.BOTS_CHECKS:
        problems.extend(check(bots, doc))
    if signals is not None:
        problems.extend(checks.signal_modes_known(bots, doc, signals))
    return problems


MAX_RUNS = 1000
"""The most combinations one sweep runs. Each is a folder of config and a whole backtest, and every one is
written and loaded before the first runs: a grid of a million (three keys of a hundred values) would fill the
disk for hours before telling anything. Past this the sweep is refused, before a value is checked."""


def _value_key(value: Any) -> tuple[str, Any]:
    """Values the same to the engine compare the same: 1 and 1.0 are one value (YAML types them apart), true and
    1 are not."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("other", repr(value))


def _overlap(path: tuple[PathPart, ...], other: tuple[PathPart, ...]) -> bool:
    """Whether setting one path also sets (part of) the other: the same place, or one inside the other."""
    shorter = min(len(path), len(other))
    return path[:shorter] == other[:shorter]


TRADING_BOTS = ("optionsbot", "cryptobot")
"""bots.yaml's top-level bots that trade (beside `momentum_bots`, a list of them)."""
SUPERVISORS = ("portfoliobot", "exitbot")
"""bots.yaml's top-level bots that trade nothing themselves but size (portfoliobot) or stop (exitbot) the others.
Each has an `enabled` switch too: disabled, its other keys change nothing, as a disabled trading bot's."""


def _bot_of(path: tuple[PathPart, ...]) -> tuple[PathPart, ...] | None:
    """The path of the bot a swept key lies inside (`momentum_bots[i]`, `optionsbot`, `cryptobot`, `portfoliobot`,
    `exitbot`: every part of bots.yaml with its own `enabled`), or None for a key outside every bot, or one holding
    bots whole (`momentum_bots`)."""
    if path[:1] == ("momentum_bots",) and len(path) > 2 and isinstance(path[1], int):
        return path[:2]
    if len(path) > 1 and path[0] in (*TRADING_BOTS, *SUPERVISORS):
        return path[:1]
    return None


def _disabled_bots(keys: Sequence[tuple[Any, tuple[PathPart, ...], Any, list[Any], int, int]], bots_doc: YamlDocument,
                   sweep_file: str) -> list[Problem]:  # fmt: skip
    """A key inside a bot that is disabled in every run: bots.yaml's `enabled: false`, not swept to true.

    A disabled bot never ticks (a disabled portfoliobot sizes nothing, a disabled exitbot stops nothing), so its
    swept values changed nothing: every run was the same, and the table showed each value beside the same
    figures, as if the value made no difference to the strategy. Refused at the key, with the two ways to mean
    it. Every part of bots.yaml with an `enabled` of its own counts (`_bot_of`), the supervisors too."""
    swept: dict[tuple[PathPart, ...], list[Any]] = {path: values for _k, path, _r, values, _l, _c in keys}
    problems: list[Problem] = []
    for key, path, _raw, _values, line, col in keys:
        bot = _bot_of(path)
        if bot is None or path == (*bot, "enabled"):
            continue
        node: Any = bots_doc.data
        for part in bot:
            node = node[part]
        enabled = swept.get((*bot, "enabled"), [node.get("enabled") if isinstance(node, dict) else None])
        if any(value is True for value in enabled):
            continue
        name = str(key).rsplit(".", len(path) - len(bot))[0]  # the bot as the sweep names it
        why = "the sweep's own enabled values" if (*bot, "enabled") in swept else "enabled: false in bots.yaml"
        does = f"disabled {name} does nothing" if bot[0] in SUPERVISORS else "disabled bot never trades"
        problems.append(Problem(sweep_file, line, col, str(key), f"{name} is disabled in every run ({why}): a "
                                f"{does}, so every run would be the same; set enabled: true in "
                                f"bots.yaml, or sweep {name}.enabled with true among its values"))  # fmt: skip
    return problems


def read_sweep(sweep_path: Path, bots_doc: YamlDocument, signals: Mapping[str, Any] | None = None) -> list[Override]:
    """The sweep file's overrides, each key and value checked against bots.yaml; ConfigError with every problem."""
    from engine.config.schema_check import show_value
    from engine.paths import shown

    sweep = load_yaml(sweep_path, shown(sweep_path))
    problems = list(sweep.problems)
    if not problems and (not isinstance(sweep.data, dict) or not sweep.data):
        problems.append(Problem(sweep.path, 1, 1, "", "a sweep maps keys of bots.yaml to lists of values"))
    if problems:
        raise ConfigError(problems)
    keys: list[tuple[Any, tuple[PathPart, ...], Any, list[Any], int, int]] = []
    made: dict[str, tuple[tuple[PathPart, ...], ...]] = {}  # by key: the mappings bots.yaml leaves out that it sets
    for key, raw in sweep.data.items():
        line, col = sweep.position((key,), of_key=True)
        path, refused, absent = _resolve(str(key), bots_doc.data)
        # each key from the first bots.yaml leaves out: `signal.nope` under an absent `signal` is unknown too
        unknown = None
        for end in range(absent + 1, len(path) + 1) if absent is not None else ():
            unknown = _unknown_key(bots_doc, path[:end])
            if unknown is not None:
                break
        if unknown is not None:  # the key's problem, the same for every value: told once
            problems.append(Problem(sweep.path, line, col, str(key), unknown))
            continue
        if refused is not None:
            problems.append(Problem(sweep.path, line, col, str(key), refused))
            continue
        clash = next(((k, other, at) for k, other, _raw, _values, at, _col in keys if _overlap(path, other)), None)
        if clash is not None:
            # Both would be written, the later over the earlier, and the table would show a value never run.
            same = ("the same setting as" if len(path) == len(clash[1])
                    else "a setting inside" if len(path) > len(clash[1]) else "a setting that holds")
            problems.append(Problem(sweep.path, line, col, str(key),
                                    f"sweeps {same} {clash[0]} (line {clash[2]}): each setting is swept by one key"))
            continue
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            problems.append(sweep.problem((key,), "no values: give a list of at least one"))
            continue
        keys.append((key, path, raw, values, line, col))
        made[str(key)] = tuple(path[:end] for end in range(absent + 1, len(path))) if absent is not None else ()
    problems.extend(_disabled_bots(keys, bots_doc, sweep.path))
    runs = 1
    for *_, values, _line, _col in keys:
        runs *= len(values)
    if runs > MAX_RUNS:
        sizes = " x ".join(str(len(values)) for *_, values, _line, _col in keys)
        line, col = keys[0][4], keys[0][5]
        problems.append(Problem(sweep.path, line, col, "", f"{runs:,} combinations ({sizes}): a sweep runs at most "
                                f"{MAX_RUNS:,}; give fewer values, or split it into several sweeps"))
        raise ConfigError(problems)
    overrides: list[Override] = []
    for key, path, raw, values, line, col in keys:
        if len(values) != len({_value_key(v) for v in values}):
            problems.append(sweep.problem((key,), "a value is listed twice"))
        ok = True
        for index, value in enumerate(values):
            found = _bots_problems(apply(bots_doc.data, [(path, value)]), bots_doc, signals)
            for p in found:
                said = p.message if p.path == format_path(path) else f"{p.path}: {p.message}"
                mapping = next((m for m in made[str(key)] if format_path(m) == p.path), None)
                if mapping is not None:
                    # A mapping the sweep makes lacks a key the schema requires (`optionsbot.signal` needs its
                    # params): the key's problem, told once, unless another key of the sweep sets what is inside
                    # it (then the whole combination is checked, by `prepare`).
                    if any(len(o) > len(mapping) and o[: len(mapping)] == mapping for k, o, *_ in keys if k != key):
                        continue
                    told = Problem(sweep.path, line, col, str(key), f"{said} (bots.yaml does not set {p.path}: set "
                                   f"it there, or sweep {p.path} whole)")  # fmt: skip
                    problems.extend([] if told in problems else [told])
                else:
                    at = sweep.position((key, index) if isinstance(raw, list) else (key,))
                    problems.append(Problem(sweep.path, *at, str(key), f"{show_value(value)} is refused: {said}"))
                ok = False
        if ok:
            overrides.append(Override(str(key), path, tuple(values)))
    if problems:
        raise ConfigError(problems)
    return overrides


def combinations(overrides: Sequence[Override]) -> list[tuple[tuple[Override, Any], ...]]:
    """Every combination, the last key varying fastest (the sweep file's order)."""
    return [tuple(zip(overrides, values, strict=True)) for values in itertools.product(*(o.values for o in overrides))]


def _write_bots(source: Path, target: Path, changes: Iterable[tuple[tuple[PathPart, ...], Any]]) -> None:
    """bots.yaml as written (comments, order, quoting), with only the swept values changed."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped files' layout
    node = yaml.load(source.read_text(encoding="utf-8"))
    for path, value in changes:
        _set(node, path, value)
    stream = io.StringIO()
    yaml.dump(node, stream)
    target.write_text(stream.getvalue(), encoding="utf-8")


def _check_out(out_dir: Path) -> None:
    """ConfigError unless `out_dir` is an empty folder that can be written (it is made if missing): a file, a
    folder holding something, or one that cannot be written is told before any run's folder is, never as the
    traceback of the first mkdir. A folder made here and refused is removed again."""
    from engine.paths import ensure_writable_folder, shown

    def refuse(message: str) -> ConfigError:
        return ConfigError([Problem(shown(out_dir), 0, 0, "", message)])

    existed = out_dir.is_dir()
    if out_dir.exists() and not existed:
        raise refuse("not a folder: a sweep writes a new folder (give another --out)")
    try:
        if existed and any(out_dir.iterdir()):
            raise refuse("not empty: a sweep writes a new folder (give another --out)")
        ensure_writable_folder(out_dir)
    except OSError as exc:
        if not existed and out_dir.is_dir():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise refuse(f"cannot write the sweep there ({exc.strerror or exc})") from None


def _check_data(data_dir: Path) -> Any:
    """DataError (every problem of every file, as `backtest --data` tells them) when the data folder cannot be
    replayed: a file out of time order, a duplicate timestamp, a NaN, a missing column, a folder with no data.

    Every run of a sweep reads the same folder, so what is wrong with it is wrong for each combination alike: told
    once, before any run's folder is written, not as the same error in every row of sweep.csv. Read whole here and
    again by each run (a worker, a Ray node): a file changed in between is still refused by the run that reads it.
    What depends on the combination (a bot without data, `MissingData`, when a sweep enables it) stays the run's."""
    from engine.data.dataset import DataSet

    return DataSet.open(data_dir)


def _check_window(data: Any, start: str | None, end: str | None, timezone_name: str) -> None:
    """DataError when the window (`--from`, `--to`) holds no row of any symbol of the data folder: every run would
    be refused for it (a single backtest refuses it before writing anything), and the sweep wrote a folder and a
    table of failed runs, one per combination, up to a thousand of them. Which bots a combination runs cannot
    change that: no symbol has data there."""
    from zoneinfo import ZoneInfo

    from engine.data.errors import DataError
    from engine.data.files import iso
    from engine.replay.backtest import _bound, _first_known, bar_interval

    tz = ZoneInfo(timezone_name)
    begin, finish = _bound(_when(start), end=False, tz=tz), _bound(_when(end), end=True, tz=tz)
    interval = bar_interval(data)
    spans = [span for symbol in data.symbols if (span := _first_known(data, symbol, interval)) is not None]
    if not spans or any((begin is None or b >= begin) and (finish is None or a <= finish) for a, b in spans):
        return
    first, last = min(a for a, _b in spans), max(b for _a, b in spans)
    asked = f"{iso(begin) if begin else 'its start'} to {iso(finish) if finish else 'its end'}"
    raise DataError([Problem(str(data.folder), 0, 0, "", f"no data in the sweep's window ({asked}): the data runs "
                             f"from {iso(first)} to {iso(last)}, so every run would have none; give --from and --to "
                             "within it")])  # fmt: skip


def prepare(
    sweep_path: Path,
    report: Any,
    out_dir: Path,
    *,
    machines_dir: Path,
    rules_dir: Path,
    data_dir: Path,
    start: str | None = None,
    end: str | None = None,
    cash: float | None = None,
    fill_timing: str = "next",
    slippage_bps: float = 2.0,
    env_file: Path | None = None,
    commission_per_share: float = 0.0,
    commission_per_contract: float = 0.0,
    crypto_maker_fee: float = 0.0015,
    crypto_taker_fee: float = 0.0025,
) -> tuple[list[Override], list[RunSpec]]:
    """Check the sweep against the validated `report`, write each run's config to `out_dir/run-NNN/config/` and
    validate it with the engine's loader. ConfigError (every problem) when anything is refused, the data folder
    included (DataError, `_check_data`); `out_dir` is then left as it was found."""
    from engine.config.loader import load_config
    from engine.paths import shown

    config = report.config
    signals = report.book.signal_specs() if report.book is not None else None
    overrides = read_sweep(sweep_path, config.bots_doc, signals)
    from engine.replay.backtest import out_in_data

    created = not out_dir.exists()
    inside = out_in_data(out_dir, data_dir)  # as for a single backtest
    if inside is not None:
        raise ConfigError([Problem(shown(out_dir), 0, 0, "", inside)])
    _check_out(out_dir)
    try:
        _check_window(_check_data(data_dir), start, end, config.settings.system.timezone)
    except ConfigError:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # made by _check_out for this sweep, which wrote nothing into it
        raise
    try:  # the folder is this sweep's from here: found empty by two sweeps at once, both wrote their runs into it
        (out_dir / "run-001").mkdir()
    except FileExistsError:
        raise ConfigError([Problem(shown(out_dir), 0, 0, "", "not empty: a sweep writes a new folder (give another "
                                   "--out; another sweep is writing to it now)")]) from None  # fmt: skip
    specs: list[RunSpec] = []
    problems: list[Problem] = []
    first_line, first_col = load_yaml(sweep_path, shown(sweep_path)).position((overrides[0].key,), of_key=True)
    for number, combination in enumerate(combinations(overrides), 1):
        name = f"run-{number:03d}"
        run_config = out_dir / name / "config"
        run_config.mkdir(parents=True, exist_ok=number == 1)  # run-001 made above
        shutil.copyfile(config.config_dir / "settings.yaml", run_config / "settings.yaml")
        _write_bots(config.config_dir / "bots.yaml", run_config / "bots.yaml", [(o.path, v) for o, v in combination])
        try:
            load_config(run_config, signals)
        except ConfigError as exc:
            said = ", ".join(f"{o.key}={_cell(v)}" for o, v in combination)
            # The run's bots.yaml keeps the original's lines, and is removed: the original's place is shown.
            original = {shown(run_config / "bots.yaml"): shown(config.config_dir / "bots.yaml")}
            for p in exc.problems:
                where = f"{original.get(p.file, p.file)}:{p.line}:{p.col}: {p.path + ': ' if p.path else ''}"
                problems.append(Problem(shown(sweep_path), first_line, first_col, "", f"{name} ({said}): {where}{p.message}"))
        config_s, machines_s, rules_s, data_s, out_s = (
            str(f.resolve()) for f in (run_config, machines_dir, rules_dir, data_dir, out_dir / name)
        )
        specs.append(
            RunSpec(
                name,
                tuple((o.key, v) for o, v in combination),
                config_s,
                machines_s,
                rules_s,
                data_s,
                out_s,
                start=start,
                end=end,
                cash=cash,
                fill_timing=fill_timing,
                slippage_bps=slippage_bps,
                commission_per_share=commission_per_share,
                commission_per_contract=commission_per_contract,
                crypto_maker_fee=crypto_maker_fee,
                crypto_taker_fee=crypto_taker_fee,
                # absolute, no link followed: resolve() of a `.env` linked to itself raised RuntimeError (Python
                # 3.11), a traceback; the worker reads what the link names, or, unreadable, masks the environment's
                env_file=os.path.abspath(env_file) if env_file is not None else None,
            )
        )
    if problems:
        if created:
            shutil.rmtree(out_dir)
        else:
            for spec in specs:
                shutil.rmtree(spec.out_dir)
        raise ConfigError(problems)
    return overrides, specs


def _when(text: str | None) -> Any:
    from datetime import date, datetime

    if text is None:
        return None
    # 'Z' replaced as the command line does: Python 3.10, which the project supports, reads no 'Z'
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_one(spec: RunSpec) -> dict[str, Any]:
    """One backtest of one combination; the row of the comparison table (with `error` when it could not run).

    The only function a worker runs, locally or on a Ray cluster: everything it reads is named by `spec`."""
    from engine.config.errors import ConfigError as Refused
    from engine.core.journal import Secrets
    from engine.replay.backtest import BacktestError, run_backtest
    from engine.replay.fills import FillModel
    from engine.validate import load_valid

    row: dict[str, Any] = {"run": spec.name, **dict(spec.overrides)}
    secrets = _secrets(spec.env_file)
    scrubbed = Secrets(secrets).scrubbed

    def mask(text: str) -> str:  # keys out, and paths relative to the sweep's folders (the same on any machine)
        return unrooted(scrubbed(text), spec)

    try:
        report = load_valid(Path(spec.config_dir), Path(spec.machines_dir), Path(spec.rules_dir))
        assert report.config is not None
        cash = spec.cash if spec.cash is not None else report.config.settings.sim.starting_cash
        model = FillModel(timing=spec.fill_timing, slippage_bps=spec.slippage_bps,  # type: ignore[arg-type]
                          commission_per_share=spec.commission_per_share,
                          commission_per_contract=spec.commission_per_contract,
                          crypto_maker_fee=spec.crypto_maker_fee, crypto_taker_fee=spec.crypto_taker_fee)  # fmt: skip
        result = run_backtest(report, Path(spec.data_dir), start=_when(spec.start), end=_when(spec.end), cash=cash,
                              out_dir=Path(spec.out_dir), fill_model=model, html=False, secrets=secrets)  # fmt: skip
    except Refused as exc:  # bad data, missing data: every problem
        return {**row, "error": mask("; ".join(p.headline for p in exc.problems))}
    except (BacktestError, ValueError) as exc:
        return {**row, "error": mask(str(exc))}
    except Exception as exc:  # a full disk, a state file or log that failed, a bug: this run's alone
        return {**row, "error": mask(_unexpected(exc, Path(spec.out_dir), mask))}
    total = result.summary["total"]
    notes = tuple(escaped(mask(note)) for note in result.notes)  # the notes `backtest` prints, in its order
    held = len(result.summary["open_positions"])  # counted at their last price in unrealized P&L and return
    return {**row, **{name: total.get(name) for name in SUMMARY_FIGURES}, "open_at_end": held, "notes": notes, "error": ""}


def _root_named(inside: str, itself: str, match: re.Match[str]) -> str:
    """A sweep's folder as `unrooted` names it: `inside` before a path in it, `itself` alone."""
    return inside if match.group(1) else itself


def unrooted(text: str, spec: RunSpec) -> str:
    """`text` with the sweep's folders taken out of its paths: a file of the run's folder relative to `--out`
    (`run-002/error.txt`), the data, machines and rules folders as `<data>`, `<machines>`, `<rules>`.

    sweep.csv holds no path, so the same sweep gives the same bytes from another checkout or into another --out;
    a run's error named the absolute data folder (`/home/x/data:0:0: ...`) and its own traceback's file. The spec's
    paths are absolute and resolved, and so are those its run's messages name. The longer folder first, so that
    one inside another is named by the nearer."""
    roots = [(spec.data_dir, "<data>"), (spec.machines_dir, "<machines>"), (spec.rules_dir, "<rules>"),
             (str(Path(spec.out_dir).parent), "")]  # fmt: skip
    for root, name in sorted(roots, key=lambda item: -len(item[0])):
        if not os.path.isabs(root) or root == os.sep:
            continue
        inside, itself = f"{name}/" if name else "", name or "<out>"  # `--out`'s files are written relative to it
        pattern = re.escape(root.rstrip(os.sep)) + r"(?:(/)|(?![\w.\-]))"
        text = re.sub(pattern, functools.partial(_root_named, inside, itself), text)
    return text


def _unexpected(exc: Exception, out_dir: Path, mask: Callable[[str], str]) -> str:
    """The row's error for a run stopped by what no check foresaw. The other runs go on (a sweep of a hundred
    used to end in a traceback at the first), and the traceback is kept in the run's folder for whoever fixes it,
    both masked of the keys (`mask`)."""
    said = mask(f"{type(exc).__name__}: {exc}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "error.txt").write_text(mask("".join(traceback.format_exception(exc))), encoding="utf-8")
    except OSError:
        return f"stopped by {said}"
    return f"stopped by {said} (traceback in {out_dir / 'error.txt'})"


WORKER_DIED = "not finished: its worker process died (killed, or out of memory), and again on its retry in a new worker"
WORKERS_KEEP_DYING = ("not finished: the sweep's worker processes died (killed, or out of memory) in two pools in a row "
                      "before any run finished or was found dying")

_started: Connection | None = None
"""In a worker: where it tells the sweep's process which run it starts (see _run_saying_so)."""


def _worker_start(parent: Connection, started: Connection) -> None:
    """Each worker's first act. Ctrl-C at a terminal reaches every process of its group: the workers leave it to
    the sweep's process, which stops them, instead of each printing a traceback. And a worker ends with the sweep's
    process however that ends: `parent` is the reading end of a pipe only that process writes to, so its death,
    SIGKILL included, is end-of-file here. Without this a killed sweep's workers ran the rest of the grid into its
    folder, then waited on their queue for ever. `started` is where the worker says which run it starts."""
    global _started
    _started = started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # a closed terminal's SIGHUP reaches the group too: the sweep's process stops it
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="sweep-parent", daemon=True).start()


def _helpers_ignore_sighup(context: Any) -> None:
    """Start multiprocessing's helper processes (the resource tracker and, for forkserver, the fork server) with
    SIGHUP ignored, as they ignore SIGINT and SIGTERM. A terminal that closes sends SIGHUP to the whole process
    group: they died of it while the sweep's process stopped (exit 129), and the tracker, started again, printed
    tracebacks about resources it no longer knew. An ignored signal stays ignored through their exec; a helper
    already running is left as it is. Only the main thread may set a handler: elsewhere this does nothing.

    SIGHUP is blocked meanwhile as well: ignored alone, one that came while the helpers started was dropped, and the
    sweep ran on to its end (exit 0, not 129). Blocked, it stays pending (Linux never discards a blocked signal,
    ignored or not) and reaches the sweep's own handler once that is back and the signal unblocked."""
    hup = getattr(signal, "SIGHUP", None)
    if hup is None or threading.current_thread() is not threading.main_thread():
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {hup})
    previous = signal.signal(hup, signal.SIG_IGN)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
    finally:
        signal.signal(hup, previous)
        if hup not in blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {hup})


def _exit_with_parent(parent: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        while True:
            parent.recv_bytes()
    os._exit(1)  # mid-run: that run's folder keeps what it committed, and has no summary.json


def _run_saying_so(run: Callable[[RunSpec], dict[str, Any]], spec: RunSpec) -> dict[str, Any]:
    """`run(spec)` in a worker, after telling the sweep's process this worker's pid and the run it starts.

    A broken pool says only that some worker died: this is how the sweep knows which run was in it, so that a run
    which kills its worker (eats all memory) is tried twice, not for ever, while the runs the pool took down with
    it run again. The message is one write of a few bytes to a pipe (atomic), so a worker killed at any moment
    leaves no half message and holds no lock. `run` is passed, not called by name, so that it is looked up in the
    sweep's process when the run is sent: a test can hand the workers a run that kills them."""
    if _started is not None:
        _started.send_bytes(f"{os.getpid()} {spec.name}".encode())
    return run(spec)


def _stop_workers(pool: Any, parent_alive: Connection) -> None:
    """End every worker now: the runs they hold are cut short (their folders have no summary.json)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown forgets it too
    pool.shutdown(wait=False, cancel_futures=True)
    parent_alive.close()  # the workers' watch thread sees end-of-file (the workers not yet listed too)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    # The pool's manager thread closes its wake-up pipe as it ends; concurrent.futures' exit hook writes to that
    # pipe unless it is closed, so an exit racing the close printed an OSError traceback after the one line.
    # Waiting for the thread here leaves the hook nothing to race. It is read before shutdown, which sets it to
    # None: read after, it was never waited for, and the traceback still came on busy cores.
    if manager is not None:
        manager.join(5)


def _say_stopped(specs: Sequence[RunSpec], rows: Sequence[dict[str, Any]], why: str) -> None:
    folder = Path(specs[0].out_dir).parent if specs else Path()
    print(f"{why}: the sweep stopped after {len(rows)} of {len(specs)} runs (their reports in {folder}/run-NNN/); "
          f"sweep.csv is not written", file=sys.stderr, flush=True)  # fmt: skip


def run_local(specs: Sequence[RunSpec], jobs: int, done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Each spec in a process of a local pool of `jobs` (in this process when 1).

    Ctrl-C or SIGTERM stops the sweep at once: runs not started are not, runs in a worker are cut short, one in
    this process commits what it finished (as `backtest` does); one line says how many finished, and the
    exception goes on (KeyboardInterrupt: the command's exit 130; SIGTERM: SystemExit(143)). A worker that dies
    (killed, out of memory) breaks the pool: the runs it had not returned run again in a new pool, except a run
    whose worker died under it a second time, which gets WORKER_DIED as its error (see _run_pool)."""
    rows: list[dict[str, Any]] = []
    with _stops_said(specs, rows):
        if jobs <= 1:
            for spec in specs:
                rows.append(run_one(spec))
                if done is not None:
                    done(rows[-1])
        else:
            _run_pool(specs, jobs, done, rows)
    return rows


@contextlib.contextmanager
def _stops_said(specs: Sequence[RunSpec], rows: Sequence[dict[str, Any]]) -> Iterator[None]:
    """Ctrl-C or SIGTERM (SIGHUP too) in the block stops the sweep: one line says how many of its runs finished
    (`rows` so far), and the exception goes on (KeyboardInterrupt: the command's exit 130; SIGTERM:
    SystemExit(143)). The block stops what it started (workers, Ray tasks) before it lets the stop out.
    The local pool's and Ray's alike."""
    try:
        with sigterm_raises():
            yield
    except Terminated as exc:
        _say_stopped(specs, rows, signal.Signals(exc.signum).name)
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:
        _say_stopped(specs, rows, "interrupted")
        raise


@dataclass(frozen=True)
class _Broken:
    """What a pool that broke left: the runs it returned no row for, in grid order, and those of them whose own
    worker died under them, each with that worker's exit code (None when it could not be told)."""

    unfinished: tuple[RunSpec, ...]
    died: dict[str, int | None]


def _run_pool(specs: Sequence[RunSpec], jobs: int, done: Callable[[dict[str, Any]], None] | None,
              rows: list[dict[str, Any]]) -> None:  # fmt: skip
    """The specs in pools of `jobs` processes, a new pool each time one breaks.

    Python's pool breaks as a whole when one worker dies: it fails every run it holds, and kills its other
    workers. One OOM kill used to lose the rest of the grid. Now the runs without a row run again in a new pool,
    from a clean folder (_clear_cut_short); the run whose worker died gets one retry in all, so a run that itself
    kills its worker gets WORKER_DIED the second time, and the runs taken down with it go on. Two breaks in a row
    with no row returned and no run found dying (workers dying before any run) end the sweep's remaining runs
    with WORKERS_KEEP_DYING instead of starting pools for ever. One line on stderr tells each break."""
    import multiprocessing

    # forkserver: workers start from a clean process, not a fork of one that may hold threads (a progress bar)
    context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    _helpers_ignore_sighup(context)
    watched, parent_alive = context.Pipe(duplex=False)  # one for every pool: no worker outlives the sweep's process
    grid_order = {spec.name: number for number, spec in enumerate(specs)}
    deaths: dict[str, int] = {}  # run -> how many workers died under it
    pending: Sequence[RunSpec] = specs
    stalled = False  # the last pool broke with no row returned and no run found dying

    def finish(spec: RunSpec, error: str) -> None:
        rows.append({"run": spec.name, **dict(spec.overrides), "error": error})
        if done is not None:
            done(rows[-1])

    try:
        while pending:
            broken = _pool_round(context, pending, jobs, watched, parent_alive, done, rows)
            if broken is None:
                return
            progress = len(broken.unfinished) < len(pending) or bool(broken.died)
            if not progress and stalled:
                _say_worker_died(broken, (), broken.unfinished, grid_order)
                for spec in broken.unfinished:
                    finish(spec, WORKERS_KEEP_DYING)
                return
            stalled = not progress
            retry: list[RunSpec] = []
            given_up: list[RunSpec] = []
            for spec in broken.unfinished:
                if spec.name in broken.died:
                    deaths[spec.name] = deaths.get(spec.name, 0) + 1
                (given_up if deaths.get(spec.name, 0) > 1 else retry).append(spec)
            _say_worker_died(broken, retry, given_up, grid_order)
            for spec in given_up:
                finish(spec, WORKER_DIED)
            pending = []
            for spec in retry:
                try:
                    _clear_cut_short(spec)
                except OSError as exc:
                    finish(spec, f"not finished: its worker process died, and its folder could not be cleared for a retry "
                                 f"({exc.strerror or exc})")  # fmt: skip
                else:
                    pending.append(spec)
    finally:
        watched.close()
        parent_alive.close()


def _pool_round(context: Any, specs: Sequence[RunSpec], jobs: int, watched: Connection, parent_alive: Connection,
                done: Callable[[dict[str, Any]], None] | None, rows: list[dict[str, Any]]) -> _Broken | None:  # fmt: skip
    """The specs in one pool: each row in `rows` (and to `done`) as it comes; None when every spec returned one,
    else what the broken pool left. Any other exception (Ctrl-C, SIGTERM) stops every worker and goes on."""
    from concurrent.futures import ProcessPoolExecutor, as_completed, wait
    from concurrent.futures.process import BrokenProcessPool

    started_reader, started_writer = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(specs)), mp_context=context, initializer=_worker_start,
                               initargs=(watched, started_writer))  # fmt: skip
    started: dict[int, str] = {}  # worker pid -> the run it started last
    try:
        with _stops_held():  # the pool starts its workers in submit
            futures = {pool.submit(_run_saying_so, run_one, spec): spec for spec in specs}
        waiting = set(futures)
        broke = False
        for future in as_completed(futures):
            _read_started(started_reader, started)  # keeps the pipe from filling
            try:
                row = future.result()
            except BrokenProcessPool:
                broke = True
                break
            waiting.discard(future)
            rows.append(row)
            if done is not None:
                done(row)
        if not broke:
            pool.shutdown()
            return None
        processes = dict(getattr(pool, "_processes", None) or {})  # pid -> process, before shutdown forgets them
        wait(waiting)  # the broken pool fails every run it holds; a row it had received still counts
        unfinished: list[RunSpec] = []
        for future in [f for f in futures if f in waiting]:  # grid order
            try:
                row = future.result()
            except BrokenProcessPool:
                unfinished.append(futures[future])
                continue
            rows.append(row)
            if done is not None:
                done(row)
        _end_broken_pool(pool, processes.values())
        _read_started(started_reader, started)
        return _Broken(tuple(unfinished), _died_under(unfinished, started, processes))
    except BaseException:
        _stop_workers(pool, parent_alive)
        raise
    finally:
        started_reader.close()
        started_writer.close()


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP held back inside the block, then acted on as they would have been.

    The pool starts a worker in `submit`: the fork server forks it, then the pool records it. A stop between the
    two (likeliest on busy cores, and just after "retried in a new pool", when the next pool starts) left a worker
    the pool did not know: _stop_workers could not end it, the sweep's process exited and removed the semaphores
    that worker was still reading its start from, and it printed a FileNotFoundError traceback after the one line.
    Held, the stop comes once every worker started is the pool's, so that every one is ended and waited for. Only
    the main thread handles signals: elsewhere this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    signums = [s for s in (getattr(signal, name, None) for name in names) if s is not None and callable(signal.getsignal(s))]
    previous = {signum: signal.signal(signum, lambda signum, _frame: held.append(signum)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # its own handler runs now (Terminated, KeyboardInterrupt)


def _read_started(reader: Connection, started: dict[int, str]) -> None:
    while reader.poll():
        pid, name = reader.recv_bytes().decode().split(" ", 1)
        started[int(pid)] = name


def _end_broken_pool(pool: Any, processes: Iterable[Any]) -> None:
    """Wait for a broken pool's workers to be gone (the pool terminates them) before their runs' folders are
    cleared for a retry: a worker still running would write on into a folder being emptied."""
    pool.shutdown(wait=True)
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def _died_under(unfinished: Sequence[RunSpec], started: Mapping[int, str], processes: Mapping[int, Any]) -> dict[str, int | None]:
    """The runs without a row whose own worker died under them, with its exit code.

    The pool ends its other workers with SIGTERM, so a worker that exited otherwise (SIGKILL from the OOM killer,
    a crash) died of itself, and the run it had started last is the one to blame, if that run returned no row (a
    worker killed between runs blames none). When no worker is seen dying of itself (one killed by SIGTERM from
    outside looks like the pool's), every run then in a worker is blamed: each is tried twice at most, not for
    ever."""
    without_row = {spec.name for spec in unfinished}
    exits = {pid: process.exitcode for pid, process in processes.items()}
    died_alone = [pid for pid, code in exits.items() if code is not None and code != -signal.SIGTERM]
    if died_alone:
        return {started[pid]: exits[pid] for pid in died_alone if started.get(pid) in without_row}
    return {name: exits.get(pid) for pid, name in started.items() if name in without_row}


def _clear_cut_short(spec: RunSpec) -> None:
    """Empty the run's folder of what an attempt cut short left there, all but the run's config, for its retry.

    run_backtest refuses a folder that holds a state.db or an app.jsonl (a backtest never writes over another
    run), and the dead attempt's partial state, log and report files must not mix with the retry's: the retry
    starts from the folder `prepare` made, and ends with the same report as a run never interrupted."""
    folder, config = Path(spec.out_dir), Path(spec.config_dir)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry == config:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _say_worker_died(broken: _Broken, retry: Sequence[RunSpec], given_up: Sequence[RunSpec],
                     grid_order: Mapping[str, int]) -> None:  # fmt: skip
    """One line on stderr for a broken pool: which run's worker died and how, which runs run again, which not."""
    if broken.died:
        blamed = sorted(broken.died.items(), key=lambda item: grid_order[item[0]])
        dead = ", ".join(f"{name} ({_how_it_died(code)})" for name, code in blamed)
        said = f"a worker process of the sweep died running {dead}"
    else:
        said = "a worker process of the sweep died (no run was found in it)"
    if given_up:
        why = "its worker died on its retry too" if broken.died else "the workers keep dying"
        said += f"; not retried ({why}): {_named(given_up, grid_order)}"
    if retry:
        said += f"; retried in a new pool: {_named(retry, grid_order)}"
    print(said, file=sys.stderr, flush=True)


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is None:
        return "how is not known"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"{name}: killed, or out of memory" if exitcode == -signal.SIGKILL else name


def _named(specs: Iterable[RunSpec], grid_order: Mapping[str, int]) -> str:
    """The runs' names in grid order, three or more in a row as `run-004 to run-009`: a line, not a page."""
    ordered = sorted(specs, key=lambda spec: grid_order[spec.name])
    parts: list[str] = []
    for _offset, group in itertools.groupby(enumerate(ordered), key=lambda item: grid_order[item[1].name] - item[0]):
        names = [spec.name for _index, spec in group]
        parts.extend([f"{names[0]} to {names[-1]}"] if len(names) > 2 else names)
    return ", ".join(parts)


class RayMissing(RuntimeError):
    """`--ray` without the optional extra installed."""


RAY_TASK_FAILED = "not finished: its Ray task failed"


def run_ray(specs: Sequence[RunSpec], address: str, done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Each spec as a Ray task on the cluster at `address` ("local" starts one here). The cluster's workers must
    have this project installed and see the specs' paths (a shared folder at the same path).

    As the local pool: a task that fails (its worker killed or out of memory, its node lost: what `ray.get` raises)
    is its run's error, the other runs go on and sweep.csv is written; one task's failure used to end the sweep in
    a traceback, the finished runs' rows lost. Tasks are not retried by Ray (`max_retries=0`): a retry would run
    into the dead attempt's folder, which a backtest refuses. Ctrl-C or SIGTERM cancels every task not finished
    (`ray.cancel(force=True)` ends one running) and says how many runs finished, as `run_local`."""
    try:
        import ray  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise RayMissing("--ray needs the optional extra: pip install -e '.[ray]'") from None
    rows: list[dict[str, Any]] = []
    with _stops_said(specs, rows):
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as exc:  # no cluster there (a wrong address, one down): no run can start
            for spec in specs:
                _ray_row(spec, exc, rows, done)
            return rows
        remote = ray.remote(max_retries=0)(run_one)
        pending: dict[Any, RunSpec] = {}
        try:
            with _stops_held():  # a stop comes once every task sent is known, so that each is cancelled
                for spec in specs:
                    pending[remote.remote(spec)] = spec
            while pending:
                try:
                    ready, _rest = ray.wait(list(pending), num_returns=1)
                except Exception as exc:  # the cluster itself failed: no task of it can be told finished
                    for spec in pending.values():
                        _ray_row(spec, exc, rows, done)
                    pending.clear()
                    break
                spec = pending.pop(ready[0])
                try:
                    row = ray.get(ready[0])
                except Exception as exc:  # this task's failure, its run's alone
                    _ray_row(spec, exc, rows, done)
                    continue
                rows.append(row)
                if done is not None:
                    done(row)
        except BaseException:
            for ref in pending:  # not started: never started; running: ended (its folder keeps what it committed)
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    return rows


def _ray_row(spec: RunSpec, exc: Exception, rows: list[dict[str, Any]], done: Callable[[dict[str, Any]], None] | None) -> None:
    """The row of a run whose Ray task failed: RAY_TASK_FAILED with what Ray said, its first line (Ray's message
    goes on with process ids and addresses), masked of the keys and of the sweep's paths as any error."""
    from engine.core.journal import Secrets

    said = (str(exc).strip().splitlines() or [""])[0][:300]
    masked = unrooted(Secrets(_secrets(spec.env_file)).scrubbed(f"{type(exc).__name__}: {said}".rstrip(": ")), spec)
    rows.append({"run": spec.name, **dict(spec.overrides), "error": f"{RAY_TASK_FAILED} ({escaped(masked)})"})
    if done is not None:
        done(rows[-1])


def sweep_rows(rows: Iterable[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Rows best first by `metric` (runs that failed, then those without the metric, last; ties by run, in grid
    order: by the run's number, not its name's text, in which the thousandth run, `run-1000`, came between
    `run-100` and `run-101`)."""
    larger_first = METRICS[metric]

    def rank(row: dict[str, Any]) -> tuple[int, float, int, str]:
        value = row.get(metric)
        order = _grid_number(str(row["run"]))  # run-NNN names: the shorter is the smaller number
        if row.get("error") or value is None:
            return (2 if row.get("error") else 1, 0.0, *order)
        return (0, -float(value) if larger_first else float(value), *order)

    return sorted(rows, key=rank)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):  # a row's notes
        return NOTE_SEPARATOR.join(str(item) for item in value)
    return str(value)


def columns(overrides: Sequence[Override]) -> list[str]:
    return ["run", *(o.key for o in overrides), *FIGURES, "notes", "error"]


def _grid_number(run: str) -> tuple[int, str]:
    """A run's place in the grid from its name (`run-NNN`, `run-1000`): by number, not by its name's text."""
    return (len(run), run)


def notes_said(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Each distinct note of the sweep's runs once, with the runs it concerns (in grid order, stretches shortened):
    a sweep of a hundred runs on the same data says the data's note once, not a hundred times. In the order the
    notes first come in the grid, so the same sweep says the same lines."""
    runs: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda row: _grid_number(str(row["run"]))):
        for note in row.get("notes") or ():
            runs.setdefault(str(note), []).append(str(row["run"]))
    lines = []
    for note, names in runs.items():
        order = {name: int(name.rsplit("-", 1)[1]) for name in names}  # run-NNN, as `prepare` names them
        every = [RunSpec(name, (), "", "", "", "", "") for name in names]
        lines.append(f"note ({_named(every, order)}): {note}")
    return lines


def outcome(row: dict[str, Any]) -> str:
    """A finished run in a few words, as the sweep tells it when it returns: its error, or its P&L and return."""
    if row.get("error"):
        return f"error: {row['error']}"
    held = f", {row['open_at_end']} open at the end" if row.get("open_at_end") else ""
    said = f"realized P&L {row['realized_pnl']:+,.2f}, unrealized {row['unrealized_pnl']:+,.2f}{held}"
    return said + (f", return {row['return_pct']:+.4f} %" if row.get("return_pct") is not None else "")


def write_csv(rows: Sequence[dict[str, Any]], overrides: Sequence[Override], path: Path) -> None:
    """The table as `path`, whole or not at all: sweep.csv is what says a sweep finished, so a kill while it is
    written must not leave half a table that reads as a whole one (the data files' atomic write)."""
    from engine.data.files import replace_whole
    from engine.replay.report import refuse_non_finite

    names = columns(overrides)
    for row in rows:  # FigureNotFinite, nothing written: `inf` in a column would read as a figure, and sort as one
        for name in names:
            refuse_non_finite(f"sweep.csv: {row.get('run')} {name}", row.get(name))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([_cell(row.get(name)) for name in names] for row in rows)
    payload = text.getvalue().encode("utf-8")
    replace_whole(path, lambda temporary: temporary.write_bytes(payload), fsync=True)


def table(rows: Sequence[dict[str, Any]], overrides: Sequence[Override]) -> str:
    """The comparison table for a terminal: the overrides, then trades, win rate, realized and unrealized P&L, the
    positions open at the end, drawdown, Sharpe, return; then each run's error, and each distinct note once."""

    def figures(row: dict[str, Any]) -> list[str]:
        if row.get("error"):
            return ["error", "", "", "", "", "", "", ""]
        rate = f"{row['win_rate'] * 100:.1f} %" if row.get("win_rate") is not None else "-"
        sharpe = f"{row['sharpe']:.2f}" if row.get("sharpe") is not None else "-"
        drawdown = f"{row['max_drawdown_usd']:,.2f} ({row['max_drawdown_pct']:.2f} %)"
        back = f"{row['return_pct']:+.4f} %" if row.get("return_pct") is not None else "-"
        return [str(row["trades"]), rate, f"{row['realized_pnl']:+,.2f}", f"{row['unrealized_pnl']:+,.2f}",
                str(row["open_at_end"]), drawdown, sharpe, back]  # fmt: skip

    lines = [["run", *(o.key for o in overrides), "trades", "win rate", "realized P&L", "unrealized P&L", "open at end",
              "max drawdown", "Sharpe", "return"]]  # fmt: skip
    lines += [[row["run"], *(_cell(row.get(o.key)) for o in overrides), *figures(row)] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(c.ljust(w) if i <= len(overrides) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        for line in lines
    ]
    text += [f"{row['run']}: {row['error']}" for row in rows if row.get("error")]
    text += notes_said(rows)
    return "\n".join(text)
