"""Postfix and the rollout ask the greylist daemon where it listens: one setting, no copy to forget.

Before, Postfix's check_policy_service came from its own table: moving postgrey to a unix socket
left Postfix asking inet:127.0.0.1:10023, and every recipient got 451 4.3.5.
"""

from __future__ import annotations

import pytest

from tests.support.playbook import run_playbook, task_results

PLAYBOOK = "tests/ansible/greylist_listener.yml"


def asked(**variables) -> tuple[str, str]:
    run = run_playbook(PLAYBOOK, variables)
    results = task_results(run.output)
    assert run.returncode == 0, results
    return results["Postfix's greylist policy service"]["msg"], results["The rollout's health check target"]["msg"]


@pytest.mark.parametrize(
    ("backend", "variable", "listen", "postfix_asks"),
    [
        ("postgrey", "postgrey_listen", "127.0.0.1:10023", "inet:127.0.0.1:10023"),
        ("postgrey", "postgrey_listen", "127.0.0.1:10030", "inet:127.0.0.1:10030"),
        ("postgrey", "postgrey_listen", "/var/spool/postfix/postgrey/socket", "unix:postgrey/socket"),
        ("sqlgrey", "sqlgrey_listen", "127.0.0.1:2501", "inet:127.0.0.1:2501"),
        ("sqlgrey", "sqlgrey_listen", "[::1]:2600", "inet:[::1]:2600"),
    ],
)
def test_postfix_and_the_rollout_follow_the_daemon(backend, variable, listen, postfix_asks):
    postfix, rollout = asked(mailguard_greylist_backend=backend, **{variable: listen})
    assert postfix == postfix_asks
    assert rollout == listen


def test_a_socket_postfix_cannot_reach_fails_naming_it():
    run = run_playbook(PLAYBOOK, {"postgrey_listen": "/run/postgrey.sock"})
    failed = task_results(run.output)["Postfix's greylist policy service"]
    assert run.returncode != 0
    assert failed.get("failed") and "/run/postgrey.sock" in failed["msg"] and "chroot" in failed["msg"]
