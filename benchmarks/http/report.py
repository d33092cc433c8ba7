"""Everything drawn from the result document: the printed tables, the Markdown page, the chart.

As in ``benchmarks.report`` (whose table renderer and JSON writer this uses),
all render the same dict, the JSON on disk, so they can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.http.contenders import (
    BARE_FLASK,
    DYNAMODB,
    DYNAMODB_NEAR,
    NO_CACHE,
    REDIS,
    SIMPLECACHE,
)
from benchmarks.http.runner import P50_MS, P99_MS, RATIO_BASELINES, REQUESTS_PER_SECOND
from benchmarks.report import (
    format_load_average,
    render_table,
    save_chart,
    targets_table,
    write_json,
)

JSON_NAME = "bench-http.json"
MARKDOWN_NAME = "bench-http.md"
CHART_NAME = "bench-http.png"
SUSTAINED_JSON_NAME = "bench-http-sustained.json"
SUSTAINED_MARKDOWN_NAME = "bench-http-sustained.md"
TARGETS_HEADING = "target"
NOT_MEASURED = "-"
#: One fixed colour per contender so every chart reads the same way.
CONTENDER_COLOURS = {
    SIMPLECACHE: "#4c9a2a",
    REDIS: "#c0392b",
    DYNAMODB: "#7fb3d5",
    DYNAMODB_NEAR: "#2a7ab9",
    NO_CACHE: "#b0b0b0",
    BARE_FLASK: "#555555",
}
CHART_SIZE_INCHES = (12, 5)


def _milliseconds(value: float) -> str:
    """Three significant digits or so, from 0.613 to 1234."""
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def results_table(document: dict[str, Any], markdown: bool = False) -> str:
    baselines = [name for name in RATIO_BASELINES if name in document["summary"]]
    headers = [
        "contender",
        "req/s",
        "p50 ms",
        "p99 ms",
        *(f"req/s vs {name}" for name in baselines),
        "cache hits",
    ]
    rows = []
    for name, summary in document["summary"].items():
        ratios = summary["requests_per_second_ratios"]
        hit_share = summary["cache_hit_share"]
        rows.append(
            [
                name,
                f"{summary[REQUESTS_PER_SECOND]:.0f}",
                _milliseconds(summary[P50_MS]),
                _milliseconds(summary[P99_MS]),
                *(
                    f"{ratios[baseline]['value']:.2f}x" if baseline in ratios else NOT_MEASURED
                    for baseline in baselines
                ),
                NOT_MEASURED if hit_share is None else f"{hit_share:.1%}",
            ]
        )
    return render_table(headers, rows, markdown)


def per_round_table(document: dict[str, Any], markdown: bool = False) -> str:
    """Each round's req/s: how far apart the rounds are is the noise of this machine."""
    rounds = range(1, len(document["rounds"]) + 1)
    headers = ["contender", *(f"round {number} req/s" for number in rounds)]
    rows = [
        [name, *(f"{value:.0f}" for value in summary["per_round"][REQUESTS_PER_SECOND])]
        for name, summary in document["summary"].items()
    ]
    return render_table(headers, rows, markdown)


def waves_table(waves: dict[str, list[dict[str, Any]]], markdown: bool = False) -> str:
    """One row per wave: its load numbers, then the server's state right after it."""
    headers = [
        "contender",
        "wave",
        "req/s",
        "p50 ms",
        "p99 ms",
        "worker boots",
        "metrics files",
        "metrics pids",
        "/metrics ms",
    ]
    rows = [
        [
            name,
            str(number),
            f"{wave[REQUESTS_PER_SECOND]:.0f}",
            _milliseconds(wave[P50_MS]),
            _milliseconds(wave[P99_MS]),
            str(wave["worker_boots"]),
            NOT_MEASURED if wave["metrics_files"] is None else str(wave["metrics_files"]),
            NOT_MEASURED
            if wave.get("metrics_processes") is None
            else str(wave["metrics_processes"]),
            NOT_MEASURED if wave["metrics_ms"] is None else _milliseconds(wave["metrics_ms"]),
        ]
        for name, contender_waves in waves.items()
        for number, wave in enumerate(contender_waves, start=1)
    ]
    return render_table(headers, rows, markdown)


#: What the waves table's columns mean, in the Markdown pages of both kinds of run.
WAVES_COLUMNS = """- **req/s, p50 ms, p99 ms**: that wave's wrk run alone.
- **worker boots**: workers the master started while the wave ran (gunicorn's
  "Booting worker" lines): each is a recycle, or a crash, under load.
- **metrics files**, **metrics pids**: `*.db` files in the server's Prometheus
  multiprocess directory after the wave, and the processes they belong to (the archive
  counts as one). gunicorn.conf.py's `child_exit` folds a dead worker's files into one
  archive set, so the pids stay at live workers + 1 and the files at a few per pid,
  recycles or not (a file appears when a worker first uses its metric type).
- **/metrics ms**: median of three `GET /metrics` after the wave; it reads every file
  in that directory, so it would grow with them."""


def text_report(document: dict[str, Any]) -> str:
    parts = [results_table(document), per_round_table(document)]
    if document.get("waves"):
        parts.append(waves_table(document["waves"]))
    if document["targets"]:
        verdict = "all targets met" if document["all_targets_met"] else "some targets MISSED"
        parts += [targets_table(document, heading=TARGETS_HEADING), verdict]
    parts.append(
        f"medians over {len(document['rounds'])} rounds; measured in "
        f"{document['measured_seconds']}s"
    )
    return "\n\n".join(parts)


def write_chart(document: dict[str, Any], output_dir: Path) -> Path:
    """Req/s on the left (higher is better), p50 and p99 on the right (lower is better)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    names = list(document["summary"])
    summaries = [document["summary"][name] for name in names]
    colours = [CONTENDER_COLOURS.get(name, "#999999") for name in names]
    positions = range(len(names))
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=CHART_SIZE_INCHES)

    bars = throughput.bar(positions, [s[REQUESTS_PER_SECOND] for s in summaries], color=colours)
    throughput.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    throughput.set_ylabel("requests per second (median of rounds)")
    throughput.set_title("Throughput (higher is better)")

    width = 0.4
    p50_bars = latency.bar(
        [position - width / 2 for position in positions],
        [s[P50_MS] for s in summaries],
        width,
        color=colours,
        alpha=0.5,
        label="p50",
    )
    p99_bars = latency.bar(
        [position + width / 2 for position in positions],
        [s[P99_MS] for s in summaries],
        width,
        color=colours,
        label="p99",
    )
    for bar_group in (p50_bars, p99_bars):
        latency.bar_label(
            bar_group, labels=[_milliseconds(b.get_height()) for b in bar_group], fontsize=7
        )
    latency.set_yscale("log")
    latency.set_ylabel("ms, log scale (pale: p50, solid: p99)")
    latency.set_title("Latency (lower is better)")

    for axes in (throughput, latency):
        axes.set_xticks(list(positions), names, rotation=20)
        axes.grid(axis="y", alpha=0.3)
    parameters = document["parameters"]
    figure.suptitle(
        f"GET {parameters['path']} under gunicorn ({parameters['workers']} gevent workers), "
        f"wrk {parameters['connections']} connections"
    )
    return save_chart(figure, output_dir / CHART_NAME)


def dynamodb_server_text(server: dict[str, Any]) -> str:
    """Which DynamoDB answered, for a page's header: the run's own DynamoDB Local, or not."""
    if server["started_by_benchmark"]:
        return f"DynamoDB Local {server['dynamodb_local_version']} ({server['java']})"
    return "an external endpoint given with --endpoint-url"


def markdown_page(document: dict[str, Any], chart_written: bool) -> str:
    parameters = document["parameters"]
    machine = document["machine"]
    tools = document["tools"]
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items())
    server = document["server"]
    dynamodb_text = dynamodb_server_text(server)
    contenders = "\n".join(
        f"- **{name}**: {label}." for name, label in document["contenders"].items()
    )
    chart = f"![throughput and latency chart]({CHART_NAME})\n\n" if chart_written else ""
    targets = (
        f"## Targets\n\n{targets_table(document, markdown=True, heading=TARGETS_HEADING)}\n\n"
        if document["targets"]
        else ""
    )
    waves = (
        f"""## Waves: one server, back to back

After the rounds, each contender took {parameters["waves"]} wrk runs of
{parameters["duration_seconds"]} s in a row, with nothing in between, as a long-lived
server does; `python -m benchmarks.http --sustained 180` does the same for minutes
(and recycles workers by age), into `{SUSTAINED_MARKDOWN_NAME}` beside this page.

{waves_table(document["waves"], markdown=True)}

{WAVES_COLUMNS}

"""
        if document.get("waves")
        else ""
    )
    return f"""# HTTP benchmark: GET /categories under gunicorn, per cache backend

- Command: `{document["command"]}` (`make bench-http` runs it without arguments).
- Run: {document["generated_at"]}, {document["runtime_seconds"]} s in all;
  every number, round by round, is in [{JSON_NAME}]({JSON_NAME}).
- Machine: {machine["platform"]}, {machine["cpu_count"]} cores, Python {machine["python"]};
  load average (1/5/15 min) {format_load_average(machine["load_average_at_start"])} at the
  start, {format_load_average(machine["load_average_at_end"])} at the end.
- Load: {tools["wrk"]}, {parameters["wrk_threads"]} threads, {parameters["connections"]}
  keep-alive connections, {parameters["duration_seconds"]} s per contender per round.
- Servers: gunicorn with the repository's gunicorn.conf.py, {parameters["workers"]} gevent
  workers each; redis: {tools["redis_server"] or "not run"}; DynamoDB: {dynamodb_text}.
  All on this machine.
- Libraries: {versions}.

{chart}## Results

{results_table(document, markdown=True)}

{targets}## Round by round

{per_round_table(document, markdown=True)}

{waves}## Contenders

{contenders}

## How it was measured

- Every contender is `gunicorn` with the repository's gunicorn.conf.py and
  {parameters["workers"]} workers, each on its own fresh SQLite file seeded by
  `flask --app wsgi init-db` (the bare app is `gunicorn benchmarks.http.bare_app:app`
  under the same configuration), exactly as deployed: no worker is recycled by request
  count (gunicorn.conf.py recycles by memory and age only). The access log stays at the
  production level (INFO, one JSON line per request), so the app's own per-request work
  is all counted.
- All contenders run at once. First each gets {parameters["warmup_seconds"]} s of
  unmeasured load, then one checked GET: 200, `X-Cache: HIT` for the caches (MISS for
  no-cache), and the same body from every contender.
- Then {len(document["rounds"])} rounds; each round loads every contender once, one at a
  time, the first one rotating from round to round, so drift on the machine hits all alike.
  The figures are medians over rounds; ratios are of medians, with each round's own ratio
  in the targets' range column.
- "cache hits" is the app's own count of cache reads by result
  (`ecommerce_cache_requests_total`) during the measured runs: anything under 100 % for a
  cache means some measured requests were not the hits they were meant to be.
- A 4xx or 5xx answer stops the run: it would be fast and count as throughput.

## How to read it

- wrk is closed-loop: each connection sends its next request when the previous answer
  arrives, so req/s is the throughput at {parameters["connections"]} concurrent requests.
- wrk corrects its percentiles for coordinated omission: a request that waited much longer
  than the mean adds the samples a steady stream of users would have collected meanwhile.
  A short stall therefore shows in p99 with real weight.
- gevent workers are cooperative: a greenlet runs until it waits on I/O. A request answered
  from memory (SimpleCache, the near-cache, the bare app) never waits, and when its client
  sends the next request at once the same connection could be served again and again while
  the worker's other connections wait. gunicorn.conf.py's `post_request` yields once per
  request to prevent that; without it these contenders showed a p50 under 1 ms and a p99
  near 1 s (SimpleCache 957 ms, near-cache 1,060 ms, against redis's 206 ms).
- wrk, the servers, redis-server and DynamoDB Local's JVM share {machine["cpu_count"]} cores:
  CPU that a cache server spends is taken from the app, as it would not be on AWS, where
  DynamoDB runs elsewhere and each read pays a network round trip instead.
"""


def write_markdown(document: dict[str, Any], output_dir: Path, chart_written: bool) -> Path:
    path = output_dir / MARKDOWN_NAME
    path.write_text(markdown_page(document, chart_written))
    return path


def write_document_json(document: dict[str, Any], output_dir: Path, name: str = JSON_NAME) -> Path:
    return write_json(document, output_dir, name)


def sustained_text_report(document: dict[str, Any]) -> str:
    parameters = document["parameters"]
    return (
        f"{waves_table(document['sustained'])}\n\n"
        f"{parameters['sustained_seconds']} s per contender in waves; workers recycled "
        f"after {parameters['max_worker_age_seconds']} s (minus jitter)"
    )


def sustained_markdown_page(document: dict[str, Any]) -> str:
    parameters = document["parameters"]
    machine = document["machine"]
    contenders = "\n".join(
        f"- **{name}**: {label}." for name, label in document["contenders"].items()
    )
    max_age = parameters["max_worker_age_seconds"]
    recycling = (
        f"`GUNICORN_MAX_WORKER_AGE_SECONDS={max_age}`: each worker is replaced after "
        f"{max_age} s of serving, minus up to 10 % jitter"
        if max_age
        else "as deployed (memory limit only)"
    )
    return f"""# HTTP benchmark, sustained: one server under minutes of load

- Command: `{document["command"]}`.
- Run: {document["generated_at"]}, {document["runtime_seconds"]} s in all; every number is
  in [{SUSTAINED_JSON_NAME}]({SUSTAINED_JSON_NAME}).
- Machine: {machine["platform"]}, {machine["cpu_count"]} cores, Python {machine["python"]};
  load average (1/5/15 min) {format_load_average(machine["load_average_at_start"])} at the
  start, {format_load_average(machine["load_average_at_end"])} at the end.
- Load: {document["tools"]["wrk"]}, {parameters["wrk_threads"]} threads,
  {parameters["connections"]} keep-alive connections, {parameters["sustained_seconds"]} s per
  contender as back-to-back wrk runs (waves), after {parameters["warmup_seconds"]} s of warm-up.
- Servers: gunicorn with the repository's gunicorn.conf.py, {parameters["workers"]} gevent
  workers; recycling {recycling}.

## Waves

{waves_table(document["sustained"], markdown=True)}

{WAVES_COLUMNS}

Flat worker-boot, file and /metrics columns over the whole run, with boots in them, are
the point: the directory does not grow with recycles and a scrape costs the same at the
end as at the start. A wave with a boot shows what a recycle costs clients in its p99.

## Contenders

{contenders}
"""


def write_sustained_markdown(document: dict[str, Any], output_dir: Path) -> Path:
    path = output_dir / SUSTAINED_MARKDOWN_NAME
    path.write_text(sustained_markdown_page(document))
    return path
