"""A small authoritative-style DNS server for tests and benchmarks.

It runs as its own process so that the code under test talks to it over real
UDP and TCP sockets, exactly as it would talk to a production resolver:

    python -m tests.support.dns_server --zone ZONE.json --address 127.0.0.2 \
        --port 0 --log QUERYLOG.jsonl

UDP and TCP are served on the same port.  With ``--port 0`` a free port that
is usable for both is chosen.  Once the sockets are bound the server prints
exactly one line ``READY <port>`` on stdout.  SIGTERM (or SIGINT) exits
cleanly with status 0; SIGHUP re-reads the zone file and then appends
``{"event": "reloaded"}`` to the query log (``{"event": "reload_failed",
"error": ...}`` if the new file is invalid, in which case the old zone stays).

Zone file (JSON)::

    {"delay_ms": 0,        # optional: added to every answer (latency injection)
     "ttl": 300,           # optional: TTL of every RR
     "records": {
        "example.com": {
            "TXT": ["v=spf1 ip4:192.0.2.0/24 -all",     # a string = one RR
                    ["v=spf1 ip4:1.2.3.4", " -all"]],  # a list = one RR, several strings
            "SPF": ["v=spf1 -all"],                     # type 99, same shape as TXT
            "A": ["192.0.2.1"], "AAAA": ["2001:db8::1"],
            "MX": [[10, "mx.example.com"]],
            "PTR": ["host.example.com"],
            "CNAME": "other.example.com"},              # a single target
        "empty.example.com": {}},                       # exists, has no data
     "faults": {
        "broken.example.com": {"servfail": true},      # rcode SERVFAIL
        "slow.example.com": {"delay_ms": 500},         # answer late
        "gone.example.com": {"drop": true},            # never answer
        "big.example.com": {"truncate": true},         # UDP: TC reply, TCP: full answer
        "x.example.com": {"drop": true, "types": ["TXT"]},   # only for these qtypes
        "no.example.com": {"rcode": "REFUSED"},        # any rcode, by name
        "d.example.com": {"decoy": "wrong_id"},        # UDP: a decoy datagram first
        "*": {"rcode": "REFUSED"}}}                    # every name without a fault of its own

Semantics:

* Names are case-insensitive; a trailing dot is optional.  Answers echo the
  owner name in the case it was asked.
* A name listed in "records", or an ancestor of one (an empty non-terminal),
  exists: it answers NOERROR with the matching RRs, or with an empty answer
  section (NODATA).  Every other name answers NXDOMAIN.  The server considers
  itself authoritative for the whole tree, so AA is always set (and RA too,
  because the code under test uses it as its recursive resolver).
* CNAME: for any other qtype the CNAME RR is answered and the chain is
  followed while targets are in the zone; the rcode is that of the last name
  in the chain (RFC 6604), so a CNAME to a missing name gives NXDOMAIN.
* TXT/SPF strings longer than 255 bytes are split into 255-byte chunks inside
  the same RR, as a zone compiler would.
* A UDP answer larger than the client's limit (512 bytes, or its EDNS payload
  size) is replaced by a TC reply, as a real server does, so large records
  exercise the client's TCP fallback.  The "truncate" fault forces that.
* Faults apply to the exact name only; the name "*" applies to every name
  without a fault of its own (a server that refuses everything).  "delay_ms"
  of a fault adds to the global one.  Delays are timers counted from the query's arrival, so slow
  answers never hold up other queries: concurrent queries are answered
  concurrently.  "drop" over TCP keeps the connection open and silent.
* "decoy" (UDP only) sends one more datagram just before the reply, from the
  same address: "wrong_id" (the reply with another ID), "other_question" (a
  reply to another name, with the query's ID) or "pointer_loop" (the query's
  ID and question, then an answer whose owner name is a compression pointer to
  itself).  With "drop" the decoy is all the client gets.
* Malformed packets get FORMERR when a header can be read, else are ignored.

Query log: one JSON line per received query, written before any fault is
applied and flushed at once, so a client that got (or timed out waiting for)
its answer can already see it:
``{"name": "example.com", "type": "TXT", "transport": "udp", "t": <time.monotonic()>}``.
``t`` uses CLOCK_MONOTONIC, which is system-wide on Linux, so it can be
compared with ``time.monotonic()`` in the test process.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from dnslib import (
    AAAA,
    CLASS,
    CNAME,
    EDNS0,
    MX,
    OPCODE,
    PTR,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSHeader,
    DNSQuestion,
    DNSRecord,
)

DEFAULT_TTL = 300
# RFC 1035 limit for UDP answers to clients that do not advertise EDNS.
CLASSIC_UDP_LIMIT = 512
# What we advertise back; 1232 is the DNS Flag Day 2020 recommendation.
OUR_EDNS_PAYLOAD = 1232
# Bounds CNAME chains so that a loop in a test zone cannot hang the server.
MAX_CNAME_CHAIN = 8
# Idle TCP connections are closed after this, like real servers do.
TCP_IDLE_TIMEOUT = 30.0
TXT_CHUNK = 255


def wire_name(qname) -> str:
    """The query name with its labels as sent (dnslib's str() escapes spaces as \\032)."""
    return ".".join(label.decode("latin-1") for label in qname.label)


def normalise(name: str) -> str:
    """Canonical key for a name: lowercase, no trailing dot ("" is the root)."""
    return name.rstrip(".").lower()


def ancestors(name: str) -> list[str]:
    """Proper ancestors of a normalised name, including the root ("")."""
    labels = name.split(".") if name else []
    return [".".join(labels[i:]) for i in range(1, len(labels) + 1)]


def txt_strings(value: str | list[str]) -> list[bytes]:
    """Character-strings of one TXT RR; long strings are cut at 255 bytes."""
    parts = [value] if isinstance(value, str) else list(value)
    chunks: list[bytes] = []
    for part in parts:
        raw = part.encode("utf-8")
        # max(..., 1): an empty string is still one (empty) character-string.
        chunks.extend(raw[i:i + TXT_CHUNK] for i in range(0, max(len(raw), 1), TXT_CHUNK))
    return chunks


# How each JSON record value becomes dnslib rdata.  SPF (type 99) has the same
# wire format as TXT; dnslib has no class of its own for it.
RDATA_BUILDERS = {
    "A": lambda v: A(v),
    "AAAA": lambda v: AAAA(v),
    "TXT": lambda v: TXT(txt_strings(v)),
    "SPF": lambda v: TXT(txt_strings(v)),
    "MX": lambda v: MX(v[1], int(v[0])),
    "PTR": lambda v: PTR(v),
    "CNAME": lambda v: CNAME(v),
}


@dataclass
class Fault:
    servfail: bool = False
    drop: bool = False
    truncate: bool = False
    delay_ms: float = 0.0
    rcode: int | None = None  # answer this rcode, with no records
    decoy: str | None = None  # one of DECOYS
    types: frozenset[str] | None = None  # None = every qtype

    def applies_to(self, qtype: str) -> bool:
        return self.types is None or qtype in self.types


NO_FAULT = Fault()
DECOYS = ("wrong_id", "other_question", "pointer_loop")


@dataclass
class Zone:
    ttl: int = DEFAULT_TTL
    delay_ms: float = 0.0
    # name -> qtype -> list of rdata, built once at load time so that a bad
    # zone is rejected at start/reload rather than at query time.
    records: dict[str, dict[str, list]] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)

    def exists(self, name: str) -> bool:
        return name in self.existing

    def fault_for(self, name: str, qtype: str) -> Fault:
        fault = self.faults.get(name) or self.faults.get("*", NO_FAULT)
        return fault if fault.applies_to(qtype) else NO_FAULT


def parse_rrsets(name: str, rrsets: dict) -> dict[str, list]:
    parsed: dict[str, list] = {}
    for qtype, values in rrsets.items():
        qtype = qtype.upper()
        if qtype not in RDATA_BUILDERS:
            raise ValueError(f"{name}: unsupported record type {qtype}")
        # CNAME is naturally a single target; accept a one-element list too.
        if qtype == "CNAME" and isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise ValueError(f"{name} {qtype}: expected a list of values")
        parsed[qtype] = [RDATA_BUILDERS[qtype](value) for value in values]
    return parsed


def parse_fault(name: str, spec: dict) -> Fault:
    unknown = set(spec) - {"servfail", "drop", "truncate", "delay_ms", "rcode", "decoy", "types"}
    if unknown:
        raise ValueError(f"{name}: unknown fault keys {sorted(unknown)}")
    if spec.get("decoy") not in (None, *DECOYS):
        raise ValueError(f"{name}: decoy must be one of {', '.join(DECOYS)}")
    rcode = spec.get("rcode")
    if rcode is not None:
        rcode = RCODE.reverse.get(str(rcode).upper())
        if rcode is None:
            raise ValueError(f"{name}: unknown rcode {spec['rcode']!r}")
    types = spec.get("types")
    return Fault(
        servfail=bool(spec.get("servfail", False)),
        drop=bool(spec.get("drop", False)),
        truncate=bool(spec.get("truncate", False)),
        delay_ms=float(spec.get("delay_ms", 0)),
        rcode=rcode,
        decoy=spec.get("decoy"),
        types=None if types is None else frozenset(t.upper() for t in types),
    )


def load_zone(path: Path) -> Zone:
    data = json.loads(path.read_text(encoding="utf-8"))
    zone = Zone(ttl=int(data.get("ttl", DEFAULT_TTL)), delay_ms=float(data.get("delay_ms", 0)))
    for name, rrsets in data.get("records", {}).items():
        key = normalise(name)
        zone.records[key] = parse_rrsets(key, rrsets or {})
        zone.existing.add(key)
        zone.existing.update(ancestors(key))
    for name, spec in data.get("faults", {}).items():
        zone.faults[normalise(name)] = parse_fault(name, spec)
    return zone


class QueryLog:
    """Append-only JSON-lines log, flushed per line so readers never lag."""

    def __init__(self, path: Path | None):
        # Append mode: the test helper truncates the file to reset it, and
        # O_APPEND makes our next write land at the new end, not at a hole.
        # Held open for the server's lifetime, hence no context manager.
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, entry: dict) -> None:
        if self._file and not self._file.closed:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


def qtype_name(qtype: int) -> str:
    # QTYPE.get returns the number itself for types dnslib does not know.
    return str(QTYPE.get(qtype, qtype))


def udp_limit(query: DNSRecord) -> int:
    for rr in query.ar:
        if rr.rtype == QTYPE.OPT:
            # The OPT class field carries the client's UDP payload size.
            return max(CLASSIC_UDP_LIMIT, min(rr.rclass, 65535))
    return CLASSIC_UDP_LIMIT


def reply_skeleton(query: DNSRecord, **flags) -> DNSRecord:
    """A reply carrying the question, built by hand so that flags are exact.

    Also used for TC replies: dnslib's truncate() drops the question section,
    and strict clients (dnspython) reject a reply without it.
    """
    header = DNSHeader(id=query.header.id, qr=1, aa=1, ra=1, rd=query.header.rd, **flags)
    reply = DNSRecord(header, questions=list(query.questions))
    if any(rr.rtype == QTYPE.OPT for rr in query.ar):
        reply.add_ar(EDNS0(udp_len=OUR_EDNS_PAYLOAD))
    return reply


def formerr_for(data: bytes) -> bytes | None:
    """FORMERR for an unparseable packet, if at least the ID can be echoed."""
    if len(data) < 12 or data[2] & 0x80:
        return None  # too short to have an ID, or a response: never answer those
    (query_id,) = struct.unpack("!H", data[:2])
    return DNSRecord(DNSHeader(id=query_id, qr=1, rcode=RCODE.FORMERR)).pack()


class Resolver:
    """Answers parsed queries from the current zone; no sockets here."""

    def __init__(self, zone: Zone):
        self.zone = zone

    def answer(self, query: DNSRecord) -> DNSRecord:
        reply = reply_skeleton(query)
        question = query.q
        if question.qclass != CLASS.IN:
            reply.header.rcode = RCODE.REFUSED
            return reply
        reply.header.rcode = self._fill(reply, question.qname, qtype_name(question.qtype))
        return reply

    def _fill(self, reply: DNSRecord, qname, qtype: str) -> int:
        owner = qname
        for _ in range(MAX_CNAME_CHAIN):
            key = normalise(wire_name(owner))
            if not self.zone.exists(key):
                return RCODE.NXDOMAIN
            rrsets = self.zone.records.get(key, {})
            cname = rrsets.get("CNAME")
            if not cname or qtype == "CNAME":
                self._add(reply, owner, qtype, rrsets.get(qtype, []))
                return RCODE.NOERROR
            self._add(reply, owner, "CNAME", cname[:1])
            owner = cname[0].label
        return RCODE.NOERROR  # chain too long: give what we have, like a server would

    def _add(self, reply: DNSRecord, owner, qtype: str, rdatas: list) -> None:
        # Only types we can store ever have rdatas, so the lookup cannot fail.
        for rdata in rdatas:
            reply.add_answer(RR(owner, getattr(QTYPE, qtype), CLASS.IN, self.zone.ttl, rdata))


class DnsServer:
    """Transport-independent query handling: log, faults, delay, answer.

    The server is Python and the code under test is timed against it, so the work per
    query is kept small: a query that was seen before (same bytes after the ID, same
    transport, same zone) is answered from a cache of finished replies. A real server
    answers in microseconds; without the cache a burst of questions queued behind each
    other here and came back later than the injected delay says.
    """

    def __init__(self, zone_path: Path, log: QueryLog):
        self.zone_path = zone_path
        self.log = log
        self.resolver = Resolver(load_zone(zone_path))
        # (query bytes after the ID, transport) -> (name, qtype, datagrams, delay); a datagram
        # is (whether its ID is the query's with every bit flipped, its bytes after the ID)
        self._replies: dict[tuple[bytes, str], tuple[str, str, tuple[tuple[bool, bytes], ...], float]] = {}

    def reload(self) -> None:
        try:
            self.resolver = Resolver(load_zone(self.zone_path))
        except Exception as exc:  # keep serving the old zone; tell the tester why
            self.log.write({"event": "reload_failed", "error": f"{type(exc).__name__}: {exc}"})
            return
        self._replies = {}
        self.log.write({"event": "reloaded"})

    def prepare(self, data: bytes, transport: str, received: float) -> tuple[list[bytes], float]:
        """(wire replies in sending order, none to stay silent; loop time to send them at) for one packet.

        ``received`` is the loop time the packet arrived: the injected delay counts from
        there, and the reply is built before the delay, not after it.
        """
        cached = self._replies.get((data[2:], transport))
        if cached is None:
            try:
                query = DNSRecord.parse(data)
            except Exception:
                return _listed(formerr_for(data)), received
            if query.header.qr or len(query.questions) != 1:
                return ([] if query.header.qr else _listed(formerr_for(data))), received
            if query.header.opcode != OPCODE.QUERY:  # NOTIFY, UPDATE, ...: not ours to serve
                return [reply_skeleton(query, opcode=query.header.opcode, rcode=RCODE.NOTIMP).pack()], received
            try:
                cached = self._prepare_answer(query, transport)
            except Exception as exc:  # a bug here must cost one answer, not the server
                print(f"dns_server: error answering {query.q.qname}: {exc!r}", file=sys.stderr)
                return [reply_skeleton(query, rcode=RCODE.SERVFAIL).pack()], received
            self._replies[(data[2:], transport)] = cached
        name, qtype, datagrams, delay_ms = cached
        # Logged before any fault applies, so a dropped query is in the log too.
        self.log.write({"name": name, "type": qtype, "transport": transport, "t": time.monotonic()})
        flipped = bytes(byte ^ 0xFF for byte in data[:2])
        return [(flipped if flip else data[:2]) + tail for flip, tail in datagrams], received + delay_ms / 1000

    def _prepare_answer(self, query: DNSRecord, transport: str):
        resolver = self.resolver
        name, qtype = normalise(wire_name(query.q.qname)), qtype_name(query.q.qtype)
        fault = resolver.zone.fault_for(name, qtype)
        datagrams = []
        if fault.decoy and transport == "udp":
            datagrams.append(self._decoy(resolver, query, fault.decoy))
        if not fault.drop:
            datagrams.append((False, self._reply(resolver, query, transport, fault)[2:]))
        return name, qtype, tuple(datagrams), resolver.zone.delay_ms + fault.delay_ms

    @staticmethod
    def _decoy(resolver, query: DNSRecord, kind: str) -> tuple[bool, bytes]:
        if kind == "wrong_id":
            return True, resolver.answer(query).pack()[2:]
        if kind == "other_question":
            other = DNSRecord(query.header, questions=[DNSQuestion(f"decoy.{wire_name(query.q.qname)}", query.q.qtype)])
            return False, resolver.answer(other).pack()[2:]
        # pointer_loop: our question, then one answer whose owner is a pointer to itself
        wire = bytearray(DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=1, rd=query.header.rd),
                                   questions=[query.q]).pack())
        wire[6:8] = struct.pack("!H", 1)  # ANCOUNT
        loop_at = len(wire)
        wire += struct.pack("!HHHIH", 0xC000 | loop_at, QTYPE.TXT, CLASS.IN, 60, 0)
        return False, bytes(wire[2:])

    @staticmethod
    def _reply(resolver, query: DNSRecord, transport: str, fault) -> bytes:
        if fault.servfail:
            return reply_skeleton(query, rcode=RCODE.SERVFAIL).pack()
        if fault.rcode is not None:
            return reply_skeleton(query, rcode=fault.rcode).pack()
        if transport == "udp" and fault.truncate:
            return reply_skeleton(query, tc=1).pack()
        wire = resolver.answer(query).pack()
        if transport == "udp" and len(wire) > udp_limit(query):
            return reply_skeleton(query, tc=1).pack()
        return wire


def _listed(reply: bytes | None) -> list[bytes]:
    return [] if reply is None else [reply]


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        loop = asyncio.get_running_loop()
        replies, send_at = self.server.prepare(data, "udp", loop.time())
        if not replies:
            return
        # A timer, not a task per datagram: cheaper, and a delayed answer never holds up
        # the next query.
        if send_at > loop.time():
            loop.call_at(send_at, self._send, replies, addr)
        else:
            self._send(replies, addr)

    def _send(self, replies: list[bytes], addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            for reply in replies:
                self.transport.sendto(reply, addr)


class TcpConnection:
    """One TCP client; queries on it are answered concurrently (pipelining)."""

    # Open connections, so that shutdown can close them instead of cancelling
    # them (cancelled stream handlers make Python 3.11 print tracebacks).
    open_connections: ClassVar[set[TcpConnection]] = set()

    def __init__(self, server: DnsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer
        self.write_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.serve_task: asyncio.Task | None = None

    @classmethod
    async def close_all(cls, timeout: float = 1.0) -> None:
        """Close every connection; their serve() loops then end on EOF."""
        connections = list(cls.open_connections)
        for connection in connections:
            connection.writer.close()
        serving = [c.serve_task for c in connections if c.serve_task]
        if serving:
            await asyncio.wait(serving, timeout=timeout)

    async def serve(self) -> None:
        self.serve_task = asyncio.current_task()
        self.open_connections.add(self)
        try:
            while (data := await self._read_message()) is not None:
                loop = asyncio.get_running_loop()
                task = loop.create_task(self._answer(data, loop.time()))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            self.open_connections.discard(self)
            for task in list(self.tasks):
                task.cancel()
            self.writer.close()

    async def _read_message(self) -> bytes | None:
        try:
            prefix = await asyncio.wait_for(self.reader.readexactly(2), TCP_IDLE_TIMEOUT)
            (length,) = struct.unpack("!H", prefix)
            return await asyncio.wait_for(self.reader.readexactly(length), TCP_IDLE_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _answer(self, data: bytes, received: float) -> None:
        replies, send_at = self.server.prepare(data, "tcp", received)
        loop = asyncio.get_running_loop()
        if send_at > loop.time():
            await asyncio.sleep(send_at - loop.time())
        if not replies:
            return  # "drop": stay silent and keep the connection, like a stuck server
        (reply,) = replies  # decoys are UDP only
        # The lock keeps length prefix + message of concurrent replies contiguous.
        async with self.write_lock:
            try:
                self.writer.write(struct.pack("!H", len(reply)) + reply)
                await self.writer.drain()
            except ConnectionError:
                pass  # client gave up; nothing to do


def bind_sockets(address: str, port: int, attempts: int = 50) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port.

    With port 0 the kernel picks a free UDP port, which may be taken for TCP;
    then we simply try another one.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    for _ in range(attempts if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.bind((address, port))
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((address, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port != 0:
                raise
            continue
        tcp.listen(128)
        return udp, tcp
    raise OSError(f"no port on {address} free for both UDP and TCP after {attempts} attempts")


async def serve(args: argparse.Namespace) -> None:
    log = QueryLog(args.log)
    server = DnsServer(args.zone, log)
    udp_sock, tcp_sock = bind_sockets(args.address, args.port)
    loop = asyncio.get_running_loop()
    udp_transport, _ = await loop.create_datagram_endpoint(lambda: UdpProtocol(server), sock=udp_sock)
    tcp_server = await asyncio.start_server(
        lambda r, w: TcpConnection(server, r, w).serve(), sock=tcp_sock
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    # Only now are both sockets accepting: a client may query right away.
    print(f"READY {udp_sock.getsockname()[1]}", flush=True)
    await stop.wait()
    udp_transport.close()
    tcp_server.close()
    await TcpConnection.close_all()
    log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone", type=Path, required=True, help="zone JSON file")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (UDP and TCP)")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    parser.add_argument("--log", type=Path, default=None, help="query log (JSON lines)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
