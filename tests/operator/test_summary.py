"""The summary of a span (end of `run`, `status`): every trading day, P&L per bot per day, every halt that
touched it, and the halts still in force; times in system.timezone."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.core.store import SYSTEM_SCOPE, StateStore, TradeRow
from engine.operator.local import LocalTime
from engine.operator.summary import overlapping_halts, period_lines, period_record

LA = LocalTime("America/Los_Angeles")
MON = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)  # 06:30 in Los Angeles


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "s.db")


def trade(bot: str, day: date, closed: datetime, pnl: float, fees: float = 0.0) -> TradeRow:
    return TradeRow(bot, "AAPL", day, closed - timedelta(minutes=5), closed, 1.0, 100.0, 100.0 + pnl, pnl, fees, "exit")


def test_local_time_is_one_zone_to_the_second() -> None:
    ny = datetime(2026, 11, 23, 9, 30, 0, 123456, tzinfo=ZoneInfo("America/New_York"))
    assert LA(ny) == "2026-11-23T06:30:00-08:00"
    assert LA(MON) == "2026-11-23T06:30:00-08:00"
    assert LA.clock(MON) == "06:30:00" and LA(None) == "-"
    assert LA.day(datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)) == date(2026, 11, 23)  # 23:00 the day before
    start, end = LA.day_bounds(date(2026, 11, 23), date(2026, 11, 24))
    assert (LA(start), LA(end)) == ("2026-11-23T00:00:00-08:00", "2026-11-25T00:00:00-08:00")


def test_an_exit_time_is_shown_whole_when_its_date_or_offset_differs_from_the_entrys() -> None:
    """Clocks fall back on 2026-11-01: 01:19 PST is after 01:32 PDT, and must not read as before it."""
    entry = datetime(2026, 11, 1, 8, 32, 25, tzinfo=timezone.utc)  # 01:32:25 PDT
    assert LA.after(entry + timedelta(minutes=40), entry) == "2026-11-01T01:12:25-08:00"
    assert LA.after(entry + timedelta(minutes=10), entry) == "01:42:25"
    assert LA.after(MON + timedelta(days=3), MON) == "2026-11-26T06:30:00-08:00"  # held over nights


def test_every_day_of_the_span_with_each_bots_pnl_and_trades(store: StateStore) -> None:
    mon, tue, thu = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 26)
    store.add_realized_pnl(mon, "mom_AAPL", -10.0)
    store.add_realized_pnl(mon, "crypto_core", 2.5)
    store.add_realized_pnl(thu, "mom_AAPL", 4.0)
    store.add_trade(trade("mom_AAPL", mon, MON + timedelta(hours=1), -10.0, fees=0.25))
    store.add_trade(trade("crypto_core", mon, MON + timedelta(hours=2), 2.5))
    store.add_trade(trade("mom_AAPL", thu, MON + timedelta(days=3), 4.0))
    store.add_realized_pnl(date(2026, 11, 22), "mom_AAPL", 999.0)  # before the span: not counted
    record = period_record(store, MON, MON + timedelta(days=3, hours=1), MON + timedelta(days=3, hours=1), LA, ["mom_AAPL"])
    assert list(record["days"]) == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert record["days"]["2026-11-23"] == {
        "mom_AAPL": {"realized": -10.0, "trades": 1, "fees": 0.25},  # the given bot order first
        "crypto_core": {"realized": 2.5, "trades": 1, "fees": 0.0},
    }
    assert record["days"][tue.isoformat()] == {}
    lines = period_lines(record, LA)
    assert lines[:4] == [
        "P&L by day (realized USD, [closed trades]):",
        "  2026-11-23: mom_AAPL -10.00 [1], crypto_core +2.50 [1]; total -7.50; fees 0.25",
        "  2026-11-24 to 2026-11-25: nothing realized",  # quiet days folded into one line
        "  2026-11-26: mom_AAPL +4.00 [1]; total +4.00; fees 0.00",
    ]
    assert lines[4] == "halts: 0"


def test_halts_that_touched_the_span_with_start_end_and_reason_and_the_one_still_in_force(store: StateStore) -> None:
    end = MON + timedelta(hours=6)
    before = store.start_halt(SYSTEM_SCOPE, "ended before", ("operator",), False, MON - timedelta(hours=5), None)
    store.end_halt(before, MON - timedelta(hours=4), "operator")
    store.start_halt(
        SYSTEM_SCOPE, "cooloff ran out before", ("anomaly_halt",), False, MON - timedelta(hours=9), MON - timedelta(hours=1)
    )
    ended = store.start_halt(
        SYSTEM_SCOPE, "kill condition: data_stale_halt", ("data_stale_halt",), False, MON, MON + timedelta(hours=6, minutes=30)
    )
    store.end_halt(ended, MON + timedelta(hours=1), "operator")
    store.start_halt(
        "mom_AAPL",
        "orders refused repeatedly (insufficient_funds)",
        ("refusals",),
        False,
        MON + timedelta(hours=2),
        MON + timedelta(hours=2, minutes=30),
    )
    store.start_halt(SYSTEM_SCOPE, "news at 10:00", ("operator",), False, MON + timedelta(hours=5), None)
    later = store.start_halt(SYSTEM_SCOPE, "after the span", ("operator",), False, end + timedelta(hours=1), None)
    store.end_halt(later, end + timedelta(hours=2), "operator")
    spanned = overlapping_halts(store.halts(), MON, end)
    assert [h.reason for h in spanned] == [
        "kill condition: data_stale_halt",
        "orders refused repeatedly (insufficient_funds)",
        "news at 10:00",
    ]
    record = period_record(store, MON, end, end, LA)
    lines = period_lines(record, LA)
    halts = lines[lines.index("halts: 3") + 1 :]
    assert halts[:3] == [
        "  system: 2026-11-23T06:30:00-08:00 -> 2026-11-23T07:30:00-08:00: kill condition: data_stale_halt",
        "  mom_AAPL: 2026-11-23T08:30:00-08:00 -> 2026-11-23T09:00:00-08:00 (its cooloff ran out): "
        "orders refused repeatedly (insufficient_funds)",
        "  system: 2026-11-23T11:30:00-08:00 -> IN FORCE until `python -m engine resume`: news at 10:00",
    ]
    assert halts[3:] == [
        "HALT IN FORCE: the system is halted since 2026-11-23T11:30:00-08:00: news at 10:00; until `python -m engine resume`"
        "; no entries, working entries cancelled; positions are kept, their exits managed"
    ]


def test_a_halt_reason_with_newlines_and_escape_sequences_stays_on_its_line(store: StateStore) -> None:
    """A reason is the operator's text, or an exception's or a broker's message: a newline in it forged a line
    ("halt: none"), an escape sequence recoloured or cleared the terminal that printed the summary."""
    reason = "line1\nhalt: none\x1b[2J\x1b[31m <script>x</script> ünïcødé " + "X" * 10_000
    store.start_halt(SYSTEM_SCOPE, reason, ("operator",), False, MON, None)
    lines = period_lines(period_record(store, MON, MON + timedelta(hours=1), MON + timedelta(hours=1), LA), LA)
    shown = [line for line in lines if "line1" in line]
    assert len(shown) == 2 and all("\n" not in line and "\x1b" not in line for line in shown)
    assert shown[1].startswith("HALT IN FORCE: the system is halted since 2026-11-23T06:30:00-08:00: line1\\nhalt: none\\x1b[2J")
    assert "<script>x</script> ünïcødé " + "X" * 10_000 in shown[1]  # everything else as written, nothing cut


def test_every_word_status_reads_from_the_state_file_stays_on_its_line(store: StateStore) -> None:
    """`status` passed halt reasons through one_line but printed the last run's reason (an exception's text:
    `error: Type: message`), bot ids, a halt's scope, machine states and symbols as stored: a newline in any of
    them forged a line ("halt: none"), an escape sequence cleared or recoloured the operator's terminal."""
    import json

    from engine.trading.runner import LAST_RUN_KEY, status_text

    evil = "x\nhalt: none\x1b[2J"
    store.save_machine_state("momentum", evil, evil, MON)
    store.start_halt(evil, "why", ("operator",), False, MON, None)
    store.set_position(evil, evil, 1.0, 100.0, MON)
    store.add_realized_pnl(MON.date(), evil, -1.0)
    store.add_trade(TradeRow(evil, "AAPL", MON.date(), MON, MON + timedelta(minutes=5), 1.0, 100.0, 99.0, -1.0, 0.0, "exit"))
    end = MON + timedelta(hours=1)
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": MON.isoformat(), "ended_at": end.isoformat(), "reason": f"error: {evil}"}))
    text = status_text(store, end, local=LA)
    assert "\x1b" not in text and "\nhalt: none" not in text, text
    assert text.count("x\\nhalt: none\\x1b[2J") >= 6, text  # each shown with its escapes, on its own line


def test_a_days_fees_are_the_sum_of_its_trades_fees_rounded_once(store: StateStore) -> None:
    """Each trade's fee was added to a running figure rounded to the cent at every step: three crypto round trips
    paying 0.004 each summed to 0.00 (each step rounded back to 0) where the report's own total said 0.01, and a
    day of twenty 0.0151 fees read 0.40 for 0.30 paid. The day's line sums what was paid, rounded once."""
    mon = date(2026, 11, 23)
    for n in range(3):
        store.add_trade(trade("crypto_core", mon, MON + timedelta(minutes=10 * (n + 1)), 0.5, fees=0.004))
    for n in range(20):
        store.add_trade(trade("mom_AAPL", mon, MON + timedelta(hours=1, minutes=n), 1.0, fees=0.0151))
    store.add_trade(trade("crypto_alt", mon, MON + timedelta(hours=2), 0.5, fees=0.004))
    end = MON + timedelta(hours=6)
    record = period_record(store, MON, end, end, LA)
    day = record["days"]["2026-11-23"]
    assert day["crypto_core"]["fees"] == pytest.approx(0.012) and day["mom_AAPL"]["fees"] == pytest.approx(0.302)
    assert day["crypto_core"]["trades"] == 3 and day["mom_AAPL"]["trades"] == 20
    line = period_lines(record, LA)[1]
    assert line.endswith("; fees 0.32"), line  # 0.318 paid: not 0.40, nor 0.31 of each bot's cents added up


def test_money_that_is_not_zero_never_reads_zero_nor_minus_zero() -> None:
    from engine.core.money import cents, money

    assert [money(v) for v in (0.0, -0.0, -1e-12, 0.004, -0.004, -0.0003, 0.005, -1234.567)] == [
        "+0.00", "+0.00", "+0.00", "+0.004", "-0.004", "-0.0003", "+0.01", "-1234.57",
    ]  # fmt: skip
    assert money(0.003, sign=False) == "0.003" and money(-1234.5, group=True) == "-1,234.50"
    assert (cents(-0.004), cents(1.234), cents(-3e-12)) == (-0.004, 1.23, 0.0)


def test_a_day_of_sub_cent_figures_shows_them_not_zero(store: StateStore) -> None:
    """A crypto round trip on a few dollars realizes fractions of a cent and pays them in fees: the day's line
    read "crypto_core -0.00 [1]; total -0.00; fees 0.00", a loss shown as minus nothing and fees paid as none.
    status's counters read "realized P&L -0.00" too."""
    import json

    from engine.trading.runner import LAST_RUN_KEY, status_text

    mon = date(2026, 11, 23)
    store.add_realized_pnl(mon, "crypto_core", -0.0041)
    store.add_trade(trade("crypto_core", mon, MON + timedelta(minutes=10), -0.0041, fees=0.003))
    store.save_machine_state("crypto", "crypto_core", "idle", MON)
    end = MON + timedelta(hours=1)
    store.set_meta(LAST_RUN_KEY, json.dumps({"started_at": MON.isoformat(), "ended_at": end.isoformat(), "reason": "completed"}))
    record = period_record(store, MON, end, end, LA)
    assert record["days"]["2026-11-23"]["crypto_core"]["realized"] == -0.0041  # kept: it rounds to 0 cents
    assert period_lines(record, LA)[1] == "  2026-11-23: crypto_core -0.004 [1]; total -0.004; fees 0.003"
    text = status_text(store, end, day=mon, local=LA)
    assert "realized P&L -0.004" in text and "-0.00 " not in text and "-0.00\n" not in text, text


def test_status_shows_a_positions_quantity_and_price_as_held(store: StateStore) -> None:
    """status printed quantities with :g and prices with :.4f: 1,234,567 shares read 1.23457e+06, a crypto position
    of 0.016175803525 coins read 0.0161758 (not what the broker shows), and a coin priced 0.0000123 read 0.0000."""
    from engine.operator.summary import number
    from engine.trading.runner import status_text

    store.set_position("mom_PENNY", "PNNY", 1_234_567.0, 0.5, MON)
    store.set_position("crypto_core", "ETH/USD", 0.016175803525142564, 3086.3555, MON)
    store.set_position("crypto_alt", "SHIB/USD", 2_000_000.5, 0.0000123, MON)
    text = status_text(store, MON + timedelta(hours=1), day=MON.date(), local=LA)
    assert "PNNY                 1234567 @ 0.5000" in text, text
    assert "ETH/USD              0.016175803525142564 @ 3086.3555" in text
    assert "SHIB/USD             2000000.5 @ 1.23e-05" in text
    assert [number(v) for v in (253.0, 0.75, 248.7033, -0.9999996, 1e-7, 3)] == ["253", "0.75", "248.7033", "-0.9999996", "1e-07", "3"]


def test_under_a_system_halt_an_armed_bot_is_said_to_open_nothing(store: StateStore) -> None:
    """`halt` then `status`: the system line read halted, and every bot armed with no word why; the bots' machines
    step at the next tick, and meanwhile the risk gate grants no entry whatever they read."""
    from engine.trading.runner import status_text

    store.save_machine_state("system", "system", "armed", MON)
    store.save_machine_state("momentum", "mom_AAPL", "armed", MON)
    store.save_machine_state("portfolio", "portfolio", "armed", MON)
    before = status_text(store, MON + timedelta(minutes=1), local=LA)
    store.start_halt(SYSTEM_SCOPE, "news", ("operator",), False, MON + timedelta(minutes=2), None)
    after = status_text(store, MON + timedelta(minutes=3), local=LA)
    assert "opens nothing" not in before
    [bot] = [line for line in after.splitlines() if "mom_AAPL" in line and "since" in line]
    assert bot.endswith("(a system halt is in force: it opens nothing)"), after
    [portfolio] = [line for line in after.splitlines() if line.strip().startswith("portfolio")]
    assert "opens nothing" not in portfolio


def test_a_machine_left_halted_after_its_halt_ran_out_is_said_to_leave_at_its_next_tick(store: StateStore) -> None:
    """A cooloff's `until` passed with no tick since (the engine stopped, or between two ticks): `status` read
    "halted" on the machine's line and "halt: none" below it, with no word of which was true or what came next."""
    from engine.trading.runner import status_text

    store.save_machine_state("system", "system", "halted", MON)
    store.save_machine_state("momentum", "mom_AAPL", "halted", MON)
    store.save_machine_state("momentum", "mom_MSFT", "halted", MON)
    store.start_halt(SYSTEM_SCOPE, "daily loss", ("daily_loss",), False, MON, MON + timedelta(minutes=30))
    store.start_halt("mom_AAPL", "losses", ("max_losses",), False, MON, MON + timedelta(minutes=30))
    store.start_halt("mom_MSFT", "by hand", ("operator",), False, MON, None)
    text = status_text(store, MON + timedelta(hours=1), local=LA)
    lines = {line.split()[1]: line for line in text.splitlines() if " since " in line}
    assert "halt:\n  mom_MSFT: by hand" in text  # the one halt in force
    assert lines["system"].endswith("(no halt is in force now: it leaves halted at its next tick)"), text
    assert lines["mom_AAPL"].endswith(
        "(no halt is in force now: it leaves halted at its next tick once its way out holds: "
        "`python -m engine why mom_AAPL`)"
    ), text
    assert "no halt is in force" not in lines["mom_MSFT"]
