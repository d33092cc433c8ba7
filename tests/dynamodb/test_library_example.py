"""examples/flask_app.py, the backend in a Flask app of one's own, against DynamoDB Local:
``@cache.cached`` and ``@cache.memoize`` compute once, and what they store is in the table
(another process of the app, built again, is answered from it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from types import ModuleType

import pytest

from devtools import REPOSITORY_ROOT
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal

EXAMPLE = REPOSITORY_ROOT / "examples" / "flask_app.py"


def load_example() -> ModuleType:
    """The example as ``flask --app examples/flask_app.py`` loads it in a process: a module
    named ``flask_app`` (memoize's keys carry the function's module and name)."""
    spec = importlib.util.spec_from_file_location("flask_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_environment(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    use_local_aws_credentials()
    monkeypatch.setenv("EXAMPLE_DYNAMODB_URL", dynamodb_local.endpoint_url)
    monkeypatch.setenv("EXAMPLE_CACHE_TABLE", f"example-{uuid.uuid4().hex[:8]}")


def test_cached_and_memoized_compute_once_and_share_through_the_table(
    example_environment: None,
) -> None:
    first = load_example()
    client = first.app.test_client()
    pages = [client.get("/report").get_json() for _ in range(3)]
    squares = [client.get("/square/12").get_json() for _ in range(3)]

    assert pages[0] == pages[1] == pages[2]
    assert squares == [{"number": 12, "square": 144}] * 3
    assert first.computed == {"report": 1, "square": 1}

    second = load_example()  # as in another process: nothing in its memory
    client = second.app.test_client()
    assert client.get("/report").get_json() == pages[0]
    assert client.get("/square/12").get_json() == {"number": 12, "square": 144}
    assert second.computed == {"report": 0, "square": 0}, "not answered from the table"


def test_flask_loads_it_as_its_docstring_says(example_environment: None) -> None:
    """``flask --app examples/flask_app.py``, from the repository root."""
    assert "flask --app examples/flask_app.py run" in EXAMPLE.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "examples/flask_app.py", "routes"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "/report" in result.stdout and "/square/<int:number>" in result.stdout
