"""Benchmark of greylist-report on a large synthetic mail log.

    python bench/greylist_report_bench.py [--lines 500000,2000000] [--triplets 20000] [--gzip] [--keep DIR]

For each size it writes a synthetic /var/log/mail.log (Postfix + postgrey lines in Debian's
syslog format: greylisted triplets, their retries and passes, pools retrying from other
networks, accepted messages, and the connect/disconnect noise that makes up most of a real
log) into a temporary file, runs `greylist-report --json` on it in a child process and prints
lines/s, MB/s and the child's peak RSS (resource.getrusage). The number of distinct triplets
is the same for every size: if memory is bounded by the triplets and not by the log, the
peak RSS stays flat while the log grows. It prints figures; it does not pass or fail.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = REPO_ROOT / "plugins" / "module_utils"
START = 8 * 3600  # 08:00:00 on Dec 1


def stamp(seconds: int) -> str:
    day, rest = divmod(seconds, 86400)
    return f"Dec {1 + day:2d} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def lines(total: int, triplets: int, seed: int = 14):
    """About `total` lines; one line in four is about greylisting, over `triplets` triplets."""
    rng = random.Random(seed)
    clock = START
    pid = 1000
    for number in range(total):
        clock += rng.random() < 0.3
        host = f"h{number % 251}.example.net"
        kind = number % 8
        if kind < 6:
            pid += 1
            yield (f"{stamp(clock)} mx1 postfix/smtpd[{pid}]: {'connect' if kind % 2 else 'disconnect'} from "
                   f"{host}[198.18.{number % 200}.{number % 250}]{'' if kind % 2 else ' ehlo=1 mail=1 rcpt=1 quit=1'}")
            continue
        which = rng.randrange(triplets)
        # One sender in ten is a pool that retries from one of four /24s.
        third = which // 256 % 256 + (rng.randrange(4) * 64 if which % 10 == 0 else 0)
        address = f"10.{which % 256}.{third}.{1 + which % 250}"
        sender, recipient = f"s{which}@d{which % 997}.test", f"r{which % 50}@example.org"
        if kind == 6 or rng.random() < 0.5:
            yield (f"{stamp(clock)} mx1 postgrey[50]: action=greylist, reason=new, client_name=unknown, "
                   f"client_address={address}, sender={sender}, recipient={recipient}")
        else:
            yield (f"{stamp(clock)} mx1 postgrey[50]: action=pass, reason=triplet found, delay=300, "
                   f"client_name=unknown, client_address={address}, sender={sender}, recipient={recipient}")


def write_log(path: Path, total: int, triplets: int, packed: bool) -> int:
    opener = gzip.open if packed else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for line in lines(total, triplets):
            handle.write(line + "\n")
    return path.stat().st_size


def run_report(path: Path) -> tuple[float, int, dict]:
    env = dict(os.environ, PYTHONPATH=str(MODULE_UTILS))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "greylog.cli", "--json", str(path)], env=env,
                            capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest child so far: the sizes run smallest first.
    return elapsed, max(peak_kib, before), json.loads(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", default="500000,2000000", help="log sizes in lines, comma-separated")
    parser.add_argument("--triplets", type=int, default=20000,
                        help="distinct senders in every log (pools add a few triplets each)")
    parser.add_argument("--gzip", action="store_true", help="gzip the synthetic logs")
    parser.add_argument("--keep", metavar="DIR", help="write the logs here and keep them")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.lines.split(","))
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="greylist-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {args.triplets} distinct senders per log, "
          f"{'gzipped' if args.gzip else 'plain'} logs in {directory}")
    print(f"{'lines':>10}  {'file MB':>7}  {'seconds':>7}  {'lines/s':>9}  {'MB/s':>6}  {'peak RSS MiB':>12}  triplets")
    try:
        for size in sizes:
            path = directory / (f"mail-{size}.log" + (".gz" if args.gzip else ""))
            size_bytes = write_log(path, size, args.triplets, args.gzip)
            elapsed, peak_kib, report = run_report(path)
            megabytes = size_bytes / 1e6
            print(f"{report['lines']:>10}  {megabytes:>7.1f}  {elapsed:>7.2f}  {report['lines'] / elapsed:>9.0f}  "
                  f"{megabytes / elapsed:>6.1f}  {peak_kib / 1024:>12.1f}  {report['triplets']['greylisted']}")
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            directory.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
