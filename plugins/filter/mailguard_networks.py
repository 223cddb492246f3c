"""Filters for inventory values: checked before a host is touched, or split between files.

    that: greylist_postgresql_client_networks | mailguard_invalid_networks | length == 0
    static_entries: "{{ (spf_whitelist_static_entries | mailguard_split_static_entries).networks }}"

ansible.utils.ipaddr would need netaddr on the controller; the standard library is enough
for "is this an address or a CIDR network".
"""

from __future__ import annotations

import ipaddress
import re

_ADDRESS_LIKE = re.compile(r"^([0-9.]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%]*)(/.*)?$")


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


def mailguard_split_static_entries(entries) -> dict:
    """Static whitelist entries split by where sqlgrey reads them.

    postgrey takes addresses, host names and /regex/ in one file; sqlgrey reads addresses from
    clients_ip_whitelist.local and names from clients_fqdn_whitelist.local. ``networks`` keeps
    the addresses and networks; ``names`` the rest, as sqlgrey writes them: a /regex/ as it is
    (both match it against the client's reverse DNS name with Perl), a host name twice, exact
    and as *.name, because postgrey matches a name and everything below it.
    """
    networks, names = [], []
    for entry in entries or []:
        text = str(entry).strip()
        # Anything that looks like an address goes with the networks, valid or not: the resolver
        # rejects a bad one by name ("300.1.2.3" is no host name either).
        if _is_network(text) or _ADDRESS_LIKE.match(text):
            networks.append(text)
        elif text.startswith("/"):
            names.append(text)
        else:
            name = text.lower().rstrip(".")
            names.extend([name, f"*.{name}"])
    return {"networks": networks, "names": names}


def mailguard_whitelist_outputs(formats, static_entries, build_dir="", file_names=None, baselines=None) -> list:
    """The spf_netblocks module's outputs for one walk of the providers, one per format.

    sqlgrey's client list takes only the static addresses (the sqlgrey role writes the names
    into its own file); with build_dir, each output is also written there under its file name;
    baselines (format -> content, e.g. read from a mail host) stand in for a missing state.
    """
    outputs = []
    for fmt in formats:
        output = {"format": fmt}
        if fmt == "sqlgrey":
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
            "mailguard_split_static_entries": mailguard_split_static_entries,
        }
