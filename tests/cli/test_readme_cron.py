"""The README's cron entry, run as printed: postgrey is reloaded exactly when the file changed,
and cron has something to mail exactly when a domain fell back to its last known good list.

The entry runs under /bin/sh (as cron runs it) with the PATH it sets, behind a directory of
stand-ins: ``systemctl`` records its arguments; ``spf-netblocks`` runs the real command with
the printed arguments and appends the lab's name server, the documentation ranges the lab
zone uses, and a file in the test's directory (a later --output wins over the printed one).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.cli_lab import MODULE_UTILS, REPO
from tests.support.guard import allow_doc_args

MARKER = "<!-- cron-example -->"
RELOAD = "kill --signal=HUP --kill-whom=main postgrey.service"

PROVIDERS = {
    "records": {
        "gmail.com": {"TXT": ["v=spf1 redirect=_spf.google.com"]},
        "_spf.google.com": {"TXT": ["v=spf1 include:_netblocks.google.com include:_netblocks2.google.com ~all"]},
        "_netblocks.google.com": {"TXT": ["v=spf1 ip4:192.0.2.0/25 ~all"]},
        "_netblocks2.google.com": {"TXT": ["v=spf1 ip6:2001:db8:1::/48 ~all"]},
        "outlook.com": {"TXT": ["v=spf1 include:spf.protection.outlook.com -all"]},
        "spf.protection.outlook.com": {"TXT": ["v=spf1 ip4:198.51.100.0/25 -all"]},
        "amazonses.com": {"TXT": ["v=spf1 ip4:203.0.113.0/25 -all"]},
    },
}


def readme_cron_entry() -> tuple[dict[str, str], str]:
    """The environment settings and the one job command of the README's crontab example."""
    after_marker = (REPO / "README.md").read_text(encoding="utf-8").split(MARKER, 1)[1]
    assert after_marker.startswith("\n```sh\n"), "the marker must sit right above the example"
    block = after_marker.removeprefix("\n```sh\n").split("```", 1)[0]
    env, commands = {}, []
    for line in block.splitlines():
        name, is_setting, value = line.partition("=")
        if not line or line.startswith("#"):
            continue
        if is_setting and name.isidentifier():
            env[name] = value
        else:
            commands.append(line.split(None, 6)[6])  # minute hour day month weekday user command
    assert len(commands) == 1, commands
    return env, commands[0]


class CronLab:
    """The README's entry against the lab server, with stand-ins for the host's commands."""

    def __init__(self, server, tmp_path):
        self.server = server
        self.whitelist = tmp_path / "whitelist_clients.local"
        self.reloads = tmp_path / "systemctl.log"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        lab_options = ["--nameserver", server.address, "--port", str(server.port), *allow_doc_args(),
                       "--output", str(self.whitelist)]
        self._stand_in("spf-netblocks", f'PYTHONPATH="{MODULE_UTILS}" exec "{sys.executable}" -m spfwalk.cli '
                                        f'"$@" {" ".join(lab_options)}')
        self._stand_in("systemctl", f'printf "%s\\n" "$*" >> "{self.reloads}"')

    def _stand_in(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def run(self) -> subprocess.CompletedProcess:
        env, command = readme_cron_entry()
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True,
                               timeout=60, check=False)

    def reload_count(self) -> int:
        if not self.reloads.exists():
            return 0
        lines = self.reloads.read_text().splitlines()
        assert set(lines) <= {RELOAD}, lines
        return len(lines)

    def update(self, records: dict | None = None, faults: dict | None = None) -> None:
        zone = json.loads(json.dumps(PROVIDERS))
        zone["records"].update({name: {"TXT": [text]} for name, text in (records or {}).items()})
        self.server.update({**zone, "faults": faults or {}})


@pytest.fixture
def cron(dns_server, tmp_path):
    return CronLab(dns_server(PROVIDERS), tmp_path)


def _silent(result: subprocess.CompletedProcess) -> bool:
    return result.stdout == "" and result.stderr == ""


def test_the_readme_cron_entry_reloads_exactly_when_the_file_changed(cron):
    first = cron.run()
    assert _silent(first), first.stderr
    assert cron.reload_count() == 1
    assert "192.0.2.0/25" in cron.whitelist.read_text().splitlines()

    again = cron.run()
    assert _silent(again), again.stderr
    assert cron.reload_count() == 1  # nothing changed, postgrey keeps running undisturbed

    cron.update({"spf.protection.outlook.com": "v=spf1 ip4:198.51.100.0/24 -all"})
    changed = cron.run()
    assert _silent(changed), changed.stderr
    assert cron.reload_count() == 2
    assert "198.51.100.0/24" in cron.whitelist.read_text().splitlines()


def test_a_fallback_is_mailed_and_reloads_only_with_a_change(cron):
    assert _silent(cron.run())
    assert cron.reload_count() == 1
    before = cron.whitelist.read_bytes()

    cron.update(faults={"_netblocks2.google.com": {"servfail": True}})
    fallback = cron.run()
    assert "gmail.com: kept its 2 last known good netblock(s)" in fallback.stderr  # cron mails it
    assert cron.reload_count() == 1
    assert cron.whitelist.read_bytes() == before

    cron.update({"amazonses.com": "v=spf1 ip4:203.0.113.0/24 -all"},
                faults={"_netblocks2.google.com": {"servfail": True}})
    both = cron.run()
    assert "gmail.com: kept its 2 last known good netblock(s)" in both.stderr
    assert cron.reload_count() == 2
    assert "203.0.113.0/24" in cron.whitelist.read_text().splitlines()
