"""The DNSBL health check fails a play whose DNSBL would reject nobody through the host's resolver.

Behind a public resolver Spamhaus answers 127.255.255.254 and a DNSBL silently does nothing; a
retired or misspelled zone answers NXDOMAIN. roles/local_resolver's check asks for each zone's
RFC 5782 test point (127.0.0.2) and judges the answer by the MTA's own reply filter. Here it runs
on the controller against a test DNS server on loopback; the scenarios run it on the mail hosts.
"""

from __future__ import annotations

import sys

import pytest

from tests.support.playbook import failed_messages, run_playbook

ZONE = {
    "records": {
        "2.0.0.127.listing.test": {"A": ["127.0.0.2"], "TXT": ["RFC 5782 test point"]},
        "2.0.0.127.good.test": {"A": ["127.0.0.2"]},
        # Spamhaus's answer to a query that came through a public resolver.
        "2.0.0.127.refusing.test": {"A": ["127.255.255.254"]},
        "2.0.0.127.other-code.test": {"A": ["127.0.0.4"]},
        "unrelated.test": {"A": ["192.0.2.1"]},
    },
    "faults": {"2.0.0.127.silent.test": {"drop": True}},
}


def run(playbook: str, variables: dict) -> tuple[int, str, str]:
    """(returncode, failure messages, warnings) of a tests/ansible playbook on localhost."""
    done = run_playbook(playbook, variables)
    results = [result for play in done.output["plays"] for task in play["tasks"]
               for result in task["hosts"].values()]
    warnings = " ".join(warning for result in results for warning in result.get("warnings", []))
    return done.returncode, " ".join(failed_messages(done.output)), warnings


@pytest.fixture
def check(dns_server):
    server = dns_server(ZONE)

    def run_check(sites: list[str], syntax: str = "postfix", **more) -> tuple[int, str, str]:
        return run("tests/ansible/dnsbl_check.yml", {
            "local_resolver_dnsbl_sites": sites, "local_resolver_dnsbl_syntax": syntax,
            "local_resolver_dnsbl_check_server": server.address, "local_resolver_dnsbl_check_port": server.port,
            # The module runs on the controller here: with this interpreter, not a discovered one.
            "ansible_python_interpreter": sys.executable, **more})

    return run_check


@pytest.mark.parametrize(
    ("syntax", "sites"),
    [
        ("postfix", ["listing.test=127.0.0.[2..11]", "listing.test=127.0.0.2", "listing.test",
                     "listing.test=127.0.0.[1;2;4]", "listing.test=127.[0..255].0.[2..3]"]),
        ("exim", ["listing.test=127.0.0.2,127.0.0.3", "listing.test", "listing.test&0.0.0.2",
                  "listing.test!=127.0.0.9", "listing.test==127.0.0.2",
                  # a domain list keyed on something else: its test point is not 127.0.0.2, not checked
                  "refusing.test/$sender_address_domain"]),
    ],
)
def test_zones_that_list_their_test_point_pass(check, syntax, sites):
    returncode, failures, warnings = check(sites, syntax)
    assert returncode == 0, failures
    assert not warnings, warnings


@pytest.mark.parametrize(
    ("syntax", "site", "named"),
    [
        # behind a public resolver: refused, even where no reply filter would hide it
        ("postfix", "refusing.test=127.0.0.[2..11]", "127.255.255.254"),
        ("postfix", "refusing.test", "127.255.255.254"),
        ("exim", "refusing.test", "127.255.255.254"),
        # retired or misspelled zone: the test point does not exist
        ("postfix", "retired.test=127.0.0.2", "NXDOMAIN"),
        ("exim", "retired.test=127.0.0.2", "NXDOMAIN"),
        # a listing the MTA's reply filter would never count
        ("postfix", "listing.test=127.0.0.3", "127.0.0.2"),
        ("postfix", "other-code.test=127.0.0.[2..3]", "127.0.0.4"),
        ("exim", "listing.test=127.0.0.3,127.0.0.4", "127.0.0.2"),
        ("exim", "listing.test&0.0.0.4", "127.0.0.2"),
        # no answer at all
        ("postfix", "silent.test", "no answer"),
    ],
)
def test_a_zone_that_lists_nobody_here_fails_naming_zone_and_answer(check, syntax, site, named):
    zone = site.split("=")[0].split("&")[0]
    returncode, failures, _ = check(["good.test=127.0.0.2", site], syntax)
    assert returncode != 0, f"{site}: the check passed"
    assert f"{zone}: 2.0.0.127.{zone}" in failures and named in failures, failures
    assert "good.test:" not in failures, failures


def test_the_check_can_be_lowered_to_a_warning(check):
    returncode, failures, warnings = check(["refusing.test"], local_resolver_dnsbl_check_fatal=False)
    assert returncode == 0, failures
    assert "refusing.test" in warnings and "127.255.255.254" in warnings, warnings


def test_no_dnsbl_no_query(check, dns_server):
    returncode, failures, _ = check([])
    assert returncode == 0, failures


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"local_resolver_forwarders": ["dns.example"]}, '"dns.example"'),
        ({"local_resolver_forward_zones": [{"name": "corp.example.", "addresses": ["192.0.2.300x"]}]},
         '"192.0.2.300x"'),
        ({"local_resolver_forward_zones": [{"name": "corp.example", "addresses": ["192.0.2.53"]}]},
         '"name": "corp.example"'),
        ({"local_resolver_nodefault_zones": ["test"]}, '"test"'),
        ({"local_resolver_dnssec_validation": False}, "local_resolver_dnssec_validation"),
    ],
)
def test_preflight_refuses_bad_resolver_settings_naming_them(variables, named):
    returncode, failures, _ = run("tests/ansible/local_resolver_preflight.yml", variables)
    assert returncode != 0, f"{variables}: accepted"
    assert named in failures, failures


def test_preflight_accepts_the_lab_and_the_defaults():
    lab = {"local_resolver_forwarders": ["172.30.53.53", "2001:db8::53@5353"],
           "local_resolver_dnssec_validation": False,
           "local_resolver_nodefault_zones": ["test.", "30.172.in-addr.arpa."],
           "local_resolver_forward_zones": [{"name": "corp.example.", "addresses": ["192.0.2.53"], "insecure": True}]}
    for variables in ({}, lab):
        returncode, failures, _ = run("tests/ansible/local_resolver_preflight.yml", variables)
        assert returncode == 0, failures
