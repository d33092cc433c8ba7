"""A bare Flask app that answers ``GET /categories`` as the seeded app does: the floor.

Served by the same gunicorn and gunicorn.conf.py as the app (``gunicorn
benchmarks.http.bare_app:app``), it has none of the app's per-request work: no
cache, database, access log, metrics, request id or security headers. The
benchmark's app-on-SimpleCache / bare ratio is therefore what that work costs.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

from ecommerce.database import SEED_CATEGORY_NAMES

#: What a freshly seeded database lists: ids count from 1 in seeding order. The
#: benchmark checks that this body and the app's are the same bytes.
SEED_CATEGORIES = [
    {"id": category_id, "name": name}
    for category_id, name in enumerate(SEED_CATEGORY_NAMES, start=1)
]

app = Flask(__name__)


@app.get("/categories")
def list_categories() -> Response:
    return jsonify(SEED_CATEGORIES)


@app.get("/healthz")
def healthz() -> Response:
    """What ``devtools.fleet.wait_until_healthy`` polls before the benchmark starts."""
    return jsonify(status="ok")
