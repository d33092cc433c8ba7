"""Everything drawn from the result document: the printed table, JSON, Markdown, chart.

All four render the same dict (the JSON on disk), so the committed page, the
chart and the terminal can never disagree, and an old JSON can be re-rendered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

JSON_NAME = "benchmarks.json"
MARKDOWN_NAME = "benchmarks.md"
CHART_NAME = "benchmarks.png"
#: Digits kept in the JSON: 0.1 microsecond is far below DynamoDB Local's noise.
JSON_DECIMALS = 4
#: Ratio columns, in the order the table shows them.
RATIO_COLUMNS = ("ours/bare", "ours/cachelib", "cachelib/ours")
#: One fixed colour per contender so every chart reads the same way.
CONTENDER_COLOURS = {"ours": "#2a7ab9", "cachelib": "#e08a2c", "bare": "#7f7f7f"}
CHART_SIZE_INCHES = (10, 5.5)
CHART_DPI = 120
NOT_TIMED = "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """One table renderer for both the terminal and Markdown: text left, numbers right."""
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join([":---", *["---:"] * (len(headers) - 1)]) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        padded = [first.ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def latency_table(document: dict[str, Any], markdown: bool = False) -> str:
    contenders: dict[str, str] = document["contenders"]
    headers = [
        "operation",
        "calls/round",
        *(f"{label} ms median (p90)" for label in contenders.values()),
        *RATIO_COLUMNS,
    ]
    rows = []
    for name, operation in document["operations"].items():
        latency = operation["latency"]
        rows.append(
            [
                name,
                str(operation["calls_per_round"]),
                *(
                    f"{latency[c]['median_ms']:.3f} ({latency[c]['p90_ms']:.3f})"
                    if c in latency
                    else NOT_TIMED
                    for c in contenders
                ),
                *(
                    f"{operation['ratios'][r]['value']:.2f}x"
                    if r in operation["ratios"]
                    else NOT_TIMED
                    for r in RATIO_COLUMNS
                ),
            ]
        )
    return render_table(headers, rows, markdown)


def targets_table(document: dict[str, Any], markdown: bool = False, heading: str = "target") -> str:
    headers = [heading, "measured", "per-round range", "result"]
    rows = [
        [
            target["description"],
            f"{target['measured']:.2f}x",
            f"{target['per_round_min']:.2f}x - {target['per_round_max']:.2f}x",
            "PASS" if target["met"] else "MISS",
        ]
        for target in document["targets"]
    ]
    return render_table(headers, rows, markdown)


def text_report(document: dict[str, Any]) -> str:
    verdict = "all targets met" if document["all_targets_met"] else "some targets MISSED"
    return "\n\n".join(
        [
            latency_table(document),
            targets_table(document),
            f"{verdict}; ratios are of medians; measured in {document['measured_seconds']}s",
        ]
    )


def rounded_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, JSON_DECIMALS)
    if isinstance(value, dict):
        return {key: rounded_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded_floats(item) for item in value]
    return value


def write_json(document: dict[str, Any], output_dir: Path, name: str = JSON_NAME) -> Path:
    path = output_dir / name
    path.write_text(json.dumps(rounded_floats(document), indent=2) + "\n")
    return path


def write_chart(document: dict[str, Any], output_dir: Path) -> Path:
    """Grouped bars per operation on a log axis (a hit is ~1 ms, cachelib's batch ~100x that)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    operations = list(document["operations"])
    contenders: dict[str, str] = document["contenders"]
    bar_width = 0.8 / len(contenders)
    figure, axes = plt.subplots(figsize=CHART_SIZE_INCHES)
    for index, (name, label) in enumerate(contenders.items()):
        positions, medians, tails = [], [], []
        for position, operation in enumerate(operations):
            stats = document["operations"][operation]["latency"].get(name)
            if stats is not None:
                positions.append(position + (index - (len(contenders) - 1) / 2) * bar_width)
                medians.append(stats["median_ms"])
                tails.append(stats["p90_ms"] - stats["median_ms"])
        bars = axes.bar(
            positions,
            medians,
            bar_width,
            label=label,
            color=CONTENDER_COLOURS.get(name),
            yerr=[[0] * len(tails), tails],
            capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "#333333"},
        )
        axes.bar_label(bars, labels=[f"{m:.2f}" for m in medians], padding=2, fontsize=8)
    axes.set_yscale("log")
    axes.set_xticks(range(len(operations)), operations)
    axes.set_ylabel("ms per call (median; whisker to p90), log scale")
    server = document.get("server", {}).get("dynamodb_local_version") or "external endpoint"
    axes.set_title(f"DynamoDB cache latency on DynamoDB Local {server} (lower is better)")
    axes.legend(loc="upper left")
    axes.grid(axis="y", which="major", alpha=0.3)
    return save_chart(figure, output_dir / CHART_NAME)


def save_chart(figure: Figure, path: Path) -> Path:
    """Lay ``figure`` out, write it to ``path`` at the docs' DPI, close it; return ``path``.

    Every benchmark's chart ends this way: one DPI for all the docs pages' images, and
    pyplot keeps every figure alive until it is closed.
    """
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=CHART_DPI)
    plt.close(figure)
    return path


def format_load_average(load_average: Sequence[float]) -> str:
    return "/".join(f"{load:.2f}" for load in load_average)


def markdown_page(document: dict[str, Any], chart_written: bool) -> str:
    parameters = document["parameters"]
    machine = document["machine"]
    server = document["server"]
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items())
    if server["started_by_benchmark"]:
        server_text = f"DynamoDB Local {server['dynamodb_local_version']} ({server['java']})"
    else:
        server_text = "an external endpoint given with --endpoint-url"
    chart = f"![latency chart]({CHART_NAME})\n\n" if chart_written else ""
    return f"""# Benchmark: our DynamoDBCache vs cachelib's DynamoDbCache vs a bare GetItem

- Command: `{document["command"]}` (`make bench` runs it without arguments).
- Run: {document["generated_at"]}, {document["runtime_seconds"]} s in all;
  every number is in [{JSON_NAME}]({JSON_NAME}).
- Machine: {machine["platform"]}, {machine["cpu_count"]} cores, Python {machine["python"]};
  load average (1/5/15 min) {format_load_average(machine["load_average_at_start"])} at the start,
  {format_load_average(machine["load_average_at_end"])} at the end.
- Server: {server_text}, on the same machine.
- Libraries: {versions}.

{chart}## Latency per call

{latency_table(document, markdown=True)}

## Targets

{targets_table(document, markdown=True)}

## How it was measured

- One DynamoDB Local (in memory) serves all three contenders; each has its own table, so
  all pay the same server, JVM and loopback network.
- Contenders: **ours** is `cache_backends.dynamodb.DynamoDBCache` with its defaults (strongly
  consistent reads, HMAC-signed entries); **cachelib** is `cachelib.dynamodb.DynamoDbCache`
  with its defaults; **bare** is one botocore `get_item(..., ConsistentRead=True)` of an item
  holding the pickled value, returning the raw item: the floor any cache's hit stands on.
  Bare is timed on `get` only.
- The value is the categories list (10 small dicts, a few hundred bytes). `get` and
  `get_many(100)` read keys written beforehand, so every call is a hit; `set_many(100)`
  writes 100 such values; `inc` increments an existing counter.
- Rounds: {parameters["warmup_rounds"]} untimed warm-up, then {parameters["rounds"]} measured.
  Each round times every operation on every contender back to back, the first contender
  rotating from round to round, so drift in the JVM or on the machine hits all alike.
- Calls per contender per round: {parameters["iterations"]} for single-key operations,
  {parameters["batch_iterations"]} for 100-key operations.
- Each call is timed alone with `time.perf_counter_ns`; its result is checked after the
  clock stops (a wrong answer, such as a miss where a hit belongs, aborts the run).

## How to read it

- Medians are over all calls of all measured rounds; p90 is the latency one call in ten
  exceeds. Ratios are of medians: `ours/cachelib` below 1 means ours is faster, and
  `cachelib/ours` is then "how many times faster".
- The per-round range shows the same ratio computed round by round. A target whose range
  straddles its limit is within the noise of this machine, whatever its verdict.
- DynamoDB Local answers in about a millisecond over loopback; on AWS each request also
  pays a network round trip, so request counts weigh more there. Per call, ours sends one
  BatchGetItem for `get_many(100)`, four BatchWriteItem (25 items each, DynamoDB's limit)
  for `set_many(100)` and one UpdateItem for `inc`; cachelib sends 100 GetItem, 100 PutItem,
  and a GetItem plus a PutItem.
- Consistency: ours reads strongly consistent by default, cachelib eventually consistent.
  DynamoDB Local serves both at the same latency; on AWS an eventually
  consistent read costs half as much (0.5 read unit per 4 KB instead of 1) and may return
  stale data.
"""


def write_markdown(document: dict[str, Any], output_dir: Path, chart_written: bool) -> Path:
    path = output_dir / MARKDOWN_NAME
    path.write_text(markdown_page(document, chart_written))
    return path
