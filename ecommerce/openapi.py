"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``, and
rendered for a person at ``GET /docs``.

Hand-kept, as Python data in this one module, rather than generated:

- apispec's Flask plugin finds the paths but not the rest: every body, status and
  header would still be hand-written YAML, scattered through the views' docstrings
  where no linter reads it;
- flask-smorest (or any marshmallow-based framework) would mean rewriting the views
  and their validation, and the rules a name must follow (NFKC, trimming, no
  invisible characters, a 409 that names the stored spelling, see
  ``categories/names.py``) do not fit a schema library's field types anyway.

A hand-kept document drifts unless something checks it, so tests/integration/test_openapi.py
has schemathesis fuzz the live app against it in ``make test``: any 5xx, or a
status, content type, header or body the document does not describe, fails the
build. Python rather than YAML so the limits (name length, the largest id, the
body size, header names, the X-Cache values) are imported from the code that
enforces them instead of copied, and no YAML parser or package data is needed at
run time.

The document depends on nothing per app or per request (no ``servers``: clients
resolve paths against wherever they fetched it), so it is built, serialized,
gzipped and tagged once per process (``categories/representation.py``, as the
cached list is), and serving it reads neither the database nor the cache and
sends stored bytes: gzip (about a tenth) to a client that accepts it.
Flask's automatic HEAD and OPTIONS answers are left out, as is usual.
"""

from __future__ import annotations

import functools
import json
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, request

from cache_backends.loader import CacheStatus
from ecommerce.auth import BEARER_SCHEME
from ecommerce.categories.models import MAX_CATEGORY_ID
from ecommerce.categories.names import NAME_MAX_LENGTH
from ecommerce.categories.representation import (
    ACCEPT_ENCODING,
    Representation,
    negotiated_response,
)
from ecommerce.config import MAX_REQUEST_BODY_BYTES
from ecommerce.errors import GENERIC_PROBLEM_TYPE, PROBLEM_JSON_MIMETYPE
from ecommerce.observability import CACHE_STATUS_HEADER
from ecommerce.request_observation import MAX_REQUEST_ID_LENGTH, REQUEST_ID_HEADER

bp = Blueprint("openapi", __name__)

OPENAPI_DOCUMENT_PATH = "/openapi.json"
OPENAPI_PAGE_PATH = "/docs"
#: Redoc renders the document in the reader's browser. The bundle (2.3 MB) comes from
#: jsDelivr, which serves npm's published files byte for byte, rather than from the wheel,
#: pinned by Subresource Integrity: a changed file is refused by the browser, not run. To
#: move it: ``npm pack redoc@<version>``, then
#: ``openssl dgst -sha384 -binary package/bundles/redoc.standalone.js | openssl base64 -A``.
REDOC_SCRIPT_URL = "https://cdn.jsdelivr.net/npm/redoc@3.0.1/bundles/redoc.standalone.js"
REDOC_SCRIPT_INTEGRITY = "sha384-j07qRKHNNmcwU1/Y1elJc7pDLHXP/QfbQXTtSkbOJ7uYGJikqAzsFVbY2zR9FqOT"
HTML_MIMETYPE = "text/html"
OPENAPI_VERSION = "3.1.0"
#: The distribution whose version the document carries: the API changes with releases.
DISTRIBUTION_NAME = "ecommerce-dynamodb-cache"
#: The document changes only with a deploy: clients and CDNs may keep it this long,
#: then revalidate with its ETag (a 304, no body).
DOCUMENT_MAX_AGE_SECONDS = 3600

JSON_MIMETYPE = "application/json"
#: Prometheus' exposition format; the version parameter follows prometheus_client's.
METRICS_MIMETYPE = "text/plain"
#: The name every write operation's ``security`` requirement refers to.
ADMIN_TOKEN_SCHEME = "adminToken"

CATEGORIES_TAG = "categories"
OPERATIONS_TAG = "operations"

#: What an answer a client may keep carries besides its body (categories/views.py).
REVALIDATION_HEADERS = ("ETag", "Cache-Control")
#: What a negotiated answer (the list, this document) carries besides: it depends on
#: Accept-Encoding, and names the coding when it is not identity.
NEGOTIATED_HEADERS = (*REVALIDATION_HEADERS, "Vary")
CONTENT_ENCODING_HEADER = "Content-Encoding"
#: The write errors no input can avoid: no token, a wrong one, or writes disabled.
AUTH_PROBLEMS = (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
#: Any route that queries the database: down, too slow, or out of pooled connections.
DATABASE_UNAVAILABLE = HTTPStatus.SERVICE_UNAVAILABLE
#: What a write with a body can be refused for, before any database work.
BODY_PROBLEMS = (
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
)


# --- building blocks ----------------------------------------------------------------


def _ref(section: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{section}/{name}"}


def _content(mimetype: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {mimetype: {"schema": schema}}


def _response(
    description: str,
    *,
    content: dict[str, Any] | None = None,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A response that, like every answer of the app, carries ``X-Request-ID``."""
    response: dict[str, Any] = {
        "description": description,
        "headers": {name: _ref("headers", name) for name in (REQUEST_ID_HEADER, *headers)},
    }
    if content is not None:
        response["content"] = content
    return response


def _problem(
    status: HTTPStatus, description: str, *, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A problem+json response whose ``status`` member is pinned to ``status``."""
    schema = {
        "allOf": [
            _ref("schemas", "Problem"),
            {"properties": {"status": {"const": status.value}}},
        ]
    }
    return _response(
        description,
        content=_content(PROBLEM_JSON_MIMETYPE, schema),
        headers=("Cache-Control", *headers),
    )


def _response_name(status: HTTPStatus) -> str:
    return status.phrase.replace(" ", "")


def _problems(*statuses: HTTPStatus) -> dict[str, Any]:
    """References to the shared problem responses, keyed by status code."""
    return {str(status.value): _ref("responses", _response_name(status)) for status in statuses}


def _not_modified(headers: tuple[str, ...] = REVALIDATION_HEADERS) -> dict[str, Any]:
    return _response(
        "The client's copy (If-None-Match) is still current: no body.", headers=headers
    )


def _json_response(
    description: str, schema_name: str, *, headers: tuple[str, ...] = ()
) -> dict[str, Any]:
    return _response(
        description, content=_content(JSON_MIMETYPE, _ref("schemas", schema_name)), headers=headers
    )


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    admin_only: bool = False,
    parameters: tuple[str, ...] = (),
    request_body: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [_ref("parameters", name) for name in (*parameters, "RequestId")],
        "responses": responses,
    }
    if admin_only:
        operation["security"] = [{ADMIN_TOKEN_SCHEME: []}]
    if description is not None:
        operation["description"] = description
    if request_body is not None:
        operation["requestBody"] = _ref("requestBodies", request_body)
    return operation


# --- the paths ----------------------------------------------------------------------


def _links_to_the_created_category() -> dict[str, Any]:
    """What a client can do next with a 201's category; schemathesis follows these too."""
    new_id = {"id": "$response.body#/id"}
    return {
        "GetCreatedCategory": {"operationId": "getCategory", "parameters": new_id},
        "RenameCreatedCategory": {"operationId": "renameCategory", "parameters": new_id},
        "DeleteCreatedCategory": {"operationId": "deleteCategory", "parameters": new_id},
    }


def _category_paths() -> dict[str, Any]:
    return {
        "/categories": {
            "get": _operation(
                "listCategories",
                "Every category, in id order",
                CATEGORIES_TAG,
                {
                    "200": _json_response(
                        "The list, from the cache or the database (see X-Cache); "
                        "gzip-encoded when the client accepts it (Content-Encoding).",
                        "CategoryList",
                        headers=(*NEGOTIATED_HEADERS, CONTENT_ENCODING_HEADER, CACHE_STATUS_HEADER),
                    ),
                    "304": _not_modified((*NEGOTIATED_HEADERS, CACHE_STATUS_HEADER)),
                    **_problems(DATABASE_UNAVAILABLE),
                },
                parameters=("IfNoneMatch",),
            ),
            "post": _operation(
                "createCategory",
                "Add a category",
                CATEGORIES_TAG,
                {
                    "201": {
                        **_json_response(
                            "Created; Location is the new category's URL.",
                            "Category",
                            headers=("Location", "Cache-Control"),
                        ),
                        "links": _links_to_the_created_category(),
                    },
                    **_problems(
                        *BODY_PROBLEMS, *AUTH_PROBLEMS, HTTPStatus.CONFLICT, DATABASE_UNAVAILABLE
                    ),
                },
                admin_only=True,
                request_body="CategoryName",
            ),
        },
        "/categories/{id}": {
            "get": _operation(
                "getCategory",
                "One category, read from the database (never a cached list that may lag)",
                CATEGORIES_TAG,
                {
                    "200": _json_response(
                        "The category.", "Category", headers=REVALIDATION_HEADERS
                    ),
                    "304": _not_modified(),
                    **_problems(HTTPStatus.NOT_FOUND, DATABASE_UNAVAILABLE),
                },
                parameters=("CategoryId", "IfNoneMatch"),
            ),
            "patch": _operation(
                "renameCategory",
                "Rename a category",
                CATEGORIES_TAG,
                {
                    "200": _json_response(
                        "The category as renamed.", "Category", headers=("Cache-Control",)
                    ),
                    **_problems(
                        *BODY_PROBLEMS,
                        *AUTH_PROBLEMS,
                        HTTPStatus.NOT_FOUND,
                        HTTPStatus.CONFLICT,
                        DATABASE_UNAVAILABLE,
                    ),
                },
                admin_only=True,
                parameters=("CategoryId",),
                request_body="CategoryName",
                description="A category may change the case or width of its own name.",
            ),
            "delete": _operation(
                "deleteCategory",
                "Delete a category",
                CATEGORIES_TAG,
                {
                    "204": _response("Deleted.", headers=("Cache-Control",)),
                    **_problems(*AUTH_PROBLEMS, HTTPStatus.NOT_FOUND, DATABASE_UNAVAILABLE),
                },
                admin_only=True,
                parameters=("CategoryId",),
            ),
        },
    }


def _operations_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": _operation(
                "checkLiveness",
                "Liveness: answers while the process serves HTTP, whatever the DB or cache do",
                OPERATIONS_TAG,
                {"200": _json_response("The process is alive.", "Liveness")},
            )
        },
        "/readyz": {
            "get": _operation(
                "checkReadiness",
                "Readiness: the database answers; the cache is reported but never required",
                OPERATIONS_TAG,
                {
                    "200": _json_response("Ready to serve.", "Readiness"),
                    **_problems(HTTPStatus.SERVICE_UNAVAILABLE),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "Prometheus metrics of this process (of every worker under gunicorn)",
                OPERATIONS_TAG,
                {
                    "200": _response(
                        "Prometheus' text exposition format.",
                        content=_content(METRICS_MIMETYPE, {"type": "string"}),
                    )
                },
            )
        },
        OPENAPI_PAGE_PATH: {
            "get": _operation(
                "getApiPage",
                "This document as a page to read (Redoc, loaded by the browser)",
                OPERATIONS_TAG,
                {
                    "200": _response(
                        "An HTML page that renders /openapi.json.",
                        content=_content(HTML_MIMETYPE, {"type": "string"}),
                    )
                },
            )
        },
        OPENAPI_DOCUMENT_PATH: {
            "get": _operation(
                "getOpenApiDocument",
                "This document",
                OPERATIONS_TAG,
                {
                    "200": _response(
                        "The OpenAPI 3.1 document; gzip-encoded when the client accepts it.",
                        content=_content(JSON_MIMETYPE, {"type": "object"}),
                        headers=(*NEGOTIATED_HEADERS, CONTENT_ENCODING_HEADER),
                    ),
                    "304": _not_modified(NEGOTIATED_HEADERS),
                },
                parameters=("IfNoneMatch",),
            )
        },
    }


# --- the components -----------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    category_id = {"type": "integer", "minimum": 1, "maximum": MAX_CATEGORY_ID}
    return {
        "CategoryId": category_id,
        "Category": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": _ref("schemas", "CategoryId"),
                "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH},
            },
            "additionalProperties": False,
        },
        "CategoryList": {"type": "array", "items": _ref("schemas", "Category")},
        "CategoryName": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {
                    "type": "string",
                    # Not maxLength: the limit applies after normalization, which
                    # trims and may shorten, and JSON Schema cannot say that.
                    "minLength": 1,
                    "description": (
                        "Normalized to NFKC and trimmed, then it must be non-blank, at most "
                        f"{NAME_MAX_LENGTH} characters, and free of control, format, "
                        "unassigned and other invisible characters. Names that differ "
                        "only in case or width are the same category (409)."
                    ),
                }
            },
            "examples": [{"name": "Toys"}],
        },
        "Problem": {
            "description": "RFC 9457 problem details: every error has this shape.",
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri-reference",
                    "examples": [GENERIC_PROBLEM_TYPE],
                },
                "title": {"type": "string", "description": "The HTTP status phrase."},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "description": "What went wrong, for a person."},
            },
        },
        "Liveness": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "database", "schema", "cache"],
            "properties": {
                "status": {"const": "ready"},
                "database": {"const": "ok"},
                "schema": {
                    "type": "string",
                    "description": (
                        "The database's schema revision: this release's newest, or a later "
                        "release's (migrations keep the previous release working)."
                    ),
                },
                "schema_is_newer": {
                    "type": "boolean",
                    "description": "The schema is a later release's, served by this one.",
                },
                "cache": {
                    "type": "object",
                    "description": (
                        "The cache backend's own report (DynamoDB: table, status and "
                        'circuit state) or {"backend": CACHE_TYPE}.'
                    ),
                },
            },
        },
    }


def _problem_responses() -> dict[str, Any]:
    """The shared error responses, named after their status phrase (``NotFound``)."""
    reasons = {
        HTTPStatus.BAD_REQUEST: "The body is not JSON, not an object, or its name is refused.",
        HTTPStatus.UNAUTHORIZED: "No 'Authorization: Bearer <ADMIN_TOKEN>', or a wrong token.",
        HTTPStatus.FORBIDDEN: "Writes are disabled: the server has no ADMIN_TOKEN configured.",
        HTTPStatus.NOT_FOUND: "No category has this id.",
        HTTPStatus.CONFLICT: "Another category has this name (the detail names its spelling).",
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE: f"The body is over {MAX_REQUEST_BODY_BYTES} bytes.",
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE: "The body is not sent as application/json.",
        HTTPStatus.SERVICE_UNAVAILABLE: "The database is down, too slow "
        "(DATABASE_STATEMENT_TIMEOUT_MS) or out of pooled connections; nothing was changed. "
        "Retry after Retry-After seconds.",
    }
    extra_headers = {
        HTTPStatus.UNAUTHORIZED: ("WWW-Authenticate",),
        HTTPStatus.SERVICE_UNAVAILABLE: ("Retry-After",),
    }
    return {
        _response_name(status): _problem(status, why, headers=extra_headers.get(status, ()))
        for status, why in reasons.items()
    }


def _headers() -> dict[str, Any]:
    def header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "required": True, "schema": schema}

    return {
        REQUEST_ID_HEADER: header(
            "The client's X-Request-ID if it was sane, else a new one; every log line of "
            "the request carries it.",
            {"type": "string", "minLength": 1},
        ),
        "ETag": header(
            "A strong tag of the body: send it back as If-None-Match. Each content "
            "coding of one body has its own tag (RFC 9110, 8.8.3); either gets a 304.",
            {"type": "string", "pattern": '^"[^"]*"$'},
        ),
        "Vary": header(
            f"'{ACCEPT_ENCODING}': the body's coding follows the request's {ACCEPT_ENCODING}.",
            {"type": "string"},
        ),
        CONTENT_ENCODING_HEADER: {
            "description": (
                f"'gzip' when the client's {ACCEPT_ENCODING} accepts it and it makes the "
                "body smaller; absent for the identity body."
            ),
            "required": False,
            "schema": {"type": "string", "enum": ["gzip"]},
        },
        "Cache-Control": header(
            "Reads: 'no-cache' (keep, but revalidate: a write shows on the next read). "
            "Writes and errors: 'no-store'. This document: "
            f"'public, max-age={DOCUMENT_MAX_AGE_SECONDS}'.",
            {"type": "string"},
        ),
        CACHE_STATUS_HEADER: header(
            "Where the list came from: the cache (HIT, or STALE while one refresh "
            "reloads it) or the database (MISS).",
            {"type": "string", "enum": [status.value for status in CacheStatus]},
        ),
        "Location": header(
            "The new category's URL.", {"type": "string", "format": "uri-reference"}
        ),
        "WWW-Authenticate": header("The scheme writes need.", {"type": "string"}),
        "Retry-After": {
            "description": "Seconds to wait before retrying (requests; readiness has none).",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
    }


def _components() -> dict[str, Any]:
    return {
        "schemas": _schemas(),
        "responses": _problem_responses(),
        "headers": _headers(),
        "parameters": {
            "CategoryId": {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "An id outside the schema's range is a 404, like any unknown id.",
                "schema": _ref("schemas", "CategoryId"),
            },
            "IfNoneMatch": {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "An ETag from an earlier answer: a 304 with no body if unchanged.",
                "schema": {"type": "string"},
            },
            "RequestId": {
                "name": REQUEST_ID_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    f"Printable ASCII, at most {MAX_REQUEST_ID_LENGTH} characters; "
                    "anything else is replaced by a new id."
                ),
                "schema": {"type": "string"},
            },
        },
        "requestBodies": {
            "CategoryName": {
                "required": True,
                "content": _content(JSON_MIMETYPE, _ref("schemas", "CategoryName")),
            }
        },
        "securitySchemes": {
            ADMIN_TOKEN_SCHEME: {
                "type": "http",
                "scheme": BEARER_SCHEME,
                "description": "One of the server's ADMIN_TOKEN secrets.",
            }
        },
    }


def _api_version() -> str:
    try:
        return version(DISTRIBUTION_NAME)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def openapi_document() -> dict[str, Any]:
    """The whole document, as a new dict each call (callers may change theirs)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Categories API",
            "version": _api_version(),
            "description": (
                "Product categories, read through a cache (SimpleCache or DynamoDB). "
                "Every error is application/problem+json (RFC 9457), including a 405 "
                "with an Allow header for a method a path does not have. Writes need "
                "'Authorization: Bearer <ADMIN_TOKEN>'."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": CATEGORIES_TAG, "description": "The catalogue's categories."},
            {"name": OPERATIONS_TAG, "description": "Probes, metrics and this document."},
        ],
        "paths": {**_category_paths(), **_operations_paths()},
        "components": _components(),
    }


@functools.cache
def _document_representation() -> Representation:
    """Built, serialized, gzipped and tagged once per process: serving it costs nothing."""
    return Representation.of_body(json.dumps(openapi_document(), sort_keys=True).encode())


@bp.get(OPENAPI_DOCUMENT_PATH)
def get_openapi_document() -> Response:
    response = negotiated_response(_document_representation(), request)
    response.cache_control.public = True
    response.cache_control.max_age = DOCUMENT_MAX_AGE_SECONDS
    return response


#: The page asks for the document by a relative URL, so it works under a path prefix too;
#: without JavaScript (or the CDN) it still links to the document itself.
API_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Categories API</title>
</head>
<body>
<redoc spec-url="{OPENAPI_DOCUMENT_PATH.lstrip("/")}"></redoc>
<noscript>The API's OpenAPI 3.1 document:
<a href="{OPENAPI_DOCUMENT_PATH.lstrip("/")}">{OPENAPI_DOCUMENT_PATH}</a>.</noscript>
<script type="module" src="{REDOC_SCRIPT_URL}" integrity="{REDOC_SCRIPT_INTEGRITY}"
 crossorigin="anonymous"></script>
</body>
</html>
"""


@bp.get(OPENAPI_PAGE_PATH)
def get_api_page() -> Response:
    response = Response(API_PAGE, mimetype=HTML_MIMETYPE)
    response.cache_control.public = True
    response.cache_control.max_age = DOCUMENT_MAX_AGE_SECONDS
    return response
