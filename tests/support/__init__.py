"""What test modules share: constants, request helpers and small classes, by topic.

Fixtures stay in tests/conftest.py (which builds them from these); a test module
imports helpers from here, never from another test module or from conftest.

- ``app``: the seed data, request helpers, the test admin token, database probes.
- ``caches``: the test signing key and read budget, whole-second expiry, a raising backend,
  DynamoDB call counts.
- ``dynamodb``: the DynamoDB backend's tests' helpers (their fixtures: tests/dynamodb/conftest.py).
- ``loading``: forced interleavings for the loader's tests (paused loads, event recorders).
- ``logs``: JSON log lines and Prometheus samples.
- ``problems``: RFC 9457 problem+json answers.
- ``races``: a database load paused at the moment that makes a race visible.
- ``readme``: the README's code blocks.
- ``servers``: the app as a gunicorn process (its settings, a write over HTTP), and a
  server that never answers.
"""
