"""How a violation the chaos checker found is shown: the faults around it and the app's
own log lines for its request ids, so it can be diagnosed from the run's output alone.

Apart from the harness (``devtools/chaos.py``), which runs the fleet and records the
history: this reads what the run left behind (its logs, its fault windows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from devtools.chaos_checker import FaultWindow, Violation
from devtools.fleet import Instance

#: Log lines shown around a violation: this far either side of its write and read, WARNING
#: and up; and the faults that ended at most this long before its write (a long partition).
EVIDENCE_WINDOW_SECONDS = 1.0
EVIDENCE_FAULT_LOOKBACK_SECONDS = 15.0
EVIDENCE_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})


def log_records(instances: Sequence[Instance]) -> list[dict[str, Any]]:
    """Every JSON line of the instances' logs, with the instance's name and the epoch time."""
    records = []
    for instance in instances:
        for line in instance.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
                record["epoch"] = datetime.fromisoformat(record["time"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            record["instance"] = instance.name
            records.append(record)
    return records


def violation_span(violation: Violation) -> tuple[float, float]:
    """From the write (if any) to the read (if any): where its evidence lies."""
    moments = [
        moment
        for record in (violation.write, violation.read)
        if record is not None
        for moment in (record.sent, record.answered)
        if moment is not None
    ]
    return min(moments), max(moments)


def first_of_each(violations: Sequence[Violation]) -> list[tuple[Violation, int]]:
    """One violation per kind and write (or worker), with how many it stands for: a write
    seen late by every worker for a second is one finding, not forty."""
    groups: dict[tuple[str, str], list[Violation]] = {}
    for violation in violations:
        subject = (
            violation.write.name
            if violation.write
            else (violation.read.worker if violation.read else "")
        )
        groups.setdefault((violation.kind, subject), []).append(violation)
    return [(group[0], len(group)) for group in groups.values()]


def describe(
    violation: Violation,
    alike: int,
    records: Sequence[dict[str, Any]],
    faults: Sequence[FaultWindow],
    wall_offset: float,
) -> str:
    """The violation; the faults around it (seconds relative to its first moment); the app's
    log lines for its request ids and the warnings logged from its write to its read."""
    start, end = violation_span(violation)
    more = f" (and {alike - 1} more like it)" if alike > 1 else ""
    lines = [f"[{violation.kind}] {violation.message}{more}"]
    for fault in faults:
        if fault.overlaps(start - EVIDENCE_FAULT_LOOKBACK_SECONDS, end):
            lines.append(
                f"    fault {fault.kind} {fault.detail}: {fault.start - start:+.2f} s to "
                f"{fault.end - start:+.2f} s"
            )
    ids = {r.request_id for r in (violation.read, violation.write) if r is not None} - {None}
    low, high = (
        start + wall_offset - EVIDENCE_WINDOW_SECONDS,
        end + wall_offset + EVIDENCE_WINDOW_SECONDS,
    )
    for record in records:
        warning = record.get("level") in EVIDENCE_LEVELS and low <= record["epoch"] <= high
        if record.get("request_id") in ids or warning:
            fields = {k: v for k, v in record.items() if k not in ("epoch", "time")}
            lines.append(f"    {record['time']} {json.dumps(fields, default=str)}")
    return "\n".join(lines)
