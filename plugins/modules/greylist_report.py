#!/usr/bin/python
"""Ansible module: the greylisting report (greylist-report) over mail logs on the host that runs it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: greylist_report
short_description: Report what greylisting delays, stops and should whitelist, from mail logs
description:
  - Reads mail logs (Postfix with postgrey or sqlgrey, Exim with greylistd) and reports the triplets
    greylisted, the messages that passed later with their delay (per sender domain and per client
    network), those never retried, and the pools that greylisting is hurting (one sender and
    recipient retried from several networks), with the inventory line that would whitelist each.
  - The same code as the command C(greylist-report) (plugins/module_utils/greylog); its options
    become that command line.
  - Inputs are syslog files (rotated and gzipped ones too, gzip recognised by its magic bytes),
    Exim's mainlog and C(journalctl) output (C(-o short), C(short-iso), C(short-iso-precise) or
    C(json)). Each file is read in chunks of 1 MiB; memory grows with the number of distinct
    triplets, not with the size of the logs.
  - Read-only. Meant to run on the controller (C(delegate_to=localhost), C(run_once=true)) over logs
    fetched from the mail hosts, as the playbook C(greylist_report.yml) of the collection does.
version_added: "0.1.0"
author: mailguard developers
requirements:
  - Python >= 3.11 on the host that runs the module
  - dnspython >= 2.6 on the host that runs the module, for O(check_spf) only
options:
  paths:
    description:
      - The log files to read, oldest first (C(mail.log.2.gz), C(mail.log.1), C(mail.log)). Each file
        keeps its own year inference for year-less syslog stamps.
    type: list
    elements: path
    required: true
  json:
    description:
      - Render RV(output) as one line of JSON instead of text. RV(report) is returned either way.
    type: bool
    default: false
  min_age:
    description:
      - A triplet first greylisted less than this before the logs' last line is too recent to call
        never retried. Seconds, or a number with an C(s), C(m), C(h) or C(d) suffix.
    type: str
    default: 1h
  ipv4_prefix:
    description: Client network of an IPv4 triplet (postgrey, sqlgrey and this project's greylistd use 24).
    type: int
    default: 24
  ipv6_prefix:
    description: Client network of an IPv6 triplet.
    type: int
    default: 64
  check_spf:
    description:
      - Walk each pool's sender domain's SPF record with the project's walker and tell whether it
        covers the pool's addresses; the whitelist line then names the domain.
    type: bool
    default: false
  nameservers:
    description: Name servers (IP addresses) for O(check_spf). Empty means the system's resolvers.
    type: list
    elements: str
    default: []
  port:
    description: Port of the name servers.
    type: int
    default: 53
attributes:
  check_mode:
    support: full
    description: Reads the logs and reports; it never changes anything.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
notes:
  - Without O(check_spf) no DNS question is asked.
"""

EXAMPLES = r"""
- name: Report on logs fetched from the mail hosts
  mailguard.mail.greylist_report:
    paths:
      - /srv/greylist/mx1/01-mail.log.2.gz
      - /srv/greylist/mx1/02-mail.log.1
      - /srv/greylist/mx1/03-mail.log
    min_age: 2h
  run_once: true
  delegate_to: localhost
  register: greylist

- name: Show it
  ansible.builtin.debug:
    msg: "{{ greylist.output.splitlines() }}"
  run_once: true

- name: JSON, with the SPF check of the pools
  mailguard.mail.greylist_report:
    paths: [/var/log/mail.log]
    json: true
    check_spf: true
"""

RETURN = r"""
output:
  description: The report as the command prints it, text or (with O(json)) one line of JSON.
  returned: success
  type: str
report:
  description:
    - The report's figures, the same object as C(greylist-report --json) prints.
    - Keys C(triplets) and C(messages) (counts by outcome, C(passed), C(passed_elsewhere),
      C(retried_not_passed), C(never_retried), C(too_recent); the delay distribution in seconds),
      C(by_sender_domain), C(by_client_network), C(pools), C(whitelist), C(span), C(lines).
  returned: success
  type: dict
  sample: {"schema": 1, "triplets": {"greylisted": 4, "passed": 1, "never_retried": 1},
           "messages": {"greylisted": 2, "delay": {"count": 1, "p50": 6000, "p95": 6000, "max": 6000}}}
"""

import argparse
import platform
import re
import sys

from ansible.module_utils.basic import AnsibleModule

try:
    try:
        # The collection's own greylog: mailguard.mail installed, or a clone (collections/ links back).
        from ansible_collections.mailguard.mail.plugins.module_utils.greylog import cli, inputs
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("ansible_collections"):
            raise
        # The module copied into a library path, greylog into a module_utils path.
        from ansible.module_utils.greylog import cli, inputs
    IMPORT_ERROR = None
except ImportError as exc:  # a Python older than greylog needs (datetime.UTC is 3.11): failed below, in one line
    IMPORT_ERROR = exc


def command_line(params: dict) -> list[str]:
    """The greylist-report command line for the module's options."""
    argv = ["--min-age", params["min_age"], "--ipv4-prefix", str(params["ipv4_prefix"]),
            "--ipv6-prefix", str(params["ipv6_prefix"]), "--port", str(params["port"])]
    if params["json"]:
        argv.append("--json")
    if params["check_spf"]:
        argv.append("--check-spf")
    for nameserver in params["nameservers"]:
        argv += ["--nameserver", nameserver]
    # After "--" a path is a path, even one that starts with "-".
    return [*argv, "--", *params["paths"]]


# The command's option -> the module's.
OPTIONS = {"--min-age": "min_age", "--ipv4-prefix": "ipv4_prefix", "--ipv6-prefix": "ipv6_prefix",
           "--port": "port", "--nameserver": "nameservers"}


def option_error(message: str) -> str:
    """argparse's "argument --min-age: 'x' is not ..." as "min_age: 'x' is not ..."."""
    return re.sub(r"argument (--[a-z0-9-]+)(/-\w)?", lambda m: OPTIONS.get(m.group(1), m.group(1)), message)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            json=dict(type="bool", default=False),
            min_age=dict(type="str", default="1h"),
            ipv4_prefix=dict(type="int", default=24),
            ipv6_prefix=dict(type="int", default=64),
            check_spf=dict(type="bool", default=False),
            nameservers=dict(type="list", elements="str", default=[]),
            port=dict(type="int", default=53),
        ),
        supports_check_mode=True,
    )
    if sys.version_info < (3, 11):  # noqa: UP036 - the host running a module may have an older Python
        module.fail_json(msg=f"greylist_report needs Python >= 3.11, this is {platform.python_version()} "
                             f"({sys.executable}); point ansible_python_interpreter of the host that runs it at one")
    if IMPORT_ERROR is not None:
        module.fail_json(msg=f"greylist_report cannot import greylog: {IMPORT_ERROR}")
    paths = module.params["paths"]
    if not paths:
        module.fail_json(msg="paths is empty: no log file to read")
    if inputs.STDIN in paths:
        module.fail_json(msg="paths: '-' (stdin) cannot be read by a module; name the log files")
    try:
        report, output = cli.generate(command_line(module.params))
    except (cli.UsageError, argparse.ArgumentError) as exc:
        module.fail_json(msg=option_error(str(exc)))
    except inputs.InputError as exc:
        module.fail_json(msg=str(exc))
    except ImportError as exc:  # check_spf without dnspython on the host running the module
        module.fail_json(msg=f"check_spf needs dnspython on the host that runs the module: {exc}")
    module.exit_json(changed=False, report=report, output=output)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
