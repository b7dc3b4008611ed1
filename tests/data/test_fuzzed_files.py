"""Seeded random damage to valid CSV and Parquet files: whatever a file becomes, opening the folder either reads it
or raises one DataError whose every problem is one line of `file:line:0: ...`; never another exception.

A sample of the class the hand-written cases in test_bad_data.py, test_hostile_data.py and test_real_world_files.py
name one by one, run on every change so that a new check cannot reopen it (a traceback on a byte nobody thought of).
"""

from __future__ import annotations

import io
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from engine.data.dataset import DataSet
from engine.data.errors import DataError
from engine.data.files import read_table, write_bars, write_quotes
from engine.data.records import Bar, Quote

T0 = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)
BARS = [Bar(T0 + timedelta(minutes=i), 100.0 + i / 4, 100.5 + i / 4, 99.5 + i / 4, 100.25 + i / 4, 1000.0 + i)
        for i in range(8)]
QUOTES = [Quote(T0 + timedelta(seconds=5 * i), 100.0 + i / 100, 100.02 + i / 100) for i in range(8)]
# What damage is made of: the format's own characters, and the cells and bytes files go wrong with.
PIECES = [*',\n\r"\' .-+:TZe0123456789nNaIf\t;\x00\ufeff\u00a0<{[', "1e400", "nan", "inf", "2026-11-23T14:30:00Z",
          ",,", "\n\n", '""', "-0"]
PROBLEM = re.compile(r"^[^\n]+:\d+:0: [^\n]+$")


def _damaged_text(rng: random.Random, text: str) -> bytes:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(chars) + 1)
        choice = rng.random()
        if choice < 0.4:
            chars.insert(at, rng.choice(PIECES))
        elif chars:
            if choice < 0.7:
                chars.pop(min(at, len(chars) - 1))
            else:
                chars[min(at, len(chars) - 1)] = rng.choice(PIECES)
    return "".join(chars).encode("utf-8")


def _damaged_bytes(rng: random.Random, data: bytes) -> bytes:
    damaged = bytearray(data)
    if rng.random() < 0.2:
        return bytes(damaged[: rng.randrange(len(damaged))])  # cut short
    for _ in range(rng.randint(1, 4)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged)


def _opens_or_says_why(folder: Path) -> None:
    try:
        DataSet.open(folder)
    except DataError as exc:
        assert exc.problems, "a DataError with no problem"
        for problem in exc.problems:
            assert PROBLEM.fullmatch(str(problem)), repr(str(problem))


@pytest.mark.parametrize("kind", ["bars", "quotes"])
def test_damaged_csv_is_read_or_refused_at_its_place(tmp_path: Path, kind: str) -> None:
    rng = random.Random(20261202)
    source = tmp_path / "source"
    (write_bars(source, "AAPL", BARS, "csv", fsync=False) if kind == "bars"
     else write_quotes(source, "AAPL", QUOTES, "csv", fsync=False))  # fmt: skip
    text = (source / kind / "AAPL.csv").read_text(encoding="utf-8")
    for case in range(150):
        folder = tmp_path / f"case{case}"
        (folder / kind).mkdir(parents=True)
        (folder / kind / "AAPL.csv").write_bytes(_damaged_text(rng, text))
        _opens_or_says_why(folder)


@pytest.mark.parametrize("checksums", [True, False], ids=["page-checksums", "no-checksums"])
def test_damaged_parquet_is_read_or_refused_at_its_place(tmp_path: Path, checksums: bool) -> None:
    rng = random.Random(1202)
    source = tmp_path / "source"
    write_bars(source, "AAPL", BARS, fsync=False)
    buffer = io.BytesIO()
    pq.write_table(read_table(source, "bars", "AAPL"), buffer, write_page_checksum=checksums)
    for case in range(80):
        folder = tmp_path / f"case{case}"
        (folder / "bars").mkdir(parents=True)
        (folder / "bars" / "AAPL.parquet").write_bytes(_damaged_bytes(rng, buffer.getvalue()))
        _opens_or_says_why(folder)
