"""GET /categories as the catalogue grows: ``make bench-scale`` (``python -m benchmarks.scale``).

Issue 18's table: req/s and bytes per response at 3, 1,000, 10,000, 50,000 and
200,000 categories, for a plain client (wrk sends no Accept-Encoding) and a
gzip-accepting one (``Accept-Encoding: gzip``), on every contender side by side:

- the app on SimpleCache, Redis, and our DynamoDB backend without and with the
  1 s near-cache (``benchmarks.http.contenders``);
- ``cached-view``: what a Flask-Caching user writes instead, ``@cache.cached``
  over ``jsonify(list)`` on SimpleCache (``benchmarks.http.cached_view``);
- ``nginx-static``: nginx serving the same bytes as a static file, with
  ``gzip_static`` for the gzip client: the ceiling for any Python server here.

For each size the benchmark builds one SQLite catalogue (init-db, then a bulk
insert: seconds even at 200,000), copies it into every contender's fresh
database file before that contender starts, writes the same body and its gzip
form for nginx, starts everything (a fresh redis-server too, so no size sees
the last one's list), warms up, checks that every contender answers the same
list, and loads each contender with each client in turn. After the loads one
more GET per contender and client records the X-Cache, Content-Encoding and
body bytes that the table's "bytes" columns and the issue's targets read.

Every gunicorn contender, wrk setting and check is benchmarks.http's, reused;
only the sizes, the two clients and the two extra contenders are new here (the
catalogues: ``benchmarks.http.catalogue``; nginx: ``benchmarks.http.static_nginx``). The
report (``benchmarks.http.scale_report``) goes to ``docs/bench-scale.{md,json,png}``; the
command line is ``benchmarks/scale.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from benchmarks.http.catalogue import build_catalogue, catalogue_representation, copying_catalogue
from benchmarks.http.contenders import (
    DYNAMODB,
    DYNAMODB_NEAR,
    NO_CACHE_HEADER,
    REDIS,
    SIMPLECACHE,
    Contender,
    select_contenders,
)
from benchmarks.http.runner import DEFAULT_CONNECTIONS, DEFAULT_WORKERS, HIT_RESULT
from benchmarks.http.servers import (
    CATEGORIES_PATH,
    Served,
    cache_results,
    redis_server,
    serving,
    warm_up,
)
from benchmarks.http.static_nginx import static_file_server
from benchmarks.http.wrk import (
    WRK_THREADS,
    parse_bytes_read,
    parse_wrk_output,
    wrk_report,
)
from benchmarks.runner import Progress, rotated
from cache_backends.loader import CacheStatus
from devtools.stampede import HTTP_TIMEOUT_SECONDS, Stage
from ecommerce.categories.representation import ACCEPT_ENCODING, ContentCoding, Representation

CACHED_VIEW = "cached-view"
NGINX_STATIC = "nginx-static"
#: ``Contender.wsgi_app`` of the one contender that is not a gunicorn: nginx serves files.
STATIC_FILE_SERVER = "nginx (static file)"

#: The issue's sizes; the seed categories count towards each.
DEFAULT_SIZES = (3, 1_000, 10_000, 50_000, 200_000)
#: Short cells: 5 sizes x 6 contenders x 2 clients must fit in about ten minutes on
#: this machine, and a cell's req/s settles within a second or two of load.
DEFAULT_DURATION_SECONDS = 3
DEFAULT_WARMUP_SECONDS = 2
#: More for the DynamoDB contenders, before the first size only: DynamoDB Local's JVM
#: compiles its hot paths in the first seconds of load (benchmarks.http found 3 s too
#: few), and a cold JVM at 3 categories would flatter every ratio to that size.
DEFAULT_DYNAMODB_WARMUP_SECONDS = 10
#: One pass per size: the issue's "one run". More interleave as benchmarks.http does.
DEFAULT_ROUNDS = 1
#: Bumped whenever the JSON document changes shape.
SCHEMA_VERSION = 1
X_CACHE = "X-Cache"
CONTENT_ENCODING = "Content-Encoding"
HTTP_OK = 200


@dataclass(frozen=True)
class Client:
    """A kind of client: what it says in Accept-Encoding (None: no header at all)."""

    name: str
    accept_encoding: str | None
    label: str

    @property
    def wrk_headers(self) -> tuple[str, ...]:
        if self.accept_encoding is None:
            return ()
        return (f"{ACCEPT_ENCODING}: {self.accept_encoding}",)

    @property
    def request_headers(self) -> dict[str, str | None]:
        # requests sends "gzip, deflate" unless told otherwise; None removes the header.
        return {ACCEPT_ENCODING: self.accept_encoding}


PLAIN = "plain"
GZIP = "gzip"
CLIENTS: tuple[Client, ...] = (
    Client(PLAIN, None, "no Accept-Encoding header (wrk's and curl's default)"),
    Client(
        GZIP,
        ContentCoding.GZIP.value,
        "Accept-Encoding: gzip (browsers and most HTTP libraries send it)",
    ),
)

SCALE_CONTENDERS: tuple[Contender, ...] = (
    *select_contenders([SIMPLECACHE, REDIS, DYNAMODB, DYNAMODB_NEAR]),
    Contender(
        CACHED_VIEW,
        "Flask-Caching's own @cache.cached over jsonify(list), on SimpleCache, in a bare "
        "Flask app (benchmarks/http/cached_view.py): what a user writes instead",
        wsgi_app="benchmarks.http.cached_view:create_app()",
        expected_cache_status=NO_CACHE_HEADER,
    ),
    Contender(
        NGINX_STATIC,
        "nginx serving the same bytes as a static file (gzip_static for the gzip client): "
        "the ceiling",
        wsgi_app=STATIC_FILE_SERVER,
        expected_cache_status=NO_CACHE_HEADER,
    ),
)
SCALE_CONTENDER_NAMES = tuple(contender.name for contender in SCALE_CONTENDERS)


@dataclass(frozen=True)
class Programs:
    """The servers' binaries beside gunicorn; None where the run does without them."""

    redis_server: str | None
    nginx: str | None


@dataclass(frozen=True)
class ScaleSettings:
    """What one run measures; the defaults are ``make bench-scale``'s."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    duration_seconds: int = DEFAULT_DURATION_SECONDS
    warmup_seconds: int = DEFAULT_WARMUP_SECONDS
    dynamodb_warmup_seconds: int = DEFAULT_DYNAMODB_WARMUP_SECONDS
    rounds: int = DEFAULT_ROUNDS
    connections: int = DEFAULT_CONNECTIONS
    workers: int = DEFAULT_WORKERS


# --- measuring ----------------------------------------------------------------------------


def measure_cell(
    item: Served, client: Client, wrk: str, settings: ScaleSettings, progress: Progress
) -> dict[str, Any]:
    """One wrk run of one client on one contender: its numbers and the bytes it read."""
    before = cache_results(item.url) if item.contender.is_app else None
    output = wrk_report(
        wrk, item.target, settings.duration_seconds, settings.connections, client.wrk_headers
    )
    result = parse_wrk_output(output)
    bytes_read = parse_bytes_read(output)
    cell: dict[str, Any] = asdict(result) | {
        "bytes_read": bytes_read,
        # None: no answer completed within the cell (wrk still counts the bytes it read).
        "bytes_per_response": bytes_read / result.requests if result.requests else None,
    }
    if before is not None:
        cell["cache_results"] = dict(cache_results(item.url) - before)
    errors = sum(result.socket_errors.values())
    note = f"; socket errors {result.socket_errors}" if errors else ""
    per_response = cell["bytes_per_response"]
    per_response_text = "-" if per_response is None else f"{per_response:.0f}"
    progress(
        f"  {item.contender.name:<14} {client.name:<6} {result.requests_per_second:>9.1f} req/s  "
        f"p99 {result.p99_ms:.2f} ms  {per_response_text:>10} B/response{note}"
    )
    return cell


def probe(item: Served, client: Client) -> dict[str, Any]:
    """One GET as ``client``: status, X-Cache, coding and the body's bytes as sent."""
    response = requests.get(
        item.target, headers=client.request_headers, stream=True, timeout=HTTP_TIMEOUT_SECONDS
    )
    with response:
        body = response.raw.read(decode_content=False)
    return {
        "status": response.status_code,
        "x_cache": response.headers.get(X_CACHE, NO_CACHE_HEADER),
        "content_encoding": response.headers.get(CONTENT_ENCODING, ContentCoding.IDENTITY.value),
        "body_bytes": len(body),
    }


def _cache_hit_share(cells: Sequence[dict[str, Any]]) -> float | None:
    """Hits among the app's cache reads in these runs; None where the app is not serving."""
    if not cells or "cache_results" not in cells[0]:
        return None
    hits = sum(cell["cache_results"].get(HIT_RESULT, 0) for cell in cells)
    reads = sum(sum(cell["cache_results"].values()) for cell in cells)
    return hits / reads if reads else 0.0


def _median_of_answered(values: Iterable[float | None]) -> float | None:
    """The median over the rounds that measured it (None: a cell with no answer at all)."""
    measured = [value for value in values if value is not None]
    return statistics.median(measured) if measured else None


def summarize_size(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per contender and client: medians over rounds, and the share of cache hits."""
    names = rounds[0]["results"].keys()
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for name in names:
        summary[name] = {}
        for client in rounds[0]["results"][name]:
            cells = [one_round["results"][name][client] for one_round in rounds]
            summary[name][client] = {
                metric: _median_of_answered(cell[metric] for cell in cells)
                for metric in ("requests_per_second", "p50_ms", "p99_ms", "bytes_per_response")
            } | {
                "per_round_requests_per_second": [cell["requests_per_second"] for cell in cells],
                "cache_hit_share": _cache_hit_share(cells),
            }
    return summary


@contextmanager
def serving_catalogue(
    stage: Stage,
    contenders: Sequence[Contender],
    settings: ScaleSettings,
    catalogue: Path,
    representation: Representation,
    programs: Programs,
) -> Iterator[list[Served]]:
    """Every contender up on copies of ``catalogue`` (nginx on its bytes), in canonical order."""
    with ExitStack() as stack:
        gunicorns = [c for c in contenders if c.wsgi_app != STATIC_FILE_SERVER]
        redis_url = None
        if any(contender.uses_redis for contender in gunicorns):
            # A fresh one per size: the list cached at the last size must not answer this one.
            assert programs.redis_server is not None  # the command line refused to start
            redis_url = stack.enter_context(redis_server(programs.redis_server, stage.workdir))
        started = stack.enter_context(
            serving(stage, gunicorns, settings.workers, redis_url, copying_catalogue(catalogue))
        )
        by_name = {item.contender.name: item for item in started}
        for contender in contenders:
            if contender.wsgi_app == STATIC_FILE_SERVER:
                assert programs.nginx is not None  # the command line refused to start
                by_name[contender.name] = stack.enter_context(
                    static_file_server(
                        programs.nginx, contender, representation, stage.workdir, settings.workers
                    )
                )
        yield [by_name[contender.name] for contender in contenders]


def run_size(
    stage: Stage,
    contenders: Sequence[Contender],
    categories: int,
    wrk: str,
    settings: ScaleSettings,
    programs: Programs,
    progress: Progress,
    *,
    first: bool = False,
) -> dict[str, Any]:
    """One size: catalogue, servers, warm-up and check, the loads, the GETs after them.

    ``first``: the run's first size, which also warms DynamoDB Local's JVM.
    """
    seeding_started = time.perf_counter()
    catalogue = build_catalogue(stage.workdir, categories)
    representation = catalogue_representation(catalogue)
    seed_seconds = time.perf_counter() - seeding_started
    identity_bytes = len(representation.identity_body)
    gzip_bytes = None if representation.gzip_body is None else len(representation.gzip_body)
    progress(
        f"{categories} categories: body {identity_bytes} B, gzip {gzip_bytes} B, "
        f"catalogue built in {seed_seconds:.1f}s; starting {len(contenders)} servers"
    )
    with serving_catalogue(
        stage, contenders, settings, catalogue, representation, programs
    ) as served:
        on_dynamodb = [item for item in served if item.contender.uses_dynamodb]
        if first and on_dynamodb:
            warm_up(on_dynamodb, wrk, settings.dynamodb_warmup_seconds, settings.connections)
        warm_up(served, wrk, settings.warmup_seconds, settings.connections)
        rounds = []
        for round_index in range(settings.rounds):
            order = rotated(served, round_index)
            results = {
                item.contender.name: {
                    client.name: measure_cell(item, client, wrk, settings, progress)
                    for client in CLIENTS
                }
                for item in order
            }
            rounds.append({"order": [item.contender.name for item in order], "results": results})
        # After the loads, as a client arriving later would: is the list still a hit?
        probes = {
            item.contender.name: {client.name: probe(item, client) for client in CLIENTS}
            for item in served
        }
    catalogue.unlink()
    return {
        "categories": categories,
        "identity_bytes": identity_bytes,
        "gzip_bytes": gzip_bytes,
        "catalogue_seconds": round(seed_seconds, 2),
        "rounds": rounds,
        "summary": summarize_size(rounds),
        "probes": probes,
    }


# --- the targets ------------------------------------------------------------------

#: One target's entry in the result document (description, measured, shown, limit, met).
Verdict = dict[str, Any]
#: The document's "sizes": each size's result, keyed by the size as text (JSON keys).
Sizes = Mapping[str, dict[str, Any]]


@dataclass(frozen=True)
class RatioTarget:
    """req/s of one cell over another's must be at least ``limit``."""

    description: str
    contender: str
    client: str
    categories: int
    baseline_categories: int
    limit: float
    #: None: the contender itself, at ``baseline_categories``.
    baseline_contender: str | None = None

    def verdict(self, sizes: Sizes) -> Verdict | None:
        """Judged on the medians; None when the run did not measure both cells."""
        try:
            top = sizes[str(self.categories)]["summary"][self.contender][self.client]
            baseline = self.baseline_contender or self.contender
            bottom = sizes[str(self.baseline_categories)]["summary"][baseline][self.client]
        except KeyError:
            return None
        if not bottom["requests_per_second"]:  # nothing answered in the cell: no ratio
            return {
                "description": self.description,
                "measured": None,
                "shown": "no answer at the baseline",
                "limit": self.limit,
                "met": False,
            }
        ratio = top["requests_per_second"] / bottom["requests_per_second"]
        return {
            "description": self.description,
            "measured": ratio,
            "shown": f"{ratio:.2f}x",
            "limit": self.limit,
            "met": ratio >= self.limit,
        }


#: Bytes on the wire per response (headers included), gzip client, over the identity body.
WIRE_SHARE_CATEGORIES = 10_000
WIRE_SHARE_LIMIT = 0.15
#: The size at which DynamoDB's 400 KB item used to refuse the list.
LARGEST_CATEGORIES = 200_000


def wire_share_target(sizes: Sizes) -> Verdict | None:
    size = sizes.get(str(WIRE_SHARE_CATEGORIES))
    if size is None or DYNAMODB_NEAR not in size["summary"]:
        return None
    description = (
        f"gzip client at {WIRE_SHARE_CATEGORIES // 1000}k: bytes on the wire per response "
        f"<= {WIRE_SHARE_LIMIT:.0%} of the body (dynamodb-near)"
    )
    wire = size["summary"][DYNAMODB_NEAR][GZIP]["bytes_per_response"]
    if wire is None:
        return {
            "description": description,
            "measured": None,
            "shown": "no answer in the cell",
            "limit": WIRE_SHARE_LIMIT,
            "met": False,
        }
    share = wire / size["identity_bytes"]
    return {
        "description": description,
        "measured": share,
        "shown": f"{share:.1%} ({wire:,.0f} of {size['identity_bytes']:,} B)",
        "limit": WIRE_SHARE_LIMIT,
        "met": share <= WIRE_SHARE_LIMIT,
    }


def largest_is_a_hit_target(sizes: Sizes) -> Verdict | None:
    size = sizes.get(str(LARGEST_CATEGORIES))
    if size is None or DYNAMODB not in size["probes"]:
        return None
    answers = [size["probes"][DYNAMODB][client.name] for client in CLIENTS]
    statuses = [answer["x_cache"] for answer in answers]
    hit_share = [size["summary"][DYNAMODB][client.name]["cache_hit_share"] for client in CLIENTS]
    return {
        "description": f"{LARGEST_CATEGORIES // 1000}k categories on dynamodb (no near-cache): "
        "GETs after the run are HIT",
        "measured": statuses,
        "shown": f"X-Cache {', '.join(statuses)}; "
        + ", ".join(
            f"{client.name} hits {share:.0%}"
            for client, share in zip(CLIENTS, hit_share, strict=True)
            if share is not None
        ),
        "limit": CacheStatus.HIT.value,
        "met": all(
            answer["status"] == HTTP_OK and answer["x_cache"] == CacheStatus.HIT.value
            for answer in answers
        ),
    }


#: The targets, in their order: the near-cache unless said, the same wrk
#: settings, one run. Each answers None when the run did not measure what it needs.
TARGETS: tuple[Callable[[Sizes], Verdict | None], ...] = (
    RatioTarget(
        "gzip client: dynamodb-near req/s at 10k >= 0.8x at 3", DYNAMODB_NEAR, GZIP, 10_000, 3, 0.8
    ).verdict,
    RatioTarget(
        "gzip client: dynamodb-near req/s at 50k >= 0.5x at 3", DYNAMODB_NEAR, GZIP, 50_000, 3, 0.5
    ).verdict,
    RatioTarget(
        "plain client: dynamodb-near req/s at 10k >= 0.4x at 3",
        DYNAMODB_NEAR,
        PLAIN,
        10_000,
        3,
        0.4,
    ).verdict,
    wire_share_target,
    RatioTarget(
        "plain client: dynamodb (no near-cache) req/s at 10k >= 0.5x its own at 3",
        DYNAMODB,
        PLAIN,
        10_000,
        3,
        0.5,
    ).verdict,
    RatioTarget(
        "gzip client: dynamodb (no near-cache) req/s at 10k >= 0.5x its own at 3",
        DYNAMODB,
        GZIP,
        10_000,
        3,
        0.5,
    ).verdict,
    largest_is_a_hit_target,
    RatioTarget(
        "plain client, 3 categories: dynamodb-near req/s >= 0.9x simplecache",
        DYNAMODB_NEAR,
        PLAIN,
        3,
        3,
        0.9,
        baseline_contender=SIMPLECACHE,
    ).verdict,
    RatioTarget(
        "plain client, 3 categories: dynamodb-near req/s >= 1.0x cached-view (@cache.cached)",
        DYNAMODB_NEAR,
        PLAIN,
        3,
        3,
        1.0,
        baseline_contender=CACHED_VIEW,
    ).verdict,
)


def judge(sizes: Sizes) -> list[Verdict]:
    """Every target the run measured."""
    verdicts = (target(sizes) for target in TARGETS)
    return [verdict for verdict in verdicts if verdict is not None]


# --- the whole run ------------------------------------------------------------------------


def run_scale(
    stage: Stage,
    contenders: Sequence[Contender],
    wrk: str,
    settings: ScaleSettings,
    programs: Programs,
    progress: Progress,
) -> dict[str, Any]:
    """Every size in turn (smallest first), then the targets: the result document's body."""
    started = time.perf_counter()
    sizes = {
        str(categories): run_size(
            stage, contenders, categories, wrk, settings, programs, progress, first=index == 0
        )
        for index, categories in enumerate(settings.sizes)
    }
    targets = judge(sizes)
    return {
        "schema_version": SCHEMA_VERSION,
        "parameters": {
            **asdict(settings),
            "path": CATEGORIES_PATH,
            "wrk_threads": min(WRK_THREADS, settings.connections),
        },
        "contenders": {contender.name: contender.label for contender in contenders},
        "clients": {client.name: client.label for client in CLIENTS},
        "sizes": sizes,
        "targets": targets,
        "all_targets_met": bool(targets) and all(target["met"] for target in targets),
        "measured_seconds": round(time.perf_counter() - started, 1),
    }
