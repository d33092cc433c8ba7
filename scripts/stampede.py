"""Many requests at the moment the cached list is missing, expired or being refreshed.

``make stampede`` runs :func:`main`: the scenarios of ``devtools.stampede`` (cold,
expiry, simplecache, stale, writes; its docstring says what each does), each on
a fresh ``gunicorn wsgi:app``, with the database loads and latencies printed.

``--app-root`` runs another checkout of the app instead (an older commit, to
measure what the lease changed); scenarios it cannot configure are skipped
with ``--scenarios``. tests/blackbox/test_stampede.py runs the same scenarios and
asserts the counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devtools import REPOSITORY_ROOT
from devtools.stampede import SCENARIOS, cold, expiry, simplecache, stage, stale, writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="concurrent GETs per burst")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=8, help="threads per gthread worker (older checkouts)"
    )
    parser.add_argument("--db-latency-ms", type=int, default=1500)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--app-root", type=Path, default=REPOSITORY_ROOT, help="app checkout")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    shape = (args.workers, args.threads, args.db_latency_ms)

    print(
        f"app: {args.app_root}; gunicorn {args.workers} workers; "
        f"DB_LATENCY_MS={args.db_latency_ms}",
        flush=True,
    )
    with stage(args.app_root.resolve()) as running:
        if "cold" in chosen:
            print("cold:        ", cold(running, args.requests, *shape).summary(), flush=True)
        if "expiry" in chosen:
            print("expiry:      ", expiry(running, args.requests, *shape).summary(), flush=True)
        if "simplecache" in chosen:
            result = simplecache(running, 16, args.db_latency_ms)
            print("simplecache: ", result.summary(), flush=True)
        if "stale" in chosen:
            result_stale = stale(running, 16, *shape)
            print(
                "stale:       ",
                result_stale.burst.summary(),
                f"; then {result_stale.next_answer.cache} after "
                f"{result_stale.seconds_to_hit * 1000:.0f} ms",
                flush=True,
            )
        if "writes" in chosen:
            for strategy in ("write-through", "refresh-async"):
                result_write = writes(running, strategy, *shape)
                print(
                    f"writes ({strategy}): POST {result_write.post.status} in "
                    f"{result_write.post.seconds * 1000:.0f} ms; next GET "
                    f"{result_write.get_after.cache} in {result_write.get_after.seconds * 1000:.0f}"
                    f" ms; HIT with the new list after {result_write.seconds_to_hit * 1000:.0f} ms;"
                    f" database loads {result_write.db_loads:g}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
