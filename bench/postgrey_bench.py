"""Benchmark of Debian's postgrey on its no-match path, with and without the generated whitelists.

    python bench/postgrey_bench.py [--runs 5] [--requests 2000] [--db tmpfs|disk|both] [--json FILE]

It prints figures and ratios; it does not pass or fail on speed. It exits 1 when a measurement
is not what it claims to be (a reply other than the greylist action, a whitelist that did not
load), 2 when the set-up failed (Docker, apt, the walk).

postgrey checks a client against its whitelists one entry at a time (a regex per name entry,
a NetAddr::IP within() per address entry), so every entry costs time on every request that no
entry matches: the common case, greylisted mail from unknown clients. The benchmark measures
that path with Debian's stock whitelist alone, then with a whitelist_clients.local added:

* the project's rendering of a walk of tests.support.zones.provider_zone() against the lab DNS
  server (the real walker, spfwalk.update.plan_update: what the spf_whitelist role writes);
* a large provider list as shell-script generators write it (one line per /24 and per /32,
  nothing merged), and the same addresses collapsed by spfwalk.netblocks.collapse and rendered
  by spfwalk.outputs.render.

Each list is measured as requests per second over one persistent connection (wall clock) and
as postgrey's own CPU time per request (/proc/PID/schedstat), which other work on a shared
machine hardly moves. Unless told otherwise (--db), postgrey's database is on tmpfs, so that the
figures are postgrey's work and not the disk's.

Everything runs in one throw-away container (bench-postgrey-<pid>) with Debian's postgrey on
127.0.0.1:10023; the load generator (bench/postgrey_load.py) runs inside it, on loopback. The
only traffic leaving the container is apt's, to the image's own mirror. The walk queries only
the lab DNS server, on a 127.0.0.x address.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Runnable as a plain script from the repo root: the lab helpers live in tests/, the
# walker in plugins/module_utils/ (where Ansible expects it), the container helper here.
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _path in (REPO_ROOT, REPO_ROOT / "plugins" / "module_utils", BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from containers import BenchError, Container, exit_on_signals, fail, host_info, print_host  # noqa: E402

from spfwalk.guards import GuardPolicy  # noqa: E402
from spfwalk.netblocks import collapse  # noqa: E402
from spfwalk.outputs import render  # noqa: E402
from spfwalk.update import plan_update  # noqa: E402
from spfwalk.walker import WalkerOptions, walk_sync  # noqa: E402
from tests.support.dns_lab import start_dns_server  # noqa: E402
from tests.support.zones import PROVIDER_ROOTS, provider_zone  # noqa: E402

# Goal (printed next to the figures, never enforced): a generated, collapsed whitelist keeps at
# least this share of the stock-list request rate.
COLLAPSED_GOAL = 0.75
# Goal of issue 15 (printed, never enforced): postgrey as a Postfix host runs it, behind the
# providers' cidr table (its list holds the static names only: format postgrey-names), keeps at
# least this share of the stock-list rate.
BEHIND_CIDR_GOAL = 0.90

LISTEN = "127.0.0.1:10023"
# Far longer than a run: every timed request is an early retry of a known triplet (greylisted).
DELAY = 3600
TRIPLETS = 100
LOCAL_FILE = "/etc/postgrey/whitelist_clients.local"
STOCK_FILE = "/etc/postgrey/whitelist_clients"
LOAD_SCRIPT = "/root/postgrey_load.py"
NOMATCH_NET = ipaddress.ip_network("203.0.113.0/24")  # what postgrey_load.py sends from

# The large list: RFC 6598 space, never a real sender. Provider-sized ranges that a generator
# writes as one line per /24, scattered /24s, and a/mx hosts written one /32 per line (runs of
# consecutive addresses, as pools are numbered). Blocks are spaced so that they do not merge.
LARGE_POOL = ipaddress.ip_network("100.64.0.0/10")
LARGE_RANGES = [(18, 4), (19, 8), (20, 16), (21, 32), (22, 64), (24, 100)]  # (prefix length, count)
HOST_RUNS, HOST_RUN_LENGTH = 40, 8

DB_PLACES = {
    # BerkeleyDB with transactions: every greylist update is a commit that syncs the log.
    "disk": ("/var/lib/postgrey", "database on the container's disk (overlayfs): Debian's setup, "
                                  "one log sync per request"),
    "tmpfs": ("/run/postgrey-bench", "database on tmpfs: syncs are free, the figure is postgrey's CPU"),
}


@dataclass
class Case:
    key: str
    label: str
    content: str | None  # whitelist_clients.local; None: stock list only
    lines: int = 0  # entries (non-comment lines) in the .local file
    networks: list = field(default_factory=list)  # what the .local file whitelists
    collapsed: bool = False


# -- the lists ------------------------------------------------------------------------------


def entry_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def walked_cases(address: str) -> tuple[Case, Case, dict]:
    """The provider walk, rendered exactly as the spf_whitelist role renders it: the full postgrey
    list, and postgrey's list on a Postfix host, where smtpd asks the providers' cidr table before
    postgrey (format postgrey-names: no networks, postgrey never sees a provider's client)."""
    with start_dns_server(provider_zone(), address) as server:
        report = walk_sync(PROVIDER_ROOTS, WalkerOptions(nameservers=[server.address], port=server.port))
    not_ok = {name: f"{root.status}: {'; '.join(root.errors)}" for name, root in report.roots.items() if not root.ok}
    if not_ok:
        raise BenchError(f"the provider walk failed: {not_ok}")
    # The benchmark zones' IPv6 pool is documentation space, which the guard refuses on real hosts.
    guard = GuardPolicy.from_options(allowed_networks=["2001:db8::/32"])
    plan, names = (plan_update(report, fmt, None, None, None, guard=guard) for fmt in ("postgrey", "postgrey-names"))
    for rendered in (plan, names):
        if rendered.refused or rendered.content is None:
            raise BenchError(f"plan_update refused the walk: {rendered.refused}")
    networks = [ipaddress.ip_network(line) for line in entry_lines(plan.content)]
    case = Case("walk", f"+ provider walk, rendered ({plan.network_count} networks)", plan.content,
                len(entry_lines(plan.content)), networks, collapsed=True)
    behind_cidr = Case("behind_cidr", "+ walk behind the cidr table (postgrey-names)", names.content,
                       len(entry_lines(names.content)))
    walk = {"roots": len(report.roots), "queries_sent": report.queries_sent, "elapsed": report.elapsed,
            "networks": plan.network_count,
            "ipv4": sum(1 for n in networks if n.version == 4), "ipv6": sum(1 for n in networks if n.version == 6)}
    return case, behind_cidr, walk


def large_networks() -> tuple[list, list]:
    """(lines as a /24-and-/32 generator writes them, the blocks they came from)."""
    cursor = int(LARGE_POOL.network_address)
    blocks = []

    def take(size: int) -> ipaddress.IPv4Network:
        nonlocal cursor
        cursor = -(-cursor // size) * size  # align up
        block = ipaddress.ip_network((cursor, 32 - size.bit_length() + 1))
        cursor += 2 * size  # leave a gap as large as the block: neighbours never merge
        return block

    for prefix, count in LARGE_RANGES:
        blocks += [take(2 ** (32 - prefix)) for _ in range(count)]
    blocks += [take(HOST_RUN_LENGTH) for _ in range(HOST_RUNS)]
    if not all(block.subnet_of(LARGE_POOL) for block in blocks):
        raise BenchError("the large list does not fit its pool")
    lines = []
    for block in blocks:
        new_prefix = 24 if block.prefixlen <= 24 else 32
        lines += list(block.subnets(new_prefix=new_prefix))
    return lines, blocks


def large_cases() -> tuple[Case, Case]:
    lines, blocks = large_networks()
    raw = "".join(
        ["# Provider whitelist, one line per /24 and per host (as shell-script generators write it).\n"]
        + [f"{n.network_address}\n" if n.prefixlen == 32 else f"{n}\n" for n in lines])
    merged = collapse(lines)
    if merged != collapse(blocks):
        raise BenchError("collapse() of the large list does not give back its blocks")
    rendered = render("postgrey", merged, None, ["benchmark: the large provider list, collapsed"])
    uncollapsed = Case("large", f"+ large list, uncollapsed ({len(lines)} lines)", raw, len(lines), lines)
    collapsed = Case("large_collapsed", f"+ same addresses, collapsed ({rendered.entry_count} networks)",
                     rendered.content, rendered.entry_count, merged, collapsed=True)
    return uncollapsed, collapsed


def probe_addresses(cases: list[Case]) -> list[str]:
    """A few addresses inside each generated list (first, middle and last IPv4 network)."""
    found: list[str] = []
    for case in cases:
        v4 = [n for n in case.networks if n.version == 4]
        for net in (v4[0], v4[len(v4) // 2], v4[-1]) if v4 else ():
            for address in (net.network_address, net.broadcast_address):
                if str(address) not in found:
                    found.append(str(address))
    return found


def expected_probe(case: Case, addresses: list[str]) -> dict:
    return {a: "DUNNO" if any(ipaddress.ip_address(a) in n for n in case.networks) else "DEFER_IF_PERMIT"
            for a in addresses}


# -- the container --------------------------------------------------------------------------


def set_up(box: Container) -> dict:
    # Before the package starts postgrey: its default --inet=10023 also binds ::1, which the
    # container lacks (LAB.md). --delay keeps every timed request greylisted.
    box.sh("mkdir -p /etc/default")
    box.put("/etc/default/postgrey", options(DB_PLACES["disk"][0]))
    box.apt_install(["postgrey"])
    box.put(LOAD_SCRIPT, (BENCH_DIR / "postgrey_load.py").read_text())
    box.sh(f"install -d -o postgrey -g postgrey -m 0700 {DB_PLACES['tmpfs'][0]}")
    wait_listening(box)
    versions = box.sh(
        "dpkg-query -W -f '${Version}' postgrey; echo; perl -e 'print $^V'; echo;"
        "perl -MNetAddr::IP -e 'print $NetAddr::IP::VERSION'; echo;"
        "perl -MBerkeleyDB -e 'print $BerkeleyDB::db_version'; echo; python3 -V").splitlines()
    stock = box.run("cat", STOCK_FILE)
    stock_entries = entry_lines(stock)
    # postgrey's own classification (read_clients_whitelists): addresses, IPv6, the rest are names.
    addresses = [e for e in stock_entries if re.match(r"^\d{1,3}(\.\d{1,3}){1,3}(/\d{1,2})?$", e)
                 or re.match(r"^.*:.*:.*$", e)]
    return {"postgrey": versions[0], "perl": versions[1], "netaddr_ip": versions[2], "berkeleydb": versions[3],
            "container_python": versions[4], "stock_entries": len(stock_entries),
            "stock_addresses": len(addresses), "stock_names": len(stock_entries) - len(addresses)}


def options(dbdir: str) -> str:
    return f'POSTGREY_OPTS="--inet={LISTEN} --delay={DELAY} --dbdir={dbdir}"\n'


def wait_listening(box: Container, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            box.run("python3", LOAD_SCRIPT, "probe", "192.0.2.1", timeout=30)
            return
        except BenchError:
            time.sleep(0.3)
    status = box.run("systemctl", "status", "--no-pager", "postgrey", check=False)
    raise BenchError(f"postgrey does not answer on {LISTEN}:\n{status}")


def use_database(box: Container, place: str) -> None:
    box.put("/etc/default/postgrey", options(DB_PLACES[place][0]))
    box.run("systemctl", "restart", "postgrey")
    wait_listening(box)


def load_case(box: Container, case: Case, probes: list[str], timeout: float = 15) -> None:
    """Install the case's .local file, SIGHUP postgrey (as the role's handler does), and wait
    until every probe address gets the answer this list must give."""
    if case.content is None:
        box.run("rm", "-f", LOCAL_FILE)
    else:
        box.put(LOCAL_FILE, case.content)
    box.run("systemctl", "kill", "--kill-whom=main", "-s", "HUP", "postgrey")
    expected = expected_probe(case, probes)
    deadline = time.monotonic() + timeout
    got: dict = {}
    while time.monotonic() < deadline:
        got = json.loads(box.run("python3", LOAD_SCRIPT, "probe", *probes))
        if got == expected:
            return
        time.sleep(0.2)
    wrong = {a: (got.get(a), e) for a, e in expected.items() if got.get(a) != e}
    raise MeasurementError(f"{case.key}: the whitelist did not load as expected (address: (got, expected)) {wrong}")


class MeasurementError(RuntimeError):
    """A measurement is not what it claims to be."""


def measure(box: Container, requests: int, pid: int) -> dict:
    result = json.loads(box.run("python3", LOAD_SCRIPT, "run", str(requests), str(TRIPLETS), str(pid),
                                timeout=600))
    if result["actions"] != {"DEFER_IF_PERMIT": requests}:
        raise MeasurementError(f"not every request was greylisted: {result['actions']}")
    result["rate"] = requests / result["elapsed"]
    result["cpu_us"] = result["server_cpu"] * 1e6 / requests
    return result


def bench_place(box: Container, place: str, cases: list[Case], probes: list[str], runs: int,
                requests: int) -> dict:
    use_database(box, place)
    pid = int(box.run("systemctl", "show", "-p", "MainPID", "--value", "postgrey").strip())
    samples: dict[str, list] = {case.key: [] for case in cases}
    # One short unmeasured pass per case: the triplets enter the database, caches warm up.
    for case in cases:
        load_case(box, case, probes)
        measure(box, max(200, requests // 5), pid)
    # Round robin, so that a change of machine load hits every case alike.
    for _ in range(runs):
        for case in cases:
            load_case(box, case, probes)
            samples[case.key].append(measure(box, requests, pid))
    if int(box.run("systemctl", "show", "-p", "MainPID", "--value", "postgrey").strip()) != pid:
        raise MeasurementError("postgrey restarted during the measurements")
    stock = statistics.median(s["rate"] for s in samples["stock"])
    stock_cpu = statistics.median(s["cpu_us"] for s in samples["stock"])
    figures = {}
    for case in cases:
        rates = [s["rate"] for s in samples[case.key]]
        median = statistics.median(rates)
        cpu = statistics.median(s["cpu_us"] for s in samples[case.key])
        figures[case.key] = {
            "label": case.label, "lines": case.lines, "collapsed": case.collapsed,
            "median": median, "min": min(rates), "max": max(rates),
            "ratio": median / stock,
            # postgrey's own CPU time per request: what the list costs, nearly unmoved by other load.
            "cpu_us": cpu,
            "cpu_ratio": stock_cpu / cpu,
            # What each extra entry costs on a request no entry matches.
            "cpu_us_per_entry": (cpu - stock_cpu) / case.lines if case.lines else None,
            "samples": samples[case.key],
        }
    return {"place": place, "dbdir": DB_PLACES[place][0], "what": DB_PLACES[place][1], "cases": figures}


# -- output ---------------------------------------------------------------------------------


def goal(met: bool) -> str:
    return "met" if met else "NOT met"


def print_lists(info: dict, walk: dict, cases: list[Case]) -> None:
    print(f"\npostgrey {info['postgrey']}, Perl {info['perl']}, NetAddr::IP {info['netaddr_ip']}, "
          f"BerkeleyDB {info['berkeleydb']}; load generator: {info['container_python']} in the container")
    print(f"stock list {STOCK_FILE}: {info['stock_entries']} entries "
          f"({info['stock_addresses']} addresses/CIDRs, {info['stock_names']} names/regexes)")
    print(f"provider walk: {walk['roots']} roots against the lab DNS server, {walk['queries_sent']} queries, "
          f"{walk['elapsed'] * 1000:.0f} ms -> {walk['networks']} networks ({walk['ipv4']} IPv4, {walk['ipv6']} IPv6)")
    large = next(c for c in cases if c.key == "large")
    small = next(c for c in cases if c.key == "large_collapsed")
    per_24 = sum(1 for n in large.networks if n.prefixlen == 24)
    print(f"large list: {large.lines} lines ({per_24} x /24, {large.lines - per_24} x /32) -> collapse() -> "
          f"{small.lines} networks, same addresses")
    print(f"no-match path: clients from {NOMATCH_NET} (in no list), {TRIPLETS} triplets cycled, "
          f"--delay={DELAY}: every timed request is an early retry -> DEFER_IF_PERMIT (checked)")


def print_place(result: dict, runs: int, requests: int) -> None:
    print(f"\n== {result['what']} ({result['dbdir']}); {requests} requests x {runs} runs, median ==")
    print(f"  {'whitelist_clients.local':<44} {'lines':>5} {'req/s':>7} {'min':>6} {'max':>6} {'/stock':>7} "
          f"{'| CPU us/req':>11} {'/stock':>7} {'us/entry':>8}")
    for figures in result["cases"].values():
        per_entry = f"{figures['cpu_us_per_entry']:8.2f}" if figures["cpu_us_per_entry"] is not None else ""
        label = "none (stock list only)" if figures is result["cases"]["stock"] else figures["label"].removeprefix("+ ")
        print(f"  {label:<44} {figures['lines']:>5} {figures['median']:>7.0f} {figures['min']:>6.0f} "
              f"{figures['max']:>6.0f} {figures['ratio']:>6.2f}x | {figures['cpu_us']:>9.0f} "
              f"{figures['cpu_ratio']:>6.2f}x {per_entry:>8}")
    print("  (req/s: wall clock, one persistent connection; CPU us/req: postgrey's own CPU time per request, "
          "which other load hardly moves; /stock: rate relative to the stock list alone)")
    for figures in result["cases"].values():
        if figures["collapsed"]:
            print(f"  goal: {figures['label'].removeprefix('+ ')} >= {COLLAPSED_GOAL:.0%} of the stock rate: "
                  f"{figures['ratio']:.0%} by req/s, {figures['cpu_ratio']:.0%} by CPU: "
                  f"{goal(figures['ratio'] >= COLLAPSED_GOAL)} / {goal(figures['cpu_ratio'] >= COLLAPSED_GOAL)}")
    behind = result["cases"]["behind_cidr"]
    print(f"  goal: postgrey behind Postfix's cidr table >= {BEHIND_CIDR_GOAL:.0%} of the stock rate: "
          f"{behind['ratio']:.0%} by req/s, {behind['cpu_ratio']:.0%} by CPU: "
          f"{goal(behind['ratio'] >= BEHIND_CIDR_GOAL)} / {goal(behind['cpu_ratio'] >= BEHIND_CIDR_GOAL)}")
    large, small = result["cases"]["large"], result["cases"]["large_collapsed"]
    print(f"  collapsing the large list: {small['median'] / large['median']:.1f}x the request rate "
          f"({large['cpu_us'] / small['cpu_us']:.1f}x by CPU)")
    # How many collapsed entries the goal leaves room for, at the collapsed list's cost per entry.
    stock_cpu = result["cases"]["stock"]["cpu_us"]
    per_entry = small["cpu_us_per_entry"]
    if per_entry and per_entry > 0:
        budget = (1 / COLLAPSED_GOAL - 1) * stock_cpu / per_entry
        print(f"  each entry of the collapsed list costs {per_entry:.2f} us of CPU per unmatched request "
              f"(uncollapsed: {large['cpu_us_per_entry']:.2f}); at {stock_cpu:.0f} us per request with the stock "
              f"list, the goal ({COLLAPSED_GOAL:.0%}) leaves room for about {budget:.0f} entries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per whitelist (default 5; median)")
    parser.add_argument("--requests", type=int, default=2000, help="policy requests per run (default 2000)")
    parser.add_argument("--db", choices=["tmpfs", "disk", "both"], default="tmpfs",
                        help="where postgrey's database lives: tmpfs (default; postgrey's CPU cost), disk "
                             "(Debian's place: adds a log sync per request, which depends on the disk and on "
                             "other I/O), or both, one after the other")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the raw figures here")
    parser.add_argument("--dns-address", default="127.0.0.78", help="lab DNS server address for the walk (127.0.0.x)")
    args = parser.parse_args(argv)
    if not args.dns_address.startswith("127."):
        parser.error("the walk only ever talks to a lab server on a loopback address")
    if args.runs < 1 or args.requests < 1:
        parser.error("--runs and --requests must be at least 1")
    exit_on_signals()
    started = time.monotonic()
    host = host_info()
    print_host(host)
    places = ["tmpfs", "disk"] if args.db == "both" else [args.db]

    try:
        walk_case, behind_cidr, walk = walked_cases(args.dns_address)
        large, large_collapsed = large_cases()
        cases = [Case("stock", "stock list only", None), walk_case, behind_cidr, large, large_collapsed]
        for case in cases[1:]:
            if any(net.overlaps(NOMATCH_NET) for net in case.networks):
                raise BenchError(f"{case.key} whitelists part of {NOMATCH_NET}: the no-match path would match")
        probes = probe_addresses(cases[1:])
    except BenchError as exc:
        return fail(str(exc))

    results = []
    status = 0
    with Container("postgrey") as box:
        try:
            print(f"container {box.name}: installing postgrey ...", flush=True)
            info = set_up(box)
            print(f"  ready after {time.monotonic() - started:.0f} s")
            print_lists(info, walk, cases)
            for place in places:
                result = bench_place(box, place, cases, probes, args.runs, args.requests)
                print_place(result, args.runs, args.requests)
                results.append(result)
        except BenchError as exc:
            return fail(str(exc))
        except MeasurementError as exc:
            print(f"\nmeasurement invalid: {exc}", file=sys.stderr)
            status = 1
    print(f"\n(total benchmark time {time.monotonic() - started:.1f} s, container removed)")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": host, "container": info, "walk": walk,
            "lists": {c.key: {"label": c.label, "lines": c.lines} for c in cases},
            "requests": args.requests, "runs": args.runs, "triplets": TRIPLETS, "delay": DELAY,
            "goal_collapsed_ratio": COLLAPSED_GOAL, "goal_behind_cidr_ratio": BEHIND_CIDR_GOAL,
            "results": results}, indent=1))
        print(f"raw figures written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
