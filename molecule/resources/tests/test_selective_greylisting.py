"""Selective greylisting: only clients that look like bots wait; a real mail server does not.

The main job runs again from here with mailguard_greylist_clients=selective (tag greylist: the
MTA's configuration and the greylist daemon), the clients speak (each from a new sender, so that
everyone-mode would greylist every one of them), and the main job runs once more
with the scenario's own settings, so that the later tests see the host as converged. The signals
are the lab's (lab.yml): legit-mta has a forward-confirmed name, the postscreen clients have no
PTR, "dynamic" has a forward-confirmed name that looks like a home connection, "allowlisted" has
no PTR but is on the lab's DNS allowlist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RCPT_USER = "alice"
# A sender domain with an MX and no SPF record: SPF neither rejects it nor vouches for it.
SENDER_DOMAIN = "foreign.test"


def converge(*extra: str) -> subprocess.CompletedProcess:
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(scenario / "converge.yml"), "--tags", "greylist", *extra],
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture(scope="module")
def selective(mta):
    done = converge("-e", json.dumps({"mailguard_greylist_clients": "selective"}))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    yield
    restored = converge()
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]


def speak(probe, sender, mta, client: str, *source: str) -> dict:
    result = probe(client, *source, "--from", sender(SENDER_DOMAIN, "selective"),
                   "--to", mta.fresh_recipient(RCPT_USER))
    return result.reply("RCPT")


def greylist_requests(mta, since: float, address: str) -> list[str]:
    """postgrey's log lines about the client since `since` (Postfix; greylistd logs no request)."""
    time.sleep(1)  # the journal lags a little
    return [line for line in mta.greylist_log(since) if f"client_address={address}" in line]


def exim_greylisted(mx, offset: int, address: str) -> list[str]:
    """Exim's mainlog lines since byte `offset` that greylisted the client, naming the signal."""
    out = mx.check_output("tail -c +%s /var/log/exim4/mainlog", str(offset + 1))
    return [line for line in out.splitlines() if f"[{address}]" in line and "greylisted (" in line]


def mainlog_size(mta) -> int:
    return int(mta.host.check_output("stat -c %s /var/log/exim4/mainlog")) if mta.name == "exim" else 0


@pytest.mark.only_mta("postfix", reason="Postfix's regexp table; Exim's ACL is read in the tests below")
def test_the_signals_table_sends_only_suspicious_clients_to_the_greylist(selective, mta, mx):
    restrictions = mta.postconf("smtpd_recipient_restrictions")
    assert "check_client_access regexp:/etc/postfix/mailguard_greylist_signals" in restrictions, restrictions
    assert "inet:127.0.0.1:10023" not in restrictions, "the greylist is still asked for every client"
    assert "inet:127.0.0.1:10023" in mta.postconf("mailguard_greylist_policy")
    # Postfix's own reader: a client without a verified name, a dynamic-looking name, an ordinary one.
    table = "regexp:/etc/postfix/mailguard_greylist_signals"
    assert mx.run("postmap -q unknown %s", table).stdout.strip() == "mailguard_greylist_policy"
    assert mx.run("postmap -q 172-30-53-76.dyn.lab.test %s", table).stdout.strip() == "mailguard_greylist_policy"
    assert mx.run("postmap -q mta.legit.test %s", table).stdout.strip() == ""
    assert mx.run("postmap -q 172.30.53.110 %s", table).stdout.strip() == "DUNNO"


def test_a_mail_server_with_a_verified_ordinary_name_is_not_greylisted(selective, probe, sender, mta, lab):
    since = time.time() - 1
    reply = speak(probe, sender, mta, "legit-mta")
    assert reply["code"] == 250, reply
    if mta.name == "postfix":
        assert greylist_requests(mta, since, lab["lab_clients"]["legit-mta"]["address"]) == []


@pytest.mark.parametrize(
    ("client", "signal"),
    [("one-list", "no verified host name"), ("dynamic", "dynamic-looking host name")],
)
def test_a_client_that_looks_like_a_bot_is_greylisted(selective, probe, sender, mta, mx, lab, client, signal):
    address = lab["lab_postscreen_clients"][client]["address"]
    since, offset = time.time() - 1, mainlog_size(mta)
    reply = speak(probe, sender, mta, lab["lab_postscreen_clients_host"], "--source", address)
    assert reply["code"] == mta.greylist_code and "Greylisted" in reply["text"], f"{signal}: {reply}"
    if mta.name == "postfix":
        assert greylist_requests(mta, since, address), f"postgrey was not asked about {address}"
    else:
        # The first signal that matched is logged (no name comes before the name patterns).
        lines = exim_greylisted(mx, offset, address)
        assert lines and f"greylisted ({signal}" in lines[-1], lines


def test_a_client_on_the_dns_allowlist_skips_the_greylist_despite_a_signal(selective, probe, sender, mta, lab):
    address = lab["lab_postscreen_clients"]["allowlisted"]["address"]  # no PTR: a signal
    since = time.time() - 1
    reply = speak(probe, sender, mta, lab["lab_postscreen_clients_host"], "--source", address)
    assert reply["code"] == 250, reply
    if mta.name == "postfix":
        assert greylist_requests(mta, since, address) == []
