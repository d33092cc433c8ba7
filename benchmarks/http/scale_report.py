"""The scale run's tables, Markdown page and chart, all drawn from its result document.

As ``benchmarks.http.report`` does for ``make bench-http`` (whose colours this
shares, with ``benchmarks.report``'s table renderer and JSON writer), so the
page, the chart and the terminal can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.http.report import CONTENDER_COLOURS, NOT_MEASURED, dynamodb_server_text
from benchmarks.http.scale import CACHED_VIEW, CLIENTS, GZIP, NGINX_STATIC, PLAIN
from benchmarks.report import format_load_average, render_table, save_chart, write_json

JSON_NAME = "bench-scale.json"
MARKDOWN_NAME = "bench-scale.md"
CHART_NAME = "bench-scale.png"
#: The two contenders this run adds, coloured apart from benchmarks.http's.
SCALE_COLOURS = CONTENDER_COLOURS | {CACHED_VIEW: "#e08a2c", NGINX_STATIC: "#555555"}
CHART_SIZE_INCHES = (12, 5)
#: Decimal units, as the issue's table gives body sizes (369 KB at 10,000 categories).
BYTE_UNITS = ((1_000_000, "MB"), (1_000, "KB"))


def _bytes(count: float | None) -> str:
    if count is None:
        return NOT_MEASURED
    for size, unit in BYTE_UNITS:
        if count >= size:
            return (
                f"{count / size:.1f} {unit}" if count < size * 100 else f"{count / size:.0f} {unit}"
            )
    return f"{count:.0f} B"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _contender_names(document: dict[str, Any]) -> list[str]:
    return list(document["contenders"])


def throughput_table(document: dict[str, Any], client: str, markdown: bool = False) -> str:
    """The issue's table for one client: req/s per size and contender, with the body's size."""
    names = _contender_names(document)
    body_heading = "gzip body" if client == GZIP else "body"
    headers = ["categories", body_heading, *names]
    rows = []
    for size in document["sizes"].values():
        body = size["gzip_bytes"] if client == GZIP else size["identity_bytes"]
        rows.append(
            [
                f"{size['categories']:,}",
                _bytes(body),
                *(_rate(size["summary"][name][client]["requests_per_second"]) for name in names),
            ]
        )
    return render_table(headers, rows, markdown)


def wire_table(document: dict[str, Any], markdown: bool = False) -> str:
    """Bytes per response as wrk read them (headers included), per client, and their share
    of the identity body: what "bytes on the wire ... <= 15 % of the body" reads off."""
    names = _contender_names(document)
    headers = ["categories", "client", *(f"{name} B/resp (share)" for name in names)]
    rows = []
    for size in document["sizes"].values():
        for client in CLIENTS:
            cells = []
            for name in names:
                wire = size["summary"][name][client.name]["bytes_per_response"]
                share = NOT_MEASURED if wire is None else f"{wire / size['identity_bytes']:.0%}"
                cells.append(f"{_bytes(wire)} ({share})")
            rows.append([f"{size['categories']:,}", client.name, *cells])
    return render_table(headers, rows, markdown)


def cells_table(document: dict[str, Any], markdown: bool = False) -> str:
    """Every cell: latency, bytes, the app's cache-hit share, and the GET after the loads."""
    headers = [
        "categories",
        "contender",
        "client",
        "req/s",
        "p50 ms",
        "p99 ms",
        "B/response",
        "cache hits",
        "GET after: X-Cache, coding, body",
    ]
    rows = []
    for size in document["sizes"].values():
        for name in _contender_names(document):
            for client in CLIENTS:
                summary = size["summary"][name][client.name]
                answer = size["probes"][name][client.name]
                share = summary["cache_hit_share"]
                rows.append(
                    [
                        f"{size['categories']:,}",
                        name,
                        client.name,
                        _rate(summary["requests_per_second"]),
                        f"{summary['p50_ms']:.2f}",
                        f"{summary['p99_ms']:.1f}",
                        _bytes(summary["bytes_per_response"]),
                        NOT_MEASURED if share is None else f"{share:.1%}",
                        f"{answer['x_cache']}, {answer['content_encoding']}, "
                        f"{_bytes(answer['body_bytes'])}",
                    ]
                )
    return render_table(headers, rows, markdown)


def targets_table(document: dict[str, Any], markdown: bool = False) -> str:
    headers = ["target", "measured", "result"]
    rows = [
        [target["description"], target["shown"], "PASS" if target["met"] else "MISS"]
        for target in document["targets"]
    ]
    return render_table(headers, rows, markdown)


def text_report(document: dict[str, Any]) -> str:
    parts = [
        f"req/s, {PLAIN} client\n{throughput_table(document, PLAIN)}",
        f"req/s, {GZIP} client\n{throughput_table(document, GZIP)}",
        wire_table(document),
    ]
    if document["targets"]:
        parts.append(targets_table(document))
    parts.append(f"measured in {document['measured_seconds']}s")
    return "\n\n".join(parts)


def write_chart(document: dict[str, Any], output_dir: Path) -> Path:
    """req/s against catalogue size, log-log, one line per contender; plain left, gzip right."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    sizes = list(document["sizes"].values())
    categories = [size["categories"] for size in sizes]
    figure, panels = plt.subplots(1, len(CLIENTS), figsize=CHART_SIZE_INCHES, sharey=True)
    for axes, client in zip(panels, CLIENTS, strict=True):
        for name in _contender_names(document):
            rates = [size["summary"][name][client.name]["requests_per_second"] for size in sizes]
            axes.plot(
                categories,
                rates,
                marker="o",
                label=name,
                color=SCALE_COLOURS.get(name, "#999999"),
            )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("categories in the list (log scale)")
        axes.set_title(f"{client.name} client: {client.label}", fontsize=9)
        axes.grid(alpha=0.3, which="both")
    panels[0].set_ylabel("requests per second (log scale, higher is better)")
    panels[-1].legend(fontsize=8)
    parameters = document["parameters"]
    figure.suptitle(
        f"GET {parameters['path']} as the catalogue grows: {parameters['workers']} workers each, "
        f"wrk {parameters['connections']} connections, {parameters['duration_seconds']} s a cell"
    )
    return save_chart(figure, output_dir / CHART_NAME)


def markdown_page(document: dict[str, Any], chart_written: bool) -> str:
    parameters = document["parameters"]
    machine = document["machine"]
    tools = document["tools"]
    server = document["server"]
    versions = ", ".join(f"{name} {version}" for name, version in document["versions"].items())
    dynamodb_text = dynamodb_server_text(server)
    contenders = "\n".join(
        f"- **{name}**: {label}." for name, label in document["contenders"].items()
    )
    clients = "\n".join(f"- **{name}**: {label}." for name, label in document["clients"].items())
    chart = f"![req/s against catalogue size]({CHART_NAME})\n\n" if chart_written else ""
    targets = (
        f"## Targets\n\n{targets_table(document, markdown=True)}\n\n" if document["targets"] else ""
    )
    sizes = ", ".join(f"{size:,}" for size in parameters["sizes"])
    return f"""# Scale benchmark: GET /categories from a few categories to many

- Command: `{document["command"]}` (`make bench-scale` runs it without arguments).
- Run: {document["generated_at"]}, {document["runtime_seconds"]} s in all
  ({document["measured_seconds"]} s for the sizes); every number is in [{JSON_NAME}]({JSON_NAME}).
- Machine: {machine["platform"]}, {machine["cpu_count"]} cores, Python {machine["python"]};
  load average (1/5/15 min) {format_load_average(machine["load_average_at_start"])} at the
  start, {format_load_average(machine["load_average_at_end"])} at the end.
- Load: {tools["wrk"]}, {parameters["wrk_threads"]} threads, {parameters["connections"]}
  keep-alive connections, {parameters["duration_seconds"]} s per contender and client,
  {parameters["rounds"]} round(s) per size, after {parameters["warmup_seconds"]} s of warm-up.
- Sizes: {sizes} categories (about 37 bytes each in the body).
- Servers: gunicorn with the repository's gunicorn.conf.py, {parameters["workers"]} gevent
  workers each; {tools.get("nginx") or "nginx: not run"} with {parameters["workers"]} workers;
  redis: {tools["redis_server"] or "not run"}; DynamoDB: {dynamodb_text}. All on this machine.
- Libraries: {versions}.

{chart}## req/s, plain client

{throughput_table(document, PLAIN, markdown=True)}

## req/s, gzip-accepting client

{throughput_table(document, GZIP, markdown=True)}

{targets}## Bytes on the wire

Bytes per response as wrk read them (status line and headers included), and in brackets
their share of the identity body.

{wire_table(document, markdown=True)}

## Every cell

"cache hits" is the app's own count of cache reads by result during the cell's loads
(`ecommerce_cache_requests_total`); "GET after" is one more request as that client once
the loads were done: its X-Cache, Content-Encoding and body bytes as sent.

{cells_table(document, markdown=True)}

## Contenders

{contenders}

## Clients

{clients}

## How it was measured

- For each size one SQLite catalogue is built (`flask --app wsgi init-db`, then one
  `executemany` of the generated categories; the triggers raise the catalogue version
  per row) and copied into every contender's own fresh database file before it starts;
  nginx gets the same list's bytes, encoded and gzipped as the app encodes them.
- All contenders of a size run at once, each on a fresh DynamoDB table or a fresh
  redis-server. Each gets {parameters["warmup_seconds"]} s of unmeasured load (the
  DynamoDB contenders {parameters.get("dynamodb_warmup_seconds", 0)} s more before the first
  size, while DynamoDB Local's JVM compiles its hot paths), then one checked GET: 200,
  `X-Cache: HIT` for the app's caches, and the same list from every contender. Then each
  contender is loaded by each client in turn, the first contender rotating from round to
  round when there are several; then the GETs after.
- The access log stays at the production level for the app (one JSON line per request);
  nginx logs nothing: it is the ceiling, not a like-for-like server. The cached-view app
  has none of the app's per-request work either (see its description).
- A 4xx or 5xx answer stops the run: it would be fast and count as throughput.
- wrk, the servers, redis-server and DynamoDB Local's JVM share {machine["cpu_count"]} cores;
  each cell is short, so read single cells as ±20 %, and the ratios with that in mind.
"""


def write_markdown(document: dict[str, Any], output_dir: Path, chart_written: bool) -> Path:
    path = output_dir / MARKDOWN_NAME
    path.write_text(markdown_page(document, chart_written))
    return path


def write_document_json(document: dict[str, Any], output_dir: Path) -> Path:
    return write_json(document, output_dir, JSON_NAME)
