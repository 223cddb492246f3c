"""Benchmark of the SPF netblock walker against the lab DNS server.

    python bench/walker_bench.py [--runs 5] [--quick] [--json FILE]

It prints figures and ratios; it does not pass or fail on timing (machines differ too
much for that). It exits non-zero only when a walk itself goes wrong, because then its
timings mean nothing: 1 when a root of some walk is not ok, 2 when the walk raised.

The lab server injects a fixed delay into every answer, so the walk's lower bound is
known from the zone data alone: the longest chain of answers that must arrive one after
another (tests.support.zones.critical_path) times that delay. A walker that looks up
every term of a record concurrently should land close to that floor, and far below the
serial time (one question at a time).

Only the lab server on 127.0.0.x is ever queried.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

# Runnable as a plain script from the repo root: the lab helpers live in tests/, the
# walker in plugins/module_utils/ (where Ansible expects it).
REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "plugins" / "module_utils"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import dns.asyncquery  # noqa: E402
import dns.message  # noqa: E402
import dns.version  # noqa: E402

from spfwalk.dns_client import EDNS_PAYLOAD, DnsClient  # noqa: E402
from spfwalk.walker import WalkerOptions, walk_sync  # noqa: E402
from tests.support.dns_lab import start_dns_server  # noqa: E402
from tests.support.zones import PROVIDER_ROOTS, critical_path, provider_zone, synthetic_tree  # noqa: E402

# Goals for the provider walk (printed next to the figures, never enforced).
FLOOR_GOAL = 1.3  # median concurrent time / critical-path floor, at most
SERIAL_GOAL = 8.0  # serial time / median concurrent time, at least

TREE_ROOT = "tree.test"
TREE_FANOUT = 4
TREE_DEPTH = 5


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "dnspython": dns.version.version,
        # Other work on a small machine shifts every figure: read them with this in mind.
        "loadavg_1min": os.getloadavg()[0],
    }


def server_latency(server, names: list[str], singles: int = 40, bursts: int = 10) -> dict:
    """The lab server's own answer time, seen from a plain blocking socket (no asyncio, no walker).

    Part of every hop of a walk is the server's, not the walker's: its injected delay,
    plus its own work and timer slack. A burst of one question per name is what the
    first level of the provider walk sends.
    """
    wires = [dns.message.make_query(name, "TXT", use_edns=0, payload=1232).to_wire() for name in names]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect((server.address, server.port))
        single = []
        for i in range(singles):
            started = time.perf_counter()
            sock.send(wires[i % len(wires)])
            sock.recv(65535)
            single.append(time.perf_counter() - started)
        burst = []
        for _ in range(bursts):
            started = time.perf_counter()
            for wire in wires:
                sock.send(wire)
            for _wire in wires:
                sock.recv(65535)
            burst.append(time.perf_counter() - started)
    return {"single_median": statistics.median(single), "single_min": min(single),
            "burst_size": len(wires), "burst_last_median": statistics.median(burst)}


def one_walk(server, roots: list[str], **options) -> dict:
    """Walk once with a fresh walker (hence a fresh DNS cache) and count both sides' queries."""
    server.reset_log()
    # The server is another process, so this is the walker's own CPU time: with every
    # question in flight at once, it is what separates the walk from its floor.
    cpu_started = time.process_time()
    report = walk_sync(roots, WalkerOptions(nameservers=[server.address], port=server.port, **options))
    cpu = time.process_time() - cpu_started
    # The server logs a query before it delays or answers it, so every query of a
    # finished walk is already in the log.
    received = server.queries()
    return {
        "elapsed": report.elapsed,
        "client_cpu": cpu,
        "queries_sent": report.queries_sent,
        "unique_questions": report.unique_questions,
        "server_received": len(received),
        "server_unique_pairs": len({(entry["name"], entry["type"]) for entry in received}),
        "server_transports": dict(Counter(entry["transport"] for entry in received)),
        # A root that is not ok makes the timing meaningless (the walk stopped early).
        "not_ok": {name: _why(root) for name, root in report.roots.items() if not root.ok},
    }


def _why(root) -> str:
    more = f" (+{len(root.errors) - 1} more errors)" if len(root.errors) > 1 else ""
    return f"{root.status}: {root.errors[0] if root.errors else '?'}{more}"


def repeat(server, roots: list[str], runs: int, **options) -> dict:
    samples = [one_walk(server, roots, **options) for _ in range(runs)]
    times = [sample["elapsed"] for sample in samples]
    return {
        "options": options,
        "runs": runs,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "client_cpu_median": statistics.median(sample["client_cpu"] for sample in samples),
        "samples": samples,
        "failed_runs": sum(1 for sample in samples if sample["not_ok"]),
    }


def queries_match(result: dict) -> bool:
    """In every run, each question went on the wire once and client and server agree.

    A UDP answer truncated and retried over TCP would show up twice in the server's log
    (udp + tcp) but once in queries_sent; the lab zones stay under the UDP limit.
    """
    return all(
        s["queries_sent"] == s["server_received"] == s["server_unique_pairs"] for s in result["samples"]
    )


def bench_providers(address: str, delay_ms: int, runs: int) -> dict:
    zone = provider_zone(delay_ms=delay_ms)
    depth = max(critical_path(zone, root) for root in PROVIDER_ROOTS)
    floor = depth * delay_ms / 1000
    with start_dns_server(provider_zone(delay_ms=0), address) as server:
        latency_0 = server_latency(server, PROVIDER_ROOTS)
    with start_dns_server(zone, address) as server:
        latency = server_latency(server, PROVIDER_ROOTS)
        # Unmeasured warm-up: the first walk of a process pays one-off costs (lazy imports,
        # first-call caches) that are not what this benchmark is about; it is reported apart.
        warmup = one_walk(server, PROVIDER_ROOTS)
        concurrent = repeat(server, PROVIDER_ROOTS, runs)
        serial = repeat(server, PROVIDER_ROOTS, runs, max_in_flight=1)
    return {
        "server_latency_delay_0": latency_0,
        "server_latency": latency,
        # The floor if every answer took what one answer takes from this server.
        "server_floor": depth * latency["single_median"],
        "roots": len(PROVIDER_ROOTS),
        "delay_ms": delay_ms,
        "critical_path_answers": depth,
        "floor": floor,
        "warmup_elapsed": warmup["elapsed"],
        "concurrent": concurrent,
        "serial": serial,
        "floor_ratio": concurrent["median"] / floor,
        "serial_ratio": None if serial["failed_runs"] else serial["median"] / concurrent["median"],
        "queries_match": queries_match(concurrent) and queries_match(serial),
        "failed_runs": concurrent["failed_runs"] + serial["failed_runs"] + bool(warmup["not_ok"]),
    }


def bench_tree(address: str, delay_ms: int, runs: int, in_flight: list[int], quick: bool) -> dict:
    zone = synthetic_tree(fanout=TREE_FANOUT, depth=TREE_DEPTH, delay_ms=delay_ms, root=TREE_ROOT)
    names = len(zone["records"])
    depth = critical_path(zone, TREE_ROOT)  # = TREE_DEPTH: one TXT answer per level
    floor = depth * delay_ms / 1000
    # The tree breaks the RFC's 10-lookup limit on purpose: expand it anyway.
    options = {"expand_over_limit": True}
    with start_dns_server(zone, address) as server:
        warmup = one_walk(server, [TREE_ROOT], **options)  # as above
        concurrent = repeat(server, [TREE_ROOT], runs, **options)
        # With max_in_flight = m, each in-flight slot answers at most one question per
        # delay, so no walk can beat ceil(names / m) delays, nor the depth.
        sweep = {}
        for m in in_flight:
            result = repeat(server, [TREE_ROOT], runs, max_in_flight=m, **options)
            result["slot_floor"] = max(depth, math.ceil(names / m)) * delay_ms / 1000
            sweep[m] = result
        # Serial is ~names x delay (7 s for 341 names): one run says enough.
        serial = None if quick else repeat(server, [TREE_ROOT], 1, max_in_flight=1, **options)
    default_slots = WalkerOptions().max_in_flight
    measured = [concurrent, *sweep.values(), *([serial] if serial else [])]
    return {
        "names": names,
        "delay_ms": delay_ms,
        "depth": depth,
        "floor": floor,
        "default_max_in_flight": default_slots,
        "default_slot_floor": max(depth, math.ceil(names / default_slots)) * delay_ms / 1000,
        "concurrent": concurrent,
        "serial": serial,
        "floor_ratio": concurrent["median"] / floor,
        "serial_ratio": serial["median"] / concurrent["median"] if serial and not serial["failed_runs"] else None,
        "in_flight": sweep,
        "queries_match": all(queries_match(r) for r in measured),
        "failed_runs": sum(r["failed_runs"] for r in measured) + bool(warmup["not_ok"]),
    }


# -- output ----------------------------------------------------------------------------


def bench_client(address: str, runs: int, in_flight: int = 32) -> dict:
    """CPU per question: the walker's DNS client against dnspython's own dns.asyncquery.udp().

    Both ask the 341 tree names once, at most ``in_flight`` at a time, from a server that answers
    at once: what remains is client CPU. If the walker's client costs about what dnspython's
    one-shot query costs, the walk's distance to its floor is dnspython's and asyncio's per-query
    work, not the walker's.
    """
    zone = synthetic_tree(fanout=TREE_FANOUT, depth=TREE_DEPTH, delay_ms=0, root=TREE_ROOT)
    names = list(zone["records"])

    async def walker_client(server):
        client = DnsClient([server.address], port=server.port, max_in_flight=in_flight)
        answers = await asyncio.gather(*(client.lookup(name, "TXT") for name in names))
        return sum(answer.status == "found" for answer in answers)

    async def dnspython_udp(server):
        slots = asyncio.Semaphore(in_flight)

        async def one(name):
            async with slots:
                query = dns.message.make_query(name, "TXT", use_edns=0, payload=EDNS_PAYLOAD)
                reply = await dns.asyncquery.udp(query, server.address, timeout=2.0, port=server.port)
                return bool(reply.answer)

        return sum(await asyncio.gather(*(one(name) for name in names)))

    cpu = {"walker_client": [], "dnspython_udp": []}
    with start_dns_server(zone, address) as server:
        for run in range(runs + 1):  # the first round warms both up and is not counted
            for label, client in (("walker_client", walker_client), ("dnspython_udp", dnspython_udp)):
                started = time.process_time()
                found = asyncio.run(client(server))
                if found != len(names):
                    raise RuntimeError(f"{label}: {found} of {len(names)} names answered")
                if run:
                    cpu[label].append((time.process_time() - started) / len(names))
    medians = {label: statistics.median(values) for label, values in cpu.items()}
    return {"questions": len(names), "in_flight": in_flight, "cpu_per_question": cpu, "median": medians,
            "ratio": medians["walker_client"] / medians["dnspython_udp"]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def goal(met: bool) -> str:
    return "met" if met else "NOT met"


def failed(result: dict) -> str:
    return f"   ** {result['failed_runs']} of {result['runs']} runs FAILED **" if result["failed_runs"] else ""


def print_cpu(result: dict) -> None:
    queries = result["samples"][-1]["queries_sent"] or 1
    cpu = result["client_cpu_median"]
    print(f"  client CPU per walk   {ms(cpu)}   ({cpu / queries * 1e6:.0f} us per query; walker + DNS client, "
          "median)")


def print_queries(result: dict, match: bool) -> None:
    s = result["samples"][-1]  # identical in every run when they match; the JSON has them all
    transports = ", ".join(f"{k} {v}" for k, v in sorted(s["server_transports"].items()))
    print("  queries (concurrent, last run):")
    print(f"    client: queries sent {s['queries_sent']}, unique questions {s['unique_questions']}")
    print(f"    server: queries received {s['server_received']} ({transports}), "
          f"unique (name, type) pairs {s['server_unique_pairs']}")
    print(f"  queries sent = unique pairs: {'yes' if match else 'no'}  (checked in every run)")


def print_providers(p: dict) -> None:
    c, s = p["concurrent"], p["serial"]
    print(f"\n== {p['roots']} provider roots, {p['delay_ms']} ms per answer, {c['runs']} runs ==")
    print(f"  critical-path floor   {ms(p['floor'])}   "
          f"({p['critical_path_answers']} answers x {p['delay_ms']} ms)")
    l0, ld = p["server_latency_delay_0"], p["server_latency"]
    print(f"  lab server latency    {ms(l0['single_median'])}   one question, delay 0 (raw socket client)")
    print(f"                        {ms(ld['single_median'])}   one question, delay {p['delay_ms']} ms")
    print(f"                        {ms(ld['burst_last_median'])}   last answer of {ld['burst_size']} "
          f"sent at once, delay {p['delay_ms']} ms")
    print(f"  floor incl. server    {ms(p['server_floor'])}   "
          f"({p['critical_path_answers']} x one-question latency; median / this "
          f"{p['concurrent']['median'] / p['server_floor']:.2f} x)")
    print(f"  first walk (warm-up)  {ms(p['warmup_elapsed'])}   (not counted)")
    print(f"  concurrent median     {ms(c['median'])}   min {ms(c['min'])}   max {ms(c['max'])}{failed(c)}")
    print(f"  serial (in-flight 1)  {ms(s['median'])}   min {ms(s['min'])}{failed(s)}")
    print(f"  median / floor        {p['floor_ratio']:8.2f} x    goal <= {FLOOR_GOAL}: "
          f"{goal(p['floor_ratio'] <= FLOOR_GOAL)}")
    if p["serial_ratio"] is None:
        print("  serial / concurrent        n/a    (the serial walk failed)")
    else:
        print(f"  serial / concurrent   {p['serial_ratio']:8.2f} x    goal >= {SERIAL_GOAL}: "
              f"{goal(p['serial_ratio'] >= SERIAL_GOAL)}")
    print_cpu(c)
    print_queries(c, p["queries_match"])


def print_client(c: dict) -> None:
    m = c["median"]
    print(f"\n== DNS client CPU per question: {c['questions']} questions, {c['in_flight']} in flight, "
          f"server answering at once ==")
    print(f"  walker's DnsClient          {m['walker_client'] * 1e6:6.0f} us")
    print(f"  dns.asyncquery.udp()        {m['dnspython_udp'] * 1e6:6.0f} us   (dnspython's one-shot query)")
    print(f"  ratio                       {c['ratio']:6.2f} x")


def print_tree(t: dict) -> None:
    c, s = t["concurrent"], t["serial"]
    print(f"\n== synthetic tree {TREE_ROOT}: {t['names']} names (fanout {TREE_FANOUT}, depth {t['depth']}), "
          f"{t['delay_ms']} ms per answer, {c['runs']} runs ==")
    print(f"  depth floor           {ms(t['floor'])}   ({t['depth']} answers x {t['delay_ms']} ms)")
    print(f"  slot floor            {ms(t['default_slot_floor'])}   (max(depth, ceil({t['names']}/"
          f"{t['default_max_in_flight']})) x {t['delay_ms']} ms: max_in_flight {t['default_max_in_flight']} "
          "caps the rate)")
    print(f"  concurrent median     {ms(c['median'])}   min {ms(c['min'])}   max {ms(c['max'])}{failed(c)}")
    if s:
        print(f"  serial (in-flight 1)  {ms(s['median'])}   (1 run){failed(s)}")
    else:
        print("  serial (in-flight 1)   skipped (--quick)")
    print(f"  median / depth floor  {t['floor_ratio']:8.2f} x")
    print(f"  median / slot floor   {c['median'] / t['default_slot_floor']:8.2f} x")
    if t["serial_ratio"] is not None:
        print(f"  serial / concurrent   {t['serial_ratio']:8.2f} x")
    elif s:
        print("  serial / concurrent        n/a    (the serial walk failed)")
    print_cpu(c)
    print("  effect of max_in_flight:")
    print(f"    {'in-flight':>9} {'median':>11} {'min':>11} {'slot floor':>11} {'/slot floor':>11} "
          f"{'/depth floor':>12}")
    for m, r in t["in_flight"].items():
        print(f"    {m:>9} {ms(r['median']):>11} {ms(r['min']):>11} {ms(r['slot_floor']):>11} "
              f"{r['median'] / r['slot_floor']:>10.2f}x {r['median'] / t['floor']:>11.2f}x{failed(r)}")
    print_queries(c, t["queries_match"])


def print_failures(*sections: dict) -> None:
    """The first failure of each measurement, so that the cause is visible without the JSON."""
    for section in sections:
        results = [section["concurrent"], section["serial"], *section.get("in_flight", {}).values()]
        for result in filter(None, results):
            for sample in result["samples"]:
                if sample["not_ok"]:
                    print(f"  {result['options'] or 'default options'}: {sample['not_ok']}", file=sys.stderr)
                    break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions per measurement (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="skip the ~7 s serial walk of the synthetic tree")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the raw figures here")
    parser.add_argument("--delay-ms", type=int, default=20, help="delay the lab server adds to every answer")
    parser.add_argument("--address", default="127.0.0.77", help="lab server address (127.0.0.x)")
    # 512 > 341 names: no limit at all, for comparison.
    parser.add_argument("--in-flight", default="8,32,128,512",
                        help="max_in_flight values to try on the synthetic tree (default 8,32,128,512)")
    args = parser.parse_args(argv)
    if not args.address.startswith("127."):
        parser.error("the benchmark only ever talks to a lab server on a loopback address")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    in_flight = [int(value) for value in args.in_flight.split(",") if value]

    info = machine()
    print(f"machine: nproc {info['nproc']} (cpu_count {info['cpu_count']}), load {info['loadavg_1min']:.2f}, "
          f"{info['implementation']} {info['python']}, dnspython {info['dnspython']}, {info['platform']}")
    started = time.monotonic()
    try:
        providers = bench_providers(args.address, args.delay_ms, args.runs)
        print_providers(providers)
        tree = bench_tree(args.address, args.delay_ms, args.runs, in_flight, args.quick)
        print_tree(tree)
        client = bench_client(args.address, args.runs)
        print_client(client)
    except Exception as exc:
        # The walker (or the lab) raised: there is nothing meaningful to time.
        print(f"\nwalk raised {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"\n(total benchmark time {time.monotonic() - started:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "providers": providers, "tree": tree, "client": client},
                                          indent=1))
        print(f"raw figures written to {args.json}")
    failures = providers["failed_runs"] + tree["failed_runs"]
    if failures:
        # Timings of a walk that ended in errors mean nothing: make the run fail.
        print(f"\n{failures} walk(s) had roots that are not ok:", file=sys.stderr)
        print_failures(providers, tree)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
