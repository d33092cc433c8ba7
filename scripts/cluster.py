"""Two app instances behind nginx on one machine, as the ALB runs them on EC2.

``make cluster`` runs :func:`main`: DynamoDB Local, two ``gunicorn wsgi:app``
instances (each with the repository's gunicorn.conf.py, two workers, its own
Prometheus directory) sharing one SQLite file and one cache table, and nginx
round-robin in front on http://127.0.0.1:8080. Ctrl-C stops everything. The
set-up is ``devtools.fleet``'s, which tests/blackbox/test_load_balancer.py uses too.

nginx adds an ``X-Upstream`` response header naming the instance that answered,
so a person (or a test) can watch round-robin at work::

    curl -si http://127.0.0.1:8080/categories | grep -E 'X-Upstream|X-Cache'
    curl -si -X POST http://127.0.0.1:8080/categories \\
         -H 'Content-Type: application/json' \\
         -H 'Authorization: Bearer dev-only-admin-token' -d '{"name": "Toys"}'
    curl -s http://127.0.0.1:8080/categories   # Toys, whichever instance answers

Each instance's own port (printed at start) serves ``/metrics`` for that
instance, summed over its workers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from devtools.credentials import DEV_ADMIN_TOKEN
from devtools.fleet import (
    DEFAULT_LISTEN_PORT,
    DEFAULT_WORKERS_PER_INSTANCE,
    find_nginx,
    local_cluster,
)
from devtools.processes import stopping_on_sigterm
from ecommerce.config import CacheStrategy

#: How often to look whether an instance has died.
CHECK_INTERVAL_SECONDS = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_LISTEN_PORT, help="nginx's port")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS_PER_INSTANCE)
    parser.add_argument(
        "--strategy", choices=[strategy.value for strategy in CacheStrategy], default="invalidate"
    )
    args = parser.parse_args(argv)
    nginx = find_nginx()
    if nginx is None:
        parser.error("nginx is not installed: `make system-deps` installs the Debian package")

    with (
        contextlib.suppress(KeyboardInterrupt),
        stopping_on_sigterm(),
        local_cluster(nginx, strategy=args.strategy, port=args.port, workers=args.workers) as local,
    ):
        running = local.cluster
        print(f"DynamoDB Local: {local.dynamodb_endpoint_url}; logs and metrics: {local.workdir}")
        for instance in running.instances:
            print(f"{instance.name}: {instance.url} (metrics: {instance.url}/metrics)")
        print(f"nginx round-robin: {running.url}/categories  (Ctrl-C stops all)")
        print(f"writes need: -H 'Authorization: Bearer {DEV_ADMIN_TOKEN}'", flush=True)
        while not (exited := [i for i in running.instances if i.process.poll() is not None]):
            time.sleep(CHECK_INTERVAL_SECONDS)
        for instance in exited:
            print(f"{instance.name} exited; its log:\n{instance.log_path.read_text()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
