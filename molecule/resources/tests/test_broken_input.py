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

# The broken inputs of each MTA stack (case -> extra variables, the value the failure must name)
# are in conftest.py (MailHost.broken_inputs); conftest parametrizes broken_case with them.


def checksums(mta) -> dict[str, str]:
    return {path: mta.host.file(path).sha256sum for path in mta.watched}


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
def broken_runs(mta):
    """Checksums before, then {case: (returncode, json output)}, then checksums after."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")
    before = checksums(mta)
    running = {
        case: subprocess.Popen(
            [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(scenario / "converge.yml"), "-e", json.dumps(extra)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, (extra, _) in mta.broken_inputs.items()
    }
    runs = {}
    for case, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        try:
            output = json.loads(stdout)
        except json.JSONDecodeError:
            output = {"unparsed": stdout, "stderr": stderr}
        runs[case] = (process.returncode, output)
    return before, runs, checksums(mta)


def test_broken_input_fails_naming_the_value(broken_runs, broken_case, mta):
    case = broken_case
    _, runs, _ = broken_runs
    returncode, output = runs[case]
    bad_value = mta.broken_inputs[case][1]
    assert returncode != 0, f"{case}: the run succeeded"
    messages = failure_messages(output)
    print(f"== {case}: rc {returncode}\n" + "\n".join(messages))  # shown with -rP or on failure
    assert any(bad_value in message for message in messages), (
        f"{case}: no failure names {bad_value}: {messages or output}"
    )


def test_broken_input_changes_nothing_on_the_mail_host(broken_runs, broken_case, mta):
    case = broken_case
    before, runs, after = broken_runs
    _, output = runs[case]
    stats = output.get("stats", {})
    assert mta.container in stats, f"{case}: {mta.container} was never reached: {stats or output}"
    assert stats[mta.container].get("changed", 0) == 0, f"{case} changed {mta.container}: {stats}"
    assert after == before
