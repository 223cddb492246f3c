"""Filters for checking inventory values before a host is touched.

    that: greylist_postgresql_client_networks | mailguard_invalid_networks | length == 0

ansible.utils.ipaddr would need netaddr on the controller; the standard library is enough
for "is this an address or a CIDR network".
"""

from __future__ import annotations

import ipaddress


def mailguard_invalid_networks(values) -> list:
    """The entries that are not an IPv4/IPv6 address or CIDR network without host bits."""
    invalid = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            invalid.append(value)
    return invalid


class FilterModule:
    def filters(self):
        return {"mailguard_invalid_networks": mailguard_invalid_networks}
