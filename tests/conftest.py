"""Shared fixtures: one DynamoDB Local per test session, fake AWS credentials.

Credentials are forced to dummies before anything imports botocore, so no test
can ever reach a real AWS account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from cache_backends.local import DynamoDBLocal

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)

#: Tests sign entries with this; the app refuses to start with DynamoDB and no key.
TEST_SIGNING_KEY = "test-signing-key"


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """The session's DynamoDB Local (in memory, shared by every test)."""
    with DynamoDBLocal() as ddb:
        yield ddb


@pytest.fixture
def table_name() -> str:
    """A table name no other test uses, so tests never see each other's items."""
    return f"test-cache-{uuid.uuid4().hex[:12]}"
