"""A fleet of the app on one machine: gunicorn instances, nginx round-robin in front.

As the ALB runs the app on EC2: each instance is ``gunicorn wsgi:app`` with the
repository's gunicorn.conf.py and its own Prometheus directory, all sharing one
database and one cache table. ``make cluster`` (scripts/cluster.py), the stampede
scenarios, the HTTP benchmark and the multi-process tests all start the app
through these functions.

nginx adds an ``X-Upstream`` response header naming the instance that answered,
so a person (or a test) can watch round-robin at work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import REPOSITORY_ROOT
from devtools.credentials import DEV_ADMIN_TOKEN, DEV_SIGNING_KEY, use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.ports import free_port
from devtools.processes import background_process, terminate

#: Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
NGINX_FALLBACK_PATH = Path("/usr/sbin/nginx")
#: gunicorn imports Flask, SQLAlchemy, botocore and the app in every worker: a few
#: seconds when four workers start at once on a 2-core machine.
START_TIMEOUT_SECONDS = 30.0
DEFAULT_LISTEN_PORT = 8080
DEFAULT_WORKERS_PER_INSTANCE = 2
INSTANCE_NAMES = ("instance-a", "instance-b")
DYNAMODB_CACHE_TYPE = "cache_backends.dynamodb.DynamoDBCache"
#: What ``gunicorn_instance`` serves unless told otherwise: the app, as ``make run`` does.
WSGI_APP = "wsgi:app"
UPSTREAM_HEADER = "X-Upstream"


@dataclass(frozen=True)
class Instance:
    """One running ``gunicorn wsgi:app`` master and where to find its output."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        """host:port, as nginx names the upstream in ``X-Upstream``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True)
class Cluster:
    url: str
    instances: tuple[Instance, ...]


def find_nginx() -> str | None:
    """The nginx binary on PATH, or Debian's /usr/sbin/nginx; None when not installed."""
    found = shutil.which("nginx")
    if found is None and os.access(NGINX_FALLBACK_PATH, os.X_OK):
        found = str(NGINX_FALLBACK_PATH)
    return found


def nginx_config(upstream_addresses: Sequence[str], listen_port: int) -> str:
    """A complete nginx.conf for ``nginx -p <prefix>``: round-robin over the upstreams.

    Relative paths (pid, logs, temporary files) land in the prefix directory, so
    nothing touches /etc, /run or /var and no root is needed. The proxy headers are
    those of deploy/nginx.conf, so the app sees what it sees in production.
    """
    servers = "\n".join(f"        server {address};" for address in upstream_addresses)
    return f"""\
worker_processes 1;
pid nginx.pid;

events {{
    worker_connections 256;
}}

http {{
    default_type application/octet-stream;
    access_log access.log;
    # Debian's compiled-in temp paths are under /var/lib/nginx: keep them in the prefix.
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    map $http_x_request_id $ecommerce_request_id {{
        default $http_x_request_id;
        ""      $request_id;
    }}

    upstream ecommerce {{
        # No balancing directive: round-robin, nginx's default.
{servers}
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:{listen_port};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Request-ID $ecommerce_request_id;
        # Which instance answered: round-robin made visible.
        add_header {UPSTREAM_HEADER} $upstream_addr always;

        location / {{
            proxy_pass http://ecommerce;
        }}
    }}
}}
"""


def flask_environment(settings: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment without FLASK_*, plus ``FLASK_<name>`` per setting.

    ``ADMIN_TOKEN`` defaults to the development token ``DEV_ADMIN_TOKEN``.

    The app parses FLASK_* values as JSON, so non-strings are written as JSON
    (``true``, ``1``) and strings as they are.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    for name, value in {"ADMIN_TOKEN": DEV_ADMIN_TOKEN, **settings}.items():
        environment[f"FLASK_{name}"] = value if isinstance(value, str) else json.dumps(value)
    return environment


#: urllib would honour http_proxy from the environment, even for 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POLL_INTERVAL_SECONDS = 0.1
HEALTH_PATH = "/healthz"


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until ``url``/healthz answers 200, which means the app itself is loaded (gunicorn
    listens as soon as the master binds, seconds before a worker can answer).

    Raises RuntimeError with the process's log if it exits or never answers.
    """
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with _DIRECT.open(url + HEALTH_PATH, timeout=START_TIMEOUT_SECONDS):
                return
        except OSError:  # refused, reset, or an HTTP error status: not ready yet
            time.sleep(POLL_INTERVAL_SECONDS)
    state = "not healthy in time" if process.poll() is None else f"exited ({process.returncode})"
    raise RuntimeError(f"{process.args[0]} on {url}: {state}; {log_path}:\n{log_path.read_text()}")


@contextmanager
def gunicorn_instance(
    name: str,
    settings: Mapping[str, Any],
    workdir: Path,
    workers: int = DEFAULT_WORKERS_PER_INSTANCE,
    *,
    threads: int | None = None,
    app_root: Path = REPOSITORY_ROOT,
    wsgi_app: str = WSGI_APP,
    gunicorn_arguments: Sequence[str] = (),
) -> Iterator[Instance]:
    """``gunicorn wsgi:app`` with the repository's gunicorn.conf.py on a free port.

    Each instance gets its own PROMETHEUS_MULTIPROC_DIR and, unless ``settings`` name
    one, its own CATALOGUE_EVENTS_DIR, as each instance on EC2 is a separate machine
    with folders of its own: two masters sharing a metrics folder would wipe each
    other's files at start and mix their counts, and instances sharing the events
    folder (by default the checkout's ``instance/``, the same for every test and
    benchmark running at once) would elect one reconciler between them and take each
    other's shared copies, owed versions and bodies, whatever their table. ``app_root``
    runs another checkout of the app (an older commit, to compare with);
    ``wsgi_app`` another application under the same configuration (a baseline);
    ``gunicorn_arguments`` override settings of gunicorn.conf.py for this instance.
    """
    port = free_port()
    metrics_directory = workdir / f"{name}-metrics"
    metrics_directory.mkdir(parents=True)
    events_directory = workdir / f"{name}-instance"
    environment = flask_environment({"CATALOGUE_EVENTS_DIR": str(events_directory), **settings}) | {
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_directory),
    }
    if threads is not None:
        environment["GUNICORN_THREADS"] = str(threads)
    log_path = workdir / f"{name}.log"
    command = [sys.executable, "-m", "gunicorn", *gunicorn_arguments, wsgi_app]
    with background_process(command, log_path, cwd=app_root, env=environment) as process:
        yield Instance(name, port, process, log_path)


@contextmanager
def nginx_balancer(
    nginx: str, upstream_addresses: Sequence[str], workdir: Path, port: int
) -> Iterator[str]:
    """nginx in the foreground with its prefix, config, pid and logs under ``workdir``."""
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True)
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(upstream_addresses, port))
    error_log = prefix / "error.log"
    command = [nginx, "-p", str(prefix), "-c", str(config), "-e", "stderr", "-g", "daemon off;"]
    url = f"http://127.0.0.1:{port}"
    with background_process(command, error_log) as process:
        wait_until_healthy(url, process, error_log)
        yield url


@contextmanager
def cluster(
    nginx: str,
    settings: Mapping[str, Any],
    workdir: Path,
    *,
    port: int | None = None,
    workers: int = DEFAULT_WORKERS_PER_INSTANCE,
) -> Iterator[Cluster]:
    """Two instances with the same ``settings`` (database, cache, signing key), nginx in front.

    The instances trust one proxy hop (nginx) for X-Forwarded-For/Proto/Host.
    The database and, for DynamoDB, the table must exist already (:func:`prepare`).
    """
    behind_one_proxy = {"PROXY_FIX_X_FOR": 1, "PROXY_FIX_X_PROTO": 1, "PROXY_FIX_X_HOST": 1}
    with ExitStack() as stack:
        instances = tuple(
            stack.enter_context(
                gunicorn_instance(name, {**behind_one_proxy, **settings}, workdir, workers)
            )
            for name in INSTANCE_NAMES
        )
        # On the way out, signal every instance before waiting for any: they stop in parallel.
        stack.callback(terminate, [instance.process for instance in instances])
        for instance in instances:
            wait_until_healthy(instance.url, instance.process, instance.log_path)
        addresses = [instance.address for instance in instances]
        url = stack.enter_context(nginx_balancer(nginx, addresses, workdir, port or free_port()))
        yield Cluster(url, instances)


def prepare(
    settings: Mapping[str, Any], app_root: Path = REPOSITORY_ROOT, *, quiet: bool = False
) -> None:
    """Create the schema and seed data once, and the DynamoDB table when the cache uses one.

    Done before the instances start: two instances creating the same table at
    once would race (the second CreateTable fails).
    """
    create_table = (
        {"CACHE_DYNAMODB_CREATE_TABLE": True}
        if settings.get("CACHE_TYPE") == DYNAMODB_CACHE_TYPE
        else {}
    )
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=app_root,
        env=flask_environment({**settings, **create_table}),
        check=True,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def dynamodb_settings(endpoint_url: str, table_name: str | None = None) -> dict[str, Any]:
    """The app's settings for the DynamoDB backend on ``endpoint_url``, signed with the dev key.

    One key for the whole fleet: an instance must verify what every other wrote.
    Without ``table_name`` the app's default table.
    """
    settings: dict[str, Any] = {
        "CACHE_TYPE": DYNAMODB_CACHE_TYPE,
        "CACHE_DYNAMODB_ENDPOINT_URL": endpoint_url,
        "CACHE_DYNAMODB_SIGNING_KEY": DEV_SIGNING_KEY,
    }
    if table_name is not None:
        settings["CACHE_DYNAMODB_TABLE"] = table_name
    return settings


@dataclass(frozen=True)
class LocalCluster:
    """``make cluster``'s set-up, running: where its DynamoDB Local, files and nginx are."""

    dynamodb_endpoint_url: str
    #: Each instance's log and metrics directory, nginx's prefix, the SQLite file.
    workdir: Path
    cluster: Cluster


@contextmanager
def local_cluster(
    nginx: str,
    *,
    strategy: str,
    port: int = DEFAULT_LISTEN_PORT,
    workers: int = DEFAULT_WORKERS_PER_INSTANCE,
) -> Iterator[LocalCluster]:
    """DynamoDB Local, a temporary SQLite file, two instances and nginx; all gone on exit."""
    use_local_aws_credentials()
    with (
        tempfile.TemporaryDirectory(prefix="ecommerce-cluster-") as directory,
        DynamoDBLocal() as ddb,
    ):
        workdir = Path(directory)
        settings = {
            **dynamodb_settings(ddb.endpoint_url),
            "CATEGORIES_CACHE_STRATEGY": strategy,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'categories.sqlite'}",
        }
        prepare(settings)
        with cluster(nginx, settings, workdir, port=port, workers=workers) as running:
            yield LocalCluster(ddb.endpoint_url, workdir, running)
