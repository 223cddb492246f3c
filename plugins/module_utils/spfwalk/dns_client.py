"""Asynchronous DNS look-ups for the walker: concurrent, bounded, de-duplicated, on dnspython.

dnspython builds and reads every message (dns.message), puts it on the wire and takes
the reply off it (dns.asyncquery on dns.asyncbackend sockets, TCP after a truncated
reply). What is the walker's own stays here: every (name, type) question is asked once
per walk, however many roots or includes reach it (the first asker starts the query,
later askers await the same task); at most max_in_flight questions are out at once;
each question has a lifetime, retransmissions and fail-over to the next name server.
The walker only needs the small ``Lookup`` protocol below, so tests may inject a fake
resolver while the behaviour tests use this client against a real DNS server.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
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
EDNS_PAYLOAD = 1232
# The walker runs on asyncio: no need to sniff for another event loop on every socket.
_BACKEND = dns.asyncbackend.get_backend("asyncio")


@dataclass(frozen=True)
class Answer:
    status: str
    # TXT: joined strings; A/AAAA: address text; MX: (preference, exchange) tuples.
    records: tuple = ()
    # The DNS condition in words: "NXDOMAIN", "REFUSED from 192.0.2.53", ...
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
        self.counters = QueryCounters()
        self._tasks: dict[tuple[str, str], asyncio.Future] = {}
        # Slots as tokens in a queue: Python 3.11's Semaphore.acquire() scans every waiter
        # (locked()), quadratic when hundreds of questions wait for 32 slots; a queue is O(1).
        self._slots: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(max_in_flight):
            self._slots.put_nowait(None)

    async def lookup(self, name: str, rdtype: str) -> Answer:
        # shield: one caller being cancelled (deadline) must not cancel the others' answer
        return await asyncio.shield(self._task_for(name, rdtype))

    def prefetch(self, name: str, rdtype: str) -> None:
        """Start the question now; a later lookup() of it awaits that answer.

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
            qname = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            invalid = asyncio.get_running_loop().create_future()
            invalid.set_result(Answer(NXDOMAIN, detail=f"invalid name {name!r}: {exc}"))
            return invalid
        return asyncio.ensure_future(self._resolve(qname, dns.rdatatype.from_text(rdtype)))

    async def _resolve(self, qname: dns.name.Name, rdtype: int) -> Answer:
        """Ask until the answer is settled, following CNAMEs the server left to us."""
        chain = [qname]
        while True:
            # The lifetime starts when the question may go out, not while it waits for a slot.
            await self._slots.get()
            try:
                reply = await _Asking(self, chain[-1], rdtype).run()
            finally:
                self._slots.put_nowait(None)
            if not isinstance(reply, Answer):
                reply = _settle(reply, rdtype, chain)
            if reply is not None:
                asked = f"{_text(qname)} {dns.rdatatype.to_text(rdtype)}"
                return Answer(reply.status, reply.records, f"{asked}: {reply.detail}" if reply.detail else "")


class _Asking:
    """One question asked of the name servers until one answers or its lifetime ends.

    Each server gets one socket and one query ID for all its retransmissions, and is
    listened to until the end, so a late reply to an earlier send is still used. Silence
    for retry_interval moves the question on to the next server (and round again once
    every server was asked); REFUSED, SERVFAIL or an error from a server drops it at once
    and asks the next. Replies that are not for this query are ignored: they never end it.
    """

    def __init__(self, client: DnsClient, qname: dns.name.Name, rdtype: int):
        self.client = client
        self.query = dns.message.make_query(qname, rdtype, use_edns=0, payload=EDNS_PAYLOAD)
        self.wire = self.query.to_wire()
        self.live = list(client.nameservers)  # servers that have not failed this question
        self.turn = 0  # which live server the next send goes to
        self.exchanges: dict[str, _Exchange] = {}
        self.listening: list[_Exchange] = []  # asked and neither answered nor failed
        self.failures: list[str] = []

    async def run(self) -> dns.message.Message | Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.query_lifetime
        send_at = loop.time()
        try:
            while (now := loop.time()) < deadline:
                if now >= send_at or not self.listening:
                    if not await self._send_next():
                        break  # every server failed
                    send_at = now + self.client.retry_interval
                for exchange, outcome in await self._heard(min(send_at, deadline) - loop.time()):
                    self.listening.remove(exchange)
                    reply = await self._take(exchange, outcome, deadline - loop.time())
                    if reply is not None:
                        return reply
                    if self._unasked():
                        send_at = loop.time()  # a server failed: ask the next one now
            return self._given_up()
        finally:
            for exchange in self.exchanges.values():
                await exchange.close()

    async def _heard(self, timeout: float) -> list[tuple[_Exchange, object]]:
        """(exchange, reply or socket error) of the servers that spoke within ``timeout``.

        An interrupted wait loses nothing: the socket queues what arrives meanwhile.
        """
        if len(self.listening) == 1:  # the usual case, without a task per wait
            (exchange,) = self.listening
            try:
                async with asyncio.timeout(timeout):
                    return [(exchange, await exchange.reply())]
            except TimeoutError:
                return []
            except (OSError, EOFError) as exc:
                return [(exchange, exc)]
        waits = {asyncio.ensure_future(exchange.reply()): exchange for exchange in self.listening}
        done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        return [(waits[future], future.exception() or future.result()) for future in done]

    async def _send_next(self) -> bool:
        """Send to the next live server, opening its exchange on first use; False when none is left."""
        while self.live:
            server = self.live[self.turn % len(self.live)]
            self.turn += 1
            exchange = self.exchanges.get(server)
            try:
                if exchange is None:
                    exchange = self.exchanges[server] = await _Exchange.open(server, self.client.port, self)
                    self.listening.append(exchange)
                await exchange.send()
            except OSError as exc:  # no route, no such address family ...
                self._fail(server, f"{server}: {exc.strerror or exc}")
                continue
            self.client.counters.queries_sent += 1
            return True
        return False

    async def _take(self, exchange: _Exchange, outcome, remaining: float):
        """The reply that settles the question, or None (and the server dropped) when it failed."""
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            reply = outcome
            if reply.flags & dns.flags.TC:
                reply = await exchange.over_tcp(max(remaining, 0.001))
        except OSError as exc:  # ICMP port unreachable, TCP connection refused ...
            self._fail(exchange.server, f"{exchange.server}: {exc.strerror or exc}")
            return None
        except dns.exception.Timeout:
            self._fail(exchange.server, f"no reply over TCP from {exchange.server}")
            return None
        except dns.exception.DNSException as exc:  # a TCP reply that is malformed or not ours
            self._fail(exchange.server, f"bad reply over TCP from {exchange.server} ({exc})")
            return None
        if reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return reply
        self._fail(exchange.server, f"{dns.rcode.to_text(reply.rcode())} from {exchange.server}")
        return None

    def _fail(self, server: str, why: str) -> None:
        self.failures.append(why)
        if server in self.live:
            self.live.remove(server)
        # A resend that failed: stop listening there too.
        self.listening = [exchange for exchange in self.listening if exchange.server != server]

    def _unasked(self) -> bool:
        return any(server not in self.exchanges for server in self.live)

    def _given_up(self) -> Answer:
        silent = self.listening
        problems = self.failures + [exchange.silence(self.client.query_lifetime) for exchange in silent]
        return Answer(TIMEOUT if silent else SERVFAIL, detail="; ".join(problems))


class _Exchange:
    """One question to one server over UDP: one connected socket, one query ID."""

    def __init__(self, server: str, port: int, asking: _Asking, sock):
        self.server, self.port, self.asking, self.sock = server, port, asking, sock
        self.malformed: Exception | None = None

    @classmethod
    async def open(cls, server: str, port: int, asking: _Asking) -> _Exchange:
        # Connected: the kernel drops datagrams from anyone but the server, and reports
        # an ICMP "port unreachable" as an error instead of leaving us to time out.
        sock = await _BACKEND.make_socket(dns.inet.af_for_address(server), socket.SOCK_DGRAM, 0, None, (server, port))
        return cls(server, port, asking, sock)

    async def send(self) -> None:
        await dns.asyncquery.send_udp(self.sock, self.asking.wire, None)

    async def reply(self) -> dns.message.Message:
        """The first reply to our query; foreign replies are skipped, malformed ones noted and skipped.

        A datagram that does not parse may be forged by anyone who can reach our port:
        it must not end the question, but it is what we report if nothing better comes.
        """
        while True:
            try:
                reply, _received, _source = await dns.asyncquery.receive_udp(self.sock)
            except (OSError, EOFError):  # the socket's own errors, not the datagram's
                raise
            except Exception as exc:  # dnspython's parser refused it (dnspython's resolver skips these too)
                self.malformed = exc
                continue
            if self.asking.query.is_response(reply):
                return reply

    async def over_tcp(self, timeout: float) -> dns.message.Message:
        """The same query over TCP, after a truncated UDP reply (RFC 7766)."""
        return await dns.asyncquery.tcp(self.asking.query, self.server, timeout=timeout, port=self.port,
                                        backend=_BACKEND)

    def silence(self, lifetime: float) -> str:
        if self.malformed is not None:
            return f"malformed reply from {self.server} ({self.malformed})"
        return f"timeout after {lifetime:g} s: no reply from {self.server}"

    async def close(self) -> None:
        await self.sock.close()


def _settle(reply: dns.message.Message, rdtype: int, chain: list[dns.name.Name]) -> Answer | None:
    """The answer a NOERROR/NXDOMAIN reply gives for chain[-1], or None to ask the end of a longer chain."""
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return Answer(NXDOMAIN, detail="NXDOMAIN" + _via(chain))
    asked = len(chain)
    while True:
        owner = chain[-1]
        rrset = reply.get_rrset(reply.answer, owner, dns.rdataclass.IN, rdtype)
        if rrset is not None:
            return Answer(FOUND, tuple(_value(rdata, rdtype) for rdata in rrset))
        cname = reply.get_rrset(reply.answer, owner, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if cname is None:
            break
        target = cname[0].target
        if target in chain:
            return Answer(SERVFAIL, detail="CNAME loop " + " -> ".join(_text(name) for name in (*chain, target)))
        if len(chain) > _MAX_CNAME_HOPS:
            return Answer(SERVFAIL, detail=f"CNAME chain longer than {_MAX_CNAME_HOPS}" + _via(chain))
        chain.append(target)
    if len(chain) > asked:
        return None  # the chain leaves the server's data: ask for its end
    return Answer(NODATA, detail=f"no data (the name exists, no {dns.rdatatype.to_text(rdtype)} record)"
                                 + _via(chain))


def _value(rdata, rdtype: int):
    if rdtype == dns.rdatatype.TXT:
        # One TXT record may be split into several character-strings: RFC 7208 3.3 joins them.
        return b"".join(rdata.strings).decode("utf-8", errors="replace")
    if rdtype == dns.rdatatype.MX:
        return rdata.preference, _text(rdata.exchange.canonicalize())
    return rdata.address


def _via(chain: list[dns.name.Name]) -> str:
    return f" (at {_text(chain[-1])}, via CNAME)" if len(chain) > 1 else ""


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)
