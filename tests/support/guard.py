"""The width guard as the tests configure it.

The test zones use the documentation ranges (RFC 5737, RFC 3849), which the guard refuses by
default, as it must on a real host. Tests that are not about the guard allow them, the way a
lab allows its own networks (mailguard_whitelist_allowed_networks).
"""

from __future__ import annotations

from spfwalk.guards import GuardPolicy

DOC_NETWORKS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]


def doc_guard() -> GuardPolicy:
    return GuardPolicy.from_options(allowed_networks=DOC_NETWORKS)


def allow_doc_args() -> list[str]:
    """The spf-netblocks options that allow the documentation ranges."""
    return [arg for network in DOC_NETWORKS for arg in ("--allow-network", network)]
