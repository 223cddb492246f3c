"""The rollout's health check (roles/whitelist_rollout/files/rollout_health_check.py), run as the
role runs it (python3 -c), against a stand-in policy service and SMTP greeter on loopback.

The stand-ins answer the way the real daemons were seen to answer (postgrey: DUNNO /
DEFER_IF_PERMIT ...; sqlgrey: "PREPEND X-Greylist: whitelisted ..." / "defer_if_permit ...");
the Molecule scenarios cluster and cluster-shared run the check against the real ones.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/whitelist_rollout/files/rollout_health_check.py"
WHITELISTED = ipaddress.ip_network("198.51.100.0/24")

ANSWERS = {
    "postgrey": ("DUNNO", "DEFER_IF_PERMIT Greylisted, see http://postgrey.schweikert.ch/"),
    "sqlgrey": ("PREPEND X-Greylist: whitelisted by SQLgrey-1.8.0", "defer_if_permit Greylisted for 5 minutes"),
    "broken": ("DUNNO", "DUNNO"),  # lets everyone through: greylisting is off
}


def policy_handler(style: str):
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
            action = whitelisted if client in WHITELISTED else unknown
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


def policy_service(style: str, transport: str, tmp_path):
    if transport == "unix":
        path = str(tmp_path / "policy.sock")
        return serve(UnixServer(path, policy_handler(style))), path
    server = serve(TcpServer(("127.0.0.1", 0), policy_handler(style)))
    return server, f"127.0.0.1:{server.server_address[1]}"


def check(whitelist, policy, smtp, timeout="0"):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(), f"--whitelist={whitelist}", f"--policy={policy}",
         f"--smtp={smtp}", "--unknown-client=192.0.2.1", f"--timeout={timeout}", "--io-timeout=2"],
        capture_output=True, text=True, timeout=30, check=False,
    )


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
