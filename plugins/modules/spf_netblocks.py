#!/usr/bin/python
"""Ansible module: resolve providers' SPF records into a greylisting whitelist file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: spf_netblocks
short_description: Turn mail providers' SPF records into a whitelist file for greylisting
description:
  - Walks the SPF records of the given domains (include, redirect, a, mx, ip4, ip6) and writes
    the netblocks that SPF passes as a whitelist for postgrey, Postfix (cidr table), Exim/greylistd,
    sqlgrey or OpenBSD spamd.
  - Big senders retry a greylisted message from another address of their pool, so greylisting
    delays their mail for hours unless their pools are whitelisted.
  - Nothing is lost on a bad day. A domain whose walk ends in temperror or permerror keeps its
    last known good netblocks (from a state file beside O(dest)); the module never writes a partial
    or empty list, refuses a shrink beyond O(max_shrink) unless O(force=true), and writes
    atomically, only when the content changes.
  - Meant to run once, on the controller (C(run_once=true), C(delegate_to=localhost)); copy the
    result to the mail hosts afterwards so every node gets the same file.
version_added: "0.1.0"
author: mailguard developers
requirements:
  - dnspython >= 2.6 on the host that runs the module
options:
  domains:
    description: Root domains whose SPF records are walked, e.g. C(gmail.com).
    type: list
    elements: str
    required: true
  format:
    description: Output format.
    type: str
    choices: [postgrey, cidr, exim, sqlgrey, spamd]
    default: postgrey
  dest:
    description:
      - File to write. Without it, nothing is written and the content is only returned.
    type: path
  state_file:
    description:
      - JSON file holding each domain's last known good netblocks.
      - Defaults to O(dest) followed by C(.state.json).
    type: path
  static_entries:
    description:
      - Entries added to the generated ones, for senders SPF cannot describe (for example
        C(exists) or C(ptr) records). CIDRs and addresses for every format; host names and
        postgrey C(/regex/) lines where the format can hold them, otherwise the module fails
        naming the entry.
    type: list
    elements: str
    default: []
  nameservers:
    description: Name servers to ask (IP addresses). Empty means the controller's resolvers.
    type: list
    elements: str
    default: []
  port:
    description: Port of the name servers.
    type: int
    default: 53
  query_lifetime:
    description: Seconds one DNS question may take, retransmissions included.
    type: float
    default: 2.0
  deadline:
    description: Seconds for the whole walk; domains not finished by then count as temperror.
    type: float
    default: 30.0
  max_in_flight:
    description: DNS questions on the wire at once.
    type: int
    default: 32
  expand_over_limit:
    description:
      - Keep the netblocks of a domain that needs more than 10 DNS-querying terms or more than
        2 void lookups. RFC 7208 makes such a record a permerror, so receivers that check SPF
        strictly do not pass its mail either; the default follows the RFC.
    type: bool
    default: false
  max_shrink:
    description:
      - Largest share (0 to 1) of a domain's previously whitelisted addresses that one run may
        drop. A larger drop looks like a broken or hijacked record and is refused.
    type: float
    default: 0.25
  force:
    description: Accept a shrink larger than O(max_shrink).
    type: bool
    default: false
  cidr_action:
    description:
      - Right-hand side of each line in the C(cidr) format. C(OK) suits C(check_client_access);
        use C(permit) for C(postscreen_access_list).
    type: str
    default: OK
  sqlgrey_cidr:
    description:
      - In the C(sqlgrey) format, write networks as CIDR (IPv4 and IPv6), which sqlgrey 1.7.7 and
        later read (Debian 12 ships 1.8.0). C(false) expands IPv4 networks into the class C prefixes
        and addresses every sqlgrey release reads, and leaves IPv6 out.
    type: bool
    default: true
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: Write postgrey's client whitelist from the big providers' SPF records
  spf_netblocks:
    domains: [gmail.com, outlook.com, icloud.com, amazonses.com]
    static_entries:
      - /.*outbound\.protection\.outlook\.com$/
    format: postgrey
    dest: /srv/whitelists/whitelist_clients.local
  run_once: true
  delegate_to: localhost

- name: Same providers as a Postfix cidr table for postscreen
  spf_netblocks:
    domains: [gmail.com, outlook.com]
    format: cidr
    cidr_action: permit
    dest: /srv/whitelists/postscreen_providers.cidr
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
content:
  description: The whitelist as written (or as it would be written in check mode).
  returned: success
  type: str
network_count:
  description: Netblocks in the file after collapsing, static ones included.
  returned: success
  type: int
  sample: 412
kept_last_good:
  description: Domains whose walk failed and whose last known good netblocks were used.
  returned: success
  type: list
  elements: str
  sample: [outlook.com]
removed_roots:
  description: Domains in the state file that are no longer requested.
  returned: success
  type: list
  elements: str
roots:
  description: Per domain, the walk's status, counts of DNS-querying terms and void lookups,
    netblocks with their include chains, unresolvable terms, warnings and errors.
  returned: always
  type: dict
queries_sent:
  description: DNS questions sent during the walk.
  returned: always
  type: int
unique_questions:
  description: Distinct (name, type) pairs the walk needed.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from ansible.module_utils.spfwalk.outputs import FORMATS, OutputError, parse_static_entries
    from ansible.module_utils.spfwalk.update import apply_update, default_state_path, plan_update
    from ansible.module_utils.spfwalk.walker import WalkerOptions, walk_sync

    IMPORT_ERROR = None
except ImportError as exc:  # dnspython missing on the host running the module
    FORMATS = ("postgrey", "cidr", "exim", "sqlgrey", "spamd")
    IMPORT_ERROR = exc


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            domains=dict(type="list", elements="str", required=True),
            format=dict(type="str", choices=list(FORMATS), default="postgrey"),
            dest=dict(type="path"),
            state_file=dict(type="path"),
            static_entries=dict(type="list", elements="str", default=[]),
            nameservers=dict(type="list", elements="str", default=[]),
            port=dict(type="int", default=53),
            query_lifetime=dict(type="float", default=2.0),
            deadline=dict(type="float", default=30.0),
            max_in_flight=dict(type="int", default=32),
            expand_over_limit=dict(type="bool", default=False),
            max_shrink=dict(type="float", default=0.25),
            force=dict(type="bool", default=False),
            cidr_action=dict(type="str", default="OK"),
            sqlgrey_cidr=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(IMPORT_ERROR))
    params = module.params
    if not params["domains"]:
        module.fail_json(msg="domains is empty: there is nothing to whitelist")
    if not 0.0 <= params["max_shrink"] <= 1.0:
        module.fail_json(msg=f"max_shrink must be between 0 and 1, got {params['max_shrink']}")

    try:
        static = parse_static_entries(params["static_entries"])
    except OutputError as exc:
        module.fail_json(msg=str(exc))

    options = WalkerOptions(
        nameservers=params["nameservers"] or None,
        port=params["port"],
        query_lifetime=params["query_lifetime"],
        deadline=params["deadline"],
        max_in_flight=params["max_in_flight"],
        expand_over_limit=params["expand_over_limit"],
    )
    report = walk_sync(params["domains"], options)
    dest = params["dest"]
    state_path = params["state_file"] or (default_state_path(dest) if dest else None)
    walk_facts = dict(queries_sent=report.queries_sent, unique_questions=report.unique_questions)
    try:
        plan = plan_update(
            report, params["format"], static, dest, state_path,
            max_shrink=params["max_shrink"], force=params["force"], cidr_action=params["cidr_action"],
            sqlgrey_cidr=params["sqlgrey_cidr"],
        )
    except (OutputError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc), roots=_roots(report), **walk_facts)
    if plan.refused:
        module.fail_json(msg=plan.refused, roots=plan.roots, **walk_facts)

    for warning in plan.warnings:
        module.warn(warning)
    changed = bool(dest) and plan.changed
    if changed and not module.check_mode:
        apply_update(plan)

    result = dict(
        changed=changed,
        content=plan.content,
        network_count=plan.network_count,
        kept_last_good=plan.kept_last_good,
        removed_roots=plan.removed_roots,
        roots=plan.roots,
        **walk_facts,
    )
    if module._diff and changed:
        result["diff"] = dict(
            before=plan.previous_content or "", after=plan.content, before_header=dest, after_header=dest
        )
    module.exit_json(**result)


def _roots(report) -> dict:
    return {name: root.as_dict() for name, root in report.roots.items()}


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
