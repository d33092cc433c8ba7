"""The app as a process of its own (gunicorn), and a server that never answers.

What integration and black-box tests that start servers share: the settings of an
instance on a table created before it, a write sent over HTTP, and the stand-in
for DynamoDB behind a partition.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests

from devtools.credentials import DEV_ADMIN_AUTHORIZATION

#: Enough for a hanging server: connections queue up, none is ever answered.
HANGING_BACKLOG = 16


def on_the_created_table(
    dynamodb_cache_config: Mapping[str, Any], database_uri: str
) -> dict[str, Any]:
    """Settings for a process on the test's database and on its table, which exists already.

    ``CACHE_DYNAMODB_CREATE_TABLE`` is left out, as deployed (the table is created
    before any instance): every process started this way uses the table the test
    made, or reports it missing; none creates one of its own.
    """
    shared = {k: v for k, v in dynamodb_cache_config.items() if k != "CACHE_DYNAMODB_CREATE_TABLE"}
    return {**shared, "SQLALCHEMY_DATABASE_URI": database_uri}


def post_category_over_http(
    url: str, name: str, timeout: float, session: requests.Session | None = None
) -> requests.Response:
    """``POST /categories`` with ``name`` to the server at ``url``, as the admin; it must be 201.

    A server the tests started runs with the development admin token, not the test
    apps' one. Without ``session``, a connection of its own.
    """
    response = (session or requests).post(
        f"{url}/categories",
        json={"name": name},
        headers=DEV_ADMIN_AUTHORIZATION,
        timeout=timeout,
    )
    assert response.status_code == 201, response.text
    return response


@contextmanager
def hanging_server() -> Iterator[int]:
    """The port of a server that accepts connections and never answers, for the block.

    DynamoDB behind a partition: requests are sent and time out, never refused.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(HANGING_BACKLOG)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
