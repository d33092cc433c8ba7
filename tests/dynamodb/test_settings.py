"""settings.py: every CACHE_DYNAMODB_* setting checked once, for the factory and the app alike."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from werkzeug.utils import import_string

from cache_backends.dynamodb.backend import DynamoDBCache
from cache_backends.dynamodb.settings import (
    CACHE_TYPE,
    DEFAULT_GET_TIMEOUT,
    DEFAULT_TABLE_NAME,
    SETTINGS,
    DynamoDBSettings,
    config_problems,
)
from devtools.dynamodb_local import DynamoDBLocal
from tests.support.caches import TEST_SIGNING_KEY
from tests.support.dynamodb import MakeCache, flask_cache

#: What the app's config module may load to check these settings: nothing heavy.
HEAVY_MODULES = {"pynamodb", "botocore", "flask_caching", "click", "flask"}


def test_importing_the_settings_loads_no_backend_library() -> None:
    """ecommerce/config.py (and gunicorn's master) check settings without building a cache."""
    probe = "import sys, cache_backends.dynamodb.settings; print(*sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {name.split(".")[0] for name in loaded} & HEAVY_MODULES == set()


def test_cache_type_names_the_backend_as_flask_caching_imports_it() -> None:
    assert import_string(CACHE_TYPE) is DynamoDBCache


# -- the app's start-up check ----------------------------------------------------------


def test_every_bad_setting_is_reported_with_its_name_and_value() -> None:
    problems = config_problems(
        {
            "CACHE_DYNAMODB_CREATE_TABLE": "yes",
            "CACHE_DYNAMODB_MAX_POOL": 0,
            "CACHE_DYNAMODB_ENDPOINT_URL": 8001,
            "CACHE_DYNAMODB_TABLE": "",
            "CACHE_DYNAMODB_READ_TIMEOUT": "1s",
            "CACHE_DYNAMODB_SIGNING_KEY": "fine",
        },
        backend_selected=True,
    )

    assert problems == [
        "CACHE_DYNAMODB_TABLE='' must not be empty",
        "CACHE_DYNAMODB_ENDPOINT_URL=8001 must be a string "
        "(in the environment, quote digits as JSON: '\"12345\"')",
        "CACHE_DYNAMODB_CREATE_TABLE='yes' must be true or false",
        "CACHE_DYNAMODB_READ_TIMEOUT='1s' must be a number >= 0",
        "CACHE_DYNAMODB_MAX_POOL=0 must be an integer > 0",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("CACHE_DYNAMODB_SIGNING_KEY", 98765), ("CACHE_DYNAMODB_OLD_SIGNING_KEYS", ["s3cret", ""])],
)
def test_a_bad_secret_is_named_but_never_shown(name: str, value: Any) -> None:
    (problem,) = config_problems({name: value}, backend_selected=False)

    assert problem.startswith(f"{name}=<{type(value).__name__} hidden> must be")
    assert "98765" not in problem and "s3cret" not in problem


def test_absent_settings_and_flask_cachings_own_are_not_this_backends_to_refuse() -> None:
    """CACHE_DEFAULT_TIMEOUT and CACHE_KEY_PREFIX are checked by the app for every backend."""
    assert config_problems({}, backend_selected=False) == []
    assert config_problems({"CACHE_DEFAULT_TIMEOUT": -1}, backend_selected=False) == []


def test_a_signing_key_is_required_only_when_the_backend_is_selected() -> None:
    assert config_problems({}, backend_selected=False) == []
    (problem,) = config_problems({}, backend_selected=True)
    assert problem.startswith("CACHE_DYNAMODB_SIGNING_KEY is not set")
    assert config_problems({"SECRET_KEY": "app secret"}, backend_selected=True) == []
    assert config_problems({"CACHE_DYNAMODB_SIGNING_KEY": "k"}, backend_selected=True) == []


@pytest.mark.parametrize("old_keys", [None, [], "old", ["old", "older"]])
def test_old_signing_keys_the_backend_reads_are_accepted(old_keys: Any) -> None:
    config = {"CACHE_DYNAMODB_SIGNING_KEY": "k", "CACHE_DYNAMODB_OLD_SIGNING_KEYS": old_keys}
    assert config_problems(config, backend_selected=True) == []


# -- from_config: what the factory builds ------------------------------------------------


def test_from_config_fills_in_the_defaults() -> None:
    settings = DynamoDBSettings.from_config({"CACHE_DYNAMODB_SIGNING_KEY": "k"})

    assert settings.as_kwargs() == {
        **{setting.field: setting.default for setting in SETTINGS},
        "signing_key": "k",
    }
    assert (settings.table_name, settings.get_timeout) == (DEFAULT_TABLE_NAME, DEFAULT_GET_TIMEOUT)


def test_from_config_reads_values_as_the_backend_takes_them() -> None:
    settings = DynamoDBSettings.from_config(
        {
            "SECRET_KEY": "app secret",
            "CACHE_DYNAMODB_OLD_SIGNING_KEYS": "old",
            "CACHE_DYNAMODB_READ_TIMEOUT": 2,
            "CACHE_KEY_PREFIX": "app:",
            "CACHE_DEFAULT_TIMEOUT": 60,
        }
    )

    assert settings.signing_key == "app secret", "SECRET_KEY is the fallback"
    assert settings.old_signing_keys == ("old",), "one key, not its characters"
    assert settings.read_timeout == 2.0 and type(settings.read_timeout) is float
    assert (settings.key_prefix, settings.default_timeout) == ("app:", 60)


def test_from_config_refuses_every_bad_setting_on_one_line() -> None:
    with pytest.raises(ValueError) as refused:
        DynamoDBSettings.from_config({"CACHE_DYNAMODB_MAX_RETRIES": -1, "CACHE_KEY_PREFIX": 7})

    message = str(refused.value)
    assert "\n" not in message
    for name in ("CACHE_DYNAMODB_MAX_RETRIES", "CACHE_KEY_PREFIX", "CACHE_DYNAMODB_SIGNING_KEY"):
        assert name in message


# -- the factory, through Flask-Caching ---------------------------------------------------


def test_factory_reads_the_flask_config(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    app, cache = flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_REGION": "us-east-1",
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "CACHE_DYNAMODB_CONSISTENT_READ": False,
            "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
            "CACHE_KEY_PREFIX": "flask:",
            "CACHE_DEFAULT_TIMEOUT": 42,
        }
    )
    backend = cache.cache
    assert isinstance(backend, DynamoDBCache)
    assert (backend.table_name, backend.key_prefix, backend.default_timeout) == (
        table_name,
        "flask:",
        42,
    )
    assert backend.consistent_read is False
    with app.app_context():
        assert cache.set("k", [1]) and cache.get("k") == [1]


def test_factory_falls_back_to_secret_key(dynamodb_local: DynamoDBLocal, table_name: str) -> None:
    _, cache = flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_CREATE_TABLE": True,
            "SECRET_KEY": "app-secret",
        }
    )
    assert cache.cache.set("k", 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CACHE_DYNAMODB_CONSISTENT_READ", "False"),
        ("CACHE_DYNAMODB_READ_TIMEOUT", "1.0"),
        ("CACHE_DYNAMODB_MAX_RETRIES", True),
    ],
)
def test_factory_refuses_a_setting_of_the_wrong_type(
    dynamodb_local: DynamoDBLocal, name: str, value: Any
) -> None:
    """FLASK_X=False is not JSON, so it arrives as the string "False": never truthy here."""
    with pytest.raises(ValueError, match=name):
        flask_cache(
            {
                "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
                "CACHE_DYNAMODB_SIGNING_KEY": TEST_SIGNING_KEY,
                name: value,
            }
        )


def test_a_single_old_signing_key_is_one_key_not_its_characters(
    dynamodb_local: DynamoDBLocal, table_name: str, make_cache: MakeCache
) -> None:
    forged_with_one_character = make_cache(signing_key="o")
    make_cache(signing_key="old").set("k", "v")
    forged_with_one_character.set("forged", "evil")
    _, cache = flask_cache(
        {
            "CACHE_DYNAMODB_TABLE": table_name,
            "CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url,
            "CACHE_DYNAMODB_SIGNING_KEY": "new",
            "CACHE_DYNAMODB_OLD_SIGNING_KEYS": "old",
            "CACHE_KEY_PREFIX": "",  # the items above were written without one
        }
    )
    assert cache.cache.get("k") == "v"
    assert cache.cache.get("forged") is None


def test_factory_refuses_to_start_without_a_signing_key(dynamodb_local: DynamoDBLocal) -> None:
    with pytest.raises(ValueError, match="CACHE_DYNAMODB_SIGNING_KEY"):
        flask_cache({"CACHE_DYNAMODB_ENDPOINT_URL": dynamodb_local.endpoint_url})
