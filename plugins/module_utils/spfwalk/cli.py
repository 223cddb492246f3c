"""spf-netblocks: the walker for admins who run it from cron, without Ansible."""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import math
import os
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from .guards import DEFAULT_MIN_PREFIX4, DEFAULT_MIN_PREFIX6, GuardError, GuardPolicy
from .outputs import CIDR_ACTION, FORMATS, OutputError, parse_static_entries
from .update import Limits, OutputSpec, UpdatePlan, apply_update, default_state_path, plan_outputs
from .walker import WalkerOptions, walk_sync

# Exit codes, so that cron or CI can tell the outcomes apart (argparse itself uses 2). Whether
# the file changed and whether a domain fell back are separate facts: a cron line reloads the
# daemon on 3 or 5 and wants a look on 4 or 5.
EXIT_UNCHANGED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHANGED = 3
EXIT_KEPT_LAST_GOOD = 4
EXIT_CHANGED_KEPT_LAST_GOOD = 5

STDOUT = "-"

EPILOG = f"""exit codes (reload the daemon on {EXIT_CHANGED} or {EXIT_CHANGED_KEPT_LAST_GOOD}; \
someone should look on {EXIT_FAILED}, {EXIT_KEPT_LAST_GOOD} or {EXIT_CHANGED_KEPT_LAST_GOOD}):
  {EXIT_UNCHANGED}  unchanged: the output is up to date, nothing written
  {EXIT_CHANGED}  changed: the output was written
  {EXIT_KEPT_LAST_GOOD}  unchanged, and some domains failed and kept their last known good netblocks
  {EXIT_CHANGED_KEPT_LAST_GOOD}  changed, and some domains failed and kept their last known good netblocks
  {EXIT_FAILED}  failed: nothing written (a domain failed with no last known good list, empty
     result, refused shrink or growth, refused netblock, bad static entry, a file that
     cannot be read or written)
  {EXIT_USAGE}  bad command line
--dry-run exits with the code the real run would give; without --output only 0 or 4 (the
whitelist goes to stdout, nothing is compared).
"""


class CliError(Exception):
    """A failure the user can act on: one line on stderr, exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line like every other error (the usage block drowns it in a cron mail).
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spf-netblocks",
        description="Turn mail providers' SPF records into a greylisting whitelist.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("domains", nargs="+", metavar="DOMAIN", help="root domain, e.g. gmail.com")
    parser.add_argument("--format", choices=FORMATS, default="postgrey",
                        help="output format (default: postgrey)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="file to write; without it (or with '-'), print to stdout")
    parser.add_argument("--state", metavar="FILE", help="last-known-good state (default: FILE.state.json)")
    parser.add_argument("--nameserver", action="append", default=[], type=_ip_address, metavar="IP",
                        help="name server to ask (repeatable; default: the system's resolvers)")
    parser.add_argument("--port", type=_port, default=53, help="name server port (default: 53)")
    parser.add_argument("--static", action="append", default=[], metavar="ENTRY",
                        help="extra CIDR, host name or postgrey /regex/ (repeatable)")
    parser.add_argument("--static-file", metavar="FILE",
                        help="file of static entries, one per line, # comments")
    parser.add_argument("--max-shrink", type=_fraction, default=0.25, metavar="FRACTION",
                        help="refuse to drop more than this share of a domain's addresses (default: 0.25)")
    parser.add_argument("--max-growth", type=_factor, default=4.0, metavar="FACTOR",
                        help="refuse a domain whose addresses grow more than this many times (default: 4)")
    parser.add_argument("--force", action="store_true", help="accept a larger shrink or growth")
    parser.add_argument("--min-prefix4", type=_prefix_length(32), default=DEFAULT_MIN_PREFIX4, metavar="LENGTH",
                        help="refuse IPv4 netblocks wider than this prefix length "
                             f"(default: {DEFAULT_MIN_PREFIX4})")
    parser.add_argument("--min-prefix6", type=_prefix_length(128), default=DEFAULT_MIN_PREFIX6, metavar="LENGTH",
                        help="refuse IPv6 netblocks wider than this prefix length "
                             f"(default: {DEFAULT_MIN_PREFIX6})")
    parser.add_argument("--allow-network", action="append", default=[], metavar="CIDR",
                        help="a network you vouch for (e.g. a lab in private space): exempt from the "
                             "width and special-purpose checks (repeatable)")
    parser.add_argument("--expand-over-limit", action="store_true",
                        help="keep domains that break the RFC 7208 lookup limits")
    parser.add_argument("--query-lifetime", type=_seconds, default=2.0, metavar="SECONDS")
    parser.add_argument("--deadline", type=_seconds, default=30.0, metavar="SECONDS")
    parser.add_argument("--max-in-flight", type=_at_least_one, default=32, metavar="N")
    parser.add_argument("--cidr-action", default=CIDR_ACTION,
                        help=f"action word of the cidr format (default: {CIDR_ACTION}, which smtpd's "
                        "check_client_access and postscreen_access_list both read)")
    parser.add_argument("--sqlgrey-cidr", action=argparse.BooleanOptionalAction, default=True,
                        help="sqlgrey format: CIDR lines, as sqlgrey >= 1.7.7 reads them (default); "
                             "--no-sqlgrey-cidr expands IPv4 into class C prefixes and addresses")
    parser.add_argument("--report", metavar="FILE", help="write the walk report as JSON ('-' for stdout)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print a unified diff of the output, write neither it nor the state")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print only errors and the domains that kept their last known good netblocks")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output == STDOUT:
        args.output = None
    taken = _stdout_taken(args)
    if args.report == STDOUT and taken:
        parser.error(f"--report - needs stdout, which carries the {taken}")
    try:
        return _run(args)
    except (CliError, GuardError, OutputError, ValueError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        # A bug or an unforeseen condition: still one line for the cron mail, never a traceback.
        return _fail(f"unexpected {type(exc).__name__}: {exc}")


def _run(args: argparse.Namespace) -> int:
    state = args.state or (default_state_path(args.output) if args.output else None)
    _check_targets(args, state)
    limits = Limits(
        max_shrink=args.max_shrink, max_growth=args.max_growth, force=args.force,
        guard=GuardPolicy.from_options(args.min_prefix4, args.min_prefix6, args.allow_network),
    )
    static = parse_static_entries(args.static + _read_static_file(args.static_file), limits.guard)

    report = walk_sync(args.domains, _walker_options(args))
    if args.report:
        _write_report(args.report, report.as_dict())
    plan = plan_outputs(report, [OutputSpec(args.format, args.output)], static, state, limits,
                        cidr_action=args.cidr_action, sqlgrey_cidr=args.sqlgrey_cidr)
    if plan.refused:
        raise CliError(plan.refused)
    _print_warnings(plan, args.quiet)
    if not args.output:
        sys.stdout.write(plan.content)
        return _exit_code(changed=False, kept=plan.kept_last_good)
    return _write_output(plan, args)


def _write_output(plan: UpdatePlan, args: argparse.Namespace) -> int:
    if args.dry_run:
        sys.stdout.writelines(_diff(plan))
    elif plan.changed:
        _apply(plan)
    if not args.quiet:
        _print_status(plan, args)
    # The file, not the state: a rewritten state alone gives the daemon nothing new to read.
    return _exit_code(changed=plan.output_changed, kept=plan.kept_last_good)


def _check_targets(args: argparse.Namespace, state: str | None) -> None:
    """Before the walk: a target that cannot be written fails in a second, and before anything is written."""
    # Without an output file the state is only read.
    targets = (("output", args.output), ("state", state if args.output else None), ("report", args.report))
    for what, path in targets:
        if path and path != STDOUT:
            _check_writable_directory(what, path)


def _walker_options(args: argparse.Namespace) -> WalkerOptions:
    return WalkerOptions(
        nameservers=args.nameserver or None,
        port=args.port,
        query_lifetime=args.query_lifetime,
        deadline=args.deadline,
        max_in_flight=args.max_in_flight,
        expand_over_limit=args.expand_over_limit,
    )


def _exit_code(*, changed: bool, kept: list[str]) -> int:
    if kept:
        return EXIT_CHANGED_KEPT_LAST_GOOD if changed else EXIT_KEPT_LAST_GOOD
    return EXIT_CHANGED if changed else EXIT_UNCHANGED


def _stdout_taken(args: argparse.Namespace) -> str | None:
    if not args.output:
        return "whitelist (no --output FILE)"
    return "diff (--dry-run)" if args.dry_run else None


def _check_writable_directory(what: str, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"the {what} directory {directory} does not exist (--{what} {path})")
    try:
        # An unnamed file where the kernel supports it (O_TMPFILE): nothing to see, nothing left.
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise CliError(f"cannot write the {what} in {directory}: {exc.strerror or exc}") from None


def _read_static_file(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle]
    except OSError as exc:
        raise CliError(f"cannot read --static-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"--static-file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                       f"at offset {exc.start})") from None


def _write_report(target: str, report: dict) -> None:
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if target == STDOUT:
        sys.stdout.write(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise CliError(f"cannot write --report {target}: {exc.strerror or exc}") from None


def _apply(plan: UpdatePlan) -> None:
    try:
        apply_update(plan)
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or plan.output_path}: {exc.strerror or exc}") from None


def _diff(plan: UpdatePlan) -> list[str]:
    old = plan.previous_content
    return list(difflib.unified_diff(
        (old or "").splitlines(keepends=True), plan.content.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else plan.output_path, tofile=plan.output_path,
    ))


def _print_warnings(plan: UpdatePlan, quiet: bool) -> None:
    # Quiet keeps the fallbacks: a cron job stays silent unless someone should look.
    warnings = _fallbacks(plan) if quiet else plan.warnings
    for warning in warnings:
        print(f"spf-netblocks: warning: {warning}", file=sys.stderr)


def _fallbacks(plan: UpdatePlan) -> list[str]:
    lines = []
    for domain in plan.kept_last_good:
        root = plan.roots[domain]
        why = "; ".join(root["errors"]) or "no details"
        lines.append(f"{domain}: kept its {root['network_count']} last known good netblock(s) "
                     f"({root['status']}: {why})")
    return lines


def _print_status(plan: UpdatePlan, args: argparse.Namespace) -> None:
    verb = "would write" if args.dry_run else "wrote"
    what = f"{verb} {args.output}" if plan.output_changed else f"{args.output} is up to date"
    print(f"spf-netblocks: {what}: {plan.network_count} netblocks from {len(args.domains)} domains",
          file=sys.stderr)


def _fail(message: str) -> int:
    one_line = " ".join(message.split("\n"))
    print(f"spf-netblocks: error: {one_line}", file=sys.stderr)
    return EXIT_FAILED


def package_version() -> str:
    try:
        return metadata.version("mailguard")
    except metadata.PackageNotFoundError:
        return _source_tree_version()


def _source_tree_version() -> str:
    # Run from a checkout that was never pip-installed: the version is in the project file.
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    try:
        with pyproject.open("rb") as handle:
            return tomllib.load(handle)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# -- option types: a bad value is a usage error (exit 2) before anything runs ------------------

def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (a name server is never looked up)") from None


def _number(text: str, convert, what: str, ok) -> float:
    try:
        value = convert(text)
    except ValueError:
        value = None
    # NaN fails every comparison in ok(), so it is refused with the rest.
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _seconds(text: str) -> float:
    return _number(text, float, "a number of seconds above 0", lambda v: math.isfinite(v) and v > 0)


def _fraction(text: str) -> float:
    return _number(text, float, "a fraction from 0 to 1", lambda v: 0 <= v <= 1)


def _factor(text: str) -> float:
    return _number(text, float, "a factor of 1 or more", lambda v: v >= 1)


def _at_least_one(text: str) -> int:
    return _number(text, int, "a whole number of 1 or more", lambda v: v >= 1)


def _prefix_length(bits: int):
    def prefix_length(text: str) -> int:
        return _number(text, int, f"a prefix length from 0 to {bits}", lambda v: 0 <= v <= bits)
    return prefix_length


if __name__ == "__main__":
    sys.exit(main())
