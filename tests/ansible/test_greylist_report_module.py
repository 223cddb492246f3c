"""The module greylist_report and the playbook greylist_report.yml through ansible-playbook, on the controller.

The module runs greylog's own code path (greylog.cli.generate) on real-format log lines
(tests/greylog/greylog_lab.py); the playbook gathers the same lines from "mail hosts" that are
the controller itself (local connection), fetches them and reports once.
"""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest

from tests.greylog import greylog_lab as lab
from tests.support.playbook import failed_messages, run_playbook, task_results

MODULE_PLAYBOOK = "tests/ansible/greylist_report_module.yml"
REPORT_TASK = "Report over the logs of every host, once, on the controller"
LOCAL = {"ansible_python_interpreter": sys.executable}

# The rotation (oldest): a message greylisted by postgrey and Postfix at 08:00:01.
OLDER = [lab.POSTGREY_NEW, lab.POSTFIX_REJECT]
# The live log: its pass 6 minutes later, its delivery, a bot never retried, and the last line at 12:00.
NEWER = [
    lab.POSTGREY_PASS,
    *lab.POSTFIX_ACCEPTED,
    "Dec  5 09:00:00 mx1 postgrey[50]: action=greylist, reason=new, client_name=unknown, "
    "client_address=203.0.113.99, sender=bot@spam.test, recipient=bob@example.org",
    "Dec  5 12:00:00 mx1 postfix/anvil[9]: statistics: max connection rate 1/60s",
]


@pytest.fixture
def logs(tmp_path):
    """mail.log.1.gz (gzipped rotation) and mail.log, as logrotate leaves them."""
    directory = tmp_path / "log"
    directory.mkdir()
    with gzip.open(directory / "mail.log.1.gz", "wt") as rotated:
        rotated.write("\n".join(OLDER) + "\n")
    (directory / "mail.log").write_text("\n".join(NEWER) + "\n")
    return directory


def assert_figures(report: dict) -> None:
    assert report["triplets"] == {"greylisted": 2, "passed": 1, "passed_elsewhere": 0, "retried_not_passed": 0,
                                  "never_retried": 1, "too_recent": 0}
    assert report["messages"]["delay"] == {"count": 1, "p50": 360, "p95": 360, "max": 360}
    rows = {row["name"]: row for row in report["by_sender_domain"]}
    assert rows["pool.test"]["passed"] == 1 and rows["pool.test"]["delay"]["max"] == 360
    assert rows["spam.test"]["never_retried"] == 1 and rows["spam.test"]["passed"] == 0
    assert report["lines_unparsed"] == 0


def module(variables: dict, *args: str) -> dict:
    done = run_playbook(MODULE_PLAYBOOK, {**LOCAL, **variables}, *args)
    return task_results(done.output)["Report"]


def test_module_reports_the_figures_of_the_logs(logs):
    result = module({"report_paths": [str(logs / "mail.log.1.gz"), str(logs / "mail.log")]})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert_figures(result["report"])
    assert result["report"]["inputs"] == [str(logs / "mail.log.1.gz"), str(logs / "mail.log")]
    assert "Triplets greylisted: 2" in result["output"]
    assert "  never retried:                         1" in result["output"]


def test_module_json_output_is_the_report(logs):
    result = module({"report_paths": [str(logs / "mail.log.1.gz"), str(logs / "mail.log")], "report_json": True})
    assert json.loads(result["output"]) == result["report"]


def test_module_min_age_makes_a_recent_triplet_too_recent(logs):
    # The bot's first try (09:00) is less than 4 h before the last line (12:00).
    result = module({"report_paths": [str(logs / "mail.log.1.gz"), str(logs / "mail.log")], "report_min_age": "4h"})
    assert result["report"]["triplets"]["never_retried"] == 0
    assert result["report"]["triplets"]["too_recent"] == 1


def test_module_runs_in_check_mode(logs):
    result = module({"report_paths": [str(logs / "mail.log.1.gz"), str(logs / "mail.log")]}, "--check")
    assert not result.get("failed"), result
    assert_figures(result["report"])


def test_a_missing_log_is_one_clear_failure(logs):
    missing = logs / "mail.log.2.gz"
    result = module({"report_paths": [str(missing), str(logs / "mail.log")]})
    assert result["failed"] is True
    assert result["msg"] == f"cannot read {missing}: No such file or directory"
    assert "report" not in result and "Traceback" not in json.dumps(result)


@pytest.mark.parametrize(("variables", "message"), [
    ({"report_min_age": "soon"}, "min_age: 'soon' is not a duration"),
    ({"report_ipv4_prefix": 33}, "ipv4_prefix: '33' is not a prefix length from 1 to 32"),
])
def test_bad_options_name_the_module_option(logs, variables, message):
    result = module({"report_paths": [str(logs / "mail.log")], **variables})
    assert result["failed"] is True
    assert result["msg"].startswith(message), result["msg"]


# -- the playbook ------------------------------------------------------------------------------

@pytest.fixture
def inventory(tmp_path):
    """The controller as the one mail host (local connection, no become)."""
    path = tmp_path / "hosts.yml"
    path.write_text(json.dumps({"mail_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_become": False, **LOCAL}}}}))
    return path


def playbook(inventory, logs, tmp_path, *args: str, **variables):
    variables = {"greylist_report_logs": [str(logs / "mail.log")], "greylist_report_journal": False,
                 "greylist_report_json": True, **variables}
    return run_playbook("greylist_report.yml", variables, *args, target=("-i", str(inventory)))


def test_playbook_fetches_the_rotations_oldest_first_reports_once_and_leaves_nothing(inventory, logs, tmp_path):
    output = tmp_path / "report.json"
    done = playbook(inventory, logs, tmp_path, greylist_report_output=str(output))
    assert done.returncode == 0, failed_messages(done.output) or done.text
    report = json.loads(output.read_text())
    assert_figures(report)
    # Gzipped on the host, fetched under the host's name, the rotation first.
    assert [path.rsplit("/", 2)[1:] for path in report["inputs"]] == [
        ["localhost", "01-mail.log.1.gz"], ["localhost", "02-mail.log.gz"]]
    results = task_results(done.output)
    assert json.loads(results["Print the report"]["msg"]) == report
    # Neither the host's temporary directory nor the controller's is left behind.
    host_dir = results["Make the host's temporary directory under /var/tmp"]["path"]
    controller_dir = results["Make the controller's directory for the fetched logs"]["path"]
    assert host_dir.startswith("/var/tmp/greylist-report.")
    for directory in (host_dir, controller_dir):
        assert not os.path.exists(directory), directory
    assert done.output["stats"]["localhost"]["changed"] == 1  # the report file, nothing else


def test_playbook_runs_in_check_mode(inventory, logs, tmp_path):
    output = tmp_path / "report.json"
    done = playbook(inventory, logs, tmp_path, "--check", greylist_report_output=str(output))
    assert done.returncode == 0, failed_messages(done.output) or done.text
    assert_figures(task_results(done.output)[REPORT_TASK]["report"])
    assert not output.exists()
