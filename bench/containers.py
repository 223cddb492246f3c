"""Throw-away Debian 12 systemd containers for the benchmarks that need a real daemon.

Shared by postgrey_bench.py and postfix_bench.py. Every container is named
``bench-<what>-<pid>`` and labelled ``mailguard.bench``; it runs on Docker's default bridge
(or on a network named ``bench-net``), never on the Molecule lab's network. The context manager
removes it on every exit path, and ``exit_on_signals()`` turns SIGTERM / SIGHUP into a normal
exit so that those paths run too.

The image is the project's locally built ``mailguard/debian12-systemd`` (systemd as PID 1,
without privileged mode: /sys/fs/cgroup mounted, host cgroup namespace, tmpfs /run). Packages
come from the apt sources that the image carries; no host name is written here.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time

IMAGE = "mailguard/debian12-systemd:latest"
LABEL = "mailguard.bench"


class BenchError(RuntimeError):
    """The benchmark's set-up failed: there is nothing to measure."""


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP exit through SystemExit, so ``finally`` and ``with`` clean up."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def docker(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:3])}... exited with {proc.returncode}: "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def host_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    try:
        server = docker("version", "--format", "{{.Server.Version}}", timeout=30).strip()
    except (BenchError, OSError, subprocess.TimeoutExpired):
        server = "?"
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "docker_server": server,
        # Other containers on a small machine shift every figure: read them with this in mind.
        "loadavg_1min": os.getloadavg()[0],
        "other_containers": len([n for n in docker("ps", "--format", "{{.Names}}", check=False).split()
                                 if not n.startswith("bench-")]),
    }


def print_host(info: dict, extra: str = "") -> None:
    print(f"machine: nproc {info['nproc']} (cpu_count {info['cpu_count']}), load {info['loadavg_1min']:.2f}, "
          f"{info['other_containers']} other container(s) running, docker {info['docker_server']}, "
          f"Python {info['python']}, {info['platform']}{extra}")


class Container:
    """A systemd container named bench-<what>-<pid>; ``with`` starts it and always removes it."""

    def __init__(self, what: str, image: str = IMAGE, hostname: str | None = None):
        self.name = f"bench-{what}-{os.getpid()}"
        self.image = image
        self.hostname = hostname
        self.started = False

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def start(self, ready_timeout: float = 60) -> None:
        args = ["run", "-d", "--name", self.name, "--label", LABEL,
                "--tmpfs", "/run", "--tmpfs", "/run/lock",
                "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host"]
        if self.hostname:
            args += ["--hostname", self.hostname]
        self.started = True  # from here on, remove() has something to remove
        docker(*args, self.image, "/lib/systemd/systemd", timeout=60)
        deadline = time.monotonic() + ready_timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        raise BenchError(f"{self.name}: systemd did not come up within {ready_timeout:g} s (state {state!r})")

    def remove(self) -> None:
        if self.started:
            # -v: the anonymous volumes too. Never fails the benchmark: report and go on.
            subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, check=False, timeout=60)
            self.started = False

    def run(self, *argv: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> str:
        return docker("exec", *(["-i"] if stdin is not None else []), self.name, *argv,
                      stdin=stdin, check=check, timeout=timeout)

    def sh(self, script: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> str:
        return self.run("bash", "-euo", "pipefail", "-c", script, stdin=stdin, check=check, timeout=timeout)

    def put(self, path: str, content: str, mode: str = "0644", atomic: bool = True) -> None:
        """Write a file, atomically (temporary file, then rename) unless it is a mount point
        (Docker bind-mounts /etc/resolv.conf and /etc/hosts: those are rewritten in place)."""
        if atomic:
            self.sh(f'cat > "{path}.bench-tmp" && chmod {mode} "{path}.bench-tmp" && mv "{path}.bench-tmp" "{path}"',
                    stdin=content)
        else:
            self.sh(f'cat > "{path}"', stdin=content)

    def address(self) -> str:
        return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                      self.name).split()[0]

    def apt_install(self, packages: list[str], prevent_start: bool = False) -> None:
        """apt-get update and install (no recommends); ``prevent_start`` keeps services stopped."""
        script = "export DEBIAN_FRONTEND=noninteractive\n"
        if prevent_start:
            script += "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d\n"
            script += "trap 'rm -f /usr/sbin/policy-rc.d' EXIT\n"
        # The mirror is a dated snapshot: its Release files may be past Valid-Until.
        script += ("for attempt in 1 2; do\n"
                   "  apt-get -o Acquire::Check-Valid-Until=false update -qq >/dev/null &&\n"
                   f"  apt-get install -y -qq --no-install-recommends {' '.join(packages)} >/tmp/apt.log 2>&1 &&\n"
                   "  exit 0\n"
                   "  sleep 2\n"
                   "done\n"
                   "tail -n 20 /tmp/apt.log >&2; exit 1\n")
        self.sh(script, timeout=240)


def fail(message: str) -> int:
    print(f"\nbenchmark set-up failed: {message}", file=sys.stderr)
    return 2
