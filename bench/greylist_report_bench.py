"""Benchmark of greylist-report on a large synthetic mail log (up to 1 GB and more).

    python bench/greylist_report_bench.py --size-mb 1024                 # the issue's 1 GB run
    python bench/greylist_report_bench.py --size-mb 64,256,1024          # three logs, smallest first
    python bench/greylist_report_bench.py --lines 500000,2000000 --mix postgrey   # the first version's runs

For each size it writes a synthetic /var/log/mail.log in Debian's syslog format into a
temporary file, line by line (the log is never held in memory), runs `greylist-report --json`
on it in a child process, and prints bytes, lines, seconds, MB/s, lines/s, the child's CPU
seconds and its peak RSS (its rusage). While the child reads, its RSS is sampled against the bytes it has read
(/proc/PID/status and /proc/PID/io), and printed at 1/8, 1/4, 1/2, 3/4 and all of the file: a
flat row shows that memory does not grow with the log. The distinct triplets are the same for
every size, so memory bounded by the triplets stays flat while the log grows.

Two mixes of lines (--mix):
- mta (default): a Postfix MX with postgrey, one SMTP session at a time. 40 % of sessions are
  junk (connect, a reverse-DNS warning for half of them, "lost connection" or a DNSBL reject,
  disconnect), 20 % greylisted attempts (connect, postgrey action=greylist, NOQUEUE reject 450
  Greylisted, disconnect), 25 % accepted mail (connect, TLS, postgrey action=pass - a retry after
  greylisting or a whitelisted client - client=, cleanup, qmgr from=, lmtp to=, qmgr removed,
  disconnect) and 15 % local submissions (pickup, cleanup, qmgr, smtp to=, removed); one anvil
  line per 500 sessions. 12.5 % of the lines are greylisting lines (postgrey and the 450
  rejects); most of the rest is what any mail log holds.
- postgrey: the first version of this benchmark: 3 lines in 4 are smtpd connect/disconnect,
  1 in 4 a postgrey line (no Postfix message lines at all).

It prints figures; it does not pass or fail (the issue's goal, >= 50 MB/s with constant memory,
is printed next to them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_UTILS = REPO_ROOT / "plugins" / "module_utils"
START = 8 * 3600  # 08:00:00 on Dec 1
GOAL_MB_S = 50.0
CHECKPOINTS = (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0)


def stamp(seconds: int) -> str:
    day, rest = divmod(seconds, 86400)
    return f"Dec {1 + day % 31:2d} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


class Triplets:
    """`count` senders, each greylisted from its own /24; one in ten is a pool of four /24s.

    A client's reverse name follows from its address, as in DNS: a pair's names stay as few as
    its addresses (the report keeps every name of a pair, up to 32 addresses)."""

    def __init__(self, count: int, rng: random.Random):
        self.count = count
        self.rng = rng

    def pick(self) -> tuple[str, str, str, str]:
        """(address, reverse name, sender, recipient)"""
        which = self.rng.randrange(self.count)
        third = which // 256 % 256 + (self.rng.randrange(4) * 64 if which % 10 == 0 else 0)
        address = f"10.{which % 256}.{third}.{1 + which % 250}"
        return (address, f"mx{third}.d{which % 997}.test", f"s{which}@d{which % 997}.test",
                f"r{which % 50}@example.org")


def postgrey_mix(triplets: int, seed: int = 14):
    """The first version's lines: 3 in 4 smtpd connect/disconnect, 1 in 4 postgrey."""
    rng = random.Random(seed)
    pick = Triplets(triplets, rng).pick
    clock, pid, number = START, 1000, 0
    while True:
        clock += rng.random() < 0.3
        host = f"h{number % 251}.example.net"
        kind = number % 8
        if kind < 6:
            pid += 1
            yield (f"{stamp(clock)} mx1 postfix/smtpd[{pid}]: {'connect' if kind % 2 else 'disconnect'} from "
                   f"{host}[198.18.{number % 200}.{number % 250}]{'' if kind % 2 else ' ehlo=1 mail=1 rcpt=1 quit=1'}")
        else:
            address, _name, sender, recipient = pick()
            if kind == 6 or rng.random() < 0.5:
                yield (f"{stamp(clock)} mx1 postgrey[50]: action=greylist, reason=new, client_name=unknown, "
                       f"client_address={address}, sender={sender}, recipient={recipient}")
            else:
                yield (f"{stamp(clock)} mx1 postgrey[50]: action=pass, reason=triplet found, delay=300, "
                       f"client_name=unknown, client_address={address}, sender={sender}, recipient={recipient}")
        number += 1


def mta_mix(triplets: int, seed: int = 14):
    """A Postfix + postgrey MX: SMTP sessions, most of whose lines are not about greylisting."""
    rng = random.Random(seed)
    pick = Triplets(triplets, rng).pick
    clock, pid, qid, session = START, 1000, 0x1A2B3C4D5, 0
    while True:
        session += 1
        clock += rng.random() < 0.5
        now = stamp(clock)
        pid += 1
        smtpd = f"{now} mx1 postfix/smtpd[{pid}]:"
        roll = rng.random()
        if roll < 0.40:  # junk: a scanner or a bot
            client = f"unknown[198.18.{session % 200}.{session % 250}]"
            yield f"{smtpd} connect from {client}"
            if session % 2:
                yield (f"{smtpd} warning: hostname bot{session % 977}.dyn.example.net does not resolve to address "
                       f"198.18.{session % 200}.{session % 250}: Name or service not known")
            if roll < 0.25:
                yield f"{smtpd} lost connection after EHLO from {client}"
                yield f"{smtpd} disconnect from {client} ehlo=1 commands=1/2"
            else:
                yield (f"{smtpd} NOQUEUE: reject: RCPT from {client}: 554 5.7.1 Service unavailable; Client host "
                       f"[198.18.{session % 200}.{session % 250}] blocked using zen.spamhaus.org; "
                       f"from=<x{session % 331}@spam.test> to=<r{session % 50}@example.org> proto=ESMTP helo=<bot>")
                yield f"{smtpd} disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"
            continue
        if roll < 0.85:  # from a greylisted triplet's network, or a whitelisted one
            address, name, sender, recipient = pick()
            client = f"{name}[{address}]"
            yield f"{smtpd} connect from {client}"
            if roll < 0.60:
                reason = "new" if rng.random() < 0.7 else "early-retry (120s missing)"
                yield (f"{now} mx1 postgrey[50]: action=greylist, reason={reason}, client_name={name}, "
                       f"client_address={address}, sender={sender}, recipient={recipient}")
                yield (f"{smtpd} NOQUEUE: reject: RCPT from {client}: 450 4.2.0 <{recipient}>: Recipient address "
                       f"rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.org.html; "
                       f"from=<{sender}> to=<{recipient}> proto=ESMTP helo=<{name}>")
                yield f"{smtpd} disconnect from {client} ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 commands=3/5"
                continue
            reason = "triplet found, delay=360" if roll < 0.72 else "client whitelist"
            qid += 1
            queue = f"{qid:X}"
            yield (f"{smtpd} Anonymous TLS connection established from {client}: TLSv1.3 with cipher "
                   f"TLS_AES_256_GCM_SHA384 (256/256 bits)")
            yield (f"{now} mx1 postgrey[50]: action=pass, reason={reason}, client_name={name}, "
                   f"client_address={address}, sender={sender}, recipient={recipient}")
            yield f"{smtpd} {queue}: client={client}"
            yield f"{now} mx1 postfix/cleanup[{pid + 7}]: {queue}: message-id=<{session}.{qid}@{name}>"
            yield (f"{now} mx1 postfix/qmgr[90]: {queue}: from=<{sender}>, size={1000 + session % 50000}, "
                   f"nrcpt=1 (queue active)")
            yield (f"{now} mx1 postfix/lmtp[{pid + 9}]: {queue}: to=<{recipient}>, relay=mx1.example.org"
                   f"[private/dovecot-lmtp], delay=0.1, delays=0.05/0/0.02/0.03, dsn=2.0.0, status=sent "
                   f"(250 2.0.0 <{recipient}> Saved)")
            yield f"{now} mx1 postfix/qmgr[90]: {queue}: removed"
            yield f"{smtpd} disconnect from {client} ehlo=1 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=6"
            continue
        qid += 1  # local submission going out
        queue = f"{qid:X}"
        yield f"{now} mx1 postfix/pickup[80]: {queue}: uid=1000 from=<user{session % 40}>"
        yield f"{now} mx1 postfix/cleanup[{pid + 7}]: {queue}: message-id=<{session}.{qid}@example.org>"
        yield (f"{now} mx1 postfix/qmgr[90]: {queue}: from=<user{session % 40}@example.org>, size=812, "
               f"nrcpt=1 (queue active)")
        yield (f"{now} mx1 postfix/smtp[{pid + 11}]: {queue}: to=<p{session % 700}@remote{session % 89}.test>, "
               f"relay=mx.remote{session % 89}.test[192.0.2.{session % 250}]:25, delay=0.4, delays=0.01/0/0.2/0.2, "
               f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Q{session:X})")
        yield f"{now} mx1 postfix/qmgr[90]: {queue}: removed"
        if session % 500 == 0:
            yield (f"{now} mx1 postfix/anvil[70]: statistics: max connection rate 3/60s for (smtp:198.18.1.1) "
                   f"at {now[7:]}")


MIXES = {"mta": mta_mix, "postgrey": postgrey_mix}


def write_log(path: Path, mix: str, triplets: int, *, lines: int | None = None,
              size: int | None = None) -> tuple[int, int, int]:
    """Writes lines until `lines` lines or `size` bytes; returns (bytes, lines, greylisting lines)."""
    written = count = greylisting = 0
    batch: list[str] = []
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as handle:
        for line in MIXES[mix](triplets):
            if (lines is not None and count >= lines) or (size is not None and written >= size):
                break
            count += 1
            written += len(line) + 1  # ASCII only: characters are bytes
            greylisting += "postgrey" in line or "Greylisted" in line
            batch.append(line)
            if len(batch) == 10_000:  # one write per batch: the generator, not the writes, sets the pace
                handle.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            handle.write("\n".join(batch) + "\n")
    return path.stat().st_size, count, greylisting


def _proc_value(pid: int, name: str, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/{name}") as handle:
            for row in handle:
                if row.startswith(key):
                    return int(row.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_report(path: Path, size: int,
               code: Path = MODULE_UTILS) -> tuple[float, float, int, list[tuple[float, int, int]], dict]:
    """Runs the report; returns seconds, CPU seconds, peak RSS (KiB), [(fraction, bytes read, RSS KiB)]
    and the JSON."""
    env = dict(os.environ, PYTHONPATH=str(code))
    samples: list[tuple[int, int]] = []  # (bytes read, RSS KiB)
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "greylog.cli", "--json", str(path)], env=env, stdout=out)
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                read, rss = _proc_value(child.pid, "io", "rchar:"), _proc_value(child.pid, "status", "VmRSS:")
                if read is not None and rss is not None:
                    samples.append((read, rss))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        if child.returncode != 0:
            raise SystemExit(f"greylist-report exited {child.returncode}")
        out.seek(0)
        report = json.load(out)
    rows = []
    for fraction in CHECKPOINTS:
        # The last sample taken before that much of the file was read (rchar also counts the
        # interpreter's own start-up reads: a few MB, nothing next to the log).
        before = [sample for sample in samples if sample[0] <= fraction * size]
        if before:
            rows.append((fraction, *before[-1]))
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, rows, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--size-mb", help="log sizes in MB (10^6 bytes), comma-separated, e.g. 1024 for the 1 GB run")
    sizes.add_argument("--lines", help="log sizes in lines, comma-separated (default: 500000,2000000)")
    parser.add_argument("--mix", choices=sorted(MIXES), default="mta", help="the lines of the log (default: mta)")
    parser.add_argument("--triplets", type=int, default=20000,
                        help="distinct senders in every log (pools add a few triplets each)")
    parser.add_argument("--greylog", metavar="DIR", type=Path, default=MODULE_UTILS,
                        help="directory holding the greylog package to run (default: this repository's "
                             "plugins/module_utils); a copy of an older commit's gives the before figures")
    parser.add_argument("--keep", metavar="DIR", help="write the logs here and keep them (else a temporary directory)")
    args = parser.parse_args()
    if args.size_mb:
        runs = [("size", int(float(mb) * 1e6)) for mb in sorted(args.size_mb.split(","), key=float)]
    else:
        runs = [("lines", int(n)) for n in sorted((args.lines or "500000,2000000").split(","), key=int)]
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="greylist-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"mix {args.mix}, {args.triplets} distinct senders per log; logs in {directory}; "
          f"greylog from {args.greylog}")
    try:
        for unit, amount in runs:
            path = directory / f"mail-{args.mix}-{amount}{'B' if unit == 'size' else 'L'}.log"
            started = time.perf_counter()
            size, count, greylisting = write_log(path, args.mix, args.triplets, **{unit: amount})
            print(f"\nwrote {size:,} bytes, {count:,} lines ({greylisting / count:.1%} greylisting lines) "
                  f"in {time.perf_counter() - started:.1f} s")
            elapsed, cpu, peak_kib, rows, report = run_report(path, size, args.greylog)
            assert report["lines"] == count, (report["lines"], count)
            rate = size / 1e6 / elapsed
            print(f"  bytes       {size:,}\n  lines       {count:,}\n  seconds     {elapsed:.2f}\n"
                  f"  MB/s        {rate:.1f}  (goal >= {GOAL_MB_S:.0f}: {'met' if rate >= GOAL_MB_S else 'NOT met'})\n"
                  f"  lines/s     {count / elapsed:,.0f}\n"
                  f"  CPU seconds {cpu:.2f}  ({size / 1e6 / cpu:.1f} MB per CPU second: what a loaded machine "
                  f"moves least)\n  peak RSS    {peak_kib / 1024:.1f} MiB")
            print("  RSS while reading: " + ", ".join(
                f"{read / 1e6:,.0f} MB read: {rss / 1024:.1f} MiB" for _fraction, read, rss in rows))
            print(f"  report: {report['triplets']['greylisted']} triplets greylisted, "
                  f"{report['events']['greylisted']} greylisting and {report['events']['passed']} pass events, "
                  f"{report['lines_unparsed']} lines unparsed")
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:  # also after a failed run or Ctrl-C: no 1 GB file left behind
            for leftover in directory.glob("mail-*.log"):
                leftover.unlink()
            directory.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
