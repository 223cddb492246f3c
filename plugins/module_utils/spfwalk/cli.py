"""spf-netblocks: the walker for admins who run it from cron, without Ansible."""

from __future__ import annotations

import argparse
import json
import sys

from .guards import DEFAULT_MIN_PREFIX4, DEFAULT_MIN_PREFIX6, GuardError, GuardPolicy
from .outputs import FORMATS, OutputError, parse_static_entries
from .update import Limits, OutputSpec, apply_update, default_state_path, plan_outputs
from .walker import WalkerOptions, walk_sync

# Exit codes, so that cron or CI can tell the outcomes apart (argparse itself uses 2).
EXIT_UNCHANGED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHANGED = 3
EXIT_KEPT_LAST_GOOD = 4

EPILOG = f"""exit codes:
  {EXIT_UNCHANGED}  the output is up to date, nothing written
  {EXIT_CHANGED}  the output was written (content changed)
  {EXIT_KEPT_LAST_GOOD}  some domains failed and kept their last known good netblocks (output complete)
  {EXIT_FAILED}  failed: nothing written (a domain failed with no last known good list, empty
     result, refused shrink or growth, refused netblock, bad static entry)
  {EXIT_USAGE}  bad command line
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spf-netblocks",
        description="Turn mail providers' SPF records into a greylisting whitelist.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("domains", nargs="+", metavar="DOMAIN", help="root domain, e.g. gmail.com")
    parser.add_argument("--format", choices=FORMATS, default="postgrey",
                        help="output format (default: postgrey)")
    parser.add_argument("--output", "-o", metavar="FILE", help="file to write; without it, print to stdout")
    parser.add_argument("--state", metavar="FILE", help="last-known-good state (default: FILE.state.json)")
    parser.add_argument("--nameserver", action="append", default=[], metavar="IP",
                        help="name server to ask (repeatable; default: the system's resolvers)")
    parser.add_argument("--port", type=_port, default=53, help="name server port (default: 53)")
    parser.add_argument("--static", action="append", default=[], metavar="ENTRY",
                        help="extra CIDR, host name or postgrey /regex/ (repeatable)")
    parser.add_argument("--static-file", metavar="FILE",
                        help="file of static entries, one per line, # comments")
    parser.add_argument("--max-shrink", type=float, default=0.25, metavar="FRACTION",
                        help="refuse to drop more than this share of a domain's addresses (default: 0.25)")
    parser.add_argument("--max-growth", type=float, default=4.0, metavar="FACTOR",
                        help="refuse a domain whose addresses grow more than this many times (default: 4)")
    parser.add_argument("--force", action="store_true", help="accept a larger shrink or growth")
    parser.add_argument("--min-prefix4", type=int, default=DEFAULT_MIN_PREFIX4, metavar="LENGTH",
                        help="refuse IPv4 netblocks wider than this prefix length "
                             f"(default: {DEFAULT_MIN_PREFIX4})")
    parser.add_argument("--min-prefix6", type=int, default=DEFAULT_MIN_PREFIX6, metavar="LENGTH",
                        help="refuse IPv6 netblocks wider than this prefix length "
                             f"(default: {DEFAULT_MIN_PREFIX6})")
    parser.add_argument("--allow-network", action="append", default=[], metavar="CIDR",
                        help="a network you vouch for (e.g. a lab in private space): exempt from the "
                             "width and special-purpose checks (repeatable)")
    parser.add_argument("--expand-over-limit", action="store_true",
                        help="keep domains that break the RFC 7208 lookup limits")
    parser.add_argument("--query-lifetime", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--deadline", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--max-in-flight", type=int, default=32, metavar="N")
    parser.add_argument("--cidr-action", default="OK", help="action word of the cidr format (default: OK)")
    parser.add_argument("--sqlgrey-cidr", action=argparse.BooleanOptionalAction, default=True,
                        help="sqlgrey format: CIDR lines, as sqlgrey >= 1.7.7 reads them (default); "
                             "--no-sqlgrey-cidr expands IPv4 into class C prefixes and addresses")
    parser.add_argument("--report", metavar="FILE", help="write the walk report as JSON ('-' for stderr)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    parser.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        limits = Limits(
            max_shrink=args.max_shrink, max_growth=args.max_growth, force=args.force,
            guard=GuardPolicy.from_options(args.min_prefix4, args.min_prefix6, args.allow_network),
        )
        static = parse_static_entries(args.static + _read_static_file(args.static_file), limits.guard)
    except (GuardError, OutputError, OSError, ValueError) as exc:
        return _fail(str(exc))

    options = WalkerOptions(
        nameservers=args.nameserver or None,
        port=args.port,
        query_lifetime=args.query_lifetime,
        deadline=args.deadline,
        max_in_flight=args.max_in_flight,
        expand_over_limit=args.expand_over_limit,
    )
    report = walk_sync(args.domains, options)
    if args.report:
        _write_report(args.report, report.as_dict())

    state = args.state or (default_state_path(args.output) if args.output else None)
    try:
        plan = plan_outputs(report, [OutputSpec(args.format, args.output)], static, state, limits,
                            cidr_action=args.cidr_action, sqlgrey_cidr=args.sqlgrey_cidr)
    except (OutputError, OSError, ValueError) as exc:
        return _fail(str(exc))
    if plan.refused:
        return _fail(plan.refused)

    if not args.quiet:
        for warning in plan.warnings:
            print(f"spf-netblocks: warning: {warning}", file=sys.stderr)
    if not args.output:
        sys.stdout.write(plan.content)
        return EXIT_KEPT_LAST_GOOD if plan.kept_last_good else EXIT_UNCHANGED
    if plan.changed and not args.dry_run:
        apply_update(plan)
    if not args.quiet:
        verb = "would write" if args.dry_run else "wrote"
        what = f"{verb} {args.output}" if plan.changed else f"{args.output} is up to date"
        print(f"spf-netblocks: {what}: {plan.network_count} netblocks from {len(args.domains)} domains",
              file=sys.stderr)
    if plan.kept_last_good:
        return EXIT_KEPT_LAST_GOOD
    return EXIT_CHANGED if plan.changed else EXIT_UNCHANGED


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _read_static_file(path: str | None) -> list[str]:
    if not path:
        return []
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def _write_report(target: str, report: dict) -> None:
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if target == "-":
        sys.stderr.write(text)
    else:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)


def _fail(message: str) -> int:
    print(f"spf-netblocks: error: {message}", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
