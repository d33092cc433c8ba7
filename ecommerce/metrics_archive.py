"""Keep the Prometheus multiprocess directory bounded: fold dead workers into an archive.

prometheus_client's multiprocess mode gives every process its own mmap files
(``counter_<pid>.db``, ``histogram_<pid>.db``, ...) and a scrape adds up every
file in the directory, dead processes' included, so counters survive a worker
recycle. It never deletes them: a server that recycles workers for days grows
the directory without bound, and each ``/metrics`` reads every file.

gunicorn's master calls :func:`archive_dead_worker` from its ``child_exit`` hook
(gunicorn.conf.py). It adds the dead worker's counters, histograms and summaries
into one set of files under the pid :data:`ARCHIVE_PID` (``counter_archive.db``,
...) with prometheus_client's own merge (``MultiProcessCollector.merge`` with
``accumulate=False``, the form its docstring gives for writing merged data back)
and its own file class (``MmapedDict``), then deletes the worker's files. The
directory then holds the live workers' files, one archive set and a lock file,
however many workers have come and gone.

Gauges follow prometheus_client's semantics: ``mark_process_dead`` (called
first) removes a dead process's ``live*`` gauge files; every other gauge mode
keeps the dead process's value by design (``all`` even under its pid label), so
those files are left where they are. The app's gauges all use ``live*`` modes (a
test checks), so nothing accumulates; a new gauge should use one too.

Concurrency, the only hard part. The master rewrites the archive while a worker
may be answering a scrape, which lists the directory and then reads each file.
A scrape that listed the old archive and the dead worker's file, and then read
the new archive, would count that worker twice; one that read the old archive
and then found the worker's file gone would fail (or undercount). So:

- the master builds the new archive in temporary files, which a scrape never
  reads (they do not end in ``.db``), with no lock held: only the master writes
  the archive and the dead worker writes nothing any more;
- then, under an exclusive ``flock`` on :data:`LOCK_FILE_NAME`, it renames the
  temporary files over the archive (atomic within one directory) and deletes
  the worker's files, a few system calls;
- a scrape holds a shared ``flock`` on the same file from listing the
  directory to reading its last file (:func:`reading_directory`).

A scrape therefore sees the worker either in its own files or in the archive,
never both and never neither: totals are exact and never go down. The master
waits at most :data:`EXCLUSIVE_LOCK_WAIT_SECONDS` for scrapes to finish; if they
hold it longer, the worker's files stay (and are counted) and are folded in at
the next worker exit instead.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

logger = logging.getLogger(__name__)

#: Stands in for a pid in the archive's file names: prometheus_client reads the type
#: from the name's first part and (for gauges only) the pid from the last, so
#: ``counter_archive.db`` is read as any counter file is. No process has this pid.
ARCHIVE_PID = "archive"
#: The file types whose values add up across processes, so one archive holds them all.
#: (Histogram buckets are stored per bucket, not cumulatively; summaries hold _count
#: and _sum.) Gauges are handled by ``mark_process_dead``, as the module docstring says.
ADDITIVE_FILE_TYPES = ("counter", "histogram", "summary")
#: Both sides lock this file; it does not end in ``.db``, so no scrape reads it.
LOCK_FILE_NAME = "archive.lock"
#: The suffix of the archive being built; not ``*.db`` either, for the same reason.
TEMPORARY_SUFFIX = ".merging"
#: Scrapes hold the shared lock for the milliseconds it takes to read a few files.
#: The master waits no longer than this in child_exit, where it is not yet replacing
#: the worker; files it could not fold in wait for the next exit.
EXCLUSIVE_LOCK_WAIT_SECONDS = 2.0
LOCK_POLL_SECONDS = 0.005
#: Archived values carry no timestamp: only ``mostrecent`` gauges use one.
NO_TIMESTAMP = 0.0

#: Pids whose files could not be folded in yet (the lock stayed busy, a read failed).
#: Module state, not gunicorn.conf.py's: a HUP re-reads that file but keeps this module.
_unarchived_pids: set[int] = set()


@contextmanager
def reading_directory(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold while listing and reading the directory: the archive does not change meanwhile.

    A blocking lock, even in a gevent worker (flock is not cooperative): the master
    holds it exclusively only for a few renames and unlinks.
    """
    with _locked(Path(directory), fcntl.LOCK_SH):
        yield


def archive_dead_worker(directory: str | os.PathLike[str], pid: int) -> bool:
    """Fold the files of the dead process ``pid`` into the archive; True once none is left.

    Also retries pids an earlier call could not finish. Never raises for an archive
    it could not write: the master must go on replacing workers, and files left in
    place are still counted by every scrape.
    """
    path = Path(directory)
    _unarchived_pids.add(pid)
    pids = sorted(_unarchived_pids)
    replacements: list[tuple[Path, Path]] = []
    try:
        mark_process_dead(pid, str(path))
        replacements = _build_archive(path, pids)
        if replacements:  # else the pids left no additive file (e.g. died while booting)
            with _locked(path, fcntl.LOCK_EX, wait_seconds=EXCLUSIVE_LOCK_WAIT_SECONDS):
                for temporary, archive in replacements:
                    os.replace(temporary, archive)
                for dead_file in _files_of(path, pids):
                    dead_file.unlink(missing_ok=True)
    except TimeoutError:
        for temporary, _ in replacements:
            temporary.unlink(missing_ok=True)
        logger.warning(
            "Prometheus files of pids %s not archived: scrapes held %s for %.0f s; "
            "retried at the next worker exit",
            pids,
            LOCK_FILE_NAME,
            EXCLUSIVE_LOCK_WAIT_SECONDS,
        )
        return False
    except OSError:
        logger.exception(
            "Prometheus files of pids %s not archived yet; they stay in %s", pids, path
        )
        return False
    except (RuntimeError, ValueError):
        # prometheus_client's words for a corrupt file (a process killed in the middle
        # of a write). Retrying cannot help and would block every later archive: these
        # pids' files stay where they are, as prometheus_client itself leaves them.
        logger.exception("Prometheus files of pids %s left in %s: unreadable", pids, path)
        _unarchived_pids.difference_update(pids)
        return False
    _unarchived_pids.difference_update(pids)
    return True


def archive_files(directory: Path, file_type: str) -> Path:
    return directory / f"{file_type}_{ARCHIVE_PID}.db"


def processes_with_files(directory: str | os.PathLike[str]) -> set[str]:
    """The pids (and ARCHIVE_PID) that have metric files: at most the live ones and one."""
    # prometheus_client names every file <type>[_<mode>]_<pid>.db.
    return {file.stem.rsplit("_", 1)[-1] for file in Path(directory).glob("*.db")}


def _files_of(directory: Path, pids: Iterable[int]) -> list[Path]:
    return [
        directory / f"{file_type}_{pid}.db" for pid in pids for file_type in ADDITIVE_FILE_TYPES
    ]


def _build_archive(directory: Path, pids: list[int]) -> list[tuple[Path, Path]]:
    """The new archive files, written beside the old ones; (temporary, final) pairs."""
    replacements = []
    for file_type in ADDITIVE_FILE_TYPES:
        archive = archive_files(directory, file_type)
        dead_files = [directory / f"{file_type}_{pid}.db" for pid in pids]
        sources = [str(file) for file in (archive, *dead_files) if file.exists()]
        if not any(file.exists() for file in dead_files):
            continue  # nothing of this type to fold in: the archive stays as it is
        temporary = archive.with_name(archive.name + TEMPORARY_SUFFIX)
        temporary.unlink(missing_ok=True)  # MmapedDict would reopen a leftover, values kept
        _write_merged(sources, temporary)
        replacements.append((temporary, archive))
    return replacements


def _write_merged(sources: list[str], destination: Path) -> None:
    """prometheus_client's merge of ``sources``, written back in its own file format.

    ``accumulate=False`` keeps histogram buckets per bucket, as processes store them
    (accumulated, they would be added up again at every scrape). The key of each value
    is rebuilt with ``mmap_key``, exactly as a live process writes it, so the archive's
    series and a live worker's are the same series to the next merge.
    """
    merged = MultiProcessCollector.merge(sources, accumulate=False)
    archive = MmapedDict(str(destination))
    try:
        for metric in merged:
            for sample in metric.samples:
                key = mmap_key(
                    metric.name,
                    sample.name,
                    list(sample.labels),
                    list(sample.labels.values()),
                    metric.documentation,
                )
                archive.write_value(key, sample.value, NO_TIMESTAMP)
    finally:
        archive.close()


@contextmanager
def _locked(directory: Path, operation: int, wait_seconds: float | None = None) -> Iterator[None]:
    """flock ``operation`` on the directory's lock file; TimeoutError after ``wait_seconds``.

    flock, not fcntl's record locks: those are per process, so two threads (a test's)
    would share one; flock locks belong to the open file, and closing it releases them,
    also when the holder dies.
    """
    with open(directory / LOCK_FILE_NAME, "a") as lock_file:
        if wait_seconds is None:
            fcntl.flock(lock_file, operation)
        else:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(lock_file, operation | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise TimeoutError(LOCK_FILE_NAME) from None
                    time.sleep(LOCK_POLL_SECONDS)
        yield  # closing the file at the end of the with releases the lock
