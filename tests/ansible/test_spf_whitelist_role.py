"""The spf_whitelist role and the spf_netblocks module through ansible-playbook, against the lab DNS server."""

from __future__ import annotations

import json

import pytest

from tests.support.guard import DOC_NETWORKS
from tests.support.playbook import run_playbook

ZONE = {
    "records": {
        "gmail.test": {"TXT": ["v=spf1 redirect=_spf.gmail.test"]},
        "_spf.gmail.test": {"TXT": ["v=spf1 include:_nb.gmail.test ~all"]},
        "_nb.gmail.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"]},
        "ses.test": {"TXT": ["v=spf1 ip4:203.0.113.0/24 exists:%{i}.x.ses.test -all"]},
    },
}


@pytest.fixture
def playbook(dns_server, tmp_path):
    """playbook(*extra_args, **vars) -> (returncode, json_output) of the build-only playbook."""
    server = dns_server(ZONE)
    build = tmp_path / "whitelists"

    def run(*args: str, **overrides):
        extra_vars = {
            "spf_whitelist_providers": ["gmail.test", "ses.test"],
            "spf_whitelist_nameservers": [server.address],
            "spf_whitelist_dns_port": server.port,
            "spf_whitelist_build_dir": str(build),
            "spf_whitelist_state_file": str(tmp_path / "state" / "spf_whitelist.state.json"),
            "spf_whitelist_allowed_networks": DOC_NETWORKS,
            "spf_whitelist_formats": ["postgrey", "cidr"],
            **overrides,
        }
        # No -i: ansible.cfg's inventory; the playbook runs on localhost only.
        run = run_playbook("tests/ansible/build_whitelists.yml", extra_vars, *args, target=())
        return run.returncode, run.output

    run.server, run.build = server, build
    return run


def changed_count(output: dict) -> int:
    return sum(host["changed"] for host in output["stats"].values())


def task_result(output: dict, name_part: str) -> dict:
    for play in output["plays"]:
        for task in play["tasks"]:
            if name_part in task["task"]["name"]:
                return task["hosts"]["localhost"]
    raise AssertionError(f"no task named like {name_part!r}")


def test_role_writes_every_format_then_changes_nothing(playbook):
    rc, out = playbook()
    assert rc == 0, out
    postgrey = (playbook.build / "whitelist_clients.local").read_text()
    assert [line for line in postgrey.splitlines() if not line.startswith("#")] == [
        "192.0.2.0/24", "203.0.113.0/24", "2001:db8::/32"]
    assert "192.0.2.0/24\tpermit" in (playbook.build / "provider_clients.cidr").read_text()
    resolve = task_result(out, "Resolve the providers")
    ses = resolve["roots"]["ses.test"]
    assert ses["unresolvable"] == ["ses.test > exists:%{i}.x.ses.test"]

    rc, out = playbook()
    assert rc == 0
    assert changed_count(out) == 0


def test_check_mode_with_diff_shows_the_change_and_writes_nothing(playbook):
    assert playbook()[0] == 0
    before = (playbook.build / "whitelist_clients.local").read_bytes()
    zone = json.loads(json.dumps(ZONE))
    zone["records"]["_nb.gmail.test"]["TXT"] = ["v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all"]
    playbook.server.update(zone)

    rc, out = playbook("--check", "--diff")
    assert rc == 0
    postgrey = task_result(out, "Resolve the providers")
    assert postgrey["changed"] is True
    assert "+198.51.100.0/24" in "".join(
        line for line in _diff_lines(postgrey["diff"]))
    assert (playbook.build / "whitelist_clients.local").read_bytes() == before


def _diff_lines(diff) -> list[str]:
    # The json callback keeps before/after; build the added lines the way --diff shows them.
    diff = diff[0] if isinstance(diff, list) else diff
    before = set(diff["before"].splitlines())
    return [f"+{line}" for line in diff["after"].splitlines() if line not in before]


def test_dns_failure_keeps_last_good_and_warns(playbook):
    assert playbook()[0] == 0
    path = playbook.build / "whitelist_clients.local"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    playbook.server.update({**ZONE, "faults": {"_nb.gmail.test": {"servfail": True}}})

    rc, out = playbook()
    assert rc == 0
    result = task_result(out, "Resolve the providers")
    assert result["kept_last_good"] == ["gmail.test"]
    assert result["roots"]["gmail.test"]["status"] == "temperror"
    task = task_result(out, "Resolve the providers")
    # Ansible gathers module warnings of a loop on the task's result.
    assert any("gmail.test: the SPF walk failed (temperror" in warning for warning in task["warnings"])
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def test_invalid_variables_fail_before_anything_is_written(playbook):
    rc, out = playbook(spf_whitelist_formats=["postgray"])
    assert rc != 0
    assert "postgray" in json.dumps(out)  # the role's argument spec names the bad value
    assert not playbook.build.exists()  # not even the build directory was created

    rc, out = playbook(spf_whitelist_static_entries=["300.1.2.3/24"])
    assert rc != 0
    assert "300.1.2.3/24" in json.dumps(out)
    assert not (playbook.build / "whitelist_clients.local").exists()


def test_sqlgrey_list_gets_the_static_addresses_and_postgrey_everything(playbook):
    # sqlgrey reads names from clients_fqdn_whitelist.local (the sqlgrey role writes them), so a
    # host name or regex among the static entries must not fail the sqlgrey build.
    static = ["198.51.100.0/24", "mail.example.org", r"/.*outbound\.protection\.outlook\.com$/"]
    rc, out = playbook(spf_whitelist_formats=["postgrey", "sqlgrey"], spf_whitelist_static_entries=static)
    assert rc == 0, out
    sqlgrey = [line for line in (playbook.build / "clients_ip_whitelist.local").read_text().splitlines()
               if not line.startswith("#")]
    assert sqlgrey == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
    postgrey = (playbook.build / "whitelist_clients.local").read_text().splitlines()
    assert {"198.51.100.0/24", "mail.example.org", static[2]} <= set(postgrey)


def test_extra_providers_are_walked_on_top_of_the_defaults(playbook):
    # The inventory adds a sender without copying the project's list (and may repeat one of it).
    rc, out = playbook(spf_whitelist_providers=["gmail.test"], spf_whitelist_providers_extra=["ses.test", "GMAIL.test"])
    assert rc == 0, out
    assert sorted(task_result(out, "Resolve the providers")["roots"]) == ["gmail.test", "ses.test"]
    postgrey = (playbook.build / "whitelist_clients.local").read_text()
    assert "203.0.113.0/24" in postgrey.splitlines()
