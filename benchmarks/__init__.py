"""Side-by-side benchmark: our DynamoDB cache vs cachelib's vs a bare GetItem.

Run it with ``make bench`` or ``python -m benchmarks --help``. It starts one
DynamoDB Local (unless ``--endpoint-url`` names one), times every contender on
the same server in interleaved rounds, prints a table with the issue's targets
and writes ``docs/benchmarks.{json,md,png}``.

Modules, in the order a reader needs them:

- ``contenders``: one small adapter per cache, all with the same interface.
- ``operations``: what is timed (get, set, get_many(100), set_many(100), inc).
- ``timing``: the one timing helper and the latency statistics.
- ``runner``: warm-up, interleaved rounds, medians, ratios and targets.
- ``report``: the printed table, the JSON, the Markdown page and the chart.
- ``options``: the command-line pieces both benchmarks share.
- ``cli``: the command line behind ``python -m benchmarks``.

DynamoDB Local, the development credentials and the description of the machine
(``devtools.environment``) come from ``devtools``, as for the tests.

``benchmarks.http`` is the other benchmark: the whole app over HTTP under gunicorn,
per cache backend (``make bench-http``).
"""
