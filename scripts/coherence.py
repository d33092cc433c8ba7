"""Does every committed change reach every cache, whatever fails in between?

``python -m scripts.coherence`` runs the scenarios of ``devtools.coherence`` (its
docstring says what each does) once each, on ``gunicorn wsgi:app`` with two
workers and DynamoDB Local behind a proxy that can partition it, and prints the
Markdown table: scenario | POST latency | time until every GET shows the change |
did the old list come back. ``--app-root`` measures another checkout (the
"before" column: ``git archive`` of the commit before the change, unpacked).
tests/blackbox/test_coherence.py runs the same scenarios and
asserts the coherence bounds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devtools import REPOSITORY_ROOT
from devtools.coherence import (
    SCENARIOS,
    STRATEGIES,
    Outcome,
    local_coherence_stage,
    markdown_table,
    run_scenarios,
)


def comma_separated(value: str, allowed: tuple[str, ...]) -> list[str]:
    """An argparse type: names from ``allowed``, comma-separated (scripts.chaos's too)."""
    chosen = [item.strip() for item in value.split(",") if item.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(allowed)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strategies",
        type=lambda value: comma_separated(value, STRATEGIES),
        default=list(STRATEGIES),
        help="comma-separated",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda value: comma_separated(value, SCENARIOS),
        default=list(SCENARIOS),
        help="comma-separated",
    )
    parser.add_argument(
        "--app-root",
        type=Path,
        default=REPOSITORY_ROOT,
        help="another checkout of the app, e.g. `git archive` of the commit before a change",
    )
    parser.add_argument(
        "--timelines", action="store_true", help="also print every worker's answers per scenario"
    )
    args = parser.parse_args(argv)

    def progress(outcome: Outcome) -> None:
        print(" | ".join(outcome.row()), *outcome.notes, file=sys.stderr, flush=True)
        if args.timelines:
            print(outcome.convergence.timeline(), file=sys.stderr, flush=True)

    print(f"app: {args.app_root}", file=sys.stderr, flush=True)
    with local_coherence_stage(args.app_root.resolve()) as stage:
        outcomes = run_scenarios(stage, args.strategies, args.scenarios, progress)
    print(markdown_table(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
