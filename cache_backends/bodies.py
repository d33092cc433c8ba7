"""A key's bodies shared by the processes of one instance: each body read from the remote once
per instance, not once per process.

A body (``versioned.Body``) is written once under a key of its own and never changed,
so a copy of it is good for as long as a pointer names it. When a pointer moves, every
gunicorn worker of every instance needs the new body: read by each from the shared
cache, that is processes x the body's size (24 read units for 10,000 natural names)
per change, enough at a thousand instances to throttle the body's one item.
:class:`SharedBodies` makes it instances x size: the first process of an instance to
need a body takes a lock file, reads it and publishes it to a file of the instance's
own; the others wait a moment for that file instead of reading too (the same dance as
the pointer's near copy, ``shared.once_per_instance``), and the process that stored a
body publishes it as it stores it, so its instance never reads it back.

Nothing read from a file is trusted blindly: each file is the pickled value sealed by
the cache's signing codec (``codec.py``: an HMAC over the body's key and the bytes), so
a file that is truncated, of another body, of another format, or written by anyone
without the fleet's signing key is ignored and the remote is read instead, and
nothing is unpickled before its signature is checked. A file is written under a
temporary name and renamed into place, so a reader sees a whole body or none, and a
writer that dies mid-write leaves the published files as they were. The newest few
files are kept (``KEEP_BODIES``); a process holds the body it serves in memory, so
an older file is only ever read by a process that was behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cache_backends.codec import InvalidEntry
from cache_backends.shared import once_per_instance

logger = logging.getLogger(__name__)

#: Body files kept per key: the one served, the one before it, and a write racing both.
KEEP_BODIES = 3
_SUFFIX = ".body"
#: A temporary file this old was left by a writer that died before renaming it.
ABANDONED_SECONDS = 60
#: What a file's signature covers besides its bytes: never the name of a remote item,
#: so a blob copied from the table into a file (or back) fails verification.
_SIGNED_AS = "instance-file:"


class Sealer(Protocol):
    """What signs a file's bytes and checks them back: a ``codec.EntryCodec``."""

    def seal(self, storage_key: str, body: bytes, expires_ms: int | None) -> bytes: ...

    def unseal(self, storage_key: str, blob: bytes, expires_ms: int | None) -> bytes: ...


class SharedBodies:
    """The bodies of one key published in ``directory`` for an instance's processes."""

    def __init__(self, directory: Path, sealer: Sealer) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.sealer = sealer
        self._lock_path = directory / "read.lock"

    def get(self, body_key: str, read: Callable[[], Any]) -> Any:
        """The body under ``body_key``: published here, or ``read()`` from the remote by one
        process of the instance (then published); None if the remote has it no more."""
        found = self._published(body_key)
        if found is not None:
            return found[0]

        def read_and_publish() -> tuple[Any]:
            again = self._published(body_key)  # published while this process took the lock
            if again is not None:
                return again
            value = read()
            if value is not None:
                self.publish(body_key, value)
            return (value,)

        answer = once_per_instance(
            self._lock_path, lambda: self._published(body_key), read_and_publish
        )
        return read() if answer is None else answer[0]

    def publish(self, body_key: str, value: Any) -> None:
        """Share ``value`` as the body under ``body_key``; a failure only costs reads."""
        try:
            blob = self.sealer.seal(
                _SIGNED_AS + body_key, pickle.dumps(value, pickle.HIGHEST_PROTOCOL), None
            )
            temporary = self.directory / f".{uuid.uuid4().hex}.tmp"
            temporary.write_bytes(blob)
            os.replace(temporary, self._path(body_key))
            self._prune()
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            logger.warning("body %r not shared in %s", body_key, self.directory, exc_info=True)

    def _published(self, body_key: str) -> tuple[Any] | None:
        """(the value,) if a whole, verified file holds the body; None otherwise."""
        try:
            blob = self._path(body_key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            logger.warning("body file of %r unreadable: ignored", body_key, exc_info=True)
            return None
        try:
            serialized = self.sealer.unseal(_SIGNED_AS + body_key, blob, None)
        except InvalidEntry as error:
            logger.warning("body file of %r ignored (%s): read from the cache", body_key, error)
            return None
        try:
            return (pickle.loads(serialized),)
        except Exception:  # signed by the fleet, yet not loadable here (a class since renamed)
            logger.warning("body file of %r not loadable: ignored", body_key, exc_info=True)
            return None

    def _path(self, body_key: str) -> Path:
        return self.directory / (hashlib.sha256(body_key.encode()).hexdigest()[:32] + _SUFFIX)

    def _prune(self) -> None:
        """Remove all but the ``KEEP_BODIES`` newest files, and temporaries a dead writer left."""
        now = time.time()
        files = []
        for path in self.directory.iterdir():
            try:
                files.append((path.stat().st_mtime, path))
            except FileNotFoundError:
                continue  # pruned by another process meanwhile
        bodies = sorted((entry for entry in files if entry[1].suffix == _SUFFIX), reverse=True)
        abandoned = [
            entry
            for entry in files
            if entry[1].suffix == ".tmp" and now - entry[0] > ABANDONED_SECONDS
        ]
        for _, path in [*bodies[KEEP_BODIES:], *abandoned]:
            path.unlink(missing_ok=True)
