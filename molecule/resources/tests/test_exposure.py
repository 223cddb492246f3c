"""The policy services are reachable by the MTA only (behaviour 7): postgrey, policyd-spf and
greylistd have no access control, whoever reaches them can query (and poison) them."""

from __future__ import annotations

import ipaddress
import re

import pytest

# Loopback TCP ports of each stack's policy services: their only listeners.
LOOPBACK_SERVICES = {"postfix": {10023: "postgrey"}, "exim": {}}


def listeners(mx) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on the mail host."""
    found = set()
    for line in mx.check_output("ss -Hltn").splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        found.add((address.strip("[]").split("%")[0], int(port)))
    return found


def test_only_smtp_listens_beyond_loopback(mta):
    sockets = listeners(mta.host)
    exposed = {(a, p) for a, p in sockets if a == "*" or not ipaddress.ip_address(a).is_loopback}
    assert {port for _, port in exposed} <= {25}, f"listening beyond loopback: {sorted(exposed)}"
    for port, service in LOOPBACK_SERVICES[mta.name].items():
        assert {a for a, p in sockets if p == port} == {"127.0.0.1"}, f"{service}'s port: {sorted(sockets)}"


@pytest.mark.only_mta("postfix")
def test_postfix_reaches_its_policy_services_locally(mta):
    restrictions = " ".join(mta.postconf(f"smtpd_{stage}_restrictions") for stage in ("recipient", "relay"))
    services = re.findall(r"check_policy_service\s+(?:\{\s*)?(\S+?),?\s", restrictions + " ")
    assert services, f"no policy service in the restrictions: {restrictions}"
    for service in services:
        assert service.startswith("unix:") or service.startswith("inet:127.0.0.1:"), service
    assert any(s.startswith("unix:") and "spf" in s for s in services), f"policyd-spf over a unix socket: {services}"


@pytest.mark.only_mta("postfix")
def test_policyd_spf_is_spawned_by_postfix(mta):
    spawned = [line for line in mta.host.check_output("postconf -M").splitlines() if re.search(r"\bspawn\b", line)]
    assert any("policyd-spf" in line for line in spawned), "\n".join(spawned) or "no spawn service in master.cf"
    assert all(line.split()[1] == "unix" for line in spawned), "\n".join(spawned)


@pytest.mark.only_mta("exim")
def test_greylistd_answers_on_its_unix_socket_only(mta):
    # Exim checks SPF itself (libspf2): greylistd is the only policy service.
    socket = mta.host.file("/var/run/greylistd/socket")
    assert socket.is_socket, "greylistd's socket is missing"
    assert socket.mode & 0o007 == 0 and socket.group == "greylist", (
        f"greylistd's socket is open to others: mode {socket.mode:o}, {socket.user}:{socket.group}"
    )
    assert "greylist" in mta.host.user("Debian-exim").groups, "Exim's user cannot ask greylistd"
    tcp = mta.host.check_output("ss -Hltnup")
    assert "greylistd" not in tcp, f"greylistd listens on the network:\n{tcp}"
