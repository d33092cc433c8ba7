"""The near-cache over DynamoDB Local: what it answers from memory, for how long, and what never.

Two "processes" are two NearCache objects over two DynamoDBCache objects on one
table, as two gunicorn workers are. Round trips are counted on botocore's wire;
the near layer's own clock is a fake the test moves, so expiry is exact.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cachelib import SimpleCache
from flask import Flask

from cache_backends.dynamodb import DynamoDBCache
from cache_backends.near import NearCache
from cache_backends.strict import CacheUnavailable
from cache_backends.versioned import VersionedEntry, near_lifetime, near_rank, store_entry
from devtools.dynamodb_local import DynamoDBLocal
from ecommerce.extensions import cache
from ecommerce.metrics import NEAR_CACHE_LOOKUPS
from tests.support.app import SEED_CATEGORIES, TOYS, get_categories, post_category
from tests.support.caches import (
    TEST_SIGNING_KEY,
    local_dynamodb_cache,
    record_dynamodb_calls,
)

NEAR_TTL_SECONDS = 1.0
GET_ITEM = "GetItem"


class MonotonicClock:
    """The near layer's clock: starts at 0, moved on only by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeNear = Callable[..., NearCache]


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock()


@pytest.fixture
def make_near(dynamodb_local: DynamoDBLocal, clock: MonotonicClock) -> MakeNear:
    """A new "process": a NearCache over its own DynamoDBCache, all on one table."""
    table = f"test-near-{uuid.uuid4().hex[:12]}"

    def make(**options: object) -> NearCache:
        remote = local_dynamodb_cache(dynamodb_local.endpoint_url, table)
        options.setdefault("clock", clock)
        options.setdefault("keep", near_lifetime)
        return NearCache(remote, NEAR_TTL_SECONDS, **options)  # type: ignore[arg-type]

    return make


def fresh_entry(value: object, version: int, fresh_for: float = 60.0) -> VersionedEntry:
    now = time.time()
    return VersionedEntry(value, version, version, now + fresh_for, now + fresh_for)


def test_a_near_hit_costs_no_dynamodb_call(make_near: MakeNear) -> None:
    writer, reader = make_near(), make_near()
    writer.set("k", ["v"])
    writer_calls, reader_calls = record_dynamodb_calls(writer), record_dynamodb_calls(reader)

    assert [writer.get("k") for _ in range(50)] == [["v"]] * 50
    assert [reader.get("k") for _ in range(50)] == [["v"]] * 50

    assert writer_calls == []  # it kept what it wrote
    assert reader_calls == [GET_ITEM]  # one read, then memory
    assert writer.has("k") and reader.get_many("k", "absent") == [["v"], None]
    assert reader_calls == [GET_ITEM, "BatchGetItem"]  # only "absent" went to DynamoDB


def test_another_process_write_is_seen_once_the_near_ttl_ends(
    make_near: MakeNear, clock: MonotonicClock
) -> None:
    writer, reader = make_near(), make_near()
    writer.set("k", "old")
    assert reader.get("k") == "old"

    writer.set("k", "new")
    assert writer.get("k") == "new"  # the writer at once
    clock.advance(NEAR_TTL_SECONDS - 0.01)
    assert reader.get("k") == "old"  # within the bound: the near copy
    clock.advance(0.02)
    assert reader.get("k") == "new"  # past it: DynamoDB's


def test_deletes_are_seen_by_the_deleting_process_at_once(make_near: MakeNear) -> None:
    process = make_near()
    process.set("a", 1)
    process.set("b", 2)
    assert process.get("a") == 1

    process.delete("a")
    process.delete_many("b")

    assert process.get("a") is None and process.get("b") is None


def test_a_value_is_never_kept_past_the_timeout_it_was_set_with(
    make_near: MakeNear, clock: MonotonicClock
) -> None:
    process = make_near()
    process.set("short", "v", timeout=1)
    near = NearCache(process.remote, 5 * NEAR_TTL_SECONDS, clock=clock)
    near.set("short", "v", timeout=1)
    calls = record_dynamodb_calls(near)
    clock.advance(1.01)
    near.get("short")
    assert calls == [GET_ITEM]  # kept 1 s (the timeout), not 5 s (the near TTL)


def test_a_versioned_entry_is_kept_only_while_fresh(make_near: MakeNear) -> None:
    process = make_near()
    calls = record_dynamodb_calls(process)
    store_entry(process.strict, "list", fresh_entry(["v1"], 1, fresh_for=0.2), 60)
    assert process.get("list").value == ["v1"]
    assert calls == ["PutItem"]  # the near copy answered

    time.sleep(0.25)  # past fresh_until (wall clock): now only DynamoDB may answer
    assert not process.get("list").is_fresh(time.time())
    assert process.get("list") is not None
    assert calls == ["PutItem", GET_ITEM, GET_ITEM]


def test_a_copy_below_the_floor_is_read_again_at_once(make_near: MakeNear) -> None:
    """The app raises the floor when it hears of a change: the near TTL is not waited out."""
    heard: list[int] = []
    writer = make_near()
    reader = make_near(rank=near_rank)
    reader.watch("list", lambda: heard[-1] if heard else None)
    store_entry(writer.strict, "list", fresh_entry(["v1"], 1), 60)
    assert reader.get("list").value == ["v1"]
    calls = record_dynamodb_calls(reader)

    heard.append(1)  # the version it holds: still current
    assert reader.get("list").value == ["v1"]
    assert calls == []
    store_entry(writer.strict, "list", fresh_entry(["v2"], 2), 60)
    heard.append(2)

    assert reader.get("list").value == ["v2"]
    assert reader.get("list").value == ["v2"]
    assert calls == [GET_ITEM]  # once, then the new near copy


@pytest.mark.parametrize(
    "not_fresh",
    [
        VersionedEntry.tombstone(2),
        fresh_entry(["v1"], 1).marked_stale(2, time.time() + 60),
    ],
    ids=["tombstone", "stale-mark"],
)
def test_tombstones_and_stale_marks_always_come_from_dynamodb(
    make_near: MakeNear, not_fresh: VersionedEntry
) -> None:
    process = make_near()
    store_entry(process.strict, "list", fresh_entry(["v1"], 1), 60)
    assert store_entry(process.strict, "list", not_fresh, 60)
    calls = record_dynamodb_calls(process)

    assert [process.get("list") for _ in range(3)] == [not_fresh] * 3
    assert calls == [GET_ITEM] * 3


def test_a_refused_versioned_write_drops_the_near_copy(make_near: MakeNear) -> None:
    """The remote holds a newer version than this process's copy: the next read asks it."""
    slow, fast = make_near(), make_near()
    store_entry(slow.strict, "list", fresh_entry(["v1"], 1), 60)
    assert slow.get("list").version == 1
    store_entry(fast.strict, "list", fresh_entry(["v3"], 3), 60)

    assert not store_entry(slow.strict, "list", fresh_entry(["v2"], 2), 60)  # fenced

    assert slow.get("list").value == ["v3"]


def test_leases_and_counters_always_go_to_dynamodb(make_near: MakeNear) -> None:
    process, other = make_near(), make_near()
    assert process.add("lease", "mine", timeout=60)
    assert not other.add("lease", "theirs", timeout=60)
    calls = record_dynamodb_calls(other)

    assert [other.get("lease") for _ in range(3)] == ["mine"] * 3
    assert calls == [GET_ITEM] * 3
    assert other.inc("hits") == 1 and process.inc("hits") == 2
    calls.clear()
    assert other.get("hits") == 2 and other.get("hits") == 2
    assert calls == [GET_ITEM] * 2


def test_the_lru_is_bounded_in_entries_and_bytes(make_near: MakeNear) -> None:
    process = make_near(max_entries=2, max_bytes=1_000)
    calls = record_dynamodb_calls(process)
    process.set("a", "1")
    process.set("b", "2")
    process.get("a")  # a is now the most recently used
    process.set("c", "3")  # evicts b
    process.set("big", "x" * 2_000)  # larger than the whole layer: not kept

    assert process.near_size()[0] == 2
    assert process.near_size()[1] <= 1_000
    calls.clear()
    assert [process.get(key) for key in ("a", "c")] == ["1", "3"]
    assert calls == []
    assert process.get("b") == "2" and process.get("big") == "x" * 2_000
    assert calls == [GET_ITEM, GET_ITEM]


def test_a_caller_that_mutates_its_answer_changes_nobody_elses(make_near: MakeNear) -> None:
    """A hit hands out the held value itself, frozen: mutating it raises, nothing changes."""
    process = make_near()
    process.set("list", [{"id": 1}])
    answer = process.get("list")
    with pytest.raises(TypeError, match="read-only"):
        answer.append({"id": 666})
    with pytest.raises(TypeError, match="read-only"):
        answer[0]["id"] = 666
    assert process.get("list") == [{"id": 1}] and process.get("list") is answer
    mine = answer.copy()  # a plain list, the caller's own
    mine.append({"id": 2})
    assert process.get("list") == [{"id": 1}]


class Mutable:
    """A value freezing does not know: held pickled, so each hit is a copy of its own."""

    def __init__(self) -> None:
        self.items = [1]


def test_a_value_that_cannot_be_frozen_is_copied_per_hit(make_near: MakeNear) -> None:
    process = make_near()
    process.set("object", Mutable())
    calls = record_dynamodb_calls(process)
    first = process.get("object")
    first.items.append(666)
    assert process.get("object").items == [1]
    assert calls == [], "both answers came from the near copy"


def test_the_strict_interface_raises_where_the_edge_degrades(make_near: MakeNear) -> None:
    """A near hit is an answer; a remote that cannot be asked is an exception, strictly."""
    process = make_near()
    process.set("k", "v")
    down = NearCache(
        DynamoDBCache(
            "unreachable",
            endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
            region_name="us-east-1",
            signing_key=TEST_SIGNING_KEY,
        ),
        NEAR_TTL_SECONDS,
    )
    assert down.get("k") is None
    with pytest.raises(CacheUnavailable):
        down.strict.get("k")
    assert process.strict.get("k") == "v"


def test_health_is_the_remotes_with_the_near_layer_s_size(make_near: MakeNear) -> None:
    process = make_near()
    process.set("k", "v")
    report = process.health()
    remote_report = process.remote.health()
    assert report == {**remote_report, "near": report["near"]}
    assert report["near"]["entries"] == 1 and report["near"]["ttl"] == NEAR_TTL_SECONDS


def test_a_ttl_of_zero_is_refused(make_near: MakeNear) -> None:
    process = make_near()
    with pytest.raises(ValueError, match="ttl"):
        NearCache(process.remote, 0)


# -- concurrency, with forced interleavings ----------------------------------------------

PAUSE_SECONDS = 10.0


class PausingRemote:
    """The remote, except that the named thread's first ``method`` call completes, then pauses.

    The call has reached DynamoDB when it pauses: a slow round trip whose answer
    is on its way while the test does something else in this process.
    """

    def __init__(self, backend: Any, method: str, thread: str) -> None:
        self.backend, self.method, self.thread = backend, method, thread
        self.reached = threading.Event()
        self.resume = threading.Event()
        self._paused = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.backend, name)
        if name != self.method:
            return attribute

        def call_then_pause(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if threading.current_thread().name == self.thread and not self._paused:
                self._paused = True
                self.reached.set()
                assert self.resume.wait(PAUSE_SECONDS), "the test never resumed the call"
            return result

        return call_then_pause


def in_thread(name: str, call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), name=name)
    thread.start()
    return thread, result


def wait_for_followers(process: NearCache, key: str, count: int) -> None:
    """Until ``count`` threads have joined the remote read of ``key`` under way."""
    deadline = time.monotonic() + PAUSE_SECONDS
    while process.strict.remote_reads.followers(key) < count:
        assert time.monotonic() < deadline, "the readers never joined the read under way"
        time.sleep(0.005)


def test_threads_that_miss_together_share_one_dynamodb_read(make_near: MakeNear) -> None:
    writer = make_near()
    writer.set("list", ["v"])
    remote = writer.remote
    pausing = PausingRemote(remote.strict, "get", thread="leader")
    process = NearCache(pausing, NEAR_TTL_SECONDS)  # type: ignore[arg-type]
    calls = record_dynamodb_calls(remote)

    leader, leader_result = in_thread("leader", lambda: process.get("list"))
    assert pausing.reached.wait(PAUSE_SECONDS)
    followers = [in_thread(f"follower-{i}", lambda: process.get("list")) for i in range(5)]
    wait_for_followers(process, "list", 5)
    pausing.resume.set()
    for thread, _ in [(leader, leader_result), *followers]:
        thread.join(PAUSE_SECONDS)

    assert calls == [GET_ITEM]
    assert leader_result == [["v"]] and all(result == [["v"]] for _, result in followers)


def test_a_read_that_overlaps_this_process_write_does_not_put_the_old_value_back(
    make_near: MakeNear,
) -> None:
    """The read fetched "old"; the write of "new" lands while the answer is on its way."""
    seed = make_near()
    seed.set("k", "old")
    pausing = PausingRemote(seed.remote.strict, "get", thread="reader")
    process = NearCache(pausing, NEAR_TTL_SECONDS)  # type: ignore[arg-type]

    reader, result = in_thread("reader", lambda: process.get("k"))
    assert pausing.reached.wait(PAUSE_SECONDS)
    process.set("k", "new")
    pausing.resume.set()
    reader.join(PAUSE_SECONDS)

    assert result == ["old"]  # it began before the write: either answer is right
    assert process.get("k") == "new"  # but the writer never reads its write undone


def test_of_two_overlapping_writes_neither_is_kept_near(make_near: MakeNear) -> None:
    """ "A" lands first, then "B"; A's call returns last. DynamoDB holds B, and so must we."""
    seed = make_near()
    pausing = PausingRemote(seed.remote.strict, "set", thread="slow-writer")
    process = NearCache(pausing, NEAR_TTL_SECONDS)  # type: ignore[arg-type]

    slow, _ = in_thread("slow-writer", lambda: process.set("k", "A"))
    assert pausing.reached.wait(PAUSE_SECONDS)
    process.set("k", "B")
    pausing.resume.set()
    slow.join(PAUSE_SECONDS)

    assert seed.remote.get("k") == "B"
    assert process.get("k") == "B"


# -- in the app (CACHE_NEAR_TTL) -------------------------------------------------------


@pytest.fixture
def make_near_app(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> Callable[..., Flask]:
    def build(**overrides: Any) -> Flask:
        return make_app(**dynamodb_cache_config, **overrides)

    return build


def backend_of(app: Flask) -> Any:
    return app.extensions["cache"][cache]


def test_the_app_layers_the_near_cache_over_dynamodb_only_when_asked(
    make_near_app: Callable[..., Flask], make_app: Callable[..., Flask]
) -> None:
    assert isinstance(backend_of(make_near_app()), DynamoDBCache)  # default 0: off
    near = backend_of(make_near_app(CACHE_NEAR_TTL=0.5))
    assert isinstance(near, NearCache) and isinstance(near.remote, DynamoDBCache)
    assert near.ttl == 0.5
    # SimpleCache is in the process already: nothing to put in front of it.
    assert isinstance(backend_of(make_app(CACHE_NEAR_TTL=1)), SimpleCache)


@pytest.mark.parametrize("strategy", ["invalidate", "write-through", "refresh-async"])
def test_the_writing_process_serves_its_write_at_once(
    make_near_app: Callable[..., Flask], strategy: str
) -> None:
    app = make_near_app(CACHE_NEAR_TTL=60, CATEGORIES_CACHE_STRATEGY=strategy)
    client = app.test_client()
    get_categories(client)  # cached, and kept near

    post_category(client, "Toys")
    deadline = time.monotonic() + 5
    while (answer := get_categories(client))[0] != [*SEED_CATEGORIES, TOYS]:
        assert answer[1] == "STALE" and time.monotonic() < deadline  # refresh-async only
        time.sleep(0.02)


def test_hits_are_answered_from_memory_and_counted(make_near_app: Callable[..., Flask]) -> None:
    app = make_near_app(CACHE_NEAR_TTL=60)
    client = app.test_client()
    get_categories(client)  # MISS: loads, stores, and keeps the list near
    calls = record_dynamodb_calls(backend_of(app))
    hits_before = NEAR_CACHE_LOOKUPS.labels("hit")._value.get()

    answers = [get_categories(client) for _ in range(20)]

    assert answers == [(SEED_CATEGORIES, "HIT")] * 20
    assert calls == []
    assert NEAR_CACHE_LOOKUPS.labels("hit")._value.get() == hits_before + 20
    with app.app_context():
        response = app.test_client().get("/metrics")
    assert "ecommerce_cache_near_lookups_total" in response.get_data(as_text=True)


def test_dynamodb_reads_are_bounded_by_the_near_ttl_whatever_the_request_rate(
    make_near_app: Callable[..., Flask],
) -> None:
    """Many threads read for a while; GetItems on the wire stay at about one per near TTL.

    The bound is per process: duration / CACHE_NEAR_TTL reads of the list, plus the
    first one. The lease is never read: the list stays fresh (TTL 300 s) throughout.
    """
    near_ttl, duration, threads = 0.25, 2.0, 8
    app = make_near_app(CACHE_NEAR_TTL=near_ttl)
    get_categories(app.test_client())
    calls = record_dynamodb_calls(backend_of(app))
    served = []

    def read_until(deadline: float) -> None:
        client = app.test_client()
        while time.monotonic() < deadline:
            served.append(get_categories(client)[1])

    deadline = time.monotonic() + duration
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(read_until, deadline)

    assert set(served) == {"HIT"} and len(served) > 100
    assert calls and set(calls) == {GET_ITEM}
    assert len(calls) <= math.ceil(duration / near_ttl) + 1, (len(calls), len(served))
