"""The filter plugins (plugins/filter) that roles use on inventory values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugins/filter/mailguard_networks.py"
_spec = importlib.util.spec_from_file_location("mailguard_networks", PLUGIN)
networks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(networks)


def test_invalid_networks_are_named():
    values = ["192.0.2.0/24", "192.0.2.1", "2001:db8::/32", "192.0.2.1/24", "300.1.2.3", "*", "localhost"]
    assert networks.mailguard_invalid_networks(values) == ["192.0.2.1/24", "300.1.2.3", "*", "localhost"]


def test_static_entries_split_between_sqlgrey_files():
    entries = ["192.0.2.0/24", "2001:db8::1", "192.0.2.9/24", "Mail.Example.ORG.",
               r"/.*outbound\.protection\.outlook\.com$/", "300.1.2.3"]
    split = networks.mailguard_split_static_entries(entries)
    # Host bits are left to the resolver, which fixes and reports them; 300.1.2.3 is no address,
    # but looks like one: the resolver rejects it by name rather than sqlgrey taking it as a name.
    assert split["networks"] == ["192.0.2.0/24", "2001:db8::1", "192.0.2.9/24", "300.1.2.3"]
    assert split["names"] == ["mail.example.org", "*.mail.example.org",
                              r"/.*outbound\.protection\.outlook\.com$/"]


def test_whitelist_outputs_one_per_format_with_sqlgrey_networks_only():
    static = ["192.0.2.0/24", "mail.example.org"]
    outputs = networks.mailguard_whitelist_outputs(
        ["exim", "sqlgrey"], static, "/srv/lists/",
        {"exim": "whitelist-hosts", "sqlgrey": "clients_ip_whitelist.local"},
        {"exim": "# old\n192.0.2.0/24\n"})
    assert outputs == [
        {"format": "exim", "dest": "/srv/lists/whitelist-hosts", "previous_content": "# old\n192.0.2.0/24\n"},
        {"format": "sqlgrey", "static_entries": ["192.0.2.0/24"], "dest": "/srv/lists/clients_ip_whitelist.local"},
    ]
    assert networks.mailguard_whitelist_outputs(["postgrey"], static) == [{"format": "postgrey"}]


def test_filters_are_registered_under_their_names():
    assert set(networks.FilterModule().filters()) == {
        "mailguard_invalid_networks", "mailguard_split_static_entries", "mailguard_whitelist_outputs"}
