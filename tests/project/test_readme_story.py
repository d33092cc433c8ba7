"""The curl story, run as written against ``make run`` and ``make run-dynamodb``.

The tutorial (docs/tutorial/curl-story.md) tells it step by step; the README shows
its first part in one block, which must be the tutorial's first steps line for line,
so that one run checks both. Each story's shell blocks run in bash, line for line.
Two things differ from a person's terminal, both through settings the pages name:
the server listens on a free port (``localhost:8000`` in a block becomes that port,
so a developer's own ``make run`` does not collide), and the database is a fresh
SQLite file, as after ``make reset-db``. The settings the story asks for to replay
its numbers (``FLASK_CATEGORIES_CACHE_TTL=4``) are set, with a shorter database
latency than its 1.2 s to keep the suite quick.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools import REPOSITORY_ROOT
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import wait_until_healthy
from devtools.ports import free_port
from tests.support.caches import RELAXED_GET_TIMEOUT_SECONDS, RELAXED_WRITE_TIMEOUT_SECONDS
from tests.support.readme import TUTORIAL, code_block_after, code_blocks_between, commands

pytestmark = pytest.mark.slow

README_STORY_HEADING = "## The story, with curl"
#: The tutorial's steps the README's block tells: from the make line to the expiry.
FIRST_STEP = "## 1. Start the app on a slow database"
AFTER_THE_FIRST_STORY = "## 5. Write-through"
REFRESH_ASYNC_STEP = "## 6. Refresh-async"
CACHE_STATUS_STEP = "## 7. Ask the cache how it is"
REVALIDATION_STEP = "## 8. Revalidate"
README_PORT = "localhost:8000"
STORY_SETTINGS = {"FLASK_CATEGORIES_CACHE_TTL": "4", "FLASK_DB_LATENCY_MS": "300"}
STOP_TIMEOUT_SECONDS = 30.0
#: What a curl line of the story shows, in the tutorial's order.
FIRST_STORY_CACHE_HEADERS = ["X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS"]


@contextmanager
def make_serving(
    target: str,
    tmp_path: Path,
    settings: Mapping[str, str] = STORY_SETTINGS,
    ddb_port: int | None = None,
) -> Iterator[int]:
    """``make <target>`` on a free port and a fresh database (DynamoDB Local on ``ddb_port``,
    else a free one); its port. Ctrl-C at the end."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    environment |= {
        # What the tests' apps relax too (tests/support/caches.py): on a saturated 2-core
        # machine a GetItem past the deployed 0.1 s is answered by the database, and the
        # story's HIT shows as a MISS; the README's lines run as written all the same.
        "FLASK_CACHE_DYNAMODB_GET_TIMEOUT": str(RELAXED_GET_TIMEOUT_SECONDS),
        "FLASK_CACHE_DYNAMODB_WRITE_TIMEOUT": str(RELAXED_WRITE_TIMEOUT_SECONDS),
        **settings,
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'story.db'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "TMPDIR": str(tmp_path),
    }
    log_path = tmp_path / f"{target}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", target, f"DDB_PORT={ddb_port or free_port()}"],
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log_path)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_block(block: str, port: int) -> str:
    """The shell lines after the first (the make command), on ``port``; their output."""
    script = block.split("\n", 1)[1].replace(README_PORT, f"localhost:{port}")
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_line(block: str) -> tuple[dict[str, str], str]:
    """The settings the block's first line sets before ``make``, and make's target."""
    words = shlex.split(block.split("\n", 1)[0], comments=True)
    make_at = words.index("make")
    settings = dict(word.split("=", 1) for word in words[:make_at])
    return settings, words[make_at + 1]


def cache_headers(output: str) -> list[str]:
    return re.findall(r"X-Cache: \w+", output)


def first_story() -> str:
    """The tutorial's steps 1 to 4 as one script: the make line, then the curl lines."""
    steps = code_blocks_between(FIRST_STEP, AFTER_THE_FIRST_STORY, "sh", document=TUTORIAL)
    return "\n".join(steps)


def tutorial_block(step: str) -> str:
    return code_block_after(step, "sh", document=TUTORIAL)


def test_the_readmes_story_is_the_tutorials_first_steps() -> None:
    """What the README shows is what the tutorial runs, so the run below checks both."""
    assert commands(code_block_after(README_STORY_HEADING, "sh")) == commands(first_story())


@pytest.mark.parametrize("target", ["run", "run-dynamodb"])
def test_the_story_replays_as_written(
    target: str, tmp_path: Path, dynamodb_local: DynamoDBLocal
) -> None:
    """``dynamodb_local`` only makes sure the jar is there; make starts its own."""
    block = first_story()
    settings, make_target = make_line(block)
    assert make_target == "run-dynamodb"
    assert settings["FLASK_CATEGORIES_CACHE_TTL"] == "4", "the story's last line waits 4 s"
    with make_serving(target, tmp_path, settings) as port:
        output = run_block(block, port)

    # The server's log says why a line differs (a cache error is logged, never raised).
    server_log = (tmp_path / f"{target}.log").read_text(errors="replace")
    assert cache_headers(output) == FIRST_STORY_CACHE_HEADERS, f"{output}\n{server_log}"
    assert "HTTP/1.1 201" in output
    assert output.count('"name":"Toys"') == 2, output  # the POST's answer and the next GET


def test_the_refresh_async_story_replays_as_written(tmp_path: Path) -> None:
    block = tutorial_block(REFRESH_ASYNC_STEP)
    settings = {**STORY_SETTINGS, "FLASK_CATEGORIES_CACHE_STRATEGY": "refresh-async"}
    with make_serving("run-dynamodb", tmp_path, settings) as port:
        subprocess.run(["curl", "-s", f"localhost:{port}/categories"], check=True)  # cached
        output = run_block("make\n" + block, port)

    assert "HTTP/1.1 201" in output
    assert cache_headers(output) == ["X-Cache: STALE", "X-Cache: HIT"], output


def test_the_cache_status_line_runs_as_written_beside_make_run_dynamodb(tmp_path: Path) -> None:
    (line,) = tutorial_block(CACHE_STATUS_STEP).strip().splitlines()
    command = shlex.split(line, comments=True)
    assert command == ["make", "cache-status"]
    ddb_port = free_port()
    with make_serving("run-dynamodb", tmp_path, ddb_port=ddb_port):
        result = subprocess.run(
            [*command, f"DDB_PORT={ddb_port}"],
            cwd=REPOSITORY_ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "AWS_"))},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 0, result.stdout + result.stderr
    # Among make's own lines (the command; "Entering directory" when make runs make).
    (report_line,) = [line for line in result.stdout.splitlines() if line.startswith("{")]
    report = json.loads(report_line)
    assert report == {
        "backend": "dynamodb",
        "table": "ecommerce-cache",
        "ok": True,
        "table_status": "ACTIVE",
        "circuit": "closed",
    }


def test_the_conditional_get_lines_replay_as_written(tmp_path: Path) -> None:
    block = tutorial_block(REVALIDATION_STEP)
    with make_serving("run", tmp_path) as port:
        output = run_block("make\n" + block, port)
    assert output.strip() == "HTTP/1.1 304 NOT MODIFIED"
