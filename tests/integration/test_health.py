"""GET /readyz: ready when the database answers; the cache is reported, never required.

(/healthz, the liveness check, is covered by tests/integration/test_app_health.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from devtools.ports import free_port
from ecommerce.database import schema_head
from ecommerce.extensions import db
from ecommerce.health import DATABASE_PROBE
from tests.support.app import recorded_sql
from tests.support.logs import json_log_lines

#: Connection refused is immediate; one botocore retry must keep /readyz well under
#: a load balancer's health-check timeout (5 s by default on an ALB).
UNREACHABLE_CACHE_BUDGET_SECONDS = 3.0


def test_ready_with_simplecache_names_the_backend(make_app: Callable[..., Flask]) -> None:
    app = make_app()

    with recorded_sql(app) as statements:
        response = app.test_client().get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    coherence = body.pop("coherence")
    assert body == {
        "status": "ready",
        "database": "ok",
        "schema": schema_head(),
        "schema_is_newer": False,
        "cache": {"backend": "SimpleCache"},
    }
    # init-db's seeding left a tombstone at its version: coherent, a load is due.
    assert coherence["cached_version"] == coherence["database_version"] > 0
    assert (coherence["state"], coherence["owed"]) == ("fenced", None)
    # The database really was asked: the probe, then the catalogue version.
    assert statements[0] == DATABASE_PROBE
    assert len(statements) == 2 and "catalogue_version" in statements[1]


def test_a_database_at_another_schema_revision_is_not_ready(
    make_app: Callable[..., Flask],
) -> None:
    """An instance whose init-db failed (the schema is behind this release): no traffic."""
    app = make_app()
    app.test_cli_runner().invoke(args=["db", "downgrade", "0002_catalogue_version"])

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert "at revision 0002_catalogue_version" in response.get_json()["detail"]
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    assert app.test_client().get("/readyz").status_code == 200


def _stamp_unknown_revision(app: Flask, revision: str) -> None:
    """What another release's migration leaves: a revision this code has no script for."""
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        db.session.commit()


def test_a_schema_a_later_release_migrated_stays_ready(
    make_app: Callable[..., Flask],
) -> None:
    """A rolling update's old instances keep serving once the first new one migrated."""
    app = make_app()
    _stamp_unknown_revision(app, "0099_future")

    response = app.test_client().get("/readyz")

    assert response.status_code == 200
    assert (response.get_json()["schema"], response.get_json()["schema_is_newer"]) == (
        "0099_future",
        True,
    )


def test_an_unknown_schema_not_numbered_after_ours_is_not_ready(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    _stamp_unknown_revision(app, "abc123")

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert "at revision abc123" in response.get_json()["detail"]


def test_ready_with_dynamodb_reports_the_table(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any], table_name: str
) -> None:
    response = make_app(**dynamodb_cache_config).test_client().get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["cache"] == {
        "backend": "dynamodb",
        "table": table_name,
        "ok": True,
        "table_status": "ACTIVE",
        "circuit": "closed",
    }


def test_a_dynamodb_outage_does_not_fail_readiness(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    """Every instance shares the table: failing here would empty the target group at once."""
    app = make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "CACHE_DYNAMODB_CREATE_TABLE": False,
        }
    )
    started = time.monotonic()

    response = app.test_client().get("/readyz")

    assert time.monotonic() - started < UNREACHABLE_CACHE_BUDGET_SECONDS
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["database"]) == ("ready", "ok")
    assert body["cache"]["ok"] is False
    assert body["cache"]["backend"] == "dynamodb"
    assert "DescribeTable" in body["cache"]["error"]
    assert body["coherence"]["state"] == "unknown: the cache is unavailable"
    assert body["coherence"]["cached_version"] is None
    assert body["coherence"]["database_version"] > 0


def test_an_unreachable_database_is_503_naming_it(
    make_app: Callable[..., Flask], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite cannot create a file in a directory that does not exist: a dead database."""
    app = make_app(
        init_db=False,
        TESTING=False,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'no-such-directory' / 'db.sqlite'}",
    )
    capsys.readouterr()

    response = app.test_client().get("/readyz", headers={"X-Request-ID": "probe-1"})

    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 503
    assert "database" in problem["detail"]
    assert "OperationalError" in problem["detail"]
    warning, access = json_log_lines(capsys.readouterr().out)
    assert (warning["logger"], warning["level"], warning["request_id"]) == (
        "ecommerce.health",
        "WARNING",
        "probe-1",
    )
    assert "unable to open database file" in warning["message"]
    assert (access["status"], access["request_id"]) == (503, "probe-1")


def test_readiness_reports_a_cache_behind_the_database_and_stays_ready(
    make_app: Callable[..., Flask],
) -> None:
    """A change made behind the cache's back (plain SQL, a back-office tool): reported."""
    from ecommerce.categories import repository

    app = make_app()
    client = app.test_client()
    assert client.get("/categories").status_code == 200  # cached at the seed version
    with app.app_context():
        _, new_version = repository.create_category("Toys")

    response = client.get("/readyz")

    assert response.status_code == 200
    coherence = response.get_json()["coherence"]
    assert coherence["state"] == "behind"
    assert coherence["database_version"] == new_version > coherence["cached_version"]
