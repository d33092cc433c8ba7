"""Settings: defaults, environment, overrides, and start-up refusal of bad values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecommerce import create_app
from ecommerce.config import DEFAULTS, MAX_REQUEST_BODY_BYTES, ConfigError
from ecommerce.extensions import db


@pytest.fixture
def config(database_uri: str) -> dict[str, Any]:
    """Overrides that keep the test off the repository's instance folder."""
    return {"SQLALCHEMY_DATABASE_URI": database_uri}


def test_defaults(clean_flask_env: None, config: dict[str, Any]) -> None:
    app = create_app(config)

    assert app.config["CACHE_TYPE"] == "SimpleCache"
    assert app.config["CATEGORIES_CACHE_TTL"] == 300
    assert app.config["CATEGORIES_CACHE_STRATEGY"] == "invalidate"
    assert app.config["DB_LATENCY_MS"] == 0
    assert app.config["MAX_CONTENT_LENGTH"] == MAX_REQUEST_BODY_BYTES
    assert app.config["ADMIN_TOKEN"] is None
    assert app.config["PROXY_FIX_X_FOR"] == 0  # no proxy is trusted unless the deploy says so
    assert (app.config["LOG_LEVEL"], app.config["LOG_FORMAT"]) == ("INFO", "json")


def test_default_database_is_a_sqlite_file_in_the_instance_folder(clean_flask_env: None) -> None:
    app = create_app()

    with app.app_context():
        database_path = Path(db.engine.url.database)
    assert database_path == Path(app.instance_path) / "ecommerce.sqlite"
    assert database_path.parent.is_dir()


def test_environment_values_are_parsed_as_json(
    clean_flask_env: None, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_TTL", "4")
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_STRATEGY", "write-through")
    monkeypatch.setenv("FLASK_DB_LATENCY_MS", "1200")

    app = create_app(config)

    assert app.config["CATEGORIES_CACHE_TTL"] == 4
    assert app.config["CATEGORIES_CACHE_STRATEGY"] == "write-through"
    assert app.config["DB_LATENCY_MS"] == 1200


def test_mapping_overrides_environment(
    clean_flask_env: None, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_TTL", "4")

    app = create_app({**config, "CATEGORIES_CACHE_TTL": 7})

    assert app.config["CATEGORIES_CACHE_TTL"] == 7


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("CATEGORIES_CACHE_STRATEGY", "write-around"),
        ("CATEGORIES_CACHE_TTL", -1),
        ("CATEGORIES_CACHE_TTL", "300"),
        ("CATEGORIES_CACHE_TTL", True),
        ("CACHE_DEFAULT_TIMEOUT", -5),
        ("DB_LATENCY_MS", -1),
        ("DB_LATENCY_MS", "slow"),
        ("CACHE_TYPE", "NoSuchCache"),
        ("CACHE_TYPE", "no_such_module.Cache"),
        ("CACHE_TYPE", ""),
        ("CACHE_KEY_PREFIX", 7),
        ("MAX_CONTENT_LENGTH", 0),
        ("SQLALCHEMY_DATABASE_URI", "not a url"),
        ("ADMIN_TOKEN", ""),
        ("ADMIN_TOKEN", 123),
        ("CACHE_DYNAMODB_CREATE_TABLE", "yes"),
        ("CACHE_DYNAMODB_TABLE", ""),
        ("CACHE_DYNAMODB_ENDPOINT_URL", 8001),
        ("PROXY_FIX_X_FOR", -1),
        ("PROXY_FIX_X_PROTO", "1"),
        ("PROXY_FIX_X_HOST", True),
        ("LOG_LEVEL", "info"),
        ("LOG_LEVEL", "VERBOSE"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_stops_start_up_naming_the_setting(
    clean_flask_env: None, config: dict[str, Any], setting: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=setting):
        create_app({**config, setting: value})


def test_bad_value_from_environment_stops_start_up(
    clean_flask_env: None, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_TTL", "-4")

    with pytest.raises(ConfigError, match="CATEGORIES_CACHE_TTL"):
        create_app(config)


def test_every_bad_setting_is_reported_at_once(
    clean_flask_env: None, config: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as error:
        create_app({**config, "CATEGORIES_CACHE_TTL": -1, "DB_LATENCY_MS": -1})

    assert "CATEGORIES_CACHE_TTL" in str(error.value)
    assert "DB_LATENCY_MS" in str(error.value)


def test_a_numeric_token_from_the_environment_is_refused_without_echoing_it(
    clean_flask_env: None, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """from_prefixed_env turns FLASK_ADMIN_TOKEN=98765 into an int: refuse rather than alter it."""
    monkeypatch.setenv("FLASK_ADMIN_TOKEN", "98765")

    with pytest.raises(ConfigError, match="ADMIN_TOKEN") as error:
        create_app(config)

    assert "98765" not in str(error.value)


def test_valid_values_start(clean_flask_env: None, config: dict[str, Any]) -> None:
    """The boundaries of each check are accepted, so the refusals above are not blanket ones."""
    app = create_app(
        {
            **config,
            "CATEGORIES_CACHE_TTL": 0,
            "CATEGORIES_CACHE_STRATEGY": "write-through",
            "DB_LATENCY_MS": 0.5,
            "CACHE_TYPE": "flask_caching.backends.SimpleCache",
            "ADMIN_TOKEN": "s3cret",
            "PROXY_FIX_X_FOR": 2,
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "text",
        }
    )

    assert app.config["DB_LATENCY_MS"] == 0.5
    assert set(DEFAULTS) <= set(app.config)
