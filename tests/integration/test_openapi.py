"""GET /openapi.json is valid OpenAPI 3.1, and the live app answers only as it says.

schemathesis fuzzes every operation in-process (WSGI, no server), with the admin
token so writes get past 401, and fails on any 5xx or on a status, content type,
header or body the document does not describe. Each operation runs on an app of
its own (a fresh SQLite file, SimpleCache) from tests/conftest.py.

The operations are collected from ``openapi_document()`` itself rather than by
``schemathesis.pytest.from_fixture``, which fails on pytest 9.2 (it sets the
``Node._nodeid`` that pytest 9.2 replaced); the test then points each case at its
app. ``test_the_served_document_*`` checks that the app serves that same document.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from openapi_spec_validator import OpenAPIV31SpecValidator
from werkzeug.test import TestResponse

from ecommerce.config import MAX_REQUEST_BODY_BYTES
from ecommerce.openapi import (
    ADMIN_TOKEN_SCHEME,
    DOCUMENT_MAX_AGE_SECONDS,
    OPENAPI_DOCUMENT_PATH,
    openapi_document,
)
from tests.support.app import TEST_ADMIN_TOKEN, recorded_sql

#: Per operation and generation phase; enough for every status of every operation
#: to show up while the whole module stays near ten seconds on two cores.
MAX_EXAMPLES_PER_OPERATION = 100
#: Create, rename, delete, read again: sequences a single request cannot reach
#: (a deleted category must be a 404, a created one must be readable).
MAX_STATEFUL_SCENARIOS = 30
STEPS_PER_SCENARIO = 10

#: schemathesis sends requests' default ``Accept-Encoding: gzip, deflate``, and its
#: WSGI transport hands the body over as sent, so a gzip body would fail to parse as
#: JSON: its requests ask for identity. tests/integration/test_representation.py checks gzip.
IDENTITY_ENCODING = {"Accept-Encoding": "identity"}
#: Werkzeug's ``<int:category_id>``, OpenAPI's ``{id}``.
URL_VARIABLE = re.compile(r"<[^>]+>")

schemathesis.checks.load_all_checks()  # makes the built-in checks attributes of the module
#: What a response alone can be checked for; the other checks need the request too.
DOCUMENTED_RESPONSE_CHECKS = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "auth": {"openapi": {ADMIN_TOKEN_SCHEME: {"bearer": TEST_ADMIN_TOKEN}}},
        "checks": {
            # "Schema-valid" names the app rightly refuses: blank once trimmed, invisible
            # or unassigned characters, over the length once normalized. JSON Schema
            # cannot say those rules (the document says them in words), so a 400 for a
            # string the schema allows is not a bug. Every other check stays on.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES_PER_OPERATION,
    deadline=None,
    # No .hypothesis/ folder in the working tree; a failure prints its reproduction.
    database=None,
    # One app per operation, shared by its examples on purpose: writes pile up in
    # its database as they would in production.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# Hypothesis (through schemathesis, already while collecting) caches what it reads in
# source files under ./.hypothesis: not in the working tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ecommerce-tests-hypothesis")

schema = schemathesis.openapi.from_dict(openapi_document(), config=FUZZ_CONFIG)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented(case: schemathesis.Case, app: Flask) -> None:
    # Both: some checks send follow-up requests of their own (ignored_auth repeats a
    # write without the token) through the schema's app, not the operation's.
    case.operation.app = case.operation.schema.app = app
    case.call_and_validate(headers=IDENTITY_ENCODING)


def test_create_rename_delete_sequences_answer_as_documented(app: Flask) -> None:
    """Follows the document's links from a 201 to the new category's GET, PATCH, DELETE."""
    live_schema = schemathesis.openapi.from_wsgi(OPENAPI_DOCUMENT_PATH, app, config=FUZZ_CONFIG)

    class FromTheSeedCatalogue(live_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            """Each scenario starts from the seed: Hypothesis replays scenarios to shrink
            them, and a replay that met the last one's categories (a 409 instead of a
            201) would take another path and be reported as flaky."""
            _reset_to_the_seed_catalogue(app)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": IDENTITY_ENCODING}

    FromTheSeedCatalogue.run(
        settings=settings(
            FUZZ_SETTINGS,
            max_examples=MAX_STATEFUL_SCENARIOS,
            stateful_step_count=STEPS_PER_SCENARIO,
        )
    )


def _reset_to_the_seed_catalogue(app: Flask) -> None:
    """Empty database, then init-db: the seed categories, and the cached list forgotten."""
    result = app.test_cli_runner().invoke(args=["init-db", "--reset", "--yes"])
    assert result.exit_code == 0, result.output


# --- responses no generated request can provoke: still checked against the document ---


def assert_documented(response: TestResponse, method: str, path: str) -> None:
    """``response`` has a status, content type, headers and body the document gives."""
    operation = schema[path][method]
    path_parameters = {"id": 1} if "{id}" in path else None  # the value is not checked
    case = operation.Case(path_parameters=path_parameters)
    case.validate_response(response, checks=DOCUMENTED_RESPONSE_CHECKS)


def test_an_unreachable_database_gets_the_documented_503(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """SQLite cannot create a file in a directory that does not exist: a dead database."""
    app = make_app(
        init_db=False,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'no-such-directory' / 'db.sqlite'}",
    )

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert_documented(response, "GET", "/readyz")


def test_a_database_without_the_schema_gets_the_documented_503_on_every_route(
    make_app: Callable[..., Flask],
) -> None:
    """The database answers, but with no tables: each route that queries it says 503."""
    client = make_app(init_db=False).test_client()

    for method, path, url, body in [
        ("GET", "/categories", "/categories", None),
        ("POST", "/categories", "/categories", {"name": "Toys"}),
        ("GET", "/categories/{id}", "/categories/1", None),
        ("PATCH", "/categories/{id}", "/categories/1", {"name": "Toys"}),
        ("DELETE", "/categories/{id}", "/categories/1", None),
    ]:
        response = client.open(url, method=method, json=body)
        assert response.status_code == 503, (method, url)
        assert response.headers["Retry-After"] == "5"
        assert_documented(response, method, path)


def test_disabled_writes_get_the_documented_403(make_app: Callable[..., Flask]) -> None:
    app = make_app(ADMIN_TOKEN=None)

    response = app.test_client().post("/categories", json={"name": "Toys"})

    assert response.status_code == 403
    assert_documented(response, "POST", "/categories")


def test_an_oversized_body_gets_the_documented_413(client: FlaskClient) -> None:
    oversized_name = "x" * MAX_REQUEST_BODY_BYTES

    response = client.post("/categories", json={"name": oversized_name})

    assert response.status_code == 413
    assert_documented(response, "POST", "/categories")


def test_the_served_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    response = client.get(OPENAPI_DOCUMENT_PATH)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    assert document == openapi_document()
    assert document["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(document).validate()  # raises, naming the first problem
    assert {"/categories", "/categories/{id}"} <= document["paths"].keys()
    assert set(document["paths"]["/categories/{id}"]) == {"get", "patch", "delete"}


def test_every_route_of_the_app_is_documented(app: Flask) -> None:
    """A new view without a line in the document fails here, not in a client."""
    document_paths = openapi_document()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = URL_VARIABLE.sub("{id}", rule.rule)  # the only variable: a category id
        assert path in document_paths, f"{rule.rule} is not in the OpenAPI document"
        documented = {method.upper() for method in document_paths[path]}
        assert rule.methods - {"HEAD", "OPTIONS"} <= documented, rule.rule


def test_the_document_needs_no_database_nor_cache_and_may_be_kept(
    make_app: Callable[..., Flask],
) -> None:
    """Served from a cache whose every call raises: any cache use would be a 500."""
    app = make_app(CACHE_TYPE="tests.support.caches.RaisingCache")
    client = app.test_client()

    with recorded_sql(app) as statements:
        first = client.get(OPENAPI_DOCUMENT_PATH)
        again = client.get(OPENAPI_DOCUMENT_PATH, headers={"If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200
    assert statements == []
    assert first.cache_control.public
    assert first.cache_control.max_age == DOCUMENT_MAX_AGE_SECONDS
    assert again.status_code == 304
    assert again.data == b""


def test_the_document_goes_gzipped_to_a_client_that_accepts_it(client: FlaskClient) -> None:
    """Stored compressed once per process; either coding's tag revalidates to a 304."""
    plain = client.get(OPENAPI_DOCUMENT_PATH)
    compressed = client.get(OPENAPI_DOCUMENT_PATH, headers={"Accept-Encoding": "gzip"})

    assert compressed.headers["Content-Encoding"] == "gzip"
    assert compressed.headers["Vary"] == plain.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(compressed.data) == plain.data
    assert len(compressed.data) < len(plain.data) // 4
    assert compressed.headers["ETag"] != plain.headers["ETag"]
    assert compressed.cache_control.max_age == DOCUMENT_MAX_AGE_SECONDS
    for held in (plain.headers["ETag"], compressed.headers["ETag"]):
        again = client.get(
            OPENAPI_DOCUMENT_PATH, headers={"Accept-Encoding": "gzip", "If-None-Match": held}
        )
        assert (again.status_code, again.headers["ETag"]) == (304, held)


def test_the_document_has_a_page_a_person_can_read(client: FlaskClient) -> None:
    """``/docs``: Redoc renders ``/openapi.json`` (by a relative URL, so a path prefix keeps
    working); its script is pinned by Subresource Integrity, and the page links to the
    document for a reader without JavaScript."""
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<redoc spec-url="openapi.json">' in page
    assert '<a href="openapi.json">' in page
    script = re.search(r'<script type="module" src="([^"]+)" integrity="([^"]+)"', page)
    assert script and script.group(1).startswith("https://cdn.jsdelivr.net/npm/redoc@")
    assert re.fullmatch(r"sha384-[A-Za-z0-9+/]{64}", script.group(2))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
