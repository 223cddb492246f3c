"""The shared greylist database: TLS by default, pg_hba.conf whole from the inventory, no secret shown.

The preflights run through tests/ansible/preflight.yml on the controller (nothing installed), the
templates through tests/ansible/render_greylist_database.yml (Ansible's own templating, into a
temporary directory). What the running lab does with them is proved in molecule/cluster-shared.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

# Placeholders that look like PEM: the preflight checks the shape, openssl on the host the content.
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----"
PASSWORD = "lab-only-greylist-pw"
DATABASE = {
    "greylist_postgresql_password": PASSWORD,
    "greylist_postgresql_listen_addresses": ["127.0.0.1", "172.30.53.30"],
    "greylist_postgresql_client_networks": ["172.30.53.25/32", "172.30.53.27/32"],
}
SQLGREY = {"sqlgrey_db_host": "172.30.53.30", "sqlgrey_db_password": PASSWORD}
DATABASE_TLS = {"greylist_postgresql_tls_certificate": CERTIFICATE, "greylist_postgresql_tls_private_key": PRIVATE_KEY}
SQLGREY_TLS = {"sqlgrey_db_ca_certificate": CERTIFICATE}


def playbook(path: str, extra_vars: dict, *options: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", path,
         "-e", json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}), *options],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def preflight(role: str, **variables) -> subprocess.CompletedProcess[str]:
    return playbook("tests/ansible/preflight.yml", {"preflight_role": role, **variables})


def render(tmp_path: Path, **variables) -> dict[str, str]:
    done = playbook("tests/ansible/render_greylist_database.yml",
                    {"render_dir": str(tmp_path), **DATABASE, **SQLGREY, **variables})
    assert done.returncode == 0, done.stdout + done.stderr
    return {name: (tmp_path / name).read_text() for name in ("pg_hba.conf", "mailguard.conf", "sqlgrey.conf")}


def rules(pg_hba: str) -> list[list[str]]:
    return [line.split() for line in pg_hba.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize(
    ("role", "variables", "named"),
    [
        ("greylist_postgresql", DATABASE, "greylist_postgresql_tls_certificate"),
        ("greylist_postgresql", {**DATABASE, "greylist_postgresql_tls_certificate": CERTIFICATE},
         "greylist_postgresql_tls_private_key"),
        ("sqlgrey", SQLGREY, "sqlgrey_db_ca_certificate"),
    ],
)
def test_tls_without_certificate_or_ca_is_refused_before_the_host_changes(role, variables, named):
    done = preflight(role, **variables)
    assert done.returncode != 0, f"{role} passed its preflight without {named}"
    assert named in done.stdout and "tls: false" in done.stdout, done.stdout
    assert "secret-key-material" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("role", "variables"),
    [
        ("greylist_postgresql", {**DATABASE, **DATABASE_TLS}),
        ("greylist_postgresql", {**DATABASE, "greylist_postgresql_tls": False}),
        ("sqlgrey", {**SQLGREY, **SQLGREY_TLS}),
        ("sqlgrey", {**SQLGREY, "sqlgrey_db_tls": False}),
    ],
)
def test_tls_with_its_files_or_plaintext_chosen_explicitly_passes(role, variables):
    done = preflight(role, **variables)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("role", "variable", "others"),
    [("greylist_postgresql", "greylist_postgresql_password", {**DATABASE, **DATABASE_TLS}),
     ("sqlgrey", "sqlgrey_db_password", {**SQLGREY, **SQLGREY_TLS})],
)
def test_a_password_sqlgrey_conf_would_cut_at_the_hash_is_refused(role, variable, others):
    # sqlgrey strips everything from '#' on: it would log in with "lab-only".
    done = preflight(role, **{**others, variable: "lab-only#greylist-pw"})
    assert done.returncode != 0
    assert variable in done.stdout and "'#'" in done.stdout
    assert "lab-only#greylist-pw" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [({"ssl": "off"}, "ssl"), ({"listen_addresses": "*"}, "listen_addresses"), ({"hba_file": "/tmp/x"}, "hba_file")],
)
def test_extra_settings_cannot_undo_the_roles_own(extra, named):
    done = preflight("greylist_postgresql", **DATABASE, **DATABASE_TLS, greylist_postgresql_conf_extra=extra)
    assert done.returncode != 0
    assert "greylist_postgresql_conf_extra" in done.stdout and f'"{named}"' in done.stdout


def test_the_mail_hosts_log_in_over_tls_only(tmp_path):
    files = render(tmp_path, **DATABASE_TLS, **SQLGREY_TLS)
    hosts = [rule for rule in rules(files["pg_hba.conf"]) if rule[0] != "local"]
    assert hosts == [["hostssl", "sqlgrey", "sqlgrey", "172.30.53.25/32", "scram-sha-256"],
                     ["hostssl", "sqlgrey", "sqlgrey", "172.30.53.27/32", "scram-sha-256"]]
    assert re.search(r"^ssl = on$", files["mailguard.conf"], re.M)
    assert re.search(r"^ssl_min_protocol_version = 'TLSv1\.3'$", files["mailguard.conf"], re.M)
    dsn = re.search(r"^db_dsn = (.*)$", files["sqlgrey.conf"], re.M).group(1)
    assert ";sslmode=verify-full;sslrootcert=/etc/sqlgrey/greylist-db-ca.pem" in dsn


def test_plaintext_only_when_chosen(tmp_path):
    files = render(tmp_path, greylist_postgresql_tls=False, sqlgrey_db_tls=False)
    assert {rule[0] for rule in rules(files["pg_hba.conf"])} == {"local", "host"}
    assert "ssl" not in files["mailguard.conf"]
    assert "sslmode" not in files["sqlgrey.conf"]


def test_a_mail_host_removed_from_the_list_loses_its_line(tmp_path):
    # Rendered whole, not edited line by line: nothing of the old list survives.
    files = render(tmp_path, **DATABASE_TLS, **SQLGREY_TLS, greylist_postgresql_client_networks=["172.30.53.25/32"])
    assert "172.30.53.27" not in files["pg_hba.conf"]
    assert [rule for rule in rules(files["pg_hba.conf"]) if rule[0] != "local"] == [
        ["hostssl", "sqlgrey", "sqlgrey", "172.30.53.25/32", "scram-sha-256"]]
    # Only the postgres system user logs in otherwise, through the socket.
    local = [rule for rule in rules(files["pg_hba.conf"]) if rule[0] == "local"]
    assert local == [["local", "all", "postgres", "peer"]]


def tasks_of(role: str) -> list[dict]:
    tasks = yaml.safe_load((REPO / "roles" / role / "tasks/main.yml").read_text())
    flat = []
    for task in tasks:
        flat.extend([task, *task.get("block", []), *task.get("rescue", [])])
    return flat


def test_no_task_that_handles_a_secret_can_print_it():
    """--check --diff and -v show a task's diff and arguments unless it says no."""
    secrets = {
        "greylist_postgresql": ("greylist_postgresql_password", "greylist_postgresql_tls_private_key"),
        "sqlgrey": ("sqlgrey_db_password",),
    }
    for role, names in secrets.items():
        for task in tasks_of(role):
            module = next((key for key in task if key.startswith(("ansible.builtin.", "community."))), None)
            if module is None:  # a block: its tasks are checked one by one
                continue
            text = yaml.safe_dump(task[module]) if isinstance(task[module], dict) else str(task[module])
            if any(name in text for name in names):
                assert task.get("no_log") is True or task.get("diff") is False, f"{role}: {task['name']}"
            if "sqlgrey.conf.j2" in text:
                # The file carries db_pass: no diff of it, ever.
                assert task.get("diff") is False, task["name"]
