"""parse_network, the one netblock parser (SPF terms, static entries, the state), against ipaddress."""

from __future__ import annotations

import ipaddress

import pytest

from spfwalk.netblocks import parse_network


@pytest.mark.parametrize("text", [
    "192.0.2.0/24", "192.0.2.1/24", "192.0.2.1", "0.0.0.0/0", "255.255.255.255/32", "10.1.2.3/8",
    "2001:db8::/32", "2001:db8::1/32", "2001:DB8::1", "::/0", "::ffff:192.0.2.1/96", "fe80::1/10",
    "1.2.3.4/255.255.0.0",
])
def test_parse_network_agrees_with_ipaddress(text):
    interface = ipaddress.ip_interface(text)
    assert parse_network(text) == (interface.network, interface.ip != interface.network.network_address)


@pytest.mark.parametrize("text", ["01.2.3.4", "1.2.3", "1.2.3.4/33", "2001:db8::/129", " 1.2.3.4", "1.2.3.4/-1",
                                  "1.2.3.4/", "example.com", "1::2::3", "1.2.3.4/²"])
def test_parse_network_rejects_what_ipaddress_rejects(text):
    with pytest.raises(ValueError):
        ipaddress.ip_interface(text)
    with pytest.raises(ValueError):
        parse_network(text)


@pytest.mark.parametrize("text", ["1.2.3.4/032", "1::/00", "2001:db8::/0048"])
def test_parse_network_is_stricter_than_ipaddress_on_leading_zeros(text):
    # RFC 7208's grammar has no leading zeros in a CIDR length; ipaddress reads /00 as /0.
    ipaddress.ip_interface(text)
    with pytest.raises(ValueError):
        parse_network(text)
