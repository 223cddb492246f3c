"""spf-netblocks as a Unix tool: exit codes, one-line errors, --version, --dry-run diff, '-' for
stdout, options checked before anything runs. Real processes against the lab DNS server."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata

import pytest

from spfwalk import cli
from tests.cli.cli_lab import REPO, ZONE, assert_one_line_error, run_cli, unprivileged


def _with_records(**records) -> dict:
    zone = json.loads(json.dumps(ZONE))
    zone["records"].update({name: {"TXT": [text]} for name, text in records.items()})
    return zone


# ses.test doubles (within the growth guard) with a range outside the documentation ones, so the
# file's networks change; gmail.test's second include answers SERVFAIL, so gmail.test falls back.
SES_GROWN = "v=spf1 ip4:203.0.113.0/24 ip4:45.0.0.0/24 -all"
NB2_SERVFAIL = {"_nb2.gmail.test": {"servfail": True}}


def _pyproject_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]["version"]


# --- exit codes ----------------------------------------------------------------------------------

def test_a_change_while_a_domain_falls_back_exits_5_and_writes(server, workdir):
    out = workdir / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    server.update({**_with_records(**{"ses.test": SES_GROWN}), "faults": NB2_SERVFAIL})

    result = run_cli(server, "--output", str(out))
    assert result.returncode == cli.EXIT_CHANGED_KEPT_LAST_GOOD == 5, result.stderr
    assert "45.0.0.0/24" in out.read_text().splitlines()
    assert "gmail.test" in result.stderr and "last known good" in result.stderr


def test_a_rewritten_state_alone_is_not_a_change_of_the_file(server, workdir):
    out = workdir / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    mtime = out.stat().st_mtime_ns
    (workdir / "list.state.json").unlink()

    result = run_cli(server, "--output", str(out))
    assert result.returncode == cli.EXIT_UNCHANGED, result.stderr  # the daemon has nothing new to read
    assert (workdir / "list.state.json").exists()
    assert out.stat().st_mtime_ns == mtime


def test_help_documents_every_exit_code(server):
    result = run_cli(server, "--help")
    assert result.returncode == 0
    for code, meaning in [(0, "unchanged"), (3, "changed"), (4, "unchanged, and some domains"),
                          (5, "changed, and some domains"), (1, "failed"), (2, "bad command line")]:
        assert f"  {code}  {meaning}" in result.stdout


def test_quiet_is_silent_unless_a_domain_falls_back(server, workdir):
    out = workdir / "list"
    first = run_cli(server, "--output", str(out), "--quiet")
    assert (first.returncode, first.stdout, first.stderr) == (cli.EXIT_CHANGED, "", "")
    server.update({**ZONE, "faults": NB2_SERVFAIL})

    result = run_cli(server, "--output", str(out), "--quiet")
    assert result.returncode == cli.EXIT_KEPT_LAST_GOOD
    assert result.stderr.startswith("spf-netblocks: warning: gmail.test: kept its 3 last known good netblock(s)")
    assert result.stderr.count("\n") == 1


# --- every error one line, nothing written -------------------------------------------------------

def test_missing_output_directory(server, workdir):
    out = workdir / "missing" / "list"
    result = run_cli(server, "--output", str(out))
    assert_one_line_error(result, f"the output directory {workdir / 'missing'} does not exist")
    assert not out.parent.exists()


def test_output_directory_without_write_permission(server, workdir):
    target = workdir / "ro"
    target.mkdir()
    target.chmod(0o555)
    result = run_cli(server, "--output", str(target / "list"), prefix=unprivileged())
    assert_one_line_error(result, f"cannot write the output in {target}: Permission denied")
    assert list(target.iterdir()) == []


def test_state_directory_without_write_permission_writes_not_even_the_output(server, workdir):
    state_dir = workdir / "ro"
    state_dir.mkdir()
    state_dir.chmod(0o555)
    out = workdir / "list"
    result = run_cli(server, "--output", str(out), "--state", str(state_dir / "state.json"),
                     prefix=unprivileged())
    assert_one_line_error(result, f"cannot write the state in {state_dir}: Permission denied")
    assert not out.exists()


def test_report_into_a_missing_directory(server, workdir):
    out = workdir / "list"
    result = run_cli(server, "--output", str(out), "--report", str(workdir / "missing" / "report.json"))
    assert_one_line_error(result, "the report directory", "does not exist")
    assert not out.exists()


def test_static_file_that_is_not_utf8(server, workdir):
    static = workdir / "static"
    static.write_bytes(b"# Caf\xe9 relays\n192.0.2.1\n")
    result = run_cli(server, "--static-file", str(static))
    assert_one_line_error(result, f"--static-file {static} is not UTF-8 text (byte 0xe9 at offset 5)")
    assert result.stdout == ""


def test_missing_static_file(server, workdir):
    result = run_cli(server, "--static-file", str(workdir / "nope"))
    assert_one_line_error(result, f"cannot read --static-file {workdir / 'nope'}: No such file or directory")


def test_an_unexpected_exception_of_the_walk_is_one_line(monkeypatch, capsys, tmp_path):
    # No real input makes the walk raise (that would be the bug); stand in for one.
    def broken_walk(domains, options):
        raise RuntimeError("resolver exploded\nsecond line")

    monkeypatch.setattr(cli, "walk_sync", broken_walk)
    code = cli.main(["example.test", "--output", str(tmp_path / "list")])
    assert code == cli.EXIT_FAILED
    assert capsys.readouterr().err == "spf-netblocks: error: unexpected RuntimeError: resolver exploded second line\n"
    assert list(tmp_path.iterdir()) == []


# --- --version, --dry-run, '-' -------------------------------------------------------------------

def test_version_is_the_package_version(server):
    result = run_cli(server, "--version")
    assert (result.returncode, result.stdout) == (0, f"spf-netblocks {_pyproject_version()}\n")


def test_version_from_the_source_tree_without_package_metadata(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.metadata, "version", not_installed)
    assert cli.package_version() == _pyproject_version()


def patched(lines: list[str], hunks: list[str]) -> list[str]:
    """``lines`` with a unified diff's hunks applied (checking every context and removed line)."""
    result, at = [], 0
    for line in hunks:
        if line.startswith("@@"):
            start, count = re.match(r"@@ -(\d+)(?:,(\d+))?", line).groups()
            begin = int(start) - 1 if count != "0" else int(start)
            result.extend(lines[at:begin])
            at = begin
        elif line.startswith("+"):
            result.append(line[1:])
        else:
            assert lines[at] == line[1:], (at, line)
            if line.startswith(" "):
                result.append(lines[at])
            at += 1
    return [*result, *lines[at:]]


def test_dry_run_prints_the_diff_and_exits_as_the_real_run(server, workdir):
    out = workdir / "list"
    new = run_cli(server, "--output", str(out), "--dry-run")
    assert new.returncode == cli.EXIT_CHANGED
    assert new.stdout.startswith(f"--- /dev/null\n+++ {out}\n")
    assert "+192.0.2.0/24\n" in new.stdout
    assert list(workdir.iterdir()) == []

    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    before, state_before = out.read_text(), (workdir / "list.state.json").read_text()
    server.update({**_with_records(**{"ses.test": SES_GROWN}), "faults": NB2_SERVFAIL})
    dry = run_cli(server, "--output", str(out), "--dry-run")
    assert out.read_text() == before and (workdir / "list.state.json").read_text() == state_before

    real = run_cli(server, "--output", str(out))
    assert dry.returncode == real.returncode == cli.EXIT_CHANGED_KEPT_LAST_GOOD
    after = out.read_text().splitlines()
    diff = dry.stdout.splitlines()
    assert diff[:2] == [f"--- {out}", f"+++ {out}"]
    # The diff is exactly the change: applied to the old file, it gives the new one (line sets would
    # not do: the chain comments repeat).
    assert patched(before.splitlines(), diff[2:]) == after
    assert "+45.0.0.0/24" in diff

    unchanged = run_cli(server, "--output", str(out), "--dry-run")
    assert (unchanged.returncode, unchanged.stdout) == (cli.EXIT_KEPT_LAST_GOOD, "")


def test_report_dash_goes_to_stdout(server, workdir):
    result = run_cli(server, "--output", str(workdir / "list"), "--report", "-")
    assert result.returncode == cli.EXIT_CHANGED, result.stderr
    assert sorted(json.loads(result.stdout)["roots"]) == ["gmail.test", "ses.test"]


def test_output_dash_is_stdout(server, workdir):
    result = run_cli(server, "--output", "-", cwd=workdir)
    assert result.returncode == cli.EXIT_UNCHANGED, result.stderr
    assert "192.0.2.0/24" in result.stdout.splitlines()
    assert not (workdir / "-").exists()


@pytest.mark.parametrize("args", [["--report", "-"], ["--output", "-", "--report", "-"],
                                  ["--output", "FILE", "--dry-run", "--report", "-"]])
def test_report_and_whitelist_or_diff_both_on_stdout_is_a_usage_error(server, workdir, args):
    args = [str(workdir / "list") if arg == "FILE" else arg for arg in args]
    result = run_cli(server, *args)
    assert_one_line_error(result, "--report - needs stdout", code=cli.EXIT_USAGE)
    assert result.stdout == ""
    assert server.queries() == []


# --- options checked before anything runs --------------------------------------------------------

BAD_OPTIONS = [
    ("--nameserver", "not-an-ip", "not an IP address"),
    ("--nameserver", "localhost", "not an IP address"),
    ("--port", "70000", "not a port number"),
    ("--max-in-flight", "0", "1 or more"),
    ("--max-in-flight", "2.5", "1 or more"),
    ("--deadline", "nan", "above 0"),
    ("--deadline", "inf", "above 0"),
    ("--deadline", "0", "above 0"),
    ("--query-lifetime", "-1", "above 0"),
    ("--query-lifetime", "nan", "above 0"),
    ("--max-shrink", "1.5", "from 0 to 1"),
    ("--max-shrink", "nan", "from 0 to 1"),
    ("--max-growth", "0.5", "1 or more"),
    ("--max-growth", "nan", "1 or more"),
    ("--min-prefix4", "33", "from 0 to 32"),
    ("--min-prefix4", "-1", "from 0 to 32"),
    ("--min-prefix6", "129", "from 0 to 128"),
]


@pytest.mark.parametrize(("option", "value", "why"), BAD_OPTIONS, ids=[f"{o}={v}" for o, v, _ in BAD_OPTIONS])
def test_a_bad_option_is_a_one_line_usage_error_before_any_query(server, workdir, option, value, why):
    # A short walk first, so that the old, unchecked code fails fast rather than hanging.
    result = run_cli(server, "--output", str(workdir / "list"), "--deadline", "3", "--query-lifetime", "1",
                     f"{option}={value}")
    assert_one_line_error(result, f"argument {option}: {value!r} is not", why, code=cli.EXIT_USAGE)
    assert server.queries() == []
    assert list(workdir.iterdir()) == []


def test_option_bounds_themselves_are_accepted(server, workdir):
    result = run_cli(server, "--max-shrink", "1", "--max-growth", "1", "--max-in-flight", "1",
                     "--min-prefix4", "0", "--min-prefix6", "0", "--deadline", "0.5e2")
    assert result.returncode == cli.EXIT_UNCHANGED, result.stderr
