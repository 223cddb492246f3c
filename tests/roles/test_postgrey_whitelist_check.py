"""The postgrey role's whitelist checker, run as the role runs it: a script with a file argument.

The checker is the ``validate`` command for whitelist_clients.local and
whitelist_recipients.local, so what it accepts is what reaches postgrey: exit 0 for a good
file, 1 with one ``FILE:LINE: 'content': reason`` line on stderr per bad line, 2 on a usage or
I/O error. It compiles /regex/ lines with Perl when perl is installed, as postgrey does.
The whitelist guard's rules (tests/roles/test_whitelist_checkers_guard.py) apply on top; here
the checker runs with a guard policy that allows the documentation ranges (tests/roles/conftest.py).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spfwalk.outputs import parse_static_entries, render
from tests.support.guard import doc_guard

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "roles/postgrey/files/usr/local/sbin/postgrey-whitelist-check"

needs_perl = pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")


def run_checker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def check_text(tmp_path: Path, text: str, *options: str, env: dict[str, str] | None = None):
    """Write text to a whitelist file, check it; return (path, completed process)."""
    path = tmp_path / "whitelist.local"
    path.write_text(text, encoding="utf-8")
    return path, run_checker(*options, str(path), env=env)


def check_lines(tmp_path: Path, lines: list[str], *options: str, env: dict[str, str] | None = None):
    return check_text(tmp_path, "".join(line + "\n" for line in lines), *options, env=env)


def assert_accepted(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == ""


def problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == ""
    return result.stderr.splitlines()


def without_perl_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has no perl, so the checker falls back to Python's re."""
    empty = tmp_path / "no-perl-bin"
    empty.mkdir()
    guard = {name: os.environ[name] for name in ("MAILGUARD_GUARDS", "MAILGUARD_GUARD_CONFIG")}
    return {"PATH": str(empty), "LC_ALL": "C.UTF-8", **guard}


def test_the_checker_exists_and_is_executable():
    assert CHECKER.is_file()
    assert CHECKER.stat().st_mode & 0o111


# --- whitelist_clients: accepted ------------------------------------------------------------


def test_valid_client_entries_are_accepted(tmp_path):
    _, result = check_lines(
        tmp_path,
        [
            "# addresses and networks",
            "192.0.2.1",
            "198.51.100.0/24",
            "203.0.113.128/25",
            "203.0.113.7/32",
            "2001:db8::1",
            "2001:db8::/32",
            "2001:db8:1:2::/64",
            "",
            "   ",
            "\t# an indented comment",
            "# host and domain names",
            "mail.example.com",
            "example.org",
            "mx-1.mail.example.net",
            "_spf-relay.example.com",
            "xn--bcher-kva.example",
            "# regexes",
            r"/^mx\d+\.example\.com$/",
            r"/^smtp[0-9]+-g[0-9]+\.example\.net$/",
            r"/\.mail\.example\.org$/",
            "relay.example.com   # a comment after an entry",
            "   mail2.example.com   ",
        ],
    )
    assert_accepted(result)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "# a\n\n   # b\n"])
def test_a_file_without_entries_is_accepted(tmp_path, text):
    _, result = check_text(tmp_path, text)
    assert_accepted(result)


def test_crlf_line_endings_are_accepted(tmp_path):
    _, result = check_text(
        tmp_path, "# written on Windows\r\nmail.example.com\r\n192.0.2.0/24\r\n/^mx\\d+\\.example\\.com$/\r\n"
    )
    assert_accepted(result)


def test_entries_in_the_style_of_debians_stock_list_are_accepted(tmp_path):
    """Debian's whitelist_clients: dated comments, names, domains, regexes, addresses, a.b.c."""
    _, result = check_lines(
        tmp_path,
        [
            "# postgrey whitelist for mail client hostnames",
            "# --------------------------------------------",
            "# put this file in /etc/postgrey or specify its path",
            "# with --whitelist-clients=xxx",
            "",
            "# 2004-05-20: example mailing list (unique sender with letters)",
            "lists.example.org",
            "# 2004-06-29: example.net (no retry, reported by someone) ",
            r"/^ms-smtp.*\.example\.net$/",
            r"/^lake.*mta.*\.example\.net$/",
            "# 2004-07-02: example.com (no retry)",
            "192.0.2.174",
            "# 2004-07-19: pool (no retry)",
            "p01m168.example.com",
            "p02m169.example.com",
            "# several servers, no retry (a three-part address is a /24)",
            "198.51.100",
            "# pool of different servers",
            "203.0.113.141",
            "203.0.113.142",
            r"/^mail\d+\.example\.org$/",
            "# unescaped dots, as in the stock list",
            "/^odk.fdv.example.si$/",
            "/^mta[12].example.net$/",
            r"/^pim-\d+-\d+\.example\.com$/",
            "# a big pool",
            r"/^.*-out-.*\.example\.com$/",
            "# 2017: IPv4 and IPv6 networks",
            "192.0.2.0/26",
            "2001:db8:4000::/36",
        ],
    )
    assert_accepted(result)


# --- whitelist_clients: rejected -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("300.1.2.3/24", "not a valid IP address or network"),
        ("1.2.3.4/33", "not a valid IP address or network"),
        ("192.0.2.01", "not a valid IP address or network"),
        ("192.0.2.1/24", "host bits set: the network is 192.0.2.0/24"),
        ("2001:db8::1/64", "host bits set: the network is 2001:db8::/64"),
        ("/[unclosed/", "compile"),
        ("10.1", "postgrey reads a two-part address as the /24 10.1.0.0/24, not a /16: write the CIDR"),
        ("300.1.2", "not a valid IP address or network"),
        ("0.0.0.0/0", "wider than the floor /12 (IPv4)"),
        ("::/0", "wider than the floor /28 (IPv6)"),
        ("com", "'com' is a single label or a top-level domain"),
        ("fe80::1%eth0", "an IPv6 zone index is not understood by postgrey"),
        ("mail..example.com", "is not a valid host or domain name"),
        ("-mail.example.com", "is not a valid host or domain name"),
        ("*.example.com", "is not a valid host or domain name"),
        ("example.com.", "is not a valid host or domain name"),
        ("1.2.3.4.5", "is not a valid host or domain name"),
        ("mail example.com", "contains white space"),
        ("postmaster@", "is not a valid host or domain name"),
    ],
)
def test_a_bad_client_line_is_named_with_its_line_number(tmp_path, entry, reason):
    path, result = check_lines(tmp_path, ["# good lines around the bad one", "mail.example.com", entry, "192.0.2.1"])
    problems = problem_lines(result)
    assert len(problems) == 1, problems
    prefix = f"{path}:3: {entry!r}: "
    assert problems[0].startswith(prefix), problems[0]
    assert reason in problems[0][len(prefix) :]


def test_a_hash_inside_a_regex_starts_a_comment_and_the_reason_says_so(tmp_path):
    path, result = check_lines(tmp_path, [r"/^mx\d+#1\.example\.com$/"])
    (problem,) = problem_lines(result)
    assert problem.startswith(f"{path}:1: " + repr(r"/^mx\d+#1\.example\.com$/") + ": ")
    assert "'#' starts a comment anywhere on a line, even inside a regex" in problem


def test_every_bad_line_is_reported_in_line_order(tmp_path):
    lines = [
        "# mixed file",  # 1
        "192.0.2.0/24",  # 2
        "/[unclosed/",  # 3
        "300.1.2.3/24",  # 4
        r"/^mx\d+\.example\.com$/",  # 5
        "",  # 6
        "/(unbalanced/",  # 7
        "example.org",  # 8
        "192.0.2.1/24",  # 9
        "10.1",  # 10
        "com",  # 11
        "fe80::1%eth0",  # 12
        "::/0",  # 13
    ]
    path, result = check_lines(tmp_path, lines)
    problems = problem_lines(result)
    bad = [3, 4, 7, 9, 10, 11, 12, 13]
    assert [problem.split(": ", 1)[0] for problem in problems] == [f"{path}:{number}" for number in bad]
    for number, problem in zip(bad, problems, strict=True):
        assert problem.startswith(f"{path}:{number}: {lines[number - 1]!r}: ")


# --- regexes: Perl like postgrey, Python's re without perl -----------------------------------


@needs_perl
def test_regexes_are_compiled_by_perl_when_it_is_installed(tmp_path):
    path, result = check_lines(
        tmp_path,
        [
            r"/^mx\.example\.com\z/",  # \z is Perl (Python's re has no \z): accepted
            "/[unclosed/",
            r"/^mx\d{/",  # Python's re reads the brace as a literal, Perl refuses it
            r"/(?<name>mx\d+)\.example\.com/",
        ],
    )
    problems = problem_lines(result)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}:2: '/[unclosed/': Perl cannot compile the regex: Unmatched [")
    assert problems[1].startswith(f"{path}:3: " + repr(r"/^mx\d{/") + ": Perl cannot compile the regex: ")
    assert "Unescaped left brace" in problems[1]
    # Perl's own location ("at -e line 4, <STDIN> line 2.") is not passed on.
    assert all(" at -e line" not in problem for problem in problems)


def test_without_perl_regexes_are_compiled_by_python(tmp_path):
    path, result = check_lines(
        tmp_path,
        [r"/^mx\d+\.example\.com$/", "/[unclosed/", "mail.example.com"],
        env=without_perl_env(tmp_path),
    )
    (problem,) = problem_lines(result)
    assert problem.startswith(f"{path}:2: '/[unclosed/': the regex does not compile: ")


def test_without_perl_a_good_file_is_accepted(tmp_path):
    _, result = check_lines(
        tmp_path,
        ["192.0.2.0/24", "2001:db8::/32", "mail.example.com", r"/^mx\d+\.example\.com$/"],
        env=without_perl_env(tmp_path),
    )
    assert_accepted(result)


# --- whitelist_recipients --------------------------------------------------------------------


def test_valid_recipient_entries_are_accepted(tmp_path):
    _, result = check_lines(
        tmp_path,
        [
            "# Recipients postgrey never greylists",
            "postmaster@",
            "abuse@",
            "user@example.com",
            "first.last+tag@mail.example.org",
            "example.net",
            "lists.example.org",
            r"/^postmaster@/",
            r"/^(abuse|security)@example\.com$/",
            "",
            "hostmaster@   # a trailing comment",
        ],
        "--recipients",
    )
    assert_accepted(result)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("@example.com", "postgrey reads '@domain' as an empty user name, which never matches: write 'example.com'"),
        ("postmaster", "a bare name is read as a domain: write 'postmaster@' for that user at every domain"),
        ("abuse", "a bare name is read as a domain: write 'abuse@' for that user at every domain"),
        ("user@com", "'com' is a single label or a top-level domain"),
        ("user@exa mple.com", "contains white space"),
        ("us(er@example.com", "not a valid user name before the @"),
        ("user@-bad.example.com", "is not a valid host or domain name"),
        ("/[unclosed/", "compile"),
    ],
)
def test_a_bad_recipient_line_is_named_with_the_fix(tmp_path, entry, reason):
    path, result = check_lines(tmp_path, ["postmaster@", "# the bad one", entry], "--recipients")
    (problem,) = problem_lines(result)
    prefix = f"{path}:3: {entry!r}: "
    assert problem.startswith(prefix), problem
    assert reason in problem[len(prefix) :]


def test_the_role_default_recipients_are_accepted(tmp_path):
    """The shape of the role's whitelist_recipients.local: managed header, postmaster@ and abuse@."""
    _, result = check_lines(
        tmp_path,
        [
            "#",
            "# Ansible managed",
            "#",
            "#",
            '# "user@" = that user (and user+ext) at every domain, "user@domain", "domain" = the domain and',
            '# its subdomains, "/regex/" = the full address. Not "@domain": postgrey never matches it.',
            "postmaster@",
            "abuse@",
        ],
        "--recipients",
    )
    assert_accepted(result)


def test_recipient_syntax_is_only_accepted_with_the_recipients_option(tmp_path):
    path, result = check_lines(tmp_path, ["postmaster@"])
    (problem,) = problem_lines(result)
    assert problem.startswith(f"{path}:1: 'postmaster@': ")


# --- usage and I/O errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-file"),
        pytest.param(["--recipients"], id="option-without-file"),
        pytest.param(["--bogus", "FILE"], id="unknown-option"),
        pytest.param(["FILE", "FILE"], id="two-files"),
    ],
)
def test_a_usage_error_exits_2(tmp_path, args):
    good = tmp_path / "good"
    good.write_text("mail.example.com\n", encoding="utf-8")
    result = run_checker(*(str(good) if arg == "FILE" else arg for arg in args))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "usage: postgrey-whitelist-check" in result.stderr


def test_a_missing_file_exits_2_and_names_it(tmp_path):
    missing = tmp_path / "does-not-exist"
    result = run_checker(str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{missing}: ")


def test_help_exits_0():
    result = run_checker("--help")
    assert result.returncode == 0
    assert "--recipients" in result.stdout


# --- the project's own generator -------------------------------------------------------------


def generated_postgrey_whitelist(static_entries: list[str]) -> str:
    """The postgrey file spfwalk renders, with the static entries the tests' guard policy allows."""
    networks = [
        ipaddress.ip_network("198.51.100.0/25"),
        ipaddress.ip_network("203.0.113.7/32"),
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8:1::/48"),
        ipaddress.ip_network("2001:db8:2::5/128"),
        ipaddress.ip_network("2001:db8:abcd::/64"),
    ]
    rendered = render(
        "postgrey",
        networks,
        parse_static_entries(static_entries, doc_guard()),
        ["roots: example.net, example.org (6 netblocks, fresh)", "", "# static entries follow the walked ones"],
    )
    return rendered.content


def test_the_spfwalk_postgrey_output_is_accepted(tmp_path):
    content = generated_postgrey_whitelist(
        [
            "# static entries",
            "mail.example.com",
            "Relay.Example.ORG.",
            r"/^mx\d+\.example\.net$/",
            r"/^smtp-out-[0-9]+\.example\.com$/",
            "2001:db8:ffff::/48",
            "192.0.2.99",
            "198.51.100.200/29",
        ]
    )
    # The file holds every kind of line the generator writes, so the check below covers them all.
    lines = content.splitlines()
    assert lines[0].startswith("# Generated by spfwalk")
    for expected in (
        "198.51.100.0/25",
        "203.0.113.7",
        "2001:db8:1::/48",
        "2001:db8:2::5",
        "2001:db8:ffff::/48",
        "mail.example.com",
        "relay.example.org",
        r"/^mx\d+\.example\.net$/",
    ):
        assert expected in lines, (expected, content)

    path = tmp_path / "whitelist_clients.local"
    path.write_text(content, encoding="utf-8")
    assert_accepted(run_checker(str(path)))


def test_the_spfwalk_postgrey_output_is_accepted_without_perl(tmp_path):
    path = tmp_path / "whitelist_clients.local"
    path.write_text(generated_postgrey_whitelist(["mail.example.com", r"/^mx\d+\.example\.net$/"]), encoding="utf-8")
    assert_accepted(run_checker(str(path), env=without_perl_env(tmp_path)))


@needs_perl
def test_a_static_regex_python_accepts_but_perl_cannot_compile_is_caught(tmp_path):
    """spfwalk validates static regexes with Python's re; postgrey compiles them with Perl."""
    content = generated_postgrey_whitelist(["mail.example.com", r"/^mx\d{/"])
    lines = content.splitlines()
    number = lines.index(r"/^mx\d{/") + 1
    path = tmp_path / "whitelist_clients.local"
    path.write_text(content, encoding="utf-8")
    (problem,) = problem_lines(run_checker(str(path)))
    assert problem.startswith(f"{path}:{number}: " + repr(r"/^mx\d{/") + ": Perl cannot compile the regex: ")


def test_bytes_that_are_not_utf8_are_read_like_postgrey_reads_them(tmp_path):
    path = tmp_path / "whitelist.local"
    path.write_bytes(b"# Lo\xefc's relays\n192.0.2.0/24\n")
    assert_accepted(run_checker(str(path)))


def test_lines_are_split_on_newlines_only_as_postgrey_does(tmp_path):
    # \x1c is a line break for str.splitlines() but not for postgrey: one entry, line 1.
    _path, result = check_text(tmp_path, "mail.example.com\x1cfoo.example.com\ncom\n")
    problems = problem_lines(result)
    assert [line.split(":")[1] for line in problems] == ["1", "2"]
