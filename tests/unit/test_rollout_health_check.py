"""The rollout's scripts, run as the role runs them (python3 -c): the health check
(roles/whitelist_rollout/files/rollout_health_check.py) against a stand-in policy service, a stand-in
`exim4 -be` and an SMTP greeter on loopback, and the rollback (rollout_restore.py) on files.

The stand-ins answer the way the real daemons were seen to answer (postgrey: DUNNO /
DEFER_IF_PERMIT ...; sqlgrey: "PREPEND X-Greylist: whitelisted ..." / "defer_if_permit ...");
the Molecule scenarios cluster and cluster-shared run the check against the real ones.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spfwalk.outputs import render

FILES = Path(__file__).resolve().parents[2] / "roles/whitelist_rollout/files"
SCRIPT = FILES / "rollout_health_check.py"
RESTORE = FILES / "rollout_restore.py"
WHITELISTED = ipaddress.ip_network("198.51.100.0/24")

ANSWERS = {
    "postgrey": ("DUNNO", "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/"),
    "sqlgrey": ("PREPEND X-Greylist: whitelisted by SQLgrey-1.8.0", "defer_if_permit Greylisted for 5 minutes"),
    "broken": ("DUNNO", "DUNNO"),  # lets everyone through: greylisting is off
}


def policy_handler(style: str, networks=(WHITELISTED,), asked=None):
    """A greylist that whitelists the clients in networks (its list) and records who asked."""
    whitelisted, unknown = ANSWERS[style]

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            attributes = {}
            for raw in self.rfile:
                line = raw.decode().strip()
                if not line:
                    break
                name, _, value = line.partition("=")
                attributes[name] = value
            client = ipaddress.ip_address(attributes["client_address"])
            if asked is not None:
                asked.append(str(client))
            action = whitelisted if any(client in network for network in networks) else unknown
            self.wfile.write(f"action={action}\n\n".encode())

    return Handler


class Greeter(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"220 mx.test ESMTP\r\n")
        self.rfile.readline()


def serve(server: socketserver.BaseServer) -> socketserver.BaseServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def smtp():
    server = serve(TcpServer(("127.0.0.1", 0), Greeter))
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def whitelist(tmp_path):
    path = tmp_path / "whitelist"
    path.write_text(f"# generated\n{WHITELISTED}\n/regex-not-sampled/\nmail.example.org\n")
    return path


def policy_service(style: str, transport: str, tmp_path, networks=(WHITELISTED,), asked=None):
    handler = policy_handler(style, networks, asked)
    if transport == "unix":
        path = str(tmp_path / "policy.sock")
        return serve(UnixServer(path, handler)), path
    server = serve(TcpServer(("127.0.0.1", 0), handler))
    return server, f"127.0.0.1:{server.server_address[1]}"


def check(whitelist, policy, smtp, *extra, timeout="0", env=None):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(), f"--whitelist={whitelist}", f"--policy={policy}",
         f"--smtp={smtp}", "--unknown-client=192.0.2.1", f"--timeout={timeout}", "--io-timeout=2", *extra],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )


def checked(style, tmp_path, whitelist, smtp, *extra, networks=(WHITELISTED,)):
    """The check's result against a greylist whitelisting networks, and the clients it asked."""
    asked = []
    server, policy = policy_service(style, "tcp", tmp_path, networks, asked)
    try:
        return check(whitelist, policy, smtp, *extra), asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("style", ["postgrey", "sqlgrey"])
def test_a_greylisting_host_is_healthy(style, transport, tmp_path, whitelist, smtp):
    server, policy = policy_service(style, transport, tmp_path)
    try:
        done = check(whitelist, policy, smtp)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert '"healthy": true' in done.stdout


def test_a_host_that_lets_everyone_through_is_not_healthy(tmp_path, whitelist, smtp):
    server, policy = policy_service("broken", "tcp", tmp_path)
    try:
        done = check(whitelist, policy, smtp)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1
    assert "192.0.2.1" in done.stderr and "not DEFER_IF_PERMIT" in done.stderr


def test_a_silent_policy_service_is_named(tmp_path, whitelist, smtp):
    missing = tmp_path / "nothing-listens-here.sock"
    done = check(whitelist, str(missing), smtp)
    assert done.returncode == 1
    assert str(missing) in done.stderr and "does not answer" in done.stderr


def test_a_silent_smtp_port_is_named(tmp_path, whitelist):
    server, policy = policy_service("postgrey", "tcp", tmp_path)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again before the check runs: nothing listens
    try:
        done = check(whitelist, policy, f"127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1
    assert "Postfix does not answer" in done.stderr


# --- both sides: inside networks of each family, outside addresses of each range -------------------

# Ranges the check must prove greylisted, and its probe addresses there (the script's OUTSIDE_PROBES).
LOW, HIGH, V6 = "0.0.0.0/1", "128.0.0.0/1", "2000::/3"
EVERYTHING_BUT_THE_PROBE = [*ipaddress.ip_network("0.0.0.0/0").address_exclude(ipaddress.ip_network("192.0.2.0/24")),
                            ipaddress.ip_network("::/0")]


def in_range(clients, scope):
    return [client for client in clients if ipaddress.ip_address(client) in ipaddress.ip_network(scope)]


def write_list(path, entries):
    path.write_text("# generated\n" + "".join(f"{entry}\n" for entry in entries))
    return path


@pytest.mark.parametrize(
    ("entries", "open_ranges"),
    [
        (["0.0.0.0/1"], [LOW]),  # one widened include: 192.0.2.1 is still deferred
        (["::/0"], [V6]),
        (["0.0.0.0/0"], [LOW, HIGH]),
        (EVERYTHING_BUT_THE_PROBE, [LOW, HIGH, V6]),  # open to all but the one address the old check asked
    ],
    ids=["v4-low-half", "v6-all", "v4-all", "all-but-the-probe"],
)
def test_a_list_that_opens_the_greylist_is_not_healthy(entries, open_ranges, tmp_path, smtp):
    path = write_list(tmp_path / "whitelist", [WHITELISTED, *entries])
    networks = [WHITELISTED, *(ipaddress.ip_network(entry) for entry in entries)]
    done, _ = checked("postgrey", tmp_path, path, smtp, networks=networks)
    assert done.returncode == 1, done.stdout
    for scope in open_ranges:
        assert f"the whitelist covers {scope} (" in done.stderr, done.stderr
    assert "the greylist is open" in done.stderr


@pytest.mark.parametrize("style", ["postgrey", "sqlgrey"])
def test_a_greylist_that_passes_all_but_the_unknown_client_is_not_healthy(style, tmp_path, whitelist, smtp):
    # The list is fine, the daemon is not: it lets everyone through but 192.0.2.0/24.
    done, _ = checked(style, tmp_path, whitelist, smtp, networks=EVERYTHING_BUT_THE_PROBE)
    assert done.returncode == 1, done.stdout
    for probe in ("1.2.3.4", "129.1.2.3", "2003:1::1"):
        assert f"for {probe}, outside the whitelist, not DEFER_IF_PERMIT" in done.stderr, done.stderr


def test_each_family_and_each_outside_range_is_asked(tmp_path, smtp):
    # IPv4 comes first in a generated list: one sample must still reach the IPv6 network.
    entries = ["198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/24", "2001:db8:1::/48"]
    path = write_list(tmp_path / "whitelist", entries)
    done, asked = checked("postgrey", tmp_path, path, smtp, "--samples=1",
                          networks=[ipaddress.ip_network(entry) for entry in entries])
    assert done.returncode == 0, done.stderr
    assert "2001:db8:1::" in asked and in_range(asked, "198.51.100.0/24"), asked
    assert all(in_range(asked, scope) for scope in (LOW, HIGH, V6)), asked
    assert "192.0.2.1" in asked


def test_an_ipv6_network_the_greylist_does_not_whitelist_is_named(tmp_path, smtp):
    # postgrey 1.34 and older read an IPv6 CIDR line as a string: the network is listed, not whitelisted.
    path = write_list(tmp_path / "whitelist", ["198.51.100.0/24", "203.0.113.0/24", "2001:db8:1::/48"])
    done, _ = checked("postgrey", tmp_path, path, smtp, "--samples=1",
                      networks=[ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")])
    assert done.returncode == 1, done.stdout
    assert "for 2001:db8:1:: of the whitelisted 2001:db8:1::/48" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("entry", "network"),
    [("1.2.3.4", "1.2.3.4/32"), ("1.2.3.0/24", "1.2.3.0/24"), ("1.2.3", "1.2.3.0/24")],
    ids=["address", "cidr", "sqlgrey-class-c"],
)
def test_an_outside_probe_the_list_covers_is_skipped_for_the_next(entry, network, tmp_path, smtp):
    path = write_list(tmp_path / "whitelist", [WHITELISTED, entry])
    done, asked = checked("sqlgrey", tmp_path, path, smtp,
                          networks=[WHITELISTED, ipaddress.ip_network(network)])
    # Healthy: 1.2.3.4, whitelisted, was not asked to be deferred; the next probe was.
    assert done.returncode == 0, done.stderr
    assert "23.45.67.89" in asked, asked


# --- Exim: the same questions to a stand-in `exim4 -be` ----------------------------------------------

FAKE_EXIM = r'''
import ipaddress, json, os, re, sys
networks = [ipaddress.ip_network(n) for n in json.loads(os.environ["FAKE_EXIM_HOSTLIST"])]
with open(os.environ["FAKE_EXIM_ASKED"], "a") as asked:
    for line in sys.stdin:
        client, matched, unmatched = re.fullmatch(
            r"\$\{if match_ip\{(.+?)\}\{\+mailguard_greylist_whitelist\}\{(.+?)\}\{(.+?)\}\}", line.strip()).groups()
        asked.write(client + "\n")
        print("> " + (matched if any(ipaddress.ip_address(client) in n for n in networks) else unmatched))
'''


def exim_check(tmp_path, whitelist, smtp, hostlist):
    """The check as the exim backend runs it, with exim4 on PATH answering for hostlist."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "exim4"
    fake.write_text(f"#!{sys.executable}\n{FAKE_EXIM}")
    fake.chmod(0o755)
    asked = tmp_path / "asked"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_EXIM_ASKED": str(asked),
           "FAKE_EXIM_HOSTLIST": json.dumps([str(network) for network in hostlist])}
    done = check(whitelist, "exim:mailguard_greylist_whitelist", smtp, env=env)
    return done, asked.read_text().split() if asked.exists() else []


def test_exim_is_asked_both_sides(tmp_path, whitelist, smtp):
    done, asked = exim_check(tmp_path, whitelist, smtp, [WHITELISTED])
    assert done.returncode == 0, done.stderr
    assert all(in_range(asked, scope) for scope in (LOW, HIGH, V6)), asked
    assert in_range(asked, str(WHITELISTED)) and "192.0.2.1" in asked, asked


def test_an_exim_host_list_open_to_all_but_the_unknown_client_is_not_healthy(tmp_path, whitelist, smtp):
    done, _ = exim_check(tmp_path, whitelist, smtp, EVERYTHING_BUT_THE_PROBE)
    assert done.returncode == 1, done.stdout
    assert "'DUNNO (in +mailguard_greylist_whitelist)' for 1.2.3.4, outside the whitelist" in done.stderr, done.stderr


# --- a Postfix cidr table before the greylist (postgrey's list holds no network) --------------------

# postmap -q - cidr:TABLE: reads keys on stdin, prints "key<TAB>value" for those the table matches
# (first match), exit 1 when none matched. The lab's cluster scenario runs Postfix's own.
FAKE_POSTMAP = r"""
import ipaddress, os, sys
table = sys.argv[-1].removeprefix("cidr:")
if os.environ.get("FAKE_POSTMAP_ERROR"):
    print(f"postmap: fatal: {table}: " + os.environ["FAKE_POSTMAP_ERROR"], file=sys.stderr)
    sys.exit(1)
entries = [line.split() for line in open(table) if line.strip() and not line.startswith("#")]
found = 0
for key in sys.stdin.read().split():
    for network, value in entries:
        if ipaddress.ip_address(key) in ipaddress.ip_network(network):
            print(f"{key}\t{value}")
            found += 1
            break
sys.exit(0 if found else 1)
"""


def postmap_env(tmp_path, **extra):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "postmap"
    fake.write_text(f"#!{sys.executable}\n{FAKE_POSTMAP}")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


@pytest.fixture
def cidr_table(tmp_path):
    path = tmp_path / "provider_clients.cidr"
    path.write_text(f"# generated\n# a chain\n{WHITELISTED}\tpermit\n")
    return path


def table_checked(tmp_path, table, smtp, env):
    """The check with the table before a postgrey whose own list whitelists nothing."""
    asked = []
    server, policy = policy_service("postgrey", "tcp", tmp_path, (), asked)
    try:
        return check(table, policy, smtp, f"--client-table={table}", env=env), asked
    finally:
        server.shutdown()
        server.server_close()


def test_the_cidr_table_passes_the_pool_and_postgrey_is_asked_only_for_the_others(tmp_path, cidr_table, smtp):
    done, asked = table_checked(tmp_path, cidr_table, smtp, postmap_env(tmp_path))
    assert done.returncode == 0, done.stderr
    replies = json.loads(done.stdout)["replies"]
    assert replies[str(WHITELISTED.network_address)].startswith("OK (in cidr:"), replies
    assert not in_range(asked, str(WHITELISTED)), asked  # as smtpd: a table match never reaches postgrey
    assert all(in_range(asked, scope) for scope in (LOW, HIGH, V6)) and "192.0.2.1" in asked, asked


def test_a_pool_the_table_does_not_pass_is_named(tmp_path, cidr_table, smtp):
    # The table on disk holds the pool, but Postfix's reader does not match it (here: reads an
    # empty table): postgrey, which knows no network, greylists the pool.
    empty = tmp_path / "empty.cidr"
    empty.write_text("# nothing\n")
    env = postmap_env(tmp_path)
    asked = []
    server, policy = policy_service("postgrey", "tcp", tmp_path, (), asked)
    try:
        done = check(cidr_table, policy, smtp, f"--client-table={empty}", env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1, done.stdout
    assert f"for {WHITELISTED.network_address} of the whitelisted {WHITELISTED}" in done.stderr, done.stderr


def test_a_table_postfix_cannot_read_is_named(tmp_path, cidr_table, smtp):
    done, _ = table_checked(tmp_path, cidr_table, smtp, postmap_env(tmp_path, FAKE_POSTMAP_ERROR="bad line 2"))
    assert done.returncode == 1, done.stdout
    assert "postmap -q cidr:" in done.stderr and "bad line 2" in done.stderr, done.stderr


# --- the rollback: the previous list back, byte for byte, newer than the failed one ----------------


def restore(*args):
    return subprocess.run([sys.executable, "-c", RESTORE.read_text(), *map(str, args)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_previous_list_comes_back_byte_for_byte_and_newer_than_the_failed_one(tmp_path):
    previous, dest = tmp_path / "list.mailguard-previous", tmp_path / "list"
    previous.write_bytes(b"# previous\n198.51.100.0/24\n\xe9\n")
    previous.chmod(0o640)
    os.utime(previous, (1_000_000_000, 1_000_000_000))  # kept with the old list's mtime
    dest.write_text("0.0.0.0/1\n")
    # The failed list's mtime may be this very second (or a skewed clock's future): sqlgrey, which
    # compares whole seconds, rereads the restored file only if its mtime is a later second.
    failed = int(time.time()) + 5.5
    os.utime(dest, (failed, failed))
    done = restore(f"--dest={dest}", f"--previous={previous}")
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == previous.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o640
    assert int(dest.stat().st_mtime) > int(failed)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["list", "list.mailguard-previous"]


def test_a_host_without_a_previous_list_gets_none_again(tmp_path):
    dest = tmp_path / "list"
    dest.write_text("0.0.0.0/1\n")
    done = restore(f"--dest={dest}", "--none")
    assert done.returncode == 0, done.stderr
    assert not dest.exists()


# --- the installed list as spfwalk writes it: a comment line naming each netblock's chain ---------

# Chains whose text looks like networks: a reader that took a comment for an entry would find them.
CHAINED = [
    (WHITELISTED, "gmail.com > include:_netblocks.google.com > a:10.0.0.0/8 > ip4:198.51.100.0/24"),
    (ipaddress.ip_network("203.0.113.7/32"), "0.0.0.0/0 > 2000::/3 > ip4:203.0.113.7"),
    (ipaddress.ip_network("2001:db8:1::/48"), "example.net > ip6:2001:db8:1::/48"),
]


def health_check_module():
    spec = importlib.util.spec_from_file_location("rollout_health_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("fmt", "sqlgrey_cidr", "networks", "covered"),
    [
        ("postgrey", False, ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"], []),
        ("exim", False, ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"], []),
        ("spamd", False, ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"], []),
        # network<TAB>OK: the action column is no part of the network
        ("cidr", False, ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"], []),
        ("sqlgrey", True, ["198.51.100.0/24", "203.0.113.7/32", "2001:db8:1::/48"], []),
        ("sqlgrey", False, ["203.0.113.7/32"], ["198.51.100.0/24"]),  # class C: a.b.c covers its /24
    ],
)
def test_the_file_reader_ignores_the_chain_comments(tmp_path, fmt, sqlgrey_cidr, networks, covered):
    content = render(fmt, [network for network, _ in CHAINED], None, ["roots: gmail.com, example.net"],
                     sqlgrey_cidr=sqlgrey_cidr, provenance=CHAINED).content
    assert content.count("\n# ") > len(networks)  # the chains are there
    path = tmp_path / "whitelist"
    path.write_text(content)
    found, every = health_check_module().read_whitelist(str(path))
    assert found == [ipaddress.ip_network(text) for text in networks]
    assert every == [*found, *(ipaddress.ip_network(text) for text in covered)]


def test_a_list_with_chain_comments_is_healthy(tmp_path, smtp):
    path = tmp_path / "whitelist_clients.local"
    path.write_text(render("postgrey", [network for network, _ in CHAINED], None, [], provenance=CHAINED).content)
    result, asked = checked("postgrey", tmp_path, path, smtp,
                            networks=[network for network, _ in CHAINED])
    assert result.returncode == 0, result.stderr
    # Only the file's entries and the outside probes were asked, nothing from the comments.
    assert "10.0.0.0" not in asked and "0.0.0.0" not in asked
    assert {"198.51.100.0", "203.0.113.7", "2001:db8:1::"} <= set(asked)
