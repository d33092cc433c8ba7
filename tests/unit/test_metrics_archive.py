"""ecommerce/metrics_archive.py: dead workers folded into one archive, totals unchanged.

The metric files are written by real processes (prometheus_client in
multiprocess mode, in a subprocess that then exits), read back with
prometheus_client's own collector, as ``/metrics`` reads them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from ecommerce import metrics, metrics_archive
from ecommerce.metrics_archive import (
    ARCHIVE_PID,
    TEMPORARY_SUFFIX,
    archive_dead_worker,
    processes_with_files,
    reading_directory,
)

#: One worker's life: requests by route, durations (one per bucket and one past the
#: last), a summary, and a live gauge, which prometheus_client drops when it dies.
WORKER_SCRIPT = """
import os
from prometheus_client import Counter, Gauge, Histogram, Summary
requests = Counter("t_requests_total", "Requests.", ["route"])
requests.labels("/a").inc({count})
requests.labels("/b").inc(2)
durations = Histogram("t_seconds", "Durations.", ["route"], buckets=(0.1, 1.0))
for seconds in (0.05, 0.5, 5.0):
    durations.labels("/a").observe(seconds)
Summary("t_size_bytes", "Sizes.").observe(3.5)
Gauge("t_in_flight", "In flight.", multiprocess_mode="livesum").set(1)
print(os.getpid())
"""
GAUGE_NAME = "t_in_flight"
#: How long a blocked merge is given to (wrongly) go ahead in the interleaving test.
BLOCKED_CHECK_SECONDS = 0.3


@pytest.fixture(autouse=True)
def no_pending_pids() -> Iterator[None]:
    """The module remembers pids it could not archive; each test starts without any."""
    metrics_archive._unarchived_pids.clear()
    yield
    metrics_archive._unarchived_pids.clear()


def run_worker(directory: Path, count: int = 1) -> int:
    """A process that counts ``count`` requests on /a into ``directory``, exits; its pid."""
    completed = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT.format(count=count)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(completed.stdout)


def scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as ``/metrics`` would show it, by name and labels."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def without_gauge(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict:
    return {key: value for key, value in samples.items() if key[0] != GAUGE_NAME}


def requests_total(directory: Path, files: list[str] | None = None) -> float:
    """Requests on /a, read from ``files`` (listed earlier) or the directory now."""
    listed = files if files is not None else [str(file) for file in directory.glob("*.db")]
    return sum(
        sample.value
        for metric in MultiProcessCollector.merge(listed)
        for sample in metric.samples
        if sample.name == "t_requests_total" and sample.labels == {"route": "/a"}
    )


def test_archiving_dead_workers_changes_no_total(tmp_path: Path) -> None:
    first, second, third = (run_worker(tmp_path, count) for count in (3, 5, 7))
    before = scrape(tmp_path)

    assert archive_dead_worker(tmp_path, first)
    assert archive_dead_worker(tmp_path, second)
    after = scrape(tmp_path)

    assert without_gauge(after) == without_gauge(before)
    assert after[("t_requests_total", (("route", "/a"),))] == 15
    assert after[("t_seconds_bucket", (("le", "0.1"), ("route", "/a")))] == 3
    assert after[("t_seconds_bucket", (("le", "+Inf"), ("route", "/a")))] == 9
    assert after[("t_seconds_count", (("route", "/a"),))] == 9
    assert after[("t_size_bytes_sum", ())] == 10.5
    # Live gauges of a dead process go, as prometheus_client's mark_process_dead says.
    assert after[(GAUGE_NAME, ())] == 1
    assert processes_with_files(tmp_path) == {ARCHIVE_PID, str(third)}
    names = sorted(file.name for file in tmp_path.glob("*.db"))
    assert names == sorted(
        [
            *(f"{kind}_{ARCHIVE_PID}.db" for kind in ("counter", "histogram", "summary")),
            *(f"{kind}_{third}.db" for kind in ("counter", "histogram", "summary")),
            f"gauge_livesum_{third}.db",
        ]
    )


def test_the_directory_stays_the_same_size_however_many_workers_die(tmp_path: Path) -> None:
    sizes = []
    for _ in range(4):
        assert archive_dead_worker(tmp_path, run_worker(tmp_path))
        sizes.append(len(list(tmp_path.iterdir())))

    assert sizes == [4, 4, 4, 4]  # three archive files and the lock file
    assert requests_total(tmp_path) == 4
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))


def test_a_scrape_between_listing_and_reading_sees_the_dead_worker_exactly_once(
    tmp_path: Path,
) -> None:
    """Forced interleaving: the scrape lists the files, the master archives, the scrape reads.

    Unlocked, the scrape would look for the dead worker's file after it was gone (or, had
    it read the new archive, count the worker twice). The merge waits for the scrape.
    """
    archived_before = run_worker(tmp_path, count=2)
    assert archive_dead_worker(tmp_path, archived_before)
    dying = run_worker(tmp_path, count=3)
    listed, proceed = threading.Event(), threading.Event()
    seen: list[float] = []

    def scrape_in_two_steps() -> None:
        with reading_directory(tmp_path):
            files = [str(file) for file in tmp_path.glob("*.db")]
            listed.set()
            proceed.wait()
            seen.append(requests_total(tmp_path, files))

    scraper = threading.Thread(target=scrape_in_two_steps)
    scraper.start()
    listed.wait()
    archived: list[bool] = []
    master = threading.Thread(target=lambda: archived.append(archive_dead_worker(tmp_path, dying)))
    master.start()
    master.join(BLOCKED_CHECK_SECONDS)

    assert master.is_alive(), "the archive went ahead under a scrape"
    assert (tmp_path / f"counter_{dying}.db").exists()
    proceed.set()
    scraper.join()
    master.join()

    assert seen == [5]
    assert archived == [True]
    assert not (tmp_path / f"counter_{dying}.db").exists()
    assert requests_total(tmp_path) == 5


def test_without_the_lock_that_interleaving_breaks_the_scrape(tmp_path: Path) -> None:
    """The hazard the lock prevents is real: a listed file vanishes before it is read."""
    assert archive_dead_worker(tmp_path, run_worker(tmp_path))
    dying = run_worker(tmp_path)
    files = [str(file) for file in tmp_path.glob("*.db")]
    assert archive_dead_worker(tmp_path, dying)

    with pytest.raises(FileNotFoundError):
        requests_total(tmp_path, files)


def test_a_busy_lock_leaves_the_files_counted_and_the_next_exit_archives_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_archive, "EXCLUSIVE_LOCK_WAIT_SECONDS", 0.05)
    waited_out = run_worker(tmp_path, count=2)
    with reading_directory(tmp_path):
        assert not archive_dead_worker(tmp_path, waited_out)
    assert (tmp_path / f"counter_{waited_out}.db").exists()
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))
    assert requests_total(tmp_path) == 2

    assert archive_dead_worker(tmp_path, run_worker(tmp_path, count=3))

    assert not (tmp_path / f"counter_{waited_out}.db").exists()
    assert requests_total(tmp_path) == 5


def test_a_worker_that_died_before_counting_anything_is_a_no_op(tmp_path: Path) -> None:
    assert archive_dead_worker(tmp_path, 4_000_000)  # no such pid, no files
    assert not list(tmp_path.glob("*.db"))


def test_the_app_defines_no_gauge_that_would_outlive_its_worker() -> None:
    """Only counters, histograms, summaries and live* gauges are cleaned at a worker's exit."""
    gauges = [value for value in vars(metrics).values() if isinstance(value, Gauge)]
    assert all(gauge._multiprocess_mode.startswith("live") for gauge in gauges)
