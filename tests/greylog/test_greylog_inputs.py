"""Inputs: plain, rotated and gzipped files, stdin, the year of syslog stamps, and streaming."""

from __future__ import annotations

import gzip
import itertools
from datetime import UTC, datetime

import pytest

from greylog.cli import events_from_lines, records
from greylog.inputs import InputError, read_lines
from greylog.lines import LineReader, SyslogClock
from tests.greylog import greylog_lab as lab


def test_gzip_is_recognised_by_its_magic_bytes_not_its_name(tmp_path):
    disguised = tmp_path / "mail.log.1"  # gzipped, without .gz
    disguised.write_bytes(gzip.compress((lab.POSTGREY_NEW + "\n").encode()))
    plain = tmp_path / "mail.log.gz"  # plain text, named .gz
    plain.write_text(lab.SQLGREY_NEW + "\n")
    assert [line.rstrip("\n") for line in read_lines(str(disguised))] == [lab.POSTGREY_NEW]
    assert [line.rstrip("\n") for line in read_lines(str(plain))] == [lab.SQLGREY_NEW]


def test_rotated_files_are_read_in_the_order_given(tmp_path):
    older = tmp_path / "mail.log.2.gz"
    older.write_bytes(gzip.compress((lab.POSTGREY_NEW + "\n").encode()))
    newer = tmp_path / "mail.log"
    newer.write_text(lab.POSTGREY_PASS + "\n")
    programs = [(r.program, r.message.split(",")[0]) for r in records([str(older), str(newer)], 2026)]
    assert programs == [("postgrey", "action=greylist"), ("postgrey", "action=pass")]


def test_broken_gzip_is_an_input_error(tmp_path):
    broken = tmp_path / "mail.log.3.gz"
    broken.write_bytes(gzip.compress(b"x" * 10000)[:40])  # truncated
    with pytest.raises(InputError, match="not a readable gzip file"):
        list(read_lines(str(broken)))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"cannot read .*missing\.log"):
        list(read_lines(str(tmp_path / "missing.log")))


def test_invalid_utf8_does_not_stop_the_read(tmp_path):
    path = tmp_path / "mail.log"
    path.write_bytes(b"Dec  5 08:00:00 mx1 postfix/smtpd[1]: bad \xff byte\n" + (lab.POSTGREY_NEW + "\n").encode())
    assert len(list(read_lines(str(path)))) == 2


def test_year_defaults_to_the_current_one_and_wraps_into_january():
    clock = SyslogClock(today=datetime(2027, 1, 3, tzinfo=UTC))
    december = clock.stamp("Dec", "31", "23:59:59")  # still ahead of January: last year
    january = clock.stamp("Jan", "1", "00:00:01")
    assert datetime.fromtimestamp(december, UTC).year == 2026
    assert datetime.fromtimestamp(january, UTC).year == 2027
    assert january - december == 2


def test_given_year_is_the_year_of_the_first_line():
    clock = SyslogClock(2020)
    assert datetime.fromtimestamp(clock.stamp("Feb", "29", "12:00:00"), UTC) == datetime(2020, 2, 29, 12, tzinfo=UTC)
    assert clock.stamp("Mar", "1", "00:00:00") is not None
    # Interleaved lines a month back (not a year wrap) stay in the same year.
    assert datetime.fromtimestamp(clock.stamp("Feb", "28", "23:59:59"), UTC).year == 2020


def test_a_day_that_the_year_does_not_have_is_skipped():
    reader = LineReader(SyslogClock(2026))
    assert reader.parse(lab.POSTGREY_NEW.replace("Dec  5", "Feb 29")) is None


def test_the_parser_pulls_lines_one_at_a_time():
    """An endless log: reading it whole would never end; the first events come after a few lines."""
    pulled = 0

    def endless():
        nonlocal pulled
        for number in itertools.count():
            pulled += 1
            yield lab.POSTGREY_NEW.replace("192.0.2.10", f"10.{number // 65536 % 256}.{number // 256 % 256}."
                                                         f"{number % 256}")

    first = list(itertools.islice(events_from_lines(endless(), year=2026), 3))
    assert len(first) == 3
    assert pulled <= 4  # at most one line read ahead
