"""Split a log line into (time, program, message), whatever wrote it.

Formats: traditional syslog (Debian's /var/log/mail.log; journalctl's default "short"),
RFC 3339 syslog and journalctl short-iso, journalctl -o json, and Exim's own mainlog.
Syslog's traditional stamp has no year: SyslogClock infers it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}

# "Dec  5 11:56:11 mx1 postfix/smtpd[123]: message" (journalctl "short" looks the same).
# The groups are read by position (match.groups(): one call, not one lookup per name).
_TRADITIONAL = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)? "
    r"\S+ (?P<prog>[^\s\[:]+)(?:\[\d+\])?: (?P<msg>.*)")
# "2026-12-05T11:56:11.123456+01:00 mx1 postfix/smtpd[123]: message" (rsyslog RFC 3339,
# journalctl -o short-iso / short-iso-precise).
_ISO = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
    r"\S+ (?P<prog>[^\s\[:]+)(?:\[\d+\])?: (?P<msg>.*)")
# Exim's mainlog: "2026-12-05 11:56:11 [+0100] [[pid]] message" (log_timezone, log_selector +pid).
_EXIM = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?(?: (?P<tz>[+-]\d{4}))?(?: \[\d+\])? (?P<msg>.*)")
EXIM = "exim"


@dataclass(slots=True)
class Record:
    time: float  # seconds since the epoch; a zone-less stamp counts as UTC (only differences matter)
    program: str  # "postfix/smtpd", "postgrey", "sqlgrey", "exim"...
    message: str


class SyslogClock:
    """The year of year-less stamps, for one file read from its first line on.

    The first line is in ``year`` when given (the year of the file's first line), else in the
    current year, or the one before when its month is still ahead of us (a December log read
    in January). Each wrap from December back to January starts the next year.
    """

    def __init__(self, year: int | None = None, today: datetime | None = None):
        self._given = year
        self._today = today or datetime.now(UTC)
        self._year: int | None = None
        self._month = 0
        self._last: tuple[tuple[str, str, str], float | None] = (("", "", ""), None)

    def stamp(self, month_name: str, day: str, hms: str) -> float | None:
        # A busy log stamps many lines in the same second. The same stamp as the last call's
        # leaves the year as it was (same month: no wrap), so it has the same value.
        key = (month_name, day, hms)
        if key == self._last[0]:
            return self._last[1]
        value = self._compute(month_name, day, hms)
        self._last = (key, value)
        return value

    def _compute(self, month_name: str, day: str, hms: str) -> float | None:
        month = MONTHS.get(month_name)
        if month is None:
            return None
        if self._year is None:
            self._year = self._given if self._given is not None else (
                self._today.year - 1 if month > self._today.month else self._today.year)
        elif self._month - month >= 6:
            # December then January: a new year (a month back by less is interleaving).
            self._year += 1
        self._month = month
        try:
            return datetime(self._year, month, int(day), int(hms[:2]), int(hms[3:5]), int(hms[6:8]),
                            tzinfo=UTC).timestamp()
        except ValueError:  # Feb 29 in a year without it, 25:00...
            return None


class LineReader:
    """Parses the lines of one file; lines of no known shape give None."""

    def __init__(self, clock: SyslogClock):
        self._clock = clock
        self._iso_cache: tuple[str, float] = ("", 0.0)

    def parse(self, line: str) -> Record | None:
        line = line.rstrip("\r\n")
        # Syslog's traditional stamp first, the common case: it starts with a capital letter, so a
        # line it does not match is one of the others or none.
        match = _TRADITIONAL.match(line)
        if match is not None:
            month, day, hms, program, message = match.groups()
            when = self._clock.stamp(month, day, hms)
            return None if when is None else Record(when, program, message)
        first = line[:1]
        if first.isdigit():
            match = _ISO.match(line)
            if match is not None:
                when = self._iso(match["stamp"])
                return None if when is None else Record(when, match["prog"], match["msg"])
            match = _EXIM.match(line)
            if match is not None:
                stamp = match["stamp"] + (match["tz"] or "")
                when = self._iso(stamp.replace(" ", "T", 1))
                return None if when is None else Record(when, EXIM, match["msg"])
            return None
        if first == "{":
            return _journal_json(line)
        return None

    def _iso(self, stamp: str) -> float | None:
        if stamp == self._iso_cache[0]:
            return self._iso_cache[1]
        try:
            parsed = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
        self._iso_cache = (stamp, value)
        return value


def _journal_json(line: str) -> Record | None:
    """One entry of ``journalctl -o json``; MESSAGE may be an array of bytes (non-UTF-8 text)."""
    try:
        entry = json.loads(line)
        when = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        program = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or ""
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):
            message = bytes(message).decode("utf-8", errors="replace")
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(program, str) or not isinstance(message, str):
        return None
    return Record(when, program, message)
