"""From the aggregator's tables to the report: a dict (the JSON schema) and its text rendering."""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .aggregate import Aggregator, Pair, Triplet

SCHEMA_VERSION = 1
PASSED = "passed"
PASSED_ELSEWHERE = "passed_elsewhere"
RETRIED_NOT_PASSED = "retried_not_passed"
NEVER_RETRIED = "never_retried"
TOO_RECENT = "too_recent"
OUTCOMES = (PASSED, PASSED_ELSEWHERE, RETRIED_NOT_PASSED, NEVER_RETRIED, TOO_RECENT)
MAX_POOL_ADDRESSES = 64
PROVIDERS_EXTRA = "spf_whitelist_providers_extra"
STATIC_ENTRIES = "spf_whitelist_static_entries"
NULL_SENDER = "<>"

# Second-level labels under which registrations sit one level deeper (example.co.uk).
_SECOND_LEVEL = {"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"}

# domain -> (status, networks); None when the domain was not checked.
SpfLookup = Callable[[list[str]], dict[str, tuple[str, list]]]


@dataclass
class Options:
    min_age: float = 3600.0
    inputs: tuple[str, ...] = ()
    lines: int = 0
    unparsed: int = 0
    version: str = "unknown"


def build(aggregator: Aggregator, options: Options, spf: SpfLookup | None = None) -> dict:
    last = aggregator.last_time or 0.0
    cutoff = last - options.min_age
    triplet_counts = Counter(_triplet_outcome(t, aggregator.pairs[(k[1], k[2])], cutoff)
                             for k, t in aggregator.triplets.items())
    attempts = _pair_attempts(aggregator)
    pair_outcomes = {key: _pair_outcome(pair, attempts[key], cutoff) for key, pair in aggregator.pairs.items()}
    pools = _pools(aggregator, pair_outcomes, spf)
    return {
        "schema": SCHEMA_VERSION,
        "generator": f"greylist-report {options.version}",
        "inputs": list(options.inputs),
        "lines": options.lines,
        "lines_unparsed": options.unparsed,
        "span": _span(aggregator),
        "min_age": options.min_age,
        "events": {"greylisted": aggregator.greylist_events, "passed": aggregator.pass_events},
        "triplets": {"greylisted": len(aggregator.triplets), **{o: triplet_counts.get(o, 0) for o in OUTCOMES}},
        "messages": {"greylisted": len(aggregator.pairs),
                     **{o: sum(1 for v in pair_outcomes.values() if v == o) for o in OUTCOMES if o != PASSED_ELSEWHERE},
                     "delay": _distribution(_delays(aggregator.pairs.values()))},
        "by_sender_domain": _groups(aggregator, pair_outcomes, lambda key, pair: _domain(key[0])),
        "by_client_network": _groups(aggregator, pair_outcomes, lambda key, pair: pair.first_network),
        "pools": pools,
        "whitelist": _suggestions(pools),
    }


# -- outcomes --------------------------------------------------------------------------------

def _triplet_outcome(triplet: Triplet, pair: Pair, cutoff: float) -> str:
    if triplet.first_passed is not None:
        return PASSED
    if pair.first_passed is not None:
        return PASSED_ELSEWHERE  # from another network of a pool, or let in by a whitelist
    if triplet.first_greylisted > cutoff:
        return TOO_RECENT
    if triplet.attempts > 1 or len(pair.networks) > 1:
        return RETRIED_NOT_PASSED
    return NEVER_RETRIED


def _pair_outcome(pair: Pair, attempts: int, cutoff: float) -> str:
    if pair.first_passed is not None:
        return PASSED
    if pair.first_greylisted > cutoff:
        return TOO_RECENT
    return RETRIED_NOT_PASSED if attempts > 1 else NEVER_RETRIED


def _pair_attempts(aggregator: Aggregator) -> Counter:
    attempts: Counter = Counter()
    for (_network, sender, recipient), triplet in aggregator.triplets.items():
        attempts[(sender, recipient)] += triplet.attempts
    return attempts


def _delays(pairs) -> list[float]:
    return [pair.first_passed - pair.first_greylisted for pair in pairs if pair.first_passed is not None]


# -- figures ---------------------------------------------------------------------------------

def percentile(values: list[float], share: float) -> float:
    """Nearest rank: a delay some message really had, never an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _distribution(delays: list[float]) -> dict:
    if not delays:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {"count": len(delays), "p50": percentile(delays, 0.50), "p95": percentile(delays, 0.95),
            "max": max(delays)}


def _groups(aggregator: Aggregator, outcomes: dict, group_of) -> list[dict]:
    members: dict[str, list] = defaultdict(list)
    for key, pair in aggregator.pairs.items():
        members[group_of(key, pair)].append((key, pair))
    rows = []
    for group, items in members.items():
        counts = Counter(outcomes[key] for key, _pair in items)
        rows.append({"name": group, "messages": len(items), "passed": counts[PASSED],
                     "retried_not_passed": counts[RETRIED_NOT_PASSED], "never_retried": counts[NEVER_RETRIED],
                     "too_recent": counts[TOO_RECENT], "delay": _distribution(_delays(p for _k, p in items))})
    rows.sort(key=lambda row: (-row["messages"], row["name"]))
    return rows


def _span(aggregator: Aggregator) -> dict:
    first, last = aggregator.first_time, aggregator.last_time
    if first is None or last is None:
        return {"first": None, "last": None, "seconds": 0}
    return {"first": _iso(first), "last": _iso(last), "seconds": last - first}


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- pools -----------------------------------------------------------------------------------

def base_domain(name: str) -> str:
    """mail-a.outbound.example.com -> example.com; mx.example.co.uk -> example.co.uk (no PSL)."""
    labels = name.lower().rstrip(".").split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def _pool_reasons(pair: Pair) -> list[str]:
    """Why a sender's retries of one message look like a pool's; empty when greylisting saw one client.

    Only retries from several triplet networks hurt (the daemon sees a new client each time);
    reverse names under one domain then tell a provider's pool from unrelated hosts.
    """
    if len(pair.networks) < 2:
        return []
    domains = {base_domain(name) for name in pair.names}
    return ["names", "networks"] if len(pair.names) > 1 and len(domains) == 1 else ["networks"]


def _pools(aggregator: Aggregator, outcomes: dict, spf: SpfLookup | None) -> list[dict]:
    by_domain: dict[str, list] = defaultdict(list)
    for key, pair in aggregator.pairs.items():
        reasons = _pool_reasons(pair)
        if reasons:
            by_domain[_domain(key[0])].append((key, pair, reasons))
    checked = spf([d for d in sorted(by_domain) if d != NULL_SENDER]) if spf and by_domain else {}
    pools = []
    for domain, items in by_domain.items():
        addresses = sorted({a for _k, pair, _r in items for a in pair.addresses}, key=_address_order)
        names = Counter(base_domain(n) for _k, pair, _r in items for n in pair.names)
        counts = Counter(outcomes[key] for key, _pair, _r in items)
        pool = {
            "sender_domain": domain,
            "messages": len(items),
            "example": {"sender": items[0][0][0], "recipient": items[0][0][1]},
            "reasons": sorted({reason for _k, _p, reasons in items for reason in reasons}),
            "addresses": addresses[:MAX_POOL_ADDRESSES],
            "address_count": len(addresses),
            "networks": sorted({n for _k, pair, _r in items for n in pair.networks}, key=_network_order),
            "name_domains": [name for name, _count in sorted(names.items(), key=lambda item: (-item[1], item[0]))],
            "passed": counts[PASSED],
            "never_passed": len(items) - counts[PASSED] - counts[TOO_RECENT],
            "delay": _distribution(_delays(pair for _k, pair, _r in items)),
            "spf": _coverage(checked.get(domain), addresses) if spf else None,
        }
        pool["whitelist"] = _whitelist_line(domain, pool["spf"], addresses)
        pools.append(pool)
    pools.sort(key=lambda pool: (-pool["messages"], -pool["address_count"], pool["sender_domain"]))
    return pools


def _coverage(result: tuple[str, list] | None, addresses: list[str]) -> dict:
    if result is None:
        return {"status": "not checked", "covered": [], "not_covered": addresses}
    status, networks = result
    covered = [a for a in addresses if any(_contains(network, a) for network in networks)]
    return {"status": status, "covered": covered, "not_covered": [a for a in addresses if a not in covered]}


def _contains(network, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except (ValueError, TypeError):
        return False


def _whitelist_line(domain: str, spf: dict | None, addresses: list[str]) -> dict:
    """The inventory variables that would let this pool through greylisting."""
    if spf is not None and spf["covered"] and domain != NULL_SENDER:
        line = {PROVIDERS_EXTRA: [domain]}
        if spf["not_covered"]:
            line[STATIC_ENTRIES] = spf["not_covered"]
        return line
    return {STATIC_ENTRIES: addresses}


def _suggestions(pools: list[dict]) -> dict:
    merged: dict[str, dict[str, None]] = {PROVIDERS_EXTRA: {}, STATIC_ENTRIES: {}}  # ordered sets
    for pool in pools:
        for variable, values in pool["whitelist"].items():
            merged[variable].update(dict.fromkeys(values))
    return {variable: list(values) for variable, values in merged.items()}


def _domain(sender: str) -> str:
    return sender.rpartition("@")[2].lower() if sender else NULL_SENDER


def _address_order(address: str):
    try:
        ip = ipaddress.ip_address(address)
        return (ip.version, int(ip), address)
    except ValueError:
        return (9, 0, address)


def _network_order(network: str):
    try:
        net = ipaddress.ip_network(network)
        return (net.version, int(net.network_address), network)
    except ValueError:
        return (9, 0, network)


# -- text ------------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def render_text(report: dict, top: int = 10) -> str:
    out: list[str] = []
    span = report["span"]
    out.append(f"greylist-report: {len(report['inputs'])} input(s), {report['lines']} lines "
               f"({report['lines_unparsed']} about mail but in no known log format)")
    if span["first"] is None:
        out.append("no greylisting found in the log")
        return "\n".join(out) + "\n"
    out.append(f"log time {span['first'].replace('T', ' ')} to {span['last'].replace('T', ' ')} "
               f"({duration(span['seconds'])})")
    t = report["triplets"]
    out += ["", f"Triplets greylisted: {t['greylisted']}",
            f"  passed later:                          {t[PASSED]}",
            f"  passed from another address (a pool):  {t[PASSED_ELSEWHERE]}",
            f"  retried, never passed:                 {t[RETRIED_NOT_PASSED]}",
            f"  never retried:                         {t[NEVER_RETRIED]}",
            f"  too recent to judge:                   {t[TOO_RECENT]} "
            f"(first try less than {duration(report['min_age'])} before the last line)"]
    m = report["messages"]
    d = m["delay"]
    out += ["", f"Messages (sender + recipient) greylisted: {m['greylisted']}; passed {m[PASSED]}, "
            f"retried but never passed {m[RETRIED_NOT_PASSED]}, never retried {m[NEVER_RETRIED]}, "
            f"too recent {m[TOO_RECENT]}",
            f"Delay until accepted: p50 {duration(d['p50'])}, p95 {duration(d['p95'])}, max {duration(d['max'])}"]
    out += _table("Per sender domain", report["by_sender_domain"], top)
    out += _table("Per client network (of the first try)", report["by_client_network"], top)
    out += _pool_lines(report["pools"])
    return "\n".join(out) + "\n"


def _table(title: str, rows: list[dict], top: int) -> list[str]:
    shown = rows[:top]
    more = f", {len(rows) - len(shown)} more in --json" if len(rows) > len(shown) else ""
    width = max([len(row["name"]) for row in shown] + [6])
    lines = ["", f"{title} (top {len(shown)} by messages{more}):",
             f"  {'name':<{width}}  messages  passed  never retried  p50      p95      max"]
    for row in shown:
        d = row["delay"]
        lines.append(f"  {row['name']:<{width}}  {row['messages']:>8}  {row['passed']:>6}  {row['never_retried']:>13}  "
                     f"{duration(d['p50']):<7}  {duration(d['p95']):<7}  {duration(d['max'])}")
    return lines


def _pool_lines(pools: list[dict]) -> list[str]:
    lines = ["", "Pools that greylisting is hurting (one sender and recipient retried from several networks):"]
    if not pools:
        return [*lines, "  none"]
    for pool in pools:
        d = pool["delay"]
        names = f", names under {', '.join(pool['name_domains'][:3])}" if pool["name_domains"] else ""
        lines.append(f"  {pool['sender_domain']}: {pool['messages']} message(s) from {pool['address_count']} "
                     f"address(es) in {len(pool['networks'])} network(s){names}; delay p50 {duration(d['p50'])}, "
                     f"max {duration(d['max'])}; {pool['never_passed']} never passed")
        shown = pool["addresses"][:8]
        more = f" (+{pool['address_count'] - len(shown)})" if pool["address_count"] > len(shown) else ""
        lines.append(f"    addresses: {' '.join(shown)}{more}")
        lines.append(f"    {_spf_sentence(pool)}")
        for variable, values in pool["whitelist"].items():
            lines.append(f"    whitelist it: {variable}: [{', '.join(values)}]")
    return lines


def _spf_sentence(pool: dict) -> str:
    spf = pool["spf"]
    if spf is None:
        return "SPF not checked (--check-spf walks the sender domain's SPF record)"
    if spf["status"] != "ok":
        return f"SPF of {pool['sender_domain']}: {spf['status']}"
    return (f"SPF of {pool['sender_domain']} covers {len(spf['covered'])} of "
            f"{len(spf['covered']) + len(spf['not_covered'])} addresses")
