"""systemd's notify protocol (READY/STATUS/WATCHDOG/STOPPING) for ``Type=notify`` units.

The protocol is one datagram to ``$NOTIFY_SOCKET``; the stdlib socket module does it in a few
lines, which is lighter than a dependency on libsystemd bindings that need a compiler to install.
Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. ``"READY=1\\nSTATUS=listening"``); True when a socket took it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half of ``$WATCHDOG_USEC`` (systemd's advice), when the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
