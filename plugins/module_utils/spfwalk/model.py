"""Result types shared by the SPF walker, the output renderers and the update logic.

Kept free of Ansible and of DNS code so that every consumer (the Ansible module, the
command-line tool, the tests and the benchmark) speaks the same language.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Per-root outcomes. Only OK roots contribute fresh netblocks; the other three make the
# update logic fall back to the root's last known good netblocks.
OK = "ok"
NONE = "none"  # the domain publishes no SPF record (RFC 7208 "none")
PERMERROR = "permerror"
TEMPERROR = "temperror"

# RFC 7208 section 4.6.4 limits, per root domain.
DNS_LOOKUP_LIMIT = 10
VOID_LOOKUP_LIMIT = 2
MX_TARGET_LIMIT = 10


@dataclass
class RootResult:
    """Everything the walk learned about one root domain (e.g. gmail.com)."""

    domain: str
    status: str = OK
    # Collapsed, sorted, de-duplicated; IPv4 before IPv6.
    networks: list[Network] = field(default_factory=list)
    # str(network) -> include chains it came from, e.g. "gmail.com > _spf.google.com > _netblocks.google.com"
    provenance: dict[str, list[str]] = field(default_factory=dict)
    # Terms that cannot be turned into netblocks (exists, ptr, macros), with their chain.
    unresolvable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Why the status is not OK (empty when OK).
    errors: list[str] = field(default_factory=list)
    dns_lookups: int = 0
    void_lookups: int = 0
    over_limit: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK

    def as_dict(self) -> dict:
        return {
            "domain": self.domain,
            "status": self.status,
            "networks": [str(n) for n in self.networks],
            "provenance": self.provenance,
            "unresolvable": self.unresolvable,
            "warnings": self.warnings,
            "errors": self.errors,
            "dns_lookups": self.dns_lookups,
            "void_lookups": self.void_lookups,
            "over_limit": self.over_limit,
        }


@dataclass
class WalkReport:
    """The result of one walk over several roots."""

    roots: dict[str, RootResult]
    # DNS questions put on the wire (a TC->TCP retry of the same question is not counted twice).
    queries_sent: int = 0
    # Distinct (name, rdtype) pairs the walk needed.
    unique_questions: int = 0
    elapsed: float = 0.0

    def __repr__(self) -> str:
        # Short on purpose: asyncio.run() renders the walk's result when it restores the
        # SIGINT handler, and the default repr of every network of every root costs ms.
        statuses = ", ".join(f"{name}: {root.status}" for name, root in self.roots.items())
        return f"WalkReport({statuses}; {self.queries_sent} queries, {self.elapsed:.3f} s)"

    def as_dict(self) -> dict:
        return {
            "roots": {name: root.as_dict() for name, root in self.roots.items()},
            "queries_sent": self.queries_sent,
            "unique_questions": self.unique_questions,
            "elapsed": round(self.elapsed, 4),
        }
