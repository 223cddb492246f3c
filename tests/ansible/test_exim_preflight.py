"""The exim4 role's preflight refuses the issue 12 values before any host changes, naming the variable
and the value: a backup MX without its recipients (accept-then-bounce), a wildcard recipient, a bad
recipient-guessing limit, TLS file names Exim would expand, a protocol floor below TLS 1.2.

Each case runs roles/exim4/tasks/preflight.yml through tests/ansible/preflight.yml on the controller
(it only reads variables), with one value changed.
"""

from __future__ import annotations

import pytest

from tests.support.playbook import failed_messages, run_playbook

BACKUP_MX = {"exim4_relay_to_domains": ["backup.example"], "exim4_relay_to_recipients": ["info@backup.example"]}


def preflight(**overrides) -> tuple[int, str]:
    """(returncode, the failure messages joined) of the exim4 preflight with overrides as extra vars."""
    run = run_playbook("tests/ansible/preflight.yml", {"preflight_role": "exim4", **overrides})
    return run.returncode, " ".join(failed_messages(run.output))


def test_the_defaults_and_a_backup_mx_with_its_recipients_pass():
    rc, messages = preflight(
        **BACKUP_MX,
        exim4_bad_recipient_limit=0,
        exim4_tls_certificate="/etc/exim4/exim.crt",
        exim4_tls_privatekey="/etc/exim4/exim.key",
        exim4_tls_advertise_hosts=["!192.0.2.7", "192.0.2.0/24", "2001:db8::/32", "*"],
        exim4_tls_min_version="1.3",
    )
    assert rc == 0, messages


@pytest.mark.parametrize(
    ("overrides", "variable", "shown"),
    [
        # Debian's "bad recipients" count: a count, not a negative or a word.
        ({"exim4_bad_recipient_limit": -1}, "exim4_bad_recipient_limit", "-1"),
        # The system accounts' extras are local parts, and never one everyone must reach.
        ({"exim4_system_recipients_extra": ["www data"]}, "exim4_system_recipients_extra", '"www data"'),
        ({"exim4_system_recipients_extra": ["old@example.org"]}, "exim4_system_recipients_extra",
         '"old@example.org"'),
        ({"exim4_system_recipients_extra": ["postmaster"]}, "exim4_system_recipients_extra", '"postmaster"'),
        ({"exim4_first_user_uid": 0}, "exim4_first_user_uid", "(0)"),
        ({"exim4_message_rate_limit": -5}, "exim4_message_rate_limit", "exim4_message_rate_limit"),
        # A backup MX for a domain without its recipients would accept every address and bounce later.
        ({"exim4_relay_to_domains": ["backup.example"]}, "exim4_relay_to_domains", '"backup.example"'),
        # Items that accept more addresses than they name.
        ({**BACKUP_MX, "exim4_relay_to_recipients": ["*@backup.example"]}, "exim4_relay_to_recipients",
         '"*@backup.example"'),
        ({**BACKUP_MX, "exim4_relay_to_recipients": ["info@backup.example", "^.*@backup.example"]},
         "exim4_relay_to_recipients", '"^.*@backup.example"'),
        ({**BACKUP_MX, "exim4_relay_to_recipients": ["info@backup.example", "backup.example"]},
         "exim4_relay_to_recipients", '"backup.example"'),
        # A recipient of a domain this host is no backup for.
        ({**BACKUP_MX, "exim4_relay_to_recipients": ["info@backup.example", "bob@elsewhere.example"]},
         "exim4_relay_to_recipients", '"bob@elsewhere.example"'),
        # Exim expands these options: a $ or a relative name is not the file meant.
        ({"exim4_tls_certificate": "certs/mail.pem"}, "exim4_tls_certificate", '"certs/mail.pem"'),
        ({"exim4_tls_privatekey": "/etc/ssl/private/${primary_hostname}.key"}, "exim4_tls_privatekey",
         '"/etc/ssl/private/${primary_hostname}.key"'),
        ({"exim4_tls_advertise_hosts": ["*", "mail example"]}, "exim4_tls_advertise_hosts", '"mail example"'),
        # RFC 8996: TLS 1.0 and 1.1 are deprecated.
        ({"exim4_tls_min_version": "1.1"}, "exim4_tls_min_version", '"1.1"'),
        ({"exim4_tls_min_version": "1.0"}, "exim4_tls_min_version", '"1.0"'),
    ],
)  # fmt: skip
def test_bad_value_is_refused_naming_variable_and_value(overrides, variable, shown):
    rc, messages = preflight(**overrides)
    assert rc != 0, f"{overrides} passed the exim4 preflight"
    assert variable in messages and shown in messages, messages


def test_weighted_lists_with_value_lists_masks_and_allowlists_pass():
    rc, messages = preflight(exim4_dnsbl_weighted_sites=[
        "zen.spamhaus.org=127.0.0.2,127.0.0.3*3", "bl.spamcop.net", "b.barracudacentral.org*2",
        "list.dnswl.org&0.0.0.2*-2",
    ], exim4_greylist_skip_dnswl_sites=["dnswl.example=127.0.10.2,127.0.10.3"])
    assert rc == 0, messages


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"exim4_dnsbl_weighted_sites": ["zen.spamhaus.org=127.0.0.2*"]}, '"zen.spamhaus.org=127.0.0.2*"'),
        ({"exim4_dnsbl_weighted_sites": ["zen.spamhaus.org*x"]}, '"zen.spamhaus.org*x"'),
        ({"exim4_dnsbl_weighted_sites": ["zen.spamhaus.org=127.0.0.[2..11]*3"]}, "zen.spamhaus.org=127.0.0.[2..11]"),
        ({"exim4_greylist_skip_dnswl_sites": ["dnswl example"]}, '"dnswl example"'),
        ({"exim4_dnsbl_threshold": 0}, "exim4_dnsbl_threshold (0)"),
    ],
)
def test_a_malformed_weighted_list_or_threshold_is_refused(overrides, shown):
    rc, messages = preflight(**overrides)
    assert rc != 0, f"{overrides} passed"
    assert shown in messages, messages
