"""Asynchronous DNS look-ups for the walker: concurrent, bounded, de-duplicated.

Every (name, type) question is put on the wire once per walk, however many roots or
includes reach it: the first asker starts the query, later askers await the same task.
The walker only needs the small ``Lookup`` protocol below, so tests may inject a fake
resolver while the behaviour tests use this client against a real DNS server.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.query
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
        # In-flight slots: a counter and a FIFO of waiters rather than asyncio.Semaphore,
        # so that lookup() can take a free slot and send without awaiting.
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def lookup(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        task = self._tasks.get(key)
        if task is None:
            task = self._start(*key)
            self._tasks[key] = task
            self.counters.questions.add(key)
        # shield: one caller being cancelled (deadline) must not cancel the others' answer
        return await asyncio.shield(task)

    def _start(self, name: str, rdtype: str) -> asyncio.Future:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            invalid = asyncio.get_running_loop().create_future()
            invalid.set_result(Answer(NXDOMAIN, detail=f"invalid name {name!r}: {exc}"))
            return invalid
        # Put the question on the wire now, in the caller's step: a new task would
        # only start on the next loop iteration, after every other ready callback.
        return asyncio.ensure_future(self._resolve(qname, rdtype, self._send_now(qname, rdtype)))

    def _send_now(self, qname: dns.name.Name, rdtype: str) -> _UdpExchange | None:
        if self._in_flight >= self.max_in_flight or self._waiters:
            return None
        self._in_flight += 1
        try:
            exchange = _UdpExchange(qname, rdtype, self.nameservers[0], self.port)
        except OSError:
            self._release_slot()
            return None  # _resolve retries it the normal way and reports the error
        self.counters.queries_sent += 1
        return exchange

    async def _take_slot(self) -> None:
        if self._in_flight < self.max_in_flight and not self._waiters:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _release_slot hands its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # got the slot just as we were cancelled: pass it on
            raise

    def _release_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1

    async def _resolve(self, qname: dns.name.Name, rdtype: str, first: _UdpExchange | None) -> Answer:
        name = qname
        for _hop in range(_MAX_CNAME_HOPS):
            response = await self._ask(qname, rdtype, first)
            first = None
            if isinstance(response, Answer):
                return response
            answer, cname_target = _read_response(response, qname, rdtype)
            if answer is not None:
                return answer
            qname = cname_target
        return Answer(SERVFAIL, detail=f"CNAME chain from {name} longer than {_MAX_CNAME_HOPS}")

    async def _ask(self, qname: dns.name.Name, rdtype: str, first: _UdpExchange | None = None):
        """Send the question until a reply or the query lifetime ends; retransmit on silence."""
        if first is None:
            await self._take_slot()
        try:
            # The lifetime starts when the question may go out, not while it waits for a slot.
            deadline = time.monotonic() + self.query_lifetime
            attempt = 0
            while (remaining := deadline - time.monotonic()) > 0:
                server = self.nameservers[attempt % len(self.nameservers)]
                attempt += 1
                timeout = min(self.retry_interval, remaining)
                try:
                    if first is not None:
                        exchange, first = first, None
                    else:
                        self.counters.queries_sent += 1
                        exchange = _UdpExchange(qname, rdtype, server, self.port)
                    response = await exchange.wait(timeout)
                    if response.flags & dns.flags.TC:
                        query = dns.message.make_query(qname, rdtype, use_edns=0, payload=_EDNS_PAYLOAD)
                        response = await dns.asyncquery.tcp(query, server, timeout=timeout, port=self.port)
                    return response
                except dns.exception.Timeout:
                    continue
                except OSError as exc:
                    # Nothing listens there (ICMP refused): the next server may answer.
                    if attempt >= len(self.nameservers):
                        return Answer(SERVFAIL, detail=f"{qname} {rdtype}: {exc}")
                except dns.exception.DNSException as exc:
                    return Answer(SERVFAIL, detail=f"{qname} {rdtype}: {exc}")
            return Answer(TIMEOUT, detail=f"{qname} {rdtype}: no reply within {self.query_lifetime:g} s")
        finally:
            if first is not None:
                first.close()
            self._release_slot()


class _UdpExchange:
    """One question on a fresh connected UDP socket, sent at construction.

    What dns.asyncquery.udp does -- a random ID and source port per question, replies
    from elsewhere dropped (connected socket), only the answer to this question accepted
    -- without create_datagram_endpoint, an asyncio.Queue and wait_for's task per
    question, and with the query rendered by hand (a fixed, tiny format).
    """

    def __init__(self, qname: dns.name.Name, rdtype: str, server: str, port: int):
        self.loop = asyncio.get_running_loop()
        self.qname = qname
        self.rdtype = dns.rdatatype.from_text(rdtype)
        self.id = secrets.randbits(16)
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.future = self.loop.create_future()
        try:
            self.sock.setblocking(False)
            self.sock.connect((server, port))
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self.sock.send(_query_wire(self.id, qname, self.rdtype))
        except BaseException:
            self.close()
            raise

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. ECONNREFUSED: nothing listens there
            self._settle(exc)
            return
        if self.future.done():
            return
        try:
            response = dns.message.from_wire(data)
        except Exception as exc:  # a malformed reply is an error, as in dnspython
            self._settle(exc)
            return
        if self._answers_us(response):
            self.future.set_result(response)
        else:
            self._settle(dns.query.BadResponse())

    def _answers_us(self, response: dns.message.Message) -> bool:
        # dns.message.Message.is_response, for the query we rendered ourselves
        if response.id != self.id or not response.flags & dns.flags.QR or response.opcode() != 0:
            return False
        if len(response.question) != 1:
            return False
        rrset = response.question[0]
        return rrset.name == self.qname and rrset.rdtype == self.rdtype and rrset.rdclass == 1

    def _settle(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    async def wait(self, timeout: float) -> dns.message.Message:
        try:
            async with asyncio.timeout(timeout):
                return await self.future
        except TimeoutError:
            raise dns.exception.Timeout(timeout=timeout) from None
        finally:
            self.close()

    def close(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


_OPT = struct.pack("!BHHIH", 0, 41, _EDNS_PAYLOAD, 0, 0)  # root owner, OPT, payload size, no flags


def _query_wire(query_id: int, qname: dns.name.Name, rdtype: int) -> bytes:
    # Header: ID, RD, one question, one additional (the EDNS OPT record).
    return (struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 1) + qname.to_wire()
            + struct.pack("!HH", rdtype, 1) + _OPT)


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
