"""HTTP for categories: parse the request, call the cache policy or repository, shape the reply.

Reads carry a strong ``ETag`` (a hash of the body, which is serialized
deterministically, so every instance tags one list alike) and
``Cache-Control: no-cache``: a browser or CDN may keep the answer but must ask
again each time, because a write must show on the very next read. Asking again
with ``If-None-Match`` costs a ``304`` with no body: for the list, one cache
read and no database work.

The list is served from its cached representation (``representation.py``):
stored bytes, gzip for a client that accepts it, ``Vary: Accept-Encoding``; a
hit encodes, hashes and copies nothing. One category is small and read from the
database, so it is encoded per request and never compressed.
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from ecommerce.auth import admin_token_required
from ecommerce.categories import repository
from ecommerce.categories.cache_policy import after_categories_changed, read_categories
from ecommerce.categories.names import InvalidName, normalize_name
from ecommerce.categories.representation import Headerlist, negotiated_response
from ecommerce.observability import CACHE_STATUS_HEADER
from ecommerce.security import ALWAYS

bp = Blueprint("categories", __name__)

CACHE_CONTROL = "Cache-Control"
#: Revalidate on every use (the module docstring).
NO_CACHE = "no-cache"


def _category_name_from_request() -> str:
    """The trimmed name from a ``{"name": "..."}`` JSON body, or a 400/413/415."""
    if not request.is_json:
        raise UnsupportedMediaType("send the category as JSON (Content-Type: application/json)")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    too_large = RequestEntityTooLarge(f"the request body is larger than {limit} bytes")
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if request.content_length is None and len(body) >= limit:
        # A chunked body: Werkzeug stops reading at the limit and hands over what it
        # read, which would then fail to parse and be answered as a 400.
        raise too_large
    try:
        payload = request.get_json()
    except BadRequest:
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:  # json's decoder recurses once per nesting level
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadRequest('the request body must be a JSON object such as {"name": "Toys"}')
    if "name" not in payload:
        raise BadRequest('"name" is required')
    name = payload["name"]
    if not isinstance(name, str):
        raise BadRequest('"name" must be a string')
    try:
        return normalize_name(name)
    except InvalidName as error:
        raise BadRequest(str(error)) from None


def _revalidated(response: Response) -> Response:
    """Tagged, revalidated on every use, and a 304 if the client already holds this body."""
    response.add_etag()
    response.cache_control.no_cache = True
    return response.make_conditional(request)


@bp.get("/categories")
def list_categories() -> Response:
    representation, cache_status = read_categories()
    return negotiated_response(representation, request, list_headers(cache_status))


@functools.cache
def list_headers(cache_status: str) -> Headerlist:
    """What every answer of the list carries besides its variant's own headers.

    The security headers are included, as their hook would add them, so that a
    hit's headers are built once per variant (``negotiate``), and so that the hit
    path (``hit_path.py``), which runs no hook, sends them too. One tuple per cache
    status (HIT, MISS, STALE).
    """
    return ((CACHE_STATUS_HEADER, str(cache_status)), (CACHE_CONTROL, NO_CACHE), *ALWAYS.items())


@bp.get("/categories/<int:category_id>")
def get_category(category_id: int) -> Response:
    """One category straight from the database: the target of POST's Location header.

    Not from the cached list, which may lag a write (stale-while-revalidate,
    another instance's near-cache): a client that follows Location must find it.
    """
    category = repository.get_category(category_id)
    if category is None:
        raise _not_found(category_id)
    return _revalidated(jsonify(category.to_dict()))


def _not_found(category_id: int) -> NotFound:
    return NotFound(f"no category with id {category_id}")


def _name_taken(error: repository.DuplicateCategoryNameError) -> Conflict:
    """Names the stored category: the client may have spelled it another way."""
    return Conflict(
        f"a category named {error.stored_name!r} already exists (names ignore case and width)"
    )


@bp.post("/categories")
@admin_token_required
def create_category() -> tuple[Response, int, dict[str, str]]:
    name = _category_name_from_request()
    try:
        category, version = repository.create_category(name)
    except repository.DuplicateCategoryNameError as error:
        raise _name_taken(error) from None
    after_categories_changed(version)
    location = url_for(".get_category", category_id=category["id"])
    return jsonify(category), 201, {"Location": location}


@bp.patch("/categories/<int:category_id>")
@admin_token_required
def rename_category(category_id: int) -> Response:
    name = _category_name_from_request()
    try:
        category, version = repository.rename_category(category_id, name)
    except repository.CategoryNotFoundError:
        raise _not_found(category_id) from None
    except repository.DuplicateCategoryNameError as error:
        raise _name_taken(error) from None
    after_categories_changed(version)
    return jsonify(category)


@bp.delete("/categories/<int:category_id>")
@admin_token_required
def delete_category(category_id: int) -> tuple[str, int]:
    try:
        version = repository.delete_category(category_id)
    except repository.CategoryNotFoundError:
        raise _not_found(category_id) from None
    after_categories_changed(version)
    return "", 204
