"""Delays, the never-retried rule and pool detection, on events as the parsers make them."""

from __future__ import annotations

import pytest

from greylog import report
from greylog.aggregate import Aggregator
from greylog.daemons import GREYLISTED, MTA, PASSED, POLICY, Event

HOUR = 3600.0


def grey(time, address, sender="alice@pool.test", recipient="bob@example.org", name="", witness=POLICY):
    return Event(GREYLISTED, witness, time, address, name, sender, recipient)


def passed(time, address, sender="alice@pool.test", recipient="bob@example.org", witness=POLICY):
    return Event(PASSED, witness, time, address, "", sender, recipient)


def build(events, min_age=HOUR, spf=None, **aggregator_options) -> dict:
    aggregator = Aggregator(**aggregator_options)
    for event in events:
        aggregator.add(event)
    return report.build(aggregator, report.Options(min_age=min_age), spf)


def test_delay_is_first_greylisting_to_first_acceptance():
    result = build([grey(0, "192.0.2.1"), grey(30, "192.0.2.1"), passed(400, "192.0.2.1"), passed(900, "192.0.2.1"),
                    grey(10, "192.0.2.9", sender="c@single.test"), passed(70, "192.0.2.9", sender="c@single.test"),
                    grey(0, "198.51.100.1", sender="x@later.test"), passed(5 * HOUR, "198.51.100.1",
                                                                           sender="x@later.test")])
    delay = result["messages"]["delay"]
    assert (delay["count"], delay["p50"], delay["max"]) == (3, 400, 5 * HOUR)
    assert result["triplets"]["passed"] == 3


def test_postfix_and_postgrey_lines_of_one_attempt_count_once():
    aggregator = Aggregator()
    for event in [grey(0, "192.0.2.1"), grey(0, "192.0.2.1", witness=MTA), grey(60, "192.0.2.1"),
                  grey(60, "192.0.2.1", witness=MTA)]:
        aggregator.add(event)
    (triplet,) = aggregator.triplets.values()
    assert triplet.attempts == 2


def test_never_retried_excludes_the_too_recent_and_the_retried():
    end = 10 * HOUR
    result = build([
        grey(0, "203.0.113.1", sender="bot@spam.test"),  # once, long ago: never retried
        grey(HOUR, "203.0.113.2", sender="r@ratware.test"), grey(HOUR + 5, "203.0.113.2", sender="r@ratware.test"),
        grey(end - 600, "203.0.113.3", sender="new@late.test"),  # 10 minutes before the end: too recent
        passed(end, "192.0.2.200", sender="z@other.test"),  # only sets the log's last time
    ])
    triplets = result["triplets"]
    assert (triplets["never_retried"], triplets["retried_not_passed"], triplets["too_recent"]) == (1, 1, 1)
    assert result["messages"]["never_retried"] == 1
    with_short_min_age = build([grey(0, "203.0.113.1"), grey(9 * HOUR, "203.0.113.3", sender="n@late.test"),
                                passed(10 * HOUR, "192.0.2.1", sender="z@o.test")], min_age=60)
    assert with_short_min_age["triplets"]["never_retried"] == 2


def test_pool_retrying_from_several_networks_is_found_and_delayed():
    events = [grey(0, "192.0.2.10", name="mail-a.outbound.pool.test"),
              grey(600, "198.51.100.20", name="mail-b.outbound.pool.test"),
              grey(2400, "203.0.113.30", name="mail-c.outbound.pool.test"),
              passed(6 * HOUR, "203.0.113.31"),
              grey(0, "192.0.2.99", sender="c@single.test"), passed(300, "192.0.2.99", sender="c@single.test")]
    result = build(events)
    (pool,) = result["pools"]
    assert pool["sender_domain"] == "pool.test"
    assert pool["addresses"] == ["192.0.2.10", "198.51.100.20", "203.0.113.30"]
    assert pool["networks"] == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    assert pool["reasons"] == ["names", "networks"] and pool["name_domains"] == ["pool.test"]
    assert pool["delay"]["max"] == 6 * HOUR and pool["never_passed"] == 0
    assert result["triplets"]["passed_elsewhere"] == 2
    assert pool["spf"] is None
    assert pool["whitelist"] == {"spf_whitelist_static_entries": pool["addresses"]}


def test_addresses_of_one_network_are_no_pool():
    result = build([grey(0, "192.0.2.10"), grey(600, "192.0.2.11"), passed(900, "192.0.2.12")])
    assert result["pools"] == []


def test_names_under_one_domain_mark_a_pool_of_one_provider():
    events = [grey(0, "192.0.2.10", name="o1.mail.pool.test"), grey(600, "192.0.2.77", name="o2.mail.pool.test")]
    assert build(events)["pools"] == []  # one /24: one triplet, greylisting works
    (pool,) = build(events, prefix4=32)["pools"]  # a daemon that keys on the address sees two clients
    assert pool["reasons"] == ["names", "networks"] and pool["address_count"] == 2
    unrelated = [grey(0, "192.0.2.10", name="a.one.test"), grey(600, "198.51.100.7", name="b.two.test")]
    (pool,) = build(unrelated)["pools"]
    assert pool["reasons"] == ["networks"] and pool["name_domains"] == ["one.test", "two.test"]


def test_ipv6_triplets_use_the_64():
    result = build([grey(0, "2001:db8:1:1::5"), grey(60, "2001:db8:1:1::6"), grey(120, "2001:db8:1:2::5")])
    (pool,) = result["pools"]
    assert pool["networks"] == ["2001:db8:1:1::/64", "2001:db8:1:2::/64"]


def test_spf_coverage_picks_the_inventory_line():
    import ipaddress
    events = [grey(0, "192.0.2.10"), grey(600, "198.51.100.20"),
              grey(0, "192.0.2.50", sender="x@half.test"), grey(60, "203.0.113.5", sender="x@half.test")]

    def lookup(domains):
        assert domains == ["half.test", "pool.test"]
        return {"pool.test": ("ok", [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.51.100.0/24")]),
                "half.test": ("ok", [ipaddress.ip_network("192.0.2.0/24")])}

    pools = {pool["sender_domain"]: pool for pool in build(events, spf=lookup)["pools"]}
    assert pools["pool.test"]["whitelist"] == {"spf_whitelist_providers_extra": ["pool.test"]}
    assert pools["half.test"]["whitelist"] == {"spf_whitelist_providers_extra": ["half.test"],
                                               "spf_whitelist_static_entries": ["203.0.113.5"]}


@pytest.mark.parametrize(("values", "p50", "p95"), [([5], 5, 5), ([1, 2, 3, 4], 2, 4), (list(range(1, 101)), 50, 95)])
def test_percentiles_are_nearest_rank(values, p50, p95):
    assert (report.percentile(values, 0.5), report.percentile(values, 0.95)) == (p50, p95)


@pytest.mark.parametrize(("seconds", "text"), [(45, "45s"), (372, "6m12s"), (7500, "2h05m"), (93600, "1d02h")])
def test_durations(seconds, text):
    assert report.duration(seconds) == text
