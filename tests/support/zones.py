"""Zone data for the lab DNS server: provider-shaped SPF trees and a synthetic tree.

The provider set copies the *shape* of the real records (redirects, nested includes, shared
includes between roots, a/mx terms, an exists macro, ptr) with addresses from the
benchmarking range 198.18.0.0/15 and the documentation range 2001:db8::/32, so that the
lab, the benchmark and the demo exercise the walker the way the real providers do.
"""

from __future__ import annotations

import ipaddress
import itertools

_V4_POOL = ipaddress.ip_network("198.18.0.0/15")
_V6_POOL = ipaddress.ip_network("2001:db8::/32")


class _Blocks:
    """Hands out distinct, non-adjacent /24 and /48 blocks (non-adjacent so collapsing keeps them)."""

    def __init__(self):
        self._v4 = itertools.islice(_V4_POOL.subnets(new_prefix=24), 0, None, 2)
        self._v6 = itertools.islice(_V6_POOL.subnets(new_prefix=48), 0, None, 2)

    def ip4(self, count: int) -> str:
        return " ".join(f"ip4:{next(self._v4)}" for _ in range(count))

    def ip6(self, count: int) -> str:
        return " ".join(f"ip6:{next(self._v6)}" for _ in range(count))

    def host(self) -> str:
        return str(next(self._v4).network_address + 25)


def provider_zone(delay_ms: int = 0) -> dict:
    """Fifteen provider-shaped roots; ``PROVIDER_ROOTS`` lists them."""
    b = _Blocks()
    txt: dict[str, str] = {
        # Google: redirect to a record that includes three netblock records.
        "gmail.com": "v=spf1 redirect=_spf.google.com",
        "_spf.google.com": "v=spf1 include:_netblocks.google.com include:_netblocks2.google.com "
                           "include:_netblocks3.google.com ~all",
        "_netblocks.google.com": f"v=spf1 {b.ip4(12)} ~all",
        "_netblocks2.google.com": f"v=spf1 {b.ip6(8)} ~all",
        "_netblocks3.google.com": f"v=spf1 {b.ip4(10)} ~all",
        # Microsoft: consumer and 365 roots share their include records.
        "outlook.com": "v=spf1 include:spf2.outlook.com -all",
        "spf2.outlook.com": f"v=spf1 {b.ip4(4)} include:spfa.protection.outlook.com -all",
        "spf.protection.outlook.com": "v=spf1 include:spfa.protection.outlook.com "
                                      "include:spfb.protection.outlook.com -all",
        "spfa.protection.outlook.com": f"v=spf1 {b.ip4(12)} {b.ip6(4)} -all",
        "spfb.protection.outlook.com": f"v=spf1 {b.ip4(12)} {b.ip6(4)} -all",
        # Yahoo: a redirect to a record that also uses ptr (unresolvable by a walker).
        "yahoo.com": "v=spf1 redirect=_spf.mail.yahoo.com",
        "_spf.mail.yahoo.com": "v=spf1 include:_spf1.mail.yahoo.com ptr:yahoo.com ?all",
        "_spf1.mail.yahoo.com": f"v=spf1 {b.ip4(8)} {b.ip6(2)} ?all",
        # iCloud
        "icloud.com": "v=spf1 include:icloud.com._spf.apple.com ~all",
        "icloud.com._spf.apple.com": f"v=spf1 {b.ip4(10)} ~all",
        # Amazon SES, SendGrid, Mailchimp, Mandrill: flat lists.
        "amazonses.com": f"v=spf1 {b.ip4(14)} -all",
        "sendgrid.net": f"v=spf1 {b.ip4(10)} ~all",
        "servers.mcsv.net": f"v=spf1 {b.ip4(6)} ?all",
        "spf.mandrillapp.com": f"v=spf1 {b.ip4(6)} ~all",
        # Zoho: several includes.
        "zoho.com": "v=spf1 include:transmail.net include:zcsend.net include:_spf.zoho.com ~all",
        "transmail.net": f"v=spf1 {b.ip4(4)} ~all",
        "zcsend.net": f"v=spf1 {b.ip4(6)} ~all",
        "_spf.zoho.com": f"v=spf1 {b.ip4(4)} ~all",
        # Salesforce: a nested include and an exists macro.
        "_spf.salesforce.com": "v=spf1 include:_spfblocks.salesforce.com "
                               "exists:%{i}._spf.mta.salesforce.com -all",
        "_spfblocks.salesforce.com": f"v=spf1 {b.ip4(8)} -all",
        # Facebook: include plus an a term.
        "facebookmail.com": "v=spf1 include:_spf.facebook.com ~all",
        "_spf.facebook.com": f"v=spf1 {b.ip4(6)} a:mx-out.facebook.com/26 ~all",
        # Mailgun: two include levels.
        "mailgun.org": "v=spf1 include:_spf.mailgun.org ~all",
        "_spf.mailgun.org": "v=spf1 include:_spf1.mailgun.org include:_spf2.mailgun.org ~all",
        "_spf1.mailgun.org": f"v=spf1 {b.ip4(4)} ~all",
        "_spf2.mailgun.org": f"v=spf1 {b.ip4(4)} ~all",
        # Proton: an mx term (MX, then A/AAAA of each exchange).
        "protonmail.ch": f"v=spf1 {b.ip4(4)} mx ~all",
        # eBay-like: four include levels, an a term at the bottom.
        "ebay.com": "v=spf1 include:s._spf.ebay.com ~all",
        "s._spf.ebay.com": f"v=spf1 include:c._spf.ebay.com {b.ip4(2)} ~all",
        "c._spf.ebay.com": f"v=spf1 include:p._spf.ebay.com {b.ip4(2)} ~all",
        "p._spf.ebay.com": f"v=spf1 {b.ip4(4)} a:mta.ebay.com ~all",
    }
    records: dict[str, dict] = {name: {"TXT": [text]} for name, text in txt.items()}
    records["mx-out.facebook.com"] = {"A": [b.host(), b.host()]}
    records["mta.ebay.com"] = {"A": [b.host()], "AAAA": ["2001:db8:ffff::25"]}
    records["protonmail.ch"]["MX"] = [[10, "mail.protonmail.ch"], [20, "mailsec.protonmail.ch"]]
    records["mail.protonmail.ch"] = {"A": [b.host()]}
    records["mailsec.protonmail.ch"] = {"A": [b.host()], "AAAA": ["2001:db8:fffe::25"]}
    return {"delay_ms": delay_ms, "records": records, "faults": {}}


PROVIDER_ROOTS = [
    "gmail.com", "outlook.com", "spf.protection.outlook.com", "yahoo.com", "icloud.com",
    "amazonses.com", "sendgrid.net", "servers.mcsv.net", "spf.mandrillapp.com", "zoho.com",
    "_spf.salesforce.com", "facebookmail.com", "mailgun.org", "protonmail.ch", "ebay.com",
]


def synthetic_tree(fanout: int = 4, depth: int = 5, delay_ms: int = 0, root: str = "tree.test") -> dict:
    """A complete include tree: fanout=4, depth=5 gives 1+4+16+64+256 = 341 names."""
    b = _Blocks()
    records: dict[str, dict] = {}
    level = [root]
    for current_depth in range(1, depth + 1):
        next_level = []
        for name in level:
            if current_depth == depth:
                records[name] = {"TXT": [f"v=spf1 {b.ip4(1)} -all"]}
                continue
            children = [f"n{i}.{name}" for i in range(fanout)]
            includes = " ".join(f"include:{child}" for child in children)
            records[name] = {"TXT": [f"v=spf1 {includes} -all"]}
            next_level.extend(children)
        level = next_level
    return {"delay_ms": delay_ms, "records": records, "faults": {}}


def critical_path(zone: dict, name: str) -> int:
    """Longest chain of DNS answers that must arrive one after another to walk ``name``.

    Computed from the zone data, independently of the walker: a TXT answer, then the
    deepest of its include/redirect targets (another chain), its a terms (one more answer)
    and mx terms (MX, then the exchanges' addresses: two more).
    """
    records = zone["records"]
    text = next((t for t in records.get(name, {}).get("TXT", []) if t.startswith("v=spf1")), "")
    deepest = 0
    for term in text.split()[1:]:
        term = term.lstrip("+-~?")
        if term.startswith(("include:", "redirect=")):
            target = term.split(":", 1)[1] if term.startswith("include:") else term.split("=", 1)[1]
            deepest = max(deepest, critical_path(zone, target))
        elif term == "a" or term.startswith(("a:", "a/")):
            deepest = max(deepest, 1)
        elif term == "mx" or term.startswith(("mx:", "mx/")):
            deepest = max(deepest, 2)
    return 1 + deepest
