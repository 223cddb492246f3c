"""A client listed in a DNSBL is refused at RCPT, through the mail host's own resolver.

Behind a public resolver Spamhaus answers 127.255.255.254 and a DNSBL silently does nothing, so
the mail host runs its own recursive resolver (role local_resolver: unbound on loopback) and the
main job checks each DNSBL's RFC 5782 test point through it. The lab DNS server serves the lab's
DNSBL (lab.yml: lab_dnsbl_zone lists spambot); the host's unbound forwards to it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The repository root: its ansible.cfg finds the collection mailguard.mail (collections/).
PROJECT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RCPT = "alice@lab.test"
ENHANCED_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3} ")


def reversed_address(address: str) -> str:
    return ".".join(reversed(address.split(".")))


def one_line(reply_text: str) -> str:
    """A multiline SMTP reply's text as one line, without each line's enhanced status code (Exim
    folds its reply: "...blocked using\n5.7.1 dnsbl.lab.test: ...")."""
    return " ".join(ENHANCED_STATUS.sub("", line) for line in reply_text.splitlines())


def nameservers(content: str) -> list[str]:
    return [line.split()[1] for line in content.splitlines() if line.startswith("nameserver ")]


def test_the_host_resolves_through_its_own_resolver_on_loopback_only(mx, mta):
    assert nameservers(mx.file("/etc/resolv.conf").content_string) == ["127.0.0.1"]
    if mta.name == "postfix":
        # smtpd runs chrooted: it reads the copy Postfix made of resolv.conf when it started.
        assert nameservers(mx.file("/var/spool/postfix/etc/resolv.conf").content_string) == ["127.0.0.1"]
    listening = mx.check_output("ss -H -lnu 'sport = :53'")
    assert "127.0.0.1:53" in listening, listening
    assert mta.address not in listening and "0.0.0.0:53" not in listening, f"not on loopback only:\n{listening}"


def test_a_listed_client_is_refused_at_rcpt_through_the_hosts_resolver(probe, sender, mta, mx, lab):
    client = lab["lab_dnsbl_listed_client"]
    listing = f"{reversed_address(lab['lab_clients'][client]['address'])}.{lab['lab_dnsbl_zone']}"
    cached_listing = re.compile(rf"^{re.escape(listing)}\.\s+\d+\s+IN\s+A\s+127\.0\.0\.2$", re.MULTILINE)
    # Forget an earlier lookup (every type), so that the cache entry below can only come from this dialogue.
    mx.check_output("unbound-control flush_zone %s", listing)
    assert not cached_listing.search(mx.check_output("unbound-control dump_cache"))

    result = probe(client, "--from", sender("legit.test", "dnsbl"), "--to", RCPT)
    refusal = result.reply("RCPT")
    assert refusal["code"] == 554, f"{client} is listed in {lab['lab_dnsbl_zone']}: expected 554 at RCPT:\n{result}"
    assert f"blocked using {lab['lab_dnsbl_zone']}" in one_line(refusal["text"]), str(result)
    assert not result.replies("DATA"), str(result)
    # The MTA asked the host's unbound (which asked the lab DNS server), not the lab DNS server itself.
    assert cached_listing.search(mx.check_output("unbound-control dump_cache")), f"{listing} A not in unbound's cache"


def run_dnsbl_check(tmp_path: Path, mta, sites: list[str]) -> tuple[int, str]:
    """(returncode, output) of the role's DNSBL health check on the mail host with these sites."""
    playbook = tmp_path / "dnsbl_check.yml"
    playbook.write_text(
        json.dumps([{
            "name": "Check the DNSBLs through the mail host's resolver",
            "hosts": mta.container,
            "gather_facts": False,
            "become": True,
            "tasks": [{"name": "Run the check", "ansible.builtin.import_role": {
                "name": "mailguard.mail.local_resolver", "tasks_from": "dnsbl_check"}}],
        }])
    )
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    variables = {"local_resolver_dnsbl_sites": sites, "local_resolver_dnsbl_syntax": mta.name}
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), "-e", json.dumps(variables)],
        cwd=PROJECT, env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=180,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def dnsbl_checks(lab, mta, tmp_path_factory):
    """The health check with the lab's DNSBL, then with zones that list nobody through this resolver."""
    tmp_path = tmp_path_factory.mktemp("dnsbl")
    return {
        "lab": run_dnsbl_check(tmp_path, mta, [f"{lab['lab_dnsbl_zone']}=127.0.0.2"]),
        "broken": run_dnsbl_check(
            tmp_path, mta, [f"{lab['lab_dnsbl_refusing_zone']}", f"not-listed.{lab['lab_mail_domain']}"]
        ),
    }


def test_the_health_check_passes_with_the_labs_dnsbl(dnsbl_checks):
    returncode, output = dnsbl_checks["lab"]
    assert returncode == 0, output


def test_the_health_check_fails_naming_zones_that_list_nobody_here(dnsbl_checks, lab):
    returncode, output = dnsbl_checks["broken"]
    assert returncode != 0, output
    # Spamhaus's answer to a public resolver, and a zone whose test point does not exist.
    assert f"{lab['lab_dnsbl_refusing_zone']}: 2.0.0.127.{lab['lab_dnsbl_refusing_zone']}" in output, output
    assert "127.255.255.254" in output, output
    assert f"not-listed.{lab['lab_mail_domain']}" in output and "NXDOMAIN" in output, output
