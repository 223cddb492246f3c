"""site.yml's tags, one per control: an admin applies one control (--tags) or leaves one alone (--skip-tags).

Read from ``ansible-playbook --list-tasks`` with the lab inventory (every group: both stacks, the
greylist database), so the test sees the tasks Ansible itself selects for each tag, dependencies
and imported roles included. Nothing is contacted.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache

import pytest

from tests.support.playbook import ANSIBLE_PLAYBOOK, REPO

CONTROLS = ("relay", "rbl", "spf", "greylist", "ratelimit", "tls", "whitelist")
# Besides the controls: the host's resolver (DNSBLs need it), and the MTA's own configuration.
OTHER_TAGS = ("resolver", "mta", "always")
GREYLIST_ROLES = {"postgrey", "sqlgrey", "greylistd", "greylist_postgresql"}
MTA_ROLES = {"postfix", "exim4"}
TASK_LINE = re.compile(r"^ {6}(?:mailguard\.mail\.(?P<role>\w+) : )?(?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")


@cache
def listed(*options: str) -> tuple[tuple[str, str, frozenset[str]], ...]:
    """(role or '', task name, tags) of every task site.yml would run with these options."""
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "inventories/lab", "site.yml", "--list-tasks", *options],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = []
    for line in done.stdout.splitlines():
        match = TASK_LINE.match(line)
        if match:
            tags = frozenset(tag.strip() for tag in match["tags"].split(",") if tag.strip())
            tasks.append((match["role"] or "", match["name"], tags))
    assert tasks, f"no task listed:\n{done.stdout}"
    return tuple(tasks)


def roles_of(*options: str) -> set[str]:
    return {role for role, _name, tags in listed(*options) if "always" not in tags}


def test_every_task_answers_to_a_control_or_the_resolver_or_the_mta():
    # An untagged task would run under no --tags at all: a control applied alone would miss it.
    untagged = [(role, name) for role, name, tags in listed() if not tags & set(CONTROLS + OTHER_TAGS)]
    assert not untagged, f"tasks without a control tag: {untagged}"


@pytest.mark.parametrize("control", [c for c in CONTROLS if c != "whitelist"])
def test_each_control_applies_the_mta_configuration_that_carries_it(control):
    # main.cf and Exim's configuration hold every control: a control applied alone must render them.
    assert roles_of("--tags", control) >= MTA_ROLES, control


def test_greylist_applies_every_greylist_daemon_and_nothing_of_spf():
    roles = roles_of("--tags", "greylist")
    assert roles >= GREYLIST_ROLES
    assert "policyd_spf" not in roles and "spf_whitelist" not in roles and "local_resolver" not in roles


def test_spf_applies_policyd_spf_and_no_greylist_daemon():
    roles = roles_of("--tags", "spf")
    assert "policyd_spf" in roles
    assert not roles & GREYLIST_ROLES, roles & GREYLIST_ROLES


def test_rbl_applies_the_resolver_and_the_dnsbl_check():
    selected = listed("--tags", "rbl")
    assert "local_resolver" in {role for role, _name, _tags in selected}
    assert any("DNSBL lists its test point" in name for _role, name, _tags in selected), selected


@pytest.mark.parametrize("control", ["tls", "ratelimit", "relay"])
def test_an_mta_only_control_touches_no_daemon_of_another_control(control):
    roles = roles_of("--tags", control)
    assert not roles & (GREYLIST_ROLES | {"policyd_spf", "spf_whitelist", "local_resolver"}), roles


def test_skipping_greylist_leaves_every_greylist_daemon_alone():
    roles = {role for role, _name, tags in listed("--skip-tags", "greylist") if "always" not in tags}
    assert not roles & GREYLIST_ROLES, roles & GREYLIST_ROLES


def test_whitelist_is_only_the_providers_whitelist():
    roles = roles_of("--tags", "whitelist")
    assert roles <= {"spf_whitelist", "mailguard"}, roles
