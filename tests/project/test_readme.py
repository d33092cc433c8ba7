"""The README's runnable examples run as written."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from devtools.fleet import flask_environment
from tests.support.readme import README, code_block_after


def python_block_after(heading: str) -> str:
    return code_block_after(heading, "python")


def test_the_loader_example_runs_as_written() -> None:
    exec(compile(python_block_after("### The loader, without Flask"), "README.md", "exec"), {})


def test_the_near_cache_example_runs_as_written() -> None:
    heading = "### The hot path: a near-cache in front of DynamoDB"
    exec(compile(python_block_after(heading), "README.md", "exec"), {})


def test_the_migration_commands_run_as_written(tmp_path: Path) -> None:
    """The sh block of "The database and its migrations", on a database of the test's own."""
    environment = flask_environment(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'readme.sqlite'}"}
    )
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    run = functools.partial(
        subprocess.run,
        shell=True,
        cwd=README.parent,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert run("flask --app wsgi init-db").returncode == 0

    result = run(code_block_after("## The database and its migrations", "sh"))

    assert result.returncode == 0, result.stderr
    assert "0004_catalogue_triggers (head)" in result.stdout
    assert "0003_name_key -> 0004_catalogue_triggers (head)" in result.stdout
