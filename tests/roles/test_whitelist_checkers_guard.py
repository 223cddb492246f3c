"""The whitelist guard in every host checker: postgrey, sqlgrey and Exim refuse what the controller refuses.

Each checker runs as a host runs it (a script with a file argument), loading the guard module
the mailguard role installs (here the repository's file, MAILGUARD_GUARDS) and the policy
(MAILGUARD_GUARD_CONFIG). Without the guard the lines below were accepted by sqlgrey and Exim
(0.0.0.0/0 included) and postgrey took /.*/, 10.0.0.0/8 and co.uk.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.plugins.filter.core import to_nice_json

from spfwalk.outputs import render

REPO = Path(__file__).resolve().parents[2]
SBIN = "files/usr/local/sbin"
CHECKERS = {
    "postgrey": REPO / "roles/postgrey" / SBIN / "postgrey-whitelist-check",
    "sqlgrey": REPO / "roles/sqlgrey" / SBIN / "sqlgrey-whitelist-check",
    "exim": REPO / "roles/exim4" / SBIN / "exim4-hostlist-check",
}
LAB_VARS = REPO / "inventories/lab/group_vars/all/lab.yml"

FLOOR4 = "wider than the floor /12 (IPv4)"
FLOOR6 = "wider than the floor /28 (IPv6)"
TOO_MANY_NAMES = "the regex matches unrelated host names such as "
TLD = "is a single label or a top-level domain"
PUBLIC_SUFFIX = "it is a public suffix"

# Valid for each checker and far from the guard: provider-sized public networks, names, regexes.
GOOD = {
    "postgrey": ["8.8.4.0/24", "40.92.0.0/15", "2a01:111:f400::/48", "8.8.4", "209.85.128.1", "google.com",
                 r"/\.outbound\.protection\.outlook\.com$/", r"/^(?:.+\.)?google\.com$/"],
    "sqlgrey": ["8.8.4", "8.8.4.4", "40.92.0.0/15", "2a01:111:f400::/48", "2a00:1450::1"],
    "exim": ["8.8.4.0/24", "40.92.0.0/15", "2a01:111:f400::/48", "209.85.128.1", "google.com", "*.google.com",
             r"^(?:.+\.)?google\.com$", r"^.*\.outbound\.protection\.outlook\.com$"],
}  # fmt: skip


def run_checker(fmt: str, path: Path, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKERS[fmt]), *options, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def check_lines(tmp_path: Path, fmt: str, lines: list[str], *options: str, **env: str):
    path = tmp_path / f"{fmt}.whitelist"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path, run_checker(fmt, path, *options, **env)


@pytest.fixture
def defaults(tmp_path) -> dict[str, str]:
    """The environment of a host without a policy file: the guard's defaults, no allowed network."""
    return {"MAILGUARD_GUARD_CONFIG": str(tmp_path / "no-policy-here.json")}


def write_policy(tmp_path: Path, **policy) -> dict[str, str]:
    """A policy file as roles/mailguard writes it (to_nice_json of its variables)."""
    path = tmp_path / "whitelist-guard.json"
    path.write_text(to_nice_json(policy) + "\n", encoding="utf-8")
    return {"MAILGUARD_GUARD_CONFIG": str(path)}


def assert_one_refused(path: Path, result, line: int, entry: str, reason: str) -> None:
    assert (result.returncode, result.stdout) == (1, ""), (result.returncode, result.stderr)
    (problem,) = result.stderr.splitlines()
    assert problem.startswith((f"{path}:{line}: {entry!r}: ", f"{path}: line {line}: {entry!r}: ")), problem
    assert reason in problem, problem


# --- refused by the defaults, in each checker ---------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("0.0.0.0/0", FLOOR4),
        ("0.0.0.0/1", FLOOR4),
        ("128.0.0.0/1", FLOOR4),
        ("8.0.0.0/11", FLOOR4),
        ("::/0", FLOOR6),
        ("2000::/3", FLOOR6),
        ("10.0.0.0/8", "inside special-purpose space 10.0.0.0/8"),
        ("10.1.2", "inside special-purpose space 10.0.0.0/8"),  # postgrey's a.b.c is a /24
        ("10.1", "inside special-purpose space 10.0.0.0/8; postgrey reads a two-part address"),
        ("192.168.1.1", "inside special-purpose space 192.168.0.0/16"),
        ("192.0.2.0/24", "inside special-purpose space 192.0.2.0/24"),
        ("fd00::/8", "inside special-purpose space fc00::/7"),
        ("::ffff:192.0.2.1", "inside special-purpose space ::ffff:0:0/96"),
        ("/.*/", TOO_MANY_NAMES),
        ("/./", TOO_MANY_NAMES),
        (r"/\.com$/", TOO_MANY_NAMES),
        ("/^mail/", TOO_MANY_NAMES),
        ("/^UNKNOWN$/", TOO_MANY_NAMES + "'unknown'"),  # Postfix's name for a client without rDNS
        ("net", TLD),
        ("com.br", PUBLIC_SUFFIX),
    ],
)
def test_postgrey_refuses_what_the_guard_refuses(tmp_path, defaults, entry, reason):
    path, result = check_lines(tmp_path, "postgrey", ["mail.example.com", entry], **defaults)
    assert_one_refused(path, result, 2, entry, reason)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [("/./", TOO_MANY_NAMES), (r"/\.com$/", TOO_MANY_NAMES), ("co.uk", PUBLIC_SUFFIX), ("user@com.br", PUBLIC_SUFFIX)],
)
def test_postgrey_recipients_get_the_name_and_regex_rules(tmp_path, defaults, entry, reason):
    path, result = check_lines(tmp_path, "postgrey", ["postmaster@", entry], "--recipients", **defaults)
    assert_one_refused(path, result, 2, entry, reason)


def test_postgrey_recipients_need_no_network_floor(tmp_path, defaults):
    """A recipient entry holds no client address: the role's own list passes with the defaults."""
    _, result = check_lines(
        tmp_path, "postgrey", ["postmaster@", "abuse@", "user@example.com", r"/^postmaster@/"], "--recipients",
        **defaults,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("0.0.0.0/0", FLOOR4),
        ("0.0.0.0/1", FLOOR4),
        ("128.0.0.0/1", FLOOR4),
        ("8.0.0.0/11", FLOOR4),
        ("::/0", FLOOR6),
        ("2000::/3", FLOOR6),
        ("10.0.0.0/8", "inside special-purpose space 10.0.0.0/8"),
        ("10.1.2", "inside special-purpose space 10.0.0.0/8"),  # sqlgrey's class C
        ("10.1.2.3", "inside special-purpose space 10.0.0.0/8"),
        ("127.0.0.1", "inside special-purpose space 127.0.0.0/8"),
        ("192.0.2", "inside special-purpose space 192.0.2.0/24"),
        ("192.160.0.0/12", "overlaps special-purpose space 192.168.0.0/16"),
        ("fd00::1", "inside special-purpose space fc00::/7"),
        ("2001:db8::/32", "inside special-purpose space 2001:db8::/32"),
    ],
)
def test_sqlgrey_refuses_what_the_guard_refuses(tmp_path, defaults, entry, reason):
    path, result = check_lines(tmp_path, "sqlgrey", ["8.8.4.4", entry], **defaults)
    assert_one_refused(path, result, 2, entry, reason)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("0.0.0.0/0", FLOOR4),
        ("0.0.0.0/1", FLOOR4),
        ("128.0.0.0/1", FLOOR4),
        ("::/0", FLOOR6),
        ("2000::/3", FLOOR6),
        ("10.0.0.0/8", "inside special-purpose space 10.0.0.0/8"),
        ("10.1.2.3/8", "inside special-purpose space 10.0.0.0/8"),  # Exim masks the host bits
        ("192.0.2.1", "inside special-purpose space 192.0.2.0/24"),
        ("fe80::1", "inside special-purpose space fe80::/10"),
        ("^.*", TOO_MANY_NAMES),
        ("^.", TOO_MANY_NAMES),
        (r"^.*\.com$", TOO_MANY_NAMES),
        ("^mail", TOO_MANY_NAMES),
        (r"^(?:.+\.)?com$", TOO_MANY_NAMES),
        ("*.com", TLD),
        ("net", TLD),
        ("com.", TLD),
        ("*.co.uk", PUBLIC_SUFFIX),
    ],
)
def test_exim_refuses_what_the_guard_refuses(tmp_path, defaults, entry, reason):
    path, result = check_lines(tmp_path, "exim", ["8.8.4.0/24", entry], **defaults)
    assert_one_refused(path, result, 2, entry, reason)


@pytest.mark.parametrize("fmt", sorted(CHECKERS))
def test_provider_sized_entries_pass_with_the_defaults(tmp_path, defaults, fmt):
    _, result = check_lines(tmp_path, fmt, GOOD[fmt], **defaults)
    assert (result.returncode, result.stderr) == (0, "")


# --- the policy file ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(CHECKERS))
def test_the_floor_comes_from_the_policy_file(tmp_path, fmt):
    env = write_policy(tmp_path, min_prefix4=16, min_prefix6=28, allowed_networks=[])
    path, result = check_lines(tmp_path, fmt, ["8.8.4.4", "40.92.0.0/15"], **env)
    assert_one_refused(path, result, 2, "40.92.0.0/15", "wider than the floor /16 (IPv4)")


def lab_whitelist(fmt: str) -> str:
    """The lab's list as spfwalk renders it: bigpool.test and legit.test, grown as the cluster scenario grows it."""
    networks = [
        ipaddress.ip_network(text)
        for text in ("172.30.53.96/29", "172.30.53.112/29", "172.30.53.110/32", "2001:db8:53::/48")
    ]
    return render(fmt, networks, None, ["roots: bigpool.test, legit.test"], sqlgrey_cidr=True).content


@pytest.mark.parametrize("fmt", sorted(CHECKERS))
def test_the_lab_list_passes_with_the_labs_allowed_networks_only(tmp_path, defaults, fmt):
    allowed = yaml.safe_load(LAB_VARS.read_text(encoding="utf-8"))["mailguard_whitelist_allowed_networks"]
    path = tmp_path / "lab.whitelist"
    path.write_text(lab_whitelist(fmt), encoding="utf-8")
    lab = write_policy(tmp_path, min_prefix4=12, min_prefix6=28, allowed_networks=allowed)
    passed = run_checker(fmt, path, **lab)
    assert (passed.returncode, passed.stderr) == (0, "")
    # Without the lab's allowance the same file is refused: the allowance is what lets it pass.
    refused = run_checker(fmt, path, **defaults)
    assert refused.returncode == 1
    assert "inside special-purpose space 172.16.0.0/12" in refused.stderr


# Chains as the walker records them; their text looks like entries (a /0, a bare name, a regex)
# that every checker would refuse, were a comment line read as an entry.
LAB_CHAINS = [
    ("172.30.53.96/29", "legit.test > include:_spf.legit.test > ip4:172.30.53.96/29"),
    ("172.30.53.110/32", "0.0.0.0/0 > com > /.*/ > ^.* > a:172.30.53.110"),
    ("172.30.53.112/29", "bigpool.test > ip4:172.30.53.112/29"),
    ("2001:db8:53::/48", "bigpool.test > include:_v6.bigpool.test > ip6:2001:db8:53::/48"),
]


@pytest.mark.parametrize(("fmt", "sqlgrey_cidr"), [("postgrey", False), ("exim", False), ("sqlgrey", True),
                                                   ("sqlgrey", False)])
def test_every_checker_ignores_the_chain_comments(tmp_path, fmt, sqlgrey_cidr):
    networks = [ipaddress.ip_network(text) for text, _ in LAB_CHAINS]
    content = render(fmt, networks, None, ["roots: bigpool.test, legit.test"], sqlgrey_cidr=sqlgrey_cidr,
                     provenance=[(ipaddress.ip_network(text), chain) for text, chain in LAB_CHAINS]).content
    assert "# 0.0.0.0/0 > com > /.*/ > ^.* > a:172.30.53.110\n" in content
    path = tmp_path / "lab.whitelist"
    path.write_text(content, encoding="utf-8")
    lab = write_policy(tmp_path, min_prefix4=12, min_prefix6=28, allowed_networks=["172.30.53.0/24",
                                                                                    "2001:db8:53::/48"])
    passed = run_checker(fmt, path, **lab)
    assert (passed.returncode, passed.stderr) == (0, "")


def test_exim_refuses_a_line_longer_than_exim_reads_at_once(tmp_path, defaults):
    """Exim reads 1023 bytes of a list file's line at a time: the rest of a long comment becomes an item."""
    long_comment = "# " + "x" * 1021
    path, result = check_lines(tmp_path, "exim", ["8.8.4.0/24", long_comment, "# " + "y" * 1022], **defaults)
    assert_one_refused(path, result, 3, "# " + "y" * 38 + "...", "longer than the 1023 bytes Exim reads")


# --- no guard, no pass --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(CHECKERS))
@pytest.mark.parametrize(
    "guard",
    [
        pytest.param(None, id="missing"),
        pytest.param("def broken(:\n", id="syntax-error"),
        pytest.param("GUARD = 1\n", id="no-policy-class"),
    ],
)
def test_a_checker_without_a_working_guard_fails_even_a_good_file(tmp_path, fmt, guard):
    module = tmp_path / "guards.py"
    if guard is not None:
        module.write_text(guard, encoding="utf-8")
    _, result = check_lines(tmp_path, fmt, GOOD[fmt], MAILGUARD_GUARDS=str(module))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert f"cannot apply the whitelist guard {module} with the policy " in result.stderr
    assert "(the mailguard role installs both)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", sorted(CHECKERS))
def test_a_checker_with_a_corrupt_policy_fails_naming_it(tmp_path, fmt):
    policy = tmp_path / "whitelist-guard.json"
    policy.write_text('{"min_prefix4": 12,', encoding="utf-8")
    _, result = check_lines(tmp_path, fmt, GOOD[fmt], MAILGUARD_GUARD_CONFIG=str(policy))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert f"bad whitelist guard policy {policy}: " in result.stderr
