"""mailguard_policy_service: where Postfix asks a greylist daemon, from where the daemon listens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/mailguard_policy.py"
_spec = importlib.util.spec_from_file_location("mailguard_policy", PLUGIN)
policy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policy)


@pytest.mark.parametrize(
    ("listen", "service"),
    [
        ("127.0.0.1:10023", "inet:127.0.0.1:10023"),
        ("localhost:2501", "inet:localhost:2501"),
        ("[::1]:10023", "inet:[::1]:10023"),
        ("::1:10023", "inet:[::1]:10023"),
        # The socket a chrooted smtpd reaches, named relative to the queue directory.
        ("/var/spool/postfix/postgrey/socket", "unix:postgrey/socket"),
        ("/var/spool/postfix/private/sqlgrey", "unix:private/sqlgrey"),
    ],
)
def test_listen_address_becomes_postfix_policy_service(listen, service):
    assert policy.mailguard_policy_service(listen) == service


@pytest.mark.parametrize(
    ("listen", "named"),
    [
        # Debian's own postgrey socket default: outside the chroot, smtpd would answer 451 to all.
        ("/var/run/postgrey.sock", "outside /var/spool/postfix/"),
        ("/var/spool/postfix/../../run/postgrey", "outside /var/spool/postfix/"),
        ("/var/spool/postfix/", "outside /var/spool/postfix/"),
        ("127.0.0.1", "neither HOST:PORT"),
        ("127.0.0.1:0", "neither HOST:PORT"),
        ("127.0.0.1:70000", "neither HOST:PORT"),
        (":10023", "neither HOST:PORT"),
        ("", "HOST:PORT or a socket path"),
    ],
)
def test_a_place_postfix_cannot_reach_is_refused_by_name(listen, named):
    with pytest.raises(AnsibleFilterError, match=named):
        policy.mailguard_policy_service(listen)
