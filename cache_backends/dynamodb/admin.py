"""Table administration: create the table, check it at start-up, report its health.

Production tables come from CloudFormation (``deploy/cloudformation.yaml``);
creating one here is for local runs, where DynamoDB Local restarted in memory
comes back empty and :meth:`TableAdmin.table_missing` (the transport's
callback) creates it again in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pynamodb.exceptions import PynamoDBException

from cache_backends.dynamodb.transport import DYNAMODB_ERRORS, Transport, error_code
from cache_backends.models import ATTRIBUTE_DEFINITIONS, EXPIRY_ATTRIBUTE, KEY_SCHEMA
from cache_backends.strict import CacheUnavailable

logger = logging.getLogger(__name__)

TABLE_IN_USE = "ResourceInUseException"
#: With create_table=True, a table found missing (DynamoDB Local restarted empty) is
#: created again in the background, at most this often.
RECREATE_INTERVAL_SECONDS = 10.0
#: create_table() waits this long, polling every second, for a new table to be ACTIVE.
TABLE_WAIT_ATTEMPTS = 120


class TableAdmin:
    """The admin calls on one transport's table.

    :param creates_table: this cache creates its own table (``create_table=True``):
        again, in the background, whenever a call finds it gone.
    """

    def __init__(self, transport: Transport, *, creates_table: bool) -> None:
        self.transport = transport
        self.creates_table = creates_table
        self._recreate_lock = threading.Lock()
        self._recreating = False
        self._last_recreate = -RECREATE_INTERVAL_SECONDS

    @property
    def table_name(self) -> str:
        return self.transport.table_name

    def create_table(self) -> list[str]:
        """Create the table (on-demand) and enable TTL if needed; say what was done.

        Idempotent. ``UpdateTimeToLive`` may take up to an hour on AWS and is
        refused while in progress or once enabled: both count as success. The
        caller reports the lines (``flask cache create-table`` prints them, a
        start-up logs them), so each appears once.
        """
        connection = self.transport.connection()
        client = self.transport.client()
        done = []
        if self.transport.table_exists():
            done.append(f"table {self.table_name} already exists")
        else:
            try:
                connection.create_table(
                    attribute_definitions=ATTRIBUTE_DEFINITIONS,
                    key_schema=KEY_SCHEMA,
                    billing_mode="PAY_PER_REQUEST",
                )
                # As PynamoDB's Model.create_table() does, before the table is even ACTIVE.
                connection.update_time_to_live(EXPIRY_ATTRIBUTE)
                done.append(f"created table {self.table_name} (on-demand)")
            except PynamoDBException as error:
                # Several gunicorn workers starting at once all find the table missing;
                # one CreateTable wins and the others wait for its table.
                if error_code(error) != TABLE_IN_USE:
                    raise
                done.append(f"table {self.table_name} was created by another process")
            client.get_waiter("table_exists").wait(
                TableName=self.table_name,
                WaiterConfig={"Delay": 1, "MaxAttempts": TABLE_WAIT_ATTEMPTS},
            )
        ttl = client.describe_time_to_live(TableName=self.table_name)
        status = ttl["TimeToLiveDescription"].get("TimeToLiveStatus", "DISABLED")
        if status in ("ENABLED", "ENABLING"):
            done.append(f"TTL is {status.lower()} on {EXPIRY_ATTRIBUTE}")
        else:
            try:
                connection.update_time_to_live(EXPIRY_ATTRIBUTE)
                done.append(f"enabled TTL on {EXPIRY_ATTRIBUTE}")
            except PynamoDBException as error:
                if "already enabled" not in str(error.cause_response_message or ""):
                    raise
                done.append(f"TTL is enabled on {EXPIRY_ATTRIBUTE}")
        return done

    def create_table_at_start_up(self) -> None:
        """create_table(), logged; a DynamoDB that is down only gets a warning.

        A cache that is down must not stop the app from starting (a gunicorn
        worker failing to boot takes the whole server down): the first call
        that finds the table missing creates it in the background.
        """
        try:
            self._create_table_and_log()
        except DYNAMODB_ERRORS as error:
            logger.warning(
                "cache table %s not created at start-up, retried when DynamoDB answers: %s",
                self.table_name,
                error,
            )

    def _create_table_and_log(self) -> None:
        for line in self.create_table():
            logger.info("cache table: %s", line)

    def table_missing(self) -> None:
        """Create the table again, in the background, if this cache creates its own.

        Only with ``create_table=True`` (local runs): a DynamoDB Local restarted
        in memory comes back empty, and hits must resume without an app restart.
        Production tables come from CloudFormation and are never created here.
        """
        if not self.creates_table:
            return
        with self._recreate_lock:
            now = time.monotonic()
            if self._recreating or now - self._last_recreate < RECREATE_INTERVAL_SECONDS:
                return
            self._recreating, self._last_recreate = True, now
        threading.Thread(
            target=self._recreate_table, name="cache-recreate-table", daemon=True
        ).start()

    def _recreate_table(self) -> None:
        logger.warning("cache table %s is missing: creating it again", self.table_name)
        try:
            self._create_table_and_log()
        except DYNAMODB_ERRORS:
            logger.exception("cache table %s could not be created again", self.table_name)
        finally:
            with self._recreate_lock:
                self._recreating = False

    def check_table(self) -> bool:
        """Start-up check: log loudly if the table is missing or unreachable."""
        try:
            exists = self.transport.table_exists()
        except DYNAMODB_ERRORS as error:
            logger.warning("cache table %s unreachable at start-up: %s", self.table_name, error)
            return False
        if not exists:
            logger.error(
                "cache table %s does not exist: every read will miss; create it with "
                "`flask --app wsgi cache create-table` or deploy/cloudformation.yaml",
                self.table_name,
            )
        return exists

    def health(self) -> dict[str, Any]:
        """The cache's state for readiness reports: one DescribeTable, or none if open."""
        report: dict[str, Any] = {"backend": "dynamodb", "table": self.table_name}
        try:
            description = self.transport.call(
                "DescribeTable", "-", self.transport.connection().describe_table
            )
            report.update(ok=True, table_status=description.get("TableStatus"))
        except CacheUnavailable as error:
            report.update(ok=False, error=str(error))
        report["circuit"] = self.transport.breaker.state.value
        return report
