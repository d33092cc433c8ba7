"""gunicorn.conf.py recycles a worker for what calls for it (memory, age), not a request count.

At ~2,000 req/s per worker, ``max_requests = 10_000`` recycled each worker every
~5 s: the tail of every load wave after the first (issue 18). These tests run
the real gunicorn with the repository's gunicorn.conf.py, including its
``child_exit`` hook, which folds a dead worker's Prometheus files into one archive.
"""

from __future__ import annotations

import gc
import runpy
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools import REPOSITORY_ROOT
from devtools.fleet import gunicorn_instance, prepare, wait_until_healthy
from ecommerce.metrics_archive import ARCHIVE_PID, processes_with_files

RECYCLE_LINE = "restarting after its current requests"
BOOT_LINE = "Booting worker"
WAIT_SECONDS = 30.0
#: Worker boots to wait for under load: the first two, then one recycle after another.
RECYCLED_BOOTS = 7
RECYCLING_WORKERS = 2
CLIENT_THREADS = 4
SCRAPE_INTERVAL_SECONDS = 0.05
REQUESTS_METRIC = "ecommerce_http_requests_total"


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


def test_a_worker_freezes_what_it_built_after_its_first_and_thousandth_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A full collection then walks only what was made since: no 150 ms stall per gen-2 pass."""
    # This test's process stands in for the worker, and after many tests it may be past the
    # deployed 1 GiB: no recycle here, only the freezing.
    settings = gunicorn_settings(monkeypatch, tmp_path, GUNICORN_MAX_WORKER_MEMORY_MB="1000000")
    worker = SimpleNamespace(cfg=SimpleNamespace(worker_class_str="sync"), alive=True)
    frozen_before = gc.get_freeze_count()
    built_later: list[list[int]] = []
    try:
        for served in range(1, 1_001):
            settings["post_request"](worker, None, {}, None)
            built_later.append([served])  # a tracked object per request, as a request leaves
            if served == 1:
                assert gc.get_freeze_count() > frozen_before
                after_first = gc.get_freeze_count()
            elif served == 999:
                assert gc.get_freeze_count() == after_first  # nothing frozen in between
        assert gc.get_freeze_count() >= after_first + len(built_later) - 1
    finally:
        gc.unfreeze()


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


def categories_served(metrics_text: str) -> float:
    """GET /categories answered, over every worker that ever lived, as /metrics says."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == REQUESTS_METRIC and sample.labels["route"] == "/categories":
                total += sample.value
    return total


@pytest.mark.slow
def test_recycled_workers_leave_a_bounded_directory_and_exact_request_totals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Workers recycled every second under requests while /metrics is scraped all along.

    Every dead worker's files are folded into the archive: the directory never holds
    more than the live workers' files and one archive set, and the total /metrics
    reports is every request sent, never lower at any scrape than at the one before.
    """
    monkeypatch.setenv("GUNICORN_MAX_WORKER_AGE_SECONDS", "1")
    settings = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    prepare(settings, quiet=True)
    metrics_directory = tmp_path / "recycled-metrics"  # gunicorn_instance's naming
    sent: list[int] = []
    failures: list[BaseException] = []
    scraped: list[float] = []
    processes_seen: list[set[str]] = []
    stop = threading.Event()

    with gunicorn_instance("recycled", settings, tmp_path, workers=RECYCLING_WORKERS) as instance:
        wait_until_healthy(instance.url, instance.process, instance.log_path)

        def send_requests() -> None:
            answered = 0
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(instance.url + "/categories", timeout=WAIT_SECONDS):
                        pass
                except urllib.error.HTTPError:
                    pass  # an answer all the same (a 503 on a busy machine), and counted
                except OSError as error:
                    failures.append(error)
                    continue
                answered += 1
            sent.append(answered)

        def scrape_metrics() -> None:
            while not stop.is_set():
                processes_seen.append(processes_with_files(metrics_directory))
                with urllib.request.urlopen(
                    instance.url + "/metrics", timeout=WAIT_SECONDS
                ) as page:
                    scraped.append(categories_served(page.read().decode()))
                time.sleep(SCRAPE_INTERVAL_SECONDS)

        threads = [threading.Thread(target=send_requests) for _ in range(CLIENT_THREADS)]
        threads.append(threading.Thread(target=scrape_metrics))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 4 * WAIT_SECONDS
        try:
            while log_count(instance.log_path, BOOT_LINE) < RECYCLED_BOOTS:
                assert time.monotonic() < deadline, instance.log_path.read_text()
                time.sleep(0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        with urllib.request.urlopen(instance.url + "/metrics", timeout=WAIT_SECONDS) as page:
            final_total = categories_served(page.read().decode())

    assert not failures, failures[:5]
    assert final_total == sum(sent) > 0
    assert scraped == sorted(scraped), "a scrape saw the total go down"
    # The live workers' files and one archive set, however many workers have come and gone:
    # the master archives a dead worker before it forks the replacement.
    assert max(map(len, processes_seen)) <= RECYCLING_WORKERS + 1
    assert ARCHIVE_PID in processes_seen[-1]
    assert "not archived" not in instance.log_path.read_text(errors="replace")
