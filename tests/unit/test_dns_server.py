"""Tests of the test DNS server itself (tests/support/dns_server.py).

Everything else that talks DNS in the test suite and the benchmark trusts
this server, so its behaviour is pinned here with an independent client
(dnspython) over real sockets.
"""

from __future__ import annotations

import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.dns_lab import DnsServerError, DnsServerProcess, start_dns_server

TIMEOUT = 2.0
SPF_PARTS = ["v=spf1 ip4:1.2.3.4", " -all"]


def ask(server, name, rdtype="TXT", transport="udp", timeout=TIMEOUT, **query_kwargs):
    query = dns.message.make_query(name, rdtype, **query_kwargs)
    send = {"udp": dns.query.udp, "tcp": dns.query.tcp}[transport]
    return send(query, server.address, port=server.port, timeout=timeout)


def strings(response) -> list[tuple[bytes, ...]]:
    """The character-strings of every TXT/SPF RR in the answer, per RR."""
    return sorted(rd.strings for rrset in response.answer for rd in rrset
                  if rrset.rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF))


def answer_texts(response, rdtype) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer if rrset.rdtype == rdtype for rd in rrset)


# -- records ------------------------------------------------------------------


def test_txt_split_strings_are_one_rr_and_join(dns_server):
    server = dns_server({"records": {"example.com": {"TXT": ["v=spf1 -all", SPF_PARTS]}}})
    for transport in ("udp", "tcp"):
        response = ask(server, "example.com", transport=transport)
        assert response.rcode() == dns.rcode.NOERROR
        assert strings(response) == [(b"v=spf1 -all",), (b"v=spf1 ip4:1.2.3.4", b" -all")]
        assert b"".join(strings(response)[1]) == b"v=spf1 ip4:1.2.3.4 -all"


def test_long_txt_is_cut_into_255_byte_strings(dns_server):
    long_value = "v=spf1 " + "ip4:192.0.2.1 " * 30 + "-all"
    server = dns_server({"records": {"long.example.com": {"TXT": [long_value]}}})
    (chunks,) = strings(ask(server, "long.example.com", transport="tcp"))
    assert [len(chunk) for chunk in chunks] == [255, len(long_value) - 255]
    assert b"".join(chunks) == long_value.encode()


def test_other_record_types(dns_server):
    server = dns_server({"records": {"example.com": {
        "A": ["192.0.2.1", "192.0.2.2"], "AAAA": ["2001:db8::1"], "MX": [[10, "mx.example.com"]],
        "SPF": ["v=spf1 -all"]},
        "1.2.0.192.in-addr.arpa": {"PTR": ["host.example.com"]}}})
    assert answer_texts(ask(server, "example.com", "A"), dns.rdatatype.A) == ["192.0.2.1", "192.0.2.2"]
    assert answer_texts(ask(server, "example.com", "AAAA"), dns.rdatatype.AAAA) == ["2001:db8::1"]
    assert answer_texts(ask(server, "example.com", "MX"), dns.rdatatype.MX) == ["10 mx.example.com."]
    assert strings(ask(server, "example.com", "SPF")) == [(b"v=spf1 -all",)]
    ptr = ask(server, "1.2.0.192.in-addr.arpa", "PTR")
    assert answer_texts(ptr, dns.rdatatype.PTR) == ["host.example.com."]


def test_cname_is_followed_inside_the_zone(dns_server):
    server = dns_server({"records": {
        "alias.example.com": {"CNAME": "target.example.com"},
        "target.example.com": {"TXT": ["v=spf1 -all"]},
        "dangling.example.com": {"CNAME": "missing.example.com."}}})
    response = ask(server, "alias.example.com")
    assert answer_texts(response, dns.rdatatype.CNAME) == ["target.example.com."]
    assert strings(response) == [(b"v=spf1 -all",)]
    cname_only = ask(server, "alias.example.com", "CNAME")
    assert [rrset.rdtype for rrset in cname_only.answer] == [dns.rdatatype.CNAME]
    # RFC 6604: the rcode is that of the end of the chain.
    dangling = ask(server, "dangling.example.com")
    assert dangling.rcode() == dns.rcode.NXDOMAIN
    assert answer_texts(dangling, dns.rdatatype.CNAME) == ["missing.example.com."]


# -- existence ------------------------------------------------------------------


@pytest.mark.parametrize("name, rdtype, rcode, answers", [
    ("a.b.example.com", "TXT", dns.rcode.NOERROR, 1),   # data
    ("a.b.example.com", "A", dns.rcode.NOERROR, 0),     # NODATA
    ("empty.example.com", "TXT", dns.rcode.NOERROR, 0),  # listed with no data
    ("b.example.com", "TXT", dns.rcode.NOERROR, 0),     # empty non-terminal
    ("example.com", "TXT", dns.rcode.NOERROR, 0),       # empty non-terminal
    ("com", "TXT", dns.rcode.NOERROR, 0),               # empty non-terminal
    ("nope.example.com", "TXT", dns.rcode.NXDOMAIN, 0),
    ("x.a.b.example.com", "TXT", dns.rcode.NXDOMAIN, 0),  # below an existing name
    ("example.org", "TXT", dns.rcode.NXDOMAIN, 0),
])
def test_nxdomain_nodata_and_empty_non_terminals(dns_server, name, rdtype, rcode, answers):
    server = dns_server({"records": {"a.b.example.com": {"TXT": ["v=spf1 -all"]}, "empty.example.com": {}}})
    response = ask(server, name, rdtype)
    assert response.rcode() == rcode
    assert len(response.answer) == answers
    assert response.flags & dns.flags.AA


def test_names_are_case_insensitive(dns_server):
    server = dns_server({"records": {"MiXed.Example.COM.": {"TXT": ["v=spf1 -all"]}}})
    for name in ("mixed.example.com", "MIXED.EXAMPLE.COM.", "Mixed.Example.Com"):
        response = ask(server, name)
        assert strings(response) == [(b"v=spf1 -all",)]
        # The owner name echoes the question, as real servers do.
        assert response.answer[0].name.to_text() == name.rstrip(".") + "."
    assert ask(server, "EXAMPLE.com").rcode() == dns.rcode.NOERROR  # ENT, case-folded too
    assert [q["name"] for q in server.queries()] == ["mixed.example.com"] * 3 + ["example.com"]


# -- faults -----------------------------------------------------------------------


def test_servfail(dns_server):
    server = dns_server({"records": {"broken.example.com": {"TXT": ["v=spf1 -all"]}},
                         "faults": {"broken.example.com": {"servfail": True}}})
    for transport in ("udp", "tcp"):
        response = ask(server, "broken.example.com", transport=transport)
        assert response.rcode() == dns.rcode.SERVFAIL
        assert not response.answer


def test_drop_makes_the_client_time_out_and_the_server_survives(dns_server):
    server = dns_server({"records": {"gone.example.com": {"TXT": ["v=spf1 -all"]}, "ok.example.com": {}},
                         "faults": {"gone.example.com": {"drop": True}}})
    for transport in ("udp", "tcp"):
        with pytest.raises(dns.exception.Timeout):
            ask(server, "gone.example.com", transport=transport, timeout=0.3)
        assert ask(server, "ok.example.com", transport=transport).rcode() == dns.rcode.NOERROR
    assert [q["name"] for q in server.queries()].count("gone.example.com") == 2


def test_fault_types_restrict_the_fault_to_those_qtypes(dns_server):
    server = dns_server({"records": {"x.example.com": {"TXT": ["v=spf1 -all"], "A": ["192.0.2.1"]}},
                         "faults": {"x.example.com": {"drop": True, "types": ["TXT"]}}})
    with pytest.raises(dns.exception.Timeout):
        ask(server, "x.example.com", "TXT", timeout=0.3)
    assert answer_texts(ask(server, "x.example.com", "A"), dns.rdatatype.A) == ["192.0.2.1"]


def test_truncate_fault_sends_tc_over_udp_and_everything_over_tcp(dns_server):
    server = dns_server({"records": {"big.example.com": {"TXT": [SPF_PARTS]}},
                         "faults": {"big.example.com": {"truncate": True}}})
    udp = ask(server, "big.example.com")
    assert udp.flags & dns.flags.TC
    assert [q.name.to_text() for q in udp.question] == ["big.example.com."]
    assert not udp.answer
    query = dns.message.make_query("big.example.com", "TXT")
    response, used_tcp = dns.query.udp_with_fallback(query, server.address, port=server.port, timeout=TIMEOUT)
    assert used_tcp
    assert strings(response) == [tuple(part.encode() for part in SPF_PARTS)]
    assert [q["transport"] for q in server.queries()] == ["udp", "udp", "tcp"]


def test_oversized_udp_answer_is_truncated_unless_edns_allows_it(dns_server):
    records = {"big.example.com": {"TXT": ["v=spf1 " + "ip4:192.0.2.1 " * 40 + "-all"]}}
    server = dns_server({"records": records})
    assert ask(server, "big.example.com").flags & dns.flags.TC
    with_edns = ask(server, "big.example.com", use_edns=0, payload=1232)
    assert not with_edns.flags & dns.flags.TC
    assert len(strings(with_edns)) == 1
    assert with_edns.edns == 0  # an EDNS query gets an EDNS answer


def test_delayed_queries_are_answered_concurrently(dns_server):
    server = dns_server({"records": {"slow.example.com": {"TXT": ["v=spf1 -all"]}},
                         "faults": {"slow.example.com": {"delay_ms": 200}}})
    for transport in ("udp", "tcp"):
        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda t: ask(server, "slow.example.com", transport=t),
                                      [transport] * 10))
        elapsed = time.monotonic() - started
        assert all(strings(r) == [(b"v=spf1 -all",)] for r in responses)
        # Serial answering would take >= 2 s; concurrency check, not a benchmark.
        assert 0.2 <= elapsed < 1.0, transport


def test_global_delay_adds_to_every_answer(dns_server):
    server = dns_server({"delay_ms": 150, "records": {"example.com": {}, "slow.example.com": {}},
                         "faults": {"slow.example.com": {"delay_ms": 150}}})
    for name, minimum in (("example.com", 0.15), ("slow.example.com", 0.3)):
        started = time.monotonic()
        ask(server, name)
        assert time.monotonic() - started >= minimum, name


def test_pipelined_tcp_queries_do_not_wait_for_a_slow_one(dns_server):
    server = dns_server({"records": {"slow.example.com": {}, "fast.example.com": {}},
                         "faults": {"slow.example.com": {"delay_ms": 500}}})
    with socket.create_connection((server.address, server.port), timeout=TIMEOUT) as sock:
        for name in ("slow.example.com", "fast.example.com"):
            wire = dns.message.make_query(name, "TXT").to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
        first = dns.message.from_wire(_read_tcp_message(sock))
    assert first.question[0].name.to_text() == "fast.example.com."


def _read_tcp_message(sock: socket.socket) -> bytes:
    def read_exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    (length,) = struct.unpack("!H", read_exactly(2))
    return read_exactly(length)


def test_malformed_packets_do_not_kill_the_server(dns_server):
    server = dns_server({"records": {"example.com": {}}})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"\x12", (server.address, server.port))  # no header at all: ignored
        sock.sendto(b"\xab\xcd" + b"\x00\x00\x00\x05" + b"\xff" * 20, (server.address, server.port))
        reply = dns.message.from_wire(sock.recv(4096))
    assert reply.id == 0xABCD and reply.rcode() == dns.rcode.FORMERR
    with socket.create_connection((server.address, server.port), timeout=TIMEOUT) as sock:
        garbage = b"\x00\x01\x00\x00" + b"\xff" * 10  # claims 65535 questions
        sock.sendall(struct.pack("!H", len(garbage)) + garbage)
        assert dns.message.from_wire(_read_tcp_message(sock)).rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    notify_reply = dns.query.udp(notify, server.address, port=server.port, timeout=TIMEOUT)
    assert notify_reply.rcode() == dns.rcode.NOTIMP
    assert ask(server, "example.com").rcode() == dns.rcode.NOERROR
    assert ask(server, "example.com", transport="tcp").rcode() == dns.rcode.NOERROR


# -- query log and control ------------------------------------------------------


def test_query_log_records_each_query(dns_server):
    server = dns_server({"records": {"example.com": {}}})
    before = time.monotonic()
    ask(server, "Example.COM.", "TXT")
    ask(server, "nope.example.com", "A", transport="tcp")
    after = time.monotonic()
    entries = server.queries()
    assert [(e["name"], e["type"], e["transport"]) for e in entries] == [
        ("example.com", "TXT", "udp"), ("nope.example.com", "A", "tcp")]
    assert all(before <= e["t"] <= after for e in entries)
    server.reset_log()
    assert server.queries() == []
    ask(server, "example.com")
    assert len(server.queries()) == 1


def test_update_reloads_the_zone_on_sighup(dns_server):
    server = dns_server({"records": {"example.com": {"TXT": ["v=spf1 -all"]}}})
    port = server.port
    server.update({"records": {"example.com": {"TXT": ["v=spf1 +all"]}, "new.example.com": {}},
                   "faults": {"broken.example.com": {"servfail": True}}})
    assert server.port == port
    assert strings(ask(server, "example.com")) == [(b"v=spf1 +all",)]
    assert ask(server, "new.example.com").rcode() == dns.rcode.NOERROR
    assert ask(server, "broken.example.com").rcode() == dns.rcode.SERVFAIL
    assert all("event" not in entry for entry in server.queries())
    assert len(server.queries()) == 3


def test_update_with_a_bad_zone_raises_and_keeps_the_old_zone(dns_server):
    server = dns_server({"records": {"example.com": {"TXT": ["v=spf1 -all"]}}})
    with pytest.raises(DnsServerError, match="unsupported record type"):
        server.update({"records": {"example.com": {"BOGUS": ["x"]}}})
    assert strings(ask(server, "example.com")) == [(b"v=spf1 -all",)]


def test_servers_on_other_loopback_addresses_are_independent(dns_server):
    one = dns_server({"records": {"example.com": {"TXT": ["one"]}}}, address="127.0.0.2")
    two = dns_server({"records": {"example.com": {"TXT": ["two"]}}}, address="127.0.0.3")
    assert (one.address, two.address) == ("127.0.0.2", "127.0.0.3")
    assert strings(ask(one, "example.com")) == [(b"one",)]
    assert strings(ask(two, "example.com")) == [(b"two",)]
    assert len(one.queries()) == len(two.queries()) == 1


def test_sigterm_exits_cleanly_and_plain_api_works(tmp_path):
    zone = {"records": {"example.com": {}}, "faults": {"gone.example.com": {"drop": True}}}
    with start_dns_server(zone, "127.0.0.4", tmp_path) as server:
        assert ask(server, "example.com").rcode() == dns.rcode.NOERROR
        # A client still waiting on a dropped query must not spoil the exit.
        with socket.create_connection((server.address, server.port), timeout=TIMEOUT) as sock:
            wire = dns.message.make_query("gone.example.com", "TXT").to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            while len(server.queries()) < 2:
                time.sleep(0.01)
            assert server.stop() == 0
            assert sock.recv(10) == b""  # the server closed the connection
    assert server.stderr() == ""


def test_start_failure_reports_the_servers_stderr(tmp_path):
    with pytest.raises(DnsServerError, match="unsupported record type"):
        DnsServerProcess({"records": {"example.com": {"BOGUS": ["x"]}}}, tmp_path=tmp_path).start()


# -- faults for the DNS client's tests: rcodes, a server failing everything, decoys -----------


def test_rcode_fault_and_the_wildcard_for_every_name(dns_server):
    server = dns_server({"records": {"ok.example.com": {"TXT": ["v=spf1 -all"]}, "no.example.com": {}},
                         "faults": {"no.example.com": {"rcode": "notimp"}, "*": {"rcode": "REFUSED"}}})
    for transport in ("udp", "tcp"):
        assert ask(server, "ok.example.com", transport=transport).rcode() == dns.rcode.REFUSED
        assert ask(server, "nowhere.example", transport=transport).rcode() == dns.rcode.REFUSED
        assert ask(server, "no.example.com", transport=transport).rcode() == dns.rcode.NOTIMP  # its own fault wins


def _udp_datagrams(server, name: str, count: int) -> tuple[dns.message.Message, list[bytes]]:
    query = dns.message.make_query(name, "TXT")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(query.to_wire(), (server.address, server.port))
        return query, [sock.recv(65535) for _ in range(count)]


@pytest.mark.parametrize("decoy", ["wrong_id", "other_question"])
def test_a_decoy_comes_just_before_the_reply(dns_server, decoy):
    server = dns_server({"records": {"d.example.com": {"TXT": ["v=spf1 -all"]}},
                         "faults": {"d.example.com": {"decoy": decoy}}})
    query, (first, second) = _udp_datagrams(server, "d.example.com", 2)
    fake, real = dns.message.from_wire(first), dns.message.from_wire(second)
    assert not query.is_response(fake) and query.is_response(real)
    assert strings(real) == [(b"v=spf1 -all",)]
    if decoy == "wrong_id":
        assert fake.id == query.id ^ 0xFFFF and strings(fake) == [(b"v=spf1 -all",)]
    else:
        assert (fake.id, fake.question[0].name.to_text()) == (query.id, "decoy.d.example.com.")
    assert strings(ask(server, "d.example.com", transport="tcp")) == [(b"v=spf1 -all",)]  # UDP only


def test_a_pointer_loop_decoy_is_refused_by_dnspython(dns_server):
    server = dns_server({"records": {"loop.example.com": {"TXT": ["v=spf1 -all"]}},
                         "faults": {"loop.example.com": {"decoy": "pointer_loop", "drop": True}}})
    query, (crafted,) = _udp_datagrams(server, "loop.example.com", 1)
    assert crafted[:2] == query.to_wire()[:2]  # our ID: only the parser can tell it is bad
    with pytest.raises(dns.name.BadPointer):
        dns.message.from_wire(crafted)


@pytest.mark.parametrize("fault, error", [({"decoy": "bogus"}, "decoy must be one of"),
                                          ({"rcode": "NOPE"}, "unknown rcode")])
def test_bad_fault_values_are_refused(tmp_path, fault, error):
    with pytest.raises(DnsServerError, match=error):
        DnsServerProcess({"records": {}, "faults": {"x.example": fault}}, tmp_path=tmp_path).start()


def test_servers_on_two_addresses_can_share_a_port(tmp_path):
    with start_dns_server({"records": {"example.com": {}}}, "127.0.0.2", tmp_path) as one, \
            start_dns_server({"records": {}}, "127.0.0.3", tmp_path, port=one.port) as two:
        assert two.port == one.port
        assert ask(one, "example.com").rcode() == dns.rcode.NOERROR
        assert ask(two, "example.com").rcode() == dns.rcode.NXDOMAIN
