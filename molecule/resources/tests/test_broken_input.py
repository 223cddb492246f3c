"""A broken input fails the main job before anything on the mail host changes (behaviour 9).

The converge playbook runs again, from here, against the molecule inventory with one bad extra
variable each; both runs go at once (neither may change anything, so they cannot disturb each
other)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The ansible-playbook beside the interpreter that runs the verifier (.venv/bin).
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
WATCHED = ["/etc/postfix/main.cf", "/etc/postgrey/whitelist_clients.local"]

BROKEN = {
    # 300 is no IPv4 octet: a whitelist line postgrey and Postfix would skip or choke on.
    "bad-static-entry": ({"spf_whitelist_static_entries": ["300.1.2.3/24"]}, "300.1.2.3/24"),
    # Postfix only notices an unknown restriction when mail arrives: then every RCPT gets a 451.
    "misspelled-restriction": (
        {
            "postfix_recipient_restrictions": [
                "permit_mynetworks",
                "reject_unauth_destination",
                "reject_unknwon_sender_domain",
            ]
        },
        "reject_unknwon_sender_domain",
    ),
}


def checksums(mx) -> dict[str, str]:
    return {path: mx.file(path).sha256sum for path in WATCHED}


def failure_messages(output: dict) -> list[str]:
    """The msg of every failed task result (and failed loop item) in the json callback output."""
    failed = []

    def collect(result: dict) -> None:
        if result.get("failed"):
            failed.append(json.dumps(result.get("msg", result)))
        for item in result.get("results", []):
            collect(item)

    for play in output.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                collect(result)
    return failed


@pytest.fixture(scope="module")
def broken_runs(mx):
    """Checksums before, then {case: (returncode, json output)}, then checksums after."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    before = checksums(mx)
    running = {
        case: subprocess.Popen(
            [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(scenario / "converge.yml"), "-e", json.dumps(extra)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, (extra, _) in BROKEN.items()
    }
    runs = {}
    for case, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        try:
            output = json.loads(stdout)
        except json.JSONDecodeError:
            output = {"unparsed": stdout, "stderr": stderr}
        runs[case] = (process.returncode, output)
    return before, runs, checksums(mx)


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_fails_naming_the_value(broken_runs, case):
    _, runs, _ = broken_runs
    returncode, output = runs[case]
    bad_value = BROKEN[case][1]
    assert returncode != 0, f"{case}: the run succeeded"
    messages = failure_messages(output)
    assert any(bad_value in message for message in messages), (
        f"{case}: no failure names {bad_value}: {messages or output}"
    )


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_changes_nothing_on_the_mail_host(broken_runs, case):
    before, runs, after = broken_runs
    _, output = runs[case]
    assert output.get("stats", {}).get("mx1", {}).get("changed", 0) == 0, f"{case} changed mx1: {output.get('stats')}"
    assert after == before
