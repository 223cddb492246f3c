"""greylist-report: what greylisting costs legitimate senders and what it stops, from the mail log."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Iterator

from . import report as reporting
from .aggregate import Aggregator
from .daemons import Dispatcher, Event
from .inputs import STDIN, InputError, read_line_batches
from .lines import LineReader, Record, SyslogClock
from .spfcheck import package_version, spf_lookup

PROG = "greylist-report"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EPILOG = f"""inputs: syslog files (/var/log/mail.log, rotated mail.log.1, gzipped mail.log.2.gz:
gzip is recognised by its magic bytes, not its name), Exim's mainlog, and journalctl output
(-o short, short-iso, short-iso-precise or json); '-' or no FILE reads stdin. Give the files
oldest first. Postfix with postgrey or sqlgrey, and Exim with greylistd, are recognised.

memory: the log is read in chunks of 1 MiB; memory grows with the number of distinct
greylisted triplets (client network, sender, recipient) and messages in flight, never with
the size of the log.

exit codes:
  {EXIT_OK}  the report was written
  {EXIT_USAGE}  bad command line, or an input that cannot be read (missing file, broken gzip);
     one line on stderr, no report
  {EXIT_FAILED}  unexpected failure (a bug): one line on stderr, no report
"""


class UsageError(ValueError):
    """A bad command line, raised instead of exiting when the parser must not exit (the Ansible module)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        if not self.exit_on_error:
            raise UsageError(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(exit_on_error: bool = True) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Report what greylisting delays, stops and should whitelist, "
                     "from a mail log.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     exit_on_error=exit_on_error)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("files", nargs="*", metavar="FILE", help="log file, '-' for stdin (default: stdin)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--year", type=_year, metavar="YEAR",
                        help="year of the first line of each file with year-less syslog stamps (default: "
                             "the current year, or the year before when that line's month is still ahead); "
                             "each December-to-January wrap starts the next year")
    parser.add_argument("--min-age", type=_duration, default=3600.0, metavar="DURATION",
                        help="a triplet first greylisted less than this before the log's last line is "
                             "too recent to call never retried (default: 1h; s, m, h, d suffixes)")
    parser.add_argument("--reject-text", type=_regex, default=re.compile("greylist", re.IGNORECASE),
                        metavar="REGEX", help="MTA reject/defer text that means greylisted "
                                              "(case-insensitive; default: greylist)")
    parser.add_argument("--ipv4-prefix", type=_prefix(32), default=24, metavar="LENGTH",
                        help="client network of a triplet (default: 24, as postgrey, sqlgrey and this "
                             "project's greylistd)")
    parser.add_argument("--ipv6-prefix", type=_prefix(128), default=64, metavar="LENGTH",
                        help="client network of an IPv6 triplet (default: 64)")
    parser.add_argument("--top", type=_count, default=10, metavar="N", help="rows per table in the text (default: 10)")
    spf = parser.add_argument_group("SPF check of the pools (never done without --check-spf)")
    spf.add_argument("--check-spf", action="store_true",
                     help="walk each pool's sender domain's SPF record: does it cover the pool's addresses?")
    spf.add_argument("--nameserver", action="append", default=[], type=_ip_address, metavar="IP",
                     help="name server to ask (repeatable; default: the system's resolvers)")
    spf.add_argument("--port", type=_port, default=53, help="name server port (default: 53)")
    spf.add_argument("--query-lifetime", type=_seconds, default=2.0, metavar="SECONDS",
                     help="seconds one DNS question may take (default: 2)")
    spf.add_argument("--deadline", type=_seconds, default=30.0, metavar="SECONDS",
                     help="seconds for the whole SPF walk (default: 30)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except Exception as exc:
        return _fail(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)
    sys.stdout.write(render(report, args))
    return EXIT_OK


def generate(argv: list[str]) -> tuple[dict, str]:
    """The report and its output (text, or JSON with --json) for a command line, without exiting.

    What the Ansible module mailguard.mail.greylist_report runs: its options become this command
    line, so the module and the command parse, check, read and render the same way. Raises
    UsageError or argparse.ArgumentError for a bad option, InputError for an unreadable input.
    """
    args = build_parser(exit_on_error=False).parse_args(argv)
    report = run(args)
    return report, render(report, args)


def render(report: dict, args: argparse.Namespace) -> str:
    if args.json:
        # One line: the C encoder (an indented dump of a big log's groups takes seconds); jq reads it.
        return json.dumps(report, sort_keys=True) + "\n"
    return reporting.render_text(report, args.top)


def run(args: argparse.Namespace) -> dict:
    files = args.files or [STDIN]
    if files.count(STDIN) > 1:
        raise InputError("stdin ('-') can be read only once")
    counter = _LineCounter()
    dispatcher = Dispatcher(args.reject_text)
    aggregator = Aggregator(prefix4=args.ipv4_prefix, prefix6=args.ipv6_prefix)
    # records() -> dispatcher -> aggregator, without a generator between the last two (hot path).
    event_of, add = dispatcher.event, aggregator.add
    for record in records(files, args.year, counter):
        event = event_of(record)
        if event is not None:
            add(event)
    for time in (counter.first, counter.last):
        if time is not None:
            aggregator.observe(time)
    lookup = None
    if args.check_spf:
        lookup = spf_lookup(nameservers=args.nameserver or None, port=args.port,
                            query_lifetime=args.query_lifetime, deadline=args.deadline)
    options = reporting.Options(min_age=args.min_age, inputs=tuple(files), lines=counter.lines,
                                unparsed=counter.unparsed, version=package_version())
    return reporting.build(aggregator, options, lookup)


class _LineCounter:
    def __init__(self):
        self.lines = 0
        self.unparsed = 0
        self.first: float | None = None
        self.last: float | None = None

    def seen(self, time: float) -> None:
        if self.first is None or time < self.first:
            self.first = time
        if self.last is None or time > self.last:
            self.last = time


# A journalctl -o json entry whose MESSAGE is not UTF-8 carries it as an array of byte values,
# in which none of the strings below can be seen: such an entry is always parsed.
_JSON_BYTES_MESSAGE = re.compile(r'"MESSAGE"\s*:\s*\[')


def records(files: Iterable[str], year: int | None, counter: _LineCounter | None = None) -> Iterator[Record]:
    """Every parsable line of every file that may matter, in order; one chunk of ~1 MiB in memory at a time.

    The substring test skips the connect/disconnect noise making up most of a mail log before
    any regular expression runs or any timestamp is parsed. Each string is literal text that a
    parser's pattern requires, so every line a parser reads holds one of them: "from=<" and
    "to=<" (Postfix's qmgr and delivery lines; not "=<", which also lets through every cleanup
    message-id=<...> line, a tenth of a busy log's parsed lines, that no parser reads), "grey"
    (postgrey and sqlgrey are named on their own lines), "client=",
    "reject: RCPT", ": removed", "> " (Exim's =>, ->, *>), and Exim's " <= ", " == ", " ** ",
    "Completed" and "temporarily rejected" (tests/greylog/test_greylog_prefilter.py). Plain
    searches, written out: three times faster than one regular expression, and a function call
    per line would add a sixth to them (the loop's hot path). Searching each chunk
    once for Exim's strings, to leave them out for a Postfix log's lines, was measured slower:
    the noise lines searched are a third of the bytes, the chunk is all of them.
    """
    counter = counter or _LineCounter()
    for name in files:
        parse = LineReader(SyslogClock(year)).parse
        last = ""
        for lines in read_line_batches(name):
            counter.lines += len(lines)
            for line in lines:
                if not ("from=<" in line or "to=<" in line or "grey" in line or "client=" in line
                        or "reject: RCPT" in line or ": removed" in line or "> " in line or " <= " in line
                        or " == " in line or " ** " in line or "Completed" in line or "temporarily rejected" in line
                        or (line[:1] == "{" and _JSON_BYTES_MESSAGE.search(line))):
                    last = line
                    continue
                record = parse(line)
                if record is None:
                    counter.unparsed += 1
                    continue
                # counter.seen(), written out: this runs for every parsed line.
                time = record.time
                if counter.last is None or time > counter.last:
                    counter.last = time
                if counter.first is None or time < counter.first:
                    counter.first = time
                yield record
        # The last noise line may be the file's last line: it ends the log's span (and so --min-age).
        record = parse(last) if last else None
        if record is not None:
            counter.seen(record.time)


def events_from_lines(lines: Iterable[str], year: int | None = None,
                      reject_text: re.Pattern | None = None) -> Iterator[Event]:
    """The events of an iterable of lines, pulled lazily (for tests and other callers)."""
    reader = LineReader(SyslogClock(year))
    dispatcher = Dispatcher(reject_text or re.compile("greylist", re.IGNORECASE))
    parsed = (reader.parse(line) for line in lines)
    return dispatcher.events(record for record in parsed if record is not None)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.splitlines())}", file=sys.stderr)
    return code


# -- option types: a bad value is a usage error (exit 2) before anything is read -------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90, 30m, 1h, 2d)")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _year(text: str) -> int:
    if not re.fullmatch(r"\d{4}", text) or not 1970 <= int(text) <= 9999:
        raise argparse.ArgumentTypeError(f"{text!r} is not a year (four digits, 1970 or later)")
    return int(text)


def _regex(text: str) -> re.Pattern:
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular expression: {exc}") from None


def _prefix(bits: int):
    def prefix(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= bits:
            raise argparse.ArgumentTypeError(f"{text!r} is not a prefix length from 1 to {bits}")
        return int(text)
    return prefix


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (a name server is never looked up)") from None


if __name__ == "__main__":
    sys.exit(main())
