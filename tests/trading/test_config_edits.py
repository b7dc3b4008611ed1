"""bots.yaml edited between two runs while SQLite holds a position or a working order: a bot that held it
removed, renamed, disabled or given another kind would leave it orphaned (nobody managing its exit, and
reconciliation blind to it: SQLite still explains it) or sold by rules written for something else. The run
refuses to start, naming the bot, the position and what to do; a bot whose ticker changed still manages it."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from engine.brokers.base import OrderRequest
from engine.core.clock import ManualClock
from engine.core.store import StateStore
from engine.trading.engine import StartupError
from tests.conftest import ProjectCopy
from tests.trading.conftest import Rig, make_rig
from tests.trading.test_run_command import engine

DISABLE = ("config/bots.yaml", "bot_id: mom_AAPL\n    enabled: true", "bot_id: mom_AAPL\n    enabled: false")
RENAME = ("config/bots.yaml", "bot_id: mom_AAPL", "bot_id: mom_APPLE")
# the momentum bot's id given to the options bot (which keeps opt_core's nothing), mom_AAPL renamed away
REUSED = ("config/bots.yaml", "bot_id: opt_core", "bot_id: mom_AAPL")


def _holding_aapl(rig: Rig) -> None:
    rig.until(lambda r: bool(r.store.positions("mom_AAPL")))


def _restart_refused(rig: Rig, project: ProjectCopy, clock: ManualClock) -> str:
    with pytest.raises(StartupError) as refused:
        make_rig(project, clock, broker=rig.engine.broker, exchange=rig.exchange)
    return str(refused.value)


@pytest.mark.parametrize(
    ("edits", "said"),
    [
        ([DISABLE], "bots.yaml disables 'mom_AAPL' (enabled: false): nothing would manage its exit"),
        ([RENAME], "bots.yaml has no bot 'mom_AAPL' (removed or renamed): nothing would manage its exit"),
        ([RENAME, REUSED], "bots.yaml now makes 'mom_AAPL' an options bot, whose rules are not written for shares"),
    ],
    ids=["disabled", "renamed", "id_reused_by_another_kind"],
)
def test_a_position_whose_bot_is_gone_refuses_the_start(
    rig: Rig, project: ProjectCopy, clock: ManualClock, edits: list[tuple[str, str, str]], said: str
) -> None:
    _holding_aapl(rig)
    (held,) = rig.store.positions("mom_AAPL")
    for edit in edits:
        project.replace(*edit)
    reason = _restart_refused(rig, project, clock)
    assert f"'mom_AAPL' holds {held.qty:g} AAPL, but {said}" in reason
    assert rig.store.positions("mom_AAPL") == [held]  # nothing sold, nothing forgotten


def test_a_working_order_whose_bot_was_removed_refuses_the_start(rig: Rig, project: ProjectCopy, clock: ManualClock) -> None:
    rig.ticks(3)
    orders, day = rig.engine.orders, rig.engine.trading_date(clock.now())
    with rig.store.transaction():
        entry = OrderRequest("AAPL", "buy", orders.next_client_order_id("mom_AAPL", day), "limit", "day", qty=1, limit_price=1.0)
        orders.record_intent("mom_AAPL", day, "entry", entry, "test")
    orders.send_pending()
    project.replace(*RENAME)
    reason = _restart_refused(rig, project, clock)
    assert f"'mom_AAPL' has a working entry order {entry.client_order_id} (AAPL), but bots.yaml has no bot 'mom_AAPL'" in reason


def test_a_bot_whose_ticker_changed_still_manages_what_it_holds(rig: Rig, project: ProjectCopy, clock: ManualClock) -> None:
    _holding_aapl(rig)
    project.replace("config/bots.yaml", "ticker: AAPL", "ticker: MSFT")
    again = make_rig(project, clock, broker=rig.engine.broker, exchange=rig.exchange)
    again.until(lambda r: not r.store.positions("mom_AAPL"))
    exits = [e for e in again.events("order") if e.get("action") == "intent" and e["purpose"] == "exit"]
    assert [(e["bot"], e["symbol"]) for e in exits][-1:] == [("mom_AAPL", "AAPL")]


def test_run_refuses_validate_names_it_and_status_still_reads(project: ProjectCopy) -> None:
    """One line naming the bot and the position, exit 2 (the edited config disagrees with the state file, as a
    saved state the machines no longer have), no traceback, nothing written; `status` and `halt` still work."""
    first = engine(project, "run", "--ticks", "80", "--start", "2026-11-23T09:30:00-05:00")
    assert first.returncode == 0, first.stderr
    store = StateStore(project.root / "s.db")
    try:
        (held,) = store.positions("mom_AAPL")
    finally:
        store.close()
    project.replace(*DISABLE)
    before = (project.root / "s.db").read_bytes(), (project.root / "app.jsonl").read_bytes()
    refused = engine(project, "run", "--ticks", "5")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr  # invalid input, as the README says
    (line,) = refused.stderr.splitlines()
    assert f"'mom_AAPL' holds {held.qty:g} AAPL, but bots.yaml disables 'mom_AAPL'" in line
    assert ((project.root / "s.db").read_bytes(), (project.root / "app.jsonl").read_bytes()) == before
    check = engine(project, "validate")
    assert check.returncode == 2 and "s.db:0:0: positions.mom_AAPL.AAPL: 'mom_AAPL' holds" in check.stdout
    status = engine(project, "status")
    assert status.returncode == 0 and "mom_AAPL" in status.stdout
    assert engine(project, "halt", "--reason", "looking").returncode == 0


def test_a_flat_bot_may_be_renamed_or_disabled(project: ProjectCopy) -> None:
    engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00")  # nothing held yet
    project.replace(*RENAME)
    renamed = engine(project, "run", "--ticks", "3")
    assert renamed.returncode == 0, renamed.stderr
    project.replace("config/bots.yaml", "bot_id: mom_APPLE\n    enabled: true", "bot_id: mom_APPLE\n    enabled: false")
    assert engine(project, "validate").returncode == 0


def test_the_kill_switchs_flatten_of_a_shared_symbol_is_no_unmanaged_order() -> None:
    """`flatten_shared` records it under the ExitBot, which no bots.yaml names: a restart while it worked (the
    daily loss limit hit with two bots on one ticker) was refused, with every exit."""
    from datetime import date, datetime, timezone

    from engine.config.loader import load_config
    from engine.core.store import EXITBOT_ID, OrderRow
    from engine.paths import PROJECT_ROOT
    from engine.trading.startup import unmanaged

    bots = load_config(PROJECT_ROOT / "config").bots
    now = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    flatten = OrderRow(client_order_id="exitbot-1", bot_id=EXITBOT_ID, trading_date=date(2026, 11, 23), purpose="exit",
                       symbol="AAPL", side="sell", qty=10.0, notional=None, order_type="market", limit_price=None,
                       time_in_force="day", status="accepted", broker_order_id="b1", filled_qty=0.0,
                       filled_avg_price=None, reason="kill switch", error=None, created_at=now, updated_at=now)  # fmt: skip
    assert unmanaged(bots, [], [flatten]) == []
    assert unmanaged(bots, [], [dataclasses.replace(flatten, bot_id="mom_GONE")])  # a bot's own order is still checked


def _rename_exiting(project: ProjectCopy) -> None:
    """machines/momentum.yaml's `exiting` renamed everywhere it is named (its scenarios too): a state the engine's
    code does not name (`entering` it does, and validation requires it: engine/machines/lint.py ENGINE_STATES)."""
    for relative in ("machines/momentum.yaml", "machines/scenarios/momentum_exits.yaml"):
        project.replace(relative, "exiting", "exit_working", count=-1)


def test_a_bot_the_config_does_not_run_is_not_held_to_the_machines(project: ProjectCopy) -> None:
    """mom_TSLA, disabled (or removed) and holding nothing, left saved in `exiting` by a run of long ago: the
    engine neither restores nor runs it, yet a machine file that renamed `exiting` refused every run (exit 2),
    and nothing but the old state kept for ever, or a hand edit of SQLite, let the engine start again. It is
    checked when bots.yaml runs it again."""
    assert engine(project, "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("INSERT INTO machine_states VALUES ('momentum', 'mom_TSLA', 'exiting', '2026-11-20T15:00:00+00:00')")
    _rename_exiting(project)
    for args in (["validate"], ["run", "--ticks", "2"]):
        result = engine(project, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    drawn = engine(project, "diagram", "momentum", "--bot", "mom_TSLA")  # no node of a state the file lacks
    assert drawn.returncode == 0 and "class " not in drawn.stdout and "no state highlighted" in drawn.stderr
    bots = project.config / "bots.yaml"
    shipped = bots.read_text(encoding="utf-8")
    start, end = shipped.index("  - bot_id: mom_TSLA"), shipped.index("optionsbot:")
    bots.write_text(shipped[:start] + shipped[end:], encoding="utf-8")  # removed
    assert engine(project, "validate").returncode == 0
    bots.write_text(shipped.replace("enabled: false\n    ticker: TSLA", "enabled: true\n    ticker: TSLA"), encoding="utf-8")
    back = engine(project, "validate")  # run again: its saved state counts
    assert back.returncode == 2 and "momentum 'mom_TSLA' is saved in state 'exiting'" in back.stdout


def test_a_saved_state_the_machines_no_longer_have_says_what_to_do(project: ProjectCopy) -> None:
    assert engine(project, "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("UPDATE machine_states SET state = 'exiting' WHERE bot_id = 'mom_AAPL'")
    _rename_exiting(project)
    refused = engine(project, "run", "--ticks", "2")
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()[:-1]  # the problem, then the count
    assert line.endswith(
        "momentum 'mom_AAPL' is saved in state 'exiting', which machines/momentum.yaml no longer has: put 'exiting' "
        "back until a run has moved the machine on, then remove it"
    ), line


def _bot_halted_flat(rig: Rig, clock: ManualClock) -> None:
    """mom_AAPL halted until `resume` (as for a guard that failed), holding nothing."""
    rig.ticks(3)
    assert not rig.store.positions("mom_AAPL")
    with rig.store.transaction():
        rig.engine.exitbot.halt_bot("mom_AAPL", reason="guard failed: boom", condition="guard_error", now=clock.now())


def test_a_halt_whose_bot_was_renamed_refuses_the_start(rig: Rig, project: ProjectCopy, clock: ManualClock) -> None:
    """The halt stays in SQLite under the old bot_id: the same bot under a new one traded past it, the halt (which
    only `resume` ends) no longer stopping anything."""
    _bot_halted_flat(rig, clock)
    project.replace(*RENAME)
    reason = _restart_refused(rig, project, clock)
    assert "a halt until `resume` names 'mom_AAPL' (guard failed: boom), but bots.yaml has no bot 'mom_AAPL'" in reason
    assert [h.scope for h in rig.store.halts(open_only=True)] == ["mom_AAPL"]


def test_a_halt_of_a_disabled_bot_stays_in_force_and_the_run_starts(rig: Rig, project: ProjectCopy, clock: ManualClock) -> None:
    _bot_halted_flat(rig, clock)
    project.replace(*DISABLE)
    again = make_rig(project, clock, broker=rig.engine.broker, exchange=rig.exchange)
    again.ticks(2)
    assert [h.scope for h in again.store.halts(open_only=True)] == ["mom_AAPL"]  # it names a bot bots.yaml has


def test_validate_names_a_halt_whose_bot_is_gone_and_resume_ends_it(project: ProjectCopy) -> None:
    assert engine(project, "run", "--ticks", "3", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    with sqlite3.connect(project.root / "s.db") as conn:
        conn.execute("INSERT INTO halts (scope, reason, conditions, flatten, started_at) VALUES ('mom_AAPL', "
                     "'orders rejected repeatedly', '[\"anomaly\"]', 0, '2026-11-23T14:30:10+00:00')")  # fmt: skip
    project.replace(*RENAME)
    check = engine(project, "validate")
    assert check.returncode == 2
    assert "s.db:0:0: halts.mom_AAPL: a halt until `resume` names 'mom_AAPL'" in check.stdout
    assert engine(project, "run", "--ticks", "2").returncode == 2
    assert engine(project, "status").returncode == 0
    assert engine(project, "resume").returncode == 0
    assert engine(project, "validate").returncode == 0
    assert engine(project, "run", "--ticks", "2").returncode == 0


def test_validate_says_a_broker_named_in_settings_is_not_the_state_files(project: ProjectCopy) -> None:
    """settings.yaml's `broker.name` turned from sim to alpaca over a simulated run's state file: `run` refuses it
    (exit 2: the file holds the simulated account), yet `--validate` said OK. `auto` depends on the environment
    (keys set or not), which validation does not read: not judged."""
    assert engine(project, "run", "--ticks", "2", "--start", "2026-11-23T09:30:00-05:00").returncode == 0
    settings = project.config / "settings.yaml"
    shipped = settings.read_text(encoding="utf-8")
    for name, code in (("sim", 0), ("auto", 0), ("alpaca", 2)):
        settings.write_text(shipped + f"broker:\n  name: {name}\n", encoding="utf-8")
        check = engine(project, "validate")
        assert check.returncode == code, (name, check.stdout)
    assert ("s.db:0:0: meta.broker: the state file holds the state of a 'sim' account; an 'alpaca' run needs its own "
            "state file (system.state_db_path, or --state-db)") in check.stdout  # fmt: skip
