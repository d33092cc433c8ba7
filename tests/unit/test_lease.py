"""Lease (cache_backends/lease.py): the right to load a key, fleet-wide, through cache.add."""

from __future__ import annotations

import time

from cachelib import SimpleCache

from cache_backends.lease import LEASE_SAFETY_MARGIN_SECONDS, Lease, lease_key_for


def test_one_caller_wins_and_a_release_lets_the_next_one_in() -> None:
    cache = SimpleCache()
    key = lease_key_for("categories:all")
    mine = Lease.acquire(cache, key, seconds=30)
    assert mine is not None and cache.get(key) == mine.token
    assert Lease.acquire(cache, key, seconds=30) is None, "held"

    mine.release(cache)

    assert cache.get(key) is None
    assert Lease.acquire(cache, key, seconds=30) is not None


def test_an_old_lease_is_deleted_only_while_it_still_holds_our_token() -> None:
    """Near or past its end, the lease may be someone else's by now: read before deleting."""
    cache = SimpleCache()
    key = lease_key_for("k")
    old = Lease(key, "our-token", seconds=5, acquired_at=time.monotonic() - 5)
    assert cache.add(key, "their-token", timeout=30)  # ours expired; they took it

    old.release(cache)
    assert cache.get(key) == "their-token"

    cache.set(key, "our-token", timeout=30)
    old.release(cache)
    assert cache.get(key) is None


def test_a_young_lease_is_released_with_one_delete() -> None:
    class CountingCache(SimpleCache):
        gets = 0

        def get(self, key: str) -> object:
            self.gets += 1
            return super().get(key)

    cache = CountingCache()
    lease = Lease.acquire(cache, lease_key_for("k"), seconds=int(LEASE_SAFETY_MARGIN_SECONDS) + 10)
    assert lease is not None
    lease.release(cache)
    assert cache.gets == 0 and not cache.has(lease.key)
