"""spf_netblocks on a Python older than the walker needs: one clear message, not a traceback.

delegate_to: localhost runs the module with localhost's discovered interpreter, which on an old
controller host is a system Python older than 3.11 (the walker needs asyncio.timeout).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.playbook import REPO

ANSIBLE = Path(sys.executable).parent / "ansible"


def older_python() -> str | None:
    """Any Python 3.8-3.10 on this machine (ansible-core 2.19 runs modules on 3.8 and later)."""
    candidates = [f"/usr/bin/python3.{minor}" for minor in (10, 9, 8)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")))
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.[89]*/bin/python")))
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


@pytest.mark.skipif(older_python() is None, reason="no Python older than 3.11 on this machine")
def test_an_old_python_gets_one_line_naming_the_version(tmp_path):
    interpreter = older_python()
    done = subprocess.run(
        [str(ANSIBLE), "-i", "localhost,", "-c", "local", "localhost", "-m", "mailguard.mail.spf_netblocks",
         "-a", f"domains=gmail.test dest={tmp_path / 'list'}", "-e", f"ansible_python_interpreter={interpreter}"],
        cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")), capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "spf_netblocks needs Python >= 3.11" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "list").exists()
