"""Loopback ports for the local stack: pick free ones, refuse taken ones by name."""

from __future__ import annotations

import socket

from hopscope.stack.errors import PortInUseError

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on, or holds, ``127.0.0.1:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT also reads as taken, which is what the
        # services themselves will see when they bind it.
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def require_free(port: int, purpose: str) -> int:
    """Return ``port`` if it is free, else raise :class:`PortInUseError` naming its purpose."""
    if not 0 < port < 65536:
        raise PortInUseError(f"{purpose} port {port} is not a valid TCP port (1-65535)")
    if not port_is_free(port):
        raise PortInUseError(
            f"{purpose} port {LOOPBACK}:{port} is already in use by another process; "
            f"stop it or choose another port (omit the option to pick a free one)"
        )
    return port


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``127.0.0.1:port`` succeeds."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False
