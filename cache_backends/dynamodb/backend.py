"""The Flask-Caching edge of the DynamoDB backend: ``BaseCache`` methods that never raise.

Each public method asks the strict store (``store.py``) and degrades a
:class:`CacheUnavailable` to what a miss answers (``cache_backends.edge``); the
class docstring is the backend's manual. Select it with
``CACHE_TYPE = "cache_backends.dynamodb.DynamoDBCache"``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import click
from botocore.exceptions import NoRegionError
from cachelib.serializers import BaseSerializer

from cache_backends.breaker import CircuitBreaker
from cache_backends.codec import DEFAULT_COMPRESS_THRESHOLD, EntryCodec
from cache_backends.dynamodb.admin import TableAdmin
from cache_backends.dynamodb.entries import EntryFormat
from cache_backends.dynamodb.settings import (
    DEFAULT_BODY_COPIES,
    DEFAULT_BREAKER_COOLDOWN,
    DEFAULT_BREAKER_FAILURES,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_GET_TIMEOUT,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TABLE_NAME,
    DEFAULT_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    REGION_SETTING,
    DynamoDBSettings,
)
from cache_backends.dynamodb.store import DynamoDBStore
from cache_backends.dynamodb.transport import Transport
from cache_backends.edge import DegradingEdge
from cache_backends.models import ConnectionSettings
from cache_backends.strict import degrade

logger = logging.getLogger(__name__)

Timeout = int | timedelta | None
#: A compress_threshold no body reaches.
NEVER_COMPRESS = sys.maxsize


class DynamoDBCache(DegradingEdge):
    """Flask-Caching backend storing each entry in a DynamoDB table: one item, or parts.

    Drop-in for ``cachelib.dynamodb.DynamoDbCache`` where the arguments overlap;
    it differs where that one falls short: batched ``get_many``/``set_many``/
    ``delete_many``, atomic ``inc``/``dec``, a conditional ``add``, ``clear``
    limited to ``key_prefix``, keys of any length, compressed and signed values,
    short timeouts with a circuit breaker, and no exception ever escaping.
    One method beyond ``BaseCache``: :meth:`set_versioned`, a put that never
    replaces an entry of a higher rank (used by ``cache_backends.versioned``).

    The ``BaseCache`` methods never raise: an outage is a miss (``None``,
    ``False``, ``[]``), logged once. :attr:`strict` offers the same methods
    raising :class:`~cache_backends.strict.CacheUnavailable` instead, for the
    layers that must tell "absent" from "failed" (``cache_backends.strict``).

    Flask configuration (read by :meth:`factory`; listed in ``settings.py``):

    ====================================  ==========================================
    ``CACHE_DYNAMODB_TABLE``              table name (``ecommerce-cache``)
    ``CACHE_DYNAMODB_REGION``             region; default: the AWS chain
    ``CACHE_DYNAMODB_ENDPOINT_URL``       e.g. DynamoDB Local's URL; default: AWS
    ``CACHE_DYNAMODB_CREATE_TABLE``       create the table at start-up (local runs)
    ``CACHE_DYNAMODB_SIGNING_KEY``        HMAC key; falls back to ``SECRET_KEY``
    ``CACHE_DYNAMODB_OLD_SIGNING_KEYS``   list of keys still accepted on reads
    ``CACHE_DYNAMODB_CONSISTENT_READ``    strongly consistent reads (``True``)
    ``CACHE_DYNAMODB_MAX_VALUE_BYTES``    largest value after compression (``8388608``)
    ``CACHE_DYNAMODB_BODY_COPIES``        copies of each list body (``8``)
    ``CACHE_DYNAMODB_CONNECT_TIMEOUT``    seconds (``1.0``)
    ``CACHE_DYNAMODB_READ_TIMEOUT``       seconds (``1.0``)
    ``CACHE_DYNAMODB_GET_TIMEOUT``        seconds for get and has (``0.1``)
    ``CACHE_DYNAMODB_WRITE_TIMEOUT``      seconds for request-path writes (``0.3``)
    ``CACHE_DYNAMODB_MAX_RETRIES``        botocore retries per call (``1``)
    ``CACHE_DYNAMODB_MAX_POOL``           HTTP connections per process (``32``)
    ``CACHE_DYNAMODB_BREAKER_FAILURES``   failures that open the circuit (``5``)
    ``CACHE_DYNAMODB_BREAKER_COOLDOWN``   seconds the circuit stays open (``10.0``)
    ``CACHE_DEFAULT_TIMEOUT``             default TTL in seconds (``300``)
    ``CACHE_KEY_PREFIX``                  prefix of every key
    ====================================  ==========================================

    Credentials and, unless given, the region come from the standard AWS chain
    (environment, shared profile, EC2 instance role); nothing here takes keys.

    :param table_name: the cache table (layout in ``cache_backends/models.py``).
    :param default_timeout: seconds an entry lives when ``set`` gets
        ``timeout=None``; ``0`` means never expire.
    :param key_prefix: prepended to every key; ``clear()`` removes only items
        with this prefix.
    :param endpoint_url: talk to this endpoint instead of AWS (DynamoDB Local).
    :param region_name: AWS region; default from the AWS chain.
    :param create_table: create the table (on-demand, TTL on ``expires_at``) if
        it does not exist, at start-up and again (in the background) whenever a
        call finds it gone. For local runs: production tables come from
        CloudFormation (``deploy/cloudformation.yaml``).
    :param signing_key: HMAC-SHA256 key; required, and the same on every
        instance (a per-process key would make each reject the others' entries).
    :param old_signing_keys: keys accepted when reading, besides ``signing_key``.
        To rotate, accept the new key before anyone signs with it: first deploy
        the new key here on every instance; then deploy it as ``signing_key``
        with the old one here; once the longest TTL has passed, drop the old
        one. (Signing first would make the instances not yet deployed reject
        every entry the others write.)
    :param consistent_read: strongly consistent reads (2x the read cost) so that
        a write on one instance is what the next read anywhere sees.
    :param max_value_bytes: the largest value stored, counted after
        compression and signing (8 MiB); ``set`` refuses a larger one (False,
        logged). A value over one item is stored in parts (see below).
    :param body_copies: copies written of a value written once and never changed
        (:meth:`DynamoDBStore.set_written_once`: a region's list bodies), each
        read at random: one change makes every instance read the new body within
        a second, and one item serves at most one partition's 3,000 read units a
        second, so the burst is spread over this many items.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for a response (writes, admin calls).
    :param get_timeout: connect and read timeout of ``get`` and ``has``, tried
        once: they sit on the request path, where the database is the
        fallback, so a hung DynamoDB must cost a request about this, not more.
        ``get_many`` keeps the full timeouts: a page may carry 16 MB.
    :param write_timeout: connect and read timeout of writes made inside
        ``cache_backends.strict.request_path()`` (a category write's cache
        update, after its commit), tried once: a partition then costs a POST
        about this, not the 2-4 s of retried writes; what did not land is owed
        and retried in the background with the full timeouts.
    :param max_retries: botocore retries per idempotent call (standard mode;
        DynamoDB's backoff starts at 25 ms). A write costs at most about
        ``(1 + max_retries) * (connect_timeout + read_timeout)`` when DynamoDB
        hangs, a read ``get_timeout``, and nothing once the circuit is open. Conditional writes and
        ``inc`` are never retried: a retry after a lost response would apply
        an ``ADD`` twice, or report a stored ``add`` as refused.
    :param max_pool_connections: HTTP connections kept per process; at least the
        worker's thread count.
    :param breaker_failures: consecutive failed calls that open the circuit;
        while open, calls are skipped (a miss / ``False``) for
        ``breaker_cooldown`` seconds, then one probe call tries again. ``0``
        disables the breaker.
    :param breaker_cooldown: seconds the circuit stays open.
    :param compress_threshold: serialized values at least this many bytes are
        zlib-compressed when that makes them smaller.

    For metrics, it sends :mod:`cache_backends.signals`: ``dynamodb_call`` after
    each DynamoDB call, ``entry_rejected`` for each item read but not served (its
    signature does not verify, a part is missing...: the reasons of ``entries.py``
    and ``parts.py``).

    IAM permissions on the table's ARN: ``dynamodb:GetItem``, ``PutItem``,
    ``UpdateItem``, ``DeleteItem``, ``BatchGetItem``, ``BatchWriteItem``,
    ``DescribeTable`` (start-up check and ``health()``), ``Scan`` (only for
    ``clear()``); ``CreateTable``, ``UpdateTimeToLive`` and
    ``DescribeTimeToLive`` only where ``create_table()`` runs.

    Cost and limits:

    - a hit is one ``GetItem``: 1 read unit per 4 KB strongly consistent, half
      that eventually consistent; ``get_many`` reads 100 keys per
      ``BatchGetItem``, ``set_many``/``delete_many`` write 25 per
      ``BatchWriteItem``; writes cost 1 unit per 1 KB, which compression helps;
    - an item holds at most 400 KB: a value still larger after compression is
      stored in parts (``parts.py``), up to ``max_value_bytes``; larger is
      refused (``set`` returns ``False`` and logs a warning);
    - a value in parts: every writer (``set``, ``add``, ``set_many``,
      ``set_versioned``) first writes parts of 392 KB, each its own item under
      a key derived from a random write id, with the entry's TTL (2 parts,
      ~800 KB, per ``BatchWriteItem``, 5 requests at a time); then one small
      manifest under the key, with the same condition as a small value's put.
      A read is the manifest's ``GetItem`` (within ``get_timeout``) plus one
      ``BatchGetItem`` for the parts (on the full timeouts: up to 16 MB;
      ``get_many`` fetches the parts of all its large values together): 2
      calls, billed about one read unit per 4 KB of the value (~98 per part;
      an 8 MiB value: ~2,100 units strongly consistent), plus 3 SHA-256
      passes over it. Client CPU per ``get`` (incompressible values, DynamoDB
      Local, two runs): 4.5-4.7 ms for a 300 KB single item, 15-17 ms at
      1 MB, 53-62 ms at 4 MB: ~15 ms per MB, three quarters of it botocore's base64 and JSON, a
      quarter the signature and digest checks, all holding the GIL. Keep
      ``max_value_bytes`` under ~15 MiB: above 16 MB the parts take more than
      one ``BatchGetItem`` round. Every read of a large value costs each
      part's partition ~98 read units, so a hot one is better served from the
      near-cache (``CACHE_NEAR_TTL``);
    - the manifest is written last and names its write's parts (count, write
      id, SHA-256 of the whole blob), all signed: a reader never combines two
      writes, and a write whose manifest did not land is never served. A part
      missing, expired or failing its signature, or parts that do not make the
      digest, make the value a miss (logged, counted in
      ``strict.entries.rejections`` and sent as ``entry_rejected``), never a
      truncated value;
    - overwriting or deleting a value in parts leaves its parts to expire with
      it (DynamoDB's TTL deletes them; until then they are billed as storage);
      a write whose manifest was refused (``add`` on a live key, an older
      ``set_versioned``) deletes its parts at once. With eventually consistent
      reads a large value just written may read as a miss for a moment;
    - keys over DynamoDB's 2048-byte key limit are stored under a SHA-256
      digest (``keys.py``);
    - DynamoDB deletes expired items lazily (hours to days later) and its TTL
      knows only seconds; every read goes by the signed millisecond expiry, so
      an item past it is absent (``models.py``);
    - ``clear()`` scans the whole table (billed for every item scanned, not
      only those deleted) and deletes the prefix's items 25 at a time: an
      administrative operation, not one for the request path;
    - ``inc``/``dec`` counters are DynamoDB numbers so that ``UpdateItem ADD``
      changes them atomically; a signed marker beside the number proves that
      ``inc`` created the item (so nobody can plant a counter), but the number
      itself cannot be signed: whoever can write to the table can change it;
    - ``inc`` whose response is lost (read timeout) returns ``None`` although
      DynamoDB may have applied it: at most once, never twice;
    - ``add`` only overwrites an absent or expired item: an item that fails
      verification (forged, or signed with a retired key) blocks it until it
      expires, while ``get``/``has`` already treat it as absent;
    - ``delete_many`` reports every key as deleted once the batch succeeds
      (``BatchWriteItem`` does not say which keys existed) and never raises,
      whatever ``ignore_delete_many_errors`` says.
    """

    strict: DynamoDBStore

    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        default_timeout: int = DEFAULT_TIMEOUT,
        key_prefix: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        create_table: bool = False,
        *,
        signing_key: str | bytes | None = None,
        old_signing_keys: Iterable[str | bytes] = (),
        consistent_read: bool = True,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        body_copies: int = DEFAULT_BODY_COPIES,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        get_timeout: float = DEFAULT_GET_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        ignore_delete_many_errors: bool = True,
    ) -> None:
        super().__init__(default_timeout, ignore_delete_many_errors=ignore_delete_many_errors)
        if not signing_key:
            raise ValueError(
                "DynamoDBCache needs a signing_key (Flask: CACHE_DYNAMODB_SIGNING_KEY), the same "
                "on every instance, so that entries can be verified before they are loaded"
            )
        old_signing_keys = tuple(old_signing_keys)  # read twice below
        entries = EntryFormat(
            key_prefix or "",
            EntryCodec(signing_key, old_signing_keys, compress_threshold),
            BaseSerializer(),  # pickle; any cachelib serializer can replace it
            self._normalize_timeout,
            # Parts slice an already compressed blob: never compressed again.
            part_codec=EntryCodec(signing_key, old_signing_keys, NEVER_COMPRESS),
            max_value_bytes=max_value_bytes,
        )
        transport = Transport(
            ConnectionSettings(
                table_name=table_name,
                endpoint_url=endpoint_url,
                region_name=region_name,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_retries=max_retries,
                max_pool_connections=max_pool_connections,
            ),
            get_timeout=get_timeout,
            write_timeout=write_timeout,
            breaker=CircuitBreaker(
                f"DynamoDB table {table_name}", breaker_failures, breaker_cooldown
            ),
        )
        #: The same operations, raising :class:`CacheUnavailable` instead of degrading.
        self.strict = DynamoDBStore(
            transport, entries, consistent_read=consistent_read, body_copies=body_copies
        )
        self._admin = TableAdmin(transport, creates_table=create_table)
        transport.on_table_missing = self._admin.table_missing
        if create_table:
            self._admin.create_table_at_start_up()

    @classmethod
    def factory(
        cls,
        app: Any,
        config: Mapping[str, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> DynamoDBCache:
        """Build the backend from Flask config (Flask-Caching calls this at init_app)."""
        settings = DynamoDBSettings.from_config(config)
        try:
            cache = cls(*args, **{**kwargs, **settings.as_kwargs()})
        except NoRegionError:
            # A ValueError like the settings' own: the app reports it as one line.
            raise ValueError(
                f"{REGION_SETTING} is not set and the AWS chain gives no region: set "
                f"FLASK_{REGION_SETTING}, or AWS_DEFAULT_REGION (or a profile's region)"
            ) from None
        # A server's start-up is checked, not a `flask` command's (Flask's CLI builds the
        # app inside a click context): `cache status` reports the table's state and
        # `cache create-table` fixes it, so an ERROR saying it is missing would be noise.
        if not settings.create_table and click.get_current_context(silent=True) is None:
            cache.check_table()
        return cache

    @property
    def table_name(self) -> str:
        return self.strict.transport.table_name

    @property
    def key_prefix(self) -> str:
        return self.strict.entries.key_prefix

    @property
    def consistent_read(self) -> bool:
        return self.strict.consistent_read

    @property
    def serializer(self) -> BaseSerializer:
        """pickle unless replaced (Flask-Caching's CACHE_SERIALIZER sets it after init)."""
        return self.strict.entries.serializer

    @serializer.setter
    def serializer(self, serializer: BaseSerializer) -> None:
        self.strict.entries.serializer = serializer

    # -- beyond BaseCache (DegradingEdge degrades the rest) ----------------------

    def set_versioned(
        self,
        key: str,
        value: Any,
        rank: int,
        timeout: Timeout = None,
        expected_rank: int | None = None,
    ) -> bool:
        """``set`` unless the key holds a live item of a higher ``rank``; False if refused.

        See :meth:`DynamoDBStore.set_versioned`; False on failure too.
        """
        return degrade(
            lambda: self.strict.set_versioned(key, value, rank, timeout, expected_rank), False
        )

    # -- administration (cache_backends/cli.py, the app's readiness check) -------

    def create_table(self) -> list[str]:
        """Create the table (on-demand) and enable TTL if needed; say what was done.

        Raises DynamoDB's errors: an administrator's command reports them.
        """
        return self._admin.create_table()

    def check_table(self) -> bool:
        """Start-up check: log loudly if the table is missing or unreachable."""
        return self._admin.check_table()

    def health(self) -> dict[str, Any]:
        """The cache's state for readiness reports: one DescribeTable, or none if open."""
        return self._admin.health()
