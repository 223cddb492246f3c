"""Each daemon's lines, in the formats their sources write (greylog_lab cites the sources)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from greylog.daemons import GREYLISTED, MTA, PASSED, POLICY, UNKNOWN_RECIPIENT, Dispatcher, MessageTable
from greylog.lines import LineReader, SyslogClock
from tests.greylog import greylog_lab as lab

GREYLIST = re.compile("greylist", re.IGNORECASE)


def events(*lines: str, year: int = 2026) -> list:
    reader = LineReader(SyslogClock(year))
    dispatcher = Dispatcher(GREYLIST)
    found = []
    for line in lines:
        record = reader.parse(line)
        if record is not None:
            event = dispatcher.event(record)
            if event is not None:
                found.append(event)
    return found


def fields(event) -> tuple:
    return (event.kind, event.witness, event.address, event.name, event.sender, event.recipient)


def test_postgrey_greylist_early_retry_and_pass():
    new, early, passed = events(lab.POSTGREY_NEW, lab.POSTGREY_EARLY, lab.POSTGREY_PASS)
    assert fields(new) == (GREYLISTED, POLICY, "192.0.2.10", "mail-a.pool.test", "alice@pool.test",
                           "bob@example.org")
    assert early.kind == GREYLISTED and early.time - new.time == 30
    assert fields(passed)[:3] == (PASSED, POLICY, "192.0.2.10")


def test_postgrey_bounce_has_no_sender_and_a_queue_id_prefix():
    (event,) = events(lab.POSTGREY_BOUNCE)
    assert fields(event) == (GREYLISTED, POLICY, "198.51.100.7", "", "", "bob@example.org")


def test_sqlgrey_new_early_reconnect_and_reconnect_ok():
    new, early, ok = events(lab.SQLGREY_NEW, lab.SQLGREY_EARLY, lab.SQLGREY_OK)
    assert fields(new) == (GREYLISTED, POLICY, "192.0.2.10", "", "alice@pool.test", "bob@example.org")
    assert early.kind == GREYLISTED
    assert ok.kind == PASSED and ok.time - new.time == 420


def test_sqlgrey_null_sender_and_whitelist():
    bounce, whitelisted = events(lab.SQLGREY_NULL, lab.SQLGREY_WHITELIST)
    assert bounce.sender == ""
    assert fields(whitelisted) == (PASSED, POLICY, "203.0.113.5", "mx.big.test", "carol@big.test", "bob@example.org")


def test_postfix_reject_with_a_semicolon_in_the_text():
    (event,) = events(lab.POSTFIX_REJECT)
    assert fields(event) == (GREYLISTED, MTA, "192.0.2.10", "mail-a.pool.test", "alice@pool.test",
                             "bob@example.org")


def test_postfix_reject_of_sqlgrey_and_unknown_client_name():
    (event,) = events(lab.POSTFIX_SQLGREY_REJECT)
    assert event.name == "" and event.address == "192.0.2.10"


def test_postfix_other_rejects_are_not_greylisting():
    assert events(lab.POSTFIX_RBL) == []


def test_postfix_acceptance_follows_the_queue_id_to_the_original_recipient():
    table = MessageTable()
    reader = LineReader(SyslogClock(2026))
    dispatcher = Dispatcher(GREYLIST, table)
    found = [e for e in (dispatcher.event(reader.parse(line)) for line in lab.POSTFIX_ACCEPTED) if e]
    assert [fields(e) for e in found] == [(PASSED, MTA, "192.0.2.10", "mail-a.pool.test", "alice@pool.test",
                                           "bob@example.org")]
    assert len(table) == 0  # "removed" ends the message


def test_exim_rcpt_defer_and_arrival():
    deferred, arrived = events(lab.EXIM_DEFER, *lab.EXIM_ACCEPTED)
    assert fields(deferred) == (GREYLISTED, MTA, "192.0.2.10", "mail-a.pool.test", "alice@pool.test",
                                "bob@example.org")
    assert fields(arrived) == (PASSED, MTA, "192.0.2.10", "mail-a.pool.test", "alice@pool.test", "bob@example.org")


def test_exim_bounce_greylisted_at_data_has_no_recipient():
    (event,) = events(lab.EXIM_DEFER_BOUNCE)
    assert fields(event) == (GREYLISTED, MTA, "198.51.100.7", "", "", UNKNOWN_RECIPIENT)


def test_exim_through_syslog_with_its_own_stamp():
    line = "Dec  5 08:00:01 mx1 exim[77]: " + lab.EXIM_DEFER
    (event,) = events(line)
    assert event.recipient == "bob@example.org"


def test_message_table_is_bounded():
    table = MessageTable(limit=3)
    for number in range(10):
        table.arrived(f"Q{number}", 0.0, "192.0.2.1", "", "a@b.test")
    assert len(table) == 3


@pytest.mark.parametrize("line", [
    "2026-12-05T08:00:01+01:00 mx1 " + lab.POSTGREY_NEW.split(" mx1 ", 1)[1],  # journalctl -o short-iso
    "2026-12-05T08:00:01.123456+0100 mx1 " + lab.POSTGREY_NEW.split(" mx1 ", 1)[1],  # short-iso-precise
])
def test_journalctl_iso_formats(line):
    (event,) = events(line)
    # 08:00:01 at +01:00 is 07:00:01 UTC.
    assert int(event.time) == int(datetime(2026, 12, 5, 7, 0, 1, tzinfo=UTC).timestamp())
    assert event.sender == "alice@pool.test"


def test_journalctl_json_lines():
    entry = {"__REALTIME_TIMESTAMP": "1796457601000000", "SYSLOG_IDENTIFIER": "postgrey",
             "MESSAGE": lab.POSTGREY_NEW.split("postgrey[50]: ", 1)[1]}
    raw = {**entry, "MESSAGE": list(entry["MESSAGE"].encode())}  # journald's form of non-UTF-8 text
    first, second = events(json.dumps(entry), json.dumps(raw))
    assert first.time == 1796457601.0 and fields(first) == fields(second)


def test_malformed_and_truncated_lines_are_skipped():
    truncated = lab.POSTGREY_NEW[:70]
    assert events("garbage", "", truncated, "{not json", lab.POSTFIX_REJECT[:120], "Dec 99 99:99:99 x y: z") == []


def test_interleaved_lines_of_two_programs_keep_their_meaning():
    lines = [lab.POSTFIX_ACCEPTED[0], lab.POSTGREY_NEW, *lab.POSTFIX_ACCEPTED[1:]]
    kinds = [e.kind for e in events(*lines)]
    assert kinds == [GREYLISTED, PASSED]
