"""Before a run starts: the broker accepts the keys, and every configured symbol exists and trades."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterable
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from engine.brokers.emulator import Emulator
from engine.brokers.sim.exchange import SimExchange
from engine.brokers.snapshot import SnapshotBroker
from engine.config.loader import load_config
from engine.core.clock import SystemClock
from engine.core.journal import read_events
from engine.core.store import StateStore
from engine.trading.startup import ZONE_KEY, changed_zone, check_broker
from tests.brokers.conftest import KEY, SECRET, make_api
from tests.conftest import ProjectCopy
from tests.trading.test_run_command import _emulator_env, command, engine


def test_every_symbol_is_checked_and_each_failure_names_its_bot(project: ProjectCopy, clock) -> None:
    exchange = SimExchange(clock)
    exchange.set_asset("AAPL", exists=False)
    exchange.set_asset("SPY", status="inactive", tradable=False)
    exchange.set_asset("BTC/USD", fractionable=False)
    with Emulator(exchange, key=KEY, secret=SECRET) as emulator:
        problems = check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots)
    assert problems == [
        "mom_AAPL: 'AAPL' is not a symbol the broker knows",
        "opt_core: 'SPY' is not tradable at the broker (status inactive, tradable False)",
        "crypto_core: 'BTC/USD' cannot be traded in fractions, which this bot's sizing needs",
    ]


def test_a_good_config_starts(project: ProjectCopy, clock) -> None:
    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:
        assert check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots) == []


def test_bad_keys_at_start_are_a_clear_error_and_a_non_zero_exit(project: ProjectCopy) -> None:
    with Emulator(SimExchange(SystemClock(), seed=7), key=KEY, secret=SECRET) as emulator:
        env = {**_emulator_env(emulator), "ALPACA_SECRET": "not-the-secret-at-all-0123456789"}
        done = subprocess.run(
            command(project, "run", "--broker", "alpaca", "--once"),
            capture_output=True,
            text=True,
            cwd=project.root,
            env=env,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert "the broker refused the API keys" in done.stderr and "Traceback" not in done.stderr
    assert not (project.root / "state").exists()  # refused before anything was written


def test_a_symbol_of_another_asset_class_than_its_bot_trades_is_refused(project: ProjectCopy, clock) -> None:
    """`BTCUSD` is a ticker to the schema (capital letters) and, to Alpaca, the old spelling of the pair BTC/USD:
    /v2/assets/BTCUSD answers the crypto asset, which exists and trades. A MomentumBot (or the OptionsBot's
    underlying) given it passed the start-up check and ran as a stock bot on a coin: stock quotes that never come,
    orders with a stock's time in force. The asset's class must be the one its bot trades."""
    project.replace("config/bots.yaml", "ticker: AAPL", "ticker: BTCUSD")
    project.replace("config/bots.yaml", "tickers: [SPY, QQQ]", "tickers: [SPY, ETHUSD]")
    with Emulator(SimExchange(clock), key=KEY, secret=SECRET) as emulator:
        problems = check_broker(SnapshotBroker(make_api(emulator, clock), clock), load_config(project.config).bots)
    assert problems == [
        "mom_AAPL: 'BTCUSD' is a crypto asset at the broker (BTC/USD), but a momentum bot trades stocks: give it "
        "a stock's ticker, or trade the pair with the cryptobot",
        "opt_core: 'ETHUSD' is a crypto asset at the broker (ETH/USD), but an options bot trades stocks' options: "
        "give it a stock's ticker, or trade the pair with the cryptobot",
    ]


# --- system.timezone changed between runs on one state file ---------------------------------------------------------

LA, AUCKLAND = "America/Los_Angeles", "Pacific/Auckland"
IN_SESSION = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # 07:00 on the 23rd in LA, 04:00 on the 24th in Auckland


def _active(*days: date) -> Callable[[Iterable[date]], set[date]]:
    return lambda asked: set(asked) & set(days)


def test_a_zone_unchanged_or_never_recorded_is_taken_whatever_the_file_holds() -> None:
    """A state file written before the zone was recorded (or a new one) is taken as it is, its zone recorded then;
    the same zone again is what every restart is."""
    busy = _active(date(2026, 11, 23), date(2026, 11, 24))
    assert changed_zone(None, AUCKLAND, IN_SESSION, busy, simulated=False) is None
    assert changed_zone(LA, LA, IN_SESSION, busy, simulated=False) is None


def test_a_new_zone_is_refused_while_the_old_zones_today_holds_records() -> None:
    """Los Angeles to Auckland mid-session: the records are dated the 23rd, Auckland's today is the 24th, so the
    day's trade caps, budgets and counters started over. Refused, naming both zones, the day, and when it ends in
    both (the later of the two midnights, shown in the new zone)."""
    why = changed_zone(LA, AUCKLAND, IN_SESSION, _active(date(2026, 11, 23)), simulated=False)
    assert why is not None
    assert why.startswith(f"counts its trading days in {LA}, but system.timezone is now {AUCKLAND}")
    assert f"2026-11-23 (today in {LA})" in why and "put system.timezone back to America/Los_Angeles" in why
    assert "wait until 2026-11-23 has ended in both zones (2026-11-24T21:00:00+13:00)" in why
    assert "start a new state file" in why and "--start" not in why and "\n" not in why


def test_a_new_zone_is_refused_while_its_own_today_holds_another_days_records() -> None:
    """Auckland to Los Angeles: the session of Monday the 23rd in LA was dated the 24th in Auckland, so on Tuesday
    the 24th in LA yesterday's counters read as today's. Refused on the new zone's today too; a simulation is told
    that `run --start` moves its clock past it."""
    tuesday = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)  # 07:00 on the 24th in LA, 04:00 on the 25th in Auckland
    why = changed_zone(AUCKLAND, LA, tuesday, _active(date(2026, 11, 24)), simulated=True)
    assert why is not None and f"2026-11-24 (today in {LA})" in why
    assert "wait until 2026-11-24 has ended in both zones (2026-11-25T00:00:00-08:00; a simulation: `run --start`" in why
    night = IN_SESSION.replace(hour=9)  # 01:00 on the 23rd in LA, 22:00 on the 23rd in Auckland
    both = changed_zone(AUCKLAND, LA, night, _active(date(2026, 11, 23)), simulated=False)
    assert both is not None and f"2026-11-23 (today in {AUCKLAND} and {LA})" in both


def test_a_new_zone_is_taken_once_neither_zones_today_holds_records() -> None:
    """Once the day has ended in both zones (here the days before and after hold records, today none) the change
    cannot move a count from one day to another: it is taken."""
    quiet = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)  # 00:00 on the 24th in LA, 21:00 on the 24th in Auckland
    assert changed_zone(LA, AUCKLAND, quiet, _active(date(2026, 11, 23), date(2026, 11, 25)), simulated=False) is None
    assert changed_zone(LA, AUCKLAND, quiet - timedelta(seconds=1), _active(date(2026, 11, 23)), simulated=False)


def test_a_recorded_zone_this_machine_does_not_know_is_refused_while_any_nearby_day_holds_records() -> None:
    """A hand edit (or a zone missing from this machine's database): which date it calls today is unknown, so any
    date within two days of today (zones are at most 26 hours apart) holding a record refuses the change."""
    why = changed_zone("Mars/Olympus", LA, IN_SESSION, _active(date(2026, 11, 25)), simulated=False)
    assert why is not None and "'Mars/Olympus', a zone this machine does not know" in why and "2026-11-25" in why
    assert changed_zone("Mars/Olympus", LA, IN_SESSION, _active(date(2026, 11, 26)), simulated=False) is None
    forged = changed_zone("Mars\nhalt: none\x1b[2J", LA, IN_SESSION, _active(date(2026, 11, 23)), simulated=False)
    assert forged is not None and "\n" not in forged and "\x1b" not in forged  # the state file's text, escaped


def test_a_zone_under_another_name_with_the_same_rules_is_taken_whatever_today_holds() -> None:
    """US/Pacific is America/Los_Angeles, Etc/UTC is UTC: the same rules under another name were refused as a change
    while today held records (a renamed zone cost a trading day). The names differ; the dates do not."""
    busy = _active(date(2026, 11, 23), date(2026, 11, 24))
    for recorded, zone in ((LA, "US/Pacific"), ("US/Pacific", LA), ("Etc/UTC", "UTC"), ("UTC", "Etc/UTC")):
        assert changed_zone(recorded, zone, IN_SESSION, busy, simulated=False) is None, (recorded, zone)
        assert changed_zone(recorded, zone, datetime(2026, 7, 1, 18, tzinfo=timezone.utc), busy, simulated=False) is None


def test_a_zone_is_the_same_only_while_every_instant_of_today_has_the_same_offset() -> None:
    """America/Phoenix keeps UTC-7 all year; Los Angeles is UTC-7 in summer, UTC-8 in winter. A change between the two
    while today holds records is refused whenever some instant of today has another offset in each (another date at
    one of its ends): in winter, and on the day Los Angeles' clocks go back (1 November 2026, 09:00 UTC), though
    both read UTC-7 at the moment of the change. In summer, and the evening before, every instant of today is dated
    alike in both: nothing of today's is counted elsewhere, and the change is taken."""
    phoenix = "America/Phoenix"
    summer = _active(date(2026, 7, 1))
    assert changed_zone(LA, phoenix, datetime(2026, 7, 1, 18, tzinfo=timezone.utc), summer, simulated=False) is None
    assert changed_zone(LA, phoenix, IN_SESSION, _active(date(2026, 11, 23)), simulated=False) is not None
    clocks_back = datetime(2026, 11, 1, 8, 30, tzinfo=timezone.utc)  # 01:30 in both, UTC-7 in both
    assert changed_zone(LA, phoenix, clocks_back, _active(date(2026, 11, 1)), simulated=False) is not None
    assert changed_zone(phoenix, LA, clocks_back, _active(date(2026, 11, 1)), simulated=False) is not None
    evening_before = datetime(2026, 11, 1, 6, 30, tzinfo=timezone.utc)  # 23:30 on 31 October in both
    assert changed_zone(LA, phoenix, evening_before, _active(date(2026, 10, 31)), simulated=False) is None
    # London keeps UTC's offset in winter only
    london = "Europe/London"
    assert changed_zone("UTC", london, datetime(2026, 7, 1, 12, tzinfo=timezone.utc), summer, simulated=False) is not None


def test_run_takes_the_same_zone_under_another_name_mid_session(project: ProjectCopy) -> None:
    """A morning simulated in Los Angeles, then system.timezone written US/Pacific: the run goes on (it was refused
    until the day had ended in "both zones"), records the new name and says so; `--validate` passes."""
    assert engine(project, "run", "--quiet", "--ticks", "400", "--start", "2026-11-23T06:30:00-08:00").returncode == 0
    _to_zone(project, LA, "US/Pacific")
    assert engine(project, "validate").returncode == 0
    taken = engine(project, "run", "--ticks", "2")
    assert taken.returncode == 0, taken.stderr
    assert f"trading days are now counted in US/Pacific (this state file counted them in {LA})" in taken.stdout
    with closing(StateStore(project.root / "s.db")) as store:
        assert store.meta(ZONE_KEY) == "US/Pacific"


def _dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


def _to_zone(project: ProjectCopy, before: str, after: str) -> None:
    project.replace("config/settings.yaml", f"timezone: {before}", f"timezone: {after}")


def test_run_refuses_a_new_zone_mid_session_and_takes_it_once_the_day_ended_in_both(project: ProjectCopy) -> None:
    """A morning simulated in Los Angeles, then system.timezone set to Auckland: the rest of the same session would
    have counted from zero in Auckland's date (the trade caps and budgets a way around). `run` refuses it, exit 2,
    one line naming both zones and what to do, the state file untouched and nothing logged; `--validate` says the
    same; the operator's commands still work. From the end of the day in both zones the change is taken, recorded,
    and said on the terminal and in `run_start`."""
    assert engine(project, "run", "--quiet", "--ticks", "400", "--start", "2026-11-23T06:30:00-08:00").returncode == 0
    db, log = project.root / "s.db", project.root / "app.jsonl"
    with closing(StateStore(db)) as store:
        assert store.meta(ZONE_KEY) == LA and store.days_with_activity([date(2026, 11, 23)])
    _to_zone(project, LA, AUCKLAND)
    before, logged = _dump(db), log.read_text()
    refused = engine(project, "run", "--quiet", "--ticks", "5")
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    [line] = refused.stderr.splitlines()
    assert f"counts its trading days in {LA}, but system.timezone is now {AUCKLAND}" in line
    assert "wait until 2026-11-23 has ended in both zones (2026-11-24T21:00:00+13:00; a simulation" in line
    assert _dump(db) == before and log.read_text() == logged
    check = engine(project, "validate")
    assert check.returncode == 2 and f"s.db:0:0: meta.timezone: the state file counts its trading days in {LA}" in check.stdout
    for operator in (("status",), ("why", "mom_AAPL"), ("halt", "--reason", "checking"), ("resume",)):
        assert engine(project, *operator).returncode == 0, operator
    assert engine(project, "run", "--quiet", "--ticks", "1", "--start", "2026-11-24T20:59:59+13:00").returncode == 2
    taken = engine(project, "run", "--ticks", "2", "--start", "2026-11-24T21:00:00+13:00")
    assert taken.returncode == 0, taken.stderr
    assert f"trading days are now counted in {AUCKLAND} (this state file counted them in {LA})" in taken.stdout
    start = [e for e in read_events(log) if e["event"] == "run_start"][-1]
    assert start["timezone"] == AUCKLAND and start["timezone_was"] == LA
    with closing(StateStore(db)) as store:
        assert store.meta(ZONE_KEY) == AUCKLAND
    assert engine(project, "validate").returncode == 0


def test_run_refuses_going_back_to_a_zone_that_would_read_yesterdays_counters_as_today(project: ProjectCopy) -> None:
    """Auckland to Los Angeles: Monday's session in LA was dated Tuesday in Auckland, so Tuesday's session in LA
    would start with Monday's trades counted against its caps, and Monday's loss against its budgets. Refused
    on the new zone's today; a day with no records in either zone is taken."""
    _to_zone(project, LA, AUCKLAND)
    assert engine(project, "run", "--quiet", "--ticks", "400", "--start", "2026-11-23T06:30:00-08:00").returncode == 0
    _to_zone(project, AUCKLAND, LA)
    refused = engine(project, "run", "--quiet", "--ticks", "1", "--start", "2026-11-24T06:30:00-08:00")
    assert refused.returncode == 2 and f"orders, fills or counters of 2026-11-24 (today in {LA})" in refused.stderr
    assert engine(project, "run", "--quiet", "--ticks", "1", "--start", "2026-11-25T06:30:00-08:00").returncode == 0


def test_a_state_file_that_recorded_no_zone_is_taken_and_given_the_current_one(project: ProjectCopy) -> None:
    """State files written before the zone was recorded keep working: the zone of the first run that reads them is
    recorded, and from then on a change is judged."""
    assert engine(project, "run", "--quiet", "--ticks", "400", "--start", "2026-11-23T06:30:00-08:00").returncode == 0
    with closing(sqlite3.connect(project.root / "s.db")) as conn, conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (ZONE_KEY,))
    _to_zone(project, LA, AUCKLAND)
    assert engine(project, "validate").returncode == 0
    assert engine(project, "run", "--quiet", "--ticks", "1").returncode == 0
    with closing(StateStore(project.root / "s.db")) as store:
        assert store.meta(ZONE_KEY) == AUCKLAND
    _to_zone(project, AUCKLAND, LA)
    assert engine(project, "run", "--quiet", "--ticks", "1").returncode == 2


def test_a_zone_recorded_by_hand_is_escaped_when_the_run_says_it_took_a_new_one(project: ProjectCopy) -> None:
    """The zone the state file held is printed as the run takes the new one: text from the state file (a hand
    edit), so a newline in it would forge a line on the terminal, as a halt's reason would."""
    assert engine(project, "run", "--quiet", "--ticks", "1", "--start", "2026-11-23T06:30:00-08:00").returncode == 0
    with closing(sqlite3.connect(project.root / "s.db")) as conn, conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", ("Mars\nhalt: none", ZONE_KEY))
    taken = engine(project, "run", "--quiet", "--ticks", "1", "--start", "2026-11-25T06:30:00-08:00")
    assert taken.returncode == 0, taken.stderr
    assert f"trading days are now counted in {LA} (this state file counted them in Mars\\nhalt: none)" in taken.stdout
    assert "\nhalt: none" not in taken.stdout
