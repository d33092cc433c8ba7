"""The DynamoDB backend in a Flask app of your own: Flask-Caching's ``@cache.cached`` and
``@cache.memoize``, with entries in one DynamoDB table every process and instance shares.

Against DynamoDB Local (``make dynamodb-local`` in another shell serves it on port 8001)::

    AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\
      .venv/bin/flask --app examples/flask_app.py run --port 5001
    curl -s localhost:5001/report      # computed once, then served from DynamoDB for 60 s
    curl -s localhost:5001/square/12   # square(12) computed once per 60 s, for every caller

On AWS: drop the endpoint and ``CREATE_TABLE`` (the table comes from your own
infrastructure, with TTL on ``expires_at``), set the region, and give every instance the
same signing key from a secret store. Credentials come from the AWS chain (environment,
profile, instance role), never from the config.
"""

from __future__ import annotations

import os
import time

from flask import Flask
from flask_caching import Cache

app = Flask(__name__)
app.config.from_mapping(
    CACHE_TYPE="cache_backends.dynamodb.DynamoDBCache",
    CACHE_DEFAULT_TIMEOUT=60,
    CACHE_KEY_PREFIX="example:",
    CACHE_DYNAMODB_TABLE=os.environ.get("EXAMPLE_CACHE_TABLE", "example-cache"),
    CACHE_DYNAMODB_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    CACHE_DYNAMODB_ENDPOINT_URL=os.environ.get("EXAMPLE_DYNAMODB_URL", "http://127.0.0.1:8001"),
    CACHE_DYNAMODB_CREATE_TABLE=True,  # local runs only
    # Entries are verified with it before they are unpickled: the same on every instance.
    CACHE_DYNAMODB_SIGNING_KEY=os.environ.get("EXAMPLE_SIGNING_KEY", "example-only-key"),
)
cache = Cache(app)

#: How often each function below really ran (the cache's point is to keep these low).
computed = {"report": 0, "square": 0}


@app.get("/report")
@cache.cached(timeout=60)
def report() -> dict[str, float]:
    """A slow page: the whole response is cached under the request path."""
    computed["report"] += 1
    return {"generated_at": time.time()}


@cache.memoize(timeout=60)
def square(number: int) -> int:
    """A slow function: each argument's result is cached on its own."""
    computed["square"] += 1
    return number * number


@app.get("/square/<int:number>")
def square_view(number: int) -> dict[str, int]:
    return {"number": number, "square": square(number)}
