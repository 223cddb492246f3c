"""Does a pool's sender domain vouch for the pool's addresses? Asked of the project's SPF walker."""

from __future__ import annotations

from spfwalk.walker import WalkerOptions, walk_sync


def spf_lookup(options: WalkerOptions, resolver=None):
    """A report.SpfLookup: domain -> (status, networks its SPF record passes)."""

    def lookup(domains: list[str]) -> dict[str, tuple[str, list]]:
        if not domains:
            return {}
        report = walk_sync(domains, options, resolver)
        return {domain: (root.status, list(root.networks)) for domain, root in report.roots.items()}

    return lookup
