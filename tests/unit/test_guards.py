"""The width floor / special-purpose guard shared by the controller and the mail hosts' checkers."""

from __future__ import annotations

import ast
import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_nice_json

from spfwalk import guards
from spfwalk.guards import (
    DEFAULT_MIN_PREFIX4,
    DEFAULT_MIN_PREFIX6,
    SAMPLE_HOST_NAMES,
    SPECIAL_PURPOSE,
    GuardError,
    GuardPolicy,
)

GUARDS_FILE = Path(guards.__file__)
DEFAULT = GuardPolicy()
LAB = GuardPolicy.from_options(allowed_networks=["172.30.53.0/24", "2001:db8:53::/48"])


def net(text):
    return ipaddress.ip_network(text)


# --- the defaults -------------------------------------------------------------------------------


def test_the_defaults_are_the_issues_floor():
    assert (DEFAULT_MIN_PREFIX4, DEFAULT_MIN_PREFIX6) == (12, 28)
    assert (DEFAULT.min_prefix4, DEFAULT.min_prefix6, DEFAULT.allowed) == (12, 28, ())


def test_the_special_purpose_list():
    assert [str(n) for n in SPECIAL_PURPOSE] == [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
        "2001:db8::/32",
        "3fff::/20",
    ]


# --- networks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        ("0.0.0.0/0", "wider than the floor /12 (IPv4)"),
        ("0.0.0.0/1", "wider than the floor /12 (IPv4)"),
        ("128.0.0.0/1", "wider than the floor /12 (IPv4)"),
        ("8.0.0.0/11", "wider than the floor /12 (IPv4)"),
        ("::/0", "wider than the floor /28 (IPv6)"),
        ("2000::/3", "wider than the floor /28 (IPv6)"),
        ("2a00::/27", "wider than the floor /28 (IPv6)"),
        ("10.0.0.0/8", "inside special-purpose space 10.0.0.0/8"),
        ("10.1.2.3/32", "inside special-purpose space 10.0.0.0/8"),
        ("127.0.0.1/32", "inside special-purpose space 127.0.0.0/8"),
        ("0.0.0.0/32", "inside special-purpose space 0.0.0.0/8"),
        ("169.254.1.0/24", "inside special-purpose space 169.254.0.0/16"),
        ("172.30.53.0/24", "inside special-purpose space 172.16.0.0/12"),
        ("192.168.1.0/24", "inside special-purpose space 192.168.0.0/16"),
        ("100.64.0.0/16", "inside special-purpose space 100.64.0.0/10"),
        ("224.0.0.1/32", "inside special-purpose space 224.0.0.0/4"),
        ("255.255.255.255/32", "inside special-purpose space 240.0.0.0/4"),
        ("192.0.2.1/32", "inside special-purpose space 192.0.2.0/24"),
        ("198.51.100.0/24", "inside special-purpose space 198.51.100.0/24"),
        ("203.0.113.7/32", "inside special-purpose space 203.0.113.0/24"),
        ("::/128", "inside special-purpose space ::/128"),
        ("::1/128", "inside special-purpose space ::1/128"),
        ("::ffff:8.8.8.8/128", "inside special-purpose space ::ffff:0:0/96"),
        ("fd12:3456::/48", "inside special-purpose space fc00::/7"),
        ("fe80::/64", "inside special-purpose space fe80::/10"),
        ("ff02::1/128", "inside special-purpose space ff00::/8"),
        ("2001:db8::/32", "inside special-purpose space 2001:db8::/32"),
        ("3fff::/24", "inside special-purpose space 3fff::/20"),
        # Within the floor but holding special-purpose space: refused both ways.
        ("192.160.0.0/12", "overlaps special-purpose space 192.168.0.0/16"),
        ("198.48.0.0/12", "overlaps special-purpose space 198.51.100.0/24"),
        ("2001:db0::/28", "overlaps special-purpose space 2001:db8::/32"),
    ],
)
def test_network_problem_refuses_wide_and_special_networks(network, problem):
    assert DEFAULT.network_problem(net(network)) == problem


@pytest.mark.parametrize(
    "network",
    ["8.8.4.0/24", "40.92.0.0/15", "16.0.0.0/12", "209.85.128.0/17", "2a00:1450:4000::/37", "2a00::/28", "1.1.1.1/32"],
)
def test_network_problem_accepts_provider_sized_networks(network):
    assert DEFAULT.network_problem(net(network)) is None


def test_the_floor_follows_the_policy():
    assert GuardPolicy(min_prefix4=8).network_problem(net("8.0.0.0/8")) is None
    assert GuardPolicy(min_prefix4=16).network_problem(net("8.8.0.0/15")) == "wider than the floor /16 (IPv4)"
    assert GuardPolicy(min_prefix6=32).network_problem(net("2a00::/31")) == "wider than the floor /32 (IPv6)"
    # Special-purpose space stays refused with no floor at all.
    assert GuardPolicy(min_prefix4=0).network_problem(net("0.0.0.0/0")) == "overlaps special-purpose space 0.0.0.0/8"


def test_allowed_networks_and_their_subnets_pass_both_checks():
    for network in ("172.30.53.0/24", "172.30.53.96/29", "172.30.53.110/32", "2001:db8:53::/48", "2001:db8:53:1::/64"):
        assert LAB.network_problem(net(network)) is None, network
    # Only subnets: a wider network holding the allowed one, or another part of the block, is refused.
    assert LAB.network_problem(net("172.30.0.0/16")) == "inside special-purpose space 172.16.0.0/12"
    assert LAB.network_problem(net("172.30.54.0/24")) == "inside special-purpose space 172.16.0.0/12"
    assert LAB.network_problem(net("2001:db8::/32")) == "inside special-purpose space 2001:db8::/32"


# --- host names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["net", "com", ".com", "*.com", "com.", "COM", "localhost", "", ".", "*."])
def test_hostname_problem_refuses_single_labels_and_tlds(name):
    assert DEFAULT.hostname_problem(name) == (
        f"{name!r} is a single label or a top-level domain: it would match every name under it"
    )


@pytest.mark.parametrize("name", ["co.uk", "com.br", "*.com.au", ".co.jp", "CO.ZA."])
def test_hostname_problem_refuses_public_suffixes_of_the_sample(name):
    problem = DEFAULT.hostname_problem(name)
    assert problem.startswith(f"{name!r} matches unrelated host names such as ")
    assert problem.endswith(": it is a public suffix")


@pytest.mark.parametrize(
    "name",
    ["example.com", "*.example.com", ".example.com", "mail.example.com.", "google.com", "outlook.com", "lab.test",
     "xn--bcher-kva.example", "Mail.Example.ORG"],
)  # fmt: skip
def test_hostname_problem_accepts_a_domain(name):
    assert DEFAULT.hostname_problem(name) is None


# --- regexes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [".*", ".", "^", "", r"\.com$", r"\.net$", r"\.de$", r"\.co\.uk$", r"\.com\.br$", "^mail", "^MAIL", "^smtp",
     "^[a-z]", r"\d+-\d+-\d+", "dyn", "pool", "unknown", r"^(?:.+\.)?com$", "x?"],
)  # fmt: skip
def test_regex_problem_refuses_regexes_matching_random_host_names(pattern):
    problem = DEFAULT.regex_problem(pattern)
    assert problem is not None and problem.startswith("the regex matches unrelated host names such as "), problem
    example = problem.removeprefix("the regex matches unrelated host names such as ").strip("'")
    assert example in SAMPLE_HOST_NAMES


@pytest.mark.parametrize(
    "pattern",
    [r"\.outbound\.protection\.outlook\.com$", r"^(?:.+\.)?google\.com$", r"^mx\d+\.example\.com$",
     r"^smtp-out-[0-9]+\.example\.com$", r"^.*-out-.*\.example\.com$", r"^mail\d+\.example\.org$",
     r"^mx\.example\.com\Z"],
)  # fmt: skip
def test_regex_problem_accepts_a_provider_regex(pattern):
    assert DEFAULT.regex_problem(pattern) is None


def test_regex_problem_refuses_what_it_cannot_test():
    problem = DEFAULT.regex_problem("[unclosed")
    assert problem.startswith("the regex cannot be tested against host names: Python's re does not compile it (")


def test_the_sample_is_a_few_hundred_varied_names():
    assert 300 <= len(SAMPLE_HOST_NAMES) == len(set(SAMPLE_HOST_NAMES))
    assert all(name == name.lower() and "." in name for name in SAMPLE_HOST_NAMES if name != "unknown")
    assert "unknown" in SAMPLE_HOST_NAMES
    for tld in ("com", "net", "org", "de", "fr", "io", "co.uk", "com.br", "ne.jp"):
        assert sum(name.endswith("." + tld) for name in SAMPLE_HOST_NAMES) >= 5, tld
    for start in ("mail", "smtp", "mx", "relay", "static", "dyn"):
        assert any(name.startswith(start) for name in SAMPLE_HOST_NAMES), start


def test_the_sample_is_the_same_in_every_process():
    """The controller and the hosts must judge an entry alike: no per-process randomness."""
    script = (
        "import importlib.util as u, sys, hashlib\n"
        f"s = u.spec_from_file_location('g', {str(GUARDS_FILE)!r}); m = u.module_from_spec(s)\n"
        "sys.modules['g'] = m; s.loader.exec_module(m)\n"
        "print(hashlib.sha256(' '.join(m.SAMPLE_HOST_NAMES).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-I", "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert len(digests) == 1, digests


# --- policy from options and files --------------------------------------------------------------


def test_from_options_builds_the_policy():
    policy = GuardPolicy.from_options(16, 32, ["172.30.53.0/24", "2001:db8:53::/48"])
    assert policy == GuardPolicy(16, 32, (net("172.30.53.0/24"), net("2001:db8:53::/48")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_prefix4": -1}, "min_prefix4 must be an integer from 0 to 32, not -1"),
        ({"min_prefix4": 33}, "min_prefix4 must be an integer from 0 to 32, not 33"),
        ({"min_prefix4": "12"}, "min_prefix4 must be an integer from 0 to 32, not '12'"),
        ({"min_prefix4": True}, "min_prefix4 must be an integer from 0 to 32, not True"),
        ({"min_prefix6": 129}, "min_prefix6 must be an integer from 0 to 128, not 129"),
        ({"min_prefix6": None}, "min_prefix6 must be an integer from 0 to 128, not None"),
        ({"allowed_networks": ["172.30.53.1/24"]}, "allowed network '172.30.53.1/24' is not a network without host"),
        ({"allowed_networks": ["lab.test"]}, "allowed network 'lab.test' is not a network without host bits"),
        ({"allowed_networks": [24]}, "allowed network 24 is not a string"),
        ({"allowed_networks": "172.30.53.0/24"}, "must be a list of networks, not '172.30.53.0/24'"),
        ({"allowed_networks": 5}, "allowed networks must be a list of networks, not 5"),
        ({"allowed_networks": ["0.0.0.0/0"]}, "allowed network 0.0.0.0/0 is wider than the floor /12 (IPv4)"),
        ({"allowed_networks": ["fc00::/7"]}, "allowed network fc00::/7 is wider than the floor /28 (IPv6)"),
    ],
)
def test_from_options_refuses_bad_values_clearly(options, message):
    with pytest.raises(GuardError) as excinfo:
        GuardPolicy.from_options(**options)
    assert message in str(excinfo.value)


def test_a_lower_floor_admits_a_wider_allowed_network():
    policy = GuardPolicy.from_options(min_prefix4=8, allowed_networks=["10.0.0.0/8"])
    assert policy.network_problem(net("10.20.0.0/16")) is None


def test_guard_error_is_a_value_error():
    assert issubclass(GuardError, ValueError)


def test_a_missing_policy_file_means_the_defaults(tmp_path):
    assert GuardPolicy.load(tmp_path / "absent.json") == GuardPolicy()


def test_to_json_and_load_round_trip(tmp_path):
    path = tmp_path / "whitelist-guard.json"
    path.write_text(LAB.to_json(), encoding="utf-8")
    assert GuardPolicy.load(path) == LAB
    assert GuardPolicy.load(str(path)) == LAB
    assert json.loads(LAB.to_json()) == {
        "allowed_networks": ["172.30.53.0/24", "2001:db8:53::/48"],
        "min_prefix4": 12,
        "min_prefix6": 28,
    }


def test_to_json_is_what_the_role_renders_with_to_nice_json():
    """roles/mailguard writes the policy file with to_nice_json: the same bytes as to_json."""
    role_dict = {"min_prefix4": 16, "min_prefix6": 32, "allowed_networks": ["172.30.53.0/24"]}
    assert to_nice_json(role_dict) + "\n" == GuardPolicy.from_options(**role_dict).to_json()


def test_a_partial_policy_file_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "guard.json"
    path.write_text('{"allowed_networks": ["172.30.53.0/24"]}', encoding="utf-8")
    assert GuardPolicy.load(path) == GuardPolicy(allowed=(net("172.30.53.0/24"),))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{", "Expecting property name"),
        ("[]", "it must be a JSON object"),
        ('{"min_prefix_4": 8}', "unknown keys ['min_prefix_4']"),
        ('{"min_prefix4": 40}', "min_prefix4 must be an integer from 0 to 32, not 40"),
        ('{"allowed_networks": ["10.0.0.0/33"]}', "allowed network '10.0.0.0/33'"),
    ],
)
def test_a_bad_policy_file_is_an_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "guard.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GuardError) as excinfo:
        GuardPolicy.load(path)
    assert str(excinfo.value).startswith(f"bad whitelist guard policy {path}: ")
    assert reason in str(excinfo.value)


def test_an_unreadable_policy_file_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(GuardError, match=f"cannot read the whitelist guard policy {tmp_path}"):
        GuardPolicy.load(tmp_path)  # a directory
    binary = tmp_path / "guard.json"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(GuardError, match="cannot read the whitelist guard policy"):
        GuardPolicy.load(binary)


# --- one file for the controller and the hosts --------------------------------------------------


def test_the_module_is_standard_library_only_without_relative_imports():
    tree = ast.parse(GUARDS_FILE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import: the hosts load this file by path"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names


def test_the_file_works_loaded_by_path_as_the_hosts_load_it(tmp_path):
    copy = tmp_path / "guards.py"
    copy.write_bytes(GUARDS_FILE.read_bytes())
    script = (
        "import importlib.util as u, ipaddress, sys\n"
        f"s = u.spec_from_file_location('mailguard_guards', {str(copy)!r}); m = u.module_from_spec(s)\n"
        "sys.modules[s.name] = m; s.loader.exec_module(m)\n"
        "p = m.GuardPolicy.load('/nonexistent/guard.json')\n"
        "print(p.network_problem(ipaddress.ip_network('0.0.0.0/1')), p.regex_problem('.'), sep='|')"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    network, regex = result.stdout.strip().split("|")
    assert network == "wider than the floor /12 (IPv4)"
    assert regex.startswith("the regex matches unrelated host names")


def run_guards_file(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GUARDS_FILE), *args], capture_output=True, text=True, check=False)


def test_run_as_a_script_it_checks_a_policy_file(tmp_path):
    """The mailguard role's validate: python3 guards.py POLICY_FILE."""
    good = tmp_path / "good.json"
    good.write_text(LAB.to_json(), encoding="utf-8")
    assert (run_guards_file(str(good)).returncode, run_guards_file(str(good)).stderr) == (0, "")
    bad = tmp_path / "bad.json"
    bad.write_text('{"allowed_networks": ["0.0.0.0/0"]}', encoding="utf-8")
    result = run_guards_file(str(bad))
    assert result.returncode == 1
    assert result.stderr == f"bad whitelist guard policy {bad}: allowed network 0.0.0.0/0 is wider than the floor " \
        "/12 (IPv4); lower min_prefix4 if you really mean it\n"  # fmt: skip


def test_run_as_a_script_a_missing_file_or_no_file_is_an_error(tmp_path):
    missing = run_guards_file(str(tmp_path / "absent.json"))
    assert (missing.returncode, missing.stderr) == (1, f"{tmp_path / 'absent.json'}: no such file\n")
    assert run_guards_file().returncode == 2
