"""Greylisted triplets, their retries and passes, and the sender/recipient pairs behind them.

A triplet is (client network, sender, recipient), the network being the /24 (IPv4) or /64
(IPv6) the greylisting daemons key on by default. A pair is (sender, recipient): one message
as its sender sees it, whichever addresses of a pool it retries from. Memory: one small
entry per triplet and per pair, whatever the number of lines.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .daemons import GREYLISTED, POLICY, Event

MAX_ADDRESSES = 32  # per triplet and per pair: enough to show a pool, bounded on a botnet


class Triplet:
    __slots__ = ("first_greylisted", "first_passed", "mta_attempts", "policy_attempts")

    def __init__(self, time: float):
        self.first_greylisted = time
        self.first_passed: float | None = None
        self.policy_attempts = 0
        self.mta_attempts = 0

    @property
    def attempts(self) -> int:
        # Postfix and postgrey both log the same attempt: the larger count, never the sum.
        return max(self.policy_attempts, self.mta_attempts)


class Pair:
    __slots__ = ("addresses", "first_greylisted", "first_network", "first_passed", "names", "networks")

    def __init__(self, time: float, network: str):
        self.first_greylisted = time
        self.first_passed: float | None = None
        self.first_network = network
        self.networks: set[str] = set()
        self.addresses: set[str] = set()
        self.names: set[str] = set()


@dataclass
class Aggregator:
    prefix4: int = 24
    prefix6: int = 64
    triplets: dict[tuple[str, str, str], Triplet] = field(default_factory=dict)
    pairs: dict[tuple[str, str], Pair] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None
    greylist_events: int = 0
    pass_events: int = 0

    def add(self, event: Event) -> None:
        time = event.time
        # observe(), written out: this runs once per event.
        if self.first_time is None or time < self.first_time:
            self.first_time = time
        if self.last_time is None or time > self.last_time:
            self.last_time = time
        network = self.network(event.address)
        if network is None:
            return
        pair_key = (event.sender, event.recipient)
        key = (network, event.sender, event.recipient)
        if event.kind == GREYLISTED:
            self.greylist_events += 1
            self._greylisted(key, pair_key, network, event)
        else:
            self.pass_events += 1
            self._passed(key, pair_key, event.time)

    def _greylisted(self, key, pair_key, network: str, event: Event) -> None:
        triplet = self.triplets.get(key)
        if triplet is None:
            triplet = self.triplets[key] = Triplet(event.time)
        elif event.time < triplet.first_greylisted:
            triplet.first_greylisted = event.time
        if event.witness == POLICY:
            triplet.policy_attempts += 1
        else:
            triplet.mta_attempts += 1
        pair = self.pairs.get(pair_key)
        if pair is None:
            pair = self.pairs[pair_key] = Pair(event.time, network)
        elif event.time < pair.first_greylisted:
            pair.first_greylisted, pair.first_network = event.time, network
        pair.networks.add(network)
        if len(pair.addresses) < MAX_ADDRESSES:
            pair.addresses.add(event.address)
            if event.name:
                pair.names.add(event.name.lower().rstrip("."))

    def _passed(self, key, pair_key, time: float) -> None:
        # A pass only counts for what was greylisted first: whitelisted mail is not our business.
        triplet = self.triplets.get(key)
        if triplet is not None and time >= triplet.first_greylisted and (
                triplet.first_passed is None or time < triplet.first_passed):
            triplet.first_passed = time
        pair = self.pairs.get(pair_key)
        if pair is not None and time >= pair.first_greylisted and (
                pair.first_passed is None or time < pair.first_passed):
            pair.first_passed = time

    def observe(self, time: float) -> None:
        """Any line's time: the log's span (and so --min-age) counts every line, not only events."""
        if self.first_time is None or time < self.first_time:
            self.first_time = time
        if self.last_time is None or time > self.last_time:
            self.last_time = time

    def network(self, address: str) -> str | None:
        if self.prefix4 == 24 and address.count(".") == 3 and ":" not in address:
            head, _dot, last = address.rpartition(".")
            if last.isdigit():
                return f"{head}.0/24"  # the common case, without ipaddress
        try:
            ip = ipaddress.ip_address(address.strip("[]").removeprefix("IPv6:").removeprefix("ipv6:"))
        except ValueError:
            return None
        prefix = self.prefix4 if ip.version == 4 else self.prefix6
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
