"""Weighted DNS lists: the weights of the lists that list a client add up as configured.

Both stacks weigh the same lab lists (inventories/lab: dnsbl-a*2 with a reply filter,
dnsbl-b*2, the allowlist dnswl*-3; threshold 3): Postfix in postscreen, before any smtpd,
Exim in its connect ACL. Each client of lab_postscreen_clients is an extra address of one client
container (smtp-probe --source), and lab.yml gives the score it must get. A client at or above
the threshold is refused at RCPT with 550 5.7.1 naming the lists; one below it goes on to the
rest of the checks. The sum itself is read from each MTA's log: postscreen logs the rank of a
client it refuses ("DNSBL rank 4 for [a.d.d.r]") and a pass; Exim logs every listing with the
running score.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import LAB

RCPT = "alice@lab.test"
REFUSAL = re.compile(r"5\.7\.1 Service unavailable; client (host )?\[([0-9.]+)\] blocked using")
# A sender domain with an MX and no SPF record: SPF neither refuses it nor vouches for it.
SENDER_DOMAIN = "foreign.test"
SCORED = [name for name in LAB["lab_postscreen_clients"] if name != "pregreeter"]


def threshold(mta) -> int:
    if mta.name == "postfix":
        return int(mta.postconf("postscreen_dnsbl_threshold"))
    return int(mta.config_line(r"\$\{if >=\{\$acl_c_mailguard_dnsbl_score\}\{(\d+)\}\}").group(1))


class Log:
    """The MTA's log lines about one client address written after this object was made."""

    def __init__(self, mta, address: str) -> None:
        self.mta = mta
        self.address = address
        self.since = time.time() - 1
        self.offset = int(mta.host.check_output("stat -c %s /var/log/exim4/mainlog")) if mta.name == "exim" else 0

    def lines(self) -> list[str]:
        if self.mta.name == "postfix":
            out = self.mta.host.check_output(
                "journalctl -t postfix/postscreen --since @%s -o cat --no-pager", str(int(self.since)))
        else:
            out = self.mta.host.check_output("tail -c +%s /var/log/exim4/mainlog", str(self.offset + 1))
        return [line for line in out.splitlines() if f"[{self.address}]" in line]

    def wait_for(self, pattern: str, seconds: float = 10.0) -> list[str]:
        deadline = time.monotonic() + seconds
        while True:
            lines = self.lines()
            if any(re.search(pattern, line) for line in lines) or time.monotonic() > deadline:
                return lines


def score_logged(mta, lines: list[str], address: str) -> int | None:
    """The score the MTA logged for the client: postscreen's rank of a client it refuses, Exim's
    running score after the last listing (0 without one); None when postscreen logged no rank."""
    if mta.name == "postfix":
        ranks = [re.search(rf"^DNSBL rank (-?\d+) for \[{re.escape(address)}\]", line) for line in lines]
        ranks = [int(found.group(1)) for found in ranks if found]
        return ranks[-1] if ranks else None
    scores = [re.search(r"weight -?\d+: score (-?\d+)$", line) for line in lines]
    scores = [int(found.group(1)) for found in scores if found]
    return scores[-1] if scores else 0


@pytest.mark.parametrize("client", SCORED)
def test_the_dnsbl_weights_add_up_as_configured(client, probe, sender, mta, lab):
    address, score = lab["lab_postscreen_clients"][client]["address"], lab["lab_postscreen_clients"][client]["score"]
    refused = score >= threshold(mta)
    log = Log(mta, address)
    result = probe(lab["lab_postscreen_clients_host"], "--source", address,
                   "--from", sender(SENDER_DOMAIN, "weights"), "--to", RCPT)
    reply = result.reply("RCPT")
    found = REFUSAL.search(reply["text"])
    if refused:
        assert reply["code"] == 550 and found and found.group(2) == address, str(result)
        lines = log.wait_for(r"DNSBL rank")
    else:
        assert not found, str(result)
        lines = log.wait_for(r"PASS (NEW|OLD)" if mta.name == "postfix" else r"rejected RCPT|greylisted|=>|<=")
        if mta.name == "postfix":
            # postscreen logs a rank only for a client it refuses: under the threshold, its pass
            # (and no rank) is what shows the sum stayed below it.
            assert any(re.match(rf"PASS (NEW|OLD) \[{re.escape(address)}\]", line) for line in lines), "\n".join(lines)
            assert score_logged(mta, lines, address) is None, "\n".join(lines)
            return
    assert score_logged(mta, lines, address) == score, "\n".join(lines)
