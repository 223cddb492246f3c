"""Start and drive the test DNS server (tests/support/dns_server.py) as a subprocess.

From pytest use the ``dns_server`` fixture (tests/conftest.py).  From a
benchmark or any other script::

    with start_dns_server({"records": {...}}) as server:
        resolver.nameservers = [server.address]
        resolver.port = server.port
        ...
        print(len(server.queries()))

A separate process, rather than a thread, keeps the server's event loop and
GIL out of the measurements and makes it a real network peer.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
RELOAD_TIMEOUT = 10.0

# Distinguishes the files of several servers sharing one directory.
_instance_counter = itertools.count(1)


class DnsServerError(RuntimeError):
    """The server failed to start or to reload; the message carries its stderr."""


class DnsServerProcess:
    """A running tests.support.dns_server subprocess.

    ``tmp_path`` holds the zone, log and stderr files; when omitted a
    temporary directory is created and removed on stop(). ``port`` 0 picks a free
    one; several servers on different 127.0.0.x addresses can share one port, as
    the name servers of a resolv.conf do.
    """

    def __init__(self, zone: dict, address: str = "127.0.0.1", tmp_path: str | Path | None = None,
                 port: int = 0):
        self.address = address
        self._wanted_port = port
        self.port: int | None = None
        self._own_dir = tmp_path is None
        self.workdir = Path(tempfile.mkdtemp(prefix="dns-lab-") if tmp_path is None else tmp_path)
        stem = f"dns-{address}-{next(_instance_counter)}-{os.getpid()}"
        self.zone_path = self.workdir / f"{stem}.zone.json"
        self.log_path = self.workdir / f"{stem}.queries.jsonl"
        self.stderr_path = self.workdir / f"{stem}.stderr"
        self._process: subprocess.Popen | None = None
        self.returncode: int | None = None  # set by stop()
        self._final_stderr: str | None = None  # kept when our own workdir is removed
        self._write_zone(zone)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> DnsServerProcess:
        if self._process is not None:
            return self
        self.log_path.touch()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.stderr_path, "wb") as stderr:
            # stderr goes to a file: a pipe nobody reads could fill up and
            # block the server in the middle of a benchmark.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.dns_server", "--zone", str(self.zone_path),
                 "--address", self.address, "--port", str(self._wanted_port), "--log", str(self.log_path)],
                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr,
            )
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """Terminate (then kill) the server; returns its exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()
        self.returncode = process.returncode
        if self._own_dir:
            self._final_stderr = self.stderr()
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.returncode

    def __enter__(self) -> DnsServerProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # -- observing and steering ------------------------------------------

    def queries(self) -> list[dict]:
        """Queries received since start or the last reset_log(), oldest first."""
        return [entry for entry in self._log_entries() if "event" not in entry]

    def reset_log(self) -> None:
        # The server appends with O_APPEND, so truncating under it is safe.
        os.truncate(self.log_path, 0)

    def update(self, zone: dict, timeout: float = RELOAD_TIMEOUT) -> None:
        """Replace the zone and return once the server serves the new one."""
        process = self._require_running()
        seen = len(self._events())
        self._write_zone(zone)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new_events = self._events()[seen:]
            if new_events:
                return self._check_reload(new_events[0])
            if process.poll() is not None:
                raise DnsServerError(f"DNS server died during reload:\n{self.stderr()}")
            time.sleep(0.01)
        raise DnsServerError(f"DNS server did not reload within {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        """What the server wrote to stderr (tracebacks, handler errors)."""
        if self._final_stderr is not None:
            return self._final_stderr
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- internals ---------------------------------------------------------

    def _write_zone(self, zone: dict) -> None:
        # Write-then-rename so a reload never reads a half-written file.
        tmp = self.zone_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(zone, indent=1), encoding="utf-8")
        os.replace(tmp, self.zone_path)

    def _require_running(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            raise DnsServerError(f"DNS server is not running:\n{self.stderr()}")
        return self._process

    def _wait_ready(self) -> int:
        """Read the READY line without blocking past the deadline."""
        deadline = time.monotonic() + READY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(remaining):
                    continue
                # The server writes the whole line with one flush, so once
                # readable, readline() returns promptly.
                line = self._process.stdout.readline().decode(errors="replace").strip()
                if line.startswith("READY "):
                    return int(line.split()[1])
                if not line:  # EOF on stdout: the server is exiting
                    raise DnsServerError(
                        f"DNS server exited with status {self._exit_status()} before READY:\n"
                        f"{self.stderr()}")
        raise DnsServerError(f"DNS server not READY within {READY_TIMEOUT} s:\n{self.stderr()}")

    def _exit_status(self) -> int | None:
        try:
            return self._process.wait(1)
        except subprocess.TimeoutExpired:
            return None

    def _log_entries(self) -> list[dict]:
        text = self.log_path.read_text(encoding="utf-8")
        # Drop a trailing partial line: the server may be mid-write.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def _events(self) -> list[dict]:
        return [entry for entry in self._log_entries() if "event" in entry]

    @staticmethod
    def _check_reload(event: dict) -> None:
        if event["event"] != "reloaded":
            raise DnsServerError(f"DNS server rejected the new zone: {event.get('error')}")


def start_dns_server(zone: dict, address: str = "127.0.0.1",
                     tmp_path: str | Path | None = None, port: int = 0) -> DnsServerProcess:
    """Start a server and return it running; call .stop() (or use ``with``) when done."""
    return DnsServerProcess(zone, address, tmp_path, port).start()
