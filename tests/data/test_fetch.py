"""Fetching history through the real alpaca-py clients, from the emulator's history endpoints on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.brokers.emulator import Emulator, Fault
from engine.brokers.sim.exchange import SimExchange
from engine.core.clock import ManualClock
from engine.data.dataset import DataSet
from engine.data.errors import DataError
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
    # from the last stored bar (asked again, to check the history it continues): 15:59 New York for AAPL, 23:59 for BTC
    assert starts == [("AAPL", "2026-11-17T20:59:00+00:00"), ("BTC/USD", "2026-11-18T04:59:00+00:00")]
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


def test_a_refusal_that_echoes_the_keys_is_quoted_without_them(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    # a gateway or proxy in front of the data API that quotes the request's key headers in its refusal: the
    # message is printed by `data fetch`, and read by a service's journal, so the keys are masked in it
    body = f'{{"message": "forbidden: APCA-API-KEY-ID {KEY} APCA-API-SECRET-KEY {SECRET}"}}'
    emulator.faults.append(Fault(status=403, path_prefix="/v2/stocks", body=body))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Min", tmp_path)
    said = str(caught.value)
    assert "403" in said and "APCA-API-SECRET-KEY ***" in said, said
    assert KEY not in said and SECRET not in said and KEY not in caught.value.message


def test_a_refusal_quoting_a_key_across_the_300_character_cut_keeps_no_part_of_it(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    # the message is quoted up to 300 characters: cut before masking, a key straddling the cut kept its start
    body = '{"message": "' + "x" * 280 + f' {SECRET}"}}'
    emulator.faults.append(Fault(status=403, path_prefix="/v2/stocks", body=body))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Min", tmp_path)
    assert "x" * 250 in str(caught.value) and SECRET[:5] not in str(caught.value), str(caught.value)


def test_an_alpaca_apis_keys_are_masked_in_a_fetch_through_it(emulator: Emulator, tmp_path: Path) -> None:
    from engine.brokers.alpaca import AlpacaAPI
    from engine.brokers.ratelimit import TokenBucket
    from engine.core.clock import SystemClock

    api = AlpacaAPI(KEY, SECRET, paper=True, api_base_url=emulator.url, data_base_url=emulator.url,
                    timeout_seconds=5.0, bucket=TokenBucket(190, SystemClock()))  # fmt: skip
    emulator.faults.append(Fault(status=403, path_prefix="/v2/stocks", body=f'{{"message": "bad key {KEY}"}}'))
    with pytest.raises(FetchError) as caught:
        fetch(api, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Min", tmp_path)
    assert "bad key ***" in str(caught.value) and KEY not in str(caught.value)


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
    # ... and the next call starts at its last bar (asked again, and checked against the stored one)
    assert bar_requests(emulator)[0].query["start"] == ["2026-11-08T03:59:00+00:00"]
    assert resumed.symbols[0].asked_from == datetime(2026, 11, 8, 4, tzinfo=timezone.utc)
    assert len(read_bars(tmp_path, "BTC/USD")) == 20 * 1440 + 60  # 1 November has 25 hours in New York


def test_an_earlier_start_than_the_stored_data_is_said_not_fetched(clients: HistoryClients, tmp_path: Path) -> None:
    fetch(clients, ["ETH/USD"], date(2026, 11, 18), date(2026, 11, 18), "1Hour", tmp_path)
    result = fetch(clients, ["ETH/USD"], date(2026, 11, 16), date(2026, 11, 19), "1Hour", tmp_path)
    assert result.rows == 24 and "not fetched" in result.symbols[0].note


@pytest.mark.parametrize(("first", "then"), [("1Min", "1Day"), ("1Min", "1Hour"), ("1Hour", "1Min")])
def test_a_later_start_in_another_timeframe_is_refused_not_appended(emulator: Emulator, clients: HistoryClients,
                                                                    tmp_path: Path, first: str, then: str) -> None:  # fmt: skip
    """The stored bars' last one is asked for again to check the history it continues; with a --from later than
    the day after it, that check was skipped, and bars of another timeframe were appended to the file without a
    word (day bars after minute bars). The last stored bar is now asked for on its own, and refused."""
    fetch(clients, ["AAPL"], date(2026, 11, 16), date(2026, 11, 16), first, tmp_path)
    before = read_bars(tmp_path, "AAPL")
    with pytest.raises(DataError, match=r"AAPL: the data API( has no bar at 2026-11-16T2|'s bar at .* is not the one stored)"):
        fetch(clients, ["AAPL"], date(2026, 11, 18), date(2026, 11, 19), then, tmp_path)
    assert read_bars(tmp_path, "AAPL") == before


def test_a_later_start_in_the_same_timeframe_checks_the_last_bar_and_says_what_is_left_out(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    fetch(clients, ["AAPL"], date(2026, 11, 16), date(2026, 11, 16), "1Min", tmp_path)
    emulator.requests.clear()
    result = fetch(clients, ["AAPL"], date(2026, 11, 18), date(2026, 11, 18), "1Min", tmp_path)
    assert result.rows == 390 and len(read_bars(tmp_path, "AAPL")) == 780
    assert bar_requests(emulator)[0].query["start"][0] == "2026-11-16T20:59:00+00:00"
    assert "2026-11-16T20:59:00Z" in result.symbols[0].note and "not fetched" in result.symbols[0].note


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


def test_a_window_wholly_in_the_future_is_refused_not_nothing_missing(
    emulator: Emulator, clients: HistoryClients, clock: ManualClock, tmp_path: Path
) -> None:
    """`--from 2030-01-01` typed for 2026 was "nothing missing, no bars stored", exit 0, and a folder made for it,
    as if that history were stored whole. A window that has begun is fetched as far as its bars have settled."""
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"the start \(2030-01-01T05:00:00\+00:00\) is in the future"):
        fetch(clients, ["BTC/USD"], date(2030, 1, 1), date(2030, 1, 2), "1Min", out, clock=clock)
    assert emulator.requests == [] and not out.exists()
    result = fetch(clients, ["BTC/USD"], date(2026, 11, 23), date(2026, 11, 24), "1Min", out, clock=clock)
    assert result.symbols[0].rows > 0


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo], ids=["folder", "fifo"])
def test_a_lock_path_of_the_wrong_kind_is_bad_input_not_a_failure_of_the_moment(
        emulator: Emulator, clients: HistoryClients, tmp_path: Path, make: Any) -> None:
    """A folder where .fetch.lock goes was a FetchError (exit 1, 'the same command resumes': it never would), where
    the README gives exit 2 to a path of the wrong kind, as for the state file's lock and a recording's."""
    make(tmp_path / ".fetch.lock")
    with pytest.raises(ValueError, match=r"\.fetch\.lock cannot be the fetch's lock: .* \(remove it\); nothing was fetched"):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert emulator.requests == [] and not (tmp_path / "bars").exists()


def test_a_symbol_the_format_cannot_store_is_refused_before_any_request(emulator: Emulator, clients: HistoryClients,
                                                                        tmp_path: Path) -> None:
    """BTC/USD was fetched and written first, and only then did '../X' stop the fetch (and a lone bad symbol still
    left the folder made, with its lock file)."""
    with pytest.raises(ValueError, match=r"'\.\./X', 'BTC USD': not symbols the data format can store"):
        fetch(clients, ["BTC/USD", "../x", "btc usd"], date(2026, 11, 2), date(2026, 11, 2), "1Min", tmp_path / "d")
    assert emulator.requests == []
    assert not (tmp_path / "d").exists()


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


def test_another_format_for_a_stored_file_appends_in_its_own(clients: HistoryClients, tmp_path: Path) -> None:
    """The help says of --format "a file keeps its own": asked for csv onto a Parquet file, the fetch stopped with
    exit 2 ("is parquet: cannot append csv rows to it") after asking for its first window. The file keeps its format,
    and the symbol's note says so."""
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "5Min", tmp_path)
    result = fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 20), "5Min", tmp_path, fmt="csv")
    assert not (tmp_path / "bars" / "AAPL.csv").exists()
    assert len(read_bars(tmp_path, "AAPL")) == 2 * 78
    (done,) = result.symbols
    assert done.note.endswith("AAPL.parquet keeps its own format, parquet (--format csv is for a new file)"), done.note
    again = fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 20), "5Min", tmp_path, fmt="csv")
    assert again.symbols[0].note.endswith("(--format csv is for a new file)") and not (tmp_path / "bars" / "AAPL.csv").exists()


def emulator_get(emulator: Emulator, path: str, query: str) -> tuple[int, dict]:
    """A GET of the emulator's data API as any client sends one (status, JSON body), without the SDK."""
    import json
    import urllib.request
    from urllib.error import HTTPError

    request = urllib.request.Request(f"{emulator.url}{path}?{query}", headers={"APCA-API-KEY-ID": KEY,
                                     "APCA-API-SECRET-KEY": SECRET})  # fmt: skip
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_emulator_pages_and_refuses_as_alpaca_does(emulator: Emulator) -> None:
    def get(query: str) -> tuple[int, dict]:
        return emulator_get(emulator, "/v2/stocks/bars", query)

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


# --- the answers' shapes: what Alpaca may send is read, what it must not send is refused (issue: history fidelity) ---


def fault_on(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, nth: int, fault: Fault) -> None:
    """`fault` on the `nth` request for bars (1-based), whatever comes before it."""
    asked = {"bars": 0}
    original = emulator.take_fault

    def take(method: str, path: str) -> Fault | None:
        if path.endswith("/bars"):
            asked["bars"] += 1
            if asked["bars"] == nth:
                return fault
        return original(method, path)

    monkeypatch.setattr(emulator, "take_fault", take)


def test_bars_null_is_read_as_no_bars(emulator: Emulator, clients: HistoryClients, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """`"bars": null` made alpaca-py raise AttributeError ('NoneType' object has no attribute 'items'), a traceback
    out of the fetch; Alpaca's Go client reads it as no bars, and so does the fetch now."""
    emulator.bars_page_cap = 100
    fault_on(emulator, monkeypatch, 1, Fault(patch={"bars": None}))  # the first page says no bars, with a token
    result = fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    start = datetime(2026, 11, 19, 5, tzinfo=timezone.utc)
    assert result.rows == 290 and read_bars(tmp_path, "AAPL") == served(emulator, "AAPL", start, start + timedelta(days=1))[100:]
    fault_on(emulator, monkeypatch, 1, Fault(patch={"bars": None, "next_page_token": None}))
    assert fetch(clients, ["MSFT"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path).rows == 0


def test_an_empty_answer_and_an_absent_symbol_store_nothing(emulator: Emulator, clients: HistoryClients,
                                                            tmp_path: Path) -> None:  # fmt: skip
    # a Saturday: Alpaca answers {"bars": {}} (the symbol absent), as the emulator does
    result = fetch(clients, ["AAPL"], date(2026, 11, 21), date(2026, 11, 21), "1Min", tmp_path)
    assert result.rows == 0 and result.symbols[0].last is None and not (tmp_path / "bars").exists()
    emulator.faults.append(Fault(patch={"bars": {"MSFT": []}}))  # another symbol's (empty) list, AAPL's absent
    assert fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path).rows == 0


@pytest.mark.parametrize("key", ["BTCUSD", "btc/usd", "ETH/USD"])
def test_bars_under_another_symbols_key_are_refused_not_dropped(emulator: Emulator, clients: HistoryClients,
                                                                tmp_path: Path, key: str) -> None:  # fmt: skip
    """The day's bars answered under another key than the symbol asked for (BTCUSD, the trading API's spelling;
    lower case; another pair): they were dropped without a word, and the fetch said it had stored 0 bars of a
    day that has 1,440, a hole the next call never fills since it resumes after the last stored bar."""
    bar = {"t": "2026-11-19T05:00:00Z", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0, "n": 1, "vw": 1.0}
    emulator.faults.append(Fault(patch={"bars": {key: [bar]}}))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert caught.value.symbol == "BTC/USD" and f"bars of {key!r}, not asked for" in caught.value.message
    assert not (tmp_path / "bars").exists()


def test_crypto_float_volumes_and_nanosecond_times_are_read_exactly(emulator: Emulator, clients: HistoryClients,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    fetch(clients, ["ETH/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    answer = bar_requests(emulator)[0]
    assert answer.path == "/v1beta3/crypto/us/bars"
    stored = read_bars(tmp_path, "ETH/USD")
    start = datetime(2026, 11, 19, 5, tzinfo=timezone.utc)
    assert stored == served(emulator, "ETH/USD", start, start + timedelta(days=1))
    assert any(not b.volume.is_integer() for b in stored)
    # a time with nine fraction digits and Z, and one with an offset of +00:00: both are the same instant
    emulator.faults.append(Fault(patch={"bars.BTC/USD.0.t": "2026-11-19T05:00:00.000000999Z",
                                        "bars.BTC/USD.1.t": "2026-11-19T05:01:00+00:00"}))  # fmt: skip
    fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    first = read_bars(tmp_path, "BTC/USD")[:2]
    assert [b.timestamp for b in first] == [start, start + timedelta(minutes=1)]


@pytest.mark.parametrize(
    ("page", "patch", "says"),
    [
        (1, {"bars.AAPL.3.o": float("nan")}, "at 2026-11-19T14:33:00Z that has open nan"),
        (1, {"bars.AAPL.3.l": -1.5}, "at 2026-11-19T14:33:00Z that has low -1.5 (a price must be a number above 0)"),
        (1, {"bars.AAPL.3.c": 0}, "at 2026-11-19T14:33:00Z that has close 0.0"),
        (1, {"bars.AAPL.3.v": -1}, "at 2026-11-19T14:33:00Z that has volume -1.0"),
        (1, {"bars.AAPL.3.h": 1.0}, "at 2026-11-19T14:33:00Z that has high 1.0 below low"),
        (1, {"bars.AAPL.3.o": 500.0}, "at 2026-11-19T14:33:00Z that has open 500.0 outside low..high"),
        (1, {"bars.AAPL.3.t": "2026-11-19T14:33:00"}, "at 2026-11-19T14:33:00 that has a time without a time zone"),
        (1, {"bars.AAPL.0.t": "2026-11-18T20:59:00Z"}, "at 2026-11-18T20:59:00Z that lies outside the window asked for"),
        (2, {"bars.AAPL.0.t": "2026-11-19T14:59:00Z"}, "at 2026-11-19T14:59:00Z that is not after the bar before it "
                                                       "(2026-11-19T14:59:00Z): a duplicate"),
        (2, {"bars.AAPL.0.t": "2026-11-19T14:40:00Z"}, "at 2026-11-19T14:40:00Z that is not after the bar before it"),
    ],
)
def test_a_bar_the_format_refuses_stops_the_fetch_naming_symbol_and_time(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    page: int, patch: dict, says: str,
) -> None:  # fmt: skip
    """Bad bars were a DataError about '(rows to write)' (exit 2, as if the user's input were wrong); a naive time
    was taken as the machine's local time; a bar outside the window was silently dropped. Now each is a
    FetchError naming the symbol and the bar's time, and nothing of the window is written."""
    emulator.bars_page_cap = 30
    fault_on(emulator, monkeypatch, page, Fault(patch=patch))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert caught.value.symbol == "AAPL" and says in caught.value.message, caught.value.message
    assert "nothing from 2026-11-19T05:00:00Z on was written" in caught.value.message
    assert not (tmp_path / "bars").exists()


@pytest.mark.parametrize(
    ("timeframe", "patch", "says"),
    [
        ("1Hour", {"bars.AAPL.1.t": "2026-11-19T14:01:00Z"}, "at 2026-11-19T14:01:00Z that is less than 1Hour after"),
        ("1Min", {"bars.AAPL.3.t": "2026-11-19T14:32:30Z"}, "at 2026-11-19T14:32:30Z that is not on a whole minute"),
    ],
)
def test_bars_closer_than_the_timeframe_or_off_the_minute_are_refused(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, timeframe: str, patch: dict, says: str
) -> None:
    """Minute bars answered to a 1Hour request (a proxy dropping the timeframe), or a bar half-way through a
    minute, were stored as bars of the timeframe asked for, without a word."""
    emulator.faults.append(Fault(patch=patch))
    with pytest.raises(FetchError, match=says):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), timeframe, tmp_path)
    assert not (tmp_path / "bars").exists()


def test_a_bar_at_the_windows_end_is_left_to_the_next_window(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API that reads the end asked for loosely may send the bar stamped at it: that bar is the next window's
    first (asked for and checked there), not a reason to stop a fetch that every run would stop at again."""
    emulator.bars_page_cap = 30  # 390 bars: 13 pages, the bar at the end after the last page's

    def loose(status: int, payload: Any) -> tuple[int, str]:
        rows = payload["bars"]["AAPL"]
        rows.append({**rows[-1], "t": "2026-11-20T05:00:00Z"})
        return status, json.dumps(payload)

    fault_on(emulator, monkeypatch, 13, Fault(rewrite=loose))
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    start = datetime(2026, 11, 19, 5, tzinfo=timezone.utc)
    assert read_bars(tmp_path, "AAPL") == served(emulator, "AAPL", start, start + timedelta(days=1))


def test_a_bar_past_the_windows_end_before_bars_inside_it_is_refused(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bar past the end followed by bars inside the window is out of order (here it took the place of the bar of
    15:29 New York). It was dropped wherever it stood, and the window was stored without that minute: a hole no
    word told of, that no later run fills (each resumes after the last stored bar)."""
    emulator.bars_page_cap = 30
    fault_on(emulator, monkeypatch, 2, Fault(patch={"bars.AAPL.29.t": "2026-11-20T05:00:00Z"}))
    with pytest.raises(FetchError, match="at 2026-11-20T05:00:00Z that lies outside the window asked for"):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert not (tmp_path / "bars").exists()


def test_a_fetch_stores_no_bar_that_has_not_ended(emulator: Emulator, clients: HistoryClients, tmp_path: Path) -> None:
    """A bar still forming (this minute's, today's day bar) would be stored for good: files are only appended to,
    and the next run starts after the last bar. Nor is one that ended in the last SETTLE (15 minutes): Alpaca
    revises it with trades reported late, and the next fetch, which asks for the last stored bar again, would find
    it changed and refuse to go on. Bars are stored up to the last that ended SETTLE ago by the clock."""
    from engine.core.clock import ManualClock
    from engine.data.fetch import SETTLE

    now = datetime(2026, 11, 19, 15, 0, 30, tzinfo=timezone.utc)  # 10:00:30 in New York, mid-session
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path, clock=ManualClock(now))
    last = read_bars(tmp_path, "AAPL")[-1].timestamp
    assert last == datetime(2026, 11, 19, 14, 59, tzinfo=timezone.utc) - SETTLE  # ended at 14:45, 15:30 before now
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path, clock=ManualClock(now + SETTLE))
    assert read_bars(tmp_path, "AAPL")[-1].timestamp == datetime(2026, 11, 19, 14, 59, tzinfo=timezone.utc)


def test_a_bad_bar_in_a_later_window_keeps_the_earlier_windows(emulator: Emulator, clients: HistoryClients,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fault_on(emulator, monkeypatch, 3, Fault(patch={"bars.BTC/USD.5.h": 0.5}))  # a week is 2 pages: week 2's first
    with pytest.raises(FetchError, match=r"BTC/USD: the data API sent a bar at 2026-11-08T04:05:00Z that has high"):
        fetch(clients, ["BTC/USD"], date(2026, 11, 1), date(2026, 11, 20), "1Min", tmp_path)
    assert read_bars(tmp_path, "BTC/USD")[-1].timestamp == datetime(2026, 11, 8, 3, 59, tzinfo=timezone.utc)


def test_a_repeated_next_page_token_is_refused_instead_of_looping_forever(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    """alpaca-py follows next_page_token while it is not null: the same token again asked for the same page
    forever (reference §2), the rate limiter's waits included."""
    emulator.bars_page_cap = 50
    emulator.faults.append(Fault(patch={"next_page_token": "QUFQTHwx"}, times=0))

    def sleep(seconds: float) -> None:  # reached only by a loop: 190 requests of one minute
        raise AssertionError("the fetch kept asking for the same page")

    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path, sleep=sleep)
    assert caught.value.symbol == "AAPL" and "next_page_token 'QUFQTHwx' a second time" in caught.value.message
    assert len(bar_requests(emulator)) == 2 and not (tmp_path / "bars").exists()


def test_pages_that_never_end_are_refused_though_every_token_is_new(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    """A server paging a window far past what its bars fill (here 5 bars a page: 78 pages for one session)
    is not followed for ever: past PAGES_PER_WINDOW distinct tokens the fetch stops, having written nothing."""
    from engine.data.fetch import PAGES_PER_WINDOW

    emulator.bars_page_cap = 5
    with pytest.raises(FetchError, match=f"more than {PAGES_PER_WINDOW} pages for one window"):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert len(bar_requests(emulator)) == PAGES_PER_WINDOW + 1 and not (tmp_path / "bars").exists()


@pytest.mark.parametrize("bars", [[], {"AAPL": {"t": "x"}}, {"AAPL": [1, 2]}, "none"])
def test_bars_that_are_not_an_object_of_lists_are_refused(emulator: Emulator, clients: HistoryClients, tmp_path: Path,
                                                          bars: object) -> None:  # fmt: skip
    """A list, an object of objects, a list of numbers: alpaca-py met them with AttributeError or TypeError."""
    emulator.faults.append(Fault(patch={"bars": bars}))
    with pytest.raises(FetchError, match="AAPL: the data API answered 'bars' that is not an object of lists"):
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)


def test_the_emulator_answers_bars_in_alpacas_shapes(emulator: Emulator) -> None:
    def get(path: str, query: str) -> tuple[int, dict]:
        return emulator_get(emulator, path, query)

    window = "timeframe=1Min&start=2026-11-20T14:30:00Z&end=2026-11-20T14:34:00Z"
    _, stocks = get("/v2/stocks/bars", f"symbols=AAPL&{window}&feed=iex&adjustment=split")
    # stock volumes and trade counts are whole numbers, as Alpaca writes them; times are RFC 3339 with 9 digits and Z
    assert all(type(b["v"]) is int and type(b["n"]) is int for b in stocks["bars"]["AAPL"]) and len(stocks["bars"]["AAPL"]) == 5
    assert stocks["bars"]["AAPL"][0]["t"] == "2026-11-20T14:30:00.000000000Z"
    _, crypto = get("/v1beta3/crypto/us/bars", f"symbols=BTC/USD&{window}")
    assert all(type(b["v"]) is float for b in crypto["bars"]["BTC/USD"])
    _, options = get("/v1beta1/options/bars", f"symbols=SPY261204C00500000&{window}")
    assert all(type(b["v"]) is int for b in options["bars"]["SPY261204C00500000"])
    # an empty window: `bars` is an empty object, not null; a window after now is empty, not a 400
    assert get("/v2/stocks/bars", "symbols=AAPL&timeframe=1Min&start=2026-11-21T00:00:00Z&end=2026-11-22T00:00:00Z") == (
        200, {"bars": {}, "next_page_token": None})
    assert get("/v2/stocks/bars", "symbols=AAPL&timeframe=1Min&start=2026-11-24T00:00:00Z&end=2026-11-25T00:00:00Z") == (
        200, {"bars": {}, "next_page_token": None})
    assert get("/v2/stocks/bars", "symbols=AAPL&timeframe=1Min&start=2026-11-25T00:00:00Z&end=2026-11-24T00:00:00Z")[0] == 400
    assert get("/v2/stocks/bars", f"symbols=AAPL&{window}&feed=nasdaq")[0] == 400
    assert get("/v2/stocks/bars", f"symbols=AAPL&{window}&adjustment=everything")[0] == 400


def test_a_fetch_into_the_future_stores_what_has_happened(emulator: Emulator, clients: HistoryClients,
                                                          tmp_path: Path) -> None:  # fmt: skip
    """Minute windows are a week: the last one starts after now. The emulator answered it 400 'end should not be
    before start' (it compared the start with the end cut at now), so such a fetch always failed."""
    result = fetch(clients, ["BTC/USD"], date(2026, 11, 20), date(2026, 12, 10), "1Min", tmp_path)
    assert read_bars(tmp_path, "BTC/USD")[-1].timestamp == NOW - timedelta(minutes=1) and result.rows == 4920


def test_a_bad_page_quoting_a_key_across_its_cut_keeps_no_part_of_it(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path
) -> None:
    # a page of bars that is refused quotes its 'bars' cut to 100 characters: cut before masking, a key
    # straddling the cut kept its first characters, which no mask then found
    emulator.faults.append(Fault(patch={"bars": "x" * 90 + SECRET}))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    said = str(caught.value)
    assert "not an object of lists" in said and "x" * 80 in said, said
    assert SECRET[:4] not in said and "\x1e" not in said, said


BAR = '{"t": "2026-11-19T05:00:00Z", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0, "n": 1, "vw": 1.0}'


@pytest.mark.parametrize(
    ("page", "key"),
    [
        ('{"bars": {"BTC/USD": [' + BAR.replace('"c": 1.0', '"c": 0.5, "c": 1.0') + ']}, "next_page_token": null}', "c"),
        ('{"bars": {"BTC/USD": [], "BTC/USD": [' + BAR + ']}, "next_page_token": null}', "BTC/USD"),
    ],
    ids=["a-bar's-close", "a-symbol's-bars"],
)
def test_a_page_with_a_key_given_twice_is_refused_not_read_one_way(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, page: str, key: str
) -> None:
    """A key twice in one object has two values; alpaca-py (Python's json) kept the last without a word, and the
    fetch stored a bar whose close the API may never have given, or one symbol's bars out of two lists. Refused,
    nothing of the window is stored."""
    emulator.faults.append(Fault(status=200, body=page, path_prefix="/v1beta3/crypto/us/bars"))
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert caught.value.symbol == "BTC/USD" and f'the key "{key}" twice in one object' in caught.value.message
    assert not (tmp_path / "bars").exists()


def test_a_page_slower_than_the_timeout_stops_the_fetch_at_its_deadline(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each piece of a page comes within the read timeout, the whole of it long after: read whole by alpaca-py
    (requests waits for each 10 KB chunk to fill), the fetch waited for as long as the server trickled. It stops
    at twice the read timeout, naming the symbol, nothing of the window written. The read timeout is 20 times the
    pause between pieces: at 4 times (0.2 s against 0.05 s) a loaded machine let one read outwait it, and the
    fetch stopped on that read's timeout instead, a pass or a failure by the machine's load."""
    monkeypatch.setattr("engine.data.fetch.READ_TIMEOUT", 0.6)
    emulator.faults.append(Fault(status=0, trickle_seconds=0.03, trickle_bytes=64, path_prefix="/v1beta3/crypto/us/bars"))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:  # a day of minute bars: 100 KB and more, a minute and more trickled
        fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert time.monotonic() - started < 3.0
    assert caught.value.symbol == "BTC/USD" and "still arriving" in caught.value.message
    assert not (tmp_path / "bars").exists()


def test_headers_slower_than_the_timeout_stop_the_fetch_at_the_pages_deadline(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that sends a page's headers a line at a time, each within the read timeout: the page's deadline
    began only once they were in, so 100 lines held the fetch for 100 read timeouts (50 minutes at 30 s). The
    headers now count against the page's deadline too: the fetch stops at it, naming the symbol, nothing written."""
    fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Day", tmp_path / "warm")  # made once, quickly
    monkeypatch.setattr("engine.data.fetch.READ_TIMEOUT", 0.1)
    emulator.faults.append(Fault(status=0, header_seconds=0.01, header_lines=90, path_prefix="/v1beta3/crypto/us/bars"))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["BTC/USD"], date(2026, 11, 19), date(2026, 11, 19), "1Day", tmp_path)  # a page quick to make
    assert time.monotonic() - started < 0.5  # the deadline is 0.2 s after the request; the headers take 0.9 s
    assert caught.value.symbol == "BTC/USD" and "still arriving" in caught.value.message
    assert not (tmp_path / "bars").exists()


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault(drop=["bars.AAPL.3.n"]), "a bar of AAPL at 2026-11-19T14:33:00.000000000Z without 'n'"),
        (Fault(drop=["bars.AAPL.3.c"]), "a bar of AAPL at 2026-11-19T14:33:00.000000000Z without 'c'"),
        (Fault(drop=["bars.AAPL.3.t"]), "a bar of AAPL (bar 4 of its page) without its time ('t')"),
        (Fault(patch={"bars.AAPL.3.t": 1795100000}), "a bar of AAPL (bar 4 of its page) whose time ('t') is 1795100000"),
        (Fault(patch={"bars.AAPL.3.c": "196.5"}), "whose 'c' is \"196.5\", a text, not a number"),
        (Fault(patch={"bars.AAPL.3.o": None}), "whose 'o' is null, null, not a number"),
        (Fault(patch={"bars.AAPL.3.v": 2**60}), "whose 'v' is 1152921504606846976, a whole number beyond 2**53"),
        (
            Fault(rewrite=lambda status, body: (200, '{"code":50010000,"message":"internal server error"}')),
            "the data API answered 200 with an error, not a page of bars: internal server error",
        ),
        (
            Fault(rewrite=lambda status, body: (200, '{"bars":null,"message":"upstream timed out"}')),
            "the data API answered 200 with an error, not a page of bars: upstream timed out",
        ),
        (Fault(rewrite=lambda status, body: (200, "")), "the data API answered 200 with an empty body"),
    ],
    ids=[
        "no-n",
        "no-close",
        "no-time",
        "epoch-time",
        "text-price",
        "null-price",
        "inexact-volume",
        "error-body",
        "error-beside-null-bars",
        "empty-body",
    ],
)
def test_a_page_alpaca_py_would_misread_stops_the_fetch_in_one_line(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, fault: Fault, says: str
) -> None:
    """alpaca-py's model reads what the data API never sends as if it had: the text "196.5" as a price, an integer
    time as seconds since 1970 (one inside the window was stored), a volume of 2**60 as another number; a 200 whose
    body is an error with `"bars": null` was a window of no bars, a hole in the file no later run fills. A bar
    without a field was pydantic's ValidationError, several lines naming no bar, and an empty body a TypeError.
    Each now stops the fetch with one line naming the symbol and the bar, and nothing of the window is written."""
    emulator.faults.append(fault)
    with pytest.raises(FetchError) as caught:
        fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    assert caught.value.symbol == "AAPL" and says in caught.value.message, caught.value.message
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "bars").exists()


def test_a_page_with_fields_alpaca_py_does_not_know_is_read(emulator: Emulator, clients: HistoryClients,
                                                             tmp_path: Path) -> None:  # fmt: skip
    """Fields added to a bar or to the page (the data API grows) are not a reason to stop; `n` and `vw` may be null
    (alpaca-py's Optional): neither is stored."""
    emulator.faults.append(Fault(patch={"bars.AAPL.*.x": "new", "bars.AAPL.0.n": None, "bars.AAPL.1.vw": None,
                                        "currency": "USD"}))  # fmt: skip
    fetch(clients, ["AAPL"], date(2026, 11, 19), date(2026, 11, 19), "1Min", tmp_path)
    start = datetime(2026, 11, 19, 5, tzinfo=timezone.utc)
    assert read_bars(tmp_path, "AAPL") == served(emulator, "AAPL", start, start + timedelta(days=1))


@pytest.mark.parametrize(
    ("timeframe", "moved", "says"),
    [
        ("15Min", "2026-11-19T14:31:00Z", "not on the 15Min grid"),
        ("1Hour", "2026-11-19T14:07:00Z", "not on a whole hour, as 1Hour bars are"),
        ("1Day", "2026-11-19T05:30:00Z", "not on a whole hour, as 1Day bars are"),
    ],
)
def test_bars_off_the_timeframes_grid_are_refused(
    emulator: Emulator, clients: HistoryClients, tmp_path: Path, timeframe: str, moved: str, says: str
) -> None:
    """A 15Min bar at 14:31 (a proxy's own aggregation, or bars of another grid) was stored as one: a whole minute,
    far enough from the bar before it. A backtest reads it as ending at 14:46."""
    emulator.faults.append(Fault(patch={"bars.AAPL.0.t": moved}))
    start = date(2026, 11, 18) if timeframe == "1Day" else date(2026, 11, 19)
    with pytest.raises(FetchError, match=f"at {moved} that is {says}"):
        fetch(clients, ["AAPL"], start, date(2026, 11, 19), timeframe, tmp_path)
    assert not (tmp_path / "bars").exists()


@pytest.mark.parametrize("failure", ["keys refused", "broker down", "first page refused", "no bars at all"])
def test_a_fetch_that_stores_no_bar_leaves_the_folder_as_it_found_it(emulator: Emulator, clients: HistoryClients,
                                                                     tmp_path: Path, failure: str) -> None:  # fmt: skip
    """A first fetch that failed before any bar (refused keys, a data API that cannot be reached, a first page
    refused) left `--out` made and holding only `.fetch.lock`: a folder that looks fetched and holds nothing, which
    the next backtest took for a data folder. The folders it made, `--out` and those above it, are removed again; a
    folder that was there stays, without the lock file the fetch made in it. Once a bar is stored, all stays."""
    out = tmp_path / "new" / "data"
    use = clients
    if failure == "keys refused":
        use = history_clients(KEY, "not-the-secret-at-all-0123456789", data_base_url=emulator.url)
    elif failure == "broker down":
        use = history_clients(KEY, SECRET, data_base_url="http://127.0.0.1:9")  # nothing listens there
    day = date(2026, 11, 21) if failure == "no bars at all" else date(2026, 11, 20)  # a Saturday: no bars
    for folder in (out, tmp_path):  # made by the fetch, then one that was there
        if failure == "first page refused":
            emulator.faults.append(Fault(status=500, path_prefix="/v2/stocks"))
        if failure == "no bars at all":
            assert fetch(use, ["AAPL"], day, day, "1Min", folder).rows == 0
        else:
            with pytest.raises(FetchError, match="AAPL") as caught:
                fetch(use, ["AAPL"], day, day, "1Min", folder)
            assert caught.value.nothing_stored  # `data fetch` says the folder is as it was
        assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))
        assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    if failure == "no bars at all":
        fetch(use, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Hour", out)
        assert sorted(p.name for p in out.iterdir()) == [".fetch.lock", "bars"]  # a fetch that stored bars keeps its lock
    else:  # a failure after bars were stored keeps them, and says they stay
        emulator.faults.clear()
        fetch(clients, ["AAPL"], date(2026, 11, 20), date(2026, 11, 20), "1Hour", out)
        emulator.faults.append(Fault(status=500, path_prefix="/v2/stocks"))
        with pytest.raises(FetchError) as caught:
            fetch(clients, ["MSFT"], date(2026, 11, 20), date(2026, 11, 20), "1Hour", out)
        assert not caught.value.nothing_stored and (out / "bars" / "AAPL.parquet").is_file()
