"""Settings: defaults, environment, overrides, and start-up refusal of bad values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from devtools import REPOSITORY_ROOT
from devtools.fleet import flask_environment
from devtools.ports import free_port
from devtools.postgresql import LocalPostgreSQL
from ecommerce import create_app
from ecommerce.config import (
    BAD_SETTING_EXIT_STATUS,
    DEFAULTS,
    MAX_REQUEST_BODY_BYTES,
    ConfigError,
    check_environment,
    validate_config,
)
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
        ("CACHE_DYNAMODB_CONNECT_TIMEOUT", "1s"),
        ("CACHE_DYNAMODB_MAX_POOL", 0),
        ("CACHE_DYNAMODB_CONSISTENT_READ", "no"),
        ("CACHE_DYNAMODB_OLD_SIGNING_KEYS", [""]),
        ("PROXY_FIX_X_FOR", -1),
        ("PROXY_FIX_X_PROTO", "1"),
        ("PROXY_FIX_X_HOST", True),
        ("LOG_LEVEL", "info"),
        ("LOG_LEVEL", "VERBOSE"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_POOL_SIZE", 0),
        ("DATABASE_MAX_OVERFLOW", -1),
        ("DATABASE_POOL_TIMEOUT", "10s"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", 1.5),
    ],
)
def test_bad_value_stops_start_up_naming_the_setting(
    clean_flask_env: None, config: dict[str, Any], setting: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=setting):
        create_app({**config, setting: value})


def test_database_settings_size_the_pool_and_time_out_statements_on_postgresql(
    clean_flask_env: None, postgresql: LocalPostgreSQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("FLASK_DATABASE_MAX_OVERFLOW", "2")
    monkeypatch.setenv("FLASK_DATABASE_STATEMENT_TIMEOUT_MS", "1500")

    app = create_app({"SQLALCHEMY_DATABASE_URI": postgresql.create_database()})

    with app.app_context():
        engine = db.engine
        with engine.connect() as connection:
            timeout = connection.execute(text("SHOW statement_timeout")).scalar()
        engine.dispose()
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 2)
    assert timeout == "1500ms"


def test_engine_options_given_directly_win_over_the_database_settings(
    clean_flask_env: None, config: dict[str, Any]
) -> None:
    app = create_app({**config, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False}})

    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {"pool_pre_ping": False}


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


DYNAMODB = {"CACHE_TYPE": "cache_backends.dynamodb.DynamoDBCache"}


def test_the_dynamodb_cache_needs_a_signing_key_before_any_backend_is_built() -> None:
    with pytest.raises(ConfigError, match="CACHE_DYNAMODB_SIGNING_KEY is not set"):
        validate_config({**DEFAULTS, **DYNAMODB})


@pytest.mark.parametrize(
    "key_settings",
    [
        {"CACHE_DYNAMODB_SIGNING_KEY": "k", "CACHE_DYNAMODB_OLD_SIGNING_KEYS": []},
        {"CACHE_DYNAMODB_SIGNING_KEY": "k", "CACHE_DYNAMODB_OLD_SIGNING_KEYS": "old"},
        {"SECRET_KEY": "the backend's fallback"},
    ],
)
def test_signing_keys_the_backend_accepts_are_accepted(key_settings: dict[str, Any]) -> None:
    validate_config({**DEFAULTS, **DYNAMODB, **key_settings})


def test_the_environment_check_exits_with_one_line(
    clean_flask_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_TTL", "abc")  # not JSON: stays the string "abc"

    with pytest.raises(SystemExit) as exit_info:
        check_environment()

    assert exit_info.value.code != 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "invalid configuration: CATEGORIES_CACHE_TTL='abc' must be an integer >= 0"


def test_a_misspelled_setting_is_refused_with_the_one_it_resembles(
    clean_flask_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLASK_CATEGORIES_CACHE_STRATAGY", "write-through")

    with pytest.raises(SystemExit):
        check_environment()

    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "invalid configuration: FLASK_CATEGORIES_CACHE_STRATAGY is not a setting "
        "(did you mean FLASK_CATEGORIES_CACHE_STRATEGY?)"
    )


def test_names_far_from_every_setting_and_flasks_own_variables_pass(
    clean_flask_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another extension's setting, Flask's CLI variables, nested entries."""
    for variable in ("FLASK_MAIL_SERVER", "FLASK_APP", "FLASK_RUN_PORT", "FLASK_A__B"):
        monkeypatch.setenv(variable, "x")

    check_environment()


def test_a_setting_without_its_prefix_is_named_in_one_warning(
    make_app: Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CATEGORIES_CACHE_STRATEGY", "write-through")
    monkeypatch.setenv("CACHE_DYNAMODB_REGION", "eu-west-1")

    app = make_app()

    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [
        "ignored: CACHE_DYNAMODB_REGION, CATEGORIES_CACHE_STRATEGY set in the environment "
        "without the FLASK_ prefix (the app reads FLASK_CACHE_DYNAMODB_REGION, "
        "FLASK_CATEGORIES_CACHE_STRATEGY)"
    ]
    assert app.config["CATEGORIES_CACHE_STRATEGY"] == "invalidate"


# --- start-up as an operator sees it: real processes ---------------------------------

#: Each bad environment, and the setting its one line must name.
BAD_ENVIRONMENTS = {
    "ttl-not-a-number": ({"CATEGORIES_CACHE_TTL": "abc"}, "CATEGORIES_CACHE_TTL"),
    "dynamodb-without-key": (DYNAMODB, "CACHE_DYNAMODB_SIGNING_KEY"),
    "misspelled": (
        {"CATEGORIES_CACHE_STRATAGY": "write-through"},
        "FLASK_CATEGORIES_CACHE_STRATEGY",
    ),
}
#: A refusal comes before any worker starts or any table is looked at: about a second.
REFUSAL_TIMEOUT_SECONDS = 30


def refused_start(
    command: list[str], environment: dict[str, str], why: str = "invalid configuration"
) -> str:
    """Run ``command``, which must refuse to start; its output, with one line naming ``why``."""
    result = subprocess.run(
        command,
        cwd=REPOSITORY_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == BAD_SETTING_EXIT_STATUS, output
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if why in line]) == 1
    return output


@pytest.mark.parametrize(
    ("settings", "setting_name"), BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS
)
def test_a_bad_setting_stops_a_flask_command_with_one_line(
    settings: dict[str, Any], setting_name: str, tmp_path: Path
) -> None:
    database = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'never-created.sqlite'}"}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"]

    output = refused_start(command, flask_environment({**database, **settings}))

    assert output.strip().splitlines() == [output.strip()], "one line, nothing else"
    assert setting_name in output
    assert not (tmp_path / "never-created.sqlite").exists()


@pytest.mark.parametrize(
    ("settings", "setting_name"), BAD_ENVIRONMENTS.values(), ids=BAD_ENVIRONMENTS
)
def test_a_bad_setting_stops_gunicorn_before_it_forks_a_worker(
    settings: dict[str, Any], setting_name: str, tmp_path: Path
) -> None:
    """The master checks the environment: no "Worker failed to boot", no worker at all."""
    environment = flask_environment(settings) | {
        "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
        "TMPDIR": str(tmp_path),  # where gunicorn.conf.py creates its Prometheus directory
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)

    output = refused_start([sys.executable, "-m", "gunicorn", "wsgi:app"], environment)

    assert setting_name in output
    assert "Booting worker" not in output
    assert os.listdir(tmp_path) == [], "the Prometheus directory is removed on the way out"


def test_dynamodb_without_a_region_stops_start_up_with_one_line(
    tmp_path: Path,
) -> None:
    """botocore's NoRegionError was a traceback per worker; now a setting like the others."""
    settings = {
        **DYNAMODB,
        "CACHE_DYNAMODB_SIGNING_KEY": "k",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'never-created.sqlite'}",
    }
    environment = flask_environment(settings) | {"AWS_CONFIG_FILE": str(tmp_path / "none")}
    for variable in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        environment.pop(variable, None)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"]

    output = refused_start(command, environment)

    assert output.strip() == (
        "invalid configuration: CACHE_DYNAMODB_REGION is not set and the AWS chain gives no "
        "region: set FLASK_CACHE_DYNAMODB_REGION, or AWS_DEFAULT_REGION (or a profile's region)"
    )


def test_gunicorn_on_a_taken_address_names_the_setting_at_once(tmp_path: Path) -> None:
    """gunicorn retried five times, a second apart, then said "Can't connect"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        environment = flask_environment({}) | {"GUNICORN_BIND": address, "TMPDIR": str(tmp_path)}
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)

        output = refused_start(
            [sys.executable, "-m", "gunicorn", "wsgi:app"],
            environment,
            why=f"GUNICORN_BIND={address}: Address already in use",
        )

    assert "Retrying" not in output and "Booting worker" not in output
    assert os.listdir(tmp_path) == [], "the Prometheus directory is removed on the way out"
