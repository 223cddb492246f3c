"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from tests.support.dns_lab import DnsServerProcess, start_dns_server


@pytest.fixture
def dns_server(tmp_path):
    """Factory: ``dns_server(zone, address="127.0.0.1")`` -> a running DnsServerProcess.

    Every server started through it is stopped at teardown, even if the test fails.
    """
    started: list[DnsServerProcess] = []

    def start(zone: dict, address: str = "127.0.0.1") -> DnsServerProcess:
        server = start_dns_server(zone, address, tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
