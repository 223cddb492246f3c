"""Benchmark of the postfix role's restrictions: throughput, and DNS queries per rejected message.

    python bench/postfix_bench.py [--runs 5] [--messages 1000] [--sessions 4] [--rejects 50] [--json FILE]

It prints figures and ratios; it does not pass or fail on speed or on the goals. It exits 1
when a measurement is not what it claims to be (a message lost or rejected for another reason,
restrictions that did not switch), 2 when the set-up failed (Docker, apt, ansible-playbook).

One throw-away container (bench-postfix-<pid>) gets Postfix from the project's roles/postfix,
applied with the project's ansible-playbook through the community.docker.docker connection,
with the lab's settings (IPv4 only, no policy services: they are benchmarked on their own)
and a DNSBL zone served by an unbound inside the container. Postfix resolves through that
unbound only, and unbound answers every name itself (local zones, "." included): no query ever
leaves the container, and its query log counts every query Postfix makes.

* Throughput: Debian's smtp-source (load generator) -> Postfix -> smtp-sink on
  127.0.0.1:2525 (transport_maps sends the local domain there), one message per connection,
  with the role's full restriction set and with the restrictions emptied (only the open-relay
  guard left), the same number of messages, alternated; and with postscreen on port 25 as the
  role sets it up (the DNSBL weighted in postscreen, smtpd's reject_rbl_client gone), for a
  client that has passed postscreen before (its cache entry is fresh: the steady state of a
  known client; a new client's first connection waits the greet wait, once).
* DNS queries per rejected message: smtp-source sends messages that each restriction rejects,
  from the container's own bridge address (not in mynetworks, so every restriction applies),
  and every query that unbound received during the run is counted and attributed.

The only traffic leaving the container is apt's, to the image's own mirror.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from containers import BenchError, Container, exit_on_signals, fail, host_info, print_host  # noqa: E402

MYHOSTNAME = "mx.bench.test"
CLIENT_NAME = "client.bench.test"
SENDER = "news@sender.bench.test"
RECIPIENT = "postmaster@mx.bench.test"  # an alias: in local_recipient_maps
DNSBL = "dnsbl.bench.test"
SINK = "127.0.0.1:2525"
LOAD_SCRIPT = "/root/postfix_load.py"
PLAYBOOK = """\
- name: Postfix as the project's role makes it (bench/postfix_bench.py)
  hosts: all
  gather_facts: false
  roles:
    - role: mailguard.mail.postfix
"""

# Port 25 as master.cf has it without and with postscreen (postconf -M smtp/inet=...); the role
# installs the rest of postscreen (smtpd/pass, dnsblog, tlsproxy, main.cf), unused behind smtpd.
SMTPD_ON_PORT_25 = "smtp inet n - y - - smtpd"
POSTSCREEN_ON_PORT_25 = "smtp inet n - y - 1 postscreen"
RESTRICTION_PARAMETERS = ["smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
                          "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions"]
# Restrictions emptied: only the open-relay guard stays (Postfix refuses to run without one).
MINIMAL = dict.fromkeys(RESTRICTION_PARAMETERS, "") | {
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}

# What each rejection costs in DNS. "local": decided from the envelope alone, so the goal is no
# query at all; "dns": the restriction is a DNS lookup by design.
# (key, label, kind, smtp-source arguments over the defaults, expected reply, text in the reason)
REJECTIONS = [
    ("non_fqdn_helo", "non-FQDN HELO", "local", ["-M", "workstation"],
     "554 5.5.2", "Helo command rejected: need fully-qualified hostname"),
    ("non_fqdn_sender", "non-FQDN sender", "local", ["-f", "news@workstation"],
     "554 5.5.2", "Sender address rejected: need fully-qualified address"),
    ("unknown_recipient", "unknown local recipient", "local", ["-t", "nosuchuser@mx.bench.test"],
     "550 5.1.1", "User unknown in local recipient table"),
    ("unknown_recipient_null_sender", "unknown local recipient, sender <>", "local",
     ["-f", "<>", "-t", "nosuchuser@mx.bench.test"], "550 5.1.1", "User unknown in local recipient table"),
    ("relay", "relay to a foreign domain", "local", ["-t", "someone@foreign.test"],
     "554 5.7.1", "Relay access denied"),
    # 450: the role keeps unknown_address_reject_code temporary (a DNS failure must be retried).
    ("unknown_sender_domain", "sender domain does not exist", "dns", ["-f", "news@nxdomain.bench.test"],
     "450 4.1.8", "Sender address rejected: Domain not found"),
    ("dnsbl", "client listed in the DNSBL", "dns", [], "554 5.7.1", f"blocked using {DNSBL}"),
]


class MeasurementError(RuntimeError):
    """A measurement is not what it claims to be."""


# -- set-up ---------------------------------------------------------------------------------


def unbound_conf(address: str) -> str:
    return f"""\
# bench/postfix_bench.py: answers the benchmark's names and NXDOMAIN for every other name
# (local-zone "." static): nothing is ever asked upstream. The query log is the measurement.
server:
    interface: 127.0.0.1
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    chroot: ""
    use-syslog: no
    logfile: "/var/log/unbound/queries.log"
    log-queries: yes
    verbosity: 0
    num-threads: 1
    module-config: "iterator"
    local-zone: "." static
    local-zone: "bench.test." static
    local-data: "{MYHOSTNAME}. A {address}"
    local-data: "{CLIENT_NAME}. A {address}"
    local-data-ptr: "{address} {CLIENT_NAME}."
    local-data: "sender.bench.test. MX 10 mail.sender.bench.test."
    local-data: "mail.sender.bench.test. A 192.0.2.25"
    local-data: "foreign.test. MX 10 mx.foreign.test."
    local-data: "mx.foreign.test. A 192.0.2.26"
    local-zone: "{DNSBL}." static
    # The conventional test entry of a DNSBL (127.0.0.2 is always listed).
    local-data: "2.0.0.127.{DNSBL}. A 127.0.0.2"
"""


def role_vars(address: str) -> dict:
    """The lab's settings (inventories/lab/group_vars/mail_hosts) adapted to one container."""
    return {
        "postfix_myhostname": MYHOSTNAME,
        "postfix_mydomain": "bench.test",
        "postfix_mydestination": [MYHOSTNAME, "localhost"],
        "postfix_inet_protocols": "ipv4",
        # A real DNSBL zone, served by the container's unbound, with the role's reply filter style:
        # asked by smtpd (the variants without postscreen) and, weighted, by postscreen.
        "postfix_rbl_sites": [f"{DNSBL}=127.0.0.[2..11]"],
        "postfix_postscreen": True,
        "postfix_postscreen_dnsbl_sites": [f"{DNSBL}=127.0.0.[2..11]*3"],
        # Policy daemons are benchmarked separately (postgrey_bench.py); nothing to spawn either.
        "postfix_policy_services": [],
        "postfix_greylist_policy_service": "",
        "postfix_master_services": [],
        # The load generator's address is exempt from anvil's limits (100 messages/min otherwise).
        "postfix_rate_limit_exceptions": ["$mynetworks", f"{address}/32"],
        "postfix_main_cf_extra": {
            # The local domain goes to smtp-sink instead of mailboxes: the next hop of the benchmark.
            "transport_maps": f"inline:{{{MYHOSTNAME}=smtp:[127.0.0.1]:2525}}",
            # A plain file instead of the journal, which rate-limits and drops lines under load.
            "maillog_file": "/var/log/postfix.log",
        },
    }


def apply_role(box: Container, address: str) -> str:
    playbook_bin = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
    if not playbook_bin.exists():
        raise BenchError(f"{playbook_bin} is missing: run scripts/setup first")
    host = {"ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
            **role_vars(address)}
    with tempfile.TemporaryDirectory(prefix="postfix-bench-") as tmp:
        inventory = Path(tmp) / "inventory.yml"
        inventory.write_text(json.dumps({"all": {"hosts": {box.name: host}}}, indent=1))  # JSON is YAML
        playbook = Path(tmp) / "postfix.yml"
        playbook.write_text(PLAYBOOK)
        env = os.environ | {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                            "ANSIBLE_FORCE_COLOR": "0"}
        proc = subprocess.run([str(playbook_bin), "-i", str(inventory), str(playbook)], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=400, check=False)
    if proc.returncode != 0:
        raise BenchError(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    recap = [line for line in proc.stdout.splitlines() if line.startswith(box.name) and "ok=" in line]
    return " ".join(recap[-1].split()[2:]) if recap else "?"


def set_up(box: Container) -> dict:
    timings = {}
    started = time.monotonic()
    address = box.address()
    # unbound first, kept stopped: Debian's default configuration binds ::1, which the container
    # lacks; and its unit would fetch the root trust anchor from the Internet.
    box.put("/etc/default/unbound", "ROOT_TRUST_ANCHOR_UPDATE=false\n")
    box.apt_install(["unbound"], prevent_start=True)
    box.sh("rm -f /etc/unbound/unbound.conf.d/root-auto-trust-anchor-file.conf;"
           "install -d -o unbound -g unbound /var/log/unbound")
    box.put("/etc/unbound/unbound.conf.d/bench.conf", unbound_conf(address))
    box.sh("unbound-checkconf >/dev/null && systemctl restart unbound && unbound-control status >/dev/null")
    timings["unbound"] = time.monotonic() - started

    started = time.monotonic()
    recap = apply_role(box, address)  # apt still resolves through Docker's resolver here
    timings["role"] = time.monotonic() - started

    started = time.monotonic()
    # From now on every name goes to the local unbound. /etc/hosts keeps only localhost: Docker's
    # entry for the container's own address would answer smtpd's client lookups without DNS.
    box.put("/etc/resolv.conf", "nameserver 127.0.0.1\n", atomic=False)
    box.put("/etc/hosts", "127.0.0.1\tlocalhost\n", atomic=False)
    box.put(LOAD_SCRIPT, (BENCH_DIR / "postfix_load.py").read_text())
    box.sh(f"systemd-run --quiet --unit=bench-sink smtp-sink -u nobody {SINK} 256;"
           # smtpd runs chrooted: its copies of resolv.conf and hosts are refreshed at start.
           "systemctl restart postfix")
    lookup = f"import socket; print(socket.gethostbyaddr({address!r})[0], socket.gethostbyname({CLIENT_NAME!r}))"
    check = box.run("python3", "-c", lookup).split()
    if check != [CLIENT_NAME, address]:
        raise BenchError(f"the container's resolver does not answer as configured: {check}")
    wait_smtp(box, address)
    timings["wiring"] = time.monotonic() - started
    versions = box.sh("postconf -h mail_version; unbound -V | head -1 | cut -d' ' -f2").split()
    full = {p: box.run("postconf", "-h", p).strip() for p in RESTRICTION_PARAMETERS}
    return {"address": address, "postfix": versions[0], "unbound": versions[1], "role_recap": recap,
            "timings": timings, "full_restrictions": full}


def wait_smtp(box: Container, address: str, timeout: float = 20) -> None:
    probe = (f"import socket; s = socket.create_connection(({address!r}, 25), timeout=5); "
             "print(s.recv(200).decode()[:3])")  # 220, or postscreen's 220- (the rest follows)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if box.run("python3", "-c", probe, check=False).strip() == "220":
            return
        time.sleep(0.3)
    raise BenchError(f"Postfix does not greet on {address}:25")


def set_restrictions(box: Container, values: dict, port_25: str = SMTPD_ON_PORT_25) -> None:
    box.run("postconf", "-e", *(f"{name}={value}" for name, value in values.items()))
    box.run("postconf", "-M", f"smtp/inet={port_25}")
    reload(box)


def without_smtpd_dnsbl(restrictions: dict) -> dict:
    """The restrictions as the role renders them with postscreen: no reject_rbl_client in smtpd."""
    return {name: ", ".join(entry for entry in value.split(", ") if not entry.startswith("reject_rbl_client"))
            for name, value in restrictions.items()}


def reload(box: Container) -> None:
    """postfix reload: new smtpd processes (fresh DNSBL caches) for the next run."""
    box.sh("postfix reload 2>/dev/null")
    time.sleep(1.0)


# -- measurements ---------------------------------------------------------------------------


def source(box: Container, address: str, expect: str, count: int, sessions: int, extra: list[str],
           length: int | None = None) -> dict:
    args = {"-M": CLIENT_NAME, "-f": SENDER, "-t": RECIPIENT}
    args.update(dict(zip(extra[::2], extra[1::2], strict=True)))
    command = ["smtp-source", "-s", str(sessions), "-m", str(count)]
    if expect == "reject":
        command.append("-A")  # a rejected recipient is expected: RSET and go on
    if length:
        command += ["-l", str(length)]
    for option, value in args.items():
        command += [option, value]
    command.append(f"{address}:25")
    return json.loads(box.run("python3", LOAD_SCRIPT, expect, str(count), "--", *command, timeout=300))


def categorise(queries: list, address: str) -> collections.Counter:
    reverse = ipaddress.ip_address(address).reverse_pointer + "."
    counts: collections.Counter = collections.Counter()
    for name, qtype in queries:
        if name == reverse or name == f"{CLIENT_NAME}.":
            what = f"connection: {qtype} {name}"
        elif name.endswith(f".{DNSBL}."):
            what = f"DNSBL: {qtype} <client>.{DNSBL}"
        else:
            what = f"restriction: {qtype} {name}"
        counts[what] += 1
    return counts


def throughput(box: Container, info: dict, runs: int, messages: int, sessions: int, length: int) -> dict:
    address = info["address"]
    warmup = max(100, messages // 5)
    variants = {"full": (info["full_restrictions"], SMTPD_ON_PORT_25), "minimal": (MINIMAL, SMTPD_ON_PORT_25),
                "postscreen": (without_smtpd_dnsbl(info["full_restrictions"]), POSTSCREEN_ON_PORT_25)}
    samples: dict[str, list] = {name: [] for name in variants}
    for values, port_25 in variants.values():  # warm-up, not counted (postscreen's first pass included)
        set_restrictions(box, values, port_25)
        check_sent(source(box, address, "sent", warmup, sessions, [], length), warmup)
    if "PASS NEW" not in box.sh("grep -F 'postfix/postscreen' /var/log/postfix.log || true"):
        raise MeasurementError("postscreen never passed the client: it was not on port 25")
    for _ in range(runs):
        for name, (values, port_25) in variants.items():
            set_restrictions(box, values, port_25)
            result = check_sent(source(box, address, "sent", messages, sessions, [], length), messages)
            result["accepted_rate"] = messages / result["elapsed_source"]
            result["delivered_rate"] = messages / result["elapsed_done"]
            if result["container_cpu"] is not None:
                result["cpu_ms_per_message"] = result["container_cpu"] * 1000 / messages
            result["query_counts"] = categorise(result.pop("queries"), address)
            samples[name].append(result)
    figures = {}
    for name, results in samples.items():
        accepted = [r["accepted_rate"] for r in results]
        delivered = [r["delivered_rate"] for r in results]
        total = sum((r["query_counts"] for r in results), collections.Counter())
        cpu = [r["cpu_ms_per_message"] for r in results if "cpu_ms_per_message" in r]
        figures[name] = {
            "cpu_ms_per_message": statistics.median(cpu) if cpu else None,
            "accepted_median": statistics.median(accepted), "accepted_min": min(accepted),
            "accepted_max": max(accepted), "delivered_median": statistics.median(delivered),
            "queries_per_message": {k: v / (messages * runs) for k, v in sorted(total.items())},
            "samples": results,
        }
    # The full set must have looked up the sender's domain, the emptied one nothing but the client.
    if not any(k.startswith("restriction: MX") for k in figures["full"]["queries_per_message"]):
        raise MeasurementError("the full restriction set made no sender-domain lookups: it was not in effect")
    if any(not k.startswith("connection:") for k in figures["minimal"]["queries_per_message"]):
        raise MeasurementError(f"the emptied restrictions still made lookups: {figures['minimal']}")
    if not any(k.startswith("restriction: MX") for k in figures["postscreen"]["queries_per_message"]):
        raise MeasurementError("behind postscreen, smtpd made no sender-domain lookups: the restrictions were off")
    for results in samples.values():
        for r in results:
            log_matches_counter(sum(r["query_counts"].values()), r["unbound_queries"], "throughput run")
    set_restrictions(box, info["full_restrictions"])
    return figures


def check_sent(result: dict, count: int) -> dict:
    if result["sent"] != count or result["rejects"] or result["source_status"] != 0:
        raise MeasurementError(f"{count} messages should have reached smtp-sink: sent {result['sent']}, "
                               f"rejects {result['rejects']}, smtp-source {result['source_status']} "
                               f"{result['source_stderr']}, warnings {result['warnings']}")
    return result


def reordered(full: dict) -> dict | None:
    """The role's restrictions with reject_unknown_sender_domain moved from the sender list to just
    after reject_unauth_destination in the recipient list (None if the role has no such check).

    smtpd evaluates the lists in the order client, helo, sender, relay, recipient (all at RCPT TO,
    smtpd_delay_reject), so a DNS check in the sender list runs before the cheap recipient and
    relay checks of the lists after it."""
    sender = [r for r in full["smtpd_sender_restrictions"].split(", ") if r]
    recipient = [r for r in full["smtpd_recipient_restrictions"].split(", ") if r]
    if "reject_unknown_sender_domain" not in sender or "reject_unauth_destination" not in recipient:
        return None
    sender.remove("reject_unknown_sender_domain")
    recipient.insert(recipient.index("reject_unauth_destination") + 1, "reject_unknown_sender_domain")
    return full | {"smtpd_sender_restrictions": ", ".join(sender),
                   "smtpd_recipient_restrictions": ", ".join(recipient)}


def log_matches_counter(logged: int, counted: int, what: str) -> None:
    """unbound's query log (what is attributed) and its own counter (total.num.queries) agree."""
    if logged != counted:
        raise MeasurementError(f"{what}: unbound logged {logged} queries but counted {counted}")


def rejections(box: Container, info: dict, count: int, restrictions: dict) -> dict:
    address = info["address"]
    set_restrictions(box, restrictions)
    listed = f"{ipaddress.ip_address(address).reverse_pointer.removesuffix('.in-addr.arpa')}.{DNSBL}."
    figures = {}
    for key, label, kind, extra, code, reason in REJECTIONS:
        if key == "dnsbl":
            box.run("unbound-control", "local_data", f"{listed} A 127.0.0.2")
            box.run("unbound-control", "local_data", f'{listed} TXT "listed by bench/postfix_bench.py"')
        try:
            reload(box)  # fresh smtpd processes: no DNSBL answer cached from an earlier run
            result = source(box, address, "reject", count, 2, extra)
        finally:
            if key == "dnsbl":
                box.run("unbound-control", "local_data_remove", listed)
        expected = [k for k in result["rejects"] if k.startswith(code) and reason in k]
        if result["sent"] or sum(result["rejects"].values()) != count or len(expected) != len(result["rejects"]):
            raise MeasurementError(f"{label}: expected {count} x {code} ...{reason}...; got {result['rejects']}, "
                                   f"sent {result['sent']}, warnings {result['warnings']}")
        counts = categorise(result.pop("queries"), address)
        log_matches_counter(sum(counts.values()), result["unbound_queries"], label)
        per_message = {k: v / count for k, v in sorted(counts.items())}
        figures[key] = {
            "label": label, "kind": kind, "reply": code, "messages": count,
            "connections": result["connections"],
            "queries": sum(counts.values()),
            "unbound_queries": result["unbound_queries"],
            "per_message_total": sum(counts.values()) / count,
            "per_message_connection": sum(v for k, v in counts.items() if k.startswith("connection:")) / count,
            "per_message_restrictions": sum(v for k, v in counts.items() if not k.startswith("connection:")) / count,
            "per_message": per_message,
            "run": result,
        }
    return figures


# -- output ---------------------------------------------------------------------------------


def goal(met: bool) -> str:
    return "met" if met else "NOT met"


def print_setup(info: dict) -> None:
    t = info["timings"]
    print(f"\nPostfix {info['postfix']} from roles/postfix ({info['role_recap']}), unbound {info['unbound']}; "
          f"set-up: unbound {t['unbound']:.0f} s, role {t['role']:.0f} s, wiring {t['wiring']:.0f} s")
    print(f"client: smtp-source in the container, from {info['address']} (not in mynetworks, exempt from anvil "
          f"limits), HELO {CLIENT_NAME} (PTR and A in the local DNS), one message per connection")
    print(f"full restriction set (the role's, with reject_rbl_client {DNSBL}):")
    for name, value in info["full_restrictions"].items():
        print(f"    {name} = {value}")


def print_ratio(label: str, measured: dict, baseline: dict) -> None:
    """One variant's throughput and CPU per message against another's."""
    print(f"  {label}: {measured['accepted_median'] / baseline['accepted_median']:.2f}x accepted msg/s, "
          f"{measured['delivered_median'] / baseline['delivered_median']:.2f}x delivered msg/s", end="")
    if measured["cpu_ms_per_message"] and baseline["cpu_ms_per_message"]:
        extra = (measured["cpu_ms_per_message"] - baseline["cpu_ms_per_message"]) * 1000
        print(f", {measured['cpu_ms_per_message'] / baseline['cpu_ms_per_message']:.2f}x CPU per message "
              f"(difference {extra:+.0f} us per message)")
    else:
        print()


def print_throughput(figures: dict, args) -> None:
    full, minimal = figures["full"], figures["minimal"]
    print(f"\n== throughput: smtp-source -> Postfix -> smtp-sink, {args.messages} messages of {args.length} bytes, "
          f"{args.sessions} sessions, {args.runs} runs, median ==")
    print(f"  {'restrictions':<30} {'accepted msg/s':>14} {'min':>6} {'max':>6} {'delivered msg/s':>16} "
          f"{'| CPU ms/msg':>12}")
    screened = figures["postscreen"]
    for label, f in (("full (the role's)", full), ("emptied (relay guard only)", minimal),
                     ("full behind postscreen", screened)):
        cpu = f"{f['cpu_ms_per_message']:>10.2f}" if f["cpu_ms_per_message"] is not None else f"{'n/a':>10}"
        print(f"  {label:<30} {f['accepted_median']:>14.0f} {f['accepted_min']:>6.0f} {f['accepted_max']:>6.0f} "
              f"{f['delivered_median']:>16.0f} | {cpu}")
    print_ratio("full / emptied", full, minimal)
    print_ratio("postscreen / smtpd on port 25 (full restrictions)", screened, full)
    print("  (accepted: smtp-source's run time; delivered: until the last message reached smtp-sink; CPU: the "
          "whole container's CPU time\n   per message, smtp-source and smtp-sink included: less moved by other "
          "load than the clock, but not immune to it)")
    for label, f in (("full", full), ("emptied", minimal), ("behind postscreen", screened)):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in f["queries_per_message"].items())
        print(f"  DNS queries per message, {label}: {sum(f['queries_per_message'].values()):.2f} ({parts})")
    print("  (smtpd caches DNSBL answers per process: one client address, so only the first lookup in each "
          "smtpd process reaches the DNS;\n   every query is counted from unbound's query log, checked against "
          "unbound's own counter in every run)")


def print_rejections(figures: dict, moved: dict | None, count: int) -> None:
    print(f"\n== DNS queries per rejected message: {count} messages per row, one per connection ==")
    print(f"  {'rejection':<36} {'reply':<10} {'total':>6} {'connect':>8} {'checks':>7}  "
          f"{'goal: a local check makes 0 queries':<36}{'  checks, reordered' if moved else ''}")
    for key, f in figures.items():
        verdict = goal(f["per_message_restrictions"] == 0) if f["kind"] == "local" else "(DNS by design)"
        other = ""
        if moved:
            m = moved[key]
            other = f"{m['per_message_restrictions']:>8.2f}  " + (
                goal(m["per_message_restrictions"] == 0) if m["kind"] == "local" else "")
        print(f"  {f['label']:<36} {f['reply']:<10} {f['per_message_total']:>6.2f} {f['per_message_connection']:>8.2f} "
              f"{f['per_message_restrictions']:>7.2f}  {verdict:<36}{other}")
    print("  connect = smtpd's lookup of the client (PTR, then A of the name), made for every connection,")
    print("  before any restriction; checks = queries made by the restrictions:")
    for f in figures.values():
        checks = {k: v for k, v in f["per_message"].items() if not k.startswith("connection:")}
        if checks:
            print(f"    {f['label']}: " + ", ".join(f"{k.removeprefix('restriction: ')} x{v:.2f}"
                                                   for k, v in checks.items()))
    print("  (DNSBL: smtpd caches the answer per process, so a client costs one A lookup, plus a TXT when listed, "
          "per smtpd process\n   that serves it, not per message: all rows come from one address and 2 sessions)")
    if moved:
        print("  reordered = the role's lists with reject_unknown_sender_domain moved from smtpd_sender_restrictions "
              "to just after reject_unauth_destination (smtpd evaluates client, helo, sender, relay, recipient "
              "lists in that order at RCPT TO); measured here, not applied to the role")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per restriction set (default 5; median)")
    parser.add_argument("--messages", type=int, default=1000, help="messages per throughput run (default 1000)")
    parser.add_argument("--sessions", type=int, default=4, help="parallel smtp-source sessions (default 4)")
    parser.add_argument("--length", type=int, default=1024, help="message payload in bytes (default 1024)")
    parser.add_argument("--rejects", type=int, default=50, help="messages per rejection type (default 50)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    if min(args.runs, args.messages, args.sessions, args.rejects) < 1:
        parser.error("--runs, --messages, --sessions and --rejects must be at least 1")
    exit_on_signals()
    started = time.monotonic()
    host = host_info()
    print_host(host)

    status = 0
    info: dict = {}
    results: dict = {}
    with Container("postfix", hostname=MYHOSTNAME) as box:
        try:
            print(f"container {box.name}: installing unbound, applying roles/postfix ...", flush=True)
            info = set_up(box)
            print_setup(info)
            results["throughput"] = throughput(box, info, args.runs, args.messages, args.sessions, args.length)
            print_throughput(results["throughput"], args)
            results["rejections"] = rejections(box, info, args.rejects, info["full_restrictions"])
            moved = reordered(info["full_restrictions"])
            if moved:
                results["rejections_reordered"] = rejections(box, info, args.rejects, moved)
            print_rejections(results["rejections"], results.get("rejections_reordered"), args.rejects)
        except BenchError as exc:
            return fail(str(exc))
        except MeasurementError as exc:
            print(f"\nmeasurement invalid: {exc}", file=sys.stderr)
            status = 1
    print(f"\n(total benchmark time {time.monotonic() - started:.1f} s, container removed)")
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "container": info, "options": vars(args) | {"json": None},
                                         "results": results}, indent=1, default=str))
        print(f"raw figures written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
