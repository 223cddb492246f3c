"""Asynchronous DNS look-ups for the walker: concurrent, bounded, de-duplicated.

Every (name, type) question is put on the wire once per walk, however many roots or
includes reach it: the first asker starts the query, later askers await the same task.
The walker only needs the small ``Lookup`` protocol below, so tests may inject a fake
resolver while the behaviour tests use this client against a real DNS server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.resolver

from . import dns_wire

# Answer statuses. NXDOMAIN and NODATA are "void" answers in RFC 7208 terms; SERVFAIL and
# TIMEOUT make the term a temperror.
FOUND = "found"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
SERVFAIL = "servfail"
TIMEOUT = "timeout"

# Follow at most this many CNAMEs when the server did not chase the chain itself.
_MAX_CNAME_HOPS = 8


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
        # shield: one caller being cancelled (deadline) must not cancel the others' answer
        return await asyncio.shield(self._task_for(name, rdtype))

    def prefetch(self, name: str, rdtype: str) -> None:
        """Put the question on the wire now; a later lookup() of it awaits that answer.

        The walker calls this for every question a record leads to as soon as the record
        is parsed, before it does the CPU work of the record's other terms: the answers
        of one level arrive together, and each question sent late delays its subtree.
        """
        self._task_for(name, rdtype)

    def _task_for(self, name: str, rdtype: str) -> asyncio.Future:
        key = (name.lower().rstrip("."), rdtype)
        task = self._tasks.get(key)
        if task is None:
            task = self._start(*key)
            self._tasks[key] = task
            self.counters.questions.add(key)
        return task

    def _start(self, name: str, rdtype: str) -> asyncio.Future:
        try:
            question = _Question(dns.name.from_text(name).to_wire(), dns_wire.TYPES[rdtype], rdtype)
        except dns.exception.DNSException as exc:
            invalid = asyncio.get_running_loop().create_future()
            invalid.set_result(Answer(NXDOMAIN, detail=f"invalid name {name!r}: {exc}"))
            return invalid
        # Put the question on the wire now, in the caller's step: a new task would
        # only start on the next loop iteration, after every other ready callback.
        return asyncio.ensure_future(self._resolve(question, self._send_now(question)))

    def _send_now(self, question: _Question) -> _UdpExchange | None:
        if self._in_flight >= self.max_in_flight or self._waiters:
            return None
        self._in_flight += 1
        try:
            exchange = _UdpExchange(question, self.nameservers[0], self.port)
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

    async def _resolve(self, question: _Question, first: _UdpExchange | None) -> Answer:
        asked = question
        for _hop in range(_MAX_CNAME_HOPS):
            reply = await self._ask(question, first)
            first = None
            if isinstance(reply, Answer):
                return reply
            answer, cname_target = _read_reply(reply, question)
            if answer is not None:
                return answer
            question = _Question(dns_wire.name_wire(cname_target), question.rdtype, question.type_name, cname_target)
        return Answer(SERVFAIL, detail=f"CNAME chain from {asked} longer than {_MAX_CNAME_HOPS}")

    async def _ask(self, question: _Question, first: _UdpExchange | None = None) -> dns_wire.Reply | Answer:
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
                        exchange = _UdpExchange(question, server, self.port)
                    reply = await exchange.wait(timeout)
                    if reply.truncated:
                        reply = await _ask_tcp(question, server, self.port, timeout)
                    return reply
                except dns.exception.Timeout:
                    continue
                except OSError as exc:
                    # Nothing listens there (ICMP refused): the next server may answer.
                    if attempt >= len(self.nameservers):
                        return Answer(SERVFAIL, detail=f"{question} {question.type_name}: {exc}")
                except dns.exception.DNSException as exc:
                    return Answer(SERVFAIL, detail=f"{question} {question.type_name}: {exc}")
            return Answer(TIMEOUT, detail=f"{question} {question.type_name}: no reply within "
                                         f"{self.query_lifetime:g} s")
        finally:
            if first is not None:
                first.close()
            self._release_slot()


@dataclass(frozen=True)
class _Question:
    """One question as it goes on the wire, and the labels its reply must echo."""

    qname_wire: bytes
    rdtype: int
    type_name: str
    labels: dns_wire.Labels = ()

    def __post_init__(self):
        if not self.labels:
            object.__setattr__(self, "labels", dns_wire.labels_of(self.qname_wire))

    def wire(self, query_id: int) -> bytes:
        return dns_wire.query_wire(query_id, self.qname_wire, self.rdtype)

    def __str__(self) -> str:
        return dns_wire.name_text(self.labels)


class _UdpExchange:
    """One question on a fresh connected UDP socket, sent at construction.

    What dns.asyncquery.udp does -- a random ID and source port per question, replies
    from elsewhere dropped (connected socket), only the answer to this question accepted
    -- without create_datagram_endpoint, an asyncio.Queue and wait_for's task per
    question, and with the query rendered and the reply read by dns_wire.
    """

    def __init__(self, question: _Question, server: str, port: int):
        self.loop = asyncio.get_running_loop()
        self.question = question
        self.id = secrets.randbits(16)
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.future = self.loop.create_future()
        try:
            self.sock.setblocking(False)
            self.sock.connect((server, port))
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self.sock.send(question.wire(self.id))
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
            reply = dns_wire.parse_reply(data, self.id, self.question.labels, self.question.rdtype)
        except dns.exception.DNSException as exc:  # malformed, or not an answer to us
            self._settle(exc)
            return
        self.future.set_result(reply)

    def _settle(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    async def wait(self, timeout: float) -> dns_wire.Reply:
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


async def _ask_tcp(question: _Question, server: str, port: int, timeout: float) -> dns_wire.Reply:
    """The same question over TCP, after a truncated UDP reply (RFC 7766)."""
    query_id = secrets.randbits(16)
    wire = question.wire(query_id)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(server, port)
            try:
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise dns.exception.Timeout(timeout=timeout) from None
    except asyncio.IncompleteReadError:
        raise dns_wire.MalformedReply("TCP connection closed before the whole reply") from None
    return dns_wire.parse_reply(data, query_id, question.labels, question.rdtype)


def _read_reply(reply: dns_wire.Reply, question: _Question):
    """Return (Answer, None) when the reply settles the question, else (None, cname_target)."""
    asked = f"{question} {question.type_name}"
    if reply.rcode == dns_wire.NXDOMAIN:
        return Answer(NXDOMAIN, detail=f"{asked}: NXDOMAIN"), None
    if reply.rcode != dns_wire.NOERROR:
        return Answer(SERVFAIL, detail=f"{asked}: {dns_wire.RCODE_NAMES.get(reply.rcode, reply.rcode)}"), None
    owner = question.labels
    # Walk the CNAME chain the server gave us, then take the records at its end.
    for _hop in range(_MAX_CNAME_HOPS):
        records = reply.records(owner, question.rdtype)
        if records:
            return Answer(FOUND, tuple(_record_value(value, question.rdtype) for value in records)), None
        cnames = reply.records(owner, dns_wire.CNAME)
        if not cnames:
            break
        owner = cnames[0]
    if owner != question.labels:
        return None, owner  # the chain leaves the server's data: ask for its target
    return Answer(NODATA, detail=f"{asked}: no records"), None


def _record_value(value, rdtype: int):
    if rdtype == dns_wire.MX:
        preference, exchange = value
        return preference, dns_wire.name_text(exchange)
    return value
