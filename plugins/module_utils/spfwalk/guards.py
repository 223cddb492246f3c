"""The width floor and special-purpose guard: what no whitelist may contain, on the controller and on the hosts.

One whitelist entry can open the greylist to the Internet: a provider include that suddenly
publishes ``ip4:0.0.0.0/1``, a static entry ``/.*/``, ``*.com`` or ``10.0.0.0/8``. The walker's
update logic (module and CLI), the static entries and every host checker
(postgrey-whitelist-check, sqlgrey-whitelist-check, exim4-hostlist-check) ask this one module,
so a list the controller builds is judged by the same rules on the host that installs it.

The mailguard role installs this very file as /usr/local/lib/mailguard/guards.py and writes the
policy (``GuardPolicy.to_json``'s shape) to /etc/mailguard/whitelist-guard.json; the checkers
load both by path. Hence standard library only and no relative imports.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Defaults of the floor. The largest blocks real providers publish are about a /13 (IPv4) and a
# /29 (IPv6, an RIR allocation); anything wider is a typo or an attack, and whitelisting it lets
# a large part of the Internet skip greylisting.
DEFAULT_MIN_PREFIX4 = 12
DEFAULT_MIN_PREFIX6 = 28

# Address space no legitimate Internet mail sender uses: a provider publishing it is broken or
# hostile, and a whitelist holding it exempts spoofable or local clients.
SPECIAL_PURPOSE: tuple[Network, ...] = tuple(
    ipaddress.ip_network(text)
    for text in (
        "0.0.0.0/8",  # RFC 791, RFC 1122: "this network"
        "10.0.0.0/8",  # RFC 1918: private
        "127.0.0.0/8",  # RFC 1122: loopback
        "169.254.0.0/16",  # RFC 3927: link-local
        "172.16.0.0/12",  # RFC 1918: private
        "192.168.0.0/16",  # RFC 1918: private
        "100.64.0.0/10",  # RFC 6598: shared address space (carrier-grade NAT)
        "224.0.0.0/4",  # RFC 5771: multicast
        "240.0.0.0/4",  # RFC 1112: reserved, with the limited broadcast address (RFC 919)
        "192.0.2.0/24",  # RFC 5737: documentation (TEST-NET-1)
        "198.51.100.0/24",  # RFC 5737: documentation (TEST-NET-2)
        "203.0.113.0/24",  # RFC 5737: documentation (TEST-NET-3)
        "::/128",  # RFC 4291: unspecified address
        "::1/128",  # RFC 4291: loopback
        "::ffff:0:0/96",  # RFC 4291: IPv4-mapped (an IPv4 client is matched by its IPv4 address)
        "fc00::/7",  # RFC 4193: unique local
        "fe80::/10",  # RFC 4291: link-local
        "ff00::/8",  # RFC 4291: multicast
        "2001:db8::/32",  # RFC 3849: documentation
        "3fff::/20",  # RFC 9637: documentation
    )
)

_POLICY_KEYS = ("min_prefix4", "min_prefix6", "allowed_networks")


class GuardError(ValueError):
    """The guard's policy (options or policy file) is invalid."""


@dataclass(frozen=True)
class GuardPolicy:
    """The floor per family and the networks the admin vouches for (e.g. a lab's own networks)."""

    min_prefix4: int = DEFAULT_MIN_PREFIX4
    min_prefix6: int = DEFAULT_MIN_PREFIX6
    # A subnet of one of these skips both checks.
    allowed: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        for name, bits in (("min_prefix4", 32), ("min_prefix6", 128)):
            value = getattr(self, name)
            # bool is an int; true/false in a policy file is a mistake, not 1/0.
            if type(value) is not int or not 0 <= value <= bits:
                raise GuardError(f"{name} must be an integer from 0 to {bits}, not {value!r}")
        for network in self.allowed:
            if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                raise GuardError(f"allowed network {network!r} is not an ipaddress network")
            # Without this an allowed 0.0.0.0/0 would switch the guard off unnoticed; loosening
            # the floor is what min_prefix4/min_prefix6 are for, and it shows in the policy.
            if network.prefixlen < self._floor(network):
                raise GuardError(
                    f"allowed network {network} is wider than the floor /{self._floor(network)} "
                    f"(IPv{network.version}); lower min_prefix{network.version} if you really mean it"
                )

    @classmethod
    def from_options(
        cls,
        min_prefix4: int = DEFAULT_MIN_PREFIX4,
        min_prefix6: int = DEFAULT_MIN_PREFIX6,
        allowed_networks: Iterable[str] = (),
    ) -> GuardPolicy:
        """A policy from option values (module arguments, CLI options); GuardError says what is wrong."""
        if isinstance(allowed_networks, str) or not isinstance(allowed_networks, Iterable):
            raise GuardError(f"allowed networks must be a list of networks, not {allowed_networks!r}")
        return cls(min_prefix4, min_prefix6, tuple(_parse_allowed(text) for text in allowed_networks))

    @classmethod
    def load(cls, path: str | Path) -> GuardPolicy:
        """The policy in a JSON file; a missing file means the defaults, an unreadable or bad one is an error."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            # Secure by default: no file means the full floor and no allowed networks.
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise GuardError(f"cannot read the whitelist guard policy {path}: {exc}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise GuardError("it must be a JSON object")
            unknown = sorted(set(data) - set(_POLICY_KEYS))
            if unknown:
                raise GuardError(f"unknown keys {unknown}; expected {list(_POLICY_KEYS)}")
            return cls.from_options(**data)
        except (ValueError, TypeError) as exc:
            raise GuardError(f"bad whitelist guard policy {path}: {exc}") from None

    def to_json(self) -> str:
        """The policy file's content: what the mailguard role writes (to_nice_json and a newline)."""
        data = {
            "allowed_networks": [str(network) for network in self.allowed],
            "min_prefix4": self.min_prefix4,
            "min_prefix6": self.min_prefix6,
        }
        return json.dumps(data, indent=4, sort_keys=True, separators=(",", ": ")) + "\n"

    def network_problem(self, network: Network) -> str | None:
        """Why ``network`` must not be whitelisted, or None."""
        if any(network.version == ok.version and network.subnet_of(ok) for ok in self.allowed):
            return None
        overlapping = [s for s in SPECIAL_PURPOSE if s.version == network.version and network.overlaps(s)]
        # Inside special-purpose space (10.1.0.0/16): say so, no floor would make it acceptable.
        inside = next((special for special in overlapping if network.subnet_of(special)), None)
        if inside:
            return f"inside special-purpose space {inside}"
        floor = self._floor(network)
        if network.prefixlen < floor:
            return f"wider than the floor /{floor} (IPv{network.version})"
        if overlapping:
            # Wider than a special block, yet within the floor: 192.160.0.0/12 holds 192.168.0.0/16.
            return f"overlaps special-purpose space {overlapping[0]}"
        return None

    def hostname_problem(self, name: str) -> str | None:
        """Why a host name entry (matching the name and every name below it) is too wide, or None."""
        bare = name.lower().removeprefix("*.").removeprefix(".").removesuffix(".")
        labels = bare.split(".")
        if len(labels) < 2 or not all(labels):
            return f"{name!r} is a single label or a top-level domain: it would match every name under it"
        suffix = "." + bare
        hit = next((sample for sample in SAMPLE_HOST_NAMES if sample == bare or sample.endswith(suffix)), None)
        if hit:
            # Two labels are not enough when the second is a public suffix (co.uk, com.br).
            return f"{name!r} matches unrelated host names such as {hit!r}: it is a public suffix"
        return None

    def regex_problem(self, pattern: str) -> str | None:
        """Why a regex matched against client host names is too wide, or None.

        Search semantics and case-insensitive, as postgrey (``/.../i``) and Exim (``^...``) match.
        A pattern Python's re cannot compile cannot be tested, so it is refused.
        """
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            return f"the regex cannot be tested against host names: Python's re does not compile it ({exc})"
        hit = next((sample for sample in SAMPLE_HOST_NAMES if compiled.search(sample)), None)
        if hit:
            return f"the regex matches unrelated host names such as {hit!r}"
        return None

    def _floor(self, network: Network) -> int:
        return self.min_prefix4 if network.version == 4 else self.min_prefix6


def _parse_allowed(text: object) -> Network:
    if isinstance(text, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return text
    if not isinstance(text, str):
        raise GuardError(f"allowed network {text!r} is not a string")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise GuardError(f"allowed network {text!r} is not a network without host bits: {exc}") from None


# --- the random host names a host name entry or a regex must not match ---------------------

# Fixed, so that the controller and every host judge an entry alike, run after run.
_SAMPLE_SEED = 20240610
_SAMPLE_SIZE = 420
# Plain TLDs and public suffixes a provider's names end in; a regex ending in one of them, or a
# host name entry that is one of them, matches mail from strangers.
_SUFFIXES = (
    "com", "net", "org", "de", "fr", "it", "nl", "es", "pl", "ru", "se", "ch", "at", "be", "eu",
    "info", "biz", "io", "xyz", "us", "ca", "cn", "in", "co.uk", "com.br", "com.au", "co.jp",
    "ne.jp", "com.mx", "co.za", "or.jp",
)  # fmt: skip
# Words the host part of client names start with or contain.
_ROLES = ("mail", "smtp", "mx", "mta", "out", "relay", "host", "dyn", "pool", "dsl", "static", "client",
          "ip", "cable", "fiber", "gw", "server")  # fmt: skip
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def _label(rng: random.Random) -> str:
    return rng.choice("abcdefghijklmnopqrstuvwxyz") + "".join(rng.choices(_ALPHABET, k=rng.randint(2, 9)))


def _octets(rng: random.Random) -> list[str]:
    return [str(rng.randint(1, 254)) for _ in range(4)]


def _sample_name(index: int, rng: random.Random) -> str:
    role = _ROLES[index % len(_ROLES)]
    suffix = _SUFFIXES[index % len(_SUFFIXES)]
    number = str(rng.randint(1, 99)) if rng.random() < 0.5 else ""
    shape = index % 7
    if shape == 0:  # mail.qwzp.com.br
        return f"{role}{number}.{_label(rng)}.{suffix}"
    if shape == 1:  # h7kq2-0x.dyn.rnd-isp.net
        return f"{_label(rng)}-{_label(rng)}.{role}.{_label(rng)}-{_label(rng)}.{suffix}"
    if shape == 2:  # 203-0-113-5.pool.example-cable.de
        return f"{'-'.join(_octets(rng))}.{role}.{_label(rng)}-{rng.choice(_ROLES)}.{suffix}"
    if shape == 3:  # static-5-113-0-203.qwzp.fr
        return f"{role}-{'-'.join(_octets(rng))}.{_label(rng)}.{suffix}"
    if shape == 4:  # qwzp.com (a bare domain: its own mail server)
        return f"{_label(rng)}.{suffix}"
    if shape == 5:  # ip203.0.113.5.qwzp.net (dotted addresses inside names)
        return f"{role}{'.'.join(_octets(rng))}.{_label(rng)}.{suffix}"
    return f"{_label(rng)}{number}.{role}.{_label(rng)}.{_label(rng)}.{suffix}"  # deeper names


def _sample_host_names() -> tuple[str, ...]:
    rng = random.Random(_SAMPLE_SEED)
    # "unknown" is the name Postfix hands postgrey for a client without reverse DNS: a regex
    # matching it whitelists every such client.
    return (*(_sample_name(index, rng) for index in range(_SAMPLE_SIZE)), "unknown")


SAMPLE_HOST_NAMES: tuple[str, ...] = _sample_host_names()


def main(argv: list[str]) -> int:
    """``python3 guards.py POLICY_FILE``: check a policy file (the mailguard role's validate)."""
    if len(argv) != 2:
        print("usage: guards.py POLICY_FILE", file=sys.stderr)
        return 2
    # load() reads a missing file as the defaults; a file named to be checked must exist.
    if not Path(argv[1]).is_file():
        print(f"{argv[1]}: no such file", file=sys.stderr)
        return 1
    try:
        GuardPolicy.load(argv[1])
    except GuardError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
