"""The postfix role's master.cf checker, run as the role runs it: `validate: CHECKER %s`.

roles/postfix/files/postfix-check-master-cf copies the candidate next to the live main.cf and runs
Postfix's own parser (postconf -M, -nx), then what postconf lets pass (duplicates, a command that
is no program of daemon_directory, -o without a value). It needs Postfix: the tests run it with
the controller's postconf when there is one, else in a throwaway container of the lab's base
image (mailguard/debian12-systemd, apt-get install postfix: ~20 s); without either they are skipped.
The candidate and the "live" configuration directory are files the test writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.playbook import run_playbook

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "roles/postfix/files/postfix-check-master-cf"
STOCK = REPO / "tests/ansible/files/debian12-postfix-3.7.11-master.cf"
IMAGE = "mailguard/debian12-systemd:latest"
POLICYD_SPF = "policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf\n"
MAIN_CF = "compatibility_level = 3.6\nbiff = no\npolicyd-spf_time_limit = 3600\n"


def docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False, timeout=30)
    return done.returncode == 0


@pytest.fixture(scope="module")
def postfix(tmp_path_factory):
    """A function (args) -> CompletedProcess that runs a command where Postfix is installed.

    Files live under one shared directory, at the same path for the host and the container.
    """
    shared = Path(tempfile.mkdtemp(prefix="postfix-master-check-"))
    if shutil.which("postconf"):
        yield shared, lambda args: subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        shutil.rmtree(shared)
        return
    if not docker_usable():
        shutil.rmtree(shared)
        pytest.skip(f"needs Postfix's postconf: not installed here, and docker or the image {IMAGE} is missing")
    name = f"mfhelper-postfix-check-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-v", f"{shared}:{shared}",
                    "--entrypoint", "sleep", IMAGE, "infinity"], check=True, capture_output=True, timeout=60)
    try:
        install = ("echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections"
                   " && apt-get update -qq && apt-get install -y -qq --no-install-recommends postfix")
        done = subprocess.run(["docker", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", name, "sh", "-c", install],
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"cannot install postfix in {IMAGE}: {done.stderr[-500:]}")
        yield shared, lambda args: subprocess.run(["docker", "exec", name, *args], capture_output=True, text=True,
                                                  check=False, timeout=60)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False, timeout=60)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture
def check(postfix, request):
    """check(candidate text, live main.cf text) -> CompletedProcess of the checker."""
    shared, run = postfix
    case = shared / request.node.name.replace("/", "_")
    live = case / "live"
    live.mkdir(parents=True)
    shutil.copyfile(CHECKER, case / "checker")

    def _check(candidate: str, main_cf: str = MAIN_CF, live_master_cf: str | None = None):
        (live / "main.cf").write_text(main_cf, encoding="utf-8")
        stock_and_spf = STOCK.read_text(encoding="utf-8") + POLICYD_SPF
        (live / "master.cf").write_text(live_master_cf or stock_and_spf, encoding="utf-8")
        (case / "candidate.cf").write_text(candidate, encoding="utf-8")
        return run(["python3", str(case / "checker"), str(case / "candidate.cf"), str(live)])

    return _check


def stock_plus(*lines: str) -> str:
    return STOCK.read_text(encoding="utf-8") + POLICYD_SPF + "".join(line + "\n" for line in lines)


STOCK_LINES = len(STOCK.read_text(encoding="utf-8").splitlines()) + 1  # with policyd-spf


def assert_refused(result, *words: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def test_the_rendered_master_cf_passes(check, tmp_path):
    done = run_playbook("tests/ansible/postfix_master_cf.yml", {
        "postfix_myhostname": "mx1.lab.test", "ansible_python_interpreter": sys.executable,
        "render_dir": str(tmp_path)})
    assert done.returncode == 0, done.text
    result = check((tmp_path / "master.cf").read_text(encoding="utf-8"))
    assert (result.returncode, result.stderr) == (0, "")


def test_debians_stock_master_cf_passes_with_a_main_cf_that_names_no_policyd_spf(check):
    result = check(STOCK.read_text(encoding="utf-8"), main_cf="compatibility_level = 3.6\n")
    assert (result.returncode, result.stderr) == (0, "")


def test_usage(postfix):
    shared, run = postfix
    shutil.copyfile(CHECKER, shared / "usage-checker")
    result = run(["python3", str(shared / "usage-checker")])
    assert result.returncode == 2 and "Usage" in result.stderr


@pytest.mark.parametrize(
    ("line", "words"),
    [
        pytest.param("foo bogus - - y - - smtpd", ['invalid type field "bogus"'], id="unknown-type"),
        pytest.param("foo unix - - y - smtpd", ["bad field count"], id="field-count"),
        pytest.param("foo unix x - y - - smtpd", ['invalid private field "x"'], id="bad-flag"),
        pytest.param("foo unix - - y soon - smtpd", ['invalid wakeup field "soon"'], id="bad-wakeup"),
        pytest.param("foo unix - - y - - nosuchdaemon", ["'nosuchdaemon' is no program of daemon_directory"],
                     id="unknown-command"),
        pytest.param("smtp unix - - y - - smtp", ["duplicate service smtp/unix"], id="duplicate"),
        pytest.param("foo unix - - y - - smtpd\n  -o smtpd_tls_security_level", ["-o smtpd_tls_security_level is not"],
                     id="option-without-value"),
        pytest.param("foo unix - - y - - smtpd\n  -o no_such_parameter=1", ["unused parameter: no_such_parameter=1"],
                     id="unknown-option"),
    ],
)
def test_a_broken_service_is_refused_naming_its_line(check, line, words):
    stderr = assert_refused(check(stock_plus(line)), *words)
    assert f"line {STOCK_LINES + 1}:" in stderr


def test_removing_a_service_whose_parameters_main_cf_still_names_is_refused(check):
    assert_refused(check(STOCK.read_text(encoding="utf-8")), "unused parameter: policyd-spf_time_limit=3600",
                   "removes a service that main.cf still configures")


def test_a_problem_main_cf_has_with_the_live_master_cf_too_is_not_the_candidates(check):
    result = check(stock_plus("dnsblog unix - - y - 0 dnsblog"), main_cf=MAIN_CF + "foo_unknown = 1\n")
    assert (result.returncode, result.stderr) == (0, "")
