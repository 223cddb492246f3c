"""Turn one run of the greylisting outcome simulation into docs/outcome/: report, figures, plots.

Why: the driver's results say what happened to every message, but a reader needs the few
figures that decide the project's claims - greylisting with the providers' whitelist costs
legitimate senders less than the status quo and still stops bots - checked against the data
(PASS/FAIL computed, never written by hand). The admin-facing tool greylist-report reads the
same run's mail logs; comparing its figures with the ground truth shows whether an admin who
runs it on a real log can trust what it says.

Units: the lab clock is compressed (scale = real greylist delay / lab greylist delay, 60 in
traffic.yml), so a delay of d lab seconds stands for d * scale / 60 real minutes. Every
percentile is nearest-rank (a delay some message really had, never an interpolation), as in
greylist-report.

Exit codes of the command: 0 all checks passed, 1 the report was written but a check failed
(scripts/outcome-sim fails then), 2 bad command line or unreadable input.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import math
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

NO_GREYLISTING = "no-greylisting"
STOCK = "greylisting-stock"
SEPARATE = "greylisting-whitelist"  # postgrey on each of two MX
SHARED = "shared-greylist"  # sqlgrey shared by two MX
SELECTIVE = "selective-postscreen"  # postscreen, greylisting only for clients that look like bots
WHITELIST_CONFIGS = (SEPARATE, SHARED, SELECTIVE)
POOL_WHITELISTED = "pool-whitelisted"
POOL_NOT_WHITELISTED = "pool-not-whitelisted"
POOL_CLASSES = (POOL_WHITELISTED, POOL_NOT_WHITELISTED)
DELAYED_ONCE_CLASSES = ("mta-postfix", "mta-exim")
# Legitimate senders whose every address has a forward-confirmed, ordinary host name
# (traffic.yml): selective greylisting never delays them. mta-dynamic has no PTR: it still is.
VERIFIED_NAME_CLASSES = ("pool-not-whitelisted", "bulk", "mta-postfix", "mta-exim", "mta-other-mx")
NO_NAME_MTA = "mta-dynamic"
# Selective greylisting stops the bots without a verified name (all of the simulated ones); the
# share it must reach (a real bot farm has some hosts with a proper name).
SELECTIVE_BOTS_BLOCKED = 0.95
OTHER_MX = "mta-other-mx"
BOT_NO_RETRY = "bot-no-retry"
MTA_PREFIX = "mta-"

# "Delayed by several greylist delays": the median message of a pool waits at least this many.
SEVERAL_DELAYS = 2
NOT_DELIVERED = math.inf

# greylist-report against the ground truth. Counts must agree exactly: every greylisted
# attempt leaves a daemon line and a Postfix reject line, every delivery a pass or queue line,
# nothing is sampled. Delays: journalctl -o short-iso stamps whole seconds, so each end of a
# delay is truncated by up to 1 s and the difference by up to 1 s either way; the session
# time between the driver's clock and the logged RCPT adds a little, hence a few percent.
DELAY_TOLERANCE_S = 1.0
DELAY_TOLERANCE_SHARE = 0.05
LOG_WINDOW_MARGIN_S = 5.0  # lines this long before the first / after the last attempt still count
TRIPLET_PREFIX = 24  # greylist-report's default client network, as postgrey and sqlgrey


# -- loading ---------------------------------------------------------------------------------

def load_plan(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def load_results(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_hosts(path: str | Path | None) -> dict:
    return json.loads(Path(path).read_text()) if path else {"hosts": {}}


# -- small figures ---------------------------------------------------------------------------

def percentile(values: Iterable[float], share: float) -> float | None:
    """greylist-report's own nearest rank (a value some message really had), None for no values:
    the ground truth and the tool's figures are compared percentile for percentile."""
    values = list(values)
    return _greylog("report").percentile(values, share) if values else None


def real_minutes(lab_seconds: float | None, scale: float) -> float | None:
    if lab_seconds is None or math.isinf(lab_seconds):
        return lab_seconds
    return lab_seconds * scale / 60.0


def distribution(lab_delays: list[float], scale: float) -> dict:
    """p50/p95/max of delays, in lab seconds and in the real minutes they stand for."""
    figures: dict = {"count": len(lab_delays)}
    for label, value in (("p50", percentile(lab_delays, 0.50)), ("p95", percentile(lab_delays, 0.95)),
                         ("max", max(lab_delays) if lab_delays else None)):
        figures[f"{label}_lab_s"] = value
        figures[f"{label}_real_min"] = real_minutes(value, scale)
    return figures


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def is_greylisting(attempt: dict) -> bool:
    """A greylisting deferral: a 4xx whose text says so (postgrey "Greylisted", sqlgrey "Greylisted for")."""
    return str(attempt.get("code", "")).startswith("4") and "reylist" in (attempt.get("text") or "")


def was_greylisted(result: dict) -> bool:
    return any(is_greylisting(attempt) for attempt in result.get("attempts", []))


def is_delayed(result: dict) -> bool:
    """Deferred at least once. The driver's delay runs to the end of the delivering session, so a
    message delivered at its first attempt has a delay above 0 (the session itself, a fraction of
    a second): "delay > 0" would call every message delayed, a deferral is what makes it wait."""
    return any(attempt.get("outcome") == "deferred" for attempt in result.get("attempts", []))


def waited(result: dict | None) -> float:
    """The lab seconds a message waited, infinite when it was not delivered (for shares and checks)."""
    if result is None or result.get("outcome") != "delivered" or result.get("delay") is None:
        return NOT_DELIVERED
    return float(result["delay"])


# -- summary ---------------------------------------------------------------------------------

def summarise(plan: dict, results: list[dict], hosts: dict) -> dict:
    """Every figure of the report, from the plan, the driver's results and the hosts' counters."""
    scale = float(plan["scale"])
    by_id = {result["id"]: result for result in results}
    groups = _plan_groups(plan)
    cells = {config["name"]: {cls["name"]: cell_figures(groups[(config["name"], cls["name"])], by_id, scale)
                              for cls in plan["classes"]} for config in plan["configurations"]}
    first_message = {config["name"]: {cls["name"]: first_message_figures(groups[(config["name"], cls["name"])],
                                                                         by_id, scale)
                                      for cls in plan["classes"] if cls["name"].startswith(MTA_PREFIX)}
                     for config in plan["configurations"]}
    summary = {
        "schema": 1,
        "run": _run_figures(plan, results),
        "percentile_method": "nearest-rank",
        "configurations": plan["configurations"],
        "classes": plan["classes"],
        "cells": cells,
        "first_message": first_message,
        "hosts": {config["name"]: host_figures(config, hosts, _messages_of(cells[config["name"]]))
                  for config in plan["configurations"]},
    }
    summary["checks"] = run_checks(summary)
    return summary


def _messages_of(cells: dict) -> int:
    return sum(cell["messages"] for cell in cells.values())


def _plan_groups(plan: dict) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for message in plan["messages"]:
        groups[(message["config"], message["class"])].append(message)
    return groups


def _run_figures(plan: dict, results: list[dict]) -> dict:
    starts = [r["start"] for r in results if r.get("start") is not None]
    planned = {m["id"] for m in plan["messages"]}
    start = min(starts) if starts else None
    return {
        "start": start,
        "date": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC") if start is not None else None,
        "seed": plan.get("seed"),
        "scale": plan["scale"],
        "lab_greylist_delay": plan["lab_greylist_delay"],
        "real_greylist_delay": plan["real_greylist_delay"],
        "arrival_window_lab_s": plan.get("arrival_window"),
        "horizon_lab_s": plan.get("horizon"),
        "messages_planned": len(planned),
        "results": len(results),
        "missing_results": sorted(planned - {r["id"] for r in results}),
    }


def cell_figures(messages: list[dict], by_id: dict, scale: float) -> dict:
    """One configuration x one sender class. A message without a result counts as not delivered."""
    results = [by_id.get(message["id"]) for message in messages]
    outcomes = Counter(result["outcome"] if result else "missing" for result in results)
    delays = sorted(waited(r) for r in results if not math.isinf(waited(r)))
    total = len(messages)
    delivered = outcomes["delivered"]
    return {
        "messages": total,
        "delivered": delivered,
        "rejected": outcomes["rejected"],
        "gave_up": outcomes["gave-up"],
        "not_delivered_in_window": outcomes["horizon"],
        "missing": outcomes["missing"],
        "errors": outcomes["error"],  # the driver hit a bug on these (outcome "error")
        "greylisted": sum(1 for r in results if r and was_greylisted(r)),
        "delayed": sum(1 for r in results if r and is_delayed(r)),
        "share_delayed": share(sum(1 for r in results if r and is_delayed(r)), total),
        "share_blocked": share(total - delivered, total),
        "delay": distribution(delays, scale),
        "delays_lab_s": delays,
    }


def first_message_figures(messages: list[dict], by_id: dict, scale: float) -> dict:
    """How a new MTA fares: its first message waits for greylisting, the later ones should not.

    A "later" message is one first tried after the MTA's first delivery (the triplet has passed
    by then); one sent while the first was still greylisted waits for the same reason and is
    counted apart.
    """
    by_mta: dict[str, list[tuple[float, dict | None]]] = defaultdict(list)
    for message in messages:
        result = by_id.get(message["id"])
        by_mta[_client_of(message, result)].append((_first_try(message, result), result))
    first, later, later_delayed, during, attempts = [], [], 0, [], []
    for sent in by_mta.values():
        sent.sort(key=lambda item: item[0])
        (started, head), rest = sent[0], sent[1:]
        first.append(waited(head))
        attempts.append(_delivering_attempt(head))
        passed_at = started + waited(head)
        for when, result in rest:
            if when < passed_at:
                during.append(waited(result))
                continue
            later.append(waited(result))
            later_delayed += bool(result and is_delayed(result))
    delivered_first = [d for d in first if not math.isinf(d)]
    return {
        "mtas": len(by_mta),
        "first": {**distribution(delivered_first, scale), "min_lab_s": min(delivered_first, default=None),
                  "not_delivered": len(first) - len(delivered_first),
                  "delivered_at_attempt": sorted(a for a in attempts if a is not None)},
        "later": {**distribution([d for d in later if not math.isinf(d)], scale), "messages": len(later),
                  "not_delivered": sum(1 for d in later if math.isinf(d)),
                  "delayed": later_delayed},
        "sent_during_first_greylisting": len(during),
    }


def _client_of(message: dict, result: dict | None) -> str:
    attempts = (result or {}).get("attempts") or message.get("attempts") or [{}]
    return str(attempts[0].get("client", message.get("sender", "")))


def _first_try(message: dict, result: dict | None) -> float:
    if result is not None and result.get("first_attempt") is not None:
        return float(result["first_attempt"])
    attempts = message.get("attempts") or [{"at": 0.0}]
    return float(attempts[0]["at"])


def _delivering_attempt(result: dict | None) -> int | None:
    for number, attempt in enumerate((result or {}).get("attempts", []), start=1):
        if attempt.get("outcome") == "delivered":
            return number
    return None


def host_figures(config: dict, hosts: dict, messages: int) -> dict:
    """Policy requests and DNS queries per message over the configuration's MX; None where unknown."""
    counters = [hosts.get("hosts", {}).get(mx["name"]) for mx in config["mx"]]
    totals = {"greylist": _sum([(c or {}).get("policy_requests", {}).get("greylist") for c in counters]),
              "spf": _sum([(c or {}).get("policy_requests", {}).get("spf") for c in counters]),
              "dns": _sum([(c or {}).get("dns_queries") for c in counters])}
    return {"messages": messages, "totals": totals,
            "per_message": {k: (v / messages if v is not None and messages else None) for k, v in totals.items()}}


def _sum(values: list) -> float | None:
    """A total only when every host reported it: half a sum would read as a real figure."""
    return None if any(v is None for v in values) else sum(values)


# -- checks ----------------------------------------------------------------------------------

def run_checks(summary: dict) -> list[dict]:
    return [*_check_whitelisted_pool(summary), *_check_pool_not_whitelisted(summary),
            *_check_delayed_once(summary), *_check_bots(summary), *_check_other_mx(summary),
            *_check_selective(summary)]


def _greylisting_configs(summary: dict) -> list[str]:
    """The configurations that greylist every new triplet (selective greylisting has its own checks)."""
    return [c["name"] for c in summary["configurations"] if c["name"] not in (NO_GREYLISTING, SELECTIVE)]


def _check(check_id: str, title: str, config: str, cls: str, passed: bool | None, measured: str, **figures) -> dict:
    return {"id": check_id, "title": title, "config": config, "class": cls, "pass": passed,
            "measured": measured, "figures": figures}


def _cell(summary: dict, config: str, cls: str) -> dict | None:
    return summary["cells"].get(config, {}).get(cls)


def _waits(cell: dict) -> list[float]:
    """The lab seconds each message waited, not-delivered ones as infinite."""
    return cell["delays_lab_s"] + [NOT_DELIVERED] * (cell["messages"] - cell["delivered"])


def _check_whitelisted_pool(summary: dict) -> list[dict]:
    title = "whitelisted provider pool is never delayed"
    checks = []
    in_run = [c["name"] for c in summary["configurations"]]
    # The selective configuration came later: a run without it (an older report) claims nothing about it.
    for config in [c for c in WHITELIST_CONFIGS if c != SELECTIVE or c in in_run]:
        cell = _cell(summary, config, POOL_WHITELISTED)
        if cell is None or not cell["messages"]:
            checks.append(_check("a", title, config, POOL_WHITELISTED, None, "not in this run"))
            continue
        worst = max(_waits(cell))
        # Delivered at the first attempt is "0 s": what remains of the delay is that SMTP session.
        passed = cell["delivered"] == cell["messages"] and cell["delayed"] == 0
        measured = (f"{cell['delivered']}/{cell['messages']} delivered, {cell['delayed']} deferred first; "
                    f"delay max {_lab(worst)} (the delivering SMTP session included)")
        checks.append(_check("a", title, config, POOL_WHITELISTED, passed, measured, max_lab_s=worst,
                             delayed=cell["delayed"], delivered=cell["delivered"], messages=cell["messages"]))
    return checks


def _check_pool_not_whitelisted(summary: dict) -> list[dict]:
    title = f"a pool outside the whitelist waits several greylist delays (median >= {SEVERAL_DELAYS}) or loses mail"
    delay = float(summary["run"]["lab_greylist_delay"])
    scale = float(summary["run"]["scale"])
    checks = []
    for config in _greylisting_configs(summary):
        cell = _cell(summary, config, POOL_NOT_WHITELISTED)
        if cell is None or not cell["messages"]:
            checks.append(_check("b", title, config, POOL_NOT_WHITELISTED, None, "not in this run"))
            continue
        waits = _waits(cell)
        p50, worst = percentile(waits, 0.5), max(waits)
        measured = (f"p50 {_real(p50, scale)}, max {_real(worst, scale)} against one greylist delay of "
                    f"{_real(delay, scale)}; {cell['messages'] - cell['delivered']}/{cell['messages']} not delivered")
        checks.append(_check("b", title, config, POOL_NOT_WHITELISTED, p50 >= SEVERAL_DELAYS * delay, measured,
                             p50_lab_s=p50, max_lab_s=worst, greylist_delay_lab_s=delay,
                             p50_in_greylist_delays=p50 / delay))
    return checks


def _check_delayed_once(summary: dict) -> list[dict]:
    title = "a new MTA is delayed once: its first message about one retry, later ones 0 s"
    checks = []
    for config in _greylisting_configs(summary):
        for cls in DELAYED_ONCE_CLASSES:
            checks.append(_delayed_once("c", title, summary, config, cls))
    return checks


def _delayed_once(check_id: str, title: str, summary: dict, config: str, cls: str) -> dict:
    delay = float(summary["run"]["lab_greylist_delay"])
    scale = float(summary["run"]["scale"])
    figures = summary["first_message"].get(config, {}).get(cls)
    if figures is None or not figures["mtas"]:
        return _check(check_id, title, config, cls, None, "not in this run")
    first, later = figures["first"], figures["later"]
    passed = (first["not_delivered"] == 0 and first["p50_lab_s"] is not None
              and first["min_lab_s"] >= delay and later["delayed"] == 0 and later["not_delivered"] == 0)
    # "Once" needs a later message: without one the claim is not shown either way.
    if passed and later["messages"] == 0:
        passed = None
    measured = (f"first message of {figures['mtas']} MTA(s): p50 {_real(first['p50_lab_s'], scale)}, max "
                f"{_real(first['max_lab_s'], scale)} (greylist delay {_real(delay, scale)}, "
                f"{first['not_delivered']} not delivered); {later['messages']} later message(s): max "
                f"{_real(later['max_lab_s'], scale)}, {later['delayed']} delayed")
    return _check(check_id, title, config, cls, passed, measured, first=first, later=later,
                  sent_during_first_greylisting=figures["sent_during_first_greylisting"])


def _check_selective(summary: dict) -> list[dict]:
    """Selective greylisting: a sender with a verified ordinary name is never deferred (f); a real
    MTA without reverse DNS still is, once (g). Its bots are check d's."""
    if SELECTIVE not in [c["name"] for c in summary["configurations"]]:
        return []  # a run without the configuration claims nothing about it
    title = "selective greylisting: a sender with a verified, ordinary host name is never delayed"
    checks = []
    for cls in VERIFIED_NAME_CLASSES:
        cell = _cell(summary, SELECTIVE, cls)
        if cell is None or not cell["messages"]:
            checks.append(_check("f", title, SELECTIVE, cls, None, "not in this run"))
            continue
        passed = cell["delivered"] == cell["messages"] and cell["delayed"] == 0
        measured = (f"{cell['delivered']}/{cell['messages']} delivered, {cell['delayed']} deferred first; "
                    f"delay max {_lab(max(_waits(cell)))} (the delivering SMTP session included)")
        checks.append(_check("f", title, SELECTIVE, cls, passed, measured, delayed=cell["delayed"],
                             delivered=cell["delivered"], messages=cell["messages"]))
    checks.append(_delayed_once("g", "selective greylisting: a real MTA without reverse DNS is still delayed once",
                                summary, SELECTIVE, NO_NAME_MTA))
    return checks


def _check_bots(summary: dict) -> list[dict]:
    title = "bots that never retry are all stopped by greylisting, none without it"
    checks = []
    for config in [c["name"] for c in summary["configurations"]]:
        cell = _cell(summary, config, BOT_NO_RETRY)
        if cell is None or not cell["messages"]:
            checks.append(_check("d", title, config, BOT_NO_RETRY, None, "not in this run"))
            continue
        expected = {NO_GREYLISTING: 0.0, SELECTIVE: SELECTIVE_BOTS_BLOCKED}.get(config, 1.0)
        if config == SELECTIVE:
            passed = cell["share_blocked"] >= expected
            measured = f"{_percent(cell['share_blocked'])} blocked (expected at least {_percent(expected)})"
        else:
            passed = cell["share_blocked"] == expected
            measured = f"{_percent(cell['share_blocked'])} blocked (expected {_percent(expected)})"
        checks.append(_check("d", title, config, BOT_NO_RETRY, passed, measured,
                             share_blocked=cell["share_blocked"], expected=expected))
    return checks


def _check_other_mx(summary: dict) -> list[dict]:
    title = "retrying on the other MX costs extra with a postgrey per MX, not with a shared sqlgrey"
    scale = float(summary["run"]["scale"])
    separate, shared = _cell(summary, SEPARATE, OTHER_MX), _cell(summary, SHARED, OTHER_MX)
    if not separate or not shared or not separate["messages"] or not shared["messages"]:
        return [_check("e", title, f"{SEPARATE} vs {SHARED}", OTHER_MX, None, "not in this run")]
    figures = {name: {"p50_lab_s": percentile(_waits(cell), 0.5), "max_lab_s": max(_waits(cell))}
               for name, cell in ((SEPARATE, separate), (SHARED, shared))}
    measured = "; ".join(f"{name}: p50 {_real(f['p50_lab_s'], scale)}, max {_real(f['max_lab_s'], scale)}"
                         for name, f in figures.items())
    passed = figures[SHARED]["max_lab_s"] < figures[SEPARATE]["max_lab_s"]
    return [_check("e", title, f"{SEPARATE} vs {SHARED}", OTHER_MX, passed, measured, **figures)]


# -- greylist-report against the ground truth ------------------------------------------------

def _greylog(module: str = "cli"):
    """A module of greylist-report's package: installed in the venv, or the checkout's with another python."""
    try:
        return importlib.import_module(f"greylog.{module}")
    except ImportError:
        sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
        return importlib.import_module(f"greylog.{module}")


def log_files(log_dir: str | Path, host: str) -> list[Path]:
    """A host's log files, oldest first: mail.log.2.gz before mail.log.1 before mail.log."""
    directory = Path(log_dir) / host
    files = [path for path in directory.glob("*") if path.is_file()] if directory.is_dir() else []
    return sorted(files, key=_rotation_order)


def _rotation_order(path: Path) -> tuple[int, str]:
    parts = path.name.split(".")
    numbers = [int(part) for part in parts if part.isdigit()]
    return (-numbers[-1] if numbers else 0, path.name)


def merged_lines(files: list[Path], year: int | None, since: float | None = None,
                 until: float | None = None) -> list[str]:
    """The lines of several hosts' logs in time order, only those of the run's window.

    Why merge: greylist-report reads its files one after the other and only counts an
    acceptance for a message it has already seen greylisted; a message greylisted on one MX and
    accepted on the other (before that MX's file is read) would look never passed. Merging by
    time is what an admin with central logging feeds it. Why a window: the scenario's own
    checks send mail before and after the run; they are not the simulated traffic.
    """
    lines, inputs = _greylog("lines"), _greylog("inputs")
    keyed = []
    for file_number, path in enumerate(files):
        reader = lines.LineReader(lines.SyslogClock(year))
        time = -math.inf  # a line of no known shape keeps its place after the line before it
        for line_number, line in enumerate(inputs.read_lines(str(path))):
            record = reader.parse(line)
            if record is not None:
                time = record.time
            elif not line.strip() or line.startswith("-- "):
                continue  # journalctl's "-- Journal begins ..." and "-- Boot ..." banners
            keyed.append((time, file_number, line_number, line.rstrip("\r\n")))
    keyed.sort(key=lambda item: item[:3])
    return [line for time, _f, _n, line in keyed
            if (since is None or time >= since) and (until is None or time <= until)]


def run_greylist_report(log_dir: str | Path, hosts: list[str], since: float | None = None,
                        until: float | None = None, year: int | None = None) -> dict | None:
    """greylist-report --json --min-age 0s over the hosts' logs, called as a library (greylog.cli.generate).

    min-age 0: the run is over when the logs are collected, so no greylisted message is "too
    recent" to be called never retried. None when no host has a log.
    """
    cli = _greylog()
    files = [path for host in hosts for path in log_files(log_dir, host)]
    if not files:
        return None
    lines = merged_lines(files, year, since, until)
    with tempfile.TemporaryDirectory(prefix="outcome-logs-") as tmp:
        merged = Path(tmp) / "merged.log"
        merged.write_text("".join(f"{line}\n" for line in lines))
        argv = ["--json", "--min-age", "0s", *(["--year", str(year)] if year else []), str(merged)]
        report, _output = cli.generate(argv)
    report["inputs"] = [str(path) for path in files]
    return report


def reports_for_run(plan: dict, results: list[dict], log_dir: str | Path) -> dict[str, dict | None]:
    """greylist-report of every greylisting configuration, over the run's window of its MX logs."""
    reports = {}
    for config in plan["configurations"]:
        if config["name"] == NO_GREYLISTING:
            continue
        own = [r for r in results if r["config"] == config["name"]]
        times = [a["at"] for r in own for a in r.get("attempts", [])]
        since = min(times) - LOG_WINDOW_MARGIN_S if times else None
        until = max(times) + LOG_WINDOW_MARGIN_S if times else None
        year = datetime.fromtimestamp(min(times), UTC).year if times else None
        reports[config["name"]] = run_greylist_report(log_dir, [mx["name"] for mx in config["mx"]], since, until,
                                                      year)
    return reports


def _network(address: str) -> str:
    try:
        return str(ipaddress.ip_network(f"{address}/{TRIPLET_PREFIX}", strict=False))
    except ValueError:
        return address


def _config_attempts(plan: dict, config: dict, result: dict) -> list[dict]:
    """The attempts of a message that went to this configuration's MX (an MX named otherwise is unknown: kept)."""
    own = {value for mx in config["mx"] for value in (mx["name"], mx["address"])}
    known = {value for c in plan["configurations"] for mx in c["mx"] for value in (mx["name"], mx["address"])}
    return [a for a in result.get("attempts", []) if a.get("mx") in own or a.get("mx") not in known]


def message_truth(results: list[dict]) -> dict:
    """The brief's unit: one message, its delay from its first attempt to its delivery."""
    greylisted = [r for r in results if was_greylisted(r)]
    delivered = [r for r in greylisted if r.get("outcome") == "delivered" and r.get("delivered_at") is not None]
    return {"greylisted": len(greylisted), "passed": len(delivered),
            "never_retried": sum(1 for r in greylisted if r.get("outcome") != "delivered"
                                 and len(r.get("attempts", [])) == 1),
            "retried_not_passed": sum(1 for r in greylisted if r.get("outcome") != "delivered"
                                      and len(r.get("attempts", [])) > 1),
            "delays": sorted(r["delivered_at"] - r["first_attempt"] for r in delivered)}


def pair_truth(plan: dict, config: dict, results: list[dict]) -> dict:
    """The ground truth in greylist-report's unit: a (sender, recipient) pair, not a message.

    The MTA classes send every message of one host from one sender to one recipient, so their
    messages are one pair; the tool sees one pair greylisted (first greylisting), passed (its
    first acceptance at or after that, whichever message it belonged to) and never retried
    (one greylisted attempt in all, never passed). Times are the attempts' own (the log stamps
    the RCPT of each attempt).
    """
    pairs: dict[tuple[str, str], dict] = {}
    for result in results:
        key = (result["sender"].lower(), result["recipient"].lower())
        pair = pairs.setdefault(key, {"grey": [], "passes": [], "networks": set(), "class": result["class"]})
        for attempt in _config_attempts(plan, config, result):
            if is_greylisting(attempt):
                pair["grey"].append(float(attempt["at"]))
                pair["networks"].add(_network(str(attempt.get("client", ""))))
            elif attempt.get("outcome") == "delivered":
                pair["passes"].append(float(attempt["at"]))
    greylisted = {key: pair for key, pair in pairs.items() if pair["grey"]}
    delays, counts = [], Counter()
    for pair in greylisted.values():
        first = min(pair["grey"])
        passes = [t for t in pair["passes"] if t >= first]
        if passes:
            counts["passed"] += 1
            delays.append(min(passes) - first)
        else:
            counts["retried_not_passed" if len(pair["grey"]) > 1 else "never_retried"] += 1
    pools = defaultdict(int)
    for pair in greylisted.values():
        if len(pair["networks"]) > 1:
            pools[pair["class"]] += 1
    return {"greylisted": len(greylisted), "passed": counts["passed"], "never_retried": counts["never_retried"],
            "retried_not_passed": counts["retried_not_passed"], "delays": sorted(delays),
            "classes_greylisted": sorted({pair["class"] for pair in greylisted.values()}),
            "pool_pairs_by_class": dict(sorted(pools.items()))}


def _delay_tolerance(truth: float | None) -> float:
    return DELAY_TOLERANCE_S + DELAY_TOLERANCE_SHARE * (truth or 0.0)


def _figure(name: str, by_message, by_pair, reported, tolerance: float) -> dict:
    if by_pair is None or reported is None:
        passed = by_pair is None and reported is None
        difference = None
    else:
        difference = reported - by_pair
        passed = abs(difference) <= tolerance
    return {"figure": name, "truth_messages": by_message, "truth_pairs": by_pair, "greylist_report": reported,
            "difference": difference, "tolerance": tolerance, "pass": passed}


def compare_with_greylist_report(plan: dict, results: list[dict], report_by_config: dict[str, dict | None]) -> dict:
    """greylist-report's figures of each greylisting configuration beside the ground truth, PASS/FAIL each.

    PASS/FAIL compares like with like: the tool's pairs with the ground truth grouped into the
    same pairs; the per-message ground truth is shown beside them for the reader.
    """
    configs = []
    for config in plan["configurations"]:
        if config["name"] == NO_GREYLISTING:
            continue
        own = [r for r in results if r["config"] == config["name"]]
        configs.append(_compare_config(plan, config, own, report_by_config.get(config["name"])))
    verdicts = [c["logs"] for c in configs] + [row["pass"] for c in configs for row in c["figures"] + c["pools"]]
    return {
        "method": ("greylist-report --json --min-age 0s (greylog.cli.generate) over the configuration's MX logs "
                   "merged in time order, restricted to the run's window; ground truth from the results, "
                   "grouped into greylist-report's unit, the (sender, recipient) pair"),
        "tolerance": {"counts": 0, "delay_s": DELAY_TOLERANCE_S, "delay_share": DELAY_TOLERANCE_SHARE},
        "configs": configs,
        "pass": bool(verdicts) and all(verdicts),
    }


def _compare_config(plan: dict, config: dict, results: list[dict], report: dict | None) -> dict:
    by_message, by_pair = message_truth(results), pair_truth(plan, config, results)
    if report is None:  # no log to read: nothing agrees, and the comparison fails (see compare_with_...)
        return {"name": config["name"], "mx": [mx["name"] for mx in config["mx"]], "logs": False, "figures": [],
                "pools": [], "truth": {"messages": by_message["greylisted"], "pairs": by_pair["greylisted"]}}
    messages = report["messages"]
    figures = [_figure(label, by_message[key], by_pair[key], messages[key], 0) for key, label in (
        ("greylisted", "greylisted"), ("passed", "delivered (passed) later"), ("never_retried", "never retried"),
        ("retried_not_passed", "retried, never delivered"))]
    for share_, label in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
        truth = percentile(by_pair["delays"], share_)
        figures.append(_figure(f"delay {label} (lab s)", percentile(by_message["delays"], share_), truth,
                               messages["delay"][label], _delay_tolerance(truth)))
    return {"name": config["name"], "mx": [mx["name"] for mx in config["mx"]], "logs": True,
            "inputs": report.get("inputs", []), "lines": report.get("lines"), "figures": figures,
            "pools": _compare_pools(plan, config, results, by_pair, report)}


def _class_domain(results: list[dict], cls: str) -> str | None:
    domains = Counter(r["sender"].rpartition("@")[2].lower() for r in results if r["class"] == cls)
    return domains.most_common(1)[0][0] if domains else None


def _compare_pools(plan: dict, config: dict, results: list[dict], by_pair: dict, report: dict) -> list[dict]:
    """Is each provider pool proposed for the whitelist exactly when the tool could see it as a pool?

    greylist-report calls a sender domain a pool when one (sender, recipient) pair was
    greylisted from two client networks or more: that, from the ground truth, is the expectation.
    """
    proposed_domains = {pool["sender_domain"] for pool in report.get("pools", [])}
    whitelist = report.get("whitelist", {})
    proposed_domains |= set(whitelist.get("spf_whitelist_providers_extra", []))
    static = set(whitelist.get("spf_whitelist_static_entries", []))
    rows = []
    for cls in POOL_CLASSES:
        domain = _class_domain(results, cls)
        if domain is None:
            continue
        addresses = {ip for ip, entry in plan.get("addresses", {}).items() if entry.get("class") == cls}
        proposed = domain in proposed_domains or bool(addresses & static)
        expected = by_pair["pool_pairs_by_class"].get(cls, 0) > 0
        rows.append({"class": cls, "domain": domain, "greylisted": cls in by_pair["classes_greylisted"],
                     "pairs_from_several_networks": by_pair["pool_pairs_by_class"].get(cls, 0),
                     "expected": expected, "proposed": proposed, "pass": proposed == expected})
    return rows


# -- markdown --------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "not delivered"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _lab(value: float | None) -> str:
    return _num(value) if value is None or math.isinf(value) else f"{_num(value)} lab s"


def _real(lab_seconds: float | None, scale: float) -> str:
    if lab_seconds is None or math.isinf(lab_seconds):
        return _num(lab_seconds)
    return f"{_num(real_minutes(lab_seconds, scale))} real min ({_num(lab_seconds)} lab s)"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("**PASS**" if passed else "**FAIL**")


def _triple(figures: dict, unit: str) -> str:
    return " / ".join(_num(figures[f"{label}_{unit}"]) for label in ("p50", "p95", "max"))


def render_markdown(summary: dict, comparison: dict | None, command: str) -> str:
    run = summary["run"]
    out = ["# Greylisting outcome simulation", "",
           f"Run of {run['date'] or 'unknown date'}, seed {run['seed']}: {run['results']} of "
           f"{run['messages_planned']} planned messages have a result"
           + (f" (missing: {', '.join(run['missing_results'])})" if run["missing_results"] else "") + ".", "",
           f"Scale: 1 lab second = {_num(run['scale'] / 60)} real minute"
           f"{'' if run['scale'] == 60 else 's'}; the lab greylists for {_num(run['lab_greylist_delay'])} s where "
           f"postgrey's default is {_num(run['real_greylist_delay'])} s. Delays are given in real-world minutes "
           "(lab seconds x scale / 60) and in lab seconds; percentiles are nearest-rank (a delay some message "
           "really had).", "",
           "Reproduce with:", "", "```sh", command, "```", ""]
    out += _configurations_md(summary)
    out += _cells_md(summary)
    out += ["## Plots", "", "![Delay CDF per sender class](delay-cdf.png)", "",
            "![Share of bot messages blocked](bots-blocked.png)", ""]
    out += _first_message_md(summary)
    out += _hosts_md(summary)
    out += _checks_md(summary)
    out += _comparison_md(comparison)
    return "\n".join(out).rstrip("\n") + "\n"


def _configurations_md(summary: dict) -> list[str]:
    lines = ["## Configurations", ""]
    for config in summary["configurations"]:
        hosts = ", ".join(f"{mx['name']} ({mx['address']})" for mx in config["mx"])
        lines.append(f"- **{config['name']}**: {config['title']}. MX: {hosts}")
    lines.append("")
    lines.append("Sender classes: " + "; ".join(f"`{c['name']}` {c['title']} ({c['kind']})"
                                                for c in summary["classes"]) + ".")
    return [*lines, ""]


def _cells_md(summary: dict) -> list[str]:
    lines = ["## Outcome per configuration and sender class", "",
             "Not delivered in the window: still being retried when the run stopped. Delayed: deferred at "
             "least once (a delay counts the delivering SMTP session too, so a message delivered at its first "
             "attempt has a delay of a fraction of a second). Blocked: not delivered (what greylisting should "
             "do to bots).", ""]
    kinds = {c["name"]: c["kind"] for c in summary["classes"]}
    for config in summary["configurations"]:
        lines += [f"### {config['title']} (`{config['name']}`)", "",
                  "| class | messages | delivered | rejected | gave up | not delivered in window | delayed | "
                  "blocked | delay p50 / p95 / max, real min | lab s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for cls, cell in summary["cells"][config["name"]].items():
            blocked = _percent(cell["share_blocked"]) if kinds.get(cls) == "bot" else "-"
            lines.append(f"| {cls} | {cell['messages']} | {cell['delivered']} | {cell['rejected']} | "
                         f"{cell['gave_up']} | {cell['not_delivered_in_window']} | {_percent(cell['share_delayed'])} | "
                         f"{blocked} | {_triple(cell['delay'], 'real_min')} | {_triple(cell['delay'], 'lab_s')} |")
        lines.append("")
    return lines


def _first_message_md(summary: dict) -> list[str]:
    lines = ["## New MTAs: the first message and the later ones", "",
             "Per MTA address, its first message; later messages are those first tried after that first "
             "message was delivered.", "",
             "| configuration | class | MTAs | first message p50 / max, real min | not delivered | later messages | "
             "later max, real min | later delayed | sent while the first was greylisted |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for config, classes in summary["first_message"].items():
        for cls, fig in classes.items():
            first, later = fig["first"], fig["later"]
            lines.append(f"| {config} | {cls} | {fig['mtas']} | {_num(first['p50_real_min'])} / "
                         f"{_num(first['max_real_min'])} | {first['not_delivered']} | {later['messages']} | "
                         f"{_num(later['max_real_min'])} | {later['delayed']} | "
                         f"{fig['sent_during_first_greylisting']} |")
    return [*lines, ""]


def _hosts_md(summary: dict) -> list[str]:
    lines = ["## Mail hosts: work per message", "",
             "Over the configuration's MX, divided by its messages; n/a where a host did not report the counter.", "",
             "| configuration | MX | messages | greylist policy requests | SPF policy requests | DNS queries |",
             "|---|---|---:|---:|---:|---:|"]
    for config in summary["configurations"]:
        fig = summary["hosts"][config["name"]]
        per = fig["per_message"]
        cells = " | ".join("n/a" if per[k] is None else f"{per[k]:.2f}" for k in ("greylist", "spf", "dns"))
        lines.append(f"| {config['name']} | {', '.join(mx['name'] for mx in config['mx'])} | {fig['messages']} | "
                     f"{cells} |")
    return [*lines, ""]


def _checks_md(summary: dict) -> list[str]:
    lines = ["## What the numbers show", "",
             "Each claim with its measured figure; PASS/FAIL is computed from this run's data.", ""]
    checks = summary["checks"]
    for check_id in sorted({c["id"] for c in checks}):
        group = [c for c in checks if c["id"] == check_id]
        lines.append(f"{check_id}) {group[0]['title']}:")
        for check in group:
            lines.append(f"   - {_verdict(check['pass'])} {check['config']}, {check['class']}: {check['measured']}")
    verdicts = [c["pass"] for c in checks if c["pass"] is not None]
    lines += ["", f"Checks: {sum(verdicts)} PASS, {len(verdicts) - sum(verdicts)} FAIL, "
              f"{sum(1 for c in checks if c['pass'] is None)} n/a.", ""]
    return lines


def _comparison_md(comparison: dict | None) -> list[str]:
    lines = ["## greylist-report against the ground truth", ""]
    if comparison is None:
        return [*lines, "Not run: no mail logs were given (--logs).", ""]
    tol = comparison["tolerance"]
    lines += [
        f"Method: {comparison['method']}.", "",
        "What the tool counts: a *message* is a (sender, recipient) pair greylisted at least once (whatever "
        "client network it came from); *passed* means accepted at or after its first greylisting, by any "
        "message of the pair; *never retried* means one greylisted attempt in all and never accepted; its delay "
        "runs from the pair's first greylisting to its first acceptance. The MTA classes send every message of "
        "a host as one pair, so the ground truth is grouped the same way (column *pairs*) and PASS/FAIL compares "
        "that column; the per-message ground truth (delay = delivered_at - first_attempt) is shown beside it.", "",
        f"Tolerance: counts exact ({tol['counts']}): every greylisted attempt and every acceptance leaves log "
        f"lines. Delays within {_num(tol['delay_s'])} s + {tol['delay_share'] * 100:.0f} % of the ground truth: "
        "journalctl short-iso stamps whole seconds (each end truncated, so up to 1 s either way) and the "
        "session between the driver's clock and the logged RCPT adds a little; a nearest-rank percentile moves "
        "no more than its worst message does.", ""]
    for config in comparison["configs"]:
        lines += [f"### {config['name']} ({', '.join(config['mx'])})", ""]
        if not config["logs"]:
            lines += ["**FAIL**: no mail log found for these hosts.", ""]
            continue
        lines += ["| figure | ground truth, messages | ground truth, pairs | greylist-report | difference | "
                  "tolerance | result |", "|---|---:|---:|---:|---:|---:|---|"]
        for row in config["figures"]:
            lines.append(f"| {row['figure']} | {_num(row['truth_messages'])} | {_num(row['truth_pairs'])} | "
                         f"{_num(row['greylist_report'])} | {_num(row['difference'])} | "
                         f"{'±' + _num(row['tolerance'], 2)} | {_verdict(row['pass'])} |")
        lines.append("")
        for pool in config["pools"]:
            lines.append(f"- {_verdict(pool['pass'])} pool {pool['domain']} ({pool['class']}): "
                         f"{'proposed' if pool['proposed'] else 'not proposed'} for the whitelist; "
                         f"{pool['pairs_from_several_networks']} message(s) greylisted from several networks, so "
                         f"{'expected' if pool['expected'] else 'not expected'}")
        lines.append("")
    lines += [f"Agreement overall: {_verdict(comparison['pass'])}.", ""]
    return lines


# -- plots -----------------------------------------------------------------------------------

CONFIG_STYLES = ("-", "--", "-.", ":")


def _figure_module():
    # Agg only: no display, and the same bytes on every machine (no GUI backend picked at import).
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure


def _save(figure, path: Path) -> None:
    # No Software entry (it names the version); PNG from Agg carries no timestamp otherwise.
    figure.savefig(path, format="png", dpi=100, metadata={"Software": None})


def plot_delay_cdf(summary: dict, path: str | Path) -> Path:
    """One panel per legitimate class, one step line per configuration; the curve stops below 1 for lost mail."""
    figure_class = _figure_module()
    scale = float(summary["run"]["scale"])
    classes = [c for c in summary["classes"] if c["kind"] == "legitimate"]
    columns = 2
    rows = max(1, math.ceil(len(classes) / columns))
    figure = figure_class(figsize=(12, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    horizon = real_minutes(float(summary["run"]["horizon_lab_s"] or 0), scale) or 1.0
    greylist = real_minutes(float(summary["run"]["lab_greylist_delay"]), scale)
    for index, cls in enumerate(classes):
        ax = axes[index // columns][index % columns]
        for number, config in enumerate(summary["configurations"]):
            cell = summary["cells"][config["name"]][cls["name"]]
            xs, ys = _cdf_points(cell, scale, horizon)
            ax.step(xs, ys, where="post", linestyle=CONFIG_STYLES[number % len(CONFIG_STYLES)], linewidth=2,
                    label=config["name"], color=f"C{number}")
        # Linear below one real minute (delivered at once), logarithmic above: minutes and hours both legible.
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(0, horizon)
        ticks = [t for t in (0, 1, 5, 15, 60, 240, 1440) if t <= horizon]
        ax.set_xticks(ticks, [_minutes_label(t) for t in ticks])
        ax.axvline(greylist, color="0.5", linewidth=1, linestyle=":")
        ax.set_ylim(0, 1.02)
        ax.set_title(cls["title"], fontsize=10)
        ax.set_xlabel("delay, real-world minutes")
        ax.set_ylabel("share delivered")
        ax.grid(True, alpha=0.3)
    for index in range(len(classes), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].legend(loc="lower right", fontsize=8)
    figure.suptitle("Delay until delivery per sender class (dotted: one greylist delay; "
                    "a curve ending below 1: mail not delivered)")
    _save(figure, Path(path))
    return Path(path)


def _minutes_label(minutes: float) -> str:
    return f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"


def _cdf_points(cell: dict, scale: float, horizon: float) -> tuple[list[float], list[float]]:
    total = cell["messages"] or 1
    xs, ys = [0.0], [0.0]
    for rank, delay in enumerate(cell["delays_lab_s"], start=1):
        xs.append(real_minutes(delay, scale))
        ys.append(rank / total)
    xs.append(horizon)
    ys.append(ys[-1])
    return xs, ys


def plot_bots_blocked(summary: dict, path: str | Path) -> Path:
    """Share of bot messages blocked per bot class (groups) and configuration (bars)."""
    figure_class = _figure_module()
    bots = [c for c in summary["classes"] if c["kind"] == "bot"]
    configs = summary["configurations"]
    figure = figure_class(figsize=(10, 4.5), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(1, len(configs))
    for number, config in enumerate(configs):
        shares = [(summary["cells"][config["name"]][b["name"]]["share_blocked"] or 0.0) * 100 for b in bots]
        positions = [i + (number - (len(configs) - 1) / 2) * width for i in range(len(bots))]
        bars = ax.bar(positions, shares, width, label=config["name"], color=f"C{number}")
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(bots)), [b["name"] for b in bots])
    ax.set_ylim(0, 110)
    ax.set_ylabel("messages blocked, %")
    ax.set_title("Bot messages not delivered, per configuration")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(configs))
    _save(figure, Path(path))
    return Path(path)


# -- command ---------------------------------------------------------------------------------

def _jsonable(value):
    """inf (a message never delivered) is not JSON: written as the text the report uses."""
    if isinstance(value, float) and math.isinf(value):
        return "not delivered"
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def write_outputs(output_dir: str | Path, summary: dict, comparison: dict | None, command: str) -> list[Path]:
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    figures = {**summary, "command": command, "comparison": comparison}
    (output / "summary.json").write_text(json.dumps(_jsonable(figures), indent=1, sort_keys=True,
                                                    allow_nan=False) + "\n")
    (output / "report.md").write_text(render_markdown(summary, comparison, command))
    return [output / "report.md", output / "summary.json", plot_delay_cdf(summary, output / "delay-cdf.png"),
            plot_bots_blocked(summary, output / "bots-blocked.png")]


def all_passed(summary: dict, comparison: dict | None) -> bool:
    checks = all(c["pass"] is not False for c in summary["checks"])
    return checks and (comparison is None or comparison["pass"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write the greylisting outcome report (report.md, summary.json, "
                                                 "plots) from one simulation run.")
    parser.add_argument("--plan", required=True, help="plan JSON (sim/plan.py)")
    parser.add_argument("--results", required=True, help="results JSONL, one line per message (sim/driver.py)")
    parser.add_argument("--hosts", help="host metrics JSON (policy requests, DNS queries)")
    parser.add_argument("--logs", help="directory of mail logs, LOGDIR/<host>/<files>: compared with greylist-report")
    parser.add_argument("--output-dir", default="docs/outcome")
    parser.add_argument("--command", default="", help="the exact command that produced this run (shown in the report)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unreadable = (OSError, ValueError, KeyError, _greylog("inputs").InputError)
    try:
        plan, results, hosts = load_plan(args.plan), load_results(args.results), load_hosts(args.hosts)
        summary = summarise(plan, results, hosts)
        comparison = (compare_with_greylist_report(plan, results, reports_for_run(plan, results, args.logs))
                      if args.logs else None)
    except unreadable as exc:
        print(f"analyse: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    command = args.command or " ".join(["python3", "molecule/outcome/sim/analyse.py", *(argv or sys.argv[1:])])
    for path in write_outputs(args.output_dir, summary, comparison, command):
        print(path)
    return 0 if all_passed(summary, comparison) else 1


if __name__ == "__main__":
    sys.exit(main())
