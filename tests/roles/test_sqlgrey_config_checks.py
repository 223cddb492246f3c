"""sqlgrey's files are checked before sqlgrey or systemd read them (roles/sqlgrey).

sqlgrey has no checker of its own and reads its files without a word about most mistakes, and
systemd-analyze verify exits 0 on most mistakes in a unit. The role's checkers run here as it
runs them (`validate: CHECKER %s`): sqlgrey.conf as the role renders it passes, and each mistake
sqlgrey would misread is refused with its line number. The scenario cluster-shared runs the same
checkers against the installed sqlgrey and systemd.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.playbook import run_playbook

REPO = Path(__file__).resolve().parents[2]
SBIN = REPO / "roles/sqlgrey/files/usr/local/sbin"

# The settings sqlgrey 1.8.0 reads ($dflt{...} in /usr/sbin/sqlgrey) and the defaults it gives the
# numeric ones, in the shape of its source: the checker reads the installed program the same way.
SQLGREY_SOURCE = """
$dflt{loglevel}           = 2;
$dflt{reconnect_delay}    = 5; # minutes
$dflt{max_connect_age}    = 24; # hours
$dflt{awl_age}            = 60; # days
$dflt{group_domain_level} = 2;
$dflt{db_cleandelay}      = 30 * 60;
$dflt{prepend}            = 1;
$dflt{reject_first_attempt}   = 'delay';
$dflt{db_type}            = 'Pg';
$dflt{db_dsn}             = '';
$dflt{db_user}            = 'sqlgrey';
$dflt{db_pass}            = '';
$dflt{admin_mail}         = 'postmaster';
if (defined $dflt{inet}) { }
if (defined $dflt{reject_early_reconnect}) { }
"""


@pytest.fixture(scope="module")
def rendered_conf(tmp_path_factory) -> Path:
    """sqlgrey.conf exactly as the role renders it (Ansible's templating, the lab's values)."""
    out = tmp_path_factory.mktemp("sqlgrey")
    variables = {
        "render_dir": str(out), "ansible_python_interpreter": sys.executable,
        "greylist_postgresql_password": "lab-only-greylist-pw",
        "sqlgrey_db_host": "172.30.53.30", "sqlgrey_db_password": "lab-only-greylist-pw",
    }
    done = run_playbook("tests/ansible/render_greylist_database.yml", variables)
    assert done.returncode == 0, done.text
    return out / "sqlgrey.conf"


@pytest.fixture
def sqlgrey_source(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "sqlgrey"
    path.write_text(SQLGREY_SOURCE, encoding="utf-8")
    monkeypatch.setenv("SQLGREY_SOURCE", str(path))
    return path


def check(checker: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SBIN / checker), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_rendered_sqlgrey_conf_passes(sqlgrey_source, rendered_conf):
    done = check("sqlgrey-conf-check", str(rendered_conf))
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("replace", "by", "reason"),
    [
        ("prepend = 1", "prepand = 1", "'prepand' is not a setting"),
        ("awl_age = 35", "awl_age = 35d", "awl_age is a number"),
        ("reject_first_attempt = delay", "reject_first_attempt = later", "delay or immed"),
        ("inet = 127.0.0.1:2501", "inet = 127.0.0.1", "inet is PORT or HOST:PORT"),
        ("db_dsn = DBI:Pg:", "db_dsn = Pg:", "db_dsn is DBI:driver"),
        ("db_pass = lab-only-greylist-pw", "db_pass = lab-only#greylist-pw", "'#' after a value"),
        ("max_connect_age = 24", "max_connect_age = 24\nmax_connect_age = 48", "set again"),
        ("admin_mail =", "admin_mail", "no '='"),
    ],
)
def test_what_sqlgrey_would_misread_is_refused(tmp_path, sqlgrey_source, rendered_conf, replace, by, reason):
    text = rendered_conf.read_text()
    assert replace in text
    broken = tmp_path / "sqlgrey.conf"
    broken.write_text(text.replace(replace, by, 1))
    done = check("sqlgrey-conf-check", str(broken))
    assert done.returncode == 1, done.stderr
    assert reason in done.stderr
    # A line number, never the password.
    assert f"{broken}:" in done.stderr and "greylist-pw" not in done.stderr


def test_a_program_that_is_not_sqlgrey_is_no_reference(tmp_path, monkeypatch, rendered_conf):
    empty = tmp_path / "not-sqlgrey"
    empty.write_text("#!/bin/sh\n")
    monkeypatch.setenv("SQLGREY_SOURCE", str(empty))
    assert check("sqlgrey-conf-check", str(rendered_conf)).returncode == 2


def fqdn_check(tmp_path: Path, lines: list[str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "clients_fqdn_whitelist.local"
    path.write_text("# a comment\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return check("sqlgrey-whitelist-check", "--fqdn", str(path))


def test_host_names_sqlgrey_reads_as_meant_pass(tmp_path):
    done = fqdn_check(tmp_path, ["mail.example.org", "*.mail.example.org", r"/\.outbound\.protection\.outlook\.com$/"])
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("mail example.org", "white space inside"),  # sqlgrey removes the first blank only: mailexample.org
        ("mail.example.org/", "not a host name"),
        ("/.*/", "matches unrelated host names"),
        ("*.com", "single label or a top-level domain"),
        ("co.uk", "public suffix"),
        pytest.param("/mail(/", "Perl cannot compile", marks=pytest.mark.skipif(
            shutil.which("perl") is None, reason="perl is not installed")),
    ],
)
def test_host_names_sqlgrey_would_skip_or_that_match_strangers_are_refused(tmp_path, line, reason):
    done = fqdn_check(tmp_path, ["mail.example.org", line])
    assert done.returncode == 1, done.stderr
    assert ":3:" in done.stderr and reason in done.stderr, done.stderr


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed")


def unit(tmp_path: Path, text: str) -> Path:
    # The role's unit, with a program that exists here (verify wants ExecStart to be executable).
    template = (REPO / "roles/sqlgrey/templates/etc/systemd/sqlgrey.service.j2").read_text()
    rendered = template.replace("{{ ansible_managed }}", "managed").replace("/usr/sbin/sqlgrey", shutil.which("true"))
    path = tmp_path / "candidate"  # Ansible's temporary file has no .service suffix either
    path.write_text(text if text else rendered)
    return path


@needs_systemd_analyze
def test_the_role_unit_passes(tmp_path):
    done = subprocess.run([str(SBIN / "sqlgrey-unit-check"), str(unit(tmp_path, ""))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("replace", "by"),
    [("RestartSec=5", "RestartSec=five"), ("Restart=always", "Restart=sometimes"), ("Type=simple", "Typ=simple")],
)
def test_a_unit_line_systemd_would_ignore_is_refused(tmp_path, replace, by):
    good = unit(tmp_path, "").read_text()
    path = unit(tmp_path, good.replace(replace, by))
    done = subprocess.run([str(SBIN / "sqlgrey-unit-check"), str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"{path}:" in done.stderr, done.stderr
