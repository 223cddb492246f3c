"""The postfix role's preflight refuses inventories that open the relay or invite backscatter.

Each case runs roles/postfix/tasks/preflight.yml through ansible-playbook on the controller (it
only reads variables) with one bad value, and expects a failure that names the variable and the value.
"""

from __future__ import annotations

import json

import pytest

from tests.support.playbook import failed_messages, run_playbook

# What the lab inventory sets for mx1 (the role's default myhostname is the inventory name).
BASE = {"postfix_myhostname": "mx1.lab.test", "postfix_mydomain": "lab.test"}
RELAY_TAIL = ["reject_unauth_destination"]


def preflight(**overrides) -> tuple[int, str]:
    """(returncode, the failure messages) of the preflight with BASE and overrides as extra vars."""
    run = run_playbook("tests/ansible/postfix_preflight.yml", {**BASE, **overrides})
    return run.returncode, " ".join(failed_messages(run.output))


def test_the_defaults_and_safe_variants_pass():
    rc, messages = preflight(
        # Safe before the guard: they never say OK to a stranger for a foreign destination.
        postfix_relay_restrictions=["permit_mynetworks", "permit_sasl_authenticated", "permit_auth_destination",
                                    "reject_non_fqdn_recipient", "defer_if_reject", *RELAY_TAIL],
        # Private space may be wide; public space up to a /24 or /48; references that resolve to them.
        postfix_mynetworks=["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "fd12:3456::/32", "192.0.2.0/24",
                            "2001:db8:1::/48", "$office"],
        postfix_main_cf_extra={"office": "198.51.100.0/24, $lan", "lan": ["192.168.0.0/16"],
                               "relay_domains": "backup.example", "relay_recipient_maps": "hash:/etc/postfix/rr"},
    )
    assert rc == 0, messages


@pytest.mark.parametrize(
    "entry",
    [
        "permit",
        "permit_mx_backup",
        "check_client_access hash:/etc/postfix/client_access",
        "check_policy_service inet:127.0.0.1:10040",
        "permit_dnswl_client list.dnswl.org",
        "permit_tls_all_clientcerts",
        "warn_if_reject check_sender_access hash:/etc/postfix/senders",
    ],
)
def test_a_restriction_that_can_permit_before_the_relay_guard_is_refused(entry):
    rc, messages = preflight(postfix_relay_restrictions=["permit_mynetworks", entry, *RELAY_TAIL])
    assert rc != 0
    assert "postfix_relay_restrictions" in messages and json.dumps(entry) in messages, messages
    assert "reject_unauth_destination" in messages, messages


def test_relay_restrictions_without_the_guard_are_refused():
    rc, messages = preflight(postfix_relay_restrictions=["permit_mynetworks"])
    assert rc != 0
    assert "postfix_relay_restrictions" in messages and "reject_unauth_destination" in messages, messages


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        pytest.param({"trusted": "0.0.0.0/0"}, "0.0.0.0/0", id="whole-internet"),
        pytest.param({"trusted": "$inner", "inner": ["10.0.0.0/8", "1.0.0.0/8"]}, "1.0.0.0/8", id="two-levels"),
        pytest.param({"trusted": "192.168.0.0/16 ::/0"}, "::/0", id="ipv6-in-a-string"),
    ],
)
def test_a_reference_in_mynetworks_is_resolved_and_checked(extra, named):
    rc, messages = preflight(postfix_mynetworks=["127.0.0.0/8", "$trusted"], postfix_main_cf_extra=extra)
    assert rc != 0
    assert "postfix_mynetworks" in messages and "postfix_main_cf_extra.trusted" in messages, messages
    assert json.dumps(named) in messages, messages


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="unknown"),
        pytest.param({"trusted": "$trusted"}, id="circular"),
        pytest.param({"trusted": "${other}", "other": "$trusted"}, id="circular-braces"),
    ],
)
def test_a_reference_that_resolves_to_no_addresses_is_refused(extra):
    rc, messages = preflight(postfix_mynetworks=["127.0.0.0/8", "$trusted"], postfix_main_cf_extra=extra)
    assert rc != 0
    assert "postfix_mynetworks" in messages and "$" in messages and "resolve" in messages, messages


@pytest.mark.parametrize("network", ["1.0.0.0/8", "8.8.0.0/16", "198.51.100.0/23", "2001:db8::/32", "172.0.0.0/8"])
def test_public_space_wider_than_a_site_in_mynetworks_is_refused(network):
    rc, messages = preflight(postfix_mynetworks=["127.0.0.0/8", network])
    assert rc != 0
    assert "postfix_mynetworks" in messages and json.dumps(network) in messages and "public" in messages, messages


# Judged by the same Python filters as Exim's relay nets (no Jinja arithmetic): a host bit, an
# IPv4-mapped IPv6 network that maps all of IPv4, a malformed IPv6 address, a bracketed one.
@pytest.mark.parametrize("network", ["10.0.0.1/8", "::ffff:0:0/96", "2001:db8:::/48", "::::", "[::1]/128"])
def test_a_network_postfix_would_misread_or_widen_in_mynetworks_is_refused(network):
    rc, messages = preflight(postfix_mynetworks=["127.0.0.0/8", network])
    assert rc != 0
    assert "postfix_mynetworks" in messages and json.dumps(network) in messages, messages


def test_relay_domains_without_relay_recipient_maps_is_refused():
    rc, messages = preflight(postfix_main_cf_extra={"relay_domains": "backup.example"})
    assert rc != 0
    assert "postfix_main_cf_extra.relay_domains" in messages and "backup.example" in messages, messages
    assert "relay_recipient_maps" in messages, messages


def test_root_alias_to_an_address_or_a_local_user_passes():
    for root_alias in ("alice", "admin@example.org", "root@other.example"):
        rc, messages = preflight(postfix_root_alias=root_alias, postfix_system_recipients_extra=["oldservice"],
                                 postfix_rate_limit_exception_cidr_tables=["/etc/postfix/providers.cidr"])
        assert rc == 0, f"{root_alias}: {messages}"


@pytest.mark.parametrize(
    "root_alias",
    [
        pytest.param("root", id="root-itself"),
        pytest.param("postmaster", id="an-alias-of-root"),
        pytest.param("mailer-daemon@mx1.lab.test", id="an-alias-in-a-local-domain"),
        pytest.param("two words", id="no-user-name"),
        pytest.param("admin@localhost", id="domain-not-fqdn"),
    ],
)
def test_root_alias_that_loops_or_is_no_address_is_refused(root_alias):
    rc, messages = preflight(postfix_root_alias=root_alias)
    assert rc != 0
    assert "postfix_root_alias" in messages and json.dumps(root_alias) in messages, messages


def test_an_extra_alias_for_root_is_refused():
    rc, messages = preflight(postfix_aliases_extra={"root": "alice"})
    assert rc != 0
    assert "postfix_aliases_extra" in messages and "postfix_root_alias" in messages, messages


@pytest.mark.parametrize("local_part", ["postmaster", "www-data@lab.test", "user+tag"])
def test_system_recipient_extra_that_is_no_local_part_or_must_stay_reachable_is_refused(local_part):
    rc, messages = preflight(postfix_system_recipients_extra=[local_part])
    assert rc != 0
    assert "postfix_system_recipients_extra" in messages and json.dumps(local_part) in messages, messages


def test_first_user_uid_zero_is_refused():
    rc, messages = preflight(postfix_first_user_uid=0)
    assert rc != 0
    assert "postfix_first_user_uid" in messages, messages


@pytest.mark.parametrize("table", ["providers.cidr", "cidr:/etc/postfix/providers.cidr"])
def test_rate_limit_exception_table_that_is_no_absolute_path_is_refused(table):
    rc, messages = preflight(postfix_rate_limit_exception_cidr_tables=[table])
    assert rc != 0
    assert "postfix_rate_limit_exception_cidr_tables" in messages and json.dumps(table) in messages, messages



@pytest.mark.parametrize("table", ["providers.cidr", "cidr:/etc/postfix/providers.cidr"])
def test_greylist_skip_table_that_is_no_absolute_path_is_refused(table):
    rc, messages = preflight(postfix_greylist_skip_cidr_tables=[table])
    assert rc != 0
    assert "postfix_greylist_skip_cidr_tables" in messages and json.dumps(table) in messages, messages


# What a postgrey host installs by default (roles/mailguard, mailguard_whitelist_files.postgrey):
# postgrey's list without the networks, and the cidr table that holds them.
PROVIDER_TABLE = "/etc/postfix/mailguard_provider_clients.cidr"
NAMES_ONLY_INSTALLS = [
    {"format": "postgrey-names", "dest": "/etc/postgrey/whitelist_clients.local",
     "validate": "/usr/local/sbin/postgrey-whitelist-check %s", "notify": "postgrey whitelist changed"},
    {"format": "cidr", "dest": PROVIDER_TABLE,
     "validate": "/usr/local/sbin/postfix-check-table cidr %s", "notify": "postfix config changed"},
]


def test_postgrey_names_with_the_table_asked_before_the_greylist_passes():
    rc, messages = preflight(spf_whitelist_installs=NAMES_ONLY_INSTALLS)
    assert rc == 0, messages


@pytest.mark.parametrize(
    "overrides",
    [
        # The table is installed but smtpd does not ask it before the greylist.
        {"postfix_greylist_skip_cidr_tables": []},
        {"postfix_greylist_skip_cidr_tables": ["/etc/postfix/other.cidr"]},
        # The switch turned off for Postfix, while the installs still leave the networks out.
        {"mailguard_provider_clients_skip_greylist": False},
    ],
    ids=["no-table", "another-table", "switch-off"],
)
def test_postgrey_names_without_the_table_before_the_greylist_is_refused(overrides):
    # The providers' pools would be greylisted: postgrey no longer knows their networks.
    rc, messages = preflight(spf_whitelist_installs=NAMES_ONLY_INSTALLS, **overrides)
    assert rc != 0
    assert "postgrey-names" in messages and PROVIDER_TABLE in messages, messages


def test_postgrey_names_without_any_cidr_table_is_refused():
    rc, messages = preflight(spf_whitelist_installs=NAMES_ONLY_INSTALLS[:1])
    assert rc != 0
    assert "postgrey-names" in messages and "postfix_greylist_skip_cidr_tables" in messages, messages


def test_postscreen_lists_with_filters_weights_and_allowlists_pass():
    rc, messages = preflight(postfix_postscreen_dnsbl_sites=[
        "zen.spamhaus.org=127.0.0.[2..11]*3", "bl.spamcop.net=127.0.0.2*2", "b.barracudacentral.org*2",
        "list.dnswl.org=127.0.[0..255].[2;3]*-2", "swl.spamhaus.org*-4", "ix.dnsbl.manitu.net",
    ])
    assert rc == 0, messages


@pytest.mark.parametrize(
    "site",
    [
        "zen.spamhaus.org=127.0.0.[2..11]*",          # a star without a weight
        "zen.spamhaus.org*3=127.0.0.2",               # weight before the filter
        "zen.spamhaus.org=127.0.0*3",                 # a filter of three octets
        "zen.spamhaus.org*1.5",                       # weights are integers
        "zen.spamhaus.org=127.0.0.2 bl.spamcop.net",  # two entries in one
        "-zen.spamhaus.org",
    ],
)
def test_a_malformed_postscreen_list_is_refused(site):
    rc, messages = preflight(postfix_postscreen_dnsbl_sites=["bl.spamcop.net=127.0.0.2*2", site])
    assert rc != 0
    assert "postfix_postscreen_dnsbl_sites" in messages and json.dumps(site) in messages, messages


@pytest.mark.parametrize(
    "overrides",
    [
        {"postfix_postscreen_dnsbl_threshold": 0},              # every client rejected
        {"postfix_postscreen_dnsbl_allowlist_threshold": 1},    # listed clients skip the tests
    ],
)
def test_a_postscreen_threshold_that_rejects_everyone_or_allowlists_the_listed_is_refused(overrides):
    rc, messages = preflight(**overrides)
    assert rc != 0
    assert next(iter(overrides)) in messages, messages


def test_postscreen_lists_are_not_checked_with_postscreen_off():
    rc, messages = preflight(postfix_postscreen=False, postfix_postscreen_dnsbl_sites=["not a list*x"])
    assert rc == 0, messages


def test_postscreen_access_table_that_is_no_absolute_path_is_refused():
    rc, messages = preflight(postfix_postscreen_access_cidr_tables=["mailguard_provider_clients.cidr"])
    assert rc != 0
    assert "postfix_postscreen_access_cidr_tables" in messages, messages
