"""Liveness: answers while the process can serve HTTP, whatever the DB or cache do.

A load balancer that saw a cache outage here would pull every instance at once,
though the API keeps answering from the database; readiness is a separate check.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
