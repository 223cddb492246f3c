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
    last known good netblocks (from O(state_file)); the module never writes a partial
    or empty list, refuses a shrink beyond O(max_shrink) or a growth beyond O(max_growth) unless
    O(force=true), and writes atomically, only when the content changes.
  - Nothing opens the greylist. A netblock wider than O(min_prefix4) / O(min_prefix6), or inside
    private, loopback, multicast, reserved or documentation space, makes its domain fail like a
    permerror (it keeps its last known good netblocks), unless it lies inside O(allowed_networks).
  - One walk serves every format of O(outputs); they share one state.
  - Each netblock in a written file follows a C(#) comment line naming the SPF chain(s) it came from
    (C(# gmail.com > redirect=_spf.google.com > include:_netblocks.google.com), C(# static entry));
    O(state_file) keeps the chains, so a domain that falls back to its last known good netblocks
    leaves the file as it is.
  - Meant to run once, on the controller (C(run_once=true), C(delegate_to=localhost)); copy the
    result to the mail hosts afterwards so every node gets the same file.
version_added: "0.1.0"
author: mailguard developers
requirements:
  - Python >= 3.11 on the host that runs the module (the walker uses asyncio.timeout)
  - dnspython >= 2.6 on the host that runs the module
options:
  domains:
    description: Root domains whose SPF records are walked, e.g. C(gmail.com).
    type: list
    elements: str
    required: true
  format:
    description: Output format of the single output (without O(outputs)); C(postgrey) if unset.
    type: str
    choices: [postgrey, postgrey-names, cidr, exim, sqlgrey, spamd]
  dest:
    description:
      - File to write (without O(outputs)). Without it, nothing is written and the content is only returned.
    type: path
  outputs:
    description:
      - Several formats from one walk and one state (instead of O(format) and O(dest)); each format once.
    type: list
    elements: dict
    suboptions:
      format:
        description: Output format.
        type: str
        required: true
        choices: [postgrey, postgrey-names, cidr, exim, sqlgrey, spamd]
      dest:
        description: File to write; without it the content is only returned (RV(contents)).
        type: path
      static_entries:
        description: Static entries of this output instead of O(static_entries) (e.g. networks only for sqlgrey).
        type: list
        elements: str
      previous_content:
        description:
          - The list this output will replace (for example read from a mail host), used as the baseline
            of O(max_shrink) and O(max_growth) when O(state_file) does not exist yet.
        type: str
  state_file:
    description:
      - JSON file holding each domain's last known good netblocks.
      - Defaults to O(dest) followed by C(.state.json); without both, no state is kept.
    type: path
  promote_state:
    description:
      - Write the new state to O(state_file). C(false) writes it to O(state_file) followed by
        C(.pending) instead, for a rollout that promotes it only after every host took the new list.
    type: bool
    default: true
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
  max_growth:
    description:
      - Largest factor by which a domain's address count (per address family) may grow in one run.
        A sudden widening looks like a broken or hijacked record and is refused.
    type: float
    default: 4.0
  force:
    description: Accept a shrink larger than O(max_shrink) or a growth larger than O(max_growth).
    type: bool
    default: false
  min_prefix4:
    description: IPv4 netblocks shorter than this prefix length (wider networks) are refused.
    type: int
    default: 12
  min_prefix6:
    description: IPv6 netblocks shorter than this prefix length are refused.
    type: int
    default: 28
  allowed_networks:
    description:
      - Networks exempt from the width and special-purpose checks, for a lab or a site whose own senders
        live in private space. Netblocks inside them are accepted.
    type: list
    elements: str
    default: []
  cidr_action:
    description:
      - Right-hand side of each line in the C(cidr) format. C(permit) serves C(check_client_access)
        and C(postscreen_access_list) alike (postscreen takes only permit, reject or dunno); C(OK)
        serves C(check_client_access) only.
    type: str
    default: permit
  sqlgrey_cidr:
    description:
      - In the C(sqlgrey) format, write networks as CIDR (IPv4 and IPv6), which sqlgrey 1.7.7 and
        later read (Debian 12 ships 1.8.0). C(false) expands IPv4 networks into the class C prefixes
        and addresses every sqlgrey release reads, and leaves IPv6 out.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Walks the records and reports what would change; writes no file and no state.
  diff_mode:
    support: full
    description: Shows the change of every output file as a unified diff.
  platform:
    support: full
    platforms: posix
notes:
  - The walk asks the name servers of O(nameservers) (the host's resolvers by default) and
    nothing else.
"""

EXAMPLES = r"""
- name: Write postgrey's client whitelist from the big providers' SPF records
  mailguard.mail.spf_netblocks:
    domains: [gmail.com, outlook.com, icloud.com, amazonses.com]
    static_entries:
      - /.*outbound\.protection\.outlook\.com$/
    format: postgrey
    dest: /srv/whitelists/whitelist_clients.local
  run_once: true
  delegate_to: localhost

- name: Same providers as a Postfix cidr table (check_client_access and postscreen_access_list)
  mailguard.mail.spf_netblocks:
    domains: [gmail.com, outlook.com]
    format: cidr
    dest: /srv/whitelists/postscreen_providers.cidr
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
content:
  description: The whitelist of the first output as written (or as it would be written in check mode).
  returned: success
  type: str
contents:
  description: Each output's whitelist, by format.
  returned: success
  type: dict
  sample: {postgrey: "# Generated by spfwalk ...", exim: "# Generated by spfwalk ..."}
state_content:
  description: The new state (last known good netblocks per domain and their chains), as written or as it would be.
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

import platform
import sys

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    try:
        # The collection's own walker: mailguard.mail installed, or a clone (collections/ links back).
        from ansible_collections.mailguard.mail.plugins.module_utils.spfwalk import guards, outputs, update, walker
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("ansible_collections"):
            raise
        # The module copied into a library path, the walker into a module_utils path.
        from ansible.module_utils.spfwalk import guards, outputs, update, walker

    GuardError, GuardPolicy = guards.GuardError, guards.GuardPolicy
    FORMATS, OutputError, parse_static_entries = outputs.FORMATS, outputs.OutputError, outputs.parse_static_entries
    Limits, OutputSpec, apply_update = update.Limits, update.OutputSpec, update.apply_update
    default_state_path, discard_pending_state, plan_outputs = (
        update.default_state_path, update.discard_pending_state, update.plan_outputs)
    WalkerOptions, walk_sync = walker.WalkerOptions, walker.walk_sync

    IMPORT_ERROR = None
except ImportError as exc:  # dnspython missing on the host running the module
    FORMATS = ("postgrey", "postgrey-names", "cidr", "exim", "sqlgrey", "spamd")
    IMPORT_ERROR = exc


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            domains=dict(type="list", elements="str", required=True),
            format=dict(type="str", choices=list(FORMATS)),
            dest=dict(type="path"),
            outputs=dict(type="list", elements="dict", options=dict(
                format=dict(type="str", required=True, choices=list(FORMATS)),
                dest=dict(type="path"),
                static_entries=dict(type="list", elements="str"),
                previous_content=dict(type="str"),
            )),
            state_file=dict(type="path"),
            promote_state=dict(type="bool", default=True),
            static_entries=dict(type="list", elements="str", default=[]),
            nameservers=dict(type="list", elements="str", default=[]),
            port=dict(type="int", default=53),
            query_lifetime=dict(type="float", default=2.0),
            deadline=dict(type="float", default=30.0),
            max_in_flight=dict(type="int", default=32),
            expand_over_limit=dict(type="bool", default=False),
            max_shrink=dict(type="float", default=0.25),
            max_growth=dict(type="float", default=4.0),
            force=dict(type="bool", default=False),
            min_prefix4=dict(type="int", default=12),
            min_prefix6=dict(type="int", default=28),
            allowed_networks=dict(type="list", elements="str", default=[]),
            cidr_action=dict(type="str", default="permit"),
            sqlgrey_cidr=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("outputs", "format"), ("outputs", "dest")],
        supports_check_mode=True,
    )
    if sys.version_info < (3, 11):  # noqa: UP036 - the host running a module may have an older Python
        # delegate_to: localhost runs it with localhost's discovered interpreter, maybe an old system Python.
        module.fail_json(msg=f"spf_netblocks needs Python >= 3.11, this is {platform.python_version()} "
                             f"({sys.executable}); point ansible_python_interpreter of the host that runs it at one")
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(IMPORT_ERROR))
    params = module.params
    if not params["domains"]:
        module.fail_json(msg="domains is empty: there is nothing to whitelist")
    if not 1 <= params["port"] <= 65535:
        module.fail_json(msg=f"port must be between 1 and 65535, got {params['port']}")

    try:
        limits = Limits(
            max_shrink=params["max_shrink"], max_growth=params["max_growth"], force=params["force"],
            guard=GuardPolicy.from_options(params["min_prefix4"], params["min_prefix6"], params["allowed_networks"]),
        )
        static = parse_static_entries(params["static_entries"], limits.guard)
        outputs = _output_specs(params, limits.guard)
    except (GuardError, OutputError, ValueError) as exc:
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
        plan = plan_outputs(report, outputs, static, state_path, limits,
                            cidr_action=params["cidr_action"], sqlgrey_cidr=params["sqlgrey_cidr"])
    except (OutputError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc), roots=_roots(report), **walk_facts)
    if plan.refused:
        module.fail_json(msg=plan.refused, roots=plan.roots, **walk_facts)

    for warning in plan.warnings:
        module.warn(warning)
    if plan.changed and not module.check_mode:
        apply_update(plan, promote_state=params["promote_state"])
    if state_path and not params["promote_state"] and not plan.state_changed and not module.check_mode:
        discard_pending_state(state_path)

    result = dict(
        changed=plan.changed,
        content=plan.content,
        contents={output.fmt: output.content for output in plan.outputs},
        state_content=plan.state_content,
        network_count=plan.network_count,
        kept_last_good=plan.kept_last_good,
        removed_roots=plan.removed_roots,
        roots=plan.roots,
        **walk_facts,
    )
    diffs = [
        dict(before=output.previous_content or "", after=output.content,
             before_header=output.path, after_header=output.path)
        for output in plan.outputs if output.changed
    ]
    if module._diff and diffs:
        result["diff"] = diffs if len(diffs) > 1 else diffs[0]
    module.exit_json(**result)


def _output_specs(params: dict, guard) -> list:
    """The outputs option, or the single format/dest pair."""
    if not params["outputs"]:
        return [OutputSpec(params["format"] or "postgrey", params["dest"])]
    specs = []
    for item in params["outputs"]:
        static = None
        if item["static_entries"] is not None:
            static = parse_static_entries(item["static_entries"], guard)
        specs.append(OutputSpec(item["format"], item["dest"], static, item["previous_content"]))
    return specs


def _roots(report) -> dict:
    return {name: root.as_dict() for name, root in report.roots.items()}


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
