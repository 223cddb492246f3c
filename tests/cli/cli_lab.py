"""spf-netblocks as a real process against the lab DNS server: what every CLI test shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.guard import allow_doc_args

REPO = Path(__file__).resolve().parents[2]
MODULE_UTILS = REPO / "plugins" / "module_utils"

ZONE = {
    "records": {
        "gmail.test": {"TXT": ["v=spf1 redirect=_spf.gmail.test"]},
        "_spf.gmail.test": {"TXT": ["v=spf1 include:_nb1.gmail.test include:_nb2.gmail.test ~all"]},
        "_nb1.gmail.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ~all"]},
        "_nb2.gmail.test": {"TXT": ["v=spf1 ip6:2001:db8::/32 ~all"]},
        "ses.test": {"TXT": ["v=spf1 ip4:203.0.113.0/24 -all"]},
    },
}


def run_cli(server, *args: str, domains=("gmail.test", "ses.test"), guard=True, cwd=None,
            prefix=()) -> subprocess.CompletedProcess:
    """The command against the lab server; guard=True allows the documentation ranges of the zones.

    ``prefix`` runs the command under another one (unprivileged()).
    """
    env = dict(os.environ, PYTHONPATH=str(MODULE_UTILS))
    command = [*prefix, sys.executable, "-m", "spfwalk.cli", *domains,
               "--nameserver", server.address, "--port", str(server.port),
               *(allow_doc_args() if guard else []), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply: root overrides them otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a write cannot be denied")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("spf-netblocks: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
