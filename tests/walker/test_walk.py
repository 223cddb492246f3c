"""The walker against a real DNS server process (tests/support/dns_server.py) on 127.0.0.x."""

from __future__ import annotations

import ipaddress
import time

import pytest

from spfwalk.dns_client import DnsClient
from spfwalk.model import NONE, OK, PERMERROR, TEMPERROR
from spfwalk.netblocks import parse_network
from spfwalk.record import SpfSyntaxError, parse_record
from spfwalk.walker import WalkerOptions, walk_sync
from tests.support.zones import provider_zone


def zone(records: dict, faults: dict | None = None, delay_ms: int = 0) -> dict:
    return {"records": records, "faults": faults or {}, "delay_ms": delay_ms}


def spf(text: str) -> dict:
    return {"TXT": [text]}


@pytest.fixture
def walk(dns_server):
    """walk(zone, roots, **options) -> (WalkReport, server) against a fresh lab server."""

    def run(zone_data: dict, roots: list[str], **options):
        server = dns_server(zone_data)
        options.setdefault("query_lifetime", 1.0)
        options.setdefault("deadline", 10.0)
        report = walk_sync(roots, WalkerOptions(nameservers=[server.address], port=server.port, **options))
        return report, server

    return run


def nets(root) -> list[str]:
    return [str(network) for network in root.networks]


# -- terms ------------------------------------------------------------------------------


def test_every_address_term_contributes_its_netblocks(walk):
    report, _ = walk(zone({
        "example.com": {
            "TXT": ["v=spf1 ip4:192.0.2.0/25 ip6:2001:db8:1::/48 a a:host.example.com/24//64 "
                    "mx/28 include:inc.example.com -all"],
            "A": ["198.51.100.7"],
            "MX": [[10, "mx1.example.com"], [20, "mx2.example.com"]],
        },
        "host.example.com": {"A": ["203.0.113.9"], "AAAA": ["2001:db8:2::9"]},
        "mx1.example.com": {"A": ["198.51.100.33"]},
        "mx2.example.com": {"AAAA": ["2001:db8:3::1"]},
        "inc.example.com": spf("v=spf1 ip4:192.0.2.128/25 ~all"),
    }), ["example.com"])
    root = report.roots["example.com"]
    assert root.status == OK, root.errors
    # ip4 /25 + include /25 collapse into one /24; a -> /32; a:host /24 and /64; mx/28; mx AAAA /128
    assert nets(root) == [
        "192.0.2.0/24", "198.51.100.7/32", "198.51.100.32/28", "203.0.113.0/24",
        "2001:db8:1::/48", "2001:db8:2::/64", "2001:db8:3::1/128",
    ]
    assert root.dns_lookups == 4  # a, a:host, mx, include


def test_redirect_is_followed_and_split_txt_strings_are_joined(walk):
    report, _ = walk(zone({
        "gmail.test": spf("v=spf1 redirect=_spf.gmail.test"),
        "_spf.gmail.test": {"TXT": [["v=spf1 ip4:192.0.2.0/24", " ip4:198.51.100.0/24 ~all"]]},
    }), ["gmail.test"])
    assert nets(report.roots["gmail.test"]) == ["192.0.2.0/24", "198.51.100.0/24"]


def test_redirect_is_ignored_when_the_record_has_all(walk):
    report, _ = walk(zone({
        "a.test": spf("v=spf1 ip4:192.0.2.0/24 -all redirect=b.test"),
        "b.test": spf("v=spf1 ip4:198.51.100.0/24 -all"),
    }), ["a.test"])
    assert nets(report.roots["a.test"]) == ["192.0.2.0/24"]


def test_only_pass_terms_are_whitelisted(walk):
    report, _ = walk(zone({
        "q.test": spf("v=spf1 +ip4:192.0.2.1 -ip4:192.0.2.2 ~ip4:192.0.2.3 ?ip4:192.0.2.4 "
                      "~include:soft.test ip6:2001:db8::1 +all"),
        "soft.test": spf("v=spf1 ip4:198.51.100.0/24 -all"),
    }), ["q.test"])
    root = report.roots["q.test"]
    assert nets(root) == ["192.0.2.1/32", "2001:db8::1/128"]
    assert any("+all" in warning for warning in root.warnings)


@pytest.mark.parametrize("term", ["exists:%{i}._spf.sender.test", "ptr", "ptr:sender.test",
                                  "include:%{i}._spf.sender.test", "a:%{l}.sender.test"])
def test_terms_that_cannot_become_netblocks_are_reported(walk, term):
    report, _ = walk(zone({"sender.test": spf(f"v=spf1 ip4:192.0.2.0/24 {term} -all")}), ["sender.test"])
    root = report.roots["sender.test"]
    assert root.status == OK
    assert root.unresolvable == [f"sender.test > {term}"]
    assert any("static entries" in warning for warning in root.warnings)
    assert nets(root) == ["192.0.2.0/24"]


def test_macros_that_do_not_depend_on_the_client_are_expanded(walk):
    report, _ = walk(zone({
        "m.test": spf("v=spf1 include:_spf.%{d} a:mx.%{o} -all"),
        "_spf.m.test": spf("v=spf1 include:%{d2r}.rev.m.test -all"),
        "m._spf.rev.m.test": spf("v=spf1 ip4:192.0.2.0/24 -all"),
        "mx.m.test": {"A": ["198.51.100.1"]},
    }), ["m.test"])
    root = report.roots["m.test"]
    assert root.status == OK, root.errors
    assert nets(root) == ["192.0.2.0/24", "198.51.100.1/32"]
    assert root.unresolvable == []


def test_terms_after_all_are_never_reached(walk):
    report, _ = walk(zone({"late.test": spf("v=spf1 ip4:192.0.2.1 -all ip4:198.51.100.0/24 include:gone.test")}),
                     ["late.test"])
    root = report.roots["late.test"]
    assert (root.status, nets(root), root.dns_lookups) == (OK, ["192.0.2.1/32"], 0)


def test_earlier_non_pass_addresses_are_cut_out_of_later_pass_networks(walk):
    report, _ = walk(zone({
        "cut.test": spf("v=spf1 -ip4:192.0.2.4 ~ip6:2001:db8::/33 ip4:192.0.2.0/29 include:inc.cut.test -all"),
        "inc.cut.test": spf("v=spf1 ip6:2001:db8::/32 ip4:192.0.2.4/31 -all"),
    }), ["cut.test"])
    # 192.0.2.4 fails before any pass term can match it, in the record and in its include.
    assert nets(report.roots["cut.test"]) == [
        "192.0.2.0/30", "192.0.2.5/32", "192.0.2.6/31", "2001:db8:8000::/33"]


def test_exists_with_a_fixed_name_is_looked_up_but_never_whitelisted(walk):
    report, _ = walk(zone({
        "ex.test": spf("v=spf1 exists:yes.ex.test ip4:192.0.2.1 -all"),
        "yes.ex.test": {"A": ["127.0.0.2"]},
        "err.test": spf("v=spf1 exists:broken.err.test -all"),
        "broken.err.test": {},
    }, faults={"broken.err.test": {"servfail": True}}), ["ex.test", "err.test"])
    assert nets(report.roots["ex.test"]) == ["192.0.2.1/32"]
    assert any("every client passes" in w for w in report.roots["ex.test"].warnings)
    assert report.roots["err.test"].status == TEMPERROR


# -- RFC 7208 accounting ---------------------------------------------------------------


def _eleven_includes() -> dict:
    names = [f"i{n}.test" for n in range(11)]
    records = {name: spf(f"v=spf1 ip4:192.0.2.{2 * n}") for n, name in enumerate(names)}
    records["big.test"] = spf("v=spf1 " + " ".join(f"include:{name}" for name in names) + " -all")
    return records


def test_more_than_ten_lookups_is_a_permerror_by_default(walk):
    report, _ = walk(zone(_eleven_includes()), ["big.test"])
    root = report.roots["big.test"]
    assert (root.status, root.dns_lookups, root.over_limit) == (PERMERROR, 11, True)
    assert "more than 10 DNS-querying terms" in root.errors[0]
    assert root.networks == []


def test_over_limit_root_can_be_expanded_on_request(walk):
    report, _ = walk(zone(_eleven_includes()), ["big.test"], expand_over_limit=True)
    root = report.roots["big.test"]
    assert (root.status, root.dns_lookups, root.over_limit) == (OK, 11, True)
    assert len(root.networks) == 11
    assert any("expanded anyway" in warning for warning in root.warnings)


def test_lookups_are_counted_per_root_even_when_answers_are_shared(walk):
    records = _eleven_includes()
    records["small.test"] = spf("v=spf1 include:i0.test include:i1.test -all")
    report, server = walk(zone(records), ["big.test", "small.test"], expand_over_limit=True)
    assert report.roots["small.test"].dns_lookups == 2
    assert report.roots["big.test"].dns_lookups == 11
    txt_queries = [q["name"] for q in server.queries() if q["type"] == "TXT"]
    assert txt_queries.count("i0.test") == 1  # one question on the wire for both roots


def test_more_than_two_void_lookups_is_a_permerror(walk):
    report, _ = walk(zone({
        "void.test": spf("v=spf1 a:gone1.void.test a:gone2.void.test mx:gone3.void.test ip4:192.0.2.1 -all"),
    }), ["void.test"])
    root = report.roots["void.test"]
    assert (root.status, root.void_lookups) == (PERMERROR, 3)
    assert "void lookups" in root.errors[0]


def test_include_loop_is_a_permerror(walk):
    report, _ = walk(zone({
        "loop-a.test": spf("v=spf1 include:loop-b.test -all"),
        "loop-b.test": spf("v=spf1 ip4:192.0.2.1 include:loop-a.test -all"),
    }), ["loop-a.test"])
    root = report.roots["loop-a.test"]
    assert root.status == PERMERROR
    assert root.errors == [
        "loop-a.test > include:loop-b.test > include:loop-a.test: loop back to loop-a.test"
    ]


def test_several_spf_records_is_a_permerror(walk):
    report, _ = walk(zone({
        "two.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all", "v=spf1 ip4:192.0.2.2 -all", "verify=x"]},
    }), ["two.test"])
    assert report.roots["two.test"].status == PERMERROR
    assert "2 SPF records" in report.roots["two.test"].errors[0]


def test_missing_include_target_is_a_permerror(walk):
    report, _ = walk(zone({"inc.test": spf("v=spf1 include:missing.inc.test ip4:192.0.2.1 -all")}),
                     ["inc.test"])
    root = report.roots["inc.test"]
    assert root.status == PERMERROR
    assert "missing.inc.test publishes no SPF record" in root.errors[0]


def test_a_root_without_spf_record_is_none(walk):
    report, _ = walk(zone({"plain.test": {"TXT": ["just text"]}}), ["plain.test", "nxdomain.test"])
    assert report.roots["plain.test"].status == NONE
    assert report.roots["nxdomain.test"].status == NONE


def test_syntax_error_is_a_permerror(walk):
    report, _ = walk(zone({"bad.test": spf("v=spf1 ip4:192.0.2.0/33 -all")}), ["bad.test"])
    assert report.roots["bad.test"].status == PERMERROR


def test_servfail_on_an_include_is_a_temperror(walk):
    report, _ = walk(zone(
        {"s.test": spf("v=spf1 include:broken.s.test ip4:192.0.2.1 -all"), "broken.s.test": {}},
        faults={"broken.s.test": {"servfail": True}},
    ), ["s.test"])
    root = report.roots["s.test"]
    assert root.status == TEMPERROR
    assert "SERVFAIL" in root.errors[0]
    assert root.networks == []  # a partial list is never handed on


def test_dropped_reply_is_a_temperror_within_the_query_lifetime(walk):
    lifetime = 1.0
    started = time.monotonic()
    report, _ = walk(zone(
        {"d.test": spf("v=spf1 include:gone.d.test -all"), "fine.test": spf("v=spf1 ip4:192.0.2.1 -all")},
        faults={"gone.d.test": {"drop": True}},
    ), ["d.test", "fine.test"], query_lifetime=lifetime, retry_interval=0.4)
    elapsed = time.monotonic() - started
    assert report.roots["d.test"].status == TEMPERROR
    assert "no reply" in report.roots["d.test"].errors[0]
    assert report.roots["fine.test"].status == OK
    assert report.elapsed < lifetime + 0.5, report.elapsed
    assert elapsed < lifetime + 5  # server start-up included; a hang would exceed this by far


def test_walk_deadline_turns_unfinished_roots_into_temperror(walk):
    report, _ = walk(zone(
        {"slow.test": spf("v=spf1 include:slower.slow.test -all"), "slower.slow.test": spf("v=spf1 -all"),
         "fast.test": spf("v=spf1 ip4:192.0.2.1 -all")},
        faults={"slower.slow.test": {"delay_ms": 3000}},
    ), ["slow.test", "fast.test"], query_lifetime=5.0, deadline=0.6)
    assert report.roots["slow.test"].status == TEMPERROR
    assert "deadline" in report.roots["slow.test"].errors[0]
    assert report.roots["fast.test"].status == OK
    assert report.elapsed < 0.6 + 0.5


# -- speed mechanisms (correctness only; figures live in bench/) -------------------------


def test_truncated_udp_answer_is_retried_over_tcp(walk):
    report, server = walk(zone({"tc.test": spf("v=spf1 ip4:192.0.2.0/24 -all")},
                               faults={"tc.test": {"truncate": True}}), ["tc.test"])
    assert nets(report.roots["tc.test"]) == ["192.0.2.0/24"]
    transports = sorted(q["transport"] for q in server.queries() if q["name"] == "tc.test")
    assert transports == ["tcp", "udp"]


def test_each_question_is_sent_once_per_walk(walk):
    records = {
        "r1.test": spf("v=spf1 include:shared.test a:h.test -all"),
        "r2.test": spf("v=spf1 include:shared.test include:shared2.test -all"),
        "shared.test": spf("v=spf1 a:h.test -all"),
        "shared2.test": spf("v=spf1 include:shared.test -all"),
        "h.test": {"A": ["192.0.2.7"]},
    }
    report, server = walk(zone(records, delay_ms=30), ["r1.test", "r2.test"])
    asked = [(q["name"], q["type"]) for q in server.queries()]
    assert len(asked) == len(set(asked)) == report.unique_questions == report.queries_sent
    assert ("shared.test", "TXT") in asked


def test_questions_in_flight_are_bounded(walk):
    children = [f"c{n}.wide.test" for n in range(8)]
    records = {name: spf("v=spf1 ip4:192.0.2.1") for name in children}
    records["wide.test"] = spf("v=spf1 " + " ".join(f"include:{c}" for c in children))
    # 8 includes answered after 100 ms each, 2 at a time: at least 4 rounds after the root's answer.
    report, _ = walk(zone(records, delay_ms=100), ["wide.test"], max_in_flight=2, expand_over_limit=True)
    assert report.roots["wide.test"].status == OK
    assert report.elapsed >= 0.5
    unbounded, _ = walk(zone(records, delay_ms=100), ["wide.test"], max_in_flight=32, expand_over_limit=True)
    assert unbounded.elapsed < report.elapsed


# -- normalisation and provenance --------------------------------------------------------


def test_host_bits_are_fixed_with_a_warning_and_lists_are_collapsed(walk):
    report, _ = walk(zone({
        "n.test": spf("v=spf1 ip6:2001:db8::1/32 ip4:192.0.2.77/24 ip4:198.51.100.0/25 "
                      "ip4:198.51.100.128/25 ip4:192.0.2.5 ip4:10.0.0.0/8 -all"),
    }), ["n.test"])
    root = report.roots["n.test"]
    assert nets(root) == ["10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"]
    fixed = [w for w in root.warnings if "host bits" in w]
    assert fixed == ["n.test: 'ip6:2001:db8::1/32' has host bits set; using 2001:db8::/32",
                     "n.test: 'ip4:192.0.2.77/24' has host bits set; using 192.0.2.0/24"]
    for text in nets(root):
        ipaddress.ip_network(text, strict=True)


def test_provenance_names_the_include_chain(walk):
    report, _ = walk(zone({
        "p.test": spf("v=spf1 redirect=_spf.p.test"),
        "_spf.p.test": spf("v=spf1 include:_nb.p.test -all"),
        "_nb.p.test": spf("v=spf1 ip4:192.0.2.0/24 -all"),
    }), ["p.test"])
    assert report.roots["p.test"].provenance == {
        "192.0.2.0/24": ["p.test > redirect=_spf.p.test > include:_nb.p.test > ip4:192.0.2.0/24"],
    }


def test_a_refusing_name_server_is_skipped_for_the_next_one(dns_server):
    server = dns_server(zone({"ok.test": spf("v=spf1 ip4:192.0.2.1 -all")}))
    # 127.0.0.2 is loopback too, but nothing listens on the lab port there: the kernel refuses.
    options = WalkerOptions(nameservers=["127.0.0.2", server.address], port=server.port,
                            query_lifetime=20.0, retry_interval=10.0)
    report = walk_sync(["ok.test"], options)
    assert nets(report.roots["ok.test"]) == ["192.0.2.1/32"]
    assert report.elapsed < 5.0  # the refusal was not treated as silence (10 s retransmission timer)

    alone = walk_sync(["ok.test"], WalkerOptions(nameservers=["127.0.0.2"], port=server.port))
    assert alone.roots["ok.test"].status == TEMPERROR


# -- no partial "ok" ---------------------------------------------------------------------


class _RaisingOn:
    """The real DnsClient against the lab server, except that one question raises (a bug's stand-in)."""

    def __init__(self, client: DnsClient, name: str, rdtype: str):
        self.client, self.question = client, (name, rdtype)
        self.prefetch, self.counters = client.prefetch, client.counters

    async def lookup(self, name: str, rdtype: str):
        if (name, rdtype) == self.question:
            raise RuntimeError("boom")
        return await self.client.lookup(name, rdtype)


@pytest.mark.parametrize("name, rdtype, root, error", [
    ("spfa.protection.outlook.com", "TXT", "outlook.com",
     "outlook.com > include:spf2.outlook.com > include:spfa.protection.outlook.com"),
    ("_spf.google.com", "TXT", "gmail.com", "gmail.com > redirect=_spf.google.com"),
    ("mx-out.facebook.com", "A", "facebookmail.com",
     "facebookmail.com > include:_spf.facebook.com > a:mx-out.facebook.com/26"),
    ("icloud.com", "TXT", "icloud.com", "icloud.com"),  # the root's own record
])
def test_an_exception_anywhere_in_a_walk_makes_the_root_an_error(dns_server, name, rdtype, root, error):
    server = dns_server(provider_zone())
    resolver = _RaisingOn(DnsClient([server.address], port=server.port, query_lifetime=1.0), name, rdtype)
    report = walk_sync(["outlook.com", "gmail.com", "facebookmail.com", "icloud.com", "amazonses.com"],
                       resolver=resolver)
    failed = report.roots[root]
    assert (failed.status, failed.networks) == (TEMPERROR, [])  # never "ok" with what was found so far
    assert failed.errors == [f"{error}: internal error: RuntimeError: boom"]
    assert report.roots["amazonses.com"].status == OK  # other roots are not affected


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_an_invalid_port_is_refused_before_the_walk(port):
    with pytest.raises(ValueError, match="port must be between 1 and 65535"):
        WalkerOptions(nameservers=["127.0.0.1"], port=port)


# -- RFC 7208 term order: earlier non-pass terms are cut out -------------------------------


def without(network: str, *holes: str) -> list[str]:
    """``network`` minus ``holes``, collapsed, as the walker lists it."""
    pieces = [ipaddress.ip_network(network)]
    for hole in map(ipaddress.ip_network, holes):
        pieces = [part for piece in pieces
                  for part in (piece.address_exclude(hole) if hole.subnet_of(piece) else [piece])]
    return [str(piece) for piece in ipaddress.collapse_addresses(pieces)]


@pytest.mark.parametrize("record, records, expected", [
    ("-a:bad.example ip4:192.0.2.0/24", {"bad.example": {"A": ["192.0.2.66"]}},
     without("192.0.2.0/24", "192.0.2.66/32")),
    ("?a/28 ip4:192.0.2.0/24", {"t.test": {"A": ["192.0.2.77"]}}, without("192.0.2.0/24", "192.0.2.64/28")),
    ("-mx ip4:192.0.2.0/24", {"t.test": {"MX": [[10, "mx.t.test"]]}, "mx.t.test": {"A": ["192.0.2.9"]}},
     without("192.0.2.0/24", "192.0.2.9/32")),
    ("~include:x.test ip4:192.0.2.0/24", {"x.test": spf("v=spf1 ip4:192.0.2.64/26 -all")},
     without("192.0.2.0/24", "192.0.2.64/26")),
    # the include's own order: it passes only 192.0.2.96/27, so only that is cut
    ("-include:x.test ip4:192.0.2.0/24", {"x.test": spf("v=spf1 -ip4:192.0.2.64/27 ip4:192.0.2.64/26 -all")},
     without("192.0.2.0/24", "192.0.2.96/27")),
    # what a non-pass include passes through its own includes and redirect
    ("-include:x.test ip4:192.0.2.0/24", {"x.test": spf("v=spf1 include:y.test redirect=z.test"),
                                          "y.test": spf("v=spf1 ip4:192.0.2.0/26"),
                                          "z.test": spf("v=spf1 ip4:192.0.2.128/26")},
     without("192.0.2.0/24", "192.0.2.0/26", "192.0.2.128/26")),
    ("~include:open.test ip4:192.0.2.0/24 ip6:2001:db8::/32", {"open.test": spf("v=spf1 +all")}, []),
    ("-exists:yes.test ip4:192.0.2.0/24 ip6:2001:db8::/32", {"yes.test": {"A": ["127.0.0.2"]}}, []),
    # a fixed exists that does not resolve matches nobody
    ("-exists:no.test ip4:192.0.2.0/24", {}, ["192.0.2.0/24"]),
    # only what comes after a non-pass term loses its networks
    ("ip4:192.0.2.0/25 -a:bad.example ip4:192.0.2.128/25", {"bad.example": {"A": ["192.0.2.1", "192.0.2.129"]}},
     ["192.0.2.0/25", *without("192.0.2.128/25", "192.0.2.129/32")]),
    # a non-pass term that depends on the client cuts nothing
    ("-ptr ~a:%{i}.t.test ?include:%{l}.t.test ip4:192.0.2.0/24", {}, ["192.0.2.0/24"]),
])
def test_earlier_non_pass_terms_are_cut_out_of_later_pass_networks(walk, record, records, expected):
    records = {**records, "t.test": {**records.get("t.test", {}), **spf(f"v=spf1 {record} -all")}}
    report, _ = walk(zone(records), ["t.test"])
    root = report.roots["t.test"]
    assert root.status == OK, root.errors
    assert nets(root) == expected


def test_a_non_pass_term_is_cut_out_of_what_later_terms_include(walk):
    report, server = walk(zone({
        "t.test": spf("v=spf1 ~mx:mx.t.test include:inc.t.test redirect=r.t.test"),
        "mx.t.test": {"MX": [[10, "bad.t.test"]]},
        "bad.t.test": {"A": ["192.0.2.66"], "AAAA": ["2001:db8::66"]},
        "inc.t.test": spf("v=spf1 ip4:192.0.2.0/24 include:deeper.t.test"),
        "deeper.t.test": spf("v=spf1 ip6:2001:db8::/64"),
        "r.t.test": spf("v=spf1 a:host.t.test/24 -all"),
        "host.t.test": {"A": ["192.0.2.200"]},
    }), ["t.test"])
    root = report.roots["t.test"]
    assert nets(root) == [*without("192.0.2.0/24", "192.0.2.66/32"), *without("2001:db8::/64", "2001:db8::66/128")]
    assert root.dns_lookups == 5  # accounting is unchanged: mx, include, redirect, include, a
    asked = [(q["name"], q["type"]) for q in server.queries()]
    assert len(asked) == len(set(asked)) == report.queries_sent  # still one question per (name, type)


# -- leading-zero CIDR lengths -------------------------------------------------------------


@pytest.mark.parametrize("term", ["ip6:1::/00", "ip6:2001:db8::/0048", "ip6:2001:db8::/032", "ip4:192.0.2.0/032",
                                  "ip4:0.0.0.0/00", "a:host.z.test/032", "a:host.z.test//0064", "a/24//0064",
                                  "mx/024"])
def test_a_cidr_length_with_a_leading_zero_is_a_permerror(walk, term):
    report, _ = walk(zone({"z.test": spf(f"v=spf1 {term} ip4:192.0.2.1 -all"),
                           "host.z.test": {"A": ["192.0.2.5"], "AAAA": ["2001:db8::5"]}}), ["z.test"])
    root = report.roots["z.test"]
    assert (root.status, root.networks) == (PERMERROR, [])


@pytest.mark.parametrize("term", ["ip6:1::/00", "ip6:2001:db8::/0048", "ip4:192.0.2.0/032"])
def test_the_record_parser_refuses_a_leading_zero_length(term):
    with pytest.raises(SpfSyntaxError, match=r"not an IPv[46] address"):
        parse_record(f"v=spf1 {term} -all")


@pytest.mark.parametrize("text", ["1::/00", "2001:db8::/0048", "192.0.2.0/032", "10.0.0.0/08", "0.0.0.0/00"])
def test_no_netblock_parser_reads_a_leading_zero_length(text):
    # Static entries and the state go through the same parser as the walker.
    with pytest.raises(ValueError, match="leading zeros"):
        parse_network(text)
    assert parse_network("0.0.0.0/0")[0].prefixlen == 0  # "0" itself is a length
