"""Fixtures of the spf-netblocks tests."""

from __future__ import annotations

import pytest

from tests.cli.cli_lab import ZONE


@pytest.fixture
def server(dns_server):
    """The lab DNS server serving ZONE."""
    return dns_server(ZONE)


@pytest.fixture
def workdir(tmp_path):
    """A directory of the test's own files (tmp_path also holds the lab server's)."""
    path = tmp_path / "work"
    path.mkdir()
    return path
