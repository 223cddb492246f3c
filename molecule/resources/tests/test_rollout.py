"""whitelist.yml, the rollout cron runs, on this scenario's mail host (behaviour 10).

The same playbook serves Postfix hosts (postgrey's policy answers) and Exim hosts (Exim's own
verdict on its greylisting host list, exim4 -be); the scenario cluster runs it on three hosts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
CHECK_TASK = "mailguard.mail.whitelist_rollout : Ask the greylist and the MTA"


def rollout() -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    inventory = f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory"
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, "whitelist.yml"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    print(done.stdout[-2500:])
    return done


def test_rollout_installs_nothing_new_and_finds_the_host_healthy(mta):
    done = rollout()
    assert done.returncode == 0, done.stdout + done.stderr
    recap = re.search(rf"^{mta.container}\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", done.stdout, re.M)
    assert recap and recap.group(1) == "0", f"site.yml installed the same file: nothing to change\n{done.stdout}"
    checks = [block for block in done.stdout.split("\nTASK [") if block.startswith(CHECK_TASK)]
    assert any(f"ok: [{mta.container}]" in block for block in checks), "the health check did not pass"


def test_rollout_stops_at_a_host_whose_mta_is_down(mta):
    mta.host.check_output(mta.stop_command)
    try:
        done = rollout()
    finally:
        mta.host.check_output(mta.start_command)
    assert done.returncode != 0, done.stdout
    failure = re.search(rf"fatal: \[{mta.container}\].*", done.stdout)
    assert failure, done.stdout
    assert f"{mta.label} does not answer on 127.0.0.1:25" in failure.group(0), failure.group(0)
    # Back in service for the tests after this one.
    deadline = time.monotonic() + 30
    while mta.host.run("timeout 2 bash -c '</dev/tcp/127.0.0.1/25'").rc != 0:
        assert time.monotonic() < deadline, f"{mta.label} does not listen again"
        time.sleep(0.5)
