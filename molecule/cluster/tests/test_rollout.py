"""The whitelist rollout on three mail hosts: whitelist.yml as cron or CI runs it.

Each test changes bigpool.test's SPF record in the lab DNS server (unbound on the dns container),
runs the real `ansible-playbook whitelist.yml` against molecule's inventory and checks the hosts
through `docker exec`. The tests build on each other and run in file order: (a)+(b) a growing
record rolled out host by host under mail load, then an unchanged re-run, (c) a broken host stops
the rollout, (d) a failing include keeps the last known good list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dns.resolver
import pytest
import testinfra
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
LAB = yaml.safe_load((PROJECT / "molecule/resources/lab.yml").read_text())
HOSTS = ["mx1", "mx2", "mx3"]
ADDRESSES = {"mx1": LAB["lab_mx_address"], **LAB["lab_cluster_mx"]}
# The providers' networks live in the cidr table smtpd asks before postgrey (postgrey's own list
# holds only the static names: mailguard_provider_clients_skip_greylist).
WHITELIST = "/etc/postfix/mailguard_provider_clients.cidr"
UNBOUND_CONF = "/etc/unbound/unbound.conf.d/lab.conf"
NETBLOCKS = "_netblocks.bigpool.test."
ORIGINAL_NETBLOCKS = "v=spf1 ip4:172.30.53.96/29 ip6:2001:db8:53::/48 ~all"
GROWN = "v=spf1 ip4:172.30.53.96/29 ip4:172.30.53.112/29 ip6:2001:db8:53::/48 ~all"
# Grows again by a block that stays a separate line (172.30.53.112/29 + .120/29 would merge).
GROWN_AGAIN = "v=spf1 ip4:172.30.53.96/29 ip4:172.30.53.112/29 ip4:172.30.53.136/29 ip6:2001:db8:53::/48 ~all"
POOL = "pool-a"
RCPT = "alice@lab.test"

ROLLOUT_ROLE = "mailguard.mail.whitelist_rollout : "
INSTALL_TASK = ROLLOUT_ROLE + "Install the controller's whitelist"
CHECK_TASK = ROLLOUT_ROLE + "Ask the greylist and the MTA"
# The rollout takes the table live through Postfix's own handler, as site.yml does.
RELOAD_HANDLER = "mailguard.mail.postfix : Reload postfix"


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def file_state(name: str) -> tuple[str, float, str]:
    """(sha256, mtime, content) of the installed whitelist on a host."""
    content = host(name).check_output("cat %s", WHITELIST)
    mtime = float(host(name).check_output("stat -c %%.9Y %s", WHITELIST).replace(",", "."))
    return hashlib.sha256(content.encode()).hexdigest(), mtime, content


def states() -> dict[str, tuple[str, float, str]]:
    return {name: file_state(name) for name in HOSTS}


# --- the lab DNS server -------------------------------------------------------------------------


def write_unbound_conf(text: str) -> None:
    subprocess.run(["docker", "exec", "-i", "dns", "sh", "-c", f"cat > {UNBOUND_CONF}"], input=text,
                   text=True, check=True)
    dns_host = host("dns")
    dns_host.check_output("unbound-checkconf")
    dns_host.check_output("systemctl restart unbound")


def lab_dns_answer(name: str) -> str:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [LAB["lab_dns_address"]]
    resolver.lifetime = 2
    try:
        return " ".join(b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT"))
    except dns.resolver.NoNameservers:
        return "REFUSED"
    except dns.exception.DNSException as exc:
        return type(exc).__name__


def set_lab_dns(original: str, netblocks: str, refuse: bool = False) -> None:
    """Serve netblocks as _netblocks.bigpool.test's record, or REFUSED for that name."""
    line = f"    local-data: '{NETBLOCKS} TXT \"{ORIGINAL_NETBLOCKS}\"'"
    assert line in original, f"the lab DNS configuration has no {line!r}"
    replacement = f"    local-data: '{NETBLOCKS} TXT \"{netblocks}\"'"
    if refuse:
        # always_refuse: plain refuse still answers the name's local-data.
        replacement += f'\n    local-zone: "{NETBLOCKS}" always_refuse'
    write_unbound_conf(original.replace(line, replacement))
    expected = "REFUSED" if refuse else netblocks
    deadline = time.monotonic() + 15
    while (answer := lab_dns_answer(NETBLOCKS)) != expected:
        assert time.monotonic() < deadline, f"the lab DNS server answers {answer!r}, not {expected!r}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def lab_dns():
    """set_lab_dns(netblocks, refuse=False); the original configuration is restored afterwards."""
    original = host("dns").check_output("cat %s", UNBOUND_CONF) + "\n"
    yield lambda netblocks, refuse=False: set_lab_dns(original, netblocks, refuse)
    write_unbound_conf(original)


# --- whitelist.yml --------------------------------------------------------------------------------


class Run:
    """One ansible-playbook run: exit status, output, and (task, status, host) events in order."""

    def __init__(self, done: subprocess.CompletedProcess) -> None:
        self.rc = done.returncode
        self.output = done.stdout + done.stderr
        self.events: list[tuple[str, str, str]] = []
        task = ""
        for line in done.stdout.splitlines():
            if found := re.match(r"(?:TASK|RUNNING HANDLER) \[(.*?)\] \*", line):
                task = found.group(1)
            elif found := re.match(r"(ok|changed|fatal|failed|skipping): \[([^\]\s]+)", line):
                self.events.append((task, found.group(1), found.group(2)))
        self.recap = {
            name: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for name, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", done.stdout, re.MULTILINE)
        }

    def index(self, task: str, status: str, name: str) -> int:
        for number, event in enumerate(self.events):
            if event[0].startswith(task) and event[1] == status and event[2] == name:
                return number
        raise AssertionError(f"no {status} {task!r} on {name} in the run:\n{self.output}")

    def flat(self) -> str:
        """The output with line wrapping undone (warnings are wrapped at the terminal width)."""
        return " ".join(self.output.split())


def rollout(*options: str) -> Run:
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    ephemeral = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"{ephemeral}/inventory",
         "whitelist.yml", "--diff", *options],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    return Run(done)


# --- mail -----------------------------------------------------------------------------------------


class Load:
    """smtp_load.py in the pool-a container, round-robin to the three hosts, until stopped."""

    def __init__(self) -> None:
        self.tag = f"load-{uuid.uuid4().hex[:10]}"
        self.stop_file = f"/tmp/{self.tag}.stop"
        self.process = subprocess.Popen(
            ["docker", "exec", "-i", POOL, "python3", "-", "--servers", ",".join(ADDRESSES[n] for n in HOSTS),
             "--helo", LAB["lab_clients"][POOL]["helo"], "--sender-domain", "bigpool.test", "--to", RCPT,
             "--tag", self.tag, "--stop-file", self.stop_file],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.process.stdin.write((SCENARIO / "files/smtp_load.py").read_text())
        self.process.stdin.close()

    def stop(self) -> dict:
        host(POOL).check_output("touch %s", self.stop_file)
        stdout = self.process.stdout.read()
        stderr = self.process.stderr.read()
        assert self.process.wait(timeout=60) == 0, f"smtp_load failed: {stderr}"
        return json.loads(stdout)


def delivered(tag: str) -> dict[str, int]:
    """Messages of this load in alice's mailbox, per host."""
    counts = {}
    for name in HOSTS:
        done = host(name).run("grep -c %s /var/mail/alice", f"^Subject: {tag}-")
        counts[name] = int(done.stdout.strip() or 0)
    return counts


def smtp_probe(name: str) -> dict:
    command = ["smtp-probe", "--server", ADDRESSES[name], "--ehlo", LAB["lab_clients"][POOL]["helo"],
               "--from", f"probe-{uuid.uuid4().hex[:10]}@bigpool.test", "--to", RCPT, "--data"]
    return json.loads(host(POOL).check_output(" ".join(["%s"] * len(command)), *command))


# --- the behaviours --------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_b_grown_record_rolls_out_host_by_host_without_losing_mail(lab_dns):
    before = states()
    assert len({sha for sha, _, _ in before.values()}) == 1, "the hosts do not start from the same whitelist"
    lab_dns(GROWN)

    load = Load()
    time.sleep(3)  # mail flows before the first host changes
    run = rollout()
    time.sleep(3)  # and after the last one
    sent = load.stop()

    assert run.rc == 0, run.output
    after = states()
    assert len({sha for sha, _, _ in after.values()}) == 1, f"the hosts differ after the rollout: {after}"
    assert "172.30.53.112/29" in after["mx1"][2], after["mx1"][2]
    # One host at a time: each is installed, reloaded and checked before the next is touched.
    for earlier, later in itertools.pairwise(HOSTS):
        assert run.index(CHECK_TASK, "ok", earlier) < run.index(INSTALL_TASK, "changed", later), run.output
        assert after[earlier][1] < after[later][1], f"mtimes not in rollout order: {after}"
    for name in HOSTS:
        assert run.index(INSTALL_TASK, "changed", name) < run.index(RELOAD_HANDLER, "changed", name)
        assert run.index(RELOAD_HANDLER, "changed", name) < run.index(CHECK_TASK, "ok", name)
    print("rollout order:", [event for event in run.events if event[0].startswith(ROLLOUT_ROLE)])

    # (b) every message sent during the rollout was accepted and delivered.
    print("load:", json.dumps(sent))
    assert sent["failures"] == [], f"refused during the rollout: {sent['failures']}"
    assert sent["accepted"] == sent["sent"]
    assert all(count >= 3 for count in sent["per_server"].values()), f"too little load: {sent}"
    deadline = time.monotonic() + 60
    while sum((counts := delivered(load.tag)).values()) < sent["accepted"]:
        assert time.monotonic() < deadline, f"delivered {counts}, sent {sent['sent']}"
        time.sleep(1)
    assert sum(counts.values()) == sent["sent"], f"delivered {counts}, sent {sent['sent']}"


def test_a_second_run_changes_nothing_and_reloads_nothing():
    before = states()
    run = rollout()
    assert run.rc == 0, run.output
    assert run.recap and all(counts["changed"] == 0 for counts in run.recap.values()), run.output
    assert "RUNNING HANDLER" not in run.output, run.output
    assert states() == before


@pytest.mark.timeout(600)
def test_c_a_failing_host_stops_the_rollout_and_the_next_keeps_serving(lab_dns):
    mx2 = host("mx2")
    before = states()
    lab_dns(GROWN_AGAIN)
    mx2.check_output("systemctl stop postgrey")
    try:
        run = rollout()
        assert run.rc != 0, f"the rollout went on past a broken mx2:\n{run.output}"
        failure = re.search(r"fatal: \[mx2\].*", run.output)
        assert failure, run.output
        assert "postgrey" in failure.group(0), failure.group(0)
        print("failure:", failure.group(0))
        assert not any(event[2] == "mx3" for event in run.events if event[0].startswith(ROLLOUT_ROLE)), (
            f"mx3 was reached:\n{run.output}"
        )
        after = states()
        assert "172.30.53.136/29" in after["mx1"][2]
        assert after["mx3"] == before["mx3"], "mx3 (not reached) lost its previous whitelist"
        result = smtp_probe("mx3")
        codes = {step["command"].split()[0]: step["code"] for step in result["steps"]}
        assert codes.get("RCPT") == 250 and codes.get("<message>") == 250, result
    finally:
        mx2.check_output("systemctl start postgrey")
    # Repaired: the next run brings every host to the same list.
    run = rollout()
    assert run.rc == 0, run.output
    assert len({sha for sha, _, _ in states().values()}) == 1


def test_c_a_failing_health_check_names_the_host_and_the_reason():
    # No DNS change: the health check runs on every host all the same, and Postfix is down on mx2.
    mx2 = host("mx2")
    before = states()
    mx2.check_output("systemctl stop postfix")
    try:
        run = rollout("-e", "whitelist_rollout_check_timeout=3")
        assert run.rc != 0, f"the rollout went on past a broken mx2:\n{run.output}"
        failures = re.findall(r"fatal: \[mx2\].*", run.output)
        assert failures, run.output
        print("failure:", failures[-1])
        assert '"msg": "mx2: health check failed' in failures[-1], failures[-1]
        assert "Postfix does not answer on 127.0.0.1:25" in failures[-1], failures[-1]
        assert run.index(CHECK_TASK, "ok", "mx1") >= 0
        assert not any(event[2] == "mx3" for event in run.events if event[0].startswith(ROLLOUT_ROLE))
        assert states() == before
    finally:
        mx2.check_output("systemctl start postfix")


def test_d_a_failing_include_keeps_the_last_known_good_list_everywhere(lab_dns):
    before = states()
    lab_dns(GROWN_AGAIN, refuse=True)
    run = rollout()
    assert run.rc == 0, run.output
    assert re.search(r"bigpool\.test: the SPF walk failed .*kept its \d+ last known good", run.flat()), run.output
    assert all(counts["changed"] == 0 for counts in run.recap.values()), run.output
    assert states() == before
    assert "172.30.53.136/29" in before["mx3"][2]


# --- whitelist safety (issue 10) ------------------------------------------------------------------

STATE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "spf_whitelist.state.json"
# An attacker who controls one include (or a typo) opens half of IPv4.
WIDENED = "v=spf1 ip4:172.30.53.96/29 ip4:0.0.0.0/1 ip6:2001:db8:53::/48 ~all"
# Grows by a block the next test makes mx2's health check refuse.
GROWN_FOR_ROLLBACK = ("v=spf1 ip4:172.30.53.96/29 ip4:172.30.53.112/29 ip4:172.30.53.136/29 "
                      "ip4:172.30.53.144/29 ip6:2001:db8:53::/48 ~all")


def greylist_action(name: str, client: str) -> str:
    """postgrey's answer on a host for a new triplet from client (a real policy request)."""
    script = (
        "import socket, uuid\n"
        "request = {'request': 'smtpd_access_policy', 'protocol_state': 'RCPT', 'client_address': "
        f"'{client}', 'client_name': 'unknown', 'sender': 'probe-' + uuid.uuid4().hex[:12] + '@x.test', "
        "'recipient': 'alice@lab.test'}\n"
        "with socket.create_connection(('127.0.0.1', 10023), timeout=5) as conn:\n"
        "    conn.sendall((''.join(f'{k}={v}\\n' for k, v in request.items()) + '\\n').encode())\n"
        "    print(conn.recv(4096).decode().split('action=', 1)[1].split('\\n', 1)[0])\n"
    )
    done = subprocess.run(["docker", "exec", "-i", name, "python3", "-"], input=script, text=True,
                          capture_output=True, check=True)
    return done.stdout.strip()


@pytest.mark.timeout(600)
def test_e_a_widened_include_stops_the_run_before_any_host_changes(lab_dns):
    before, state_before = states(), STATE.read_bytes()
    lab_dns(WIDENED)
    run = rollout()
    assert run.rc != 0, run.output
    flat = run.flat()
    assert "refused netblock 0.0.0.0/1" in flat, run.output
    assert "include:_netblocks.bigpool.test" in flat, run.output  # the chain that brought it
    assert not any(event[0].startswith(ROLLOUT_ROLE) for event in run.events), run.output
    assert states() == before
    assert STATE.read_bytes() == state_before
    print("refused:", re.search(r"refused netblock 0\.0\.0\.0/1[^;]*", flat).group(0))


@pytest.mark.timeout(600)
def test_f_a_host_whose_check_fails_gets_its_previous_list_back(lab_dns, tmp_path):
    before, state_before = states(), STATE.read_bytes()
    lab_dns(GROWN_FOR_ROLLBACK)
    # mx2's health check must see 172.30.53.145 deferred, and the new list whitelists it: the check
    # fails after the install, as it would for a list that opens the greylist too far.
    extra = tmp_path / "mx2-check.yml"
    extra.write_text(yaml.safe_dump({"all": {"hosts": {"mx2": {"whitelist_rollout_unknown_client": "172.30.53.145"}}}}))
    run = rollout("-i", str(extra))
    assert run.rc != 0, run.output
    failure = re.findall(r"fatal: \[mx2\].*", run.output)
    assert failure, run.output
    print("failure:", failure[-1])
    assert "restored the previous whitelist" in failure[-1], failure[-1]
    after = states()
    assert "172.30.53.144/29" in after["mx1"][2]  # the canary passed and keeps the new list
    assert after["mx2"][0] == before["mx2"][0], "mx2 did not get its previous list back byte for byte"
    assert after["mx3"] == before["mx3"], "mx3 (not reached) was touched"
    # mx2 still greylists: a client outside the list is deferred, one inside passes.
    assert greylist_action("mx2", "172.30.53.145").upper().startswith("DEFER_IF_PERMIT")
    # The pool passes before postgrey is asked: Postfix's reader matches it in the restored table.
    assert host("mx2").check_output("postmap -q 172.30.53.97 cidr:%s", WHITELIST).strip() == "permit"
    assert host("mx2").run("postmap -q 172.30.53.145 cidr:%s", WHITELIST).rc == 1
    # The controller did not promote the new netblocks: the last known good state is the old one.
    assert STATE.read_bytes() == state_before
    # Repaired (the check no longer refuses): the next run brings every host to the new list.
    run = rollout()
    assert run.rc == 0, run.output
    assert len({sha for sha, _, _ in states().values()}) == 1
    assert "172.30.53.144" in STATE.read_text()
