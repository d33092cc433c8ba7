"""The copy one process holds of a key: what it served, read or loaded last.

Two uses, one state (``loader.py``): a body never changes, so while the pointer names
the body held here no read goes past the pointer; and while the cache fails, the held
copy is what the process may answer with (RFC 5861's stale-if-error) instead of
loading from the database on every read. Thread-safe enough by construction: each
update replaces one immutable record, and a reader that sees the older one only reads
a body again or loads once more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Held:
    """A value and the version it was loaded at, and the body it came from (None: loaded, or
    stored inside its entry)."""

    body_key: str | None
    value: Any
    version: int


class HeldCopy:
    """The one copy a process holds of one key, and when it was last confirmed current."""

    def __init__(self) -> None:
        self.held: Held | None = None
        self._confirmed_at = -math.inf
        self._serving_without_the_cache = False

    def value_of_body(self, body_key: str) -> tuple[bool, Any]:
        """(True, its value) if ``body_key`` is the body held here (confirmed now); (False, None)
        otherwise."""
        held = self.held
        if held is None or held.body_key != body_key:
            return False, None
        self._confirmed_at = time.monotonic()
        return True, held.value

    def hold(self, held: Held) -> None:
        """Keep ``held``, confirmed now; a body already held for the same value keeps its key."""
        current = self.held
        if current is None or current.value is not held.value or held.body_key is not None:
            self.held = held
        self._confirmed_at = time.monotonic()

    def cache_answered(self) -> None:
        self._serving_without_the_cache = False

    def without_the_cache(
        self, within: float, still_current: Callable[[int], bool]
    ) -> tuple[Held, bool] | None:
        """The copy to serve while the cache fails, if confirmed less than ``within`` seconds
        ago and ``still_current(version)``; with True the first time in an outage (to log)."""
        held = self.held
        if (
            held is None
            or time.monotonic() - self._confirmed_at > within
            or not still_current(held.version)
        ):
            return None
        first = not self._serving_without_the_cache
        self._serving_without_the_cache = True
        return held, first
