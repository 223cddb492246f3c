"""Filters for inventory values: checked before a host is touched, or split between files.

    that: greylist_postgresql_client_networks | mailguard_invalid_networks | length == 0
    that: exim4_relay_nets | mailguard_open_networks(own=true) | length == 0
    static_entries: "{{ (spf_whitelist_static_entries | mailguard_split_static_entries).networks }}"

ansible.utils.ipaddr would need netaddr on the controller; the standard library is enough
for "is this an address or a CIDR network".
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from pathlib import Path

# The widest network any list of trusted or exempt clients may hold, per IP version: the rule
# of Postfix's mynetworks preflight (roles/postfix/tasks/preflight.yml), so that both MTAs
# refuse the same values. Anything wider trusts strangers: an open relay, or exemptions for a
# large part of the Internet.
OPEN_NETWORK_FLOOR = {4: 8, 6: 16}
# The site's own networks (own=True: mynetworks, Exim's relay_nets, the database's clients) are
# public space no wider than a /24 (IPv4) or a /48 (IPv6, an end site's assignment, RFC 6177), or
# inside private, loopback or unique local space: Postfix's mynetworks rule again.
OWN_PUBLIC_FLOOR = {4: 24, 6: 48}
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(text)
    for text in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7")
)
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")

# The walker package: the whitelist guard and the static entries' rule come from it.
_SPFWALK_DIR = Path(__file__).resolve().parents[1] / "module_utils" / "spfwalk"


def _is_network(value) -> bool:
    """An IPv4/IPv6 address or network, host bits allowed (the resolver fixes and reports them)."""
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


def mailguard_invalid_networks(values) -> list:
    """The entries that are not an IPv4/IPv6 address or CIDR network without host bits."""
    invalid = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            invalid.append(value)
    return invalid


def mailguard_open_networks(values, own=False) -> list:
    """The entries that may trust strangers: wider than OPEN_NETWORK_FLOOR, or no network at all.

    With own=True the entries are the site's own networks, and public space wider than
    OWN_PUBLIC_FLOOR is returned too. An entry that is not an address or network cannot be
    shown to be narrow, so it is returned: the daemon may read it as something wider. Host bits
    are ignored: 0.0.0.1/0 trusts as much as 0.0.0.0/0. An IPv4-mapped network is judged as the
    IPv4 network it maps: to a daemon that sees IPv4 clients in that form (policyd-spf's default
    lists ::ffff:127.0.0.0/104), ::ffff:0:0/96 is 0.0.0.0/0.
    """
    wide = []
    for value in values or []:
        try:
            network = _unmapped(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            wide.append(value)
            continue
        too_wide = network.prefixlen < OPEN_NETWORK_FLOOR[network.version]
        if own and not too_wide and network.prefixlen < OWN_PUBLIC_FLOOR[network.version]:
            too_wide = not any(network.version == local.version and network.subnet_of(local)
                               for local in LOCAL_NETWORKS)
        if too_wide:
            wide.append(value)
    return wide


def _unmapped(network):
    """An IPv4-mapped IPv6 network as the IPv4 network it maps; one holding all of them as 0.0.0.0/0."""
    if network.version == 4 or not network.overlaps(_IPV4_MAPPED):
        return network
    if network.prefixlen < _IPV4_MAPPED.prefixlen:
        return ipaddress.ip_network("0.0.0.0/0")
    return ipaddress.ip_network((network.network_address.ipv4_mapped, network.prefixlen - _IPV4_MAPPED.prefixlen))


def mailguard_wildcard_addresses(values) -> list:
    """The listen addresses that mean every interface: "*", 0.0.0.0, :: (however spelt)."""
    wildcards = []
    for value in values or []:
        try:
            unspecified = ipaddress.ip_address(str(value)).is_unspecified
        except ValueError:
            unspecified = str(value).strip() == "*"
        if unspecified:
            wildcards.append(value)
    return wildcards


def mailguard_wide_hostnames(values) -> dict:
    """Host-name whitelist entries that match strangers, with the whitelist guard's reason.

    A /regex/ is tested as a regex, anything else as a host name that matches the names below
    it (name, *.name), by the same guard the hosts' whitelist checkers use.
    """
    policy = _spfwalk("guards").GuardPolicy()
    wide = {}
    for value in values or []:
        text = str(value)
        is_regex = len(text) > 1 and text.startswith("/") and text.endswith("/")
        problem = policy.regex_problem(text[1:-1]) if is_regex else policy.hostname_problem(text)
        if problem:
            wide[text] = problem
    return wide


def mailguard_guard_policy_error(min_prefix4, min_prefix6, allowed_networks) -> str:
    """Why the whitelist guard would refuse this policy, or "" when it takes it.

    The guard's own rule (GuardPolicy), applied on the controller in preflight, so that a bad
    floor or allowed network fails before any host changes, not when the host validates the file.
    A string of digits counts as its number, as the role's "| int" reads it (an -e name=value
    extra var is a string); anything else reaches the guard as it is.
    """

    def as_written(value):
        # Plain int: Ansible hands over its own int and str subclasses; a bool stays a bool (refused).
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    guards = _spfwalk("guards")
    try:
        guards.GuardPolicy.from_options(as_written(min_prefix4), as_written(min_prefix6), allowed_networks)
    except guards.GuardError as exc:
        return str(exc)
    return ""


def _spfwalk(module: str):
    """A module of the walker package (plugins/module_utils/spfwalk), loaded from its files.

    plugins/module_utils is no package the controller can import from a clone (Ansible ships it
    only with modules): the package is loaded by path, under a name of its own.
    """
    package = "mailguard_spfwalk"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, _SPFWALK_DIR / "__init__.py", submodule_search_locations=[str(_SPFWALK_DIR)]
        )
        sys.modules[package] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
        spec.loader.exec_module(sys.modules[package])
    return importlib.import_module(f"{package}.{module}")


def mailguard_split_static_entries(entries) -> dict:
    """Static whitelist entries split by where sqlgrey reads them.

    postgrey takes addresses, host names and /regex/ in one file; sqlgrey reads addresses from
    clients_ip_whitelist.local and names from clients_fqdn_whitelist.local. ``networks`` keeps
    the addresses and networks; ``names`` the rest, as sqlgrey writes them: a /regex/ as it is
    (both match it against the client's reverse DNS name with Perl), a host name twice, exact
    and as *.name, because postgrey matches a name and everything below it.
    """
    networks, names = [], []
    kind_of = _spfwalk("outputs").static_entry_kind  # the module's own rule: both read an entry alike
    for entry in entries or []:
        text = str(entry).strip()
        kind = kind_of(text)
        if kind == "network":  # valid or not: the module refuses a bad one by name
            networks.append(text)
        elif kind == "regex":
            names.append(text)
        else:
            name = text.lower().rstrip(".")
            names.extend([name, f"*.{name}"])
    return {"networks": networks, "names": names}


def mailguard_whitelist_outputs(formats, static_entries, build_dir="", file_names=None, baselines=None) -> list:
    """The spf_netblocks module's outputs for one walk of the providers, one per format.

    sqlgrey's client list and the Postfix cidr table take only the static addresses (the sqlgrey
    role writes the names into its own file; postgrey's list, either format, holds them beside the
    cidr table); with build_dir, each output is also written there under its file name;
    baselines (format -> content, e.g. read from a mail host) stand in for a missing state.
    """
    outputs = []
    for fmt in formats:
        output = {"format": fmt}
        if fmt in ("sqlgrey", "cidr"):
            output["static_entries"] = mailguard_split_static_entries(static_entries)["networks"]
        if build_dir:
            output["dest"] = f"{str(build_dir).rstrip('/')}/{(file_names or {})[fmt]}"
        if (baselines or {}).get(fmt) is not None:
            output["previous_content"] = baselines[fmt]
        outputs.append(output)
    return outputs


class FilterModule:
    def filters(self):
        return {
            "mailguard_whitelist_outputs": mailguard_whitelist_outputs,
            "mailguard_invalid_networks": mailguard_invalid_networks,
            "mailguard_open_networks": mailguard_open_networks,
            "mailguard_wildcard_addresses": mailguard_wildcard_addresses,
            "mailguard_wide_hostnames": mailguard_wide_hostnames,
            "mailguard_guard_policy_error": mailguard_guard_policy_error,
            "mailguard_split_static_entries": mailguard_split_static_entries,
        }
