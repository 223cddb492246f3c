"""The walker's DNS client (spfwalk.dns_client, on dnspython) against the lab DNS server's faults.

Slow servers, refusing and failing servers, foreign and malformed datagrams: what a
name-server admin meets. Every server is a real process on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from spfwalk.dns_client import FOUND, NODATA, NXDOMAIN, DnsClient
from spfwalk.model import NONE, OK, PERMERROR, TEMPERROR
from spfwalk.walker import WalkerOptions, walk_sync
from tests.support.dns_lab import start_dns_server
from tests.support.zones import PROVIDER_ROOTS, provider_zone

SPF = "v=spf1 ip4:192.0.2.0/24 -all"


def spf(text: str = SPF) -> dict:
    return {"TXT": [text]}


def lookups(server, questions: list[tuple[str, str]], **options) -> list:
    """Ask the lab server these questions at once with a fresh client."""
    client = DnsClient([server.address], port=server.port, **options)

    async def ask():
        return await asyncio.gather(*(client.lookup(name, rdtype) for name, rdtype in questions))

    return asyncio.run(ask())


@pytest.fixture
def second_server(tmp_path):
    """second_server(zone, address, port) -> a lab server on a given port, stopped at teardown."""
    started = []

    def start(zone: dict, address: str, port: int):
        started.append(start_dns_server(zone, address, tmp_path, port))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def walk(servers, roots: list[str], **options):
    options.setdefault("query_lifetime", 1.0)
    return walk_sync(roots, WalkerOptions(nameservers=[s.address for s in servers], port=servers[0].port, **options))


# -- late replies -----------------------------------------------------------------------


def test_a_reply_slower_than_the_retry_interval_is_used_within_the_lifetime(dns_server):
    delays = {"s11.test": 1100, "s15.test": 1500, "s19.test": 1900}
    server = dns_server({"records": {name: spf() for name in delays},
                         "faults": {name: {"delay_ms": ms} for name, ms in delays.items()}})
    started = time.monotonic()
    answers = lookups(server, [(name, "TXT") for name in delays], query_lifetime=2.0, retry_interval=1.0)
    assert [(a.status, a.records) for a in answers] == [(FOUND, (SPF,))] * 3, [a.detail for a in answers]
    # The answer to the first send, not to the retransmission at 1 s (which would come at 2.1-2.9 s).
    assert time.monotonic() - started < 2.0
    sent = [q["name"] for q in server.queries()]
    assert sorted(sent) == sorted([*delays, *delays])  # each retransmitted once, at 1 s


def test_a_walk_uses_an_answer_after_1_5_s_with_a_lifetime_of_5_s(dns_server):
    server = dns_server({"records": {"root.test": spf("v=spf1 include:slow.test -all"), "slow.test": spf()},
                         "faults": {"slow.test": {"delay_ms": 1500}}})
    report = walk([server], ["root.test"], query_lifetime=5.0, retry_interval=1.0)
    root = report.roots["root.test"]
    assert (root.status, [str(n) for n in root.networks]) == (OK, ["192.0.2.0/24"]), root.errors
    assert report.elapsed < 2.4  # the reply to the first send, not to a later one


# -- fail-over ----------------------------------------------------------------------------


@pytest.mark.parametrize("rcode", ["REFUSED", "SERVFAIL"])
def test_a_server_that_fails_everything_is_skipped_for_the_next_one(dns_server, second_server, rcode):
    zone = provider_zone()
    failing = dns_server({**zone, "faults": {"*": {"rcode": rcode}}}, address="127.0.0.2")
    # The same port on another address: the walker has one port for all its name servers.
    healthy = second_server(zone, "127.0.0.3", failing.port)
    # Retransmission timer and lifetime far away: fail-over must not wait for them.
    report = walk([failing, healthy], PROVIDER_ROOTS, query_lifetime=20.0, retry_interval=10.0)
    alone = walk([healthy], PROVIDER_ROOTS)
    for name in PROVIDER_ROOTS:
        got, expected = report.roots[name], alone.roots[name]
        assert (got.status, got.networks) == (expected.status, expected.networks), got.errors
    assert all(root.status == OK for root in report.roots.values())
    assert report.elapsed < 2.0
    assert len(failing.queries()) == len(healthy.queries()) // 2 == report.unique_questions


@pytest.mark.parametrize("rcode", ["REFUSED", "SERVFAIL"])
def test_when_every_server_fails_the_detail_names_each_one(dns_server, rcode):
    one = dns_server({"records": {"x.test": spf()}, "faults": {"*": {"rcode": rcode}}}, address="127.0.0.2")
    answers = lookups(one, [("x.test", "TXT")], query_lifetime=20.0, retry_interval=10.0)
    assert answers[0].failed
    assert answers[0].detail == f"x.test TXT: {rcode} from 127.0.0.2"


# -- foreign and malformed datagrams ------------------------------------------------------


@pytest.mark.parametrize("decoy", ["wrong_id", "other_question", "pointer_loop"])
def test_a_datagram_that_is_not_our_reply_is_ignored(dns_server, decoy):
    server = dns_server({"records": {"root.test": spf("v=spf1 include:d.test -all"), "d.test": spf()},
                         "faults": {"d.test": {"decoy": decoy}}})
    report = walk([server], ["root.test"], retry_interval=10.0)
    root = report.roots["root.test"]
    assert (root.status, [str(n) for n in root.networks]) == (OK, ["192.0.2.0/24"]), root.errors
    assert report.elapsed < 1.0  # the right reply right after the decoy, not a retransmission


def test_a_reply_with_a_pointer_loop_is_an_error_of_that_question_only(dns_server):
    server = dns_server({
        "records": {"bad.test": spf("v=spf1 include:loop.test -all"), "loop.test": spf(),
                    **{name: spf(f"v=spf1 ip4:192.0.2.{n} -all") for n, name in enumerate(["a.test", "b.test"])}},
        "faults": {"loop.test": {"decoy": "pointer_loop", "drop": True}}})
    report = walk([server], ["bad.test", "a.test", "b.test"], query_lifetime=1.0, retry_interval=0.4)
    bad = report.roots["bad.test"]
    assert (bad.status, bad.networks) == (TEMPERROR, [])
    assert bad.errors[0].startswith("bad.test > include:loop.test: loop.test TXT: malformed reply from 127.0.0.1 (")
    assert [report.roots[name].status for name in ("a.test", "b.test")] == [OK, OK]


# -- the DNS condition, named ----------------------------------------------------------


def test_void_answers_name_their_condition(dns_server):
    server = dns_server({"records": {
        "nx.test": spf("v=spf1 include:missing.test -all"),
        "nodata.test": spf("v=spf1 include:empty.test -all"), "empty.test": {"A": ["192.0.2.1"]},
        "alias.test": spf("v=spf1 include:cname.test -all"), "cname.test": {"CNAME": "empty.test"}}})
    report = walk([server], ["nx.test", "nodata.test", "alias.test", "missing.test", "empty.test"])
    errors = {name: (root.status, root.errors) for name, root in report.roots.items()}
    assert errors == {
        "nx.test": (PERMERROR, ["nx.test > include:missing.test: missing.test publishes no SPF record "
                                "(missing.test TXT: NXDOMAIN)"]),
        "nodata.test": (PERMERROR, ["nodata.test > include:empty.test: empty.test publishes no SPF record "
                                    "(empty.test TXT: no data (the name exists, no TXT record))"]),
        "alias.test": (PERMERROR, ["alias.test > include:cname.test: cname.test publishes no SPF record "
                                   "(cname.test TXT: no data (the name exists, no TXT record) "
                                   "(at empty.test, via CNAME))"]),
        "missing.test": (NONE, ["missing.test publishes no SPF record (missing.test TXT: NXDOMAIN)"]),
        "empty.test": (NONE, ["empty.test publishes no SPF record "
                              "(empty.test TXT: no data (the name exists, no TXT record))"]),
    }


def test_a_cname_loop_is_a_temperror_that_says_so(dns_server):
    server = dns_server({"records": {"root.test": spf("v=spf1 include:one.test -all"),
                                     "one.test": {"CNAME": "two.test"}, "two.test": {"CNAME": "one.test"}}})
    report = walk([server], ["root.test"])
    root = report.roots["root.test"]
    assert root.status == TEMPERROR
    assert root.errors == ["root.test > include:one.test: one.test TXT: CNAME loop one.test -> two.test -> one.test"]


def test_silence_names_the_lifetime_and_the_server(dns_server):
    server = dns_server({"records": {"gone.test": spf()}, "faults": {"gone.test": {"drop": True}}})
    (answer,) = lookups(server, [("gone.test", "TXT")], query_lifetime=0.6, retry_interval=0.25)
    assert answer.failed
    assert answer.detail == "gone.test TXT: timeout after 0.6 s: no reply from 127.0.0.1"
    assert len(server.queries()) == 3  # sent at 0, 0.25 and 0.5 s, on the same socket and ID


def test_statuses_of_void_answers(dns_server):
    server = dns_server({"records": {"a.test": {"A": ["192.0.2.1"]}}})
    nx, nodata, found = lookups(server, [("b.test", "A"), ("a.test", "TXT"), ("A.Test.", "A")])
    assert (nx.status, nodata.status, found.status, found.records) == (NXDOMAIN, NODATA, FOUND, ("192.0.2.1",))
