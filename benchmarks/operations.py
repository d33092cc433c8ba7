"""What is timed, what a correct answer looks like, and the targets it must meet.

Every operation first writes what it needs (so ``get`` is always a hit), then
hands the runner a zero-argument call to time and a check for its result. The
runner checks every result outside the timed window: a cache that answered a
hit with a miss would look fast, so a wrong answer stops the run instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.contenders import BARE, CACHELIB, OURS, Contender

#: The value every cache stores: the categories list the service caches, a few
#: hundred bytes pickled, i.e. below any compression threshold and one read unit.
CATEGORIES: list[dict[str, Any]] = [
    {"id": category_id, "name": name}
    for category_id, name in enumerate(
        [
            "Electronics",
            "Clothing",
            "Books",
            "Toys",
            "Garden",
            "Kitchen",
            "Sports",
            "Beauty",
            "Automotive",
            "Music",
        ],
        start=1,
    )
]

#: Keys per batch call: BatchGetItem's per-request limit, and the size the targets name.
BATCH_SIZE = 100

GET_KEY = "bench:get"
SET_KEY = "bench:set"
INC_KEY = "bench:inc"
GET_MANY_KEYS = [f"bench:get_many:{index:03d}" for index in range(BATCH_SIZE)]
SET_MANY_MAPPING = {f"bench:set_many:{index:03d}": CATEGORIES for index in range(BATCH_SIZE)}

TimedCall = Callable[[], Any]


@dataclass(frozen=True)
class Operation:
    """One timed operation: how to set it up on a contender and how to judge its answer."""

    name: str
    #: Batch calls move 100 keys each, so they run fewer calls per round (see the runner).
    batch: bool
    #: Writes whatever the call needs on this contender and returns the call to time.
    prepare: Callable[[Contender], TimedCall]
    #: True when a (decoded) result is what a correct cache returns.
    is_correct: Callable[[Any], bool]


def _prepare_get(contender: Contender) -> TimedCall:
    contender.set(GET_KEY, CATEGORIES)
    return lambda: contender.get(GET_KEY)


def _prepare_set(contender: Contender) -> TimedCall:
    return lambda: contender.set(SET_KEY, CATEGORIES)


def _prepare_get_many(contender: Contender) -> TimedCall:
    contender.set_many(dict.fromkeys(GET_MANY_KEYS, CATEGORIES))
    return lambda: contender.get_many(GET_MANY_KEYS)


def _prepare_set_many(contender: Contender) -> TimedCall:
    return lambda: contender.set_many(SET_MANY_MAPPING)


def _prepare_inc(contender: Contender) -> TimedCall:
    # An existing counter is the common case (a rate limit, a view count).
    contender.set(INC_KEY, 0)
    return lambda: contender.inc(INC_KEY)


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", False, _prepare_get, lambda result: result == CATEGORIES),
    Operation("set", False, _prepare_set, lambda result: result is True),
    Operation(
        "get_many(100)",
        True,
        _prepare_get_many,
        lambda result: list(result) == [CATEGORIES] * BATCH_SIZE,
    ),
    Operation(
        "set_many(100)",
        True,
        _prepare_set_many,
        lambda result: sorted(result) == sorted(SET_MANY_MAPPING),
    ),
    Operation("inc", False, _prepare_inc, lambda result: isinstance(result, int)),
)


@dataclass(frozen=True)
class Target:
    """A limit on the ratio of two contenders' median latencies."""

    operation: str
    numerator: str
    denominator: str
    limit: float
    #: True: the ratio must be at most ``limit`` (a slowdown cap); False: at least (a speedup).
    at_most: bool
    description: str

    @property
    def ratio_name(self) -> str:
        return f"{self.numerator}/{self.denominator}"

    def is_met(self, ratio: float) -> bool:
        return ratio <= self.limit if self.at_most else ratio >= self.limit

    def verdict(self, ratio: dict[str, Any]) -> dict[str, Any]:
        """This target's entry in a result document, judged on ``ratio``: the ratio of
        medians (``value``) and each round's own (``per_round``), to show the spread."""
        return {
            "description": self.description,
            "operation": self.operation,
            "ratio": self.ratio_name,
            "comparison": "<=" if self.at_most else ">=",
            "limit": self.limit,
            "measured": ratio["value"],
            "per_round_min": min(ratio["per_round"]),
            "per_round_max": max(ratio["per_round"]),
            "met": self.is_met(ratio["value"]),
        }


TARGETS: tuple[Target, ...] = (
    Target("get", OURS, BARE, 1.15, True, "get: ours <= 1.15x bare GetItem"),
    Target("get", OURS, CACHELIB, 1.05, True, "get: ours <= 1.05x cachelib"),
    Target("get_many(100)", CACHELIB, OURS, 10.0, False, "get_many(100): >= 10x faster"),
    Target("set_many(100)", CACHELIB, OURS, 5.0, False, "set_many(100): >= 5x faster"),
)

#: Ratios reported for every operation where both sides are timed.
RATIO_PAIRS: tuple[tuple[str, str], ...] = ((OURS, BARE), (OURS, CACHELIB), (CACHELIB, OURS))
