"""The walker's own DNS wire reader (spfwalk.dns_wire), checked against dnspython.

dnspython renders the replies here (an independent encoder, with name compression),
so these tests pin that our reader sees what dnspython's reader sees, and that a
damaged reply only ever raises MalformedReply or ForeignReply.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from spfwalk import dns_wire
from spfwalk.netblocks import parse_network

QUERY_ID = 0x1234


def question(name: str) -> tuple[bytes, dns_wire.Labels]:
    wire = dns.name.from_text(name).to_wire()
    return wire, dns_wire.labels_of(wire)


def reply_for(name: str, rdtype: str, *rrsets: dns.rrset.RRset, rcode=dns.rcode.NOERROR, tc=False) -> bytes:
    query = dns.message.make_query(name, rdtype, id=QUERY_ID, use_edns=0, payload=dns_wire.EDNS_PAYLOAD)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if tc:
        response.flags |= dns.flags.TC
    response.answer.extend(rrsets)
    return response.to_wire()


def parse(wire: bytes, name: str, rdtype: str) -> dns_wire.Reply:
    _qname_wire, labels = question(name)
    return dns_wire.parse_reply(wire, QUERY_ID, labels, dns_wire.TYPES[rdtype])


def rrset(owner: str, rdtype: str, *values: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner, 300, "IN", rdtype, *values)


def test_query_wire_is_what_dnspython_reads():
    qname_wire, _labels = question("_spf.Google.com")
    message = dns.message.from_wire(dns_wire.query_wire(7, qname_wire, dns_wire.TXT))
    assert message.id == 7
    assert message.flags & dns.flags.RD and not message.flags & dns.flags.QR
    assert message.question[0].name == dns.name.from_text("_spf.google.com")
    assert message.question[0].rdtype == dns_wire.TXT
    assert message.payload == dns_wire.EDNS_PAYLOAD


def test_name_wire_is_the_inverse_of_labels_of():
    qname_wire, labels = question("_spf.Example.COM")
    assert labels == (b"_spf", b"example", b"com")
    assert dns_wire.name_wire(labels) == qname_wire.lower()


def test_txt_strings_of_one_record_are_joined_and_records_kept_apart():
    wire = reply_for("example.com", "TXT", rrset("example.com.", "TXT", '"v=spf1 ip4:192.0.2.0/24" " -all"',
                                                  '"other text"'))
    reply = parse(wire, "example.com", "TXT")
    assert reply.rcode == dns_wire.NOERROR and not reply.truncated
    owner = question("example.com")[1]
    assert sorted(reply.records(owner, dns_wire.TXT)) == ["other text", "v=spf1 ip4:192.0.2.0/24 -all"]


def test_owner_names_compare_without_case():
    wire = reply_for("MiXeD.Example.COM", "A", rrset("mixed.example.com.", "A", "192.0.2.1"))
    reply = parse(wire, "mixed.example.com", "A")
    assert reply.records(question("mixed.example.com")[1], dns_wire.A) == ["192.0.2.1"]


@pytest.mark.parametrize(("rdtype", "values", "expected"), [
    ("A", ["192.0.2.1", "198.51.100.7"], ["192.0.2.1", "198.51.100.7"]),
    ("AAAA", ["2001:db8::1", "2001:DB8:0:0:0:0:0:2"], ["2001:db8::1", "2001:db8::2"]),
])
def test_addresses(rdtype, values, expected):
    reply = parse(reply_for("host.example", rdtype, rrset("host.example.", rdtype, *values)), "host.example", rdtype)
    assert sorted(reply.records(question("host.example")[1], dns_wire.TYPES[rdtype])) == expected


def test_mx_exchange_behind_a_compression_pointer():
    wire = reply_for("example.com", "MX", rrset("example.com.", "MX", "10 mx1.example.com.", "20 MX2.Example.com."))
    reply = parse(wire, "example.com", "MX")
    exchanges = sorted((pref, dns_wire.name_text(labels))
                       for pref, labels in reply.records(question("example.com")[1], dns_wire.MX))
    assert exchanges == [(10, "mx1.example.com"), (20, "mx2.example.com")]
    assert wire.count(b"example") == 1  # dnspython compressed every later occurrence


def test_cname_records_are_kept_and_other_types_skipped():
    wire = reply_for("alias.example", "TXT",
                     rrset("alias.example.", "CNAME", "target.example."),
                     rrset("target.example.", "TXT", '"v=spf1 -all"'),
                     rrset("target.example.", "A", "192.0.2.9"))
    reply = parse(wire, "alias.example", "TXT")
    assert reply.records(question("alias.example")[1], dns_wire.CNAME) == [question("target.example")[1]]
    assert reply.records(question("target.example")[1], dns_wire.TXT) == ["v=spf1 -all"]
    assert all(kind != dns_wire.A for _owner, kind, _value in reply.answers)


def test_rcode_and_truncation_are_reported():
    assert parse(reply_for("gone.example", "TXT", rcode=dns.rcode.NXDOMAIN), "gone.example", "TXT").rcode == 3
    truncated = parse(reply_for("big.example", "TXT", tc=True), "big.example", "TXT")
    assert truncated.truncated and truncated.answers == ()


@pytest.mark.parametrize("damage", ["id", "qr", "question", "type"])
def test_a_reply_to_another_query_is_foreign(damage):
    name, rdtype = "example.com", "TXT"
    if damage == "question":
        name = "other.example"
    if damage == "type":
        rdtype = "A"
    wire = bytearray(reply_for(name, rdtype))
    if damage == "id":
        wire[0] ^= 0xFF
    if damage == "qr":
        wire[2] &= 0x7F
    with pytest.raises(dns_wire.ForeignReply):
        parse(bytes(wire), "example.com", "TXT")


def test_every_cut_short_reply_is_malformed():
    wire = reply_for("example.com", "MX", rrset("example.com.", "MX", "10 mx1.example.com."))
    parse(wire, "example.com", "MX")  # whole: fine
    opt_record = 11  # the EDNS OPT record comes last and is not read
    for cut in range(len(wire) - opt_record):
        with pytest.raises(dns_wire.MalformedReply):
            parse(wire[:cut], "example.com", "MX")


def test_a_compression_loop_is_malformed():
    header = bytes.fromhex("1234 8180 0001 0001 0000 0000")
    question_part = b"\x07example\x03com\x00" + b"\x00\x10\x00\x01"
    loop_at = len(header) + len(question_part)
    answer = bytes([0xC0 | (loop_at >> 8), loop_at & 0xFF]) + b"\x00\x10\x00\x01" + b"\x00\x00\x00\x3c\x00\x00"
    with pytest.raises(dns_wire.MalformedReply, match="loop"):
        parse(header + question_part + answer, "example.com", "TXT")


def test_random_damage_raises_only_our_errors():
    wire = reply_for("example.com", "TXT", rrset("example.com.", "TXT", '"v=spf1 include:_spf.example.com -all"'),
                     rrset("example.com.", "CNAME", "x.example.com."))
    rng = random.Random(7208)
    for _ in range(3000):
        damaged = bytearray(wire)
        for _hit in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        # A reply, or one of our two errors: anything else (IndexError...) fails the test.
        with contextlib.suppress(dns_wire.MalformedReply, dns_wire.ForeignReply):
            parse(bytes(damaged), "example.com", "TXT")


@pytest.mark.parametrize("text", [
    "192.0.2.0/24", "192.0.2.1/24", "192.0.2.1", "0.0.0.0/0", "255.255.255.255/32", "10.1.2.3/8",
    "2001:db8::/32", "2001:db8::1/32", "2001:DB8::1", "::/0", "::ffff:192.0.2.1/96", "fe80::1/10",
    "1.2.3.4/255.255.0.0",
])
def test_parse_network_agrees_with_ipaddress(text):
    interface = ipaddress.ip_interface(text)
    assert parse_network(text) == (interface.network, interface.ip != interface.network.network_address)


@pytest.mark.parametrize("text", ["01.2.3.4", "1.2.3", "1.2.3.4/33", "2001:db8::/129", " 1.2.3.4", "1.2.3.4/-1",
                                  "1.2.3.4/", "example.com", "1::2::3", "1.2.3.4/²"])
def test_parse_network_rejects_what_ipaddress_rejects(text):
    with pytest.raises(ValueError):
        ipaddress.ip_interface(text)
    with pytest.raises(ValueError):
        parse_network(text)


@pytest.mark.parametrize("text", ["1.2.3.4/032", "1::/00", "2001:db8::/0048"])
def test_parse_network_is_stricter_than_ipaddress_on_leading_zeros(text):
    # RFC 7208's grammar has no leading zeros in a CIDR length; ipaddress reads /00 as /0.
    ipaddress.ip_interface(text)
    with pytest.raises(ValueError):
        parse_network(text)
