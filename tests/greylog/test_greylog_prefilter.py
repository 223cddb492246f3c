"""The substring test in cli.records() that skips lines before any parsing must never skip a
line a parser uses: every kind of line the parsers recognise, in every layout they accept."""

from __future__ import annotations

import io
import json
import re

import pytest

from greylog.cli import _LineCounter, events_from_lines, records
from greylog.daemons import Dispatcher
from greylog.inputs import read_line_batches, read_lines
from greylog.lines import LineReader, SyslogClock
from tests.greylog import greylog_lab as lab

GREYLIST = re.compile("greylist", re.IGNORECASE)
EXIM_ID = "1tJxyz-000123-AB"


def _journal(program: str, message: str | list[int], spaced: bool = False) -> str:
    entry = {"__REALTIME_TIMESTAMP": "1796457601000000", "SYSLOG_IDENTIFIER": program, "MESSAGE": message}
    if not spaced:
        return json.dumps(entry)
    # journalctl -o json's own layout: '"KEY" : value', arrays as '[ 1, 2 ]'.
    return "{ " + ", ".join(f'"{key}" : ' + (f"[ {', '.join(map(str, value))} ]" if isinstance(value, list)
                                             else json.dumps(value)) for key, value in entry.items()) + " }"


def _message(line: str) -> str:
    return line.split("]: ", 1)[1]


# Every line kind a parser turns into an event or a message-table entry, in the lab's layout...
KINDS = [
    lab.POSTGREY_NEW, lab.POSTGREY_EARLY, lab.POSTGREY_PASS, lab.POSTGREY_BOUNCE,
    lab.SQLGREY_NEW, lab.SQLGREY_EARLY, lab.SQLGREY_OK, lab.SQLGREY_NULL, lab.SQLGREY_WHITELIST,
    lab.SQLGREY_EARLY.replace("early reconnect", "throttling"),
    lab.POSTFIX_REJECT, lab.POSTFIX_SQLGREY_REJECT,
    # cleanup's message-id=<...> line is read by no parser: it is noise (below)
    *(line for line in lab.POSTFIX_ACCEPTED if "postfix/cleanup" not in line),
    lab.EXIM_DEFER, lab.EXIM_DEFER_BOUNCE, *lab.EXIM_ACCEPTED,
]
# ...and in the other layouts the parsers accept: spacing, case, stamps, programs, journal forms.
VARIANTS = [
    lab.POSTGREY_NEW.replace("Dec  5 08:00:01", "Dec 15 08:00:01.123456").replace("postgrey[50]", "postgrey"),
    lab.POSTGREY_NEW.replace("sender=Alice@pool.test", "sender=ALICE@POOL.TEST"),
    lab.POSTFIX_REJECT.replace("Greylisted", "GREYLISTED").replace("NOQUEUE", "4ABCD1234"),
    lab.POSTFIX_REJECT.replace("[192.0.2.10]:", "[192.0.2.10]:40000:").replace("450 4.2.0 ", "450 "),
    lab.POSTFIX_ACCEPTED[0].replace("postfix/smtpd", "postfix-in/smtpd"),
    lab.POSTFIX_ACCEPTED[2].replace("postfix/qmgr", "postfix/submission/qmgr"),
    lab.POSTFIX_ACCEPTED[3].replace("postfix/lmtp", "postfix-out/virtual"),
    lab.POSTFIX_ACCEPTED[3].replace(", orig_to=<bob@example.org>", ""),
    lab.POSTFIX_ACCEPTED[4].replace("qmgr[90]", "qmgr"),
    lab.EXIM_DEFER.replace("greylisted", "GREYLISTED"),
    lab.EXIM_DEFER.replace("2026-12-05 08:00:01", "2026-12-05 08:00:01 +0100 [4321]"),
    lab.EXIM_ACCEPTED[0].replace("<= alice@pool.test", "<= <>"),
    *(lab.EXIM_ACCEPTED[1].replace(" => ", f" {arrow} ") for arrow in ("->", "*>", "==", "**")),
    lab.EXIM_ACCEPTED[1].replace(" bob <bob@example.org>", " :blackhole:"),
    "Dec  5 08:06:01 mx1 exim[77]: " + lab.EXIM_ACCEPTED[0],  # Exim through syslog, its own stamp kept
    "Dec  5 08:06:01 mx1 exim4[77]: " + lab.EXIM_ACCEPTED[2][20:],
    "2026-12-05T08:00:01+01:00 mx1 " + lab.POSTFIX_REJECT.split(" mx1 ", 1)[1],  # journalctl -o short-iso
    "2026-12-05T08:06:02.123456+0100 mx1 " + lab.POSTFIX_ACCEPTED[3].split(" mx1 ", 1)[1],
    _journal("postgrey", _message(lab.POSTGREY_NEW)),
    _journal("sqlgrey", lab.SQLGREY_WHITELIST.split("sqlgrey: ", 1)[1], spaced=True),
    _journal("postfix/smtpd", _message(lab.POSTFIX_REJECT)),
    _journal("postfix/qmgr", _message(lab.POSTFIX_ACCEPTED[4]), spaced=True),
    # journald keeps text that is not UTF-8 as an array of bytes: none of the strings shows.
    _journal("postfix/smtpd", list(_message(lab.POSTFIX_REJECT).encode())),
    _journal("postfix/lmtp", list(_message(lab.POSTFIX_ACCEPTED[3]).encode()), spaced=True),
    _journal("exim", list(lab.EXIM_DEFER[20:].encode())),
]
# What most of a mail log is: never an event, skipped before any parsing.
NOISE = [
    "Dec  5 08:00:00 mx1 postfix/smtpd[100]: connect from mail-a.pool.test[192.0.2.10]",
    "Dec  5 08:00:00 mx1 postfix/smtpd[100]: Anonymous TLS connection established from x.test[192.0.2.9]: TLSv1.3",
    "Dec  5 08:00:01 mx1 postfix/smtpd[100]: lost connection after EHLO from unknown[198.51.100.3]",
    "Dec  5 08:00:01 mx1 postfix/smtpd[100]: warning: hostname x.test does not resolve to address 192.0.2.9",
    "Dec  5 08:00:02 mx1 postfix/smtpd[100]: disconnect from mail-a.pool.test[192.0.2.10] ehlo=1 mail=1 quit=1",
    "Dec  5 08:00:03 mx1 postfix/anvil[9]: statistics: max connection rate 1/60s for (smtp:192.0.2.10)",
    "Dec  5 08:00:03 mx1 postfix/cleanup[103]: 4ABCD1234: message-id=<x@pool.test>",
    _journal("postfix/smtpd", "connect from unknown[198.51.100.3]", spaced=True),
    "2026-12-05 08:00:04 SMTP connection from [198.51.100.3]:40000 I=[192.0.2.1]:25 (TCP/IP connection count = 1)",
]


def _records(tmp_path, lines: list[str]) -> tuple[list, _LineCounter]:
    path = tmp_path / "mail.log"
    path.write_text("\n".join(lines) + "\n")
    counter = _LineCounter()
    return list(records([str(path)], 2026, counter)), counter


@pytest.mark.parametrize("line", KINDS + VARIANTS)
def test_every_line_a_parser_reads_passes_the_prefilter(tmp_path, line):
    expected = LineReader(SyslogClock(2026)).parse(line)
    assert expected is not None, "the parsers accept this line"
    found, counter = _records(tmp_path, [line])
    assert found == [expected]
    assert counter.lines == 1 and counter.unparsed == 0


def test_the_lines_of_every_kind_give_the_same_events_with_and_without_the_prefilter(tmp_path):
    lines = [*KINDS, *VARIANTS, *NOISE]
    unfiltered = list(events_from_lines(lines, year=2026))
    dispatcher = Dispatcher(GREYLIST)
    found, counter = _records(tmp_path, lines)
    filtered = [event for event in map(dispatcher.event, found) if event is not None]
    assert filtered == unfiltered
    assert len(filtered) >= 25  # the lines above are events, not only accepted
    assert counter.lines == len(lines)


def test_noise_is_skipped_and_counted_and_its_last_line_ends_the_span(tmp_path):
    found, counter = _records(tmp_path, [*NOISE[:-3], lab.POSTGREY_NEW, *NOISE])
    assert [record.program for record in found] == ["postgrey"]
    assert counter.lines == 2 * len(NOISE) - 2 and counter.unparsed == 0
    # The last line (Exim's mainlog, 08:00:04) is noise: it still ends the span.
    assert counter.last - counter.first == 3.0


SAMPLE = "é\r\nx\ry\n\xff\xfe bad\r\n" + "mot " * 7 + "\r" + "\n" + "ünïcödé\nlast, no newline"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1 << 20])
def test_chunked_reading_gives_the_lines_of_a_text_file(tmp_path, size):
    """Characters, "\\r\\n" and invalid bytes cut by a chunk boundary are read as a text file reads them."""
    data = SAMPLE.encode("utf-8").replace("ÿþ".encode(), b"\xff\xfe")
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    expected = list(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace", newline=None))
    assert list(read_lines(str(path))) == expected
    batches = list(read_line_batches(str(path), size))
    assert [line for batch in batches for line in batch] == [line.removesuffix("\n") for line in expected]
