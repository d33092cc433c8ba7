"""A TCP proxy on 127.0.0.1 that can partition its upstream (DynamoDB Local) from its clients.

Why not SIGSTOP, as tests/integration/test_faults.py does: a paused server keeps every request
queued in its sockets and *runs them all when it resumes*, so a write the client
gave up on lands seconds later. A network partition is the opposite, and it is the
fault a cache meets in production (a security group change, a lost route, an AZ
blip): requests time out on the client and are never executed. This proxy makes
that fault on demand::

    with DynamoDBLocal() as ddb, PartitionProxy(ddb.port) as proxy:
        settings = dynamodb_settings(proxy.endpoint_url)   # the app talks to the proxy
        ...
        with proxy.partitioned():
            ...                                            # every call times out, none runs

Behaviour, per state:

- *healthy*: each accepted connection gets its own upstream connection and bytes
  are copied both ways, untouched.
- *partitioned* (:meth:`PartitionProxy.partition`): every open connection is
  blackholed, and so is every new one (accepted, never connected upstream). The
  bytes either side sends are read and discarded: not forwarded, not answered,
  not refused, so the client sees what a partition looks like, silence until its
  own timeout. (A real partition would also drop the SYN; here the kernel
  completes the handshake of the listening socket, so a client times out on
  reading rather than on connecting: botocore's read timeout instead of its
  connect timeout, the same outcome.) Discarding what the upstream sends means a
  response in flight when the partition starts never arrives either.
- *healed* (:meth:`PartitionProxy.heal`): new connections are forwarded again.
  A blackholed connection stays dead: the proxy closes it with a reset (both its
  sides), as a real partition's connections end once it heals (the peer has
  long forgotten them and answers the next segment with RST). Resuming it instead
  would deliver half a request, or a stale response to a client that moved on,
  which no real network does. The client reconnects, as botocore's pool does.

Threads, standard library only: two pump threads per forwarded connection, one per
blackholed one. Meant for tests and measurements, with a few dozen connections.
``python -m devtools.partition UPSTREAM_PORT`` runs one by hand (Enter toggles).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Self

from devtools.processes import StoppedAfterTheBlock

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: One read of a socket: larger than any DynamoDB request or response the app sends.
CHUNK_BYTES = 64 * 1024
#: Connecting to a local upstream is immediate; a slower one is down.
UPSTREAM_CONNECT_TIMEOUT_SECONDS = 2.0
#: accept() wakes this often to notice stop(): closing a listening socket does not
#: reliably interrupt a thread blocked in accept() on Linux.
ACCEPT_POLL_SECONDS = 0.2
#: How long stop() waits for each thread after closing its sockets.
THREAD_JOIN_SECONDS = 2.0
LISTEN_BACKLOG = 128
#: SO_LINGER on, 0 s: close() sends RST instead of FIN, as a connection that outlived
#: a partition ends (its peer forgot it).
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass
class ProxyCounters:
    """What went through the proxy, for a test or a measurement to check the fault happened."""

    accepted: int = 0
    forwarded_connections: int = 0
    blackholed_connections: int = 0
    forwarded_bytes: int = 0
    dropped_bytes: int = 0


@dataclass(eq=False)  # identity: connections live in a set
class _Connection:
    """One client connection and, unless it was blackholed from the start, its upstream."""

    client: socket.socket
    upstream: socket.socket | None
    #: Set once, never cleared: a blackholed connection is never forwarded again.
    blackholed: bool = False
    #: Held while forwarding one chunk, so that once partition() returns, no byte goes through.
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Directions still open; a side's orderly end (FIN) is passed on, and the sockets
    #: are closed once both sides have ended (HTTP clients rarely half-close, but may).
    open_directions: int = 2

    def sockets(self) -> list[socket.socket]:
        return [sock for sock in (self.client, self.upstream) if sock is not None]


class PartitionProxy(StoppedAfterTheBlock):
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, or drop everything.

    :param upstream_port: where the real server (DynamoDB Local) listens on 127.0.0.1.
    :param port: where the proxy listens; a free port by default.
    """

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self._requested_port = port
        self.port = 0
        self.counters = ProxyCounters()
        self._partitioned = False
        self._lock = threading.Lock()  # guards _partitioned, _connections and counters
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        #: Seconds each forwarded chunk waits first (a slow network, a loaded server): 0, none.
        self.delay_seconds = 0.0

    # --- the API ---------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """What a DynamoDB client is pointed at instead of the upstream's URL."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def is_partitioned(self) -> bool:
        with self._lock:
            return self._partitioned

    def partition(self) -> None:
        """Drop all traffic from now on, on open connections and on new ones."""
        with self._lock:
            self._partitioned = True
            connections = list(self._connections)
        for connection in connections:
            with connection.lock:  # waits for a chunk being forwarded right now
                connection.blackholed = True
        logger.info("partitioned: %d open connections blackholed", len(connections))

    def heal(self) -> None:
        """Forward new connections again; reset every connection the partition blackholed."""
        with self._lock:
            self._partitioned = False
            dead = [connection for connection in self._connections if connection.blackholed]
        for connection in dead:
            self._close(connection, reset=True)
        logger.info("healed: %d blackholed connections reset", len(dead))

    @contextmanager
    def partitioned(self) -> Iterator[PartitionProxy]:
        """Partitioned for the block, healed after it (whatever the block raised)."""
        self.partition()
        try:
            yield self
        finally:
            self.heal()

    @contextmanager
    def slowed(self, delay_seconds: float) -> Iterator[PartitionProxy]:
        """Every chunk, each way, waits ``delay_seconds`` before it is forwarded, for the block.

        A slow path rather than a dead one: every statement of a database behind the
        proxy costs a round trip's worth of it more.
        """
        self.delay_seconds = delay_seconds
        try:
            yield self
        finally:
            self.delay_seconds = 0.0

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self._requested_port))
        listener.listen(LISTEN_BACKLOG)
        listener.settimeout(ACCEPT_POLL_SECONDS)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "partition-proxy-accept")
        return self

    def stop(self) -> None:
        """Close the listener and every connection; wait for the threads."""
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            self._close(connection, reset=False)
        for thread in self._threads:
            thread.join(THREAD_JOIN_SECONDS)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # --- the machinery ---------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        # Daemon threads: a test that forgets stop() must not hang the interpreter's exit.
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed: stopping
                return
            client.settimeout(None)
            with self._lock:
                self.counters.accepted += 1
                blackholed = self._partitioned
            if blackholed:
                self._blackhole(client)
            else:
                self._forward(client)

    def _blackhole(self, client: socket.socket) -> None:
        """Accept and never answer: no upstream connection, so nothing can be executed."""
        connection = _Connection(client, None, blackholed=True)
        with self._lock:
            self._connections.add(connection)
            self.counters.blackholed_connections += 1
        self._spawn(self._pump, "partition-proxy-drop", connection, client, None)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(
                (LOOPBACK, self.upstream_port), timeout=UPSTREAM_CONNECT_TIMEOUT_SECONDS
            )
        except OSError as error:
            # The upstream is down: the client sees what it would without the proxy.
            logger.warning("upstream 127.0.0.1:%d refused: %s", self.upstream_port, error)
            client.close()
            return
        upstream.settimeout(None)
        connection = _Connection(client, upstream)
        with self._lock:
            # A partition that started while we connected covers this connection too.
            connection.blackholed = self._partitioned
            self._connections.add(connection)
            self.counters.forwarded_connections += 1
        self._spawn(self._pump, "partition-proxy-up", connection, client, upstream)
        self._spawn(self._pump, "partition-proxy-down", connection, upstream, client)

    def _pump(
        self, connection: _Connection, source: socket.socket, target: socket.socket | None
    ) -> None:
        """Copy ``source`` to ``target`` until either ends; drop the bytes once blackholed."""
        try:
            while chunk := source.recv(CHUNK_BYTES):
                if self.delay_seconds:
                    time.sleep(self.delay_seconds)
                with connection.lock:
                    if connection.blackholed or target is None:
                        self._count(dropped=len(chunk))
                        continue
                    target.sendall(chunk)
                self._count(forwarded=len(chunk))
            # An orderly end of one side: pass it on, unless the partition swallows it too.
            if target is not None and not connection.blackholed:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                with connection.lock:
                    connection.open_directions -= 1
                    other_side_open = connection.open_directions > 0
                if other_side_open:
                    return
        except OSError:  # reset by a peer, or closed by heal() or stop()
            pass
        self._close(connection, reset=False)

    def _count(self, *, forwarded: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.counters.forwarded_bytes += forwarded
            self.counters.dropped_bytes += dropped

    def _close(self, connection: _Connection, *, reset: bool) -> None:
        with self._lock:
            if connection not in self._connections:
                return  # closed already: a pump woken by that close must not send a FIN now
            self._connections.discard(connection)
        for sock in connection.sockets():
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                # close() alone does not wake a thread blocked in recv() on this socket;
                # SHUT_RD does, and sends the peer nothing, so a reset stays a bare RST.
                sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def main(argv: list[str] | None = None) -> int:
    """Proxy a port by hand: Enter toggles the partition, Ctrl-C (or EOF) stops."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("upstream_port", type=int, help="e.g. DynamoDB Local's port")
    parser.add_argument("--port", type=int, default=0, help="where to listen (default: free)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with PartitionProxy(args.upstream_port, args.port) as proxy:
        print(f"{proxy.endpoint_url} -> 127.0.0.1:{args.upstream_port}; Enter toggles", flush=True)
        with contextlib.suppress(KeyboardInterrupt, EOFError):
            while True:
                input()
                if proxy.is_partitioned:
                    proxy.heal()
                else:
                    proxy.partition()
                print("partitioned" if proxy.is_partitioned else "healed", proxy.counters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
