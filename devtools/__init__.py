"""Development tooling: what tests, benchmarks and ``make`` targets run locally.

Not part of the wheel (setup.cfg ships ``ecommerce`` and ``cache_backends`` only):
nothing here runs in production. The command lines on top are ``scripts/`` and
``benchmarks/``; tests import from here directly.

Modules, in the order a reader needs them:

- ``credentials``: the one set of development credentials (AWS dummies, signing key,
  admin token) every local run uses.
- ``ports``: free ports and waiting for a server to listen.
- ``processes``: background processes that leave no orphan, stop signals, servers
  stopped when their ``with`` block ends.
- ``dynamodb_local``: Amazon's DynamoDB Local, started and stopped.
- ``postgresql``: a throwaway PostgreSQL server.
- ``fleet``: gunicorn instances of the app, nginx in front (``make cluster``).
- ``stampede``: concurrent bursts at a cold, expired or stale cache (``make stampede``).
- ``environment``: what a measurement ran on (machine, versions, DynamoDB Local release).
- ``moto_server``: moto's server mode, AWS's control plane for the deploy guide's test
  (runs in ``.venv/aws``, not in the app's virtualenv).
- ``chaos``: a seeded schedule of faults (``chaos_schedule``) on two instances under
  traffic, every answer checked against the documented bounds (``chaos_checker``), a violation
  shown with its faults and log lines (``chaos_evidence``); ``make chaos``.
"""

from pathlib import Path

#: The checkout these tools run from: the app gunicorn serves, where npm put the jar.
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
