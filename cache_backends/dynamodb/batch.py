"""Batches: many keys in few requests, within DynamoDB's per-request limits.

BatchGetItem takes 100 keys and answers at most 16 MB; BatchWriteItem takes 25
puts or deletes (16 MB in all). What DynamoDB leaves unprocessed (throttling,
the 16 MB cap) is sent again, at once while each answer makes progress (the
cap: a large value's parts), with backoff when one makes none (throttling);
pages beyond the first go out concurrently, since on AWS each page is a
network round trip.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cache_backends.dynamodb.entries import entry_from_raw
from cache_backends.dynamodb.transport import Transport
from cache_backends.models import KEY_ATTRIBUTE, CacheEntry, StoredItem
from cache_backends.strict import CacheUnavailable

#: DynamoDB limits, in items per request.
MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25
#: Parts of large values per BatchWriteItem: 2 x 392 KB is ~800 KB a request, answered
#: well within the read timeout (25 parts, ~10 MB, took DynamoDB Local over 1 s);
#: the requests of one value go out concurrently (MAX_CONCURRENT_PAGES).
MAX_PARTS_PER_WRITE = 2
#: Answers without progress (nothing processed) are retried this many times, with
#: exponential backoff and full jitter starting at BATCH_BACKOFF_BASE seconds,
#: capped at BATCH_BACKOFF_CAP; what is still unprocessed then counts as a failure.
BATCH_RETRY_ATTEMPTS = 5
BATCH_BACKOFF_BASE = 0.025
BATCH_BACKOFF_CAP = 0.5
#: Extra pages of one get_many/set_many/delete_many sent at once beside the
#: caller's own; a few turn N round trips into about one within the HTTP pool.
MAX_CONCURRENT_PAGES = 4

T = TypeVar("T")


def batch_get(
    transport: Transport, skeys: list[str], consistent_read: bool
) -> dict[str, StoredItem]:
    """BatchGetItem in pages of 100: the well-formed items found, by storage key.

    On the full timeouts, not get_timeout: a page may carry up to 16 MB.
    """
    connection = transport.connection()
    table_name = transport.table_name
    found: dict[str, StoredItem] = {}

    def get_page(pending: list[str]) -> list[str]:
        response = transport.call(
            "BatchGetItem",
            f"{len(pending)} keys",
            connection.batch_get_item,
            [{KEY_ATTRIBUTE: skey} for skey in pending],
            consistent_read=consistent_read,
        )
        for raw in response.get("Responses", {}).get(table_name, []):
            entry = entry_from_raw(raw)
            if entry is not None:
                found[entry.cache_key] = entry  # one dict store: atomic under the GIL
        unprocessed = response.get("UnprocessedKeys", {}).get(table_name) or {}
        return [key[KEY_ATTRIBUTE]["S"] for key in unprocessed.get("Keys", [])]

    send_pages("BatchGetItem", skeys, MAX_BATCH_GET, get_page)
    return found


def batch_write(
    transport: Transport,
    put: Sequence[CacheEntry] = (),
    delete: Sequence[str] = (),
    *,
    page_size: int = MAX_BATCH_WRITE,
) -> None:
    """BatchWriteItem, ``page_size`` items a request (at most 25); unprocessed ones sent again."""
    connection = transport.connection()
    requests = [{"PutRequest": {"Item": entry.serialize()}} for entry in put] + [
        {"DeleteRequest": {"Key": {KEY_ATTRIBUTE: {"S": skey}}}} for skey in delete
    ]

    def write_page(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = transport.call(
            "BatchWriteItem",
            f"{len(pending)} items",
            connection.batch_write_item,
            put_items=[r["PutRequest"]["Item"] for r in pending if "PutRequest" in r],
            delete_items=[r["DeleteRequest"]["Key"] for r in pending if "DeleteRequest" in r],
        )
        return response.get("UnprocessedItems", {}).get(transport.table_name) or []

    send_pages("BatchWriteItem", requests, min(page_size, MAX_BATCH_WRITE), write_page)


def send_pages(
    operation: str, items: Sequence[T], page_size: int, send: Callable[[list[T]], list[T]]
) -> None:
    """Send ``items`` in pages, concurrently; ``send`` returns what was left unprocessed.

    Unprocessed items (DynamoDB's answer to throttling or a 16 MB response)
    are sent again: at once after an answer that processed some (a full
    response is no reason to wait), else with exponential backoff and full
    jitter; after BATCH_RETRY_ATTEMPTS answers without progress, the whole
    operation counts as failed. The
    caller sends the first page itself and a pool of its own sends the rest
    at the same time: on AWS each page is a network round trip, and a pool
    per call means one slow request never queues behind another's pages.
    """

    def send_page(page: Sequence[T]) -> None:
        pending = list(page)
        stalled = 0  # answers in a row that processed nothing
        while stalled <= BATCH_RETRY_ATTEMPTS:
            if stalled:
                _backoff(stalled)
            left = send(pending)
            if not left:
                return
            # Each answer with progress shrinks ``pending``: the loop ends.
            stalled = stalled + 1 if len(left) >= len(pending) else 0
            pending = left
        raise CacheUnavailable(f"{operation} left {len(pending)} items unprocessed")

    first, *rest = list(_chunks(items, page_size)) or [[]]
    if not rest:
        if first:
            send_page(first)
        return
    pool = ThreadPoolExecutor(
        max_workers=min(len(rest), MAX_CONCURRENT_PAGES), thread_name_prefix="cache-pages"
    )
    try:
        futures = [pool.submit(send_page, page) for page in rest]
        send_page(first)
        for future in futures:
            future.result()  # re-raises a page's CacheUnavailable here
    finally:
        # On failure, pages not yet started are dropped and the caller does not
        # wait for those in flight (each is bounded by the client's timeouts).
        pool.shutdown(wait=False, cancel_futures=True)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(BATCH_BACKOFF_CAP, BATCH_BACKOFF_BASE * 2**attempt)))
