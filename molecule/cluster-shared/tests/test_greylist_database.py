"""The shared greylist database: TLS with a checked certificate, revocation, checked configuration.

greydb runs PostgreSQL with a certificate of the lab CA (prepare makes both); mx1 and mx2 log in
with sqlgrey's own DSN and credentials, read from their sqlgrey.conf, through Perl's DBI and
DBD::Pg as sqlgrey does. The tests that change the inventory run the real main job against
greydb (site.yml --limit greydb) with the change as an extra variable, and put it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

PROJECT = Path(__file__).resolve().parents[3]
LAB = yaml.safe_load((PROJECT / "molecule/resources/lab.yml").read_text())
GREYLIST_DB = yaml.safe_load((PROJECT / "inventories/lab/group_vars/greylist_db/lab.yml").read_text())
PASSWORD = yaml.safe_load((PROJECT / "inventories/lab/group_vars/all/lab.yml").read_text())["lab_greylist_db_password"]
MX2 = LAB["lab_cluster_mx"]["mx2"]
CONF_D = "/etc/postgresql/15/main/conf.d/mailguard.conf"

# Log in as sqlgrey does: the DSN, user and password of /etc/sqlgrey/sqlgrey.conf, read as sqlgrey
# reads it; extra libpq options (ARGV) are appended, and libpq takes the last of a repeated one.
LOGIN = r"""
my %c;
open my $f, '<', '/etc/sqlgrey/sqlgrey.conf' or die "sqlgrey.conf: $!";
while (<$f>) {
    chomp; s/#.*//; s/^\s+//; s/\s+$//; next unless length;
    my ($k, $v) = split /\s*=\s*/, $_, 2; $c{$k} = $v // '';
}
my $dsn = $c{db_dsn} . join('', map { ";$_" } @ARGV);
my $dbh = DBI->connect($dsn, $c{db_user}, $c{db_pass}, {PrintError => 0, RaiseError => 0})
    or do { print "refused: ", DBI->errstr, "\n"; exit 1 };
my ($ssl, $version) = $dbh->selectrow_array('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
print "ok ssl=", ($ssl ? 'on' : 'off'), " version=", ($version // ''), "\n";
"""


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def login(mx: str, *options: str):
    done = host(mx).run("perl -MDBI -e %s " + " ".join(["%s"] * len(options)), LOGIN, *options)
    print(f"{mx} {' '.join(options)}: {done.stdout.strip()} {done.stderr.strip()}")
    return done


def psql(sql: str) -> str:
    return host("greydb").check_output("su postgres -c %s", f"psql -XtAc \"{sql}\"").strip()


def main_job(*options: str, playbook: str = "site.yml") -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    inventory = f"{os.environ['MOLECULE_EPHEMERAL_DIRECTORY']}/inventory"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, playbook, *options],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    print(done.stdout[-2500:])
    return done


def converge_greydb(**extra_vars) -> subprocess.CompletedProcess[str]:
    return main_job("--limit", "greydb", *(["-e", json.dumps(extra_vars)] if extra_vars else []))


def postmaster_pid() -> str:
    return host("greydb").check_output("head -1 /var/lib/postgresql/15/main/postmaster.pid").strip()


def sqlgrey_greylists_again(mx: str, seconds: float = 40) -> bool:
    """sqlgrey's own behaviour: with its database it greylists a new triplet (without: accepts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender = f"dbcheck-{uuid.uuid4().hex[:12]}@legit.test"
        argv = ["timeout", "60", "smtp-probe", "--server", LAB["lab_cluster_mx"].get(mx, LAB["lab_mx_address"]),
                "--ehlo", LAB["lab_clients"]["legit-mta"]["helo"], "--from", sender, "--to", "alice@lab.test"]
        done = host("legit-mta").run(" ".join(["%s"] * len(argv)), *argv)
        steps = json.loads(done.stdout)["steps"] if done.rc == 0 else []
        if any(step["command"].upper().startswith("RCPT") and step["code"] == 450 for step in steps):
            return True
        time.sleep(2)
    return False


@pytest.mark.parametrize("mx", ["mx1", "mx2"])
def test_sqlgrey_logs_in_over_tls_1_3_with_the_certificate_checked(mx):
    dsn = host(mx).check_output("grep ^db_dsn /etc/sqlgrey/sqlgrey.conf")
    assert "sslmode=verify-full" in dsn and "sslrootcert=/etc/sqlgrey/greylist-db-ca.pem" in dsn
    done = login(mx)
    assert done.rc == 0 and "ok ssl=on version=TLSv1.3" in done.stdout, done.stdout
    # sqlgrey's own sessions, as the server sees them.
    address = LAB["lab_cluster_mx"].get(mx, LAB["lab_mx_address"])
    sessions = psql("SELECT DISTINCT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                    f"WHERE a.usename = 'sqlgrey' AND a.client_addr = '{address}'")
    assert sessions in ("t", ""), f"a session of {mx} without TLS: {sessions!r}"


def test_a_login_without_tls_is_refused():
    done = login("mx1", "sslmode=disable")
    assert done.rc == 1 and "no pg_hba.conf entry" in done.stdout and "no encryption" in done.stdout, done.stdout


def test_a_server_whose_certificate_does_not_name_it_is_refused():
    # The same server under a name its certificate lacks: verify-full refuses before the password.
    done = login("mx1", f"host=db.lab.test;hostaddr={LAB['lab_greylist_db_address']}")
    assert done.rc == 1 and "does not match host name" in done.stdout, done.stdout
    # And with the system's CAs instead of the lab CA: the certificate is not trusted.
    done = login("mx1", "sslrootcert=/etc/ssl/certs/ca-certificates.crt")
    assert done.rc == 1 and "certificate verify failed" in done.stdout, done.stdout


def test_a_mail_host_removed_from_the_list_loses_access_and_gets_it_back():
    assert login("mx2").rc == 0
    without_mx2 = [network for network in GREYLIST_DB["greylist_postgresql_client_networks"]
                   if network != f"{MX2}/32"]
    assert len(without_mx2) == len(GREYLIST_DB["greylist_postgresql_client_networks"]) - 1
    try:
        removed = converge_greydb(greylist_postgresql_client_networks=without_mx2)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert MX2 not in host("greydb").check_output("cat /etc/postgresql/15/main/pg_hba.conf")
        # New logins are refused, and the session sqlgrey held open was ended.
        refused = login("mx2")
        assert refused.rc == 1 and f'no pg_hba.conf entry for host "{MX2}"' in refused.stdout, refused.stdout
        assert psql(f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{MX2}'") == "0"
        assert login("mx1").rc == 0, "mx1 is still in the list"
    finally:
        restored = converge_greydb()
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert login("mx2").rc == 0
    # sqlgrey on mx2 finds its database again by itself: greylisting is back, for the tests after this.
    assert sqlgrey_greylists_again("mx2"), "sqlgrey on mx2 did not greylist again after its access came back"


def test_a_postgresql_setting_its_parser_refuses_never_reaches_the_server():
    before = host("greydb").check_output("sha256sum %s", CONF_D)
    pid = postmaster_pid()
    broken = converge_greydb(greylist_postgresql_conf_extra={"shared_buffers": "lots"})
    assert broken.returncode != 0
    # postgres -C's own words (quotes escaped in Ansible's JSON).
    assert "invalid value for parameter" in broken.stdout and "shared_buffers" in broken.stdout, broken.stdout
    assert host("greydb").check_output("sha256sum %s", CONF_D) == before
    assert host("greydb").run("systemctl is-active --quiet postgresql").rc == 0
    assert postmaster_pid() == pid, "PostgreSQL was restarted"
    assert login("mx1").rc == 0


@pytest.mark.parametrize(
    ("name", "checker", "live", "break_it"),
    [
        ("mx1", "/usr/local/sbin/sqlgrey-conf-check", "/etc/sqlgrey/sqlgrey.conf", "s/^prepend/prepand/"),
        ("mx1", "/usr/local/sbin/sqlgrey-unit-check", "/etc/systemd/system/sqlgrey.service",
         "s/^RestartSec=5/RestartSec=5x/"),
        ("mx1", "/usr/local/sbin/sqlgrey-whitelist-check --fqdn", "/etc/sqlgrey/clients_fqdn_whitelist.local",
         r"$a /.*/"),
        ("greydb", "/usr/local/sbin/greylist-postgresql-conf-check 15 main", CONF_D,
         "s/^ssl_min_protocol_version = .*/ssl_min_protocol_version = 'TLSv9'/"),
    ],
)
def test_the_installed_checkers_pass_the_live_file_and_refuse_a_broken_copy(name, checker, live, break_it):
    """With the installed sqlgrey, systemd and PostgreSQL: what the roles' validate: runs."""
    target = host(name)
    good = target.run(f"{checker} {live}")
    assert (good.rc, good.stderr) == (0, ""), good.stderr
    copy = f"/tmp/broken-{uuid.uuid4().hex[:8]}"
    target.check_output("cp %s %s && sed -i %s %s", live, copy, break_it, copy)
    try:
        bad = target.run(f"{checker} {copy}")
    finally:
        target.run("rm -f %s", copy)
    assert bad.rc == 1, (bad.rc, bad.stdout, bad.stderr)
    assert bad.stderr.strip(), "a refusal without a reason"


def test_check_mode_diff_never_prints_a_database_secret():
    """--check --diff with a new password and a new client list: the diffs show the list, not the secrets."""
    new_password = f"changed-{uuid.uuid4().hex}"
    done = main_job("--check", "--diff", "-e", json.dumps({
        "lab_greylist_db_password": new_password,
        "greylist_postgresql_client_networks": [f"{MX2}/32"],
    }), playbook="molecule/cluster-shared/greylist_roles.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"-hostssl   sqlgrey   sqlgrey   {LAB['lab_mx_address']}/32" in done.stdout, "the pg_hba.conf diff is shown"
    assert new_password not in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_a_pg_hba_conf_postgresql_cannot_read_is_put_back_before_the_reload():
    """The safety net behind the preflight: pg_hba_file_rules, then the previous file back.

    Nothing in the inventory can write a line PostgreSQL refuses (the preflight checks every
    value), so the fault is injected through the role's private connection type.
    """
    hba = "/etc/postgresql/15/main/pg_hba.conf"
    before = host("greydb").check_output("sha256sum %s", hba)
    pid = postmaster_pid()
    broken = converge_greydb(__greylist_postgresql_hba_type="hostfoo")
    assert broken.returncode != 0
    assert "PostgreSQL cannot read the new pg_hba.conf" in broken.stdout and "hostfoo" in broken.stdout
    assert host("greydb").check_output("sha256sum %s", hba) == before
    assert host("greydb").check_output("ls /etc/postgresql/15/main").count("pg_hba.conf") == 1, "a backup was left"
    assert postmaster_pid() == pid
    assert login("mx1").rc == 0 and login("mx2").rc == 0
