"""Randomized faults against two instances x two workers, and a checker over every read.

``python -m scripts.chaos --seeds 1,2,3 --seconds 120`` (``make chaos SEEDS=1,2,3 MINUTES=2``)
runs each seed on each database (SQLite, PostgreSQL), one run at a time, with the strategy
the seed picks (seeds 1, 2, 3 cover the three), prints every violation with the app's log
lines around it, and then the Markdown table (faults injected, reads checked, worst
visibility lag per kind of write) that docs/chaos.md shows. Exit status 1 if any run
found a violation. devtools/chaos.py says what a run does; devtools/chaos_checker.py
what it checks and each bound's source.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devtools.chaos import ChaosOptions, RunOutcome, markdown_table, run_chaos
from devtools.chaos_schedule import DATABASES
from devtools.coherence import STRATEGIES
from devtools.processes import stopping_on_sigterm
from scripts.coherence import comma_separated

SECONDS_PER_MINUTE = 60
#: While DynamoDB Local restarts the proxy warns once per refused connection: dozens.
QUIET_LOGGERS = ("devtools.partition",)


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(item) for item in value.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds are integers, comma-separated: {value!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed")
    return seeds


def _positive_minutes(value: str) -> float:
    try:
        minutes = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"minutes is a number: {value!r}") from None
    if minutes <= 0:
        raise argparse.ArgumentTypeError("minutes must be above 0")
    return minutes


def slowest(outcome: RunOutcome) -> str:
    """The slowest GET while the database answered: its time, worker, X-Cache, request id."""
    read = outcome.report.slowest
    if read is None:
        return "none"
    return f"{outcome.report.slowest_read:.2f} s ({read.worker}, {read.cache}, {read.request_id})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seeds, default=[1, 2, 3], help="comma-separated")
    parser.add_argument(
        "--minutes", type=_positive_minutes, default=2.0, help="of faults per run (default 2)"
    )
    parser.add_argument(
        "--databases",
        type=lambda value: comma_separated(value, DATABASES),
        default=list(DATABASES),
        help="comma-separated",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="one strategy for every seed (default: the seed picks)",
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each run's logs (the instances', the SQLite file) in DIR/<database>-seed<N>",
    )
    args = parser.parse_args(argv)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    outcomes: list[RunOutcome] = []
    with stopping_on_sigterm():
        for database in args.databases:
            for seed in args.seeds:
                options = ChaosOptions(
                    seed, database, args.minutes * SECONDS_PER_MINUTE, args.strategy
                )
                workdir = None
                if args.keep_logs is not None:
                    workdir = args.keep_logs / f"{database}-seed{seed}"
                    workdir.mkdir(parents=True)
                outcome = run_chaos(options, workdir=workdir, progress=progress)
                outcomes.append(outcome)
                progress(
                    f"seed {seed}, {database}: {outcome.report.reads_checked} reads checked, "
                    f"{len(outcome.violations)} violations; slowest GET {slowest(outcome)}"
                )
                for evidence in outcome.evidence:
                    progress(evidence)
    print(markdown_table(outcomes))
    return 1 if any(outcome.violations for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
