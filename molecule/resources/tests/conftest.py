"""The lab as pytest sees it: the mail host under test, the clients and their SMTP probe.

The same behaviour tests prove the Postfix stack (scenario default, mx1) and the Exim stack
(scenario exim, exim1): each scenario's molecule.yml points its verifier here and names its MTA
in MAILGUARD_MTA. What differs between the two MTAs (reply codes and texts, how to read the
queue, the limits and files to look at) lives in the Postfix and Exim classes below.

Every dialogue is real: `docker exec <client> smtp-probe ...` talks SMTP from the client's own
address to the mail host, which resolves names through the lab DNS server only. Senders are
unique per run (greylisting daemons keep their triplets for weeks), so re-running verify never
meets an old triplet.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import ClassVar

import pytest
import testinfra
import yaml

RESOURCES = Path(__file__).resolve().parents[1]
LAB = yaml.safe_load((RESOURCES / "lab.yml").read_text())


class MailHost:
    """What the tests need to know about one MTA stack; subclasses fill it in."""

    name = ""
    label = ""
    # Shell commands that stop the MTA's daemon for good and start it again.
    stop_command = ""
    start_command = ""
    container = ""
    address_key = ""  # the lab.yml key of the host's address
    name_key = ""  # the lab.yml key of the host's name
    greylist_code = 0
    accepted_text = ""  # regex of the reply to a queued message
    whitelist = ""  # the providers' whitelist, as installed by spf_whitelist
    watched = ()  # live configuration and whitelist: a broken run must leave them as they are
    # Verb and reply code at which a stranger's greeting is judged: Postfix delays every
    # verdict to RCPT (smtpd_delay_reject), Exim's greeting checks run at MAIL.
    helo_verdict_verb = ""
    # The greylist daemon's systemd unit (postgrey, greylistd): tests stop it to see the MTA fail open.
    greylist_service = ""
    # case -> (extra variables, the value the failure must name)
    broken_inputs: ClassVar[dict[str, tuple[dict, str]]] = {}

    def __init__(self, host) -> None:
        self.host = host

    @property
    def address(self) -> str:
        return LAB[self.address_key]

    @property
    def hostname(self) -> str:
        return LAB[self.name_key]

    def queue(self) -> list[str]:
        """One line per queued message; empty when the queue is empty."""
        raise NotImplementedError

    def greylist_delay(self) -> int:
        raise NotImplementedError

    def connection_rate_limit(self) -> int:
        raise NotImplementedError

    def rate_limit_exceptions(self) -> str:
        raise NotImplementedError

    def invalid_helo_verdict(self) -> tuple[str, int]:
        """(verb, code) of the refusal of a greeting with characters no host name has."""
        raise NotImplementedError

    def fresh_recipient(self, user: str) -> str:
        """A lab.test address of user that no greylisting triplet holds yet, where the MTA allows one."""
        raise NotImplementedError

    def message_rate_limit(self) -> int:
        """Messages one client may send per rate-limit period (Postfix's anvil, Exim's per_mail ratelimit)."""
        raise NotImplementedError

    def greylist_answers(self) -> bool:
        """Whether the greylist daemon accepts a connection where the MTA asks it."""
        raise NotImplementedError

    def roots_mailbox(self) -> str:
        """The local user whose mailbox receives root's mail (after /etc/aliases)."""
        raise NotImplementedError


class Postfix(MailHost):
    name = "postfix"
    label = "Postfix"  # as the rollout's health check names the MTA
    stop_command = "systemctl stop postfix"
    start_command = "systemctl start postfix"
    container = "mx1"
    address_key = "lab_mx_address"
    name_key = "lab_mx_name"
    greylist_code = 450
    accepted_text = r"queued as"
    # The providers' networks: the cidr table smtpd asks before postgrey (postgrey's own list
    # holds only the static names: mailguard_provider_clients_skip_greylist).
    whitelist = "/etc/postfix/mailguard_provider_clients.cidr"
    greylist_service = "postgrey"
    watched = ("/etc/postfix/main.cf", whitelist, "/etc/postgrey/whitelist_clients.local")
    helo_verdict_verb = "RCPT"
    broken_inputs: ClassVar[dict[str, tuple[dict, str]]] = {
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

    def postconf(self, name: str) -> str:
        """The value Postfix really uses."""
        return self.host.check_output("postconf -h %s", name).strip()

    def queue(self) -> list[str]:
        return [
            json.dumps({k: m.get(k) for k in ("queue_name", "sender", "recipients")})
            for m in map(json.loads, self.host.check_output("postqueue -j").splitlines())
        ]

    def greylist_delay(self) -> int:
        """The running postgrey's --delay (postgrey's default is 300 s)."""
        running = [
            line for line in self.host.check_output("ps -eo args").splitlines() if re.match(r"(\S*/)?postgrey ", line)
        ]
        assert running, "postgrey does not run on mx1"
        found = re.search(r"--delay[= ](\d+)", running[0])
        return int(found.group(1)) if found else 300

    def connection_rate_limit(self) -> int:
        return int(self.postconf("smtpd_client_connection_rate_limit"))

    def rate_limit_exceptions(self) -> str:
        return self.postconf("smtpd_client_event_limit_exceptions")

    def invalid_helo_verdict(self) -> tuple[str, int]:
        return "RCPT", int(self.postconf("invalid_hostname_reject_code"))

    def fresh_recipient(self, user: str) -> str:
        # recipient_delimiter = +: user+anything is delivered to user, and postgrey keeps it apart.
        return f"{user}+{uuid.uuid4().hex[:12]}@lab.test"

    def message_rate_limit(self) -> int:
        return int(self.postconf("smtpd_client_message_rate_limit"))

    def greylist_log(self, since: float) -> list[str]:
        """postgrey's journal lines since the epoch second `since` (it logs every decision:
        action=greylist, action=pass with its reason, each with client_address=)."""
        out = self.host.check_output("journalctl -u %s --since @%s -o cat --no-pager", self.greylist_service,
                                     str(int(since)))
        return out.splitlines()

    def greylist_answers(self) -> bool:
        # The listener smtpd asks (the last check_policy_service, inet:HOST:PORT).
        found = re.findall(r"inet:([0-9.]+):(\d+)", self.postconf("smtpd_recipient_restrictions"))
        assert found, "no greylisting policy service on inet: in smtpd_recipient_restrictions"
        host, port = found[-1]
        return self.host.run("timeout 2 bash -c %s", f"</dev/tcp/{host}/{port}").rc == 0

    def roots_mailbox(self) -> str:
        # postalias -q exits 1 when root has no alias: its mail stays in /var/mail/root.
        target = self.host.run("postalias -q root hash:/etc/aliases").stdout.strip() or "root"
        user, _, domain = target.partition("@")
        local_domains = re.split(r"[\s,]+", self.postconf("mydestination"))
        assert "," not in target and (not domain or domain in local_domains), (
            f"root's mail goes to {target}: not one local mailbox the test can read"
        )
        return user


class Exim(MailHost):
    name = "exim"
    label = "Exim"
    # Not "systemctl stop exim4": Debian's script finds the daemon through /proc/PID/exe, which
    # root cannot read in a container once the daemon runs as Debian-exim (see the exim4 role's
    # handlers), so it reports success and stops nothing.
    stop_command = "pkill -f '^/usr/sbin/exim4 -bd'"
    start_command = "systemctl restart exim4"
    container = "exim1"
    address_key = "lab_exim_address"
    name_key = "lab_exim_name"
    greylist_code = 451
    accepted_text = r"OK id="
    whitelist = "/etc/exim4/mailguard/greylist-whitelist-hosts"
    greylist_service = "greylistd"
    greylistd_socket = "/var/run/greylistd/socket"
    # The configuration the daemon reads (update-exim4.conf builds it from /etc/exim4).
    live_config = "/var/lib/exim4/config.autogenerated"
    watched = (live_config, "/etc/exim4/conf.d/main/00_mailguard_macros", whitelist)
    helo_verdict_verb = "MAIL"
    broken_inputs: ClassVar[dict[str, tuple[dict, str]]] = {
        "bad-static-entry": ({"spf_whitelist_static_entries": ["300.1.2.3/24"]}, "300.1.2.3/24"),
        # 172.30.53.300 is no address: Exim would only notice when a client connects.
        "bad-exempt-host": ({"exim4_rate_limit_exempt_hosts": ["172.30.53.300/32"]}, "172.30.53.300/32"),
    }

    def config_line(self, pattern: str) -> re.Match:
        """The first match of pattern (multiline) in the live configuration."""
        found = re.search(pattern, self.host.file(self.live_config).content_string, re.MULTILINE)
        assert found, f"{pattern} not in {self.live_config}"
        return found

    def queue(self) -> list[str]:
        return [line for line in self.host.check_output("exim4 -bp").splitlines() if line.strip()]

    def greylist_delay(self) -> int:
        """greylistd's retryMin (greylistd's default is 600 s)."""
        found = re.search(r"^\s*retryMin\s*=\s*(\d+)", self.host.file("/etc/greylistd/config").content_string, re.M)
        return int(found.group(1)) if found else 600

    def connection_rate_limit(self) -> int:
        return int(self.config_line(r"^\s*ratelimit\s*=\s*(\d+)\s*/").group(1))

    def rate_limit_exceptions(self) -> str:
        return self.config_line(r"^hostlist\s+mailguard_rate_limit_exempt_hosts\s*=(.*)$").group(1)

    def invalid_helo_verdict(self) -> tuple[str, int]:
        # Exim's own syntax check (helo_allow_chars), before any ACL.
        return "HELO", 501

    def message_rate_limit(self) -> int:
        # The MAIL ACL's per_mail ratelimit (the connect ACL's is per_conn).
        return int(self.config_line(r"^\s*ratelimit\s*=\s*(\d+)\s*/\s*\S+\s*/\s*per_mail\b").group(1))

    def fresh_recipient(self, user: str) -> str:
        # Debian's Exim routers know no address extensions: the plain address (a verify rerun
        # within greylistd's memory meets a known triplet).
        return f"{user}@lab.test"

    def greylist_answers(self) -> bool:
        connect = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
        return self.host.run("python3 -c %s %s", connect, self.greylistd_socket).rc == 0


MAIL_HOSTS = {cls.name: cls for cls in (Postfix, Exim)}


def mta_name() -> str:
    name = os.environ.get("MAILGUARD_MTA", "")
    if name not in MAIL_HOSTS:
        raise pytest.UsageError(f"MAILGUARD_MTA must be one of {sorted(MAIL_HOSTS)} (molecule.yml verifier env)")
    return name


def pytest_configure(config):
    config.addinivalue_line("markers", "only_mta(name, reason=...): the test applies to one MTA stack only")
    mta_name()


def pytest_runtest_setup(item):
    for marker in item.iter_markers("only_mta"):
        if marker.args[0] != mta_name():
            reason = marker.kwargs.get("reason")
            pytest.skip(f"{marker.args[0]} only" + (f": {reason}" if reason else ""))


def pytest_generate_tests(metafunc):
    if "broken_case" in metafunc.fixturenames:
        metafunc.parametrize("broken_case", list(MAIL_HOSTS[mta_name()].broken_inputs))


@pytest.fixture(scope="session")
def lab() -> dict:
    """The lab contract: addresses, clients, zones (molecule/resources/lab.yml)."""
    return LAB


@pytest.fixture(scope="session")
def mta() -> MailHost:
    """The mail host under test and what its MTA answers, through `docker exec`."""
    cls = MAIL_HOSTS[mta_name()]
    return cls(testinfra.get_host(f"docker://{cls.container}"))


@pytest.fixture(scope="session")
def mx(mta):
    """The mail host's testinfra host."""
    return mta.host


class Probe:
    """Runs smtp-probe in a client container against the mail host and returns its JSON."""

    def __init__(self, lab: dict, server: str) -> None:
        self.lab = lab
        self.server = server

    def __call__(self, client: str, *args: str, helo: str | None = None, timeout: int = 60) -> Result:
        """probe('legit-mta', '--from', 'a@legit.test', '--to', 'alice@lab.test'); EHLO with the
        client's lab HELO name unless args greet otherwise ('--helo=-bad_', '--no-helo')."""
        greets = any(arg.split("=")[0] in ("--no-helo", "--helo", "--ehlo") for arg in args)
        greeting = [] if greets else ["--ehlo", helo or self.helo(client)]
        command = ["smtp-probe", "--server", self.server, *greeting, *args]
        argv = ["timeout", str(timeout), *command]
        done = testinfra.get_host(f"docker://{client}").run(" ".join(["%s"] * len(argv)), *argv)
        assert done.rc == 0, f"smtp-probe on {client} failed (rc {done.rc}): {done.stdout} {done.stderr}"
        result = Result(client, json.loads(done.stdout))
        print(f"== {client} -> {self.server}\n{result}")  # the dialogue, in the report of a failure (or -rP)
        return result

    def helo(self, client: str) -> str:
        return self.lab["lab_clients"][client]["helo"]


class Result:
    """One probe's output, with lookups by SMTP verb."""

    def __init__(self, client: str, data: dict) -> None:
        self.client = client
        self.data = data
        self.steps = data.get("steps", [])
        self.connections = data.get("connections", [])

    def replies(self, verb: str) -> list[dict]:
        """Every step whose command starts with verb ('RCPT', 'MAIL', '<message>'...)."""
        return [step for step in self.steps if step["command"].upper().startswith(verb.upper())]

    def reply(self, verb: str) -> dict:
        found = self.replies(verb)
        assert found, f"no {verb} step in the dialogue from {self.client}:\n{self}"
        return found[-1]

    def code(self, verb: str) -> int | None:
        return self.reply(verb)["code"]

    def __str__(self) -> str:
        lines = [f"{s['command']} -> {s['code']} {s['text']}" for s in self.steps]
        lines += [json.dumps(c) for c in self.connections]
        return "\n".join(lines)


@pytest.fixture(scope="session")
def probe(lab, mta, smtp_ready) -> Probe:
    return Probe(lab, mta.address)


@pytest.fixture(scope="session")
def smtp_ready(mta):
    """Wait (briefly) until the MTA greets: the last handler may have just reloaded it."""
    client = testinfra.get_host("docker://legit-mta")
    deadline = time.monotonic() + 30
    while True:
        done = client.run(
            "python3 -c 'import smtplib,sys; s=smtplib.SMTP(sys.argv[1], 25, timeout=15); s.quit()' %s", mta.address
        )
        if done.rc == 0:
            return
        assert time.monotonic() < deadline, f"{mta.container} does not greet on port 25: {done.stderr}"
        time.sleep(1)


@pytest.fixture
def sender():
    """sender('legit.test') -> a sender address never used before (a new greylisting triplet)."""

    def make(domain: str, tag: str = "probe") -> str:
        return f"{tag}-{uuid.uuid4().hex[:12]}@{domain}"

    return make
