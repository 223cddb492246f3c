"""The policy services are reachable by Postfix only (behaviour 7): postgrey and policyd-spf have
no access control, whoever reaches them can query (and poison) them."""

from __future__ import annotations

import ipaddress
import re


def listeners(mx) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on mx1."""
    found = set()
    for line in mx.check_output("ss -Hltn").splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        found.add((address.strip("[]").split("%")[0], int(port)))
    return found


def test_only_smtp_listens_beyond_loopback(mx):
    sockets = listeners(mx)
    exposed = {(a, p) for a, p in sockets if a == "*" or not ipaddress.ip_address(a).is_loopback}
    assert {port for _, port in exposed} <= {25}, f"listening beyond loopback: {sorted(exposed)}"
    assert {a for a, p in sockets if p == 10023} == {"127.0.0.1"}, f"postgrey's port: {sorted(sockets)}"


def test_postfix_reaches_its_policy_services_locally(postconf):
    restrictions = " ".join(postconf(f"smtpd_{stage}_restrictions") for stage in ("recipient", "relay"))
    services = re.findall(r"check_policy_service\s+(?:\{\s*)?(\S+?),?\s", restrictions + " ")
    assert services, f"no policy service in the restrictions: {restrictions}"
    for service in services:
        assert service.startswith("unix:") or service.startswith("inet:127.0.0.1:"), service
    assert any(s.startswith("unix:") and "spf" in s for s in services), f"policyd-spf over a unix socket: {services}"


def test_policyd_spf_is_spawned_by_postfix(mx):
    spawned = [line for line in mx.check_output("postconf -M").splitlines() if re.search(r"\bspawn\b", line)]
    assert any("policyd-spf" in line for line in spawned), "\n".join(spawned) or "no spawn service in master.cf"
    assert all(line.split()[1] == "unix" for line in spawned), "\n".join(spawned)
