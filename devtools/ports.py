"""Free loopback ports, and waiting until a freshly started server listens on one."""

from __future__ import annotations

import socket
import subprocess
import time

POLL_INTERVAL_SECONDS = 0.1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port already."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int,
    timeout: float,
    process: subprocess.Popen | None = None,
    server_name: str = "DynamoDB Local",
) -> None:
    """Block until something accepts connections on 127.0.0.1:port.

    Raises RuntimeError, naming ``server_name``, as soon as ``process`` exits: a
    server that died at start-up should not cost the whole timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{server_name} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(POLL_INTERVAL_SECONDS)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")
