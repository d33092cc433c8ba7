"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, for the tests.

The production database is PostgreSQL, so ``make test`` runs the database-facing
tests on it as well as on SQLite: one server per test session, in a temporary data
directory on a free port, fsync off (nothing in it must survive a crash), stopped
and deleted at the end. PostgreSQL refuses to run as root, so under root (CI) its
programs run as the package's unprivileged ``postgres`` account (subprocess's
``user=``, as ``runuser`` would, but signals reach the server itself).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from devtools.ports import free_port, wait_for_port

#: Debian installs each major version's server programs here, not on PATH.
DEBIAN_BINARIES_GLOB = "/usr/lib/postgresql/*/bin"
#: The unprivileged account Debian's package creates: the server's owner under root.
SERVER_ACCOUNT = "postgres"
SUPERUSER = "ecommerce"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
#: Durability off, as for any database a test run throws away; a few more connections
#: than the default 100 for the concurrency tests, whose gunicorn workers each pool some.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
}


def find_binaries() -> Path:
    """The directory of ``initdb`` and ``postgres``: $POSTGRESQL_BIN, else Debian's newest."""
    explicit = os.environ.get("POSTGRESQL_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob(DEBIAN_BINARIES_GLOB), key=lambda path: int(Path(path).parent.name))
    if not found:
        raise FileNotFoundError(
            "PostgreSQL is not installed: `make system-deps` installs Debian's postgresql "
            "package (or set POSTGRESQL_BIN to the directory of initdb and postgres)"
        )
    return Path(found[-1])


class LocalPostgreSQL:
    """``with LocalPostgreSQL() as server:`` a running server; ``server.create_database()``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._binaries = find_binaries()
        self._directory: Path | None = None
        self._process: subprocess.Popen | None = None
        # Root: the programs run as the unprivileged account, from a directory it may enter.
        self._as_server_account: dict[str, object] = (
            {"user": SERVER_ACCOUNT, "group": SERVER_ACCOUNT, "extra_groups": [], "cwd": "/"}
            if os.getuid() == 0
            else {}
        )

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3, no password)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name unless given); its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        self._run(
            "createdb", "--host", "127.0.0.1", "--port", str(self.port), "-U", SUPERUSER, name
        )
        return self.url(name)

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(
            [str(self._binaries / program), *arguments],
            check=True,
            capture_output=True,
            **self._as_server_account,
        )

    def __enter__(self) -> LocalPostgreSQL:
        self._directory = Path(tempfile.mkdtemp(prefix="ecommerce-postgresql-"))
        if self._as_server_account:
            shutil.chown(self._directory, user=SERVER_ACCOUNT)
        data, log = self._directory / "data", self._directory / "server.log"
        try:
            self._run(
                "initdb", "--pgdata", str(data), "--username", SUPERUSER, "--auth", "trust",
                "--encoding", "UTF8", "--locale", "C.UTF-8", "--no-sync",
            )  # fmt: skip
            settings = [f"--{name}={value}" for name, value in SERVER_SETTINGS.items()]
            command = [
                str(self._binaries / "postgres"), "-D", str(data), "-p", str(self.port),
                "-k", str(self._directory), *settings,
            ]  # fmt: skip
            with log.open("wb") as log_file:
                self._process = subprocess.Popen(
                    command, stdout=log_file, stderr=subprocess.STDOUT, **self._as_server_account
                )
            wait_for_port(self.port, STARTUP_TIMEOUT_SECONDS, self._process, "PostgreSQL")
        except BaseException as error:
            output = getattr(error, "stderr", None) or b""  # initdb's, if it was initdb
            detail = log.read_text() if log.exists() else output.decode(errors="replace")
            self._stop()
            raise RuntimeError(f"PostgreSQL did not start: {error}\n{detail}") from error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        """Fast shutdown (SIGINT: sessions cut, no checkpoint wait), then delete everything."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
