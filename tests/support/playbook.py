"""Run a playbook of the repository with the json callback, the way tests/ansible and tests/roles do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# The controller alone: no inventory file, no SSH.
LOCALHOST = ("-i", "localhost,", "-c", "local")


class PlaybookOutputError(AssertionError):
    """ansible-playbook printed something that is not the json callback's result."""


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: dict  # the json callback's document
    text: str  # everything printed (stdout and stderr), for what must never appear in it


def run_playbook(playbook, extra_vars: dict | None = None, *args: str, target=LOCALHOST, env: dict | None = None,
                 timeout: int = 180) -> PlaybookRun:
    """Run ``playbook`` (a path relative to the repo) and return its result.

    ``target`` are the inventory arguments (the controller by default; () for ansible.cfg's own);
    ``args`` go after the extra variables (-e ..., --check, --tags ...).
    """
    environment = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                       ANSIBLE_LOCALHOST_WARNING="false", **(env or {}))
    command = [str(ANSIBLE_PLAYBOOK), *target, str(playbook)]
    if extra_vars is not None:
        command += ["-e", json.dumps(extra_vars)]
    done = subprocess.run(command + list(args), cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)
    try:
        return PlaybookRun(done.returncode, json.loads(done.stdout), done.stdout + done.stderr)
    except json.JSONDecodeError as exc:
        raise PlaybookOutputError(f"ansible-playbook printed no JSON:\n{done.stdout}\n{done.stderr}") from exc


def task_results(output: dict, host: str = "localhost") -> dict[str, dict]:
    """Each task's result on ``host``, by task name (the last play that ran it wins)."""
    return {task["task"]["name"]: task["hosts"].get(host, {}) for play in output["plays"] for task in play["tasks"]}


def failed_messages(output: dict, host: str = "localhost") -> list[str]:
    """The message of every failed task (and failed loop item) on ``host``, in order."""
    messages = []
    for play in output["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host, {})
            for one in result.get("results", [result]):
                if one.get("failed"):
                    messages.append(one.get("msg", ""))
    return messages
