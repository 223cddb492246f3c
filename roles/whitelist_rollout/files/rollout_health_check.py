"""Health check of a mail host after a whitelist rollout, run on the host (python3 -c, stdlib only).

Proves both sides of the installed whitelist to the running greylist (postgrey or sqlgrey, asked
through Postfix's policy protocol smtpd_access_policy, always with a sender never used before, so
only the client whitelist can let a request through):

* inside: networks sampled from the file, at least one of each address family it holds, must not
  be deferred (postgrey answers DUNNO, sqlgrey "PREPEND X-Greylist: whitelisted ...");
* outside: one address the file does not cover in each IPv4 half (0.0.0.0/1, 128.0.0.0/1) and one
  in 2000::/3 (global unicast), plus --unknown-client, must get DEFER_IF_PERMIT (still greylisting;
  the actions are case-insensitive). A file that covers every probe address of such a range opens
  the greylist to it: unhealthy without asking.

With --client-table PATH (a Postfix host whose providers' cidr table smtpd asks before the
greylist, and postgrey's list holds no network), each client is first looked up in that table with
Postfix's own reader (postmap -q, as smtpd reads it after the reload): a match passes as smtpd's OK
does, the rest are asked of the policy service.

With --policy exim:HOSTLIST, Exim itself (exim4 -be, the live configuration and the installed file)
says whether each client matches the named host list its greylisting ACL skips. Then the MTA must
greet with 220. Retries until --timeout while a reloaded daemon comes back. Exit 0 healthy; 1 with
the reason on stderr; the replies as JSON on stdout.
"""

import argparse
import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
import uuid

# Fixed probe addresses for the outside side, in global unicast space away from the special-purpose
# and documentation ranges (the width floor refuses those in a list, so a probe there proves
# nothing). The first one the installed list does not cover is asked: a deterministic check, which
# still finds a probe when a provider happens to publish one of them.
OUTSIDE_PROBES = {
    "0.0.0.0/1": ("1.2.3.4", "23.45.67.89", "45.67.89.10", "89.10.11.12"),
    "128.0.0.0/1": ("129.1.2.3", "151.10.11.12", "185.1.2.3", "203.1.2.3"),
    "2000::/3": ("2003:1::1", "2600:1::1", "2a01:1::1", "2c0f:f000::1"),
}

# sqlgrey's class C prefix a.b.c: every address of a.b.c.0/24 is whitelisted.
CLASS_C = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")


def read_whitelist(path):
    """The networks of a whitelist file, and every network it covers (those and sqlgrey's class C
    prefixes). Only the former are sampled; host names and regexes are neither."""
    networks, covered = [], []
    with open(path, encoding="latin-1") as handle:
        for raw in handle:
            # The first field: a Postfix cidr table has the action after the network.
            text = next(iter(raw.split("#", 1)[0].split()), "")
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if CLASS_C.match(text):
                    covered.append(ipaddress.ip_network(f"{text}.0/24", strict=False))
    return networks, [*networks, *covered]


def sample(items, count):
    """First, last and evenly spaced items in between."""
    if len(items) <= count:
        return list(items)
    if count <= 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def sample_networks(networks, count):
    """count networks shared out over the address families present, at least one of each: the file
    lists IPv4 first, so a plain sample could leave IPv6 unasked."""
    families = [family for version in (4, 6) if (family := [n for n in networks if n.version == version])]
    share = max(1, count // len(families)) if families else 0
    return [network for family in families for network in sample(family, share)]


def outside_probes(covered):
    """One probe address per range of OUTSIDE_PROBES that the list does not cover, and the ranges
    where it covers every probe."""
    probes, open_ranges = [], []
    for scope, candidates in OUTSIDE_PROBES.items():
        covering = {candidate: [n for n in covered if ipaddress.ip_address(candidate) in n]
                    for candidate in candidates}
        free = [candidate for candidate, networks in covering.items() if not networks]
        if free:
            probes.append(free[0])
            continue
        wide = sorted({str(n) for networks in covering.values() for n in networks})
        open_ranges.append(f"the whitelist covers {scope} (its probe addresses are all in {', '.join(wide)}): "
                           "the greylist is open")
    return probes, open_ranges


def connect(service, timeout):
    """A connection to HOST:PORT, [v6]:PORT, or an absolute unix socket path (postgrey --unix)."""
    if service.startswith("/"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(service)
        except OSError:
            conn.close()
            raise
        return conn
    return socket.create_connection(host_port(service), timeout=timeout)


def host_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def policy_action(service, client, timeout):
    """The greylist's action for a new triplet from client (a sender never used before)."""
    request = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": str(client),
        "client_name": "unknown",
        "reverse_client_name": "unknown",
        "helo_name": "rollout-check.invalid",
        "sender": f"rollout-check-{uuid.uuid4().hex[:12]}@rollout-check.invalid",
        "recipient": "postmaster-rollout-check@rollout-check.invalid",
        "instance": uuid.uuid4().hex,
    }
    wire = "".join(f"{name}={value}\n" for name, value in request.items()) + "\n"
    with connect(service, timeout) as conn:
        conn.sendall(wire.encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("action="):
            return line[len("action=") :]
    raise OSError(f"no action in the policy service's reply {reply!r}")


def exim_actions(hostlist, clients, timeout):
    """What Exim's greylisting ACL does with each client, as DUNNO / DEFER_IF_PERMIT."""
    verdicts = f"{{DUNNO (in +{hostlist})}}{{DEFER_IF_PERMIT (not in +{hostlist})}}"
    tests = "".join(f"${{if match_ip{{{client}}}{{+{hostlist}}}{verdicts}}}\n" for client in clients)
    try:
        done = subprocess.run(["exim4", "-be"], input=tests, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"exim4 -be took longer than {timeout:g} s") from exc
    # exim -be prompts with "> " before each line it reads, a terminal or not.
    results = [text for line in done.stdout.splitlines() if (text := line.strip().lstrip(">").strip())]
    if done.returncode != 0 or len(results) != len(clients):
        raise OSError(f"exim4 -be failed: {(done.stderr or done.stdout).strip()}")
    return dict(zip(clients, results, strict=True))


def table_actions(table, clients, timeout):
    """OK (in cidr:TABLE) for each client the Postfix cidr table matches, through postmap -q."""
    try:
        done = subprocess.run(["postmap", "-q", "-", f"cidr:{table}"], input="".join(f"{c}\n" for c in clients),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"postmap -q took longer than {timeout:g} s") from exc
    # Exit 1: no key matched; anything else but 0 is an error (a table Postfix cannot read).
    if done.returncode not in (0, 1) or done.stderr.strip():
        raise OSError(f"postmap -q cidr:{table} failed: {(done.stderr or done.stdout).strip()}")
    found = dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
    return {client: f"OK (in cidr:{table}: {found[client]})" for client in clients if client in found}


def deferred(action):
    """A deferral or a rejection: anything but a pass (DUNNO, OK, PREPEND ...)."""
    return action.split()[0].upper() not in ("DUNNO", "OK", "PREPEND")


def smtp_banner(service, timeout):
    with socket.create_connection(host_port(service), timeout=timeout) as conn:
        conn.settimeout(timeout)
        banner = conn.makefile("rb").readline().decode(errors="replace").strip()
        conn.sendall(b"QUIT\r\n")
    return banner


def ask_greylist(policy, clients, timeout, client_table=None):
    """The greylist's action for each client (the client table's, when it matches)."""
    if policy.startswith("exim:"):
        return exim_actions(policy[len("exim:"):], clients, timeout)
    actions = table_actions(client_table, clients, timeout) if client_table else {}
    for client in clients:
        if client not in actions:
            actions[client] = policy_action(policy, client, timeout)
    return {client: actions[client] for client in clients}


def problems(args, inside, outside):
    """Every reason the host is not healthy (empty when it is), and the replies seen."""
    # One client per sampled network (its first address).
    sampled = {str(network.network_address): network for network in inside}
    try:
        replies = ask_greylist(args.policy, list(dict.fromkeys([*sampled, *outside])), args.io_timeout,
                               args.client_table)
    except OSError as exc:
        return [f"the greylist's policy service {args.policy} does not answer: {exc}"], {}
    found = [f"the greylist answered {replies[client]!r} for {client} of the whitelisted {network}"
             for client, network in sampled.items() if deferred(replies[client])]
    found += [f"the greylist answered {replies[client]!r} for {client}, outside the whitelist, not DEFER_IF_PERMIT"
              for client in outside if not replies[client].upper().startswith("DEFER_IF_PERMIT")]
    mta = "Exim" if args.policy.startswith("exim:") else "Postfix"
    try:
        banner = smtp_banner(args.smtp, args.io_timeout)
    except OSError as exc:
        return [*found, f"{mta} does not answer on {args.smtp}: {exc}"], replies
    replies["smtp"] = banner
    if not banner.startswith("220"):
        found.append(f"{mta} greets {banner!r} on {args.smtp}, not 220")
    return found, replies


def verdict(args):
    """Why the host is unhealthy (None when it is healthy) and the replies seen, asked again until
    --timeout while a reloaded greylist comes back."""
    try:
        networks, covered = read_whitelist(args.whitelist)
    except OSError as exc:
        return f"cannot read the installed whitelist: {exc}", {}
    if not networks:
        return f"{args.whitelist} holds no network", {}
    probes, open_ranges = outside_probes(covered)
    if open_ranges:  # the file itself is the problem: no retry changes it
        return "; ".join(open_ranges), {}
    inside = sample_networks(networks, args.samples)
    deadline = time.monotonic() + args.timeout
    while True:
        found, replies = problems(args, inside, [*probes, args.unknown_client])
        if not found:
            return None, replies
        if time.monotonic() >= deadline:
            return f"unhealthy after {args.timeout:g} s: " + "; ".join(found), replies
        time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whitelist", required=True)
    parser.add_argument("--client-table", help="Postfix cidr table asked before the policy service")
    parser.add_argument("--policy", default="127.0.0.1:10023")
    parser.add_argument("--smtp", default="127.0.0.1:25")
    parser.add_argument("--unknown-client", default="192.0.2.1")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--io-timeout", type=float, default=5.0)
    args = parser.parse_args()
    reason, replies = verdict(args)
    print(json.dumps({"healthy": reason is None, "replies": replies}))
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
