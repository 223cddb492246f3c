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
reached, and the networks an earlier client-independent ``-``/``~``/``?`` term matches are
cut out of the pass networks that follow it, in the record and in what it includes:
``ip4``/``ip6``, ``a``, ``mx``, ``include`` (the networks the included record passes,
its own order honoured) and ``exists`` with a fixed name that resolves (every client). A
non-pass term that depends on the client (``ptr``, client macros) cuts nothing. The walker
never turns ``+all`` into a whitelist entry.

Any exception inside a root's walk makes that root a temperror naming the chain, never
"ok" with the networks found so far.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
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

_EVERY_CLIENT = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass
class WalkerOptions:
    nameservers: list[str] | None = None  # None: the system's resolvers (/etc/resolv.conf)
    port: int = 53
    query_lifetime: float = 2.0  # seconds one question may take, retransmissions included
    retry_interval: float = 1.0  # resend a question that got no reply after this long
    deadline: float = 30.0  # seconds for the whole walk; unfinished roots become temperror
    max_in_flight: int = 32  # questions on the wire at once
    expand_over_limit: bool = False  # keep a root that breaks the RFC 7208 lookup limits

    def __post_init__(self):
        # Otherwise every question fails inside its socket call and the walk has to tell
        # a typo from an outage; refused here, before any root is walked.
        if not 1 <= self.port <= 65535:
            raise ValueError(f"name server port must be between 1 and 65535, got {self.port}")


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
        elif task.exception() is not None:
            # What the term guards cannot see: the root's own record, or finish() itself.
            roots[name].internal_error(roots[name].domain, task.exception())
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


class _Matches:
    """The networks some terms match: the root's pass terms (its whitelist) or one non-pass term.

    A non-pass term's _Matches is a *shadow*: the pass networks after it lose what it
    matches. It is filled as its DNS answers arrive and only read in finish(), when
    every answer is in.
    """

    def __init__(self, whitelist: bool):
        self.whitelist = whitelist
        # (network, where it came from, shadows: the _Matches of earlier non-pass terms)
        self.found: list[tuple[model.Network, str, tuple[_Matches, ...]]] = []
        self._networks: list[model.Network] | None = None

    def add(self, network: model.Network, where: str, shadows: tuple[_Matches, ...]) -> None:
        self.found.append((network, where, shadows))

    def add_every_client(self, where: str) -> None:
        for network in _EVERY_CLIENT:
            self.found.append((network, where, ()))

    def pieces(self) -> list[tuple[model.Network, str]]:
        """Every network with what earlier non-pass terms match first cut out, and where it came from."""
        return [(piece, where) for network, where, shadows in self.found for piece in _cut_out(network, shadows)]

    def networks(self) -> list[model.Network]:
        # Computed once: many later networks are cut by the same shadow.
        if self._networks is None:
            self._networks = collapse(piece for piece, _where in self.pieces())
        return self._networks


class _RootWalk:
    """One root's walk and its RFC 7208 accounting."""

    def __init__(self, domain: str, resolver, options: WalkerOptions):
        self.domain = domain.lower().rstrip(".")
        self.resolver = resolver
        self.options = options
        self.result = RootResult(self.domain)
        self.whitelist = _Matches(whitelist=True)
        self.temperrors: list[str] = []
        self.permerrors: list[str] = []
        self.no_record: str | None = None  # why the root has no SPF record to walk
        self.finished: RootResult | None = None

    async def run(self) -> None:
        await self._walk_record(self.domain, path=(self.domain,), chain=self.domain, sink=self.whitelist, shadows=())
        # Collapse now, while other roots still wait for answers, rather than every root
        # after the last answer of the walk.
        self.finished = self.finish()

    # -- records ---------------------------------------------------------------

    async def _walk_record(
        self, domain: str, path: tuple[str, ...], chain: str, sink: _Matches, shadows: tuple
    ) -> None:
        """Collect what the record at ``domain`` passes into ``sink``, minus ``shadows``."""
        record = await self._read_record(domain, chain, is_root=len(path) == 1)
        if record is None:
            return
        # Each DNS term's target once (macros expanded), for the prefetch and for its walk.
        targets = [None if term.name in _NO_DNS else self._target(term, domain, path) for term in record.reachable]
        redirect = record.effective_redirect
        redirect_target = None if redirect is None else self._target(redirect, domain, path)
        self._prefetch(zip(record.reachable, targets, strict=True), redirect_target, path)
        jobs = []
        for term, target in zip(record.reachable, targets, strict=True):
            # A term with a -, ~ or ? qualifier never passes: what it matches goes to its own
            # shadow, which every later term of this record (and what they include) loses.
            # The shadow needs no earlier shadows cut out of it: later terms lose those too.
            # It is walked even when it matches nothing, because its errors are the record's.
            if term.qualifier == PASS:
                term_sink, term_shadows = sink, shadows
            else:
                term_sink, term_shadows = _Matches(whitelist=False), ()
            if term.name in ("ip4", "ip6"):
                self._add_literal(term, chain, term_sink, term_shadows)
            elif term.name == "all":
                self._match_all(term, chain, term_sink)
            else:
                # Only terms that ask DNS become coroutines: every answer of a level waits
                # behind the work the loop does for the others, so that work stays small.
                job = self._walk_dns_term(term, target, path, chain, term_sink, term_shadows)
                jobs.append(self._guarded(job, f"{chain} > {term.text}"))
            if term.qualifier != PASS:
                shadows = (*shadows, term_sink)
        if redirect is not None:
            job = self._follow(redirect, redirect_target, path, chain, sink, "redirect=", shadows)
            jobs.append(self._guarded(job, f"{chain} > {redirect.text}"))
        if len(jobs) == 1:
            await jobs[0]
        elif jobs:
            await asyncio.gather(*jobs)

    async def _read_record(self, domain: str, chain: str, is_root: bool):
        """The parsed SPF record at ``domain``, counted; None (and the error noted) when there is none to walk."""
        answer = await self.resolver.lookup(domain, "TXT")
        if answer.failed:
            self.temperror(f"{chain}: {answer.detail}")
            return None
        try:
            text = select_spf_record(answer.records)
        except MultipleRecordsError as exc:
            self.permerror(f"{chain}: {exc}")
            return None
        if text is None:
            # An empty answer says which DNS condition it was (NXDOMAIN, no data, via a CNAME).
            why = f"{domain} publishes no SPF record" + (f" ({answer.detail})" if answer.void else "")
            if is_root:
                self.no_record = why
            else:
                self.permerror(f"{chain}: {why}")
            return None
        try:
            record = parse_record(text)
        except SpfSyntaxError as exc:
            self.permerror(f"{chain}: {exc}")
            return None
        self._count_lookups(record.dns_terms, chain)
        if self.result.dns_lookups > HARD_LOOKUP_CAP:
            self.permerror(f"{chain}: more than {HARD_LOOKUP_CAP} DNS-querying terms, walk stopped")
            return None
        return record

    async def _guarded(self, job, where: str) -> None:
        """Await one term's walk; an exception in it makes the root an error, never a shorter list."""
        try:
            await job
        except Exception as exc:  # any bug or resolver failure, reported with its chain
            self.internal_error(where, exc)

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

    async def _walk_dns_term(
        self, term, target: str | None, path: tuple[str, ...], chain: str, sink: _Matches, shadows: tuple
    ) -> None:
        if term.name == "ptr" or target is None:
            # Which clients match is up to the client: a shadow of it cuts nothing.
            if sink.whitelist:
                self.unresolvable(term, chain)
        elif term.name == "exists":
            await self._walk_exists(term, target, chain, sink)
        elif term.name == "include":
            await self._follow(term, target, path, chain, sink, "include:", shadows)
        elif term.name == "a":
            await self._walk_a(term, target, chain, sink, shadows)
        elif term.name == "mx":
            await self._walk_mx(term, target, chain, sink, shadows)

    def _target(self, term, domain: str, path: tuple[str, ...]) -> str | None:
        """The term's domain with client-free macros expanded; None when the client decides it."""
        if term.domain is None:
            return domain
        if not term.has_macro:
            return term.domain.lower().rstrip(".")
        expanded = expand_domain_spec(term.domain, domain, path[0])
        return expanded.lower() if expanded else None

    async def _follow(
        self, term, target: str | None, path: tuple[str, ...], chain: str, sink: _Matches, label: str, shadows: tuple
    ) -> None:
        if target is None:
            if sink.whitelist:
                self.unresolvable(term, chain)
            return
        step = f"{chain} > {label}{target}"
        if target in path:
            self.permerror(f"{step}: loop back to {target}")
            return
        await self._walk_record(target, (*path, target), step, sink, shadows)

    # -- address mechanisms ------------------------------------------------------

    def _match_all(self, term, chain: str, sink: _Matches) -> None:
        """A pass ``all`` matches every client: never whitelisted, but a whole shadow."""
        if term.qualifier != PASS:
            return  # the record ends here without a pass: nothing after it is reached
        if sink.whitelist:
            self.warn(f"{chain}: '{term.text}' lets the whole Internet pass; not whitelisted")
        else:
            sink.add_every_client(f"{chain} > {term.text}")

    async def _walk_exists(self, term, target: str, chain: str, sink: _Matches) -> None:
        """exists: with a fixed name matches every client or none: never a list of networks."""
        where = f"{chain} > {term.text}"
        answer = await self.resolver.lookup(target, "A")
        if answer.failed:
            self.temperror(f"{where}: {answer.detail}")
        elif answer.void:
            self._count_void(where)
        elif sink.whitelist:
            self.warn(f"{where}: {target} exists, so every client passes; not whitelisted")
        else:
            sink.add_every_client(where)

    async def _walk_a(self, term, target: str, chain: str, sink: _Matches, shadows: tuple) -> None:
        addresses = await self._addresses(target, f"{chain} > {term.text}")
        if addresses is None:
            return
        if not addresses:
            self._count_void(f"{chain} > {term.text}")
        self._add_addresses(addresses, term, f"{chain} > {term.text}", sink, shadows)

    async def _walk_mx(self, term, target: str, chain: str, sink: _Matches, shadows: tuple) -> None:
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
        for addresses in per_host:
            self._add_addresses(addresses or [], term, where, sink, shadows)

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

    @staticmethod
    def _add_addresses(addresses: list[str], term, where: str, sink: _Matches, shadows: tuple) -> None:
        for address in addresses:
            prefix = term.cidr6 if ":" in address else term.cidr4
            if prefix is None:
                prefix = 128 if ":" in address else 32
            network, _host_bits = parse_network(address, prefix)
            sink.add(network, where, shadows)

    def _add_literal(self, term, chain: str, sink: _Matches, shadows: tuple) -> None:
        prefix = term.cidr4 if term.name == "ip4" else term.cidr6
        try:
            network, host_bits = parse_network(term.network, prefix)
        except ValueError:
            self.permerror(f"{chain}: invalid address in '{term.text}'")
            return
        if network.version != (4 if term.name == "ip4" else 6):
            self.permerror(f"{chain}: '{term.text}' is not an {term.name} network")
            return
        if host_bits and sink.whitelist:
            self.warn(f"{chain}: '{term.text}' has host bits set; using {network}")
        sink.add(network, f"{chain} > {term.text}", shadows)

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

    def internal_error(self, where: str, exc: BaseException) -> None:
        # A temperror: the next run may well succeed, and the root keeps its last known good list.
        self.temperror(f"{where}: internal error: {type(exc).__name__}: {exc}")

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
            result.errors = [self.no_record]
        if result.status == OK:
            passing = self.whitelist.pieces()
            result.networks = collapse(network for network, _where in passing)
            result.provenance = _provenance(result.networks, passing)
        return result


def _cut_out(network: model.Network, shadows: tuple[_Matches, ...]) -> list[model.Network]:
    """The parts of ``network`` that no earlier non-pass term matches first."""
    pieces = [network]
    for shadow in shadows:
        for cut in shadow.networks():
            if cut.version != network.version:
                continue
            remaining = []
            for piece in pieces:
                if piece.subnet_of(cut):
                    continue
                remaining.extend(piece.address_exclude(cut) if cut.subnet_of(piece) else [piece])
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
