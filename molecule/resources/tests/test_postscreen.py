"""postscreen on port 25 (Postfix): bots are turned away before any smtpd process exists.

The lab's postscreen lists (inventories/lab: dnsbl-a*2, dnsbl-b*2, dnswl*-3, threshold 3) are
served by the lab DNS server and asked through the mail host's own resolver. Each client of
lab_postscreen_clients is an extra address of one client container (smtp-probe --source), listed
so that the weights, the allowlist and a reply filter decide its fate (lab.yml gives each one's
score; test_dnsbl_weights.py checks the sums on both stacks). What postscreen decided is read
from its own log lines.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import LAB

pytestmark = pytest.mark.only_mta("postfix", reason="postscreen is Postfix's; the Exim stack has no equivalent")

RCPT = "alice@lab.test"
# postscreen's reply to RCPT from a client that talked too early.
PROTOCOL_REFUSAL = "5.5.1 Protocol error"
SCREENED = LAB["lab_postscreen_clients"]
# A sender domain with an MX and no SPF record: smtpd neither rejects it nor lets it skip the greylist.
SENDER_DOMAIN = "foreign.test"


def postscreen_log(mx, since: float) -> list[str]:
    out = mx.check_output("journalctl -t postfix/postscreen --since @%s -o cat --no-pager", str(int(since)))
    return out.splitlines()


def smtpd_log(mx, since: float) -> list[str]:
    out = mx.check_output("journalctl -t postfix/smtpd --since @%s -o cat --no-pager", str(int(since)))
    return out.splitlines()


def naming(lines: list[str], address: str) -> list[str]:
    return [line for line in lines if f"[{address}]" in line]


def wait_for(read, predicate, seconds: float = 10.0) -> list[str]:
    """read() until predicate(lines) holds or seconds pass (the journal lags a little)."""
    deadline = time.monotonic() + seconds
    while True:
        lines = read()
        if predicate(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_postscreen_answers_port_25_with_smtpd_behind_it(mta):
    services = mta.host.check_output("postconf -M smtp/inet smtpd/pass")
    assert re.search(r"^smtp\s+inet\s.*\spostscreen$", services, re.MULTILINE), services
    assert re.search(r"^smtpd\s+pass\s.*\ssmtpd$", services, re.MULTILINE), services
    access = mta.postconf("postscreen_access_list")
    assert access.startswith("permit_mynetworks") and f"cidr:{mta.whitelist}" in access, access


def test_a_client_that_talks_before_the_greeting_is_refused_by_postscreen(probe, sender, mx, lab):
    address = SCREENED["pregreeter"]["address"]
    since = time.time() - 1
    result = probe(lab["lab_postscreen_clients_host"], "--source", address, "--pregreet",
                   "--from", sender(SENDER_DOMAIN, "pregreet"), "--to", RCPT)
    refusal = result.reply("RCPT")
    assert refusal["code"] == 550 and PROTOCOL_REFUSAL in refusal["text"], str(result)
    lines = wait_for(lambda: naming(postscreen_log(mx, since), address),
                     lambda found: any("NOQUEUE: reject" in line for line in found))
    assert any(re.match(r"PREGREET \d+ after ", line) for line in lines), "\n".join(lines)
    assert any("NOQUEUE: reject: RCPT" in line and PROTOCOL_REFUSAL in line for line in lines), "\n".join(lines)
    # It never reached smtpd.
    assert not naming(smtpd_log(mx, since), address)


def test_a_provider_pool_skips_every_postscreen_test(probe, sender, mx, lab, mta):
    """The providers' cidr table is postscreen's access list: no greet wait, no DNSBL query."""
    client = "pool-b"
    address = lab["lab_clients"][client]["address"]
    assert mx.run("postmap -q %s cidr:%s", address, mta.whitelist).stdout.strip() == "permit"
    since = time.time() - 1
    probe(client, "--from", sender("bigpool.test", "screen"), "--to", RCPT)
    lines = wait_for(lambda: naming(postscreen_log(mx, since), address),
                     lambda found: any(line.startswith("ALLOWLISTED") for line in found))
    assert any(line.startswith(f"ALLOWLISTED [{address}]") for line in lines), "\n".join(lines)
    assert not any(re.match(r"(PASS|DNSBL|PREGREET)", line) for line in lines), "\n".join(lines)
