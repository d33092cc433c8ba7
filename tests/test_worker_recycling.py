"""gunicorn.conf.py recycles a worker for what calls for it (memory, age), not a request count.

At ~2,000 req/s per worker, ``max_requests = 10_000`` recycled each worker every
~5 s: the tail of every load wave after the first (issue 18). These tests run
the real gunicorn with the repository's gunicorn.conf.py.
"""

from __future__ import annotations

import runpy
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devtools import REPOSITORY_ROOT
from devtools.fleet import gunicorn_instance, wait_until_healthy

RECYCLE_LINE = "restarting after its current requests"
WAIT_SECONDS = 30.0


def gunicorn_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str
) -> dict[str, Any]:
    """gunicorn.conf.py's module namespace as gunicorn reads it, under ``env``."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # none created for this
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPOSITORY_ROOT / "gunicorn.conf.py"))


def test_no_worker_is_recycled_by_request_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = gunicorn_settings(monkeypatch, tmp_path)
    assert settings["max_requests"] == 0
    assert settings["MAX_WORKER_MEMORY_MB"] == 1024 and settings["MAX_WORKER_AGE_SECONDS"] == 0


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_a_bad_memory_limit_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    with pytest.raises(SystemExit, match="GUNICORN_MAX_WORKER_MEMORY_MB"):
        gunicorn_settings(monkeypatch, tmp_path, GUNICORN_MAX_WORKER_MEMORY_MB=value)


def log_count(log_path: Path, line: str) -> int:
    return log_path.read_text(errors="replace").count(line)


@pytest.mark.slow
def test_a_worker_over_its_memory_limit_is_replaced_and_requests_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A limit of 1 MB: every worker is over it after its first request. It finishes that
    request, exits, and the master boots a replacement that answers the next one."""
    monkeypatch.setenv("GUNICORN_MAX_WORKER_MEMORY_MB", "1")
    settings = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    with gunicorn_instance("recycled", settings, tmp_path, workers=1) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        deadline = time.monotonic() + WAIT_SECONDS
        while log_count(instance.log_path, "Booting worker") < 2:
            assert time.monotonic() < deadline, instance.log_path.read_text()
            time.sleep(0.05)
        wait_until_healthy(instance.url, instance.process, instance.log_path)
        with urllib.request.urlopen(instance.url + "/healthz", timeout=WAIT_SECONDS) as answer:
            assert answer.status == 200

    log = instance.log_path.read_text(errors="replace")
    assert RECYCLE_LINE in log and "resident memory" in log
    assert "Autorestarting worker" not in log, "not gunicorn's request count"
