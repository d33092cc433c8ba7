"""``python -m scripts.reference_docs``: the reference pages' tables, written from the code.

The settings (``ecommerce/config.py``'s ``DEFAULTS`` and ``REQUIRED_SETTINGS``, the
DynamoDB backend's ``SETTINGS``), the Prometheus metrics (``ecommerce/metrics.py``),
the ``make`` targets (the Makefile's ``## `` lines, as ``make help`` shows them), the
``flask`` commands (their click definitions) and the HTTP API (the OpenAPI document
``/openapi.json`` serves) each have a page under ``docs/reference/``. The
parts of those pages that restate the code sit between ``<!-- generated:<name> -->``
and ``<!-- /generated:<name> -->`` markers and are written here, so a default, a
check, a metric or a route changed in the code changes the page with it; the prose
around them is the page's own. ``--check`` writes nothing and exits 1 naming each
page whose blocks differ (``make lint``; ``tests/project/test_docs.py`` asserts the
same), so a checked-in page cannot drift from the code.

What a setting means is the one thing the code does not say in a form a reader can
use (its comments are for maintainers), so :data:`SETTING_MEANINGS` holds it here,
and a setting the code gains without a meaning stops the generator with its name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import click
from prometheus_client.metrics import MetricWrapperBase

from cache_backends.cli import cache_cli
from cache_backends.dynamodb import settings as dynamodb_settings
from devtools import REPOSITORY_ROOT
from ecommerce import metrics
from ecommerce.config import DEFAULTS, REQUIRED_SETTINGS
from ecommerce.database import init_db_command
from ecommerce.openapi import openapi_document

REFERENCE_DIR = REPOSITORY_ROOT / "docs" / "reference"
MAKEFILE = REPOSITORY_ROOT / "Makefile"
REGENERATE = "run python -m scripts.reference_docs"

#: What each setting is for, as its reader needs it. Defaults and checks come from
#: the code; none is restated here.
SETTING_MEANINGS: dict[str, str] = {
    "CACHE_TYPE": "Flask-Caching's backend; `cache_backends.dynamodb.DynamoDBCache` for "
    "DynamoDB, shared by every process and instance",
    "CACHE_DEFAULT_TIMEOUT": "seconds, for entries stored without a timeout",
    "CACHE_KEY_PREFIX": "prefix of every key; `flask cache clear` removes only this prefix",
    "CACHE_NEAR_TTL": "seconds (a float) each process answers from memory what it last read "
    "from or wrote to the shared cache; other processes see a write within it, the writer "
    "at once; `0` = off; ignored with SimpleCache",
    "CACHE_NEAR_TTL_WHILE_LISTENING": "seconds a worker's copy of the list may live instead "
    "while the instance's PostgreSQL change listener is connected: every committed change "
    "ends it at once, so this bounds only what reaches the cache without one (a stale mark, "
    "a repair); ignored below `CACHE_NEAR_TTL`, on SQLite, and while the listener is down",
    "CATEGORIES_CACHE_TTL": "seconds; each entry lives 90 to 100 % of it (jitter)",
    "CATEGORIES_CACHE_STRATEGY": "what a write does to the cached list after its commit "
    "([caching strategies](../explanation/caching-strategies.md))",
    "CATEGORIES_CACHE_STALE_WHILE_REVALIDATE": "seconds past the TTL served as `STALE` while "
    "one refresh runs; `0` = off",
    "CATEGORIES_CACHE_STALE_IF_ERROR": "seconds each process keeps serving the list it holds, "
    "as `STALE`, while the cache fails, as long as the database's version (checked every "
    "reconcile interval) has not moved past it; `0` = load on every such read",
    "CATEGORIES_CACHE_LEASE_SECONDS": "how long the right to reload lasts, and the longest a "
    "request waits for another's load; longer than a load",
    "CATEGORIES_CACHE_RECONCILE_SECONDS": "seconds between reconciles of the cached list "
    "against the database's version (one process per instance); the bound on how long any "
    "failure leaves an older list served; a fraction is allowed; `0` = off",
    "CATALOGUE_EVENTS_DIR": "the folder one instance's workers share to elect the process "
    "that runs the reconciler and, on PostgreSQL, the change listener, and to pass on the "
    "version it heard; one per instance; empty: the app's instance folder",
    "DB_LATENCY_MS": "simulated slow database on the category list query",
    "SQLALCHEMY_DATABASE_URI": "SQLite (a relative path lands in the instance folder), or "
    "PostgreSQL: `postgresql+psycopg://user:password@host:5432/db` (driver: "
    "`pip install -e '.[postgres]'`)",
    "DATABASE_POOL_SIZE": "connections each worker keeps open (not SQLite)",
    "DATABASE_MAX_OVERFLOW": "more a worker may open under a burst; the fleet's budget: "
    "[the deploy guide](../deploy.md#database-connections-the-budget)",
    "DATABASE_POOL_TIMEOUT": "seconds a request waits for a free connection, then 503",
    "DATABASE_STATEMENT_TIMEOUT_MS": "PostgreSQL cancels a longer statement (503); `0` = no "
    "limit; not for `init-db`'s migrations",
    "MAX_CONTENT_LENGTH": "bytes; a larger body gets 413",
    "ADMIN_TOKEN": "POST, PATCH and DELETE need `Authorization: Bearer <token>`; a JSON list "
    "of tokens while rotating; unset: writes are refused (403)",
    "PROXY_FIX_X_FOR": "trusted proxy hops for `X-Forwarded-For` (Werkzeug's ProxyFix); the "
    "deploy sets `1`",
    "PROXY_FIX_X_PROTO": "trusted proxy hops for `X-Forwarded-Proto`",
    "PROXY_FIX_X_HOST": "trusted proxy hops for `X-Forwarded-Host`",
    "LOG_LEVEL": "the app's own loggers; `WARNING` drops the per-request lines",
    "LOG_FORMAT": "`json`: one object per line on stdout; `text`: for a terminal",
    "CACHE_DYNAMODB_TABLE": "the cache table",
    "CACHE_DYNAMODB_REGION": "the table's AWS region; unset: the AWS chain (`AWS_REGION`, "
    "`AWS_DEFAULT_REGION`, the profile, the EC2 instance's)",
    "CACHE_DYNAMODB_ENDPOINT_URL": "e.g. DynamoDB Local's URL; unset: AWS",
    "CACHE_DYNAMODB_CREATE_TABLE": "create the table at start-up (local runs only)",
    "CACHE_DYNAMODB_SIGNING_KEY": "the HMAC key entries are signed with: **required** with "
    "DynamoDB (falls back to `SECRET_KEY`), the same on every instance",
    "CACHE_DYNAMODB_OLD_SIGNING_KEYS": "keys still accepted on reads while rotating: a JSON "
    "list, or one key ([rotate the signing key](../how-to/rotate-signing-keys.md))",
    "CACHE_DYNAMODB_CONSISTENT_READ": "strongly consistent reads: a write anywhere is read "
    "next anywhere",
    "CACHE_DYNAMODB_MAX_VALUE_BYTES": "the largest value stored, after compression; larger is "
    "refused and logged",
    "CACHE_DYNAMODB_BODY_COPIES": "copies of each list body, each instance reading one at "
    "random: a change's burst of body reads is spread over as many items",
    "CACHE_DYNAMODB_CONNECT_TIMEOUT": "seconds",
    "CACHE_DYNAMODB_READ_TIMEOUT": "seconds (writes, `get_many`, admin calls)",
    "CACHE_DYNAMODB_GET_TIMEOUT": "seconds, connect and read, for `get`/`has` on the request "
    "path; tried once, the database being the fallback",
    "CACHE_DYNAMODB_WRITE_TIMEOUT": "seconds, connect and read, for a cache write on the "
    "request path; tried once, what does not land is owed and retried in the background",
    "CACHE_DYNAMODB_MAX_RETRIES": "botocore retries per call (standard mode)",
    "CACHE_DYNAMODB_MAX_POOL": "HTTP connections kept per process (more are opened, not "
    "kept, under bursts)",
    "CACHE_DYNAMODB_BREAKER_FAILURES": "consecutive failures that open the circuit; `0` = off",
    "CACHE_DYNAMODB_BREAKER_COOLDOWN": "seconds the circuit stays open before one probe",
}

#: Values that make the checks speak: each check answers what it refused, in its own
#: words ("must be an integer >= 0"), and those words are the table's "accepts" column.
CHECK_PROBES: tuple[Any, ...] = (object(), "", [])

#: What a table shows where there is nothing (no labels, no body).
EMPTY_CELL = "\N{EN DASH}"

#: click wraps help text at this width, whatever the terminal the generator runs in.
HELP_WIDTH = 88


# -- configuration ------------------------------------------------------------------


def _default(value: Any) -> str:
    """A default as it is written in a FLASK_ variable (JSON), or "unset"."""
    if value is None:
        return "unset"
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"


def _accepts(check: Callable[[Any], str | None]) -> str:
    answers = (check(probe) for probe in CHECK_PROBES)
    return "; ".join(dict.fromkeys(answer for answer in answers if answer))


def _meaning(name: str) -> str:
    if name not in SETTING_MEANINGS:
        raise SystemExit(f"{name}: no meaning in scripts/reference_docs.py's SETTING_MEANINGS")
    return SETTING_MEANINGS[name]


def _settings_table(rows: Iterable[tuple[str, Any, Callable[[Any], str | None]]]) -> str:
    lines = ["| Setting | Default | Accepts | Meaning |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{name}` | {_default(default)} | {_accepts(check)} | {_meaning(name)} |"
        for name, default, check in rows
    ]
    return "\n".join(lines)


def app_settings_table() -> str:
    """The app's own settings and Flask-Caching's shared ones, in DEFAULTS' order."""
    return _settings_table((name, DEFAULTS[name], REQUIRED_SETTINGS[name]) for name in DEFAULTS)


def dynamodb_settings_table() -> str:
    """The backend's own settings (the shared ones are in the app's table)."""
    return _settings_table(
        (setting.name, setting.default, setting.check)
        for setting in dynamodb_settings.SETTINGS
        if not setting.shared
    )


def unused_meanings() -> set[str]:
    """Meanings of settings the code no longer has."""
    return set(SETTING_MEANINGS) - set(DEFAULTS) - dynamodb_settings.NAMES


# -- metrics ------------------------------------------------------------------------


# prometheus_client has no public accessor for a metric's definition (name, type, labels,
# help): these attributes are what its constructor stored.
def _exported_name(metric: MetricWrapperBase) -> str:
    """The name a scrape shows: prometheus_client adds ``_total`` to a counter's."""
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


def metrics_table() -> str:
    """Every metric ``ecommerce/metrics.py`` defines, in its order."""
    defined = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    lines = ["| Metric | Type | Labels | What it counts |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{_exported_name(metric)}` | {metric._type} | "
        f"{', '.join(f'`{label}`' for label in metric._labelnames) or EMPTY_CELL} | "
        f"{_cell(metric._documentation)} |"
        for metric in defined
    ]
    return "\n".join(lines)


# -- the flask commands -----------------------------------------------------------


def _commands() -> list[tuple[str, click.Command]]:
    """The app's own commands (``create_app`` registers these), as typed."""
    commands = [("init-db", init_db_command)]
    commands += [
        (f"{cache_cli.name} {name}", command)
        for name, command in sorted(cache_cli.commands.items())
    ]
    return commands


def cli_reference() -> str:
    sections = []
    for path, command in _commands():
        invocation = f"flask --app wsgi {path}"
        context = click.Context(
            command, info_name=invocation, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH
        )
        sections.append(f"### `{invocation}`\n\n```text\n{command.get_help(context)}\n```")
    return "\n\n".join(sections)


def _make_variable(makefile: str, name: str) -> str:
    """A Makefile variable's default (``NAME ?= value``), as ``make help`` shows it."""
    found = re.search(rf"^{name} *[?:]?= *(.*)$", makefile, re.MULTILINE)
    return found.group(1) if found else f"$({name})"


def make_targets_table() -> str:
    """The Makefile's targets and their ``## `` descriptions, as ``make help`` lists them."""
    makefile = MAKEFILE.read_text()
    lines = ["| Target | What it does |", "| --- | --- |"]
    for target, description in re.findall(r"^([a-z-]+):.*?## (.*)$", makefile, re.MULTILINE):
        shown = re.sub(
            r"\$\((\w+)\)", lambda variable: _make_variable(makefile, variable[1]), description
        )
        lines.append(f"| `make {target}` | {_cell(shown)} |")
    return "\n".join(lines)


# -- the HTTP API -------------------------------------------------------------------


def _resolve(document: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node``, or what its ``$ref`` points to within ``document``."""
    while "$ref" in node:
        target: Mapping[str, Any] = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _ref_name(node: Mapping[str, Any]) -> str | None:
    return node["$ref"].rsplit("/", 1)[1] if "$ref" in node else None


def _schema_summary(document: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """A schema in a few words: its component's name (linked) or its type and limits."""
    if name := _ref_name(schema):
        return f"[{name}](#{name.lower()})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "allOf" in schema:
        return " + ".join(_schema_summary(document, part) for part in schema["allOf"][:1])
    if schema.get("type") == "array":
        return f"array of {_schema_summary(document, schema['items'])}"
    words = [schema.get("type", "any")]
    if "enum" in schema:
        words.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    limits = {
        "minimum": ">=",
        "maximum": "<=",
        "minLength": "length >=",
        "maxLength": "length <=",
    }
    words += [f"{word} {schema[key]}" for key, word in limits.items() if key in schema]
    if "format" in schema:
        words.append(f"({schema['format']})")
    return " ".join(str(word) for word in words)


def _prose(text: str) -> str:
    """The document's text as Markdown shows it: ``<ADMIN_TOKEN>`` is not an HTML tag."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: str) -> str:
    """Text in one table cell: no line breaks, no column separator."""
    return _prose(re.sub(r"\s+", " ", text).replace("|", "\\|"))


def _operation(document: Mapping[str, Any], method: str, path: str, operation: dict) -> str:
    lines = [f"### `{method.upper()} {path}`", "", _prose(operation["summary"]) + "."]
    if "description" in operation:
        lines += ["", _prose(operation["description"])]
    if operation.get("security"):
        lines += ["", "Needs `Authorization: Bearer <ADMIN_TOKEN>`."]
    parameters = [_resolve(document, parameter) for parameter in operation.get("parameters", [])]
    if parameters:
        lines += ["", "| Parameter | In | Description |", "| --- | --- | --- |"]
        lines += [
            f"| `{p['name']}` | {p['in']} | {_cell(p.get('description', ''))} |" for p in parameters
        ]
    if "requestBody" in operation:
        body = _resolve(document, operation["requestBody"])
        contents = ", ".join(
            f"`{mimetype}` {_schema_summary(document, content['schema'])}"
            for mimetype, content in body["content"].items()
        )
        lines += ["", f"Body: {contents}."]
    lines += ["", "| Status | Meaning | Body | Headers |", "| --- | --- | --- | --- |"]
    for status, response in operation["responses"].items():
        response = _resolve(document, response)
        content = ", ".join(
            f"`{mimetype}` {_schema_summary(document, media['schema'])}"
            for mimetype, media in response.get("content", {}).items()
        )
        headers = ", ".join(f"`{header}`" for header in response.get("headers", {}))
        lines.append(
            f"| {status} | {_cell(response['description'])} | {content or EMPTY_CELL} | "
            f"{headers or EMPTY_CELL} |"
        )
    return "\n".join(lines)


def _schema_section(document: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> str:
    lines = [f"### {name}", ""]
    if "description" in schema:
        lines += [_prose(schema["description"]), ""]
    properties = schema.get("properties")
    if not properties:
        return "\n".join([*lines, _schema_summary(document, schema) + "."])
    required = set(schema.get("required", ()))
    lines += ["| Field | Type | Required | Description |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{field}` | {_schema_summary(document, field_schema)} | "
        f"{'yes' if field in required else 'no'} | "
        f"{_cell(field_schema.get('description', ''))} |"
        for field, field_schema in properties.items()
    ]
    return "\n".join(lines)


def http_api_reference() -> str:
    """The routes, then the shapes and headers they refer to, from ``/openapi.json``."""
    document = openapi_document()
    components = document["components"]
    sections = [_prose(document["info"]["description"])]
    for tag in document["tags"]:
        sections.append(f"## {tag['name'].capitalize()}\n\n{tag['description']}")
        sections += [
            _operation(document, method, path, operation)
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if tag["name"] in operation["tags"]
        ]
    sections.append("## Shapes")
    sections += [
        _schema_section(document, name, schema) for name, schema in components["schemas"].items()
    ]
    header_rows = [
        f"| `{name}` | {_cell(header['description'])} |"
        for name, header in components["headers"].items()
    ]
    sections.append("## Headers\n\n| Header | Meaning |\n| --- | --- |\n" + "\n".join(header_rows))
    return "\n\n".join(sections)


# -- the pages ----------------------------------------------------------------------

#: page -> block name -> what writes it.
GENERATED_BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "configuration.md": {
        "app-settings": app_settings_table,
        "dynamodb-settings": dynamodb_settings_table,
    },
    "metrics.md": {"metrics": metrics_table},
    "cli.md": {"make-targets": make_targets_table, "flask-commands": cli_reference},
    "http-api.md": {"http-api": http_api_reference},
}


def _markers(block: str) -> tuple[str, str]:
    return f"<!-- generated:{block} -->", f"<!-- /generated:{block} -->"


def rendered(page: Path, blocks: Mapping[str, Callable[[], str]]) -> str:
    """``page``'s text with each generated block written afresh."""
    text = page.read_text()
    for block, render in blocks.items():
        start, end = _markers(block)
        if start not in text or end not in text:
            raise SystemExit(f"{page}: the markers of generated block {block!r} are missing")
        before, rest = text.split(start, 1)
        text = f"{before}{start}\n{render()}\n{end}{rest.split(end, 1)[1]}"
    return text


def stale_pages(reference_dir: Path = REFERENCE_DIR) -> dict[Path, str]:
    """Each page whose generated blocks differ from the code's, with what they should be."""
    pages = {reference_dir / name: blocks for name, blocks in GENERATED_BLOCKS.items()}
    fresh = {page: rendered(page, blocks) for page, blocks in pages.items()}
    return {page: text for page, text in fresh.items() if text != page.read_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a page is out of date"
    )
    arguments = parser.parse_args(argv)
    if unused := unused_meanings():
        print(f"SETTING_MEANINGS names settings the code lacks: {sorted(unused)}", file=sys.stderr)
        return 1
    stale = stale_pages()
    for page, text in stale.items():
        relative = page.relative_to(REPOSITORY_ROOT)
        if arguments.check:
            print(f"{relative} is out of date: {REGENERATE}", file=sys.stderr)
        else:
            page.write_text(text)
            print(f"wrote {relative}")
    return 1 if arguments.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
