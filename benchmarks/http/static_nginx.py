"""nginx serving the list's bytes as a static file: the scale benchmark's ceiling.

No Python server here can send stored bytes faster than nginx sends a file
(``sendfile``, ``gzip_static`` for a client that accepts gzip), so its req/s at each
size is what the app's are read against.
"""

from __future__ import annotations

import grp
import os
import pwd
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.http.contenders import Contender
from benchmarks.http.servers import CATEGORIES_PATH, Served
from devtools.environment import version_line
from devtools.fleet import wait_until_healthy
from devtools.ports import free_port
from devtools.processes import background_process
from ecommerce.categories.representation import Representation

STATIC_BODY_NAME = "categories.json"
#: nginx's gzip_static sends this file, next to the body, to a client that accepts gzip.
STATIC_GZIP_NAME = STATIC_BODY_NAME + ".gz"
#: A keep-alive connection serves this many requests before nginx closes it (its
#: default, 1,000, would make wrk reconnect hundreds of times a second); gunicorn has
#: no such limit.
NGINX_KEEPALIVE_REQUESTS = 1_000_000


def static_nginx_config(directory: Path, port: int, workers: int) -> str:
    """nginx.conf for ``nginx -p <directory>``: the body at /categories, nothing else.

    The same worker count as each gunicorn; no access log (the ceiling, not a
    like-for-like server); ``gzip_static`` sends the stored ``.gz`` file, with
    ``Vary``, to a client that accepts gzip, as the app sends its stored gzip body.
    """
    # Run as root, nginx's workers would drop to "nobody", who cannot read the run's
    # private temporary folder; as anyone else nginx ignores the directive.
    user = f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
    return f"""\
user {user};
worker_processes {workers};
pid nginx.pid;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    # Debian's compiled-in temp paths are under /var/lib/nginx: keep them in the prefix.
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    sendfile on;
    tcp_nopush on;
    keepalive_requests {NGINX_KEEPALIVE_REQUESTS};

    server {{
        listen 127.0.0.1:{port};

        location = {CATEGORIES_PATH} {{
            default_type application/json;
            alias {directory / STATIC_BODY_NAME};
            gzip_static on;
            gzip_vary on;
        }}
        location = /healthz {{
            default_type application/json;
            return 200 '{{"status":"ok"}}';
        }}
    }}
}}
"""


@contextmanager
def static_file_server(
    nginx: str, contender: Contender, representation: Representation, workdir: Path, workers: int
) -> Iterator[Served]:
    """nginx in the foreground, serving ``representation``'s bytes; yields it as a contender."""
    directory = workdir / f"nginx-{time.monotonic_ns()}"
    directory.mkdir(parents=True)
    (directory / STATIC_BODY_NAME).write_bytes(representation.identity_body)
    if representation.gzip_body is not None:
        (directory / STATIC_GZIP_NAME).write_bytes(representation.gzip_body)
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(static_nginx_config(directory, port, workers))
    error_log = directory / "error.log"
    command = [nginx, "-p", str(directory), "-c", str(config), "-e", "stderr", "-g", "daemon off;"]
    url = f"http://127.0.0.1:{port}"
    with background_process(command, error_log) as process:
        wait_until_healthy(url, process, error_log)
        yield Served(contender, url, error_log, directory)


def nginx_version(nginx: str) -> str | None:
    """``nginx -v`` says "nginx version: nginx/1.22.1": the release is the last word."""
    line = version_line([nginx, "-v"])
    return line.split()[-1] if line else None
