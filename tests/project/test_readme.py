"""The README's and the docs site's runnable examples run as written; the README stays short."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.fleet import flask_environment
from tests.support.readme import DOCS, README, code_block_after

#: A front page, not a manual: the rest is the docs site's.
README_MAX_LINES = 200
#: The table the README's Flask example names (DynamoDB Local is shared by the session).
README_EXAMPLE_TABLE = "my-cache"


def run_python_block(heading: str, document: Path) -> dict[str, object]:
    """The first python block after ``heading``, run in a namespace of its own."""
    namespace: dict[str, object] = {"__name__": document.stem}
    block = code_block_after(heading, "python", document=document)
    exec(compile(block, document.name, "exec"), namespace)
    return namespace


def test_the_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_the_readmes_links_lead_somewhere() -> None:
    """Its links into the docs site and the repository name files that exist."""
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    relative = [target for target in targets if "://" not in target]
    assert relative, "the README links into the docs site"
    assert [target for target in relative if not (README.parent / target).exists()] == []


def test_the_readmes_flask_example_caches_in_dynamodb(
    dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As written; only the endpoint differs, through botocore's own variable."""
    use_local_aws_credentials()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    monkeypatch.setenv("CACHE_SIGNING_KEY", "readme-example-key")
    heading = "## Use the backend in your own Flask app"
    namespace = run_python_block(heading, README)
    cache = namespace["cache"]
    cache.cache.create_table()  # the example's table comes from your infrastructure

    client = namespace["app"].test_client()
    answers = [client.get("/report").get_json() for _ in range(2)]

    assert answers == [{"report": "..."}] * 2
    assert cache.cache.table_name == README_EXAMPLE_TABLE
    assert cache.get("view//report") is not None, "the view's answer is not in the table"


def test_the_loader_example_runs_as_written() -> None:
    run_python_block("## The loader, without Flask", DOCS / "explanation" / "caching-strategies.md")


def test_the_near_cache_example_runs_as_written() -> None:
    run_python_block("## A near-cache over any backend", DOCS / "explanation" / "hot-path.md")


def test_the_migration_commands_run_as_written(tmp_path: Path) -> None:
    """The sh block of "Bring a database up to date", on a database of the test's own."""
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

    page = DOCS / "how-to" / "migrations.md"
    result = run(code_block_after("## Bring a database up to date", "sh", document=page))

    assert result.returncode == 0, result.stderr
    assert "0004_catalogue_triggers (head)" in result.stdout
    assert "0003_name_key -> 0004_catalogue_triggers (head)" in result.stdout
