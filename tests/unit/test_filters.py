"""The filter plugins (plugins/filter) that roles use on inventory values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from spfwalk.outputs import static_entry_kind

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/mailguard_networks.py"
_spec = importlib.util.spec_from_file_location("mailguard_networks", PLUGIN)
networks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(networks)


def test_invalid_networks_are_named():
    values = ["192.0.2.0/24", "192.0.2.1", "2001:db8::/32", "192.0.2.1/24", "300.1.2.3", "*", "localhost"]
    assert networks.mailguard_invalid_networks(values) == ["192.0.2.1/24", "300.1.2.3", "*", "localhost"]


def test_open_networks_are_those_postfix_mynetworks_refuses():
    # Postfix's mynetworks preflight refuses wider than /8 (IPv4) and /16 (IPv6); exactly these
    # widths pass. Host bits do not narrow a network.
    narrow = ["10.0.0.0/8", "192.0.2.1", "2001::/16", "::1", "127.0.0.0/8", "172.30.53.25/32"]
    wide = ["0.0.0.0/0", "0.0.0.1/0", "::/0", "1.0.0.0/7", "2000::/15"]
    assert networks.mailguard_open_networks(narrow + wide) == wide


def test_open_networks_judge_ipv4_mapped_networks_as_ipv4():
    # policyd-spf's default skip list holds ::ffff:127.0.0.0/104, i.e. 127.0.0.0/8.
    mapped = ["::ffff:127.0.0.0/104", "::ffff:0:0/96", "::ffff:10.0.0.0/100", "::/80"]
    assert networks.mailguard_open_networks(mapped) == ["::ffff:0:0/96", "::ffff:10.0.0.0/100", "::/80"]


def test_own_networks_are_private_or_no_wider_than_an_end_site():
    # Postfix's mynetworks rule: public space up to a /24 (IPv4) or /48 (IPv6, RFC 6177), wider
    # only inside private, loopback or unique local space.
    narrow = ["192.0.2.0/24", "2001:db8:1::/48", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
              "127.0.0.0/8", "::1", "fd12:3456::/32", "::ffff:10.0.0.0/104"]
    wide = ["192.0.2.0/23", "1.0.0.0/8", "2001:db8::/47", "172.16.0.0/11", "fc00::/6", "0.0.0.0/0"]
    assert networks.mailguard_open_networks(narrow + wide, own=True) == wide
    assert networks.mailguard_open_networks(narrow + wide) == ["fc00::/6", "0.0.0.0/0"]


def test_open_networks_refuse_what_they_cannot_read():
    assert networks.mailguard_open_networks(["localhost", "", "1:2:3"]) == ["localhost", "", "1:2:3"]


def test_wildcard_addresses_in_any_spelling():
    values = ["127.0.0.1", "0.0.0.0", "::", "0:0::0", "*", "172.30.53.30", "::1"]
    assert networks.mailguard_wildcard_addresses(values) == ["0.0.0.0", "::", "0:0::0", "*"]


def test_wide_hostnames_are_judged_by_the_whitelist_guard():
    good = ["mail.example.org", "*.mail.example.org", r"/.*outbound\.protection\.outlook\.com$/"]
    wide = networks.mailguard_wide_hostnames([*good, "/.*/", "*.com", "co.uk", "/(/"])
    assert list(wide) == ["/.*/", "*.com", "co.uk", "/(/"]
    assert "matches unrelated host names" in wide["/.*/"]
    assert "top-level domain" in wide["*.com"]
    assert "public suffix" in wide["co.uk"]
    assert "does not compile" in wide["/(/"]


def test_static_entries_split_between_sqlgrey_files():
    entries = ["192.0.2.0/24", "2001:db8::1", "192.0.2.9/24", "Mail.Example.ORG.",
               r"/.*outbound\.protection\.outlook\.com$/", "300.1.2.3"]
    split = networks.mailguard_split_static_entries(entries)
    # Host bits are left to the resolver, which fixes and reports them; 300.1.2.3 is no address,
    # but looks like one: the resolver rejects it by name rather than sqlgrey taking it as a name.
    assert split["networks"] == ["192.0.2.0/24", "2001:db8::1", "192.0.2.9/24", "300.1.2.3"]
    assert split["names"] == ["mail.example.org", "*.mail.example.org",
                              r"/.*outbound\.protection\.outlook\.com$/"]


def test_the_sqlgrey_split_reads_each_entry_as_the_module_does():
    # One rule (spfwalk.outputs.static_entry_kind): "/oops" (a regex missing its closing slash)
    # went to sqlgrey's names file as a name; the module reads it as a network and refuses it.
    entries = ["/oops", "/re/", "host.example", "192.0.2.1", "2001:db8::/32", "fe80::1%eth0", "1.2.3"]
    split = networks.mailguard_split_static_entries(entries)
    assert split["networks"] == ["/oops", "192.0.2.1", "2001:db8::/32", "fe80::1%eth0", "1.2.3"]
    assert split["names"] == ["/re/", "host.example", "*.host.example"]
    kinds = {entry: static_entry_kind(entry) for entry in entries}
    assert [entry for entry, kind in kinds.items() if kind == "network"] == split["networks"]


def test_whitelist_outputs_one_per_format_with_sqlgrey_and_cidr_networks_only():
    # A Postfix cidr table cannot hold a name (the module refuses one by name): the names go to
    # postgrey's list, which a Postfix host installs beside the table.
    static = ["192.0.2.0/24", "mail.example.org"]
    outputs = networks.mailguard_whitelist_outputs(
        ["exim", "sqlgrey", "cidr", "postgrey-names"], static, "/srv/lists/",
        {"exim": "whitelist-hosts", "sqlgrey": "clients_ip_whitelist.local", "cidr": "provider_clients.cidr",
         "postgrey-names": "whitelist_clients.names.local"},
        {"exim": "# old\n192.0.2.0/24\n"})
    assert outputs == [
        {"format": "exim", "dest": "/srv/lists/whitelist-hosts", "previous_content": "# old\n192.0.2.0/24\n"},
        {"format": "sqlgrey", "static_entries": ["192.0.2.0/24"], "dest": "/srv/lists/clients_ip_whitelist.local"},
        {"format": "cidr", "static_entries": ["192.0.2.0/24"], "dest": "/srv/lists/provider_clients.cidr"},
        {"format": "postgrey-names", "dest": "/srv/lists/whitelist_clients.names.local"},
    ]
    assert networks.mailguard_whitelist_outputs(["postgrey"], static) == [{"format": "postgrey"}]


def test_filters_are_registered_under_their_names():
    assert set(networks.FilterModule().filters()) == {
        "mailguard_invalid_networks", "mailguard_open_networks", "mailguard_split_static_entries",
        "mailguard_whitelist_outputs", "mailguard_wide_hostnames", "mailguard_wildcard_addresses",
        "mailguard_guard_policy_error"}


@pytest.mark.parametrize(
    ("min4", "min6", "allowed", "error"),
    [
        (12, 28, [], ""),
        ("16", "32", ["172.30.53.0/24"], ""),  # an -e extra var is a string of digits
        (12, 28, ["0.0.0.0/0"], "wider than the floor /12"),
        (12, 28, ["172.30.53.1/24"], "not a network without host bits"),
        (33, 28, [], "min_prefix4 must be an integer from 0 to 32"),
        (True, 28, [], "min_prefix4 must be an integer"),
        ("twelve", 28, [], "min_prefix4 must be an integer"),
        (12, 28, "172.30.53.0/24", "must be a list of networks"),
    ],
)
def test_guard_policy_error_is_the_guards_own_verdict(min4, min6, allowed, error):
    found = networks.mailguard_guard_policy_error(min4, min6, allowed)
    assert (error in found) if error else found == "", found
