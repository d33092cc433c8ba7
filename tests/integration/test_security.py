"""Headers every response carries, and no-store on writes and errors."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/categories", None),
        ("get", "/categories/1", None),
        ("get", "/healthz", None),
        ("get", "/metrics", None),
        ("get", "/no-such-page", None),
        ("post", "/categories", {"name": "Toys"}),
        ("post", "/categories", {"name": ""}),
        ("patch", "/categories/1", {"name": "Gadgets"}),
        ("delete", "/categories/2", None),
        ("put", "/categories", None),
    ],
)
def test_every_response_refuses_sniffing_and_framing(
    client: FlaskClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    response = getattr(client, method)(path, json=body)

    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/categories", {"name": "Toys"}, 201),
        ("patch", "/categories/1", {"name": "Gadgets"}, 200),
        ("delete", "/categories/2", None, 204),
        ("post", "/categories", {"name": ""}, 400),
        ("get", "/categories/999", None, 404),
        ("get", "/no-such-page", None, 404),
    ],
)
def test_writes_and_errors_are_never_stored_by_caches(
    client: FlaskClient, method: str, path: str, body: dict[str, str] | None, status: int
) -> None:
    response = getattr(client, method)(path, json=body)

    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"


def test_a_successful_read_is_not_marked_no_store(client: FlaskClient) -> None:
    assert client.get("/categories").headers.get("Cache-Control") != "no-store"
