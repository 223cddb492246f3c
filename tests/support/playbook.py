"""Run one of tests/ansible's playbooks on the controller and read its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


class PlaybookOutputError(AssertionError):
    """ansible-playbook printed something that is not the json callback's result."""


def run_playbook(playbook: str, extra_vars: dict, timeout: int = 120) -> tuple[int, dict]:
    """(returncode, the json callback's document) of ``playbook`` (relative to the repo) on localhost."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_LOCALHOST_WARNING="false")
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", playbook, "-e", json.dumps(extra_vars)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise PlaybookOutputError(f"ansible-playbook printed no JSON:\n{done.stdout}\n{done.stderr}") from exc


def task_results(output: dict, host: str = "localhost") -> dict[str, dict]:
    """Each task's result on ``host``, by task name (the last play that ran it wins)."""
    return {task["task"]["name"]: task["hosts"].get(host, {}) for play in output["plays"] for task in play["tasks"]}
