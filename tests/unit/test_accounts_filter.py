"""mailguard_system_accounts: which local parts of a host refuse mail from outside (both stacks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/mailguard_accounts.py"
_spec = importlib.util.spec_from_file_location("mailguard_accounts", PLUGIN)
accounts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accounts)

# getent's passwd fact: name -> [password, uid, gid, gecos, home, shell]
PASSWD = {
    "root": ["x", "0", "0", "root", "/root", "/bin/bash"],
    "www-data": ["x", "33", "33", "www-data", "/var/www", "/usr/sbin/nologin"],
    "postgrey": ["x", "104", "110", "", "/var/lib/postgrey", "/bin/false"],
    "nobody": ["x", "65534", "65534", "nobody", "/nonexistent", "/usr/sbin/nologin"],
    "alice": ["x", "1000", "1000", "Alice", "/home/alice", "/bin/bash"],
    "Bob": ["x", "1001", "1001", "Bob", "/home/bob", "/bin/bash"],
}


def test_system_accounts_and_nobody_but_no_user():
    assert accounts.mailguard_system_accounts(PASSWD) == ["nobody", "postgrey", "root", "www-data"]


def test_the_floor_extras_and_exemptions_as_both_roles_write_them():
    names = accounts.mailguard_system_accounts(
        PASSWD, "1001", extra=["Webmaster-Old"], exempt=["postmaster", "abuse@+local_domains", "ROOT"]
    )
    assert names == ["alice", "nobody", "postgrey", "webmaster-old", "www-data"]


def test_no_passwd_gives_the_extras_only():
    assert accounts.mailguard_system_accounts(None, extra=["olduser"]) == ["olduser"]


@pytest.mark.parametrize(("passwd", "floor"), [({"x": ["x"]}, 1000), ({"x": ["x", "abc"]}, 1000), (PASSWD, "many")])
def test_unreadable_input_is_an_error_not_an_empty_list(passwd, floor):
    with pytest.raises(AnsibleFilterError):
        accounts.mailguard_system_accounts(passwd, floor)
