"""Testinfra checks of the smoke scenario: systemd runs the container and apt installed postfix."""


def test_systemd_is_pid1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_is_up(host):
    # --wait blocks until start-up is over; a container often has a failed unit: "degraded".
    state = host.run("timeout 60 systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), host.run("systemctl --failed --no-pager").stdout


def test_postfix_installed(host):
    assert host.package("postfix").is_installed


def test_postfix_running(host):
    assert host.service("postfix@-").is_running
    assert host.socket("tcp://0.0.0.0:25").is_listening
