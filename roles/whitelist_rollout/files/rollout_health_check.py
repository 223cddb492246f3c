"""Health check of a mail host after a whitelist rollout, run on the host (python3 -c, stdlib only).

Asks the running greylist (postgrey or sqlgrey) through Postfix's policy protocol
(smtpd_access_policy), always with a sender never used before, so only the client whitelist can
let it through: networks sampled from the installed whitelist must not be deferred (postgrey
answers DUNNO, sqlgrey "PREPEND X-Greylist: whitelisted ..."), an unknown client must get
DEFER_IF_PERMIT (still greylisting; the actions are case-insensitive). With --policy
exim:HOSTLIST, Exim itself (exim4 -be, the live configuration and the installed file) says
whether each client matches the named host list its greylisting ACL skips. Then the MTA must
greet with 220. Retries until --timeout while a reloaded daemon comes back. Exit 0 healthy; 1 with the
reason on stderr; the replies as JSON on stdout.
"""

import argparse
import ipaddress
import json
import socket
import subprocess
import sys
import time
import uuid


def whitelisted_networks(path):
    """The networks of a postgrey or sqlgrey whitelist file (host names, regexes, sqlgrey's class C
    prefixes are not sampled)."""
    networks = []
    with open(path, encoding="latin-1") as handle:
        for raw in handle:
            text = raw.split("#", 1)[0].strip()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                continue
    return networks


def sample(items, count):
    """First, last and evenly spaced items in between."""
    if len(items) <= count:
        return list(items)
    if count <= 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


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


def deferred(action):
    """A deferral or a rejection: anything but a pass (DUNNO, OK, PREPEND ...)."""
    return action.split()[0].upper() not in ("DUNNO", "OK", "PREPEND")


def smtp_banner(service, timeout):
    with socket.create_connection(host_port(service), timeout=timeout) as conn:
        conn.settimeout(timeout)
        banner = conn.makefile("rb").readline().decode(errors="replace").strip()
        conn.sendall(b"QUIT\r\n")
    return banner


def problems(args, networks):
    """Every reason the host is not healthy (empty when it is), and the replies seen."""
    found, replies = [], {}
    # One client per sampled network (its first address), then the unknown client.
    sampled = {str(network.network_address): network for network in sample(networks, args.samples)}
    clients = [*sampled, args.unknown_client]
    exim = args.policy.startswith("exim:")
    try:
        if exim:
            replies.update(exim_actions(args.policy[len("exim:"):], clients, args.io_timeout))
        else:
            for client in clients:
                replies[client] = policy_action(args.policy, client, args.io_timeout)
    except OSError as exc:
        return [f"the greylist's policy service {args.policy} does not answer: {exc}"], replies
    for client, network in sampled.items():
        if deferred(replies[client]):
            found.append(f"the greylist answered {replies[client]!r} for {client} of the whitelisted {network}")
    action = replies[args.unknown_client]
    if not action.upper().startswith("DEFER_IF_PERMIT"):
        found.append(f"the greylist answered {action!r} for the unknown client {args.unknown_client}, "
                     "not DEFER_IF_PERMIT")
    mta = "Exim" if exim else "Postfix"
    try:
        banner = smtp_banner(args.smtp, args.io_timeout)
    except OSError as exc:
        return [*found, f"{mta} does not answer on {args.smtp}: {exc}"], replies
    replies["smtp"] = banner
    if not banner.startswith("220"):
        found.append(f"{mta} greets {banner!r} on {args.smtp}, not 220")
    return found, replies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whitelist", required=True)
    parser.add_argument("--policy", default="127.0.0.1:10023")
    parser.add_argument("--smtp", default="127.0.0.1:25")
    parser.add_argument("--unknown-client", default="192.0.2.1")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--io-timeout", type=float, default=5.0)
    args = parser.parse_args()
    try:
        networks = whitelisted_networks(args.whitelist)
    except OSError as exc:
        print(f"cannot read the installed whitelist: {exc}", file=sys.stderr)
        return 1
    if not networks:
        print(f"{args.whitelist} holds no network", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while True:
        found, replies = problems(args, networks)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(json.dumps({"healthy": not found, "replies": replies}))
    if found:
        print(f"unhealthy after {args.timeout:g} s: " + "; ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
