"""Walk SPF records down to the netblocks they allow (the one walker of this project).

For every root domain (gmail.com, outlook.com, ...) the walker follows include and
redirect, resolves a and mx, and keeps the networks that SPF would *pass*. All terms of
a record are looked up concurrently, so the walk costs about one round trip per level of
the deepest chain rather than one per query. RFC 7208 accounting (10 DNS-querying terms,
2 void lookups, loops, several records, missing include targets) is kept per root, even
though the DNS answers are shared between roots.

Differences from an SPF check (which evaluates one client address): a walker cannot turn
``ptr``, ``exists`` or macros built from the client (%{i}, %{s}, %{h}...) into networks, so
it reports them as unresolvable; it walks every term rather than stopping at the first
match, but it honours order where a list of networks can: terms after ``all`` are never
reached, and the addresses of an earlier ``-ip4``/``~ip4``/``?ip4`` (or ip6) are cut out of
the pass networks that follow it, in the record and in what it includes. It never turns
``+all`` into a whitelist entry.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass

from . import model
from .dns_client import DnsClient
from .model import NONE, OK, PERMERROR, TEMPERROR, RootResult, WalkReport
from .netblocks import collapse, parse_network
from .record import PASS, MultipleRecordsError, SpfSyntaxError, expand_domain_spec, parse_record, select_spf_record

# Mechanisms without a DNS target; every other term's target is worked out once per record.
_NO_DNS = ("ip4", "ip6", "all")

# Stops a hostile or broken tree (e.g. diamonds of includes) even when the RFC limits
# are deliberately not enforced.
HARD_LOOKUP_CAP = 1000


@dataclass
class WalkerOptions:
    nameservers: list[str] | None = None  # None: the system's resolvers (/etc/resolv.conf)
    port: int = 53
    query_lifetime: float = 2.0  # seconds one question may take, retransmissions included
    retry_interval: float = 1.0  # resend a question that got no reply after this long
    deadline: float = 30.0  # seconds for the whole walk; unfinished roots become temperror
    max_in_flight: int = 32  # questions on the wire at once
    expand_over_limit: bool = False  # keep a root that breaks the RFC 7208 lookup limits


async def walk(domains: list[str], options: WalkerOptions | None = None, resolver=None) -> WalkReport:
    """Walk every root domain; ``resolver`` needs ``async lookup(name, rdtype) -> Answer``."""
    options = options or WalkerOptions()
    client = resolver or DnsClient(
        options.nameservers,
        port=options.port,
        query_lifetime=options.query_lifetime,
        retry_interval=options.retry_interval,
        max_in_flight=options.max_in_flight,
    )
    started = time.monotonic()
    roots = {name.lower().rstrip("."): _RootWalk(name, client, options) for name in domains}
    tasks = {name: asyncio.ensure_future(root.run()) for name, root in roots.items()}
    _done, pending = await asyncio.wait(tasks.values(), timeout=options.deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for name, task in tasks.items():
        if task in pending:
            roots[name].temperror(f"walk deadline of {options.deadline:g} s exceeded")
            roots[name].finished = None
    counters = getattr(client, "counters", None)
    return WalkReport(
        roots={name: root.finished or root.finish() for name, root in roots.items()},
        queries_sent=counters.queries_sent if counters else 0,
        unique_questions=len(counters.questions) if counters else 0,
        elapsed=time.monotonic() - started,
    )


def walk_sync(domains: list[str], options: WalkerOptions | None = None, resolver=None) -> WalkReport:
    return asyncio.run(walk(domains, options, resolver))


class _RootWalk:
    """One root's walk and its RFC 7208 accounting."""

    def __init__(self, domain: str, resolver, options: WalkerOptions):
        self.domain = domain.lower().rstrip(".")
        self.resolver = resolver
        self.options = options
        self.result = RootResult(self.domain)
        # (network, where it came from, non-pass networks SPF would match before it)
        self.found: list[tuple[model.Network, str, tuple[model.Network, ...]]] = []
        self.temperrors: list[str] = []
        self.permerrors: list[str] = []
        self.no_record = False
        self.finished: RootResult | None = None

    async def run(self) -> None:
        await self._walk_record(self.domain, path=(self.domain,), chain=self.domain, collect=True, shadows=())
        # Collapse now, while other roots still wait for answers, rather than every root
        # after the last answer of the walk.
        self.finished = self.finish()

    # -- records ---------------------------------------------------------------

    async def _walk_record(
        self, domain: str, path: tuple[str, ...], chain: str, collect: bool, shadows: tuple
    ) -> None:
        is_root = len(path) == 1
        answer = await self.resolver.lookup(domain, "TXT")
        if answer.failed:
            self.temperror(f"{chain}: {answer.detail}")
            return
        try:
            text = select_spf_record(answer.records)
        except MultipleRecordsError as exc:
            self.permerror(f"{chain}: {exc}")
            return
        if text is None:
            if is_root:
                self.no_record = True
            else:
                self.permerror(f"{chain}: {domain} publishes no SPF record")
            return
        try:
            record = parse_record(text)
        except SpfSyntaxError as exc:
            self.permerror(f"{chain}: {exc}")
            return
        self._count_lookups(record.dns_terms, chain)
        if self.result.dns_lookups > HARD_LOOKUP_CAP:
            self.permerror(f"{chain}: more than {HARD_LOOKUP_CAP} DNS-querying terms, walk stopped")
            return
        # Each DNS term's target once (macros expanded), for the prefetch and for its walk.
        targets = [None if term.name in _NO_DNS else self._target(term, domain, path) for term in record.reachable]
        redirect = record.effective_redirect
        redirect_target = None if redirect is None else self._target(redirect, domain, path)
        self._prefetch(zip(record.reachable, targets, strict=True), redirect_target, path)
        jobs = []
        for term, target in zip(record.reachable, targets, strict=True):
            # A term with a -, ~ or ? qualifier never passes, so its networks are not
            # whitelisted; it is still walked, because its errors are the record's errors.
            keep = collect and term.qualifier == PASS
            if term.name in ("ip4", "ip6"):
                self._add_literal(term, chain, keep, shadows)
            elif term.name == "all":
                if keep:
                    self.warn(f"{chain}: '{term.text}' lets the whole Internet pass; not whitelisted")
            else:
                # Only terms that ask DNS become coroutines: every answer of a level waits
                # behind the work the loop does for the others, so that work stays small.
                jobs.append(self._walk_dns_term(term, target, path, chain, keep, shadows))
            shadows = shadows + self._shadow_of(term)
        if redirect is not None:
            jobs.append(self._follow(redirect, redirect_target, path, chain, collect, "redirect=", shadows))
        if len(jobs) == 1:
            await jobs[0]
        elif jobs:
            await asyncio.gather(*jobs)

    def _prefetch(self, term_targets, redirect_target: str | None, path: tuple[str, ...]) -> None:
        """Send the first question of every DNS term now, before the literals are parsed.

        Exactly the questions the term coroutines below will ask first, no more: the
        query count must stay one per unique (name, type).
        """
        prefetch = getattr(self.resolver, "prefetch", None)
        if prefetch is None:  # a resolver without it (test fakes) is simply asked later
            return
        questions = {"include": ("TXT",), "a": ("A", "AAAA"), "mx": ("MX",), "exists": ("A",)}
        for term, target in term_targets:
            if target is None or (term.name == "include" and target in path):
                continue  # ptr, a target only the client decides, or a loop: nothing is asked
            for rdtype in questions.get(term.name, ()):
                prefetch(target, rdtype)
        if redirect_target is not None and redirect_target not in path:
            prefetch(redirect_target, "TXT")

    @staticmethod
    def _shadow_of(term) -> tuple:
        """The networks a non-pass ip4/ip6 term matches first, so later pass terms lose them."""
        if term.name not in ("ip4", "ip6") or term.qualifier == PASS:
            return ()
        try:
            return (parse_network(term.network, term.cidr4 if term.name == "ip4" else term.cidr6)[0],)
        except ValueError:
            return ()  # reported as a permerror by _add_literal

    async def _walk_dns_term(
        self, term, target: str | None, path: tuple[str, ...], chain: str, keep: bool, shadows: tuple
    ) -> None:
        if term.name == "ptr" or target is None:
            if keep:
                self.unresolvable(term, chain)
        elif term.name == "exists":
            await self._walk_exists(term, target, chain, keep)
        elif term.name == "include":
            await self._follow(term, target, path, chain, keep, "include:", shadows)
        elif term.name == "a":
            await self._walk_a(term, target, chain, keep, shadows)
        elif term.name == "mx":
            await self._walk_mx(term, target, chain, keep, shadows)

    def _target(self, term, domain: str, path: tuple[str, ...]) -> str | None:
        """The term's domain with client-free macros expanded; None when the client decides it."""
        if term.domain is None:
            return domain
        if not term.has_macro:
            return term.domain.lower().rstrip(".")
        expanded = expand_domain_spec(term.domain, domain, path[0])
        return expanded.lower() if expanded else None

    async def _follow(
        self, term, target: str | None, path: tuple[str, ...], chain: str, collect: bool, label: str, shadows: tuple
    ) -> None:
        if target is None:
            if collect:
                self.unresolvable(term, chain)
            return
        step = f"{chain} > {label}{target}"
        if target in path:
            self.permerror(f"{step}: loop back to {target}")
            return
        await self._walk_record(target, (*path, target), step, collect, shadows)

    # -- address mechanisms ------------------------------------------------------

    async def _walk_exists(self, term, target: str, chain: str, keep: bool) -> None:
        """exists: with a fixed name matches every client or none: never a list of networks."""
        where = f"{chain} > {term.text}"
        answer = await self.resolver.lookup(target, "A")
        if answer.failed:
            self.temperror(f"{where}: {answer.detail}")
        elif answer.void:
            self._count_void(where)
        elif keep:
            self.warn(f"{where}: {target} exists, so every client passes; not whitelisted")

    async def _walk_a(self, term, target: str, chain: str, keep: bool, shadows: tuple) -> None:
        addresses = await self._addresses(target, f"{chain} > {term.text}")
        if addresses is None:
            return
        if not addresses:
            self._count_void(f"{chain} > {term.text}")
        if keep:
            self._add_addresses(addresses, term, f"{chain} > {term.text}", shadows)

    async def _walk_mx(self, term, target: str, chain: str, keep: bool, shadows: tuple) -> None:
        where = f"{chain} > {term.text}"
        answer = await self.resolver.lookup(target, "MX")
        if answer.failed:
            self.temperror(f"{where}: {answer.detail}")
            return
        if answer.void:
            self._count_void(where)
            return
        if len(answer.records) > model.MX_TARGET_LIMIT:
            count = len(answer.records)
            self.permerror(f"{where}: {count} MX records, more than {model.MX_TARGET_LIMIT}")
            return
        per_host = await asyncio.gather(
            *(self._addresses(exchange, f"{where} > {exchange}") for _pref, exchange in answer.records)
        )
        if keep:
            for addresses in per_host:
                self._add_addresses(addresses or [], term, where, shadows)

    async def _addresses(self, host: str, where: str) -> list[str] | None:
        """A and AAAA of a host; None (and a temperror) when either look-up failed."""
        answers = await asyncio.gather(
            self.resolver.lookup(host, "A"), self.resolver.lookup(host, "AAAA")
        )
        failed = [answer for answer in answers if answer.failed]
        if failed:
            self.temperror(f"{where}: {failed[0].detail}")
            return None
        return [address for answer in answers for address in answer.records]

    def _add_addresses(self, addresses: list[str], term, where: str, shadows: tuple) -> None:
        for address in addresses:
            prefix = term.cidr6 if ":" in address else term.cidr4
            if prefix is None:
                prefix = 128 if ":" in address else 32
            network, _host_bits = parse_network(address, prefix)
            self.found.append((network, where, shadows))

    def _add_literal(self, term, chain: str, keep: bool, shadows: tuple) -> None:
        prefix = term.cidr4 if term.name == "ip4" else term.cidr6
        try:
            network, host_bits = parse_network(term.network, prefix)
        except ValueError:
            self.permerror(f"{chain}: invalid address in '{term.text}'")
            return
        if network.version != (4 if term.name == "ip4" else 6):
            self.permerror(f"{chain}: '{term.text}' is not an {term.name} network")
            return
        if not keep:
            return
        if host_bits:
            self.warn(f"{chain}: '{term.text}' has host bits set; using {network}")
        self.found.append((network, f"{chain} > {term.text}", shadows))

    # -- accounting --------------------------------------------------------------

    def _count_lookups(self, count: int, chain: str) -> None:
        before = self.result.dns_lookups
        self.result.dns_lookups += count
        if before <= model.DNS_LOOKUP_LIMIT < self.result.dns_lookups:
            limit = model.DNS_LOOKUP_LIMIT
            self._over_limit(f"{chain}: more than {limit} DNS-querying terms (RFC 7208 4.6.4)")

    def _count_void(self, where: str) -> None:
        self.result.void_lookups += 1
        if self.result.void_lookups == model.VOID_LOOKUP_LIMIT + 1:
            self._over_limit(f"{where}: more than {model.VOID_LOOKUP_LIMIT} void lookups (RFC 7208 4.6.4)")

    def _over_limit(self, message: str) -> None:
        self.result.over_limit = True
        if self.options.expand_over_limit:
            self.warn(f"{message}; expanded anyway (expand_over_limit)")
        else:
            self.permerror(message)

    def temperror(self, message: str) -> None:
        self.temperrors.append(message)

    def permerror(self, message: str) -> None:
        self.permerrors.append(message)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)

    def unresolvable(self, term, chain: str) -> None:
        self.result.unresolvable.append(f"{chain} > {term.text}")
        self.warn(
            f"{chain}: '{term.text}' cannot be turned into netblocks; add static entries for this sender"
        )

    # -- result ----------------------------------------------------------------

    def finish(self) -> RootResult:
        result = self.result
        # A definite error outranks a transient one: retrying will not fix a broken record.
        result.errors = self.permerrors + self.temperrors
        if self.permerrors:
            result.status = PERMERROR
        elif self.temperrors:
            result.status = TEMPERROR
        elif self.no_record:
            result.status = NONE
            result.errors = [f"{self.domain} publishes no SPF record"]
        if result.status == OK:
            passing = [
                (piece, where)
                for network, where, shadows in self.found
                for piece in _cut_out(network, shadows)
            ]
            result.networks = collapse(network for network, _where in passing)
            result.provenance = _provenance(result.networks, passing)
        return result


def _cut_out(network: model.Network, shadows: tuple) -> list[model.Network]:
    """The parts of ``network`` that no earlier non-pass term matches first."""
    pieces = [network]
    for shadow in shadows:
        if shadow.version != network.version:
            continue
        remaining = []
        for piece in pieces:
            if piece.subnet_of(shadow):
                continue
            remaining.extend(piece.address_exclude(shadow) if shadow.subnet_of(piece) else [piece])
        pieces = remaining
    return pieces


def _provenance(
    networks: list[model.Network], found: list[tuple[model.Network, str]]
) -> dict[str, list[str]]:
    """Map each collapsed network to the include chains of the netblocks it was built from."""
    starts = [(network.version, int(network.network_address)) for network in networks]
    chains: list[set[str]] = [set() for _network in networks]
    for network, where in found:
        chains[bisect.bisect_right(starts, (network.version, int(network.network_address))) - 1].add(where)
    return {str(network): sorted(wheres) for network, wheres in zip(networks, chains, strict=True)}
