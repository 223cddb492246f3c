"""Where Postfix asks a greylist daemon, derived from where the daemon listens.

    postfix_greylist_policy_service: "{{ postgrey_listen | mailguard_policy_service }}"

postgrey and sqlgrey are told where to listen (``postgrey_listen``, ``sqlgrey_listen``: HOST:PORT
or a unix socket path); smtpd's ``check_policy_service`` needs the same place in Postfix's own
words. Written twice, the two drift apart: moving postgrey to a unix socket while Postfix still
asks inet:127.0.0.1:10023 makes every recipient get 451 4.3.5. So the Postfix form is computed.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

# Debian runs smtpd chrooted in the queue directory (master.cf "chroot = y"): a unix socket it
# can reach lies below it, and check_policy_service names it relative to it.
POSTFIX_QUEUE_DIRECTORY = "/var/spool/postfix/"


def mailguard_policy_service(listen, queue_directory=POSTFIX_QUEUE_DIRECTORY) -> str:
    """``unix:RELATIVE`` for a socket path under the queue directory, ``inet:HOST:PORT`` otherwise."""
    if not isinstance(listen, str) or not listen:
        raise AnsibleFilterError(f"a greylist listen address must be HOST:PORT or a socket path, got {listen!r}")
    if listen.startswith("/"):
        queue_directory = queue_directory.rstrip("/") + "/"
        relative = listen[len(queue_directory):] if listen.startswith(queue_directory) else ""
        if not relative or ".." in relative.split("/"):
            raise AnsibleFilterError(
                f"greylist socket {listen!r} is outside {queue_directory}: Postfix's smtpd runs chrooted "
                f"there and could never reach it (every recipient would get 451); put the socket below "
                f"{queue_directory}, e.g. {queue_directory}postgrey/socket"
            )
        return f"unix:{relative}"
    host, separator, port = listen.rpartition(":")
    if not separator or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise AnsibleFilterError(f"greylist listen address {listen!r} is neither HOST:PORT nor a socket path")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return f"inet:{host}:{port}"  # a host name: Postfix resolves it
    # Postfix writes an IPv6 address in brackets: inet:[::1]:10023.
    return f"inet:[{address}]:{port}" if address.version == 6 else f"inet:{address}:{port}"


class FilterModule:
    def filters(self):
        return {"mailguard_policy_service": mailguard_policy_service}
