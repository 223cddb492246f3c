#!/usr/bin/python
"""Ask a resolver for each DNSBL's RFC 5782 test point and judge the answer by the zone's reply filter."""

from __future__ import annotations

import ipaddress
import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:  # python3-dnspython on the mail host (the role installs it)
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype

    IMPORT_ERROR = None
except ImportError as exc:
    IMPORT_ERROR = exc

DOCUMENTATION = r"""
module: dnsbl_test_point
short_description: Check that each DNSBL lists its test point 127.0.0.2 through a given resolver
description:
  - For every DNSBL entry, asks the resolver for the A record of C(2.0.0.127.<zone>) (RFC 5782 section 5).
  - The check passes when an answer lies inside the entry's reply filter (Postfix or Exim syntax) and no answer
    is one of the 127.255.255.0/24 error codes (Spamhaus answers 127.255.255.254 to queries from public
    resolvers). NXDOMAIN, no A record, or no answer at all mean the DNSBL would reject nobody.
  - Exim entries with a C(/key) look up something other than the client address and are skipped.
  - Needs dnspython on the host (Debian's python3-dnspython, which the role installs).
requirements:
  - dnspython
options:
  sites:
    description: DNSBL entries, e.g. C(zen.spamhaus.org=127.0.0.[2..11]) or C(bl.spamcop.net=127.0.0.2).
    type: list
    elements: str
    required: true
  syntax:
    description: The syntax of I(sites), C(postfix) (reject_rbl_client) or C(exim) (dnslists).
    type: str
    choices: [postfix, exim]
    default: postfix
  server:
    description: The resolver to ask.
    type: str
    default: 127.0.0.1
  port:
    description: Its port.
    type: int
    default: 53
  timeout:
    description: Seconds to wait for each of two tries.
    type: float
    default: 3
  fatal:
    description: Fail when a zone does not list its test point; false only warns.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Check the DNSBLs of Postfix through the local resolver
  mailguard.mail.dnsbl_test_point:
    sites: "{{ postfix_rbl_sites }}"
    syntax: postfix
"""

RETURN = r"""
zones:
  description: One entry per checked DNSBL entry.
  returned: always
  type: list
  elements: dict
  sample: [{entry: "dnsbl.lab.test=127.0.0.2", zone: dnsbl.lab.test, status: NOERROR, answers: [127.0.0.2],
            problem: ""}]
skipped:
  description: Exim entries with a /key, which the test point cannot check.
  returned: always
  type: list
  elements: str
problems:
  description: One message per zone that would list nobody here.
  returned: always
  type: list
  elements: str
"""

TEST_POINT = "2.0.0.127"  # 127.0.0.2, reversed (RFC 5782 section 5)
# Error codes rather than listings (Spamhaus: .252 typing error, .254 public or open resolver,
# .255 too many queries); no DNSBL lists an address with them.
ERROR_ANSWERS = ipaddress.ip_network("127.255.255.0/24")

POSTFIX_ENTRY = re.compile(r"^(?P<zone>[^=\s]+)(=(?P<filter>\S+))?$")
POSTFIX_OCTET_PATTERN = re.compile(r"\[[^\]]*\]|[^.\[\]]+")
EXIM_ENTRY = re.compile(r"^(?P<zone>[^=&!/\s]+)(?P<op>!?==?|!?&|=!|&!)?(?P<values>[0-9.,]*)(?P<key>/\S*)?$")


# -- reply filters ---------------------------------------------------------------------------------


def postfix_octet_matches(pattern: str, octet: int) -> bool:
    """One octet of a Postfix reply filter: a number, or [n;m..k;...] (postconf(5) reject_rbl_client)."""
    if not (pattern.startswith("[") and pattern.endswith("]")):
        return pattern == str(octet)
    for item in pattern[1:-1].split(";"):
        low, _, high = item.partition("..")
        if int(low) <= octet <= int(high or low):
            return True
    return False


def postfix_filter_matches(reply_filter: str, answer: str) -> bool:
    patterns = POSTFIX_OCTET_PATTERN.findall(reply_filter)  # dots inside [n..m] separate no octets
    octets = [int(part) for part in answer.split(".")]
    return len(patterns) == 4 and all(postfix_octet_matches(p, o) for p, o in zip(patterns, octets, strict=True))


def exim_filter_matches(op: str, values: str, answers: list[str]) -> bool:
    """Exim's dnslists: =list (any answer in it), ==list (all answers), &mask (all mask bits set); ! negates."""
    negate = "!" in op
    wanted = [v for v in values.split(",") if v]
    if "&" in op:
        masks = [int(ipaddress.ip_address(v)) for v in wanted]

        def one(answer: str) -> bool:
            return any(int(ipaddress.ip_address(answer)) & mask == mask for mask in masks)
    else:

        def one(answer: str) -> bool:
            return answer in wanted

    matched = all(map(one, answers)) if op.count("=") == 2 else any(map(one, answers))
    return matched != negate


def parse_entry(entry: str, syntax: str) -> dict | None:
    """{zone, op, values, key} of an entry; None when it is no entry of that syntax."""
    found = (POSTFIX_ENTRY if syntax == "postfix" else EXIM_ENTRY).match(entry.strip())
    if not found:
        return None
    parts = found.groupdict()
    if syntax == "postfix":
        return {"zone": parts["zone"].rstrip("."), "op": "=" if parts["filter"] else "",
                "values": parts["filter"] or "", "key": None}
    return {"zone": parts["zone"].rstrip("."), "op": parts["op"] or "", "values": parts["values"],
            "key": parts["key"]}


def listed(parsed: dict, syntax: str, answers: list[str]) -> bool:
    """Whether the MTA would count these answers as a listing."""
    if not parsed["op"]:
        return bool(answers)
    if syntax == "postfix":
        return any(postfix_filter_matches(parsed["values"], answer) for answer in answers)
    return exim_filter_matches(parsed["op"], parsed["values"], answers)


def problem(entry: str, parsed: dict, syntax: str, query: str, status: str, answers: list[str]) -> str:
    """Why this zone does nothing through this resolver; "" when its test point is listed."""
    refused = [a for a in answers if ipaddress.ip_address(a) in ERROR_ANSWERS]
    if refused:
        return (f"{parsed['zone']}: {query} answered {', '.join(refused)}, the DNSBL's error code (127.255.255.254:"
                " queries through a public or shared resolver are refused): resolve from the root on this host,"
                " not through a forwarder")
    if status != "NOERROR":
        return (f"{parsed['zone']}: {query} answered {status}: the test point 127.0.0.2 is not listed"
                " (a retired or misspelled zone, or a resolver that cannot reach it), so the DNSBL rejects nobody")
    if not answers:
        return f"{parsed['zone']}: {query} has no A record: the test point 127.0.0.2 is not listed"
    if not listed(parsed, syntax, answers):
        return (f"{parsed['zone']}: {query} answered {', '.join(answers)}, outside the reply filter of"
                f" {entry!r}: the MTA would count no listing of this zone")
    return ""


# -- DNS, through dnspython -------------------------------------------------------------------------


def ask(name: str, server: str, port: int, timeout: float) -> tuple[str, list[str]]:
    """(rcode name or "no answer", A records) of one recursive A query to ``server`` alone."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        # udp_with_fallback: TCP after a truncated reply; dnspython matches ID and question.
        reply, _tcp = dns.query.udp_with_fallback(query, server, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError):  # silence, refused port, malformed reply
        return "no answer", []
    rrset = reply.get_rrset(reply.answer, query.question[0].name, dns.rdataclass.IN, dns.rdatatype.A)
    return dns.rcode.to_text(reply.rcode()), [rdata.address for rdata in rrset or ()]


# -- the module -----------------------------------------------------------------------------------


def check(sites: list[str], syntax: str, server: str, port: int, timeout: float) -> dict:
    zones, skipped, problems, unparsable = [], [], [], []
    for entry in sites:
        parsed = parse_entry(entry, syntax)
        if parsed is None:
            unparsable.append(entry)
            continue
        if parsed["key"]:
            skipped.append(entry)
            continue
        query = f"{TEST_POINT}.{parsed['zone']}"
        status, answers = ask(query, server, port, timeout)
        found = problem(entry, parsed, syntax, query, status, answers)
        zones.append({"entry": entry, "zone": parsed["zone"], "query": query, "status": status,
                      "answers": answers, "problem": found})
        if found:
            problems.append(found)
    return {"zones": zones, "skipped": skipped, "problems": problems, "unparsable": unparsable}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sites": {"type": "list", "elements": "str", "required": True},
            "syntax": {"type": "str", "choices": ["postfix", "exim"], "default": "postfix"},
            "server": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 53},
            "timeout": {"type": "float", "default": 3},
            "fatal": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("dnspython (Debian: python3-dnspython)"), exception=str(IMPORT_ERROR))
    params = module.params
    result = check(params["sites"], params["syntax"], params["server"], params["port"], params["timeout"])
    if result["unparsable"]:
        module.fail_json(msg=f"not {params['syntax']} DNSBL entries: {result['unparsable']}", **result)
    if result["problems"]:
        message = (f"DNSBL health check through the resolver {params['server']}: "
                   + "; ".join(result["problems"]))
        if params["fatal"]:
            module.fail_json(msg=message, **result)
        module.warn(message)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
