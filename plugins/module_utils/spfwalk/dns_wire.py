"""The DNS wire format, as far as the walker needs it: one question out, its answer back.

The walker asks only TXT, A, AAAA and MX and reads only the answer section, so it does
not need a general DNS message parser. dnspython's (dns.message.from_wire) cost about a
third of the walker's CPU time, and in a walk that CPU time is latency: the answers of
one level of includes arrive together and are read one after another. This module
reads the header, checks that the reply answers our question, and decodes the answer
records of the wanted type and CNAMEs; everything else is skipped by its length.

Names are handled as tuples of lowercase labels (bytes) without the root label, so
that comparing owners is case-insensitive (RFC 4343) and cheap. dnspython still
validates and renders the names we ask for (dns_client), and carries the TCP fallback.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import dns.exception

# Record types and the one class the walker asks for.
A, CNAME, MX, TXT, AAAA = 1, 5, 15, 16, 28
TYPES = {"A": A, "MX": MX, "TXT": TXT, "AAAA": AAAA}
CLASS_IN = 1

# Header flags and response codes (RFC 1035 4.1.1).
FLAG_QR = 0x8000
FLAG_TC = 0x0200
FLAG_RD = 0x0100
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

# Large enough for the biggest provider TXT sets; smaller than typical path MTU trouble.
EDNS_PAYLOAD = 1232
_OPT = struct.pack("!BHHIH", 0, 41, EDNS_PAYLOAD, 0, 0)  # root owner, OPT, payload size, no flags
_HEADER = struct.Struct("!HHHHHH")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdata length
# A name may not be longer than 255 octets, so a chain of more pointers than that loops.
_MAX_POINTERS = 128


class MalformedReply(dns.exception.FormError):
    """A reply that cannot be read (cut short, bad pointers, ...)."""


class ForeignReply(dns.exception.DNSException):
    """A well-formed reply that does not answer our question (wrong ID, question or opcode)."""


Labels = tuple[bytes, ...]


@dataclass(frozen=True)
class Reply:
    rcode: int
    truncated: bool
    # (owner labels, type, value) for every answer record of the wanted type or CNAME.
    # TXT: the record's strings joined (RFC 7208 3.3) and decoded; A/AAAA: address text;
    # MX: (preference, exchange labels); CNAME: target labels.
    answers: tuple[tuple[Labels, int, object], ...]

    def records(self, owner: Labels, rdtype: int) -> list:
        return [value for name, kind, value in self.answers if kind == rdtype and name == owner]


def query_wire(query_id: int, qname_wire: bytes, rdtype: int) -> bytes:
    """A recursive query for one question, with EDNS0 so large TXT sets fit in UDP."""
    return _HEADER.pack(query_id, FLAG_RD, 1, 0, 0, 1) + qname_wire + _TYPE_CLASS.pack(rdtype, CLASS_IN) + _OPT


def name_wire(labels: Labels) -> bytes:
    """The uncompressed wire form of a name (the inverse of labels_of)."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def labels_of(qname_wire: bytes) -> Labels:
    """Lowercase labels of an uncompressed wire name (the one we rendered for the question)."""
    labels, _end = _read_name(qname_wire.lower(), 0)
    return labels


def parse_reply(data: bytes, query_id: int, qname: Labels, rdtype: int) -> Reply:
    """Read the reply to our question; raise ForeignReply or MalformedReply otherwise."""
    if len(data) < _HEADER.size:
        raise MalformedReply(f"reply of {len(data)} bytes is shorter than a DNS header")
    reply_id, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(data)
    if reply_id != query_id or not flags & FLAG_QR or (flags >> 11) & 0xF != 0:
        raise ForeignReply("reply does not answer our query (ID, QR bit or opcode)")
    if qdcount != 1:
        raise ForeignReply(f"reply carries {qdcount} questions, not ours")
    owner, offset = _read_name(data, _HEADER.size)
    if offset + 4 > len(data):
        raise MalformedReply("question cut short")
    qtype, qclass = _TYPE_CLASS.unpack_from(data, offset)
    offset += 4
    if owner != qname or qtype != rdtype or qclass != CLASS_IN:
        raise ForeignReply("reply is for another question")
    rcode = flags & 0xF
    truncated = bool(flags & FLAG_TC)
    answers = []
    if not truncated:
        for _ in range(ancount):
            owner, offset = _read_name(data, offset)
            if offset + _RR_FIXED.size > len(data):
                raise MalformedReply("answer record cut short")
            kind, rrclass, _ttl, length = _RR_FIXED.unpack_from(data, offset)
            offset += _RR_FIXED.size
            end = offset + length
            if end > len(data):
                raise MalformedReply("answer rdata cut short")
            if rrclass == CLASS_IN and kind in (rdtype, CNAME):
                answers.append((owner, kind, _rdata_value(data, offset, end, kind)))
            offset = end
    return Reply(rcode, truncated, tuple(answers))


def name_text(labels: Labels) -> str:
    """Presentation form without the final dot ("" for the root)."""
    return ".".join(label.decode("ascii", errors="backslashreplace") for label in labels)


def _rdata_value(data: bytes, start: int, end: int, kind: int):
    if kind == TXT:
        strings, offset = [], start
        while offset < end:
            length = data[offset]
            if offset + 1 + length > end:
                raise MalformedReply("TXT string runs past its record")
            strings.append(data[offset + 1:offset + 1 + length])
            offset += 1 + length
        # One TXT record may be split into several character-strings: RFC 7208 3.3 joins them.
        return b"".join(strings).decode("utf-8", errors="replace")
    if kind == A:
        if end - start != 4:
            raise MalformedReply(f"A record of {end - start} bytes")
        return socket.inet_ntop(socket.AF_INET, data[start:end])
    if kind == AAAA:
        if end - start != 16:
            raise MalformedReply(f"AAAA record of {end - start} bytes")
        return socket.inet_ntop(socket.AF_INET6, data[start:end])
    if kind == MX:
        if end - start < 3:
            raise MalformedReply("MX record cut short")
        (preference,) = struct.unpack_from("!H", data, start)
        exchange, stop = _read_name(data, start + 2)
        if stop != end:
            raise MalformedReply("MX record length does not match its name")
        return preference, exchange
    target, stop = _read_name(data, start)  # CNAME
    if stop != end:
        raise MalformedReply("CNAME record length does not match its name")
    return target


def _read_name(data: bytes, offset: int) -> tuple[Labels, int]:
    """The name at ``offset`` (following compression pointers) and the offset after it."""
    labels: list[bytes] = []
    end = None  # where the name ends in the record: after its first pointer
    total = 0
    for _ in range(_MAX_POINTERS):
        while True:
            if offset >= len(data):
                raise MalformedReply("name runs past the end of the reply")
            length = data[offset]
            if length == 0:
                return tuple(labels), (offset + 1 if end is None else end)
            if length & 0xC0 == 0xC0:
                if offset + 1 >= len(data):
                    raise MalformedReply("compression pointer cut short")
                if end is None:
                    end = offset + 2
                offset = ((length & 0x3F) << 8) | data[offset + 1]
                break  # follow the pointer
            if length & 0xC0:
                raise MalformedReply(f"unknown label type {length >> 6:#x}")
            label = data[offset + 1:offset + 1 + length]
            if len(label) != length:
                raise MalformedReply("label runs past the end of the reply")
            total += length + 1
            if total > 255:
                raise MalformedReply("name longer than 255 octets")
            labels.append(label.lower())
            offset += 1 + length
    raise MalformedReply("compression pointers loop")
