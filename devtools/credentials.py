"""The one set of development credentials: every local run, test and benchmark uses these.

None of them protects anything. DynamoDB Local accepts any AWS credentials, but
botocore signs every request and would otherwise look for (and maybe find) a real
account; the signing key and admin token only exist because the app refuses to
run without them. The Makefile restates two of them for its shell recipes
(``DEV_SIGNING_KEY``, ``FLASK_ADMIN_TOKEN``); tests/project/test_devtools.py holds both to these.
"""

from __future__ import annotations

import os

#: Dummies so botocore signs requests without looking for a real account.
LOCAL_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: Every instance of a local fleet must verify what the others wrote: one key for all.
DEV_SIGNING_KEY = "dev-only-signing-key-not-for-production"
#: Writes are refused without an ADMIN_TOKEN: every local instance gets this one unless
#: its settings name another, and clients send it as ``DEV_ADMIN_AUTHORIZATION``.
DEV_ADMIN_TOKEN = "dev-only-admin-token"
DEV_ADMIN_AUTHORIZATION = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}


def use_local_aws_credentials() -> None:
    """Give botocore the dummy credentials unless the caller already chose some.

    All or nothing for the key pair: a real key id beside a dummy secret would only
    fail later and more confusingly.
    """
    if "AWS_ACCESS_KEY_ID" not in os.environ:
        os.environ.update(LOCAL_AWS_ENVIRONMENT)
    os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_AWS_ENVIRONMENT["AWS_DEFAULT_REGION"])
