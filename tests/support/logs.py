"""What the app reports about itself: JSON log lines on stdout, Prometheus samples."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` in Prometheus text, 0 if absent (never incremented)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def json_log_lines(captured_stdout: str) -> list[dict[str, Any]]:
    """Every stdout line, each of which must be one JSON object."""
    return [json.loads(line) for line in captured_stdout.splitlines() if line.strip()]
