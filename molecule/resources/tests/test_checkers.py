"""Every checker the roles install refuses a broken copy of the file it guards, and takes the live one.

The roles validate each file with these checkers before it goes live (`validate:` or a task before
the install). A checker that accepts everything would let a broken file through silently, so each
one gets the live file (must pass: the roles wrote it) and a copy with one mistake of the kind the
daemon itself would only log and skip (must fail, naming the mistake). The whitelist checkers
(postgrey, sqlgrey, Exim host lists) have their own tests in tests/roles.
"""

from __future__ import annotations

import os
import shlex
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    checker: str  # the command, without the file argument
    live: str  # the file (or candidate directory) the roles installed
    mistake: str  # a shell command that turns the copy at $COPY into a broken one
    named: str  # what the checker's complaint must contain


CASES = {
    "postfix": {
        "main.cf: a number that is no number": Case(
            "/usr/local/sbin/postfix-check-main-cf", "/etc/postfix/main.cf",
            "echo 'smtpd_client_connection_rate_limit = many' >> $COPY", "many"),
        "main.cf: an address that is no address in mynetworks": Case(
            "/usr/local/sbin/postfix-check-main-cf", "/etc/postfix/main.cf",
            "echo 'mynetworks = 127.0.0.0/8 300.1.2.3' >> $COPY", "300.1.2.3"),
        "aliases: a line without a colon": Case(
            "/usr/local/sbin/postfix-check-aliases", "/etc/aliases", "echo 'webmaster root' >> $COPY", "name:value"),
        "cidr table: a network with host bits": Case(
            "/usr/local/sbin/postfix-check-table cidr", "/etc/postfix/mailguard_provider_clients.cidr",
            "printf '192.0.2.1/24\\tpermit\\n' >> $COPY", "192.0.2.1/24"),
        "policyd-spf.conf: a skip address with host bits": Case(
            "/usr/local/sbin/policyd-spf-conf-check", "/etc/postfix-policyd-spf-python/policyd-spf.conf",
            "echo 'skip_addresses = 127.0.0.1/8' >> $COPY", "127.0.0.1/8"),
    },
    "exim": {
        "greylistd config: a delay that is no number": Case(
            "/usr/local/sbin/greylistd-config-check", "/etc/greylistd/config",
            "sed -i 's/^retryMin *=.*/retryMin = soon/' $COPY", "soon"),
        "Exim configuration: an option Exim does not know": Case(
            "/usr/local/sbin/exim4-mailguard-check", "/var/lib/mailguard/exim4-candidate",
            "echo 'mailguard_no_such_option = 1' >> $COPY/conf.d/main/00_mailguard_macros",
            "mailguard_no_such_option"),
    },
}


def pytest_generate_tests(metafunc):
    if "checker_case" in metafunc.fixturenames:
        # MAILGUARD_MTA (molecule.yml) is checked by conftest.py.
        cases = CASES[os.environ.get("MAILGUARD_MTA", "")]
        metafunc.parametrize(("case_name", "checker_case"), list(cases.items()), ids=list(cases))


def test_the_checker_takes_the_live_file_and_refuses_a_broken_copy(mx, case_name, checker_case):
    case = checker_case
    live = mx.run(f"{case.checker} {shlex.quote(case.live)}")
    assert live.rc == 0, f"{case_name}: the checker refuses the live {case.live}: {live.stdout}{live.stderr}"

    copy = f"/tmp/mailguard-checker-{uuid.uuid4().hex[:8]}"
    try:
        mx.check_output(f"cp -a {shlex.quote(case.live)} {copy}")
        mx.check_output(f"COPY={copy}; {case.mistake}")
        broken = mx.run(f"{case.checker} {copy}")
    finally:
        mx.run(f"rm -rf {copy}")
    assert broken.rc != 0, f"{case_name}: the broken copy passed: {broken.stdout}{broken.stderr}"
    assert case.named in broken.stdout + broken.stderr, (
        f"{case_name}: the complaint does not name {case.named!r}: {broken.stdout}{broken.stderr}")
