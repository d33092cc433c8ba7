"""cache_backends/cli.py: ``flask cache create-table | status | clear`` as scripts use them.

Exit statuses and stdout are checked through Flask's CLI runner against DynamoDB
Local; what a shell sees (results on stdout once, log lines on stderr, no ERROR
before create-table) through the real ``flask --app wsgi`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from devtools import REPOSITORY_ROOT
from devtools.fleet import flask_environment
from devtools.ports import free_port
from tests.support.servers import on_the_created_table

#: Flask's CLI starts in about a second; a DynamoDB call to DynamoDB Local takes milliseconds.
FLASK_COMMAND_TIMEOUT_SECONDS = 30


@pytest.fixture
def cli(make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]) -> FlaskCliRunner:
    """The CLI of an app on this test's DynamoDB table, which does not exist yet."""
    app = make_app(init_db=False, **{**dynamodb_cache_config, "CACHE_DYNAMODB_CREATE_TABLE": False})
    return app.test_cli_runner()


def status_report(cli: FlaskCliRunner) -> tuple[int, dict[str, Any]]:
    """``cache status``'s exit code and report (in-process, the app's JSON log lines
    share stdout; the subprocess test below shows they do not under ``flask``)."""
    result = cli.invoke(args=["cache", "status"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (report,) = [line for line in lines if "logger" not in line]
    return result.exit_code, report


def test_status_exits_1_until_the_table_is_created_then_0(
    cli: FlaskCliRunner, table_name: str
) -> None:
    exit_code, report = status_report(cli)
    assert (exit_code, report["ok"], report["table"]) == (1, False, table_name)

    created = cli.invoke(args=["cache", "create-table"])
    assert created.exit_code == 0, created.output
    assert created.stdout.splitlines() == [
        f"created table {table_name} (on-demand)",
        "TTL is enabled on expires_at",
    ]

    exit_code, report = status_report(cli)
    assert (exit_code, report["ok"], report["table_status"]) == (0, True, "ACTIVE")


def test_status_exits_1_when_dynamodb_does_not_answer(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    app = make_app(
        init_db=False,
        **{**dynamodb_cache_config, "CACHE_DYNAMODB_ENDPOINT_URL": nothing_listens},
    )

    exit_code, report = status_report(app.test_cli_runner())

    assert (exit_code, report["ok"]) == (1, False)
    assert "DescribeTable failed" in report["error"]


def test_create_table_failing_is_one_error_line_not_a_traceback(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    too_short = "ab"  # DynamoDB wants 3 to 255 characters
    app = make_app(init_db=False, **{**dynamodb_cache_config, "CACHE_DYNAMODB_TABLE": too_short})

    result = app.test_cli_runner().invoke(args=["cache", "create-table"])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: table {too_short}: ")
    assert "Traceback" not in result.output


def test_clear_asks_first_and_clears_nothing_without_an_answer(
    cli: FlaskCliRunner, table_name: str
) -> None:
    cli.invoke(args=["cache", "create-table"])
    (dynamodb_cache,) = cli.app.extensions["cache"].values()
    dynamodb_cache.set("kept-until-confirmed", 1)

    unanswered = cli.invoke(args=["cache", "clear"], input="")  # stdin closed, as under SSM

    assert unanswered.exit_code == 1
    assert "--yes" in unanswered.stderr
    assert unanswered.stdout == "", "the question goes to stderr: stdout is for results"
    assert dynamodb_cache.get("kept-until-confirmed") == 1

    confirmed = cli.invoke(args=["cache", "clear", "--yes"])

    assert (confirmed.exit_code, confirmed.stdout) == (0, f"cleared {table_name}\n")
    assert dynamodb_cache.get("kept-until-confirmed") is None


def test_clear_help_documents_yes(cli: FlaskCliRunner) -> None:
    help_text = cli.invoke(args=["cache", "clear", "--help"]).stdout

    assert "--yes" in help_text and "SSM Run Command" in help_text


# --- the real `flask --app wsgi`, as a shell or SSM runs it --------------------------


def run_flask(settings: dict[str, Any], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *arguments],
        cwd=REPOSITORY_ROOT,
        env=flask_environment(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=FLASK_COMMAND_TIMEOUT_SECONDS,
    )


def test_results_go_to_stdout_once_and_log_lines_to_stderr(
    dynamodb_cache_config: dict[str, Any], table_name: str, tmp_path: Path
) -> None:
    """Before: an ERROR saying the table is missing, then each result twice (log and line)."""
    settings = on_the_created_table(
        dynamodb_cache_config, f"sqlite:///{tmp_path / 'unused.sqlite'}"
    )

    missing = run_flask(settings, "cache", "status")
    created = run_flask(settings, "cache", "create-table")
    usable = run_flask(settings, "cache", "status")

    assert missing.returncode == 1
    assert json.loads(missing.stdout)["ok"] is False  # stdout is the JSON and nothing else
    assert "DescribeTable" in missing.stderr  # the backend's warning, as a log line
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [
        f"created table {table_name} (on-demand)",
        "TTL is enabled on expires_at",
    ]
    assert created.stderr == "", "nothing to report: no ERROR, no log line repeating a result"
    assert usable.returncode == 0, usable.stderr
    assert json.loads(usable.stdout)["table_status"] == "ACTIVE"
