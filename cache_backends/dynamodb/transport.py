"""How calls reach DynamoDB: the client models, the circuit breaker, the signal, the guard.

Every DynamoDB call of the backend goes through :meth:`Transport.call`: timed
and told to ``signals.dynamodb_call``, refused at once while the circuit is open, and any DynamoDB
or network error logged once and raised as :class:`CacheUnavailable`. A failed
condition is DynamoDB's answer, not an outage: :meth:`Transport.conditional`
returns it as False. A throttled call is an answer too: raised as
:class:`CacheThrottled` (the caller serves without the cache), it leaves the
circuit breaker closed.

Writes have two budgets. Inside ``cache_backends.strict.request_path()`` (a
write's cache update while its client waits) :attr:`Transport.model` and
:attr:`Transport.write_once_model` are one client tried once within
``write_timeout``, connect and read: a partition costs the answer that, not
``(1 + retries) * (connect + read)``, and what did not land is owed and retried
in the background with the patient clients (``cache_backends.owed``). The switch
lives here, in the model the store asks for, so no store, batch or counter code
has to know which path it is on.

Knows nothing of items or tables' administration: a call that finds the table
missing tells whoever registered :attr:`Transport.on_table_missing` (the admin
code, which recreates it for local runs).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.connection import TableConnection
from pynamodb.constants import ALL_NEW
from pynamodb.exceptions import PynamoDBException, TableDoesNotExist
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from cache_backends import signals
from cache_backends.breaker import CircuitBreaker
from cache_backends.dynamodb.settings import DEFAULT_WRITE_TIMEOUT
from cache_backends.models import (
    KEY_ATTRIBUTE,
    CacheEntry,
    ConnectionSettings,
    entry_model_for,
    table_connection,
)
from cache_backends.strict import (
    CacheThrottled,
    CacheUnavailable,
    on_request_path,
    request_budget_spent,
    spend_request_budget,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a PynamoDB or botocore call raises when DynamoDB or the network fails.
DYNAMODB_ERRORS = (PynamoDBException, BotoCoreError, ClientError)
CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_MISSING = "ResourceNotFoundException"
#: DynamoDB's answers for a call over capacity: the table is up, the key (or the
#: account's request rate) is not served for now.
THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class CallOutcome(StrEnum):
    """How a DynamoDB call ended (``signals.dynamodb_call``'s ``outcome``)."""

    OK = "ok"  # answered (a failed condition is an answer too)
    THROTTLED = "throttled"  # answered: over capacity
    FAILED = "failed"  # no answer: an error, a timeout
    SKIPPED = "skipped"  # not sent: the circuit is open


def error_code(error: Exception) -> str | None:
    """DynamoDB's error code behind a PynamoDB or botocore exception, if it answered."""
    # Not PynamoDB's cause_response_code: it raises when the cause is a read
    # timeout, whose ``response`` attribute is None.
    cause = getattr(error, "cause", None) or error
    response = getattr(cause, "response", None) or {}
    code: str | None = response.get("Error", {}).get("Code")
    return code


def _no_table_handler() -> None:
    pass


def _tried_once_within(connection: ConnectionSettings, budget: float) -> ConnectionSettings:
    """``connection`` for a call made once, connect and read each within ``budget`` seconds."""
    return dataclasses.replace(
        connection,
        connect_timeout=min(connection.connect_timeout, budget),
        read_timeout=budget,
        max_retries=0,
    )


class Transport:
    """The three client models of one table, guarded by one circuit breaker.

    :param connection: table, endpoint and the patient timeouts (writes, admin).
    :param get_timeout: connect and read timeout of the hot reads, tried once.
    :param write_timeout: connect and read timeout of writes on a request's path
        (``cache_backends.strict.request_path``), tried once.
    :param breaker: shared by every call, so an outage seen by writes spares reads.
    """

    def __init__(
        self,
        connection: ConnectionSettings,
        *,
        get_timeout: float,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        breaker: CircuitBreaker,
    ) -> None:
        self.table_name = connection.table_name
        self.breaker = breaker
        #: Called (with the breaker's lock not held) when a call finds the table gone.
        self.on_table_missing: Callable[[], None] = _no_table_handler
        # Writes, batches, scans and admin calls: the full timeouts, retried.
        self._patient_model = entry_model_for(connection)
        # Conditional writes and ADD are not idempotent: they go out exactly once.
        self._write_once_model = entry_model_for(dataclasses.replace(connection, max_retries=0))
        # Writes on a request's path: once, within write_timeout (see the module docstring).
        self.request_path_model = entry_model_for(_tried_once_within(connection, write_timeout))
        # get/has sit on the request path, where the database is the fallback: one
        # short attempt, so a hung DynamoDB costs a request get_timeout, not
        # (1 + retries) x (connect + read) timeouts. (get_many keeps the full ones:
        # a BatchGetItem page may carry 16 MB.)
        self.hot_read_model = entry_model_for(_tried_once_within(connection, get_timeout))
        # Build the botocore clients now (no network): the process's first parses
        # botocore's data files (~0.1-0.2 s, once: cache_backends.models), which the first
        # get or the first invalidating delete would otherwise pay on a request.
        self.clients()

    @property
    def model(self) -> Any:
        """Writes, batches, scans and admin calls: the full timeouts, retried.

        On a request's path, the request-path client instead (module docstring).
        """
        return self.request_path_model if on_request_path() else self._patient_model

    @property
    def write_once_model(self) -> Any:
        """Conditional writes and ADD, which are not idempotent: sent exactly once.

        On a request's path, the request-path client (itself never retried).
        """
        return self.request_path_model if on_request_path() else self._write_once_model

    def connection(self) -> TableConnection:
        """:attr:`model`'s connection: batches, scans and admin calls."""
        return table_connection(self.model)

    def clients(self) -> tuple[Any, ...]:
        """The botocore client behind each model (tests hook their events)."""
        return tuple(
            table_connection(model).connection.client
            for model in (
                self._patient_model,
                self._write_once_model,
                self.hot_read_model,
                self.request_path_model,
            )
        )

    def client(self) -> Any:
        """The full model's botocore client, for the admin calls PynamoDB does not wrap."""
        return table_connection(self._patient_model).connection.client

    def table_exists(self) -> bool:
        """One DescribeTable: False when DynamoDB says there is no such table."""
        try:
            self.connection().describe_table()
        except TableDoesNotExist:
            return False
        return True

    def call(
        self, operation: str, key: str, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``func(*args, **kwargs)``, a DynamoDB call, through the circuit breaker.

        Any DynamoDB or network error is logged once (naming ``operation`` and
        ``key``) and becomes :class:`CacheUnavailable`; so does a call the open
        circuit skips. A failed condition passes through as PynamoDB raised it
        (it is an answer, not an outage): see :meth:`conditional`.
        """
        spent_on = request_budget_spent()
        if spent_on is not None or not self.breaker.allow():
            reason = "circuit open" if spent_on is None else f"{spent_on} failed on this request"
            skipped = CacheUnavailable(f"{operation} skipped: {reason}")
            self._observe(operation, 0.0, skipped)
            raise skipped
        call_started = time.monotonic()
        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except DYNAMODB_ERRORS as error:
            elapsed = time.perf_counter() - started
            code = error_code(error)
            if code == CONDITION_FAILED:
                self.breaker.record_success(call_started)
                self._observe(operation, elapsed, None)
                raise
            if code in THROTTLED:
                # DynamoDB answered: one hot key's throttling must not open the circuit
                # for every other call (a write's update, another key).
                self.breaker.record_success(call_started)
                throttled = CacheThrottled(f"{operation} throttled: {code}")
                self._observe(operation, elapsed, throttled)
                logger.warning(
                    "DynamoDB %s on %s (key %r) throttled (%s)",
                    operation,
                    self.table_name,
                    key,
                    code,
                )
                raise throttled from error
            self.breaker.record_failure(call_started)
            spend_request_budget(operation)
            self._observe(operation, elapsed, error)
            logger.warning(
                "DynamoDB %s on %s (key %r) failed: %s", operation, self.table_name, key, error
            )
            if code == TABLE_MISSING:
                self.on_table_missing()
            raise CacheUnavailable(f"{operation} failed: {error}") from error
        except BaseException as error:
            # Not DynamoDB's fault (a bug, an interrupt): the breaker must still hear
            # back, or a probe that ended here would leave it half-open for good.
            self.breaker.record_success(call_started)
            self._observe(operation, time.perf_counter() - started, error)
            raise
        self.breaker.record_success(call_started)
        self._observe(operation, time.perf_counter() - started, None)
        return result

    def conditional(
        self, operation: str, key: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> bool:
        """A conditional write: True if applied, False if DynamoDB refused its condition."""
        try:
            self.call(operation, key, func, *args, **kwargs)
        except PynamoDBException:  # all that call() lets through: a failed condition
            return False
        return True

    def get_item(
        self, skey: str, consistent_read: bool, *, hot: bool = True
    ) -> dict[str, Any] | None:
        """One GetItem: the item as DynamoDB returned it, or None.

        ``hot``: on the request path, within ``get_timeout`` and without retry.
        """
        model = self.hot_read_model if hot else self.model
        response = self.call(
            "GetItem", skey, table_connection(model).get_item, skey, consistent_read=consistent_read
        )
        return response.get("Item")

    @staticmethod
    def put(item: CacheEntry, condition: Condition | None = None) -> dict[str, Any]:
        """PutItem of ``item`` through its model's connection (what ``item.save()`` sends)."""
        attributes = item.serialize(null_check=True)
        skey = attributes.pop(KEY_ATTRIBUTE)["S"]
        return table_connection(type(item)).put_item(
            skey, attributes=attributes, condition=condition
        )

    @staticmethod
    def update(
        item: CacheEntry, actions: list[Action], condition: Condition | None = None
    ) -> dict[str, Any]:
        """UpdateItem of ``item``'s key; ``item`` then holds the item as updated (ALL_NEW)."""
        response = table_connection(type(item)).update_item(
            item.cache_key, actions=actions, condition=condition, return_values=ALL_NEW
        )
        item.deserialize(response["Attributes"])
        return response

    @staticmethod
    def delete(
        model: type[CacheEntry], skey: str, condition: Condition | None = None
    ) -> dict[str, Any]:
        """DeleteItem of ``skey`` through ``model``'s connection."""
        return table_connection(model).delete_item(skey, condition=condition)

    def _observe(self, operation: str, seconds: float, error: BaseException | None) -> None:
        if error is None:
            outcome = CallOutcome.OK
        elif isinstance(error, CacheThrottled):
            outcome = CallOutcome.THROTTLED
        elif isinstance(error, CacheUnavailable):
            outcome = CallOutcome.SKIPPED
        else:
            outcome = CallOutcome.FAILED
        try:
            signals.dynamodb_call.send(
                self, operation=operation, seconds=seconds, outcome=outcome, error=error
            )
        except Exception:  # metrics must never break the cache
            logger.exception("a dynamodb_call receiver failed")
