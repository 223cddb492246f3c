"""Netblock normalisation shared by the walker, the static entries and the shrink guard."""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable
from typing import TypeVar

from .model import Network


def parse_network(text: str, default_prefix: int | None = None) -> tuple[Network, bool]:
    """Parse an address or CIDR; return (network, had_host_bits).

    An address with host bits set ("192.0.2.1/24") is fixed to its network
    ("192.0.2.0/24") instead of being written as is: Postfix skips such cidr lines
    with only a warning, and other consumers disagree on what they mean.
    Raises ValueError for anything that is not an IPv4/IPv6 address or network.
    """
    if default_prefix is not None and "/" not in text:
        text = f"{text}/{default_prefix}"
    parsed = _parse_plain(text)
    if parsed is not None:
        return parsed
    # Everything else (netmask or scoped forms, and every invalid entry, for its message).
    interface = ipaddress.ip_interface(text)
    network = interface.network
    return network, interface.ip != network.network_address


def _parse_plain(text: str) -> tuple[Network, bool] | None:
    """ADDRESS or ADDRESS/LENGTH, the form of every SPF ip4/ip6 term; None for anything else.

    The walker parses every netblock of every record, and ipaddress's string parser is
    slow; inet_pton is at least as strict (no leading zeros, no scope, no spaces).
    Raises ValueError for a length with a leading zero ("/032", "/00"): RFC 7208 forbids
    it, and ipaddress, which would get it next, reads "/00" as "/0".
    """
    address, slash, length = text.partition("/")
    if length.startswith("0") and length != "0" and length.isdigit():
        raise ValueError(f"{text!r}: a CIDR length has no leading zeros")
    family, network_class = (socket.AF_INET6, ipaddress.IPv6Network) if ":" in address else (
        socket.AF_INET, ipaddress.IPv4Network)
    bits = 128 if family == socket.AF_INET6 else 32
    if slash and not (length.isascii() and length.isdigit() and len(length) <= 3 and int(length) <= bits):
        return None
    prefix = int(length) if slash else bits
    try:
        value = int.from_bytes(socket.inet_pton(family, address), "big")
    except OSError:
        return None
    host_mask = (1 << (bits - prefix)) - 1
    return network_class((value & ~host_mask, prefix)), bool(value & host_mask)


def collapse(networks: Iterable[Network]) -> list[Network]:
    """Collapse, de-duplicate and sort: IPv4 first, then IPv6, each in address order."""
    networks = list(networks)
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return list(ipaddress.collapse_addresses(v4)) + list(ipaddress.collapse_addresses(v6))


T = TypeVar("T")


def group_by_container(networks: list[Network], items: Iterable[tuple[Network, T]]) -> list[list[T]]:
    """For a collapse()d list: the values of the items whose network lies inside each of its networks.

    The result has one list per network, in the same order; an item inside none of them is dropped.
    Collapsed networks are disjoint and sorted, so the one that can hold an item is the last one
    starting at or before the item's first address.
    """
    starts = [(network.version, int(network.network_address)) for network in networks]
    groups: list[list[T]] = [[] for _network in networks]
    for network, value in items:
        index = bisect.bisect_right(starts, (network.version, int(network.network_address))) - 1
        if index >= 0 and networks[index].version == network.version and network.subnet_of(networks[index]):
            groups[index].append(value)
    return groups


def address_count(networks: Iterable[Network], version: int) -> int:
    return sum(n.num_addresses for n in collapse(networks) if n.version == version)


def lost_fraction(old: Iterable[Network], new: Iterable[Network]) -> float:
    """The largest share, per address family, of the old addresses that the new list no longer covers.

    Counted per family because an IPv6 /32 would otherwise drown every IPv4 change.
    Returns 0.0 when nothing was covered before.
    """
    old_list, new_list = collapse(old), collapse(new)
    worst = 0.0
    for version in (4, 6):
        before = [n for n in old_list if n.version == version]
        total = sum(n.num_addresses for n in before)
        if not total:
            continue
        after = [n for n in new_list if n.version == version]
        kept = _overlap(before, after)
        worst = max(worst, (total - kept) / total)
    return worst


def _overlap(a: list[Network], b: list[Network]) -> int:
    """Addresses covered by both collapsed, sorted lists (one sweep over both)."""
    ranges_a = [(int(n.network_address), int(n.broadcast_address)) for n in a]
    ranges_b = [(int(n.network_address), int(n.broadcast_address)) for n in b]
    i = j = covered = 0
    while i < len(ranges_a) and j < len(ranges_b):
        low = max(ranges_a[i][0], ranges_b[j][0])
        high = min(ranges_a[i][1], ranges_b[j][1])
        if low <= high:
            covered += high - low + 1
        if ranges_a[i][1] < ranges_b[j][1]:
            i += 1
        else:
            j += 1
    return covered
