"""Run DynamoDB Local on 127.0.0.1, alone or for as long as a command runs.

Command line (``make dynamodb-local``, ``make run-dynamodb``)::

    python -m scripts.dynamodb_local --port 8001            # serve until Ctrl-C
    python -m scripts.dynamodb_local --port 8001 -- CMD...  # serve while CMD runs

CMD gets the development AWS credentials unless the shell sets its own. A stop
(Ctrl-C, SIGTERM) is passed on to CMD, whose exit status is the run's: 0 when
gunicorn stops as asked.
"""

from __future__ import annotations

import argparse
import sys

from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.processes import on_stop_signals, run_until_it_stops

DEFAULT_PORT = 8001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run this, then stop")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # Until a command runs, a stop request ends the run quietly with status 0: a stop
    # someone asked for is not a failure (make would print "Error"), and SystemExit
    # unwinds through the ``finally`` below, so the JVM is stopped rather than orphaned
    # (even when the stop comes while it is starting).
    on_stop_signals(lambda *_: sys.exit(0))
    ddb = DynamoDBLocal(port=args.port)
    try:
        ddb.start()
        ddb.warm_up()  # so the first reads are HITs, not a cold JVM outlasting the get budget
        print(f"DynamoDB Local listening on {ddb.endpoint_url}", file=sys.stderr, flush=True)
        if command:
            use_local_aws_credentials()
            return run_until_it_stops(command)
        ddb.process.wait()
        return 0
    finally:
        ddb.stop()


if __name__ == "__main__":
    sys.exit(main())
