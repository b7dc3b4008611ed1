"""Fetching history through the real alpaca-py clients, from the emulator's history endpoints on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.data.dataset import DataSet
from engine.data.fetch import FetchError, FetchProgress, HistoryClients, Timeframe, fetch, history_clients
from engine.data.files import read_bars
from engine.data.records import Bar

KEY = "PKTESTKEY0123456789"
SECRET = "testsecret0123456789abcdefghijklmnopqrstu"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # Monday 10:00 in New York


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def emulator(clock: ManualClock) -> Iterator[Emulator]:
    with Emulator(SimExchange(clock, seed=7), key=KEY, secret=SECRET) as running:
        yield running


@pytest.fixture
def clients(emulator: Emulator) -> HistoryClients:
    return history_clients(KEY, SECRET, data_base_url=emulator.url)


def bar_requests(emulator: Emulator) -> list:
    return [r for r in emulator.requests if r.path.endswith("/bars")]


def served(emulator: Emulator, symbol: str, start: datetime, end: datetime) -> list[Bar]:
    """What the emulator's model says, without HTTP: the reference a fetch must reproduce."""
    return [Bar(datetime.fromtimestamp(t, timezone.utc), o, h, low, c, v) for t, o, h, low, c, v, _n, _vw in
            emulator.history.minutes(symbol, start, end)]  # fmt: skip


def test_a_multi_page_answer_arrives_whole(emulator: Emulator, clients: HistoryClients, tmp_path: Path) -> None:
    emulator.bars_page_cap = 100  # two sessions of minute bars (780) come in 8 pages
    result = fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 20), "1Min", tmp_path)
    stored = read_bars(tmp_path, "AAPL")
    assert len(stored) == 780 and result.rows == 780
    start, end = datetime(2026, 11, 19, 5, tzinfo=timezone.utc), datetime(2026, 11, 21, 5, tzinfo=timezone.utc)
    assert stored == served(emulator, "AAPL", start, end)
    pages = bar_requests(emulator)
    assert len(pages) == 8 == result.requests
    assert "page_token" not in pages[0].query and all("page_token" in p.query for p in pages[1:])
    assert all(p.query["symbols"] == ["AAPL"] and p.query["timeframe"] == ["1Min"] and p.query["feed"] == ["iex"] for p in pages)
    # the session's minutes only: 09:30 to 15:59 New York, every minute once, in order
    assert stored[0].timestamp == datetime(2026, 11, 19, 14, 30, tzinfo=timezone.utc)
    assert stored[389].timestamp == datetime(2026, 11, 19, 20, 59, tzinfo=timezone.utc)


def test_a_resumed_fetch_asks_only_for_what_is_missing(emulator: Emulator, clients: HistoryClients, tmp_path: Path) -> None:
    first = fetch(clients, ["AAPL", "BTC/USD"], date(2026, 11, 16), date(2026, 11, 17), "1Min", tmp_path / "parts")
    assert [s.rows for s in first.symbols] == [780, 2880]
    emulator.requests.clear()
    second = fetch(clients, ["AAPL", "BTC/USD"], date(2026, 11, 16), date(2026, 11, 18), "1Min", tmp_path / "parts")
    starts = [(r.query["symbols"][0], r.query["start"][0]) for r in bar_requests(emulator)]
    # from the bar after the last stored one: 16:00 New York for AAPL (the next session opens later), midnight for BTC
    assert starts == [("AAPL", "2026-11-17T21:00:00+00:00"), ("BTC/USD", "2026-11-18T05:00:00+00:00")]
    assert [s.rows for s in second.symbols] == [390, 1440]
    # resumed, the data is what one whole fetch gives
    whole = fetch(clients, ["AAPL", "BTC/USD"], date(2026, 11, 16), date(2026, 11, 18), "1Min", tmp_path / "whole")
    assert whole.rows == first.rows + second.rows
    for symbol in ("AAPL", "BTC/USD"):
        assert read_bars(tmp_path / "parts", symbol) == read_bars(tmp_path / "whole", symbol)
    # nothing missing: no request at all for the pair, whose last bar ends the window; the stock's evening is asked
    # for (Alpaca's stock bars include extended hours, which the emulator does not model), and is empty
    emulator.requests.clear()
    again = fetch(clients, ["AAPL", "BTC/USD"], date(2026, 11, 16), date(2026, 11, 18), "1Min", tmp_path / "parts")
    assert again.rows == 0 and [r.query["symbols"] for r in bar_requests(emulator)] == [["AAPL"]]
    assert again.symbols[1].requests == 0 and again.symbols[1].note.startswith("complete")


def test_progress_is_told_after_each_window(clients: HistoryClients, tmp_path: Path) -> None:
    seen: list[FetchProgress] = []
    fetch(clients, ["BTC/USD", "ETH/USD"], date(2026, 11, 1), date(2026, 11, 9), "15Min", tmp_path, progress=seen.append)
    # 9 days in windows of 7 days x 15 (one window) for each pair
    assert [(p.symbol, p.index, round(p.fraction, 2)) for p in seen] == [("BTC/USD", 0, 0.5), ("ETH/USD", 1, 1.0)]
    assert seen[-1].rows == 9 * 96 + 4 and seen[-1].through == datetime(2026, 11, 10, 5, tzinfo=timezone.utc)
    minute_windows: list[FetchProgress] = []
    fetch(clients, ["SOL/USD"], date(2026, 11, 1), date(2026, 11, 9), "1Min", tmp_path, progress=minute_windows.append)
    assert [p.through.date() for p in minute_windows] == [date(2026, 11, 8), date(2026, 11, 10)]
    assert 0 < minute_windows[0].fraction < minute_windows[1].fraction == 1.0


def test_every_request_waits_for_the_rate_limiter_without_sleeping(
    emulator: Emulator, clients: HistoryClients, clock: ManualClock, tmp_path: Path
) -> None:
    emulator.bars_page_cap = 200
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves; nothing really waits
        slept.append(seconds)
        clock.advance(seconds)

    session = clients.stocks._session
    send = session.request
    result = fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 20), "1Min", tmp_path, per_minute=2, clock=clock,
                   sleep=sleep)  # fmt: skip
    assert result.requests == 4  # 780 bars in pages of 200
    # a bucket of 2 a minute: the first two go at once, each later one waits for its token (30 s a token)
    assert sum(slept) == result.waited_seconds == 60.0 and set(slept) == {30.0}
    assert session.request == send and clients.stocks._retry == 3  # the client is given back as it was


def test_crypto_needs_no_keys_and_stocks_do(emulator: Emulator, tmp_path: Path) -> None:
    keyless = history_clients(None, None, data_base_url=emulator.url)
    assert keyless.stocks is None
    result = fetch(keyless, ["btc/usd"], date(2026, 11, 20), date(2026, 11, 20), "1Hour", tmp_path)
    assert result.symbols[0].symbol == "BTC/USD" and result.rows == 24
    with pytest.raises(FetchError, match="AAPL: no stocks client"):
        fetch(keyless, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Hour", tmp_path)


def test_refused_keys_stop_the_fetch_and_say_why(emulator: Emulator, tmp_path: Path) -> None:
    wrong = history_clients(KEY, "not-the-secret-at-all-0123456789", data_base_url=emulator.url)
    with pytest.raises(FetchError) as caught:
        fetch(wrong, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Min", tmp_path)
    assert caught.value.symbol == "AAPL" and "403" in str(caught.value) and "ALPACA_KEY" in str(caught.value)
    assert not (tmp_path / "bars").exists()


def test_a_failure_keeps_the_windows_written_and_the_next_call_resumes(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = {"bars": 0}
    original = emulator.take_fault

    def second_window_fails(method: str, path: str) -> Fault | None:
        if path.endswith("/bars"):
            asked["bars"] += 1
            if asked["bars"] == 3:  # the first week is two pages (10,080 bars): the second week's first page fails
                return Fault(status=500)
        return original(method, path)

    monkeypatch.setattr(emulator, "take_fault", second_window_fails)
    with pytest.raises(FetchError, match="BTC/USD: the data API answered 500"):
        fetch(clients, ["BTC/USD"], date(2026, 11, 1), date(2026, 11, 20), "1Min", tmp_path)
    # minute bars come a week (7 x 24 hours) at a time: the first week is kept ...
    kept = read_bars(tmp_path, "BTC/USD")
    assert len(kept) == 7 * 1440 and kept[-1].timestamp == datetime(2026, 11, 8, 3, 59, tzinfo=timezone.utc)
    emulator.requests.clear()
    resumed = fetch(clients, ["BTC/USD"], date(2026, 11, 1), date(2026, 11, 20), "1Min", tmp_path)
    # ... and the next call starts after it
    assert bar_requests(emulator)[0].query["start"] == ["2026-11-08T04:00:00+00:00"]
    assert resumed.symbols[0].asked_from == datetime(2026, 11, 8, 4, tzinfo=timezone.utc)
    assert len(read_bars(tmp_path, "BTC/USD")) == 20 * 1440 + 60  # 1 November has 25 hours in New York


def test_an_earlier_start_than_the_stored_data_is_said_not_fetched(clients: HistoryClients, tmp_path: Path) -> None:
    fetch(clients, ["ETH/USD"], date(2026, 11, 18), date(2026, 11, 18), "1Hour", tmp_path)
    result = fetch(clients, ["ETH/USD"], date(2026, 11, 16), date(2026, 11, 19), "1Hour", tmp_path)
    assert result.rows == 24 and "not fetched" in result.symbols[0].note


def test_option_bars_and_day_bars(emulator: Emulator, clients: HistoryClients, tmp_path: Path) -> None:
    contract = "SPY261204C00500000"
    result = fetch(clients, [contract], date(2026, 11, 19), date(2026, 11, 20), "1Hour", tmp_path)
    assert result.rows == 14  # 7 hourly bars a session (14:00Z holds 14:30-15:00), two sessions
    assert bar_requests(emulator)[0].path == "/v1beta1/options/bars"
    days = fetch(clients, ["QQQ"], date(2026, 11, 2), date(2026, 11, 30), "1Day", tmp_path)
    stamps = [b.timestamp for b in read_bars(tmp_path, "QQQ")]
    # sessions only (26 November is Thanksgiving), stamped at midnight in New York; none for a day not yet ended
    assert days.rows == len(stamps) == 15
    assert stamps[0] == datetime(2026, 11, 2, 5, tzinfo=timezone.utc)
    assert datetime(2026, 11, 26, 5, tzinfo=timezone.utc) not in stamps and stamps[-1].date() == date(2026, 11, 20)
    assert DataSet.open(tmp_path).symbols == ("QQQ", contract)


def test_bad_arguments_are_refused_before_any_request(emulator: Emulator, clients: HistoryClients, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeframe '1Week'"):
        fetch(clients, ["AAPL"], date(2026, 11, 2), date(2026, 11, 3), "1Week", tmp_path)
    with pytest.raises(ValueError, match="not after the start"):
        fetch(clients, ["AAPL"], date(2026, 11, 3), date(2026, 11, 1), "1Min", tmp_path)
    with pytest.raises(ValueError, match="no time zone"):
        fetch(clients, ["AAPL"], datetime(2026, 11, 3), date(2026, 11, 4), "1Min", tmp_path)
    assert emulator.requests == []
    assert Timeframe.parse("15Min").seconds == 900 and str(Timeframe.parse("1Hour")) == "1Hour"


def test_a_stored_file_that_is_not_readable_stops_the_fetch(clients: HistoryClients, tmp_path: Path) -> None:
    (tmp_path / "bars").mkdir()
    (tmp_path / "bars" / "AAPL.csv").write_text("timestamp,open\n")
    from engine.data.errors import DataError

    with pytest.raises(DataError, match=r"AAPL\.csv"):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)


def test_a_csv_file_is_appended_as_csv(clients: HistoryClients, tmp_path: Path) -> None:
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "5Min", tmp_path, fmt="csv")
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 20), "5Min", tmp_path)
    text = (tmp_path / "bars" / "AAPL.csv").read_text()
    assert text.startswith("timestamp,open,high,low,close,volume\n2026-11-19T14:30:00Z,")
    assert len(text.splitlines()) == 1 + 2 * 78


def test_the_emulator_pages_and_refuses_as_alpaca_does(emulator: Emulator) -> None:
    import json
    import urllib.request
    from urllib.error import HTTPError

    def get(query: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{emulator.url}/v2/stocks/bars?{query}", headers={"APCA-API-KEY-ID": KEY,
                                         "APCA-API-SECRET-KEY": SECRET})  # fmt: skip
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read())
        except HTTPError as exc:
            return exc.code, json.loads(exc.read())

    window = "timeframe=1Hour&start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z"
    status, body = get(f"symbols=SPY,AAPL&{window}&limit=10")
    assert status == 200 and list(body["bars"]) == ["AAPL", "SPY"]  # by symbol, the limit across symbols
    assert len(body["bars"]["AAPL"]) == 7 and len(body["bars"]["SPY"]) == 3
    assert set(body["bars"]["AAPL"][0]) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
    assert base64.b64decode(body["next_page_token"]).decode().startswith("SPY|")
    status, rest = get(f"symbols=SPY,AAPL&{window}&limit=10&page_token={body['next_page_token']}")
    assert list(rest["bars"]) == ["SPY"] and len(rest["bars"]["SPY"]) == 4 and rest["next_page_token"] is None
    status, newest = get(f"symbols=AAPL&{window}&sort=desc&limit=2")
    assert [b["t"][:13] for b in newest["bars"]["AAPL"]] == ["2026-11-20T20", "2026-11-20T19"]
    assert get(f"symbols=AAPL&{window}&limit=10001")[0] == 400
    assert get("symbols=AAPL&timeframe=2Day")[0] == 400
    assert get("symbols=BTC/USD&timeframe=1Min")[0] == 400  # a pair on the stock endpoint
    assert get("timeframe=1Min")[0] == 400
    # never a bar that has not ended: today's minutes up to 10:00 New York, the 09:59 bar the last
    status, today = get("symbols=AAPL&timeframe=1Min")
    assert len(today["bars"]["AAPL"]) == 30 and today["bars"]["AAPL"][-1]["t"].startswith("2026-11-23T14:59:00")


def test_history_is_the_same_whatever_the_window(emulator: Emulator) -> None:
    history = emulator.history
    start = datetime(2026, 11, 19, 14, 30, tzinfo=timezone.utc)
    whole = list(history.minutes("AAPL", start, start + timedelta(days=2)))
    fresh = type(history)(7)
    later = list(fresh.minutes("AAPL", start + timedelta(days=1), start + timedelta(days=2)))
    assert later == whole[390:] and len(whole) == 780
    # one session opens where the last one closed
    assert whole[390][1] == pytest.approx(whole[389][4], rel=2e-3)
