"""The postfix role writes master.cf whole from data, and --check --diff shows what would change.

The role's master.cf template runs through ansible-playbook on the controller
(tests/ansible/postfix_master_cf.yml: the role's preflight, then its template task into a
temporary directory, without Postfix). What it renders is compared with Debian 12's own
master.cf (tests/ansible/files/debian12-postfix-3.7.11-master.cf: /usr/share/postfix/master.cf.dist
of postfix 3.7.11-0+deb12u1, the package's /etc/postfix/master.cf), service by service as
Postfix reads them. Postfix's parser itself is tested in tests/roles/test_postfix_master_checker.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.playbook import failed_messages, run_playbook, task_results

HERE = Path(__file__).resolve().parent
STOCK = HERE / "files" / "debian12-postfix-3.7.11-master.cf"
PLAYBOOK = "tests/ansible/postfix_master_cf.yml"
TEMPLATE_TASK = "Write master.cf from the role's template"
# Without postscreen, Debian's smtpd answers port 25: the stock file, service for service.
# postscreen's services are tested on their own (test_postscreen_...).
BASE = {"postfix_myhostname": "mx1.lab.test", "ansible_python_interpreter": sys.executable, "postfix_postscreen": False}
POLICYD_SPF = "policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf"


def services(text: str) -> list[str]:
    """master.cf's services as Postfix reads them: logical lines (a line starting with whitespace
    continues the one before; comments and empty lines are skipped), whitespace folded."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            found[-1].extend(line.split())
        else:
            found.append(line.split())
    return [" ".join(words) for words in found]


def render(directory: Path, *args: str, **variables):
    run = run_playbook(PLAYBOOK, {**BASE, "render_dir": str(directory), **variables}, *args)
    return run, directory / "master.cf"


def rendered(tmp_path: Path, **variables) -> str:
    run, path = render(tmp_path, **variables)
    assert run.returncode == 0, failed_messages(run.output) or run.text
    return path.read_text(encoding="utf-8")


STOCK_SERVICES = services(STOCK.read_text(encoding="utf-8"))


def test_the_stock_file_is_debians():
    names = [" ".join(service.split()[:2]) for service in STOCK_SERVICES]
    assert names[:3] == ["smtp inet", "pickup unix", "cleanup unix"] and names[-1] == "mailman unix"
    assert len(STOCK_SERVICES) == 31


def test_the_defaults_render_debians_services_then_policyd_spf(tmp_path):
    text = rendered(tmp_path)
    assert services(text) == [*STOCK_SERVICES, POLICYD_SPF]
    assert text.startswith("#\n# Postfix master process configuration file, managed by Ansible")
    assert "postfix_master_services_extra" in text.split("# service type")[0]
    # Debian's own columns: the stock service lines are the package's, byte for byte.
    stock_lines = STOCK.read_text(encoding="utf-8").splitlines()
    for line in ("smtp      inet  n       -       y       -       -       smtpd",
                 "tlsmgr    unix  -       -       y       1000?   1       tlsmgr"):
        assert line in stock_lines and line in text.splitlines()


def test_postscreen_answers_port_25_with_smtpd_dnsblog_and_tlsproxy_behind_it(tmp_path):
    """Debian's master.cf.dist has these lines commented out; postscreen is on by default."""
    text = rendered(tmp_path, postfix_postscreen=True)
    postscreen = [
        "smtp inet n - y - 1 postscreen",
        "smtpd pass - - y - - smtpd",
        "dnsblog unix - - y - 0 dnsblog",
        "tlsproxy unix - - y - 0 tlsproxy",
    ]
    # smtp/inet replaced in its place; the three helpers after Debian's services.
    assert services(text) == [postscreen[0], *STOCK_SERVICES[1:], *postscreen[1:], POLICYD_SPF]


def test_without_the_roles_services_it_is_debians_master_cf(tmp_path):
    assert services(rendered(tmp_path, postfix_master_services=[])) == STOCK_SERVICES


def test_check_diff_shows_the_change_and_writes_nothing(tmp_path):
    target = tmp_path / "master.cf"
    shutil.copyfile(STOCK, target)
    run, _ = render(tmp_path, "--check", "--diff")
    assert run.returncode == 0, run.text
    result = task_results(run.output)[TEMPLATE_TASK]
    assert result["changed"] is True
    diff = result["diff"][0] if isinstance(result["diff"], list) else result["diff"]
    assert "policyd-spf" not in diff["before"] and "policyd-spf unix" in diff["after"]
    assert services(diff["after"]) == [*STOCK_SERVICES, POLICYD_SPF]
    assert target.read_bytes() == STOCK.read_bytes()


def test_a_second_run_changes_nothing(tmp_path):
    first, _ = render(tmp_path)
    second, _ = render(tmp_path)
    assert first.returncode == second.returncode == 0, second.text
    assert task_results(first.output)[TEMPLATE_TASK]["changed"] is True
    assert task_results(second.output)[TEMPLATE_TASK]["changed"] is False


def test_extra_services_replace_in_place_remove_and_add(tmp_path):
    extra = [
        # postscreen in front of smtpd (master(5)'s and Debian's commented example), with its helpers.
        {"name": "smtp", "type": "inet", "private": "n", "chroot": "y", "maxproc": "1", "command": "postscreen"},
        {"name": "smtpd", "type": "pass", "chroot": "y", "command": "smtpd",
         "options": ["syslog_name=postfix/smtpd", "smtpd_client_restrictions=permit_mynetworks, reject"]},
        {"name": "dnsblog", "type": "unix", "chroot": "y", "maxproc": 0, "command": "dnsblog"},
        {"name": "maildrop", "type": "unix", "state": "absent"},
        {"name": "policyd-spf", "type": "unix", "state": "absent"},
    ]
    text = rendered(tmp_path, postfix_master_services_extra=extra)
    found = services(text)
    assert found[0] == "smtp inet n - y - 1 postscreen"
    assert "smtpd pass - - y - - smtpd -o syslog_name=postfix/smtpd " \
           "-o { smtpd_client_restrictions=permit_mynetworks, reject }" in found
    assert "dnsblog unix - - y - 0 dnsblog" in found
    assert not [service for service in found if service.startswith(("maildrop ", "policyd-spf ", "smtp inet - "))]
    assert len(found) == len(STOCK_SERVICES) - 1 + 2
    assert "  -o syslog_name=postfix/smtpd\n" in text


def test_the_first_write_keeps_the_live_services_it_removes_until_main_cf_is_written(tmp_path):
    old = "oldpolicy unix - n n - 0 spawn user=nobody argv=/bin/true"
    # As postconf -M prints a service: one line, in columns.
    live = [*STOCK_SERVICES, "oldpolicy  unix  -       n       n       -       0       " + old.split(None, 7)[7]]
    first = rendered(tmp_path, live_services=live, keep_live_removed=True)
    assert services(first) == [*STOCK_SERVICES, POLICYD_SPF, old]
    second = rendered(tmp_path, live_services=live, keep_live_removed=False)
    assert services(second) == [*STOCK_SERVICES, POLICYD_SPF]
    # Nothing removed: both writes are the same file.
    same = rendered(tmp_path, live_services=[*STOCK_SERVICES, POLICYD_SPF], keep_live_removed=True)
    assert same == second


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        pytest.param({"name": "foo", "type": "unix"}, "has no command", id="missing-command"),
        pytest.param({"name": "foo", "type": "tcp", "command": "smtpd"}, '"tcp"', id="bad-type"),
        pytest.param({"name": "foo", "type": "unix", "private": "yes", "command": "smtpd"}, '"yes"', id="bad-flag"),
        pytest.param({"name": "foo", "type": "unix", "wakeup": "often", "command": "smtpd"}, '"often"', id="wakeup"),
        pytest.param({"name": "foo", "type": "unix", "maxproc": "many", "command": "smtpd"}, '"many"', id="maxproc"),
        pytest.param({"name": "foo", "type": "unix", "command": "/usr/sbin/foo"}, '"/usr/sbin/foo"', id="path"),
        pytest.param({"name": "foo", "type": "unix", "command": "smtpd", "options": ["smtpd_tls_security_level"]},
                     '"smtpd_tls_security_level"', id="option-without-value"),
        pytest.param({"name": "foo", "type": "unix", "command": "smtpd", "options": "syslog_name=x"},
                     '"syslog_name=x"', id="options-not-a-list"),
        pytest.param({"name": "two words", "type": "unix", "command": "smtpd"}, '"two words"', id="name"),
        pytest.param({"name": "foo", "type": "unix", "command": "smtpd", "state": "gone"}, '"gone"', id="state"),
    ],
)
def test_the_preflight_refuses_a_bad_service_naming_it(entry, named):
    run = run_playbook("tests/ansible/postfix_preflight.yml",
                       {"postfix_myhostname": "mx1.lab.test", "postfix_master_services_extra": [entry]})
    messages = " ".join(failed_messages(run.output))
    assert run.returncode != 0
    assert "postfix_master_services_extra" in messages and named in messages, messages


def test_the_preflight_refuses_a_service_named_twice():
    twice = {"name": "policyd-spf", "type": "unix", "command": "spawn user=nobody argv=/bin/true"}
    run = run_playbook("tests/ansible/postfix_preflight.yml",
                       {"postfix_myhostname": "mx1.lab.test", "postfix_master_services_extra": [twice, twice]})
    messages = " ".join(failed_messages(run.output))
    assert run.returncode != 0
    assert "postfix_master_services_extra" in messages and "policyd-spf/unix" in messages, messages


def test_the_preflight_accepts_an_absent_entry_without_command_and_a_replacement():
    run = run_playbook("tests/ansible/postfix_preflight.yml", {
        "postfix_myhostname": "mx1.lab.test",
        "postfix_master_services": [{"name": "policyd-spf", "type": "unix", "state": "absent"}],
        "postfix_master_services_extra": [{"name": "smtp", "type": "inet", "private": "n", "chroot": "y",
                                           "maxproc": 1, "wakeup": 0, "command": "postscreen"}],
    })
    assert run.returncode == 0, json.dumps(failed_messages(run.output))
