"""`python -m engine --validate`: every file the engine reads, checked in one pass, every problem reported.

Order: rules first (the config's signal modes are checked against them), then the config, then the machines
against the rules. A file that cannot be read is reported and the rest is still checked against what could
be read: one broken file never hides the problems of the others. Checks that need every file of a folder (a
missing machine kind, an unknown guard, an unknown signal mode) are skipped while a file of that folder is
unreadable, since what it defines is unknown; they run again once it is fixed. A rule file that fails its schema
still gives the rules its errors leave alone (`readable_rules`), checked as the others are, but for a guard that
composes one it may define (`sound_rules`). What a run would write (settings.yaml's log and state paths) is
checked beside problems elsewhere in config/, unless one of those paths is itself one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

from engine.config.checks import DeclaredSignal
from engine.config.errors import ConfigError, Problem
from engine.config.loader import Config, ConfigInvalid, SettingsPart, load_config, resolved
from engine.config.model import BotsConfig, Settings, TradingBotConfig
from engine.config.schema_check import document_problems, schema_errors, untrusted_paths, yaml_files
from engine.config.yaml_source import YamlDocument, load_yaml
from engine.machines.lint import lint_all
from engine.machines.spec import MachineSpec, read_machines
from engine.paths import PathKind, path_kind, shown, unusable_output
from engine.rules.book import SECTIONS, Entry, RuleBook, check_all_rules, guard_closure, load_rules


@dataclass
class Report:
    """What validation found: the problems, and what was loaded (for the summary and for callers)."""

    problems: list[Problem] = field(default_factory=list)
    config: Config | None = None
    book: RuleBook | None = None
    machines: dict[str, MachineSpec] = field(default_factory=dict)
    # What the files let the engine do that a trader would not want, yet may mean (`spread_limit_warnings`): said
    # by `--validate` as warnings (exit 0); the files keep working.
    warnings: list[Problem] = field(default_factory=list)
    # The problems of machines/scenarios/ (also in `problems`): `--validate` reports them, but they do not stop
    # the other commands; `test` runs every good scenario file and lists the bad ones itself.

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        bots = self.config.bots if self.config else None
        trading: list[TradingBotConfig] = [*bots.momentum_bots, bots.optionsbot, bots.cryptobot] if bots else []
        enabled = sum(1 for b in trading if b.enabled)
        files = 2 + len(self.machines) + (len(self.book.files) if self.book else 0)
        rules = self.book.count() if self.book else 0
        return f"OK: {files} files, {len(trading)} bots ({enabled} enabled), {len(self.machines)} machines, {rules} rules"


def spread_limit_warnings(config: Config) -> list[Problem]:
    """A spread limit that lets in entries the bot's own stop loss closes at once: an entry is bought at the ask and
    valued at what selling it gets (an option: the mark less half the spread; a share or coin: the mid), so from
    some spread it is at exits.stop_loss_pct the moment it fills (`entries.spread_at_stop_pct`). The engine sizes
    no such entry (`entries.plan_entry`), so a limit wider than that is not the limit the bot trades under: the
    shipped OptionsBot allows 10 % spreads beside a 0.30 % stop, and bought every contract over about 0.3 % wide
    to sell it the next tick, its spread lost, up to max_trades_per_day a day. Enabled bots only: a disabled one
    is told once it is enabled. At the limit in bots.yaml (an OptionsBot's chain_rules.max_spread_pct), else at
    the bot's stop (the others share settings.yaml's health.max_spread_pct)."""
    from engine.config.checks import trading_bots
    from engine.config.model import OptionsBotConfig
    from engine.trading.entries import spread_at_stop_pct

    warnings = []
    health_limit = config.settings.health.max_spread_pct
    for path, bot in trading_bots(config.bots):
        if not bot.enabled:
            continue
        option = isinstance(bot, OptionsBotConfig)
        limit = bot.chain_rules.max_spread_pct if isinstance(bot, OptionsBotConfig) else health_limit
        stop = bot.exits.stop_loss_pct
        at_stop = spread_at_stop_pct(stop, option=option)
        if limit < at_stop:
            continue
        if option:
            where = (*path, "chain_rules", "max_spread_pct")
            message = (
                f"{limit:g} % lets in contracts that are at exits.stop_loss_pct ({stop:g} %) the moment they fill: a "
                "contract is bought at the ask and valued at what selling it gets (the mark less half the spread), so "
                f"one whose spread is {at_stop:.3g} % of its mid or more is at its stop at once. The engine buys no "
                f"such contract (no entry when none is narrower): the bot trades under a {at_stop:.3g} % spread, not "
                f"{limit:g} %"
            )
        else:
            where = (*path, "exits", "stop_loss_pct")
            message = (
                f"'{bot.bot_id}': {stop:g} % is lost the moment an entry fills at a spread of {at_stop:.3g} % of the "
                f"mid or more, and settings.yaml's health.max_spread_pct lets in {limit:g} %: an entry is bought at the "
                "ask and valued at the mid, half its spread lost at once. The engine sizes no such entry: the bot "
                f"trades under a {at_stop:.3g} % spread, not {limit:g} %"
            )
        warnings.append(config.bots_doc.problem(where, message))
    return warnings


def persisted_state_problems(
    db_path: Path,
    machines: dict[str, MachineSpec],
    bots: BotsConfig,
    *,
    complete: bool = True,
    holders: bool = True,
    broker: str | None = None,
    zone: tuple[str, float] | None = None,
) -> list[Problem]:
    """States saved in SQLite that the machine files no longer have, of the machines a run restores
    (`startup.restored_machines`): the engine could not restore them. With `holders`, also the positions and working orders
    saved for a bot that bots.yaml no longer runs as the same kind (`startup.unmanaged`): nothing would manage their
    exits, or the wrong rules would; and the halts until `resume` of a bot bots.yaml no longer has
    (`startup.orphaned_halts`). With `broker` (settings.yaml's `broker.name`, when it names one), also a state file
    another broker's run wrote, which `run` refuses (`startup.other_account`). With `zone` (settings.yaml's
    system.timezone and runner.loop_interval_seconds), also a zone other than the one the file counts its trading
    days in while it holds a record of the day either calls today, which `run` refuses too (`startup.changed_zone`):
    today is the state's own (a simulation's next tick, else now).

    With `complete=False` (a machine file could not be read) a kind with no machine is not reported: its
    machine may be in the unreadable file."""
    import sqlite3

    from engine.core import order_lifecycle as lifecycle
    from engine.core.store import StateFileError, StateStore, nothing_saved
    from engine.trading.startup import (
        ZONE_KEY,
        changed_zone,
        orphaned_halts,
        other_account,
        restored_machines,
        unmanaged,
        vanished_state,
    )

    try:  # nothing saved; an empty file is not opened either: SQLite would write a new database into it
        if nothing_saved(db_path):
            return []
    except StateFileError as exc:  # cut to nothing (exit 2), or what is at the path cannot be told (exit 1)
        if exc.runtime:
            raise
        return [Problem(shown(db_path), 0, 0, "", exc.what)]

    def unreadable(exc: BaseException) -> list[Problem]:
        """A damaged or foreign file is a problem of the input (exit 2); one that is sound but cannot be used now
        (locked, read-only, a full disk) is the runtime's (exit 1, raised to the command)."""
        if isinstance(exc, StateFileError) and exc.runtime:
            raise exc
        return [Problem(shown(db_path), 0, 0, "", f"cannot read the saved machine states: {exc}")]

    problems = []
    try:
        store = StateStore(db_path, reads_only=True)
    except (sqlite3.Error, OSError) as exc:
        return unreadable(exc)
    try:
        saved_states = store.machine_states()
        held = (store.positions(), store.orders(statuses=lifecycle.OPEN), store.halts(open_only=True)) if holders else None
        mismatch = other_account(store.meta("broker"), broker) if broker is not None else None
        recorded = store.meta(ZONE_KEY) if zone is not None else None
        zone_moved = None
        if zone is not None and recorded is not None and recorded != zone[0]:
            from engine.trading.runner import state_now  # only now: the run's module is large

            now, simulated = state_now(store, datetime.now(timezone.utc))
            now += timedelta(seconds=zone[1]) if simulated else timedelta(0)  # a simulation goes on a tick later
            zone_moved = changed_zone(recorded, zone[0], now, store.days_with_activity, simulated=simulated)
    except sqlite3.Error as exc:
        store.close()
        return unreadable(exc)
    try:
        restored = restored_machines(bots)
        for saved in saved_states:
            spec = machines.get(saved.kind)
            if (saved.kind, saved.bot_id) not in restored:
                continue
            if spec is None:
                if not complete:
                    continue
                message = f"{saved.kind} '{saved.bot_id}' is saved, but there is no {saved.kind} machine"
            elif saved.state not in spec.states:
                message = vanished_state(saved.kind, saved.bot_id, saved.state, str(spec.doc.path))
            else:
                continue
            problems.append(Problem(shown(db_path), 0, 0, f"machine_states.{saved.kind}.{saved.bot_id}", message))
        if held is not None:
            positions, orders, halts = held
            found = [*unmanaged(bots, positions, orders), *orphaned_halts(bots, halts)]
            problems += [Problem(shown(db_path), 0, 0, where, line) for where, line in found]
        if mismatch is not None:
            line = f"the state file {mismatch} state file (system.state_db_path, or --state-db)"
            problems.append(Problem(shown(db_path), 0, 0, "meta.broker", line))
        if zone_moved is not None:
            line = f"the state file {zone_moved} (system.state_db_path, or --state-db)"
            problems.append(Problem(shown(db_path), 0, 0, f"meta.{ZONE_KEY}", line))
    finally:
        store.close()
    return problems


def _file_id(path: Path) -> tuple[int, int] | None:
    """The file `path` names (device and inode, through links), or None when there is none to name."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return (found.st_dev, found.st_ino)


_STATE_COMPANIONS = ("-wal", "-shm", "-journal", ".lock")  # the files SQLite and the run lock keep beside a state file


def output_clashes(log: Path, state: Path, inputs: Mapping[tuple[int, int], Path], *, state_name: str) -> dict[str, str]:
    """What is wrong with the paths `run` writes, by "log" and "state": one naming a file the engine reads (a
    config, machine, rule or scenario file) would have the log appended to it or SQLite write into it, and the two
    in one file would damage both. `inputs`: `input_files(...)`; `state_name`: how the state path is named to the
    user. Checked for settings.yaml's keys by validation and for --log and --state-db by the command line."""
    clashes = {}
    for name, path in (("log", log), ("state", state)):
        file_id = _file_id(path)
        named = inputs.get(file_id) if file_id is not None else None
        if named is not None:
            clashes[name] = f"is {shown(named)}, a file the engine reads: `run` would write into it; give a file of its own"
    same = _file_id(log) is not None and _file_id(log) == _file_id(state)
    if same or os.path.normpath(log.absolute()) == os.path.normpath(state.absolute()):
        clashes.setdefault("log", f"is the same file as {state_name}: the log and the state each need a file of their own")
    # SQLite's and the run lock's files beside the state file (the one a symlink leads to, as they follow it): the
    # log appended to a -wal is deleted with it at the run's end, or read back as frames of the state; the lock
    # file is emptied when the run ends
    real_state = os.path.realpath(state)
    if os.path.realpath(log) in {real_state + suffix for suffix in _STATE_COMPANIONS}:
        kept = f"is a file kept beside {state_name} (SQLite's, or the run lock's): give the log a file of its own"
        clashes.setdefault("log", kept)
    return clashes


def input_files(config_dir: Path, machines_dir: Path, rules_dir: Path) -> dict[tuple[int, int], Path]:
    """Every YAML file the engine reads, by the file it is (device and inode: a link or another spelling of the
    path is the same file)."""
    folders = (config_dir, machines_dir, machines_dir / "scenarios", rules_dir)
    paths = [path for folder in folders for path in yaml_files(folder)[0]]
    return {file_id: path for path in paths if (file_id := _file_id(path)) is not None}


def readable_rules(rules_dir: Path) -> tuple[RuleBook | None, bool, bool]:
    """The rules that can be read, each name once, whether that is every rule of every file, and whether it is
    every signal. Only for checking the machines, the config and the sound rules while the rules have problems
    (load_rules reports them): a machine's guards in a readable file are still compiled and checked, and the bots'
    signal modes while every signal is known. A file that fails its schema still gives its rules the schema's
    errors leave alone: a misspelt key in one guard hid a typo in another's expression."""
    paths, strays = yaml_files(rules_dir)
    book = RuleBook()
    complete = signals_complete = bool(paths) and not strays
    for path in paths:
        try:
            doc = load_yaml(path, shown(path))
        except ConfigError:
            complete = signals_complete = False
            continue
        errors = schema_errors(doc, "rules.schema.json")
        untrusted = untrusted_paths(doc, errors) if document_problems(doc, "rules.schema.json", errors) else set()
        complete = complete and not untrusted
        signals_complete = signals_complete and not any(bad[:1] in ((), ("signals",)) for bad in untrusted)
        if () in untrusted or not isinstance(doc.data, dict):
            continue
        book.files.append(doc.path)
        for section in SECTIONS:
            written = doc.data.get(section)
            if not isinstance(written, dict) or any(bad[:1] == (section,) and len(bad) < 2 for bad in untrusted):
                continue
            for name, body in written.items():
                if any(bad[:2] == (section, name) for bad in untrusted):
                    continue  # said by the schema; what it defines is unknown
                book.entries[section].setdefault(name, Entry(section, name, body, doc))
    return (book if book.files else None), complete, signals_complete


def sound_rules(book: RuleBook) -> RuleBook:
    """`book` without the guards that compose a guard it lacks: while a rule file has problems, a guard named
    there may be one of them, and the composing guard's "unknown guard" would be a second problem for one mistake."""
    sound = RuleBook(files=book.files, signal_functions=book.signal_functions)
    for section in SECTIONS:
        sound.entries[section] = dict(book.entries[section])
    sound.entries["guards"] = {
        name: entry for name, entry in book.guards.items() if all(used in book.guards for used in guard_closure(book, [name]))
    }
    return sound


_EXAMPLE_FILE = {"log": "app.jsonl", "state": "trading_state.db"}


def _a_folder(path: Path, what: str) -> str | None:
    """Why settings.yaml's log or state path that is a folder is refused, at its key: `unusable_output` leaves a
    folder to the journal and the store, so `run` refused a log folder (exit 2) after `--validate` had passed it,
    and a state folder was told at no line of settings.yaml (`DIR:0:0:`)."""
    try:
        return f"is a folder, not a {what} file" if path_kind(path) is PathKind.FOLDER else None
    except OSError:  # said by unusable_output already
        return None


def _names_a_folder(configured: str, example: str) -> str | None:
    """Why a settings path written with a '/' at its end is refused: it names a folder, yet pathlib drops the '/'
    and `run` wrote a file of that name (`logs/` made a file `logs` beside config/), without a word."""
    if not configured.endswith(("/", os.sep)):
        return None
    return f"'{configured}' ends in '/', so it names a folder, not a file: name the file in it (e.g. '{configured}{example}')"


def _output_problems(
    settings: Settings, settings_doc: YamlDocument, config_dir: Path, inputs: Mapping[tuple[int, int], Path]
) -> list[Problem]:
    """What `run` would refuse of settings.yaml's log and state paths, said at their keys. `inputs`: `input_files`."""
    system = settings.system
    log, state = resolved(config_dir, system.log_path), resolved(config_dir, system.state_db_path)
    clashes = output_clashes(log, state, inputs, state_name="system.state_db_path")
    for name, path in (("log", log), ("state", state)):  # what `run` would refuse of them, said now
        reason = unusable_output(path, state=name == "state") or _a_folder(path, name)
        if reason is not None:
            clashes.setdefault(name, f"{shown(path)}: {reason}")
    for name, configured in (("log", system.log_path), ("state", system.state_db_path)):
        slash = _names_a_folder(configured, _EXAMPLE_FILE[name])
        if slash is not None:
            clashes[name] = slash
    keys = {"log": "log_path", "state": "state_db_path"}
    return [settings_doc.problem(("system", keys[name]), why) for name, why in clashes.items()]


def validate(
    config_dir: Path,
    machines_dir: Path,
    rules_dir: Path,
    state_db: Path | None = None,
    *,
    scenarios: bool = True,
    holders: bool = True,
    user_code: bool = True,
    saved_states: bool = True,
) -> Report:
    """Every problem of every file. `holders`: also the positions and working orders saved for a bot bots.yaml no
    longer runs as their kind (`persisted_state_problems`); `run` refuses them itself (the engine's start-up), and
    the commands that read or halt must keep working while one is found. `saved_states=False`: the state file is
    not opened at all (`load_valid`)."""
    report = Report()
    readable: RuleBook | None
    try:
        report.book = readable = load_rules(rules_dir, user_code=user_code)
        rules_complete = signals_complete = True
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        readable, rules_complete, signals_complete = readable_rules(rules_dir)
    # with no signal declared at all (rules/signals.yaml gone, said once by the lint) every bot's mode would be
    # unknown: not told bot by bot
    signals = readable.signal_specs() if readable is not None and signals_complete and readable.signals else None
    settings: SettingsPart | None = None
    try:
        # SignalSpec's fields are read-only; DeclaredSignal only reads them.
        report.config = load_config(config_dir, cast("Mapping[str, DeclaredSignal] | None", signals))
        settings = SettingsPart(report.config.settings, report.config.settings_doc, None)
        report.warnings.extend(spread_limit_warnings(report.config))
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        settings = exc.settings if isinstance(exc, ConfigInvalid) else None  # its paths are still checked
    machines = read_machines(machines_dir)
    report.problems.extend(machines.problems)
    report.machines = machines.specs
    if readable is not None and not rules_complete:
        readable = sound_rules(readable)  # a guard composing one a broken file may define is left out of every check
    if readable is not None and machines.specs:
        report.problems.extend(
            lint_all(
                machines.specs,
                readable,
                shown(machines_dir),
                machines_complete=machines.complete,
                rules_complete=rules_complete,
            )
        )
    if readable is not None:
        # Every rule, used or not, so that a typo in a guard no machine uses yet is found now; the guards the
        # machines use were compiled by the lint for the kinds that use them. While a rule file has problems, the
        # rules it leaves sound are checked all the same (`sound_rules`).
        used = [guard for spec in machines.specs.values() for guard in spec.guards_used()]
        report.problems.extend(check_all_rules(readable, used=used))
    outputs: list[Problem] = []
    if settings is not None:
        found_inputs = input_files(config_dir, machines_dir, rules_dir)
        check_outputs = (_output_problems, settings.value, settings.doc, config_dir, found_inputs)
        outputs = settings.watch.run(*check_outputs) if settings.watch is not None else _output_problems(*check_outputs[1:])
    report.problems.extend(outputs)
    state_is_input = state_db is None and any(p.path == "system.state_db_path" for p in outputs)  # told once, above
    if saved_states and report.config is not None and machines.specs and not state_is_input:
        db = state_db or report.config.resolve(report.config.settings.system.state_db_path)
        named = report.config.settings.broker.name  # `auto` hangs on the environment, which validation does not read
        broker = named if holders and named != "auto" else None
        runner = report.config.settings.runner
        zone = (report.config.settings.system.timezone, runner.loop_interval_seconds) if holders else None
        found = persisted_state_problems(
            db, machines.specs, report.config.bots, complete=machines.complete, holders=holders, broker=broker, zone=zone
        )
        report.problems.extend(found)
    if scenarios:  # checked as far as they can be beside a broken config or machine file, not left for later
        from engine.machines.scenarios import read_cases

        found_cases = read_cases(machines_dir, report.config, machines.specs, machines_complete=machines.complete)
        report.problems.extend(found_cases.problems)
    report.problems = sorted(set(report.problems))
    return report


def load_valid(
    config_dir: Path,
    machines_dir: Path,
    rules_dir: Path,
    state_db: Path | None = None,
    *,
    user_code: bool = True,
    saved_states: bool = True,
) -> Report:
    """Validate and raise ConfigError unless everything is valid: what every command but `validate` uses. The
    scenario files are not read: no command but `validate` and `test` (which reads them itself) needs them. Nor
    are the saved positions' holders: `status`, `halt` and `resume` must work while bots.yaml no longer runs a bot
    that holds one, and `run` refuses to start on it (Engine: StartupError). `user_code=False`: nor is the user's
    signals module imported (`status`, `halt`, `health`... never call a signal, and must work while it is broken).
    `saved_states=False`: nor are the machine states saved in the state file checked against the machines (see
    `cli.NO_STATE_COMMANDS`)."""
    report = validate(
        config_dir, machines_dir, rules_dir, state_db,
        scenarios=False, holders=False, user_code=user_code, saved_states=saved_states,
    )  # fmt: skip
    if report.problems:
        raise ConfigError(report.problems)
    return report
