"""Runner for postfix_bench.py. It runs INSIDE the benchmark container (Debian's python3,
standard library only): it starts smtp-source, times it, waits until Postfix's log shows the
outcome of every message, and returns what happened, with the DNS queries the local unbound
received meanwhile.

    python3 postfix_load.py EXPECT COUNT -- smtp-source ARGS...

EXPECT is "sent" (COUNT messages must reach smtp-sink, "status=sent" in the log) or "reject"
(COUNT "NOQUEUE: reject: RCPT" lines). Prints one JSON object, with the CPU time the whole
container used meanwhile (its cgroup's counter: Postfix, unbound, smtp-source, smtp-sink and this
runner), which other load on the machine hardly moves, unlike the elapsed time.
"""

import json
import re
import subprocess
import sys
import time

MAILLOG = "/var/log/postfix.log"
QUERYLOG = "/var/log/unbound/queries.log"
SENT = re.compile(r" status=sent \(")
REJECT = re.compile(r"NOQUEUE: reject: RCPT from \S+: (\d{3} \d\.\d\.\d) (?:<[^>]*>: )?(.*?); from=")
# unbound's log-queries line: "... info: 127.0.0.1 3.0.17.172.in-addr.arpa. PTR IN"
QUERY = re.compile(r" info: (\S+) (\S+) (\S+) IN$")
WARNING = re.compile(r"postfix/\S+\[\d+\]: (warning|error|fatal|panic): (.*)")


def size(path: str) -> int:
    with open(path, "rb") as handle:
        return handle.seek(0, 2)


def read_from(path: str, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def container_cpu() -> float | None:
    """CPU seconds used by this container's cgroup (v1 cpuacct or v2 cpu.stat); None if unknown."""
    with open("/proc/self/cgroup") as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    for _hid, controllers, path in lines:
        if "cpuacct" in controllers.split(","):
            try:
                with open(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage") as usage:
                    return int(usage.read()) / 1e9
            except OSError:
                pass
    for hid, controllers, path in lines:
        if hid == "0" and not controllers:
            try:
                with open(f"/sys/fs/cgroup{path}/cpu.stat") as stat:
                    return int(re.search(r"^usage_usec (\d+)$", stat.read(), re.M).group(1)) / 1e6
            except (OSError, AttributeError):
                pass
    return None


def unbound_total() -> int:
    out = subprocess.run(["unbound-control", "stats_noreset"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^total\.num\.queries=(\d+)$", out, re.M).group(1))


def main() -> int:
    expect, count = sys.argv[1], int(sys.argv[2])
    command = sys.argv[sys.argv.index("--") + 1:]
    log_start, queries_start, total_start = size(MAILLOG), size(QUERYLOG), unbound_total()
    cpu_start = container_cpu()
    started = time.perf_counter()
    source = subprocess.run(command, capture_output=True, text=True, check=False)
    source_done = time.perf_counter() - started
    pattern = SENT if expect == "sent" else REJECT
    deadline = time.monotonic() + 120
    seen, offset = 0, log_start
    while time.monotonic() < deadline:
        chunk = read_from(MAILLOG, offset)
        complete = chunk[:chunk.rfind("\n") + 1]  # whole lines only
        offset += len(complete.encode())
        seen += len(pattern.findall(complete))
        if seen >= count:
            break
        time.sleep(0.02)
    done = time.perf_counter() - started
    cpu_end = container_cpu()
    time.sleep(0.3)  # late log lines and queries (none expected) still get counted
    log = read_from(MAILLOG, log_start)
    rejects: dict[str, int] = {}
    for code, reason in REJECT.findall(log):
        key = f"{code} {reason}"
        rejects[key] = rejects.get(key, 0) + 1
    queries = [[name, qtype] for name, qtype in
               (m.groups()[1:] for m in map(QUERY.search, read_from(QUERYLOG, queries_start).splitlines()) if m)]
    print(json.dumps({
        "command": command,
        "source_status": source.returncode,
        "source_stderr": [line for line in source.stderr.splitlines() if "recipient rejected" not in line][-5:],
        "elapsed_source": source_done,
        "elapsed_done": done,
        "container_cpu": None if cpu_start is None or cpu_end is None else cpu_end - cpu_start,
        "sent": len(SENT.findall(log)),
        "rejects": rejects,
        "connections": log.count(": connect from "),
        "warnings": [" ".join(m) for m in WARNING.findall(log)][:10],
        "queries": queries,
        "unbound_queries": unbound_total() - total_start,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
