"""One greylist for several MX hosts: sqlgrey on a shared PostgreSQL database, against postgrey.

mx1 and mx2 run sqlgrey on the database of greydb; mx3 and mx4 run postgrey, each with its own
database. legit-mta (a real sender with passing SPF, not whitelisted) talks SMTP to them with
smtp-probe; every sender address is new, so every test starts with a new triplet. The tests
run in file order; the last one stops and restarts the database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

PROJECT = Path(__file__).resolve().parents[3]
LAB = yaml.safe_load((PROJECT / "molecule/resources/lab.yml").read_text())
ADDRESSES = {"mx1": LAB["lab_mx_address"], **LAB["lab_cluster_mx"]}
CLIENT = "legit-mta"
RCPT = "alice@lab.test"
# inventories/lab/group_vars/all: the delay every backend uses in the lab.
DELAY = yaml.safe_load((PROJECT / "inventories/lab/group_vars/all/lab.yml").read_text())["mailguard_greylist_delay"]


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def new_sender(tag: str, domain: str = "legit.test") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@{domain}"


def send(mx: str, sender: str, rcpt: str = RCPT, client: str = CLIENT) -> dict:
    """One SMTP dialogue from client to mx; returns {verb: (code, text)} of the last replies."""
    argv = ["timeout", "60", "smtp-probe", "--server", ADDRESSES[mx], "--ehlo", LAB["lab_clients"][client]["helo"],
            "--from", sender, "--to", rcpt, "--data"]
    done = host(client).run(" ".join(["%s"] * len(argv)), *argv)
    assert done.rc == 0, f"smtp-probe to {mx} failed: {done.stdout} {done.stderr}"
    steps = json.loads(done.stdout)["steps"]
    replies = {step["command"].split()[0].split(":")[0].upper(): (step["code"], step["text"]) for step in steps}
    print(f"{sender} -> {mx}: " + "; ".join(f"{verb} {code}" for verb, (code, _text) in replies.items()))
    return replies


def greylisted(replies: dict) -> bool:
    code, text = replies["RCPT"]
    return code == 450 and "greylist" in text.lower()


def accepted(replies: dict) -> bool:
    return replies["RCPT"][0] == 250 and replies.get("<MESSAGE>", (None,))[0] == 250


def delivered(mx: str, sender: str, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while host(mx).run("grep -qF %s /var/mail/alice", sender).rc != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def wait_out_the_delay(first_seen: float) -> None:
    time.sleep(max(0.0, first_seen + DELAY + 2 - time.monotonic()))


def psql(sql: str) -> str:
    return host("greydb").check_output("su postgres -c %s", f"psql -d sqlgrey -tAc \"{sql}\"").strip()


def sqlgrey_runs(mx: str) -> bool:
    return host(mx).run("systemctl is-active --quiet sqlgrey").rc == 0


@pytest.fixture(scope="module", autouse=True)
def database_running():
    """The module starts (and ends) with the database up, even after a failed test, and without
    sqlgrey's auto-whitelist of an earlier verify run: two senders of legit.test that passed
    would whitelist the whole domain from legit-mta, and no new triplet would be greylisted."""
    host("greydb").check_output("systemctl start postgresql")
    host("greydb").check_output("timeout 30 sh -c 'until pg_isready -q; do sleep 0.5; done'")
    psql("DELETE FROM from_awl; DELETE FROM domain_awl")
    yield
    host("greydb").check_output("systemctl start postgresql")


def test_the_backends_are_as_the_inventory_says():
    for mx in ("mx1", "mx2"):
        assert sqlgrey_runs(mx), f"sqlgrey does not run on {mx}"
        assert "inet:127.0.0.1:2501" in host(mx).check_output("postconf -h smtpd_recipient_restrictions")
    for mx in ("mx3", "mx4"):
        assert host(mx).run("systemctl is-active --quiet postgrey").rc == 0, f"postgrey does not run on {mx}"
        assert "inet:127.0.0.1:10023" in host(mx).check_output("postconf -h smtpd_recipient_restrictions")


def test_shared_greylist_retry_on_the_other_mx_is_accepted():
    sender = new_sender("shared")
    first = send("mx1", sender)
    first_seen = time.monotonic()
    assert greylisted(first), f"mx1 should greylist a new triplet: {first}"
    # The delay is shared too: mx2 knows the triplet and still finds it too early.
    assert greylisted(send("mx2", sender)), "an immediate retry on mx2 should still be greylisted"
    wait_out_the_delay(first_seen)
    retry = send("mx2", sender)
    assert accepted(retry), f"the retry on mx2 after {DELAY} s should be accepted: {retry}"
    assert delivered("mx2", sender), "the accepted message was not delivered on mx2"
    # The database saw it: the sender's domain and client are auto-whitelisted for every MX.
    assert psql("SELECT count(*) FROM from_awl WHERE sender_domain = 'legit.test'") != "0"


def test_postgrey_retry_on_the_other_mx_is_deferred_again():
    """Why the shared backend exists: each postgrey knows only its own triplets."""
    sender = new_sender("local")
    first_seen = time.monotonic()
    assert greylisted(send("mx3", sender)), "mx3 should greylist a new triplet"
    wait_out_the_delay(first_seen)
    second = send("mx4", sender)
    assert greylisted(second), f"mx4 has never seen the triplet and should greylist it again: {second}"
    # The same retry to the MX that saw the first attempt passes.
    back = send("mx3", sender)
    assert accepted(back), f"the retry on mx3 after the delay should be accepted: {back}"


def test_provider_pool_whitelist_reaches_sqlgrey():
    """The same whitelist input as postgrey: the resolver's sqlgrey output, from bigpool.test's SPF."""
    installed = host("mx1").check_output("cat /etc/sqlgrey/clients_ip_whitelist.local")
    assert "172.30.53.96/29" in installed.splitlines(), installed
    for mx in ("mx1", "mx2"):
        replies = send(mx, new_sender("pool", "bigpool.test"), client="pool-a")
        assert accepted(replies), f"pool-a is whitelisted and should be accepted at once on {mx}: {replies}"


def test_a_stopped_sqlgrey_costs_greylisting_not_mail():
    """postfix_greylist_default_action DUNNO (the sqlgrey default): no answer means accept."""
    host("mx1").check_output("systemctl stop sqlgrey")
    try:
        sender = new_sender("nosqlgrey")
        replies = send("mx1", sender)
    finally:
        host("mx1").check_output("systemctl start sqlgrey")
    assert accepted(replies), f"with sqlgrey stopped mx1 should accept: {replies}"
    assert delivered("mx1", sender)
    host("mx1").check_output("timeout 30 sh -c 'until ss -ltn | grep -q 127.0.0.1:2501; do sleep 0.5; done'")


def test_whitelist_rollout_checks_hosts_of_both_backends():
    """whitelist.yml on the mixed cluster: each host gets its backend's file and health check."""
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    inventory = f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, "whitelist.yml"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [block for block in done.stdout.split("\nTASK [")
              if block.startswith("mailguard.mail.whitelist_rollout : Ask the greylist")]
    for mx in ADDRESSES:
        # Nothing changed since site.yml installed the same files; every host was checked.
        assert re.search(rf"^{mx}\s+:\s+ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", done.stdout, re.M), mx
        assert any(f"ok: [{mx}]" in block for block in checks), f"the health check did not pass on {mx}"


def test_postmaster_is_never_greylisted():
    for mx in ("mx1", "mx3"):
        replies = send(mx, new_sender("complaint"), rcpt="postmaster@lab.test")
        assert accepted(replies), f"postmaster@ should be accepted at once on {mx}: {replies}"


def test_database_outage_loses_no_mail_and_greylisting_comes_back():
    host("greydb").check_output("systemctl stop postgresql")
    outage = {}
    try:
        for round_number in range(3):
            for mx in ("mx1", "mx2"):
                sender = new_sender(f"outage{round_number}")
                outage[sender] = (mx, send(mx, sender))
    finally:
        host("greydb").check_output("systemctl start postgresql")

    codes = {sender: replies["RCPT"][0] for sender, (_mx, replies) in outage.items()}
    assert all(code < 500 for code in codes.values()), f"a 5xx during the outage loses mail: {codes}"
    # sqlgrey's choice while its database is away: accept without greylisting (roles/sqlgrey).
    assert all(code == 250 for code in codes.values()), f"expected every recipient accepted: {codes}"
    lost = [sender for sender, (mx, _replies) in outage.items() if not delivered(mx, sender)]
    assert not lost, f"accepted during the outage but not delivered: {lost}"
    for mx in ("mx1", "mx2"):
        assert sqlgrey_runs(mx), f"sqlgrey on {mx} did not survive the outage"

    # Back without anyone touching the mail hosts: the next new triplet is greylisted again,
    # and its retry is accepted on the other MX.
    host("greydb").check_output("timeout 30 sh -c 'until pg_isready -q -h 172.30.53.30; do sleep 0.5; done'")
    sender = new_sender("after")
    deadline = time.monotonic() + 30
    first = send("mx1", sender)
    while not greylisted(first):
        # A reply accepted while sqlgrey reconnects is fine (no mail lost); a 5xx is not.
        assert first["RCPT"][0] < 500 and time.monotonic() < deadline, f"greylisting did not come back: {first}"
        time.sleep(2)
        sender = new_sender("after")
        first = send("mx1", sender)
    first_seen = time.monotonic()
    wait_out_the_delay(first_seen)
    retry = send("mx2", sender)
    assert accepted(retry), f"after the outage, the retry on mx2 should be accepted: {retry}"
    assert delivered("mx2", sender)
