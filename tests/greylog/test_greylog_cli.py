"""greylist-report as an admin runs it: a real process, real files, the lab DNS server for SPF."""

from __future__ import annotations

import gzip
import json

import pytest

from greylog import cli
from tests.greylog import greylog_lab as lab

POOL_LOG = "\n".join([
    lab.POSTGREY_NEW, lab.POSTFIX_REJECT,
    lab.POSTGREY_NEW.replace("08:00:01", "08:10:01").replace("mail-a", "mail-b").replace("192.0.2.10", "198.51.100.20"),
    lab.POSTGREY_NEW.replace("08:00:01", "08:40:01").replace("mail-a", "mail-c").replace("192.0.2.10", "203.0.113.30"),
    lab.POSTGREY_PASS.replace("08:06:01", "09:40:01").replace("delay=360", "delay=6000"),
    "Dec  5 09:00:00 mx1 postgrey[50]: action=greylist, reason=new, client_name=unknown, client_address=203.0.113.99, "
    "sender=bot@spam.test, recipient=bob@example.org",
    "Dec  5 12:00:00 mx1 postfix/anvil[9]: statistics: max connection rate 1/60s",
]) + "\n"

SPF_ZONE = {"records": {
    "pool.test": {"TXT": ["v=spf1 include:_spf.pool.test -all"]},
    "_spf.pool.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 ip4:203.0.113.0/24 ~all"]},
}}

REPORT_KEYS = {"schema", "generator", "inputs", "lines", "lines_unparsed", "span", "min_age", "events", "triplets",
               "messages", "by_sender_domain", "by_client_network", "pools", "whitelist"}
POOL_KEYS = {"sender_domain", "messages", "example", "reasons", "addresses", "address_count", "networks",
             "name_domains", "passed", "never_passed", "delay", "spf", "whitelist"}
DISTRIBUTION_KEYS = {"count", "p50", "p95", "max"}


@pytest.fixture
def pool_log(tmp_path):
    path = tmp_path / "mail.log"
    path.write_text(POOL_LOG)
    return path


def test_text_report_names_the_pool_and_its_delay(pool_log):
    result = lab.run_report(str(pool_log), "--year", "2026")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "Triplets greylisted: 4" in out
    assert "pool.test: 1 message(s) from 3 address(es) in 3 network(s), names under pool.test; delay p50 1h40m" in out
    assert "whitelist it: spf_whitelist_static_entries: [192.0.2.10, 198.51.100.20, 203.0.113.30]" in out
    assert result.stderr == b""


def test_json_report_schema(pool_log):
    result = lab.run_report(str(pool_log), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS
    assert report["schema"] == 1 and report["inputs"] == [str(pool_log)]
    assert report["lines"] == 7 and report["lines_unparsed"] == 0
    assert report["triplets"] == {"greylisted": 4, "passed": 1, "passed_elsewhere": 2, "retried_not_passed": 0,
                                  "never_retried": 1, "too_recent": 0}
    assert set(report["messages"]["delay"]) == DISTRIBUTION_KEYS
    assert report["messages"]["delay"]["max"] == 6000
    for row in report["by_sender_domain"] + report["by_client_network"]:
        assert {"name", "messages", "passed", "never_retried", "delay"} <= set(row)
    (pool,) = report["pools"]
    assert set(pool) == POOL_KEYS
    assert report["whitelist"] == {"spf_whitelist_providers_extra": [],
                                   "spf_whitelist_static_entries": ["192.0.2.10", "198.51.100.20", "203.0.113.30"]}


def test_spf_check_against_the_lab_dns_server(dns_server, pool_log):
    server = dns_server(SPF_ZONE)
    result = lab.run_report(str(pool_log), "--json", "--check-spf", "--nameserver", server.address,
                            "--port", str(server.port))
    assert result.returncode == 0, result.stderr
    (pool,) = json.loads(result.stdout)["pools"]
    assert pool["spf"] == {"status": "ok", "covered": ["192.0.2.10", "198.51.100.20", "203.0.113.30"],
                           "not_covered": []}
    assert pool["whitelist"] == {"spf_whitelist_providers_extra": ["pool.test"]}
    assert server.queries(), "the walk asked the lab server"
    text = lab.run_report(str(pool_log), "--check-spf", "--nameserver", server.address, "--port", str(server.port))
    assert "SPF of pool.test covers 3 of 3 addresses" in text.stdout.decode()
    assert "whitelist it: spf_whitelist_providers_extra: [pool.test]" in text.stdout.decode()


def test_spf_of_a_domain_without_a_record_keeps_the_addresses(dns_server, pool_log):
    server = dns_server({"records": {}})
    result = lab.run_report(str(pool_log), "--json", "--check-spf", "--nameserver", server.address,
                            "--port", str(server.port), "--query-lifetime", "1", "--deadline", "5")
    (pool,) = json.loads(result.stdout)["pools"]
    assert pool["spf"]["status"] != "ok" and pool["spf"]["covered"] == []
    assert pool["whitelist"] == {"spf_whitelist_static_entries": ["192.0.2.10", "198.51.100.20", "203.0.113.30"]}


def test_stdin_and_gzip_give_the_same_report(tmp_path, pool_log):
    packed = tmp_path / "mail.log.2.gz"
    packed.write_bytes(gzip.compress(POOL_LOG.encode()))
    from_gzip = json.loads(lab.run_report(str(packed), "--json").stdout)
    from_stdin = json.loads(lab.run_report("--json", stdin=POOL_LOG).stdout)
    for report in (from_gzip, from_stdin):
        report.pop("inputs")
    assert from_gzip == from_stdin
    assert from_stdin["triplets"]["greylisted"] == 4


def test_journalctl_short_iso_output(tmp_path):
    lines = [f"2026-12-05T{line[7:15]}+0000 {line[16:]}" for line in POOL_LOG.splitlines()]
    text = "-- Journal begins at Mon 2026-11-30 00:00:00 UTC. --\n" + "\n".join(lines) + "\n"
    report = json.loads(lab.run_report("--json", "-", stdin=text).stdout)
    assert report["triplets"]["greylisted"] == 4 and report["lines_unparsed"] == 0
    assert report["span"]["first"] == "2026-12-05T08:00:01"


def test_missing_file_is_one_line(tmp_path):
    lab.assert_one_line_error(lab.run_report(str(tmp_path / "nope.log")), "cannot read", "nope.log",
                              "No such file")


def test_unreadable_gzip_is_one_line(tmp_path, pool_log):
    broken = tmp_path / "mail.log.3.gz"
    broken.write_bytes(gzip.compress(POOL_LOG.encode() * 50)[:60])
    lab.assert_one_line_error(lab.run_report(str(pool_log), str(broken)), "mail.log.3.gz",
                              "not a readable gzip file")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--year", "26"], "is not a year"),
    (["--year", "twenty"], "is not a year"),
    (["--min-age", "an hour"], "is not a duration"),
    (["--reject-text", "("], "is not a regular expression"),
    (["--nameserver", "ns.example"], "is not an IP address"),
    (["--ipv4-prefix", "33"], "prefix length"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_options_are_one_line_usage_errors(pool_log, args, fragment):
    lab.assert_one_line_error(lab.run_report(str(pool_log), *args), fragment)


def test_stdin_twice_is_refused():
    lab.assert_one_line_error(lab.run_report("-", "-", stdin=""), "stdin")


def test_version():
    result = lab.run_report("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"greylist-report {cli.package_version()}"
    assert cli.package_version() != "unknown"


def test_help_documents_exit_codes_and_memory():
    out = lab.run_report("--help").stdout.decode()
    assert "exit codes:" in out and "0  the report was written" in out and "2  bad command line" in out
    assert "never with\nthe size of the log" in out


def test_empty_input_is_a_report_not_an_error():
    result = lab.run_report(stdin="")
    assert result.returncode == 0
    assert b"no greylisting found" in result.stdout


def test_malformed_truncated_and_interleaved_lines_change_no_figure(tmp_path, pool_log):
    clean = json.loads(lab.run_report(str(pool_log), "--json").stdout)
    noisy_lines = []
    for number, line in enumerate(POOL_LOG.splitlines()):
        noise = f"Dec  5 08:0{number}:00 mx1 postfix/smtpd[7]: connect from x[192.0.2.1]"
        noisy_lines += ["\x00\x01 binary junk", noise, line]
    noisy_lines.append("garbled postgrey[50]: action=greylist, reason=new, client_add")  # relevant, unreadable
    noisy_lines.append(lab.POSTGREY_NEW[:60])  # truncated by a crash: no newline either
    noisy = tmp_path / "noisy.log"
    noisy.write_text("\n".join(noisy_lines))
    report = json.loads(lab.run_report(str(noisy), "--json").stdout)
    for key in ("triplets", "messages", "pools", "whitelist"):
        assert report[key] == clean[key], key
    assert report["lines_unparsed"] == 1  # the garbled line; the truncated one is a prefix with no event
