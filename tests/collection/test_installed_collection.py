"""The collection as Galaxy users get it: built from the repository, installed into an empty
collections path, used by FQCN from a directory with no ansible.cfg (so nothing of the clone
leaks in), against a DNS server on loopback.

Galaxy's own importer check runs on the same tarball in scripts/test (it needs its own venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.guard import DOC_NETWORKS
from tests.support.playbook import REPO

BIN = Path(sys.executable).parent
PLAYBOOK = Path(__file__).with_name("use_installed.yml")
ZONE = {"records": {
    "gmail.test": {"TXT": ["v=spf1 redirect=_spf.gmail.test"]},
    "_spf.gmail.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"]},
}}


def run(command: list, cwd: Path, collections: Path, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    environment |= {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_LOCALHOST_WARNING": "false",
                    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", **env}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(work directory without ansible.cfg, the collections path holding only mailguard.mail)."""
    root = tmp_path_factory.mktemp("galaxy")
    build = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(root), str(REPO)],
                root, root / "none")
    assert build.returncode == 0, build.stdout + build.stderr
    tarball = root / "mailguard-mail-0.1.0.tar.gz"
    assert tarball.is_file(), build.stdout
    collections = root / "collections"
    # --no-deps: community.general and community.postgresql come with the ansible bundle.
    install = run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(collections),
                   str(tarball)], root, collections)
    assert install.returncode == 0, install.stdout + install.stderr
    work = root / "work"
    work.mkdir()
    return work, collections


def test_the_tarball_ships_the_roles_and_plugins_but_not_the_lab(installed):
    _, collections = installed
    top = collections / "ansible_collections/mailguard/mail"
    assert {path.name for path in (top / "roles").iterdir()} >= {"postfix", "exim4", "spf_whitelist", "mailguard"}
    assert (top / "plugins/module_utils/spfwalk/walker.py").is_file()
    assert (top / "meta/runtime.yml").is_file()
    for clone_only in ("tests", "molecule", "inventories", "collections", "ansible.cfg", ".venv", "bench"):
        assert not (top / clone_only).exists(), f"{clone_only} is in the collection tarball"


def test_ansible_doc_finds_the_module_in_the_installed_collection(installed):
    work, collections = installed
    done = run([str(BIN / "ansible-doc"), "mailguard.mail.spf_netblocks"], work, collections)
    assert done.returncode == 0, done.stderr
    assert str(collections) in done.stdout and str(REPO) + "/plugins" not in done.stdout


def test_a_playbook_using_only_fqcn_runs_from_the_installed_collection(installed, dns_server):
    work, collections = installed
    server = dns_server(ZONE)
    extra = {
        # The controller's own Python for the module (delegate_to: localhost), not a discovered one.
        "ansible_python_interpreter": sys.executable,
        "postfix_myhostname": "mx1.example.org", "postfix_mydomain": "example.org",
        "spf_whitelist_providers": ["gmail.test"], "spf_whitelist_nameservers": [server.address],
        "spf_whitelist_dns_port": server.port, "spf_whitelist_build_dir": str(work / "build"),
        "spf_whitelist_state_file": str(work / "state.json"), "spf_whitelist_allowed_networks": DOC_NETWORKS,
        "spf_whitelist_formats": ["postgrey"],
    }
    done = run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(PLAYBOOK), "--check", "-e", json.dumps(extra)],
               work, collections, ANSIBLE_STDOUT_CALLBACK="json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    output = json.loads(done.stdout)
    resolves = [task["hosts"]["localhost"] for play in output["plays"] for task in play["tasks"]
                if "Resolve the providers' SPF netblocks" in task["task"]["name"]]
    assert resolves and resolves[0]["roots"]["gmail.test"]["status"] == "ok", resolves
    assert not (work / "build").exists(), "check mode wrote the whitelist"
