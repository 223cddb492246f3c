"""The spf_whitelist role on a play of several hosts (local connections), against the lab DNS server:
one walk for every format the hosts need, each host's own file, check mode on a fresh controller."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.guard import DOC_NETWORKS
from tests.support.playbook import run_playbook

ZONE = {
    "records": {
        "gmail.test": {"TXT": ["v=spf1 include:_nb.gmail.test ~all"]},
        "_nb.gmail.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"]},
    },
}
# The hosts' daemon checkers live on the mail hosts; here the candidate only has to be a non-empty file.
CHECK = "/usr/bin/test -s %s"
GROWN = {"_nb.gmail.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/25 ip6:2001:db8::/32 ~all"]}}


@pytest.fixture
def cluster(dns_server, tmp_path):
    """Two hosts: mx-a wants the postgrey list, mx-b the exim list (another MTA, another format)."""
    server = dns_server(ZONE)
    files = {"mx-a": tmp_path / "mx-a" / "whitelist_clients.local", "mx-b": tmp_path / "mx-b" / "whitelist-hosts"}
    for path in files.values():
        path.parent.mkdir()
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {
        "mx-a": {**local, "spf_whitelist_formats": ["postgrey"],
                 "spf_whitelist_installs": [{"format": "postgrey", "dest": str(files["mx-a"]), "validate": CHECK}]},
        "mx-b": {**local, "spf_whitelist_formats": ["exim"],
                 "spf_whitelist_installs": [{"format": "exim", "dest": str(files["mx-b"]), "validate": CHECK}]},
    }
    common = {
        "spf_whitelist_providers": ["gmail.test"],
        "spf_whitelist_nameservers": [server.address],
        "spf_whitelist_dns_port": server.port,
        "spf_whitelist_allowed_networks": DOC_NETWORKS,
    }
    inventory = tmp_path / "inventory" / "hosts.yml"
    inventory.parent.mkdir()
    state_home = tmp_path / "state-home"  # the controller user's XDG_STATE_HOME: a fresh controller

    def run(*args: str, host_vars=None):
        for host, extra in (host_vars or {}).items():
            hosts[host].update(extra)
        inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": common}}))
        done = run_playbook("tests/ansible/install_whitelists.yml", None, *args, target=("-i", str(inventory)),
                            env={"XDG_STATE_HOME": str(state_home)})
        return done.returncode, done.output

    run.server, run.files = server, files
    # Named after the inventory directory, in the state directory of the controller user.
    run.state = state_home / "mailguard" / "inventory.spf_whitelist.state.json"
    return run


def entries(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def tasks_named(output: dict, name_part: str) -> list[dict]:
    return [task for play in output["plays"] for task in play["tasks"] if name_part in task["task"]["name"]]


def test_every_host_gets_its_own_format_from_one_walk(cluster):
    rc, out = cluster()
    assert rc == 0, json.dumps(out)[-3000:]
    assert entries(cluster.files["mx-a"]) == ["192.0.2.0/24", "2001:db8::/32"]
    assert entries(cluster.files["mx-b"]) == ["192.0.2.0/24", "2001:db8::/32"]
    resolves = [task for task in tasks_named(out, "Resolve the providers' SPF netblocks")
                if not all(result.get("skipped") for result in task["hosts"].values())]
    assert len(resolves) == 1 and len(resolves[0]["hosts"]) == 1  # one walk, run once
    result = next(iter(resolves[0]["hosts"].values()))
    assert sorted(result["contents"]) == ["exim", "postgrey"]
    assert json.loads(cluster.state.read_text())["roots"]["gmail.test"] == ["192.0.2.0/24", "2001:db8::/32"]

    # The record grows: both hosts get it in the same run (before, the second host's format was
    # never resolved in a play whose first host used another one, and an old file went out).
    cluster.server.update({"records": {**ZONE["records"], **GROWN}})
    rc, out = cluster()
    assert rc == 0
    for path in cluster.files.values():
        assert "198.51.100.0/25" in entries(path)


def test_check_diff_on_a_fresh_controller_shows_each_hosts_change_and_writes_nothing(cluster):
    rc, out = cluster("--check", "--diff")
    assert rc == 0, json.dumps(out)[-3000:]
    install = tasks_named(out, "Install the generated whitelists")[0]
    for host, path in cluster.files.items():
        diff = install["hosts"][host]["results"][0]["diff"]
        diff = diff[0] if isinstance(diff, list) else diff
        assert "192.0.2.0/24" in diff["after"], host
        assert not path.exists()
    assert not cluster.state.exists()
    assert not cluster.state.with_name(cluster.state.name + ".pending").exists()


def test_hosts_that_disagree_on_the_providers_are_refused_by_name(cluster):
    rc, out = cluster(host_vars={"mx-b": {"spf_whitelist_providers": ["gmail.test", "other.test"]}})
    assert rc != 0
    assert "mx-b" in json.dumps(out) and "other.test" in json.dumps(out)
    assert not any(path.exists() for path in cluster.files.values())


def test_state_is_not_promoted_when_a_host_refused_the_new_list(cluster):
    assert cluster()[0] == 0
    state_before = cluster.state.read_bytes()
    cluster.server.update({"records": {**ZONE["records"], **GROWN}})
    rc, _out = cluster(host_vars={"mx-b": {"spf_whitelist_installs": [
        {"format": "exim", "dest": str(cluster.files["mx-b"]), "validate": "/bin/false %s"}]}})
    assert rc != 0
    assert "198.51.100.0/25" in entries(cluster.files["mx-a"])
    assert "198.51.100.0/25" not in entries(cluster.files["mx-b"])
    # The new netblocks wait as pending; the last known good state is still the old one.
    assert cluster.state.read_bytes() == state_before
    assert "198.51.100.0/25" in cluster.state.with_name(cluster.state.name + ".pending").read_text()


def test_site_tags_whitelist_is_refused_without_the_explicit_variable(cluster):
    rc, out = cluster("--tags", "whitelist")
    assert rc != 0
    assert "whitelist.yml" in json.dumps(out)
    assert not any(path.exists() for path in cluster.files.values())
    rc, _out = cluster("--tags", "whitelist", "-e", "spf_whitelist_unchecked_push=true")
    assert rc == 0


def test_without_state_the_hosts_lists_are_the_baseline(cluster):
    assert cluster()[0] == 0
    cluster.state.unlink()  # a new controller: no state, but the hosts run their lists
    before = {host: path.read_bytes() for host, path in cluster.files.items()}
    # Five times the IPv4 addresses (256 -> 1280): refused against what the hosts have now.
    cluster.server.update({"records": {**ZONE["records"], "_nb.gmail.test": {"TXT": [
        "v=spf1 ip4:192.0.2.0/24 ip4:45.0.0.0/22 ip6:2001:db8::/32 ~all"]}}})
    rc, out = cluster()
    assert rc != 0
    assert "grew from 256 to 1280 IPv4 addresses" in json.dumps(out)
    assert {host: path.read_bytes() for host, path in cluster.files.items()} == before
    assert not cluster.state.exists()


def test_a_pending_state_of_a_failed_run_is_never_promoted_later(cluster):
    assert cluster()[0] == 0
    state_before = cluster.state.read_bytes()
    pending = cluster.state.with_name(cluster.state.name + ".pending")
    cluster.server.update({"records": {**ZONE["records"], **GROWN}})
    failing = {"mx-b": {"spf_whitelist_installs": [
        {"format": "exim", "dest": str(cluster.files["mx-b"]), "validate": "/bin/false %s"}]}}
    assert cluster(host_vars=failing)[0] != 0
    assert pending.exists()
    # The record goes back to what the state holds: this run has nothing new to promote.
    cluster.server.update(ZONE)
    working = {"mx-b": {"spf_whitelist_installs": [
        {"format": "exim", "dest": str(cluster.files["mx-b"]), "validate": CHECK}]}}
    rc, out = cluster(host_vars=working)
    assert rc == 0, json.dumps(out)[-3000:]
    assert cluster.state.read_bytes() == state_before
    assert not pending.exists()


@pytest.mark.parametrize("validate", [None, "", "/usr/local/sbin/exim4-hostlist-check"])
def test_an_install_without_its_checker_is_refused_before_any_host_changes(cluster, validate):
    install = {"format": "exim", "dest": str(cluster.files["mx-b"])}
    if validate is not None:
        install["validate"] = validate
    rc, out = cluster(host_vars={"mx-b": {"spf_whitelist_installs": [install]}})
    assert rc != 0
    text = json.dumps(out)
    # None: the role's argument spec refuses the entry; a value without %s: the build's own check.
    assert "validate" in text and (validate is None or (str(cluster.files["mx-b"]) in text and "%s" in text))
    assert not any(path.exists() for path in cluster.files.values())
