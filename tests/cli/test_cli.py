"""spf-netblocks as an admin runs it from cron: real process, real lab DNS server."""

from __future__ import annotations

import json

import pytest

from spfwalk import cli
from tests.cli.cli_lab import ZONE, run_cli


def test_first_run_writes_then_second_run_is_unchanged(server, tmp_path):
    out = tmp_path / "whitelist_clients.local"
    first = run_cli(server, "--output", str(out))
    assert first.returncode == cli.EXIT_CHANGED, first.stderr
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
    state = json.loads((tmp_path / "whitelist_clients.local.state.json").read_text())
    assert sorted(state["roots"]) == ["gmail.test", "ses.test"]

    mtime = out.stat().st_mtime_ns
    second = run_cli(server, "--output", str(out))
    assert second.returncode == cli.EXIT_UNCHANGED, second.stderr
    assert out.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(("fmt", "entries"), [
    ("postgrey", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]),
    ("cidr", ["192.0.2.0/24\tpermit", "198.51.100.0/24\tpermit", "203.0.113.0/24\tpermit", "2001:db8::/32\tpermit"]),
    ("exim", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]),
    ("sqlgrey", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]),
    ("spamd", ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]),
])
def test_each_netblock_is_written_below_the_chain_it_came_from(server, tmp_path, fmt, entries):
    out = tmp_path / f"list.{fmt}"
    assert run_cli(server, "--output", str(out), "--format", fmt).returncode == cli.EXIT_CHANGED
    body = out.read_text().splitlines()[6:]  # after the generated, format and count lines
    gmail = "# gmail.test > redirect=_spf.gmail.test > include:_nb1.gmail.test"
    assert body == [gmail, entries[0], gmail, entries[1], "# ses.test", entries[2],
                    "# gmail.test > redirect=_spf.gmail.test > include:_nb2.gmail.test", entries[3]]
    # The state keeps the chains whole, for a run whose walk fails (the same comments again).
    state = json.loads((tmp_path / f"list.{fmt}.state.json").read_text())
    assert state["provenance"]["ses.test"] == {"203.0.113.0/24": ["ses.test > ip4:203.0.113.0/24"]}
    before = out.read_bytes()
    assert run_cli(server, "--output", str(out), "--format", fmt).returncode == cli.EXIT_UNCHANGED
    assert out.read_bytes() == before


def test_dropped_reply_keeps_last_good_and_leaves_the_file_untouched(server, tmp_path):
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns

    server.update({**ZONE, "faults": {"_nb2.gmail.test": {"drop": True}}})
    report_file = tmp_path / "report.json"
    lifetime = 1.0
    result = run_cli(server, "--output", str(out), "--query-lifetime", str(lifetime),
                     "--report", str(report_file))
    assert result.returncode == cli.EXIT_KEPT_LAST_GOOD, result.stderr
    report = json.loads(report_file.read_text())
    gmail = report["roots"]["gmail.test"]
    assert gmail["status"] == "temperror"
    assert "_nb2.gmail.test" in gmail["errors"][0]
    assert report["elapsed"] < lifetime + 0.5
    assert "kept its 3 last known good netblock(s)" in result.stderr
    assert out.read_bytes() == before
    assert out.stat().st_mtime_ns == mtime


def test_failed_root_without_last_good_writes_nothing(server, tmp_path):
    out = tmp_path / "list"
    result = run_cli(server, "--output", str(out), domains=("gmail.test", "missing.test"))
    assert result.returncode == cli.EXIT_FAILED
    assert "missing.test" in result.stderr and "partial" in result.stderr
    assert not out.exists()


def test_shrink_is_refused_unless_forced(server, tmp_path):
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    before = out.read_bytes()
    shrunk = json.loads(json.dumps(ZONE))
    shrunk["records"]["_nb1.gmail.test"] = {"TXT": ["v=spf1 ip4:192.0.2.0/26 ~all"]}
    server.update(shrunk)

    refused = run_cli(server, "--output", str(out))
    assert refused.returncode == cli.EXIT_FAILED
    assert "gmail.test lost" in refused.stderr
    assert out.read_bytes() == before

    forced = run_cli(server, "--output", str(out), "--force")
    assert forced.returncode == cli.EXIT_CHANGED, forced.stderr
    assert "192.0.2.0/26" in out.read_text()


def test_dry_run_reports_a_change_without_writing(server, tmp_path):
    out = tmp_path / "list"
    result = run_cli(server, "--output", str(out), "--dry-run")
    assert result.returncode == cli.EXIT_CHANGED
    assert "would write" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(("fmt", "expected"), [
    ("cidr", "192.0.2.0/24\tpermit"),
    ("exim", "192.0.2.0/24"),
    ("sqlgrey", "192.0.2.0/24"),
    ("sqlgrey --no-sqlgrey-cidr", "192.0.2"),
    ("spamd", "2001:db8::/32"),
])
def test_every_format_is_available_on_stdout(server, fmt, expected):
    result = run_cli(server, "--format", *fmt.split())
    assert result.returncode == cli.EXIT_UNCHANGED, result.stderr
    assert expected in result.stdout.splitlines()


def test_static_entry_the_format_cannot_hold_is_rejected_by_name(server, tmp_path):
    result = run_cli(server, "--format", "cidr", "--static", "mail.example.org", "--output", str(tmp_path / "x"))
    assert result.returncode == cli.EXIT_FAILED
    assert "mail.example.org" in result.stderr
    assert not (tmp_path / "x").exists()


def test_invalid_static_cidr_is_rejected_by_name(server):
    result = run_cli(server, "--static", "300.1.2.3/24")
    assert result.returncode == cli.EXIT_FAILED
    assert "300.1.2.3/24" in result.stderr


def test_static_entries_are_merged(server, tmp_path):
    static_file = tmp_path / "static"
    static_file.write_text("# Microsoft 365 relays\n/.*outbound\\.protection\\.outlook\\.com$/\n192.0.2.128/25\n")
    result = run_cli(server, "--static-file", str(static_file), "--static", "mail.example.org")
    assert result.returncode == cli.EXIT_UNCHANGED, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert "192.0.2.0/24" in lines and "192.0.2.128/25" not in lines  # collapsed into the /24
    assert "/.*outbound\\.protection\\.outlook\\.com$/" in lines
    assert "mail.example.org" in lines


# --- the width guard and the growth guard (issue 10) -------------------------------------------

def _with_records(**records) -> dict:
    zone = json.loads(json.dumps(ZONE))
    zone["records"].update({name: {"TXT": [text]} for name, text in records.items()})
    return zone


# Each widening an attacker who controls one include (or a typo) can publish.
WIDENED = {
    "two /1 halves": "v=spf1 ip4:0.0.0.0/1 ip4:128.0.0.0/1 ~all",
    "all of IPv6": "v=spf1 ip6:::/0 ~all",
    "a/0": "v=spf1 a:host.gmail.test/0 ~all",
    "a /11": "v=spf1 ip4:64.0.0.0/11 ~all",
    "private space": "v=spf1 ip4:10.0.0.0/8 ~all",
    "IPv6 /27": "v=spf1 ip6:2a00::/27 ~all",
}


@pytest.mark.parametrize("record", WIDENED.values(), ids=WIDENED.keys())
def test_widened_include_fails_the_run_and_leaves_file_and_state_alone(server, tmp_path, record):
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    zone = _with_records(**{"_nb2.gmail.test": record})
    zone["records"]["host.gmail.test"] = {"A": ["192.0.2.77"]}
    server.update(zone)

    state_before = (tmp_path / "list.state.json").read_bytes()
    report_file = tmp_path / "report.json"
    result = run_cli(server, "--output", str(out), "--report", str(report_file))
    assert result.returncode == cli.EXIT_FAILED, result.stderr
    assert "refused netblock" in result.stderr
    assert "include:_nb2.gmail.test" in result.stderr  # the chain that brought it
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert (tmp_path / "list.state.json").read_bytes() == state_before

    forced = run_cli(server, "--output", str(out), "--force")
    assert forced.returncode == cli.EXIT_FAILED  # force accepts growth, never a refused netblock
    assert out.read_bytes() == before


def test_widened_include_without_last_good_list_writes_nothing(server, tmp_path):
    server.update(_with_records(**{"_nb2.gmail.test": WIDENED["two /1 halves"]}))
    out = tmp_path / "list"
    result = run_cli(server, "--output", str(out))
    assert result.returncode == cli.EXIT_FAILED
    assert "0.0.0.0/1" in result.stderr and "wider than" in result.stderr
    assert not out.exists()


def test_documentation_ranges_are_refused_unless_allowed(server, tmp_path):
    result = run_cli(server, "--output", str(tmp_path / "list"), guard=False)
    assert result.returncode == cli.EXIT_FAILED
    assert "special-purpose" in result.stderr
    allowed = run_cli(server, "--output", str(tmp_path / "list"))  # --allow-network for each range
    assert allowed.returncode == cli.EXIT_CHANGED, allowed.stderr


def test_wider_floor_option_lets_a_wide_provider_through(server, tmp_path):
    server.update(_with_records(**{"ses.test": "v=spf1 ip4:64.0.0.0/11 -all"}))
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_FAILED
    result = run_cli(server, "--output", str(out), "--min-prefix4", "11")
    assert result.returncode == cli.EXIT_CHANGED, result.stderr
    assert "64.0.0.0/11" in out.read_text().splitlines()


def _grow_five_times() -> dict:
    # 203.0.113.0/24 -> five /24s: 5 times the addresses of ses.test.
    return _with_records(**{"ses.test": "v=spf1 ip4:203.0.113.0/24 ip4:198.51.100.0/24 ip4:192.0.2.0/24 "
                                        "ip4:45.0.0.0/23 -all"})


def test_growth_by_five_times_is_refused_unless_forced(server, tmp_path):
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out)).returncode == cli.EXIT_CHANGED
    before = out.read_bytes()
    state_before = (tmp_path / "list.state.json").read_bytes()
    server.update(_grow_five_times())

    refused = run_cli(server, "--output", str(out))
    assert refused.returncode == cli.EXIT_FAILED, refused.stderr
    assert "ses.test grew from 256 to 1280 IPv4 addresses" in refused.stderr
    assert out.read_bytes() == before
    assert (tmp_path / "list.state.json").read_bytes() == state_before

    forced = run_cli(server, "--output", str(out), "--force")
    assert forced.returncode == cli.EXIT_CHANGED, forced.stderr
    assert "45.0.0.0/23" in out.read_text().splitlines()


def test_without_state_the_existing_file_is_the_baseline(server, tmp_path):
    out = tmp_path / "list"
    assert run_cli(server, "--output", str(out), domains=("ses.test",)).returncode == cli.EXIT_CHANGED
    (tmp_path / "list.state.json").unlink()  # a new controller, a lost state: the file is still there
    before = out.read_bytes()
    server.update(_grow_five_times())

    refused = run_cli(server, "--output", str(out), domains=("ses.test",))
    assert refused.returncode == cli.EXIT_FAILED, refused.stderr
    assert "grew from 256 to 1280 IPv4 addresses" in refused.stderr
    assert "no state yet" in refused.stderr
    assert out.read_bytes() == before
    assert not (tmp_path / "list.state.json").exists()

    server.update(_with_records(**{"ses.test": "v=spf1 ip4:203.0.113.0/26 -all"}))
    shrunk = run_cli(server, "--output", str(out), domains=("ses.test",))
    assert shrunk.returncode == cli.EXIT_FAILED
    assert "lost 75.0%" in shrunk.stderr


@pytest.mark.parametrize("port", ["70000", "0", "x"])
def test_a_port_out_of_range_is_a_usage_error(server, port):
    result = run_cli(server, "--port", port)
    assert result.returncode == cli.EXIT_USAGE
    assert "not a port number" in result.stderr
