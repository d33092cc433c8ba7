"""A fleet-wide lease through the cache itself: who may load (or refresh) a key now.

The lease is ``cache.add(lease_key, token, seconds)``, atomic on DynamoDB (a
conditional put), SimpleCache (a lock) and Redis (SET NX), so any
Flask-Caching backend can coordinate a fleet without a lock service. A holder
that dies blocks nobody for longer than the lease. Backend errors propagate
(call it with a strict interface, ``cache_backends.strict``): a lease that could
not be asked for is not a lease someone else holds.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

LEASE_SUFFIX = ":lease"
#: A lease younger than its lifetime minus this is surely still ours: room for
#: clock skew between the instances that compare its expiry.
LEASE_SAFETY_MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this caller holds: its key, its token, and when it was taken."""

    key: str
    token: str
    seconds: int
    acquired_at: float  # time.monotonic()

    @classmethod
    def acquire(cls, cache: Any, key: str, seconds: int) -> Lease | None:
        """The lease on ``key`` if this caller won it, None if someone else holds it."""
        token = uuid.uuid4().hex
        acquired_at = time.monotonic()
        if not cache.add(key, token, timeout=seconds):
            return None
        return cls(key, token, seconds, acquired_at)

    def release(self, cache: Any) -> None:
        """Delete the lease so the next load need not wait for it, if it is still ours.

        Ours for certain while well inside its lifetime (nobody can add a live
        key): one delete. Later, read first and delete if it still holds our
        token; BaseCache has no delete-if-equal, and the gap between the two
        costs at most one extra load, never a stale value (stores are fenced).
        """
        held = time.monotonic() - self.acquired_at
        if held < self.seconds - LEASE_SAFETY_MARGIN_SECONDS or cache.get(self.key) == self.token:
            cache.delete(self.key)


def lease_key_for(key: str) -> str:
    """The key of the lease that guards loads of ``key``."""
    return key + LEASE_SUFFIX
