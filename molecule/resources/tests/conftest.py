"""The lab as pytest sees it: the mail host, the clients and their SMTP probe.

Every dialogue is real: `docker exec <client> smtp-probe ...` talks SMTP from the client's own
address to mx1, and mx1 resolves names through the lab DNS server only. Senders are unique per
run (postgrey keeps its triplets for weeks), so re-running verify never meets an old triplet.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
MAIL_HOST = "mx1"


@pytest.fixture(scope="session")
def lab() -> dict:
    """The lab contract: addresses, clients, zones (molecule/resources/lab.yml)."""
    return yaml.safe_load((RESOURCES / "lab.yml").read_text())


@pytest.fixture(scope="session")
def mx():
    """The mail host under test, through `docker exec`."""
    return testinfra.get_host(f"docker://{MAIL_HOST}")


@pytest.fixture(scope="session")
def postconf(mx):
    """postconf('name') -> the value Postfix really uses on mx1."""

    def read(name: str) -> str:
        return mx.check_output("postconf -h %s", name).strip()

    return read


@pytest.fixture(scope="session")
def greylist_delay(mx) -> int:
    """The delay the running postgrey really applies (its --delay; postgrey's default is 300 s)."""
    running = [line for line in mx.check_output("ps -eo args").splitlines() if re.match(r"(\S*/)?postgrey ", line)]
    assert running, "postgrey does not run on mx1"
    found = re.search(r"--delay[= ](\d+)", running[0])
    return int(found.group(1)) if found else 300


class Probe:
    """Runs smtp-probe in a client container against mx1 and returns its JSON."""

    def __init__(self, lab: dict) -> None:
        self.lab = lab

    def __call__(self, client: str, *args: str, helo: str | None = None, timeout: int = 60) -> Result:
        """probe('legit-mta', '--from', 'a@legit.test', '--to', 'alice@lab.test'); EHLO with the
        client's lab HELO name unless args greet otherwise ('--helo=-bad_', '--no-helo')."""
        greets = any(arg.split("=")[0] in ("--no-helo", "--helo", "--ehlo") for arg in args)
        greeting = [] if greets else ["--ehlo", helo or self.helo(client)]
        command = ["smtp-probe", "--server", self.lab["lab_mx_address"], *greeting, *args]
        argv = ["timeout", str(timeout), *command]
        done = testinfra.get_host(f"docker://{client}").run(" ".join(["%s"] * len(argv)), *argv)
        assert done.rc == 0, f"smtp-probe on {client} failed (rc {done.rc}): {done.stdout} {done.stderr}"
        return Result(client, json.loads(done.stdout))

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
def probe(lab, smtp_ready) -> Probe:
    return Probe(lab)


@pytest.fixture(scope="session")
def smtp_ready(mx, lab):
    """Wait (briefly) until mx1's Postfix greets: the last handler may have just reloaded it."""
    client = testinfra.get_host("docker://legit-mta")
    deadline = time.monotonic() + 30
    while True:
        done = client.run(
            "python3 -c 'import smtplib,sys; s=smtplib.SMTP(sys.argv[1], 25, timeout=5); s.quit()' %s",
            lab["lab_mx_address"],
        )
        if done.rc == 0:
            return
        assert time.monotonic() < deadline, f"mx1 does not greet on port 25: {done.stderr}"
        time.sleep(1)


@pytest.fixture
def sender():
    """sender('legit.test') -> a sender address never used before (a new greylisting triplet)."""

    def make(domain: str, tag: str = "probe") -> str:
        return f"{tag}-{uuid.uuid4().hex[:12]}@{domain}"

    return make
