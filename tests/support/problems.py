"""RFC 9457 problem+json: the shape every error answer of the app has."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

PROBLEM_JSON = "application/problem+json"


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem for ``status``; returns its body."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    problem = response.get_json(force=True)
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert problem["title"]
    assert problem["detail"]
    return problem
