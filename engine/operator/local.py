"""Times as a person reads them: in `system.timezone`, the same zone on every line of every command.

The engine keeps aware datetimes in whatever zone they were made (UTC from the system clock, New York from
the simulated exchange) and the JSONL stays UTC; only what is printed for a person goes through here, so a
run's start line, its summary, `status`, `report` and `why` never mix zones.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo


class LocalTime:
    """Formats instants in one zone: ISO 8601 to the second with its offset, so a time can be pasted back into
    `--start` or compared with the log."""

    def __init__(self, zone: str | ZoneInfo = "UTC"):
        self.tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)

    @property
    def name(self) -> str:
        return self.tz.key

    def __call__(self, when: datetime | None) -> str:
        if when is None:
            return "-"
        return self._in_zone(when).isoformat(timespec="seconds")

    def _in_zone(self, when: datetime) -> datetime:
        """`when` in this zone, or as it was saved when this zone cannot hold it: a time at the calendar's ends
        (0001-01-01 UTC is still year 0 in Los Angeles) comes only from a damaged or hand-edited record, and every
        command must show it, as written, rather than end in an OverflowError traceback."""
        try:
            return when.astimezone(self.tz)
        except OverflowError:
            return when

    def clock(self, when: datetime) -> str:
        """The time of day only, for lines that already say which day they are about."""
        return self._in_zone(when).strftime("%H:%M:%S")

    def after(self, when: datetime, since: datetime) -> str:
        """`when`, shown after `since` on one line: its time of day while both share a date and a UTC offset, else
        in full (a trade held over a night, or over the hour clocks fall back, where 01:19 PST follows 01:32 PDT)."""
        shown, base = self._in_zone(when), self._in_zone(since)
        if shown.date() == base.date() and shown.utcoffset() == base.utcoffset():
            return shown.strftime("%H:%M:%S")
        return shown.isoformat(timespec="seconds")

    def day(self, when: datetime) -> date:
        """The trading date of an instant: the engine counts days in the same zone (Engine.trading_date)."""
        return self._in_zone(when).date()

    def day_bounds(self, first: date, last: date) -> tuple[datetime, datetime]:
        """From the start of `first` to the start of the day after `last`, in this zone."""
        start = datetime.combine(first, time(0), self.tz)
        end = datetime.combine(last + timedelta(days=1), time(0), self.tz)
        return start, end

    def parse_utc(self, text: str) -> datetime:
        """A `ts` of the JSONL (UTC ISO text) as an aware datetime."""
        value = datetime.fromisoformat(text)
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
