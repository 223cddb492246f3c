"""The roles' preflight refuses values that open the host to strangers, naming the variable and the value.

Each role's tasks/preflight.yml runs through tests/ansible/preflight.yml on the controller
(nothing is installed or written); main.yml imports it before its first task that changes a host.
"""

from __future__ import annotations

import pytest
import yaml

from tests.support.playbook import REPO, failed_messages, run_playbook

# Values a role needs that have no default, and that pass every check.
# TLS is on by default: the roles' preflight wants the PEM texts (checked for their shape here).
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
REQUIRED = {
    "sqlgrey": {"sqlgrey_db_host": "172.30.53.30", "sqlgrey_db_password": "lab-only-greylist-pw",
                "sqlgrey_db_ca_certificate": CERTIFICATE},
    "greylist_postgresql": {
        "greylist_postgresql_password": "lab-only-greylist-pw",
        "greylist_postgresql_tls_certificate": CERTIFICATE,
        "greylist_postgresql_tls_private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
        "greylist_postgresql_listen_addresses": ["127.0.0.1", "172.30.53.30"],
        "greylist_postgresql_client_networks": ["172.30.53.25/32", "172.30.53.27/32"],
    },
}


def run_preflight(role: str, **overrides) -> tuple[int, list[str], str]:
    """(returncode, messages of the failed checks, all output) of one role's preflight."""
    run = run_playbook("tests/ansible/preflight.yml", {"preflight_role": role, **REQUIRED.get(role, {}), **overrides})
    return run.returncode, failed_messages(run.output), run.text


def assert_refused(role: str, variable: str, value, shown: str) -> None:
    rc, messages, _ = run_preflight(role, **{variable: value})
    assert rc != 0, f"{variable}={value!r} passed the {role} preflight"
    assert any(variable in message and shown in message for message in messages), messages


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("exim4_relay_nets", ["192.0.2.0/24", "0.0.0.0/0"], '"0.0.0.0/0"'),
        ("exim4_relay_nets", ["::/0"], '"::/0"'),
        # Not an address at all (the old pattern took any run of colons), and host bits.
        ("exim4_relay_nets", ["::::"], '"::::"'),
        ("exim4_relay_nets", ["192.0.2.1/24"], '"192.0.2.1/24"'),
        # Wider than Postfix's mynetworks allows, though not /0.
        ("exim4_relay_nets", ["1.0.0.0/7"], '"1.0.0.0/7"'),
        ("exim4_relay_nets", ["2000::/15"], '"2000::/15"'),
        # Public space wider than an end site's: what Postfix's mynetworks refuses too.
        ("exim4_relay_nets", ["1.0.0.0/8"], '"1.0.0.0/8"'),
        ("exim4_relay_nets", ["2001:db8::/32"], '"2001:db8::/32"'),
        ("exim4_rate_limit_exempt_hosts", ["0.0.0.0/0"], '"0.0.0.0/0"'),
        ("exim4_rate_limit_exempt_hosts", ["::/0"], '"::/0"'),
    ],
)
def test_exim_refuses_an_open_relay_and_unlimited_strangers(variable, value, shown):
    assert_refused("exim4", variable, value, shown)


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("policyd_spf_whitelist", ["0.0.0.0/0"], '"0.0.0.0/0"'),
        ("policyd_spf_whitelist", ["1.0.0.0/7"], '"1.0.0.0/7"'),
        ("policyd_spf_skip_addresses", ["127.0.0.0/8", "::/0"], '"::/0"'),
        ("policyd_spf_skip_addresses", ["::ffff:0:0/96"], '"::ffff:0:0/96"'),
    ],
)
def test_policyd_spf_refuses_exempting_strangers(variable, value, shown):
    assert_refused("policyd_spf", variable, value, shown)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (["mail.example.org", "/.*/"], '"/.*/"'),
        (["*.com"], '"*.com"'),
        (["*.co.uk"], '"*.co.uk"'),
        (["/^mail/"], '"/^mail/"'),
    ],
)
def test_sqlgrey_refuses_host_names_that_match_strangers(value, shown):
    assert_refused("sqlgrey", "sqlgrey_whitelist_hostnames", value, shown)


@pytest.mark.parametrize(
    ("role", "variable"),
    [("sqlgrey", "sqlgrey_db_password"), ("greylist_postgresql", "greylist_postgresql_password")],
)
def test_short_database_passwords_are_refused_without_showing_them(role, variable):
    password = "Short-pw-11"
    rc, messages, everything = run_preflight(role, **{variable: password})
    assert rc != 0
    assert any(variable in message and "11 characters" in message for message in messages), messages
    assert password not in everything


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("greylist_postgresql_client_networks", ["172.30.53.25/32", "0.0.0.0/0"], '"0.0.0.0/0"'),
        ("greylist_postgresql_client_networks", ["::/0"], '"::/0"'),
        ("greylist_postgresql_client_networks", ["64.0.0.0/2"], '"64.0.0.0/2"'),
        ("greylist_postgresql_client_networks", ["198.51.100.0/23"], '"198.51.100.0/23"'),
        ("greylist_postgresql_listen_addresses", ["127.0.0.1", "0.0.0.0"], '"0.0.0.0"'),
        ("greylist_postgresql_listen_addresses", ["::"], '"::"'),
        ("greylist_postgresql_listen_addresses", ["*"], '"*"'),
    ],
)
def test_the_greylist_database_refuses_exposure_to_strangers(variable, value, shown):
    assert_refused("greylist_postgresql", variable, value, shown)


@pytest.mark.parametrize(
    ("role", "good"),
    [
        ("exim4", {"exim4_relay_nets": ["10.0.0.0/8", "192.0.2.0/24", "2001:db8:1::/48", "fd12:3456::/32"],
                   "exim4_rate_limit_exempt_hosts": ["172.30.53.110/32", "1.0.0.0/8", "2001::/16"]}),
        ("policyd_spf", {"policyd_spf_whitelist": ["192.0.2.0/24", "2001:db8::/32"]}),
        ("sqlgrey", {"sqlgrey_whitelist_hostnames": [
            "mail.example.org", "*.mail.example.org", r"/.*outbound\.protection\.outlook\.com$/"]}),
        ("greylist_postgresql", {"greylist_postgresql_client_networks": ["172.30.53.0/24", "192.0.2.0/24"]}),
    ],
)
def test_the_networks_and_names_a_site_needs_pass(role, good):
    # The defaults too (policyd-spf's skip list holds ::ffff:127.0.0.0/104).
    rc, messages, _ = run_preflight(role, **good)
    assert rc == 0, messages


@pytest.mark.parametrize(
    "role", ["exim4", "policyd_spf", "sqlgrey", "greylist_postgresql", "postfix", "postgrey", "greylistd", "mailguard"])
def test_the_preflight_comes_before_every_other_task(role):
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text())
    assert tasks[0] == {
        "name": "Check the variables before anything on the host changes",
        "ansible.builtin.import_tasks": "preflight.yml",
    }


def test_check_mode_diff_never_shows_the_sqlgrey_database_password():
    # sqlgrey.conf holds db_pass in clear: --check --diff would print it.
    tasks = yaml.safe_load((REPO / "roles/sqlgrey/tasks/main.yml").read_text())
    templates = [task for task in tasks
                 if task.get("ansible.builtin.template", {}).get("src") == "etc/sqlgrey/sqlgrey.conf.j2"]
    assert len(templates) == 1
    assert templates[0]["diff"] is False


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (["(^|[.-])dsl[0-9]*[.-]", "mail"], "'mail' matches ordinary mail server names"),
        (["dyn/ip"], "'dyn/ip' holds a \"/\""),
        (["x*"], "'x*' matches the empty string"),
    ],
)
def test_mailguard_refuses_name_patterns_that_would_greylist_everyone_or_break_a_table(value, shown):
    rc, messages, _ = run_preflight("mailguard", mailguard_greylist_dynamic_name_patterns=value)
    assert rc != 0, f"{value!r} passed the mailguard preflight"
    assert any("mailguard_greylist_dynamic_name_patterns" in m and shown in m for m in messages), messages


def test_mailguard_refuses_selective_greylisting_without_any_signal():
    rc, messages, _ = run_preflight("mailguard", mailguard_greylist_clients="selective",
                                    mailguard_greylist_signal_unverified_name=False,
                                    mailguard_greylist_dynamic_name_patterns=[])
    assert rc != 0
    assert any("nobody would ever be greylisted" in m for m in messages), messages


def test_mailguard_takes_selective_greylisting_with_one_signal():
    rc, messages, _ = run_preflight("mailguard", mailguard_greylist_clients="selective",
                                    mailguard_greylist_dynamic_name_patterns=[])
    assert rc == 0, messages
