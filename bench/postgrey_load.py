"""Load generator for postgrey_bench.py. It runs INSIDE the benchmark container (Debian's python3,
standard library only) and talks to postgrey on 127.0.0.1:10023 over one persistent connection,
as Postfix's policy client does: attribute lines, a blank line, one "action=..." reply.

    python3 postgrey_load.py probe ADDRESS...      one request per address; prints {address: action}
    python3 postgrey_load.py run REQUESTS TRIPLETS [PID]
                                                   prints {"elapsed": s, "actions": {...}, ...}

``run`` sends TRIPLETS requests first (not timed) so that every triplet is in the greylist
database, then REQUESTS timed requests cycling through the same triplets. The client addresses
come from 203.0.113.0/24 (TEST-NET-3, in no whitelist); with postgrey's --delay far longer than
the run, every timed request takes the same path: each client list and the recipient list
scanned without a match, the auto-whitelist looked up (miss), the triplet found (early retry),
its last-seen time written back, "DEFER_IF_PERMIT Greylisted".

With PID (postgrey's), it also reports the CPU time postgrey spent during the timed requests
(/proc/PID/schedstat, nanoseconds): unlike the elapsed time, it hardly moves when other work
competes for the CPU.
"""

import json
import socket
import sys
import time

SERVER = ("127.0.0.1", 10023)


def request(client_address: str, client_name: str, sender: str, recipient: str, instance: str) -> bytes:
    """The attributes Postfix 3.7's check_policy_service sends at RCPT TO (SMTPD_POLICY_README)."""
    attributes = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "protocol_name": "ESMTP",
        "client_address": client_address,
        "client_name": client_name,
        "client_port": "43210",
        "reverse_client_name": client_name,
        "server_address": "127.0.0.1",
        "server_port": "25",
        "helo_name": client_name,
        "sender": sender,
        "recipient": recipient,
        "recipient_count": "0",
        "queue_id": "",
        "instance": instance,
        "size": "0",
        "etrn_domain": "",
        "stress": "",
        "sasl_method": "",
        "sasl_username": "",
        "sasl_sender": "",
        "ccert_subject": "",
        "ccert_issuer": "",
        "ccert_fingerprint": "",
        "ccert_pubkey_fingerprint": "",
        "encryption_protocol": "",
        "encryption_cipher": "",
        "encryption_keysize": "0",
        "policy_context": "",
        "compatibility_level": "3.6",
        "mail_version": "3.7.11",
    }
    return ("".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n").encode()


class Client:
    def __init__(self):
        self.sock = socket.create_connection(SERVER, timeout=30)
        self.reader = self.sock.makefile("rb")

    def ask(self, payload: bytes) -> str:
        self.sock.sendall(payload)
        reply = self.reader.readline()
        blank = self.reader.readline()
        if not reply.startswith(b"action=") or blank.strip():
            raise RuntimeError(f"unexpected reply {reply!r} {blank!r}")
        return reply.decode().strip()


def nomatch_request(i: int, triplets: int) -> bytes:
    host = i % 254 + 1
    t = i % triplets
    return request(
        client_address=f"203.0.113.{host}",
        # A dynamic-looking reverse name: postgrey tries every name pattern of the lists on it.
        client_name=f"dsl-203-0-113-{host}.dyn.example.net",
        sender=f"news{t}@sender{t}.example.org",
        recipient="alice@mx.bench.test",
        instance=f"bench.{i}",
    )


def probe(addresses: list[str]) -> dict:
    client = Client()
    result = {}
    for n, address in enumerate(addresses):
        action = client.ask(request(address, "unknown", "probe@probe.example.org", "probe@mx.bench.test",
                                    f"probe.{n}.{time.time()}"))
        result[address] = action.split()[0].removeprefix("action=")
    return result


def cpu_ns(pid: int | None) -> int:
    if pid is None:
        return 0
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0])


def run(requests: int, triplets: int, pid: int | None = None) -> dict:
    client = Client()
    for i in range(triplets):  # every triplet into the database first (not timed)
        client.ask(nomatch_request(i, triplets))
    payloads = [nomatch_request(i, triplets) for i in range(requests)]
    actions: dict[str, int] = {}
    cpu_started = cpu_ns(pid)
    started = time.perf_counter()
    for payload in payloads:
        reply = client.ask(payload)
        action = reply.split()[0].removeprefix("action=")
        actions[action] = actions.get(action, 0) + 1
    elapsed = time.perf_counter() - started
    server_cpu = (cpu_ns(pid) - cpu_started) / 1e9 if pid else None
    return {"requests": requests, "triplets": triplets, "elapsed": elapsed, "server_cpu": server_cpu,
            "actions": actions}


def main() -> int:
    mode = sys.argv[1]
    if mode == "probe":
        print(json.dumps(probe(sys.argv[2:])))
    elif mode == "run":
        pid = int(sys.argv[4]) if len(sys.argv) > 4 else None
        print(json.dumps(run(int(sys.argv[2]), int(sys.argv[3]), pid)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
