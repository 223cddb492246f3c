"""The greylisting report from the lab's own logs: greylist_report.yml against this scenario's host (behaviour 24).

Named test_zz_ so that pytest runs it last in molecule/resources/tests: the report then also
reads the mail every other test sent, pool-a's whitelisted messages among them. Its own story
uses sender domains no other test sends from (names of the lab DNS with an address record and
no SPF record), so their rows in the report are this test's alone (or its earlier runs'):
- mta.legit.test: legit-mta greylisted, retried after the greylist delay and accepted;
- mx.foreign.test: legit-mta greylisted and never retried;
- bigpool.test from pool-a: whitelisted, accepted at once, never greylisted.
The playbook reads the journal (Postfix, postgrey: facility mail) and /var/log/exim4/mainlog*
(Exim writes its own log) on the host, fetches them and reports on the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_greylisting import assert_accepted, assert_greylisted, wait_for_mailbox

PROJECT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RCPT = "alice@lab.test"
PASSED_LATER_DOMAIN = "mta.legit.test"
NEVER_RETRIED_DOMAIN = "mx.foreign.test"
# The report's last line is the retry's delivery, at least the greylist delay after the never-retried
# try: with the default (1 h) that try would be "too recent to judge".
MIN_AGE = "2s"


def greylist_report(output: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    inventory = f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory"
    extra = {"greylist_report_min_age": MIN_AGE, "greylist_report_output": str(output)}
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, "greylist_report.yml", "-e", "greylist_report_json=true",
                           "-e", json.dumps(extra)], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    print(done.stdout[-4000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    return json.loads(output.read_text())


def sender_row(report: dict, domain: str) -> dict:
    rows = {row["name"]: row for row in report["by_sender_domain"]}
    assert domain in rows, f"{domain} not in the report's sender domains {sorted(rows)}:\n{json.dumps(report)[:4000]}"
    return rows[domain]


@pytest.mark.timeout(420)
def test_report_counts_the_labs_greylisting(probe, sender, mta, lab, tmp_path):
    delay = mta.greylist_delay()
    pooled = ("--from", sender("bigpool.test", "report-pool"), "--to", RCPT, "--data")
    never = ("--from", sender(NEVER_RETRIED_DOMAIN, "report-never"), "--to", RCPT, "--data")
    later = ("--from", sender(PASSED_LATER_DOMAIN, "report-later"), "--to", RCPT, "--data")

    assert_accepted(probe("pool-a", *pooled), mta)  # whitelisted: never greylisted
    assert_greylisted(probe("legit-mta", *never), mta)  # and never retried
    first = probe("legit-mta", *later)
    first_seen = time.monotonic()
    assert_greylisted(first, mta)
    time.sleep(max(0.0, first_seen + delay + 1.5 - time.monotonic()))
    assert_accepted(probe("legit-mta", *later), mta)
    wait_for_mailbox(mta, "alice", later[1])

    report = greylist_report(tmp_path / "greylist-report.json")
    context = json.dumps(report)[:4000]

    # Where the figures came from: the host's own log, fetched and gone from the host.
    names = [path.rsplit("/", 1)[-1] for path in report["inputs"]]
    assert all(f"/{mta.container}/" in path for path in report["inputs"]), report["inputs"]
    expected = "mainlog" if mta.name == "exim" else "journal"
    assert any(expected in name for name in names), f"no {expected} among the inputs {names}"
    assert mta.host.run("ls -d /var/tmp/greylist-report.*").rc != 0, "the host kept its temporary copy"

    # Greylisted, retried after the delay, accepted: the delay the sender saw.
    passed = sender_row(report, PASSED_LATER_DOMAIN)
    assert passed["passed"] >= 1 and passed["never_retried"] == 0, context
    assert delay <= passed["delay"]["p50"] <= passed["delay"]["max"] < delay + 60, (
        f"greylist delay {delay} s, reported {passed['delay']}\n{context}")
    assert report["triplets"]["passed"] >= 1 and report["messages"]["passed"] >= 1, context

    # Greylisted once, never retried: stopped, not delayed.
    stopped = sender_row(report, NEVER_RETRIED_DOMAIN)
    assert stopped["passed"] == 0 and stopped["retried_not_passed"] == 0, context
    assert stopped["never_retried"] >= 1 and stopped["too_recent"] == 0, context
    assert stopped["delay"]["count"] == 0, context
    assert report["triplets"]["never_retried"] >= 1, context

    # pool-a's mail (this test's and the 150-message burst's) is whitelisted: accepted, never greylisted.
    assert report["events"]["passed"] >= 1, context
    assert "bigpool.test" not in {row["name"] for row in report["by_sender_domain"]}, context
    pool_a = lab["lab_clients"]["pool-a"]["address"]
    assert all(pool["sender_domain"] != "bigpool.test" and pool_a not in pool["addresses"]
               for pool in report["pools"]), context
