"""roles/mailguard installs the whitelist guard and its policy: run for real (local connection, paths in tmp).

The paths are the role's vars (__mailguard_guard_module, __mailguard_guard_policy), overridden
to a temporary tree; everything else is the role as a host runs it, check mode included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spfwalk.guards import GuardPolicy
from tests.support.playbook import REPO, failed_messages, run_playbook

PLAYBOOK = Path(__file__).with_name("mailguard_guard.yml")
GUARDS = REPO / "plugins/module_utils/spfwalk/guards.py"
POSTGREY_CHECK = REPO / "roles/postgrey/files/usr/local/sbin/postgrey-whitelist-check"

# The role's tasks make root the owner, as on a host.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role chowns to root")


@pytest.fixture
def host(tmp_path):
    """run(*args, **variables) -> (rc, stats of localhost, output); module and policy paths on the fake host."""
    root = tmp_path / "host"
    paths = {
        "module": root / "usr/local/lib/mailguard/guards.py",
        "policy": root / "etc/mailguard/whitelist-guard.json",
    }

    def run(*args: str, **variables):
        extra = {
            "__mailguard_guard_module": str(paths["module"]),
            "__mailguard_guard_policy": str(paths["policy"]),
            "ansible_python_interpreter": sys.executable,
            **variables,
        }
        run = run_playbook(PLAYBOOK, extra, *args)
        return run.returncode, run.output["stats"]["localhost"], run.output

    run.paths = paths
    return run


def test_check_mode_on_a_fresh_host_reports_the_changes_and_writes_nothing(host):
    rc, stats, _ = host("--check")
    assert (rc, stats["failures"], stats["changed"]) == (0, 0, 3)
    assert not host.paths["module"].parent.exists()
    assert not host.paths["policy"].parent.exists()


def test_the_role_installs_the_controllers_guard_and_the_policy_idempotently(host):
    allowed = ["172.30.53.0/24", "2001:db8:53::/48"]
    rc, stats, _ = host(mailguard_whitelist_allowed_networks=allowed)
    assert (rc, stats["failures"], stats["changed"]) == (0, 0, 3)
    module, policy = host.paths["module"], host.paths["policy"]
    assert module.read_bytes() == GUARDS.read_bytes()
    assert oct(module.stat().st_mode & 0o7777) == "0o644"
    assert oct(module.parent.stat().st_mode & 0o7777) == "0o755"
    assert oct(policy.stat().st_mode & 0o7777) == "0o644"
    expected = GuardPolicy.from_options(allowed_networks=allowed)
    assert GuardPolicy.load(policy) == expected
    assert policy.read_text(encoding="utf-8") == expected.to_json()

    for args in ((), ("--check",)):
        rc, stats, _ = host(*args, mailguard_whitelist_allowed_networks=allowed)
        assert (rc, stats["failures"], stats["changed"]) == (0, 0, 0), args


def test_the_installed_guard_is_what_the_checkers_apply(host, tmp_path):
    rc, _, _ = host("-e", "mailguard_whitelist_min_prefix4=16")  # a string from -e, as an admin types it
    assert rc == 0
    assert GuardPolicy.load(host.paths["policy"]) == GuardPolicy(min_prefix4=16)
    whitelist = tmp_path / "whitelist_clients.local"
    whitelist.write_text("8.8.4.0/24\n40.92.0.0/15\n", encoding="utf-8")
    env = dict(os.environ, MAILGUARD_GUARDS=str(host.paths["module"]), MAILGUARD_GUARD_CONFIG=str(host.paths["policy"]))
    result = subprocess.run(
        [sys.executable, str(POSTGREY_CHECK), str(whitelist)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert result.stderr == f"{whitelist}:2: '40.92.0.0/15': wider than the floor /16 (IPv4)\n"


def test_a_bad_allowed_network_fails_the_run_with_the_guards_reason_and_keeps_the_old_policy(host):
    assert host()[0] == 0
    before = host.paths["policy"].read_bytes()
    rc, stats, output = host(mailguard_whitelist_allowed_networks=["172.30.53.1/24"])
    assert (rc, stats["failures"]) == (2, 1)
    failed = [
        result
        for play in output["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    assert "allowed network '172.30.53.1/24' is not a network without host bits" in failed[0]["stderr"]
    assert host.paths["policy"].read_bytes() == before


def test_as_a_dependency_the_role_changes_nothing_and_refuses_a_bad_policy_by_name(host):
    """main (what the dependency runs) checks the policy on the controller and installs nothing."""
    rc, stats, _ = host(mailguard_entry_point="main")
    assert (rc, stats["failures"], stats["changed"]) == (0, 0, 0)
    assert not host.paths["module"].parent.exists()
    rc, stats, output = host(mailguard_entry_point="main", mailguard_whitelist_allowed_networks=["0.0.0.0/0"])
    assert (rc, stats["failures"], stats["changed"]) == (2, 1, 0)
    assert any("mailguard_whitelist_allowed_networks" in message and "wider than the floor /12" in message
               for message in failed_messages(output))
    assert not host.paths["policy"].parent.exists()
