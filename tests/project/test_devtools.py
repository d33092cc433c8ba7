"""devtools/: development tooling stays out of the wheel; its credentials are the Makefile's."""

from __future__ import annotations

import configparser
import re

import boto3
import setuptools

from devtools import REPOSITORY_ROOT
from devtools.credentials import DEV_ADMIN_TOKEN, DEV_SIGNING_KEY
from devtools.dynamodb_local import DynamoDBLocal

#: Packages that only development needs; none may ship to a deploy.
DEVELOPMENT_PACKAGES = ("devtools", "scripts", "benchmarks", "tests")


def makefile_variable(name: str) -> str:
    """The value the Makefile assigns to ``name`` (``:=`` or ``?=``)."""
    text = (REPOSITORY_ROOT / "Makefile").read_text()
    match = re.search(rf"^{name} [:?]= (.+)$", text, re.MULTILINE)
    assert match, f"the Makefile assigns no {name}"
    return match.group(1).strip()


def test_the_wheel_ships_the_app_and_the_backend_only() -> None:
    """setup.cfg's find configuration, as setuptools applies it to the checkout."""
    config = configparser.ConfigParser()
    config.read(REPOSITORY_ROOT / "setup.cfg")
    include = config["options.packages.find"]["include"].split()

    shipped = setuptools.find_packages(where=str(REPOSITORY_ROOT), include=include)

    assert {"ecommerce", "cache_backends"} <= set(shipped)
    assert [name for name in shipped if name.split(".")[0] in DEVELOPMENT_PACKAGES] == []


def test_the_makefile_runs_with_the_development_credentials() -> None:
    """Its shell recipes restate two of them: a drift would make `make cluster` and
    `make run-dynamodb` instances reject each other's entries or writes."""
    assert makefile_variable("DEV_SIGNING_KEY") == DEV_SIGNING_KEY
    assert makefile_variable("FLASK_ADMIN_TOKEN") == DEV_ADMIN_TOKEN


def test_the_warm_up_leaves_dynamodb_local_as_it_found_it(dynamodb_local: DynamoDBLocal) -> None:
    client = boto3.client(
        "dynamodb", endpoint_url=dynamodb_local.endpoint_url, region_name="us-east-1"
    )
    tables_before = client.list_tables()["TableNames"]

    dynamodb_local.warm_up(rounds=2)

    assert client.list_tables()["TableNames"] == tables_before
