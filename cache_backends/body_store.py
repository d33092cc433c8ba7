"""Where a versioned value's body lives: a key of its own, written once, read once per body.

The loader stores a value apart from its pointer (``versioned.Body``): the body first, under
a new key, then the small pointer naming it. This module is that key's reads and writes:
through the cache's own ``get``/``set``, or through what a backend offers for keys written
once (DynamoDB's ``get_written_once``/``set_written_once``: eventually consistent reads, and
copies that spread a change's burst of reads), and, where the instance shares its bodies
(``bodies.SharedBodies``), once per instance rather than once per process. Failures are
raised: the loader tells an outage from an absent body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cache_backends.bodies import SharedBodies
from cache_backends.versioned import Body

#: A value's body is stored under ``<key>:body:<write id>``.
BODY_SUFFIX = ":body:"


@dataclass(eq=False)
class BodyStore:
    """A key's bodies in ``cache`` (its strict interface: failures raise).

    :param read: reads a body (a key written once); None: ``cache.get``.
    :param write: writes one (key, value, timeout); None: ``cache.set``.
    :param shared: the instance's copies of the bodies; None: each process reads its own.
    """

    cache: Any
    read: Callable[[str], Any] | None = None
    write: Callable[[str, Any, int], bool] | None = None
    shared: SharedBodies | None = None

    @staticmethod
    def new_body(key: str) -> Body:
        """A body for a new value of ``key``: a key never used before."""
        return Body(f"{key}{BODY_SUFFIX}{uuid.uuid4().hex}")

    def put(self, body: Body, value: Any, timeout: int) -> bool:
        """Write ``value`` as ``body``; True if stored. Shared with the instance before the
        caller writes the pointer: whoever reads the pointer finds the file."""
        write = self.write or self.cache.set
        if not write(body.key, value, timeout):
            return False
        if self.shared is not None:
            self.shared.publish(body.key, value)
        return True

    def get(self, body_key: str) -> Any:
        """The body under ``body_key``, None if it is gone; once per instance when shared."""
        read = self.read or self.cache.get
        if self.shared is None:
            return read(body_key)
        return self.shared.get(body_key, lambda: read(body_key))
