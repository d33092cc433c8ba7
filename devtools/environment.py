"""What the numbers were measured on: machine, library versions, DynamoDB Local release.

Latencies on DynamoDB Local say little without this: the server is a JVM on the
same cores as the client, so core count and Java version shape every number.
Both benchmarks (``python -m benchmarks`` and ``python -m benchmarks.http``) open
and close their result documents with :func:`describe_run` and :func:`finish_run`.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import time
import zipfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

#: Where Maven metadata puts the release number inside DynamoDBLocal.jar.
DYNAMODB_LOCAL_POM = "META-INF/maven/software/amazon/dynamodb/DynamoDBLocal/pom.properties"
#: The libraries whose speed is being measured, directly or underneath a cache.
MEASURED_PACKAGES = ("botocore", "boto3", "pynamodb", "cachelib", "Flask-Caching")
#: ``java -version`` answers in well under a second; never let it hang a benchmark.
VERSION_COMMAND_TIMEOUT_SECONDS = 10


def package_versions(packages: Sequence[str] = MEASURED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def dynamodb_local_version(jar: Path) -> str | None:
    """The release number Amazon stamps into the jar (e.g. "3.3.1"), if it is there."""
    try:
        with zipfile.ZipFile(jar) as archive:
            properties = archive.read(DYNAMODB_LOCAL_POM).decode()
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    for line in properties.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "version":
            return value.strip()
    return None


def version_line(command: Sequence[str]) -> str | None:
    """The first line a ``--version``-style command prints, on stdout or stderr.

    None when the program is missing or hangs: a benchmark still runs without it.
    """
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=VERSION_COMMAND_TIMEOUT_SECONDS,
            check=False,  # `wrk -v` prints its version, then its usage, and exits 1
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (completed.stdout.strip() or completed.stderr.strip()).splitlines()
    return lines[0] if lines else None


def java_version() -> str | None:
    java = shutil.which("java")
    # The JVM prints its version to stderr; the first line names the release.
    return None if java is None else version_line([java, "-version"])


def load_average() -> list[float]:
    """1, 5 and 15 minute load: other work on these two cores shows up in the tails."""
    return [round(load, 2) for load in os.getloadavg()]


def describe_machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "load_average_at_start": load_average(),
    }


def describe_server(jar: Path | None) -> dict[str, Any]:
    """DynamoDB Local as run by this benchmark, or an external endpoint we know nothing of."""
    if jar is None:
        return {"started_by_benchmark": False, "dynamodb_local_version": None, "java": None}
    return {
        "started_by_benchmark": True,
        "dynamodb_local_version": dynamodb_local_version(jar),
        "jar": jar.parent.name,
        "java": java_version(),
        "mode": "-inMemory -sharedDb",
    }


def describe_run(
    command: Sequence[str], jar: Path | None, packages: Sequence[str] = MEASURED_PACKAGES
) -> dict[str, Any]:
    """How a result document starts: when, the command, the machine, the server, the versions."""
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "machine": describe_machine(),
        "server": describe_server(jar),
        "versions": package_versions(packages),
    }


def finish_run(document: dict[str, Any], started: float) -> None:
    """The load at the end (other work shows in the tails) and the run's length.

    ``started`` is the run's ``time.perf_counter()`` at its start.
    """
    document["machine"]["load_average_at_end"] = load_average()
    document["runtime_seconds"] = round(time.perf_counter() - started, 1)
