"""The whitelist guard every host checker runs with in these tests.

On a host the mailguard role installs the guard module and its policy; here the checkers load
the repository's own module (the file the role copies) through MAILGUARD_GUARDS, and a policy
that vouches for the documentation ranges the tests write (MAILGUARD_GUARD_CONFIG), the way a
lab vouches for its own networks. Tests of the defaults point MAILGUARD_GUARD_CONFIG elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.guard import doc_guard

REPO = Path(__file__).resolve().parents[2]
GUARDS = REPO / "plugins/module_utils/spfwalk/guards.py"


@pytest.fixture(scope="session")
def documentation_policy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mailguard") / "whitelist-guard.json"
    path.write_text(doc_guard().to_json(), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def guard_environment(monkeypatch, documentation_policy_file):
    monkeypatch.setenv("MAILGUARD_GUARDS", str(GUARDS))
    monkeypatch.setenv("MAILGUARD_GUARD_CONFIG", str(documentation_policy_file))
