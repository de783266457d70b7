"""Opening a listening TCP socket: the one place signoff binds an address.

Its own module so that any listener (``http.serve``, the Telegram webhook) can use it without
importing the HTTP app, and through it the application.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from .errors import SignoffError

LISTEN_BACKLOG = 4096  # many agents connecting at once wait in the queue (the kernel caps it at somaxconn)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Listen before serving, so the address is known (port 0 picks a free one) and early
    clients wait in the backlog instead of being refused. Every listener signoff opens comes
    from here: with TCP_NODELAY, so a response on a kept-alive connection is not held back
    ~40 ms by Nagle's algorithm waiting for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY on every accepted connection itself
    # (it only does so for sockets that say they are TCP); the listener's own option is
    # inherited by accepted sockets on Linux as well.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ("is another signoff serve running there? (`signoff status` says) Stop it, or pick another port "
                "with --port" if exc.errno == errno.EADDRINUSE else "pick another address or port")  # fmt: skip
        raise SignoffError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.listen(LISTEN_BACKLOG)
    return sock
