"""Asynchronous DNS look-ups for the walker: concurrent, bounded, de-duplicated.

Every (name, type) question is put on the wire once per walk, however many roots or
includes reach it: the first asker starts the query, later askers await the same task.
The walker only needs the small ``Lookup`` protocol below, so tests may inject a fake
resolver while the behaviour tests use this client against a real DNS server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

# Answer statuses. NXDOMAIN and NODATA are "void" answers in RFC 7208 terms; SERVFAIL and
# TIMEOUT make the term a temperror.
FOUND = "found"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
SERVFAIL = "servfail"
TIMEOUT = "timeout"

# Follow at most this many CNAMEs when the server did not chase the chain itself.
_MAX_CNAME_HOPS = 8
# Large enough for the biggest provider TXT sets; smaller than typical path MTU trouble.
_EDNS_PAYLOAD = 1232


@dataclass(frozen=True)
class Answer:
    status: str
    # TXT: joined strings; A/AAAA: address text; MX: (preference, exchange) tuples.
    records: tuple = ()
    detail: str = ""

    @property
    def void(self) -> bool:
        return self.status in (NXDOMAIN, NODATA)

    @property
    def failed(self) -> bool:
        return self.status in (SERVFAIL, TIMEOUT)


@dataclass
class QueryCounters:
    queries_sent: int = 0
    questions: set = field(default_factory=set)


class DnsClient:
    """Asks the configured name servers, one task per distinct question."""

    def __init__(
        self,
        nameservers: list[str] | None = None,
        port: int = 53,
        query_lifetime: float = 2.0,
        retry_interval: float = 1.0,
        max_in_flight: int = 32,
    ):
        self.nameservers = list(nameservers or dns.resolver.Resolver().nameservers)
        if not self.nameservers:
            raise ValueError("no name server configured (give one, or fix /etc/resolv.conf)")
        self.port = port
        self.query_lifetime = query_lifetime
        self.retry_interval = retry_interval
        self.max_in_flight = max_in_flight
        self.counters = QueryCounters()
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}
        self._semaphore: asyncio.Semaphore | None = None

    async def lookup(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(self._resolve(*key))
            self._tasks[key] = task
            self.counters.questions.add(key)
        # shield: one caller being cancelled (deadline) must not cancel the others' answer
        return await asyncio.shield(task)

    async def _resolve(self, name: str, rdtype: str) -> Answer:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            return Answer(NXDOMAIN, detail=f"invalid name {name!r}: {exc}")
        for _hop in range(_MAX_CNAME_HOPS):
            response = await self._ask(qname, rdtype)
            if isinstance(response, Answer):
                return response
            answer, cname_target = _read_response(response, qname, rdtype)
            if answer is not None:
                return answer
            qname = cname_target
        return Answer(SERVFAIL, detail=f"CNAME chain from {name} longer than {_MAX_CNAME_HOPS}")

    async def _ask(self, qname: dns.name.Name, rdtype: str):
        """Send the question until a reply or the query lifetime ends; retransmit on silence."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=_EDNS_PAYLOAD)
        deadline = time.monotonic() + self.query_lifetime
        attempt = 0
        async with self._semaphore:
            while (remaining := deadline - time.monotonic()) > 0:
                server = self.nameservers[attempt % len(self.nameservers)]
                attempt += 1
                self.counters.queries_sent += 1
                try:
                    response, _used_tcp = await dns.asyncquery.udp_with_fallback(
                        query, server, timeout=min(self.retry_interval, remaining), port=self.port
                    )
                    return response
                except dns.exception.Timeout:
                    continue
                except (OSError, dns.exception.DNSException) as exc:
                    return Answer(SERVFAIL, detail=f"{qname} {rdtype}: {exc}")
        return Answer(TIMEOUT, detail=f"{qname} {rdtype}: no reply within {self.query_lifetime:g} s")


def _read_response(response: dns.message.Message, qname: dns.name.Name, rdtype: str):
    """Return (Answer, None) when the response settles the question, else (None, cname_target)."""
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(NXDOMAIN, detail=f"{qname} {rdtype}: NXDOMAIN"), None
    if rcode != dns.rcode.NOERROR:
        return Answer(SERVFAIL, detail=f"{qname} {rdtype}: {dns.rcode.to_text(rcode)}"), None
    wanted = dns.rdatatype.from_text(rdtype)
    owner = qname
    # Walk the CNAME chain the server gave us, then take the records at its end.
    for _hop in range(_MAX_CNAME_HOPS):
        rrset = response.get_rrset(response.answer, owner, dns.rdataclass.IN, wanted)
        if rrset is not None:
            return Answer(FOUND, tuple(_rdata_value(rdata, rdtype) for rdata in rrset)), None
        cname = response.get_rrset(
            response.answer, owner, dns.rdataclass.IN, dns.rdatatype.CNAME
        )
        if cname is None:
            break
        owner = cname[0].target
    if owner != qname:
        return None, owner  # the chain leaves the server's data: ask for its target
    return Answer(NODATA, detail=f"{qname} {rdtype}: no records"), None


def _rdata_value(rdata, rdtype: str):
    if rdtype == "TXT":
        # One TXT record may be split into several character-strings: RFC 7208 3.3 joins them.
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True).lower())
    return rdata.to_text()
