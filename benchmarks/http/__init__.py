"""HTTP load benchmark: ``GET /categories`` under gunicorn with several cache backends.

Run it with ``make bench-http`` or ``python -m benchmarks.http --help``. Every
contender is a ``gunicorn`` master with the repository's gunicorn.conf.py (gevent
workers, the same worker count for all) on a fresh SQLite file; ``wrk`` loads one
contender at a time in interleaved rounds, and the report goes to
``docs/bench-http.{md,json,png}``.

Modules, in the order a reader needs them:

- ``contenders``: what each contender serves the list from, and its settings.
- ``bare_app``: the floor, a bare Flask app with the same answer.
- ``servers``: redis-server, and every contender started, warmed and checked.
- ``wrk``: one wrk run and its parsed numbers.
- ``runner``: interleaved rounds, medians, ratios and the issue's targets.
- ``waves``: back-to-back runs on one server (``--waves``, ``--sustained``), with its
  worker boots, Prometheus files and ``/metrics`` time after each.
- ``report``: the printed table, the JSON, the Markdown page and the chart.
- ``cli``: the command line behind ``python -m benchmarks.http``.
- ``scale``, ``scale_report``, ``cached_view``: ``make bench-scale`` (``python -m
  benchmarks.scale``), the same servers and checks at 3 to 200,000 categories, plain and
  gzip clients, with Flask-Caching's ``@cache.cached`` and nginx serving a file beside them.
"""
