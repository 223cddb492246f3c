"""site.yml checks every role's settings on every host before anything is resolved or any host changes.

The example inventory (two Postfix MX, one Exim MX) plus a database host, every host pointed at a
closed port on loopback: a check that lets a bad value through shows as the next play starting
(the providers' resolve on the controller, then connections that fail), never as a changed host.
The resolve, if it starts, asks a closed port on loopback, never a real resolver.
"""

from __future__ import annotations

import socket

import pytest

from tests.support.playbook import failed_messages, run_playbook

PREFLIGHT_PLAY = "Check every host's settings before any host changes"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"  # the shape preflight checks
HOSTS = ("mx1.example.org", "mx2.example.org", "mx3.example.org", "db1.example.org")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    directory = tmp_path_factory.mktemp("site")
    database = "all:\n  children:\n    greylist_db:\n      hosts:\n        db1.example.org:\n"
    (directory / "database.yml").write_text(database)
    port = closed_port()
    base = {
        "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_connection": "ssh",
        "spf_whitelist_nameservers": ["127.0.0.1"], "spf_whitelist_dns_port": port,
        "spf_whitelist_state_dir": str(directory / "state"),
        # What the database host needs and the example does not set.
        "greylist_postgresql_password": "example-greylist-pw",
        "greylist_postgresql_tls_certificate": CERTIFICATE,
        "greylist_postgresql_tls_private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
        "greylist_postgresql_listen_addresses": ["127.0.0.1", "192.0.2.30"],
        "greylist_postgresql_client_networks": ["192.0.2.25/32"],
    }

    def run(inventory: str = "", **overrides):
        """(run, names of the plays that started, failure messages of the first play on any host)."""
        extra = directory / "extra.yml"
        extra.write_text(inventory or "all: {}\n")
        run = run_playbook("site.yml", {**base, **overrides}, target=(
            "-i", "inventories/example", "-i", str(directory / "database.yml"), "-i", str(extra)))
        plays = [play["play"]["name"] for play in run.output["plays"]]
        first = {"plays": run.output["plays"][:1]}
        messages = [message for host in HOSTS for message in failed_messages(first, host)]
        return run, plays, messages

    return run


def test_valid_settings_pass_the_checks_and_the_run_goes_on(site):
    """The baseline: without a bad value the next plays start (and fail only at the closed port)."""
    run, plays, messages = site()
    assert plays[0] == PREFLIGHT_PLAY
    assert messages == []
    assert len(plays) > 1, run.text[-2000:]


# One bad value per role, each found by a check of a role that runs late on its host: before
# site.yml's first play, each got through until that role's turn, after the hosts had changed.
BAD_VALUES = [
    ("postfix_mynetworks", ["0.0.0.0/0"], "0.0.0.0/0"),
    ("postfix_relay_restrictions", ["permit", "reject_unauth_destination"], "permit"),
    ("exim4_relay_nets", ["0.0.0.0/0"], "0.0.0.0/0"),
    ("policyd_spf_whitelist", ["0.0.0.0/0"], "0.0.0.0/0"),
    ("postgrey_listen", "0.0.0.0:10023", "0.0.0.0:10023"),
    ("greylistd_delay", 0, "greylistd_delay (0)"),
    ("local_resolver_forwarders", ["not-an-address"], "not-an-address"),
    ("mailguard_whitelist_allowed_networks", ["0.0.0.0/0"], "0.0.0.0/0"),
    ("greylist_postgresql_client_networks", ["0.0.0.0/0"], "0.0.0.0/0"),
    ("spf_whitelist_installs", [{"format": "postgrey", "dest": "/etc/postgrey/whitelist_clients.local",
                                 "validate": "/bin/true"}], "validate"),
]


@pytest.mark.parametrize(("variable", "value", "shown"), BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_stops_the_run_before_any_host_changes(site, variable, value, shown):
    run, plays, messages = site(**{variable: value})
    assert run.returncode != 0
    assert plays == [PREFLIGHT_PLAY], f"{variable}={value!r} got past the first play: {plays}"
    assert any(variable in message and shown in message for message in messages), messages


def test_a_bad_value_on_one_host_stops_every_host(site):
    """any_errors_fatal: mx2's open mynetworks stops mx1, the Exim host and the database host too."""
    run, plays, messages = site(inventory="all:\n  children:\n    mail_hosts:\n      hosts:\n        mx2.example.org:\n"
                                          "          postfix_mynetworks: [127.0.0.0/8, 0.0.0.0/0]\n")
    assert run.returncode != 0
    assert plays == [PREFLIGHT_PLAY]
    assert any("postfix_mynetworks" in message and "0.0.0.0/0" in message for message in messages), messages


def test_the_shared_greylist_settings_are_checked_with_the_rest(site):
    """With sqlgrey as the backend, its preflight runs in the first play too."""
    run, plays, messages = site(mailguard_greylist_backend="sqlgrey", sqlgrey_db_host="192.0.2.30",
                                sqlgrey_db_ca_certificate=CERTIFICATE,
                                sqlgrey_db_password="short")
    assert run.returncode != 0
    assert plays == [PREFLIGHT_PLAY]
    assert any("sqlgrey_db_password" in message for message in messages), messages
