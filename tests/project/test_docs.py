"""The docs say what the code does: settings that exist, examples that would be accepted.

Each check is one a past edit broke: an env example offering a variable nothing
read (GUNICORN_THREADS after the switch to gevent), internal issue numbers users
cannot follow, a curl write without the bearer token (401). The site builds with
``mkdocs build --strict`` (every page in the nav, every link and anchor found), and
its reference tables are the ones the code gives (``scripts/reference_docs.py``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cache_backends.dynamodb.settings import SETTINGS
from ecommerce.config import DEFAULTS, misspelled_settings
from scripts import reference_docs

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "deploy" / "ecommerce.env.example"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Files whose shell examples readers copy.
EXAMPLE_FILES = [*USER_DOCS, *sorted((ROOT / "scripts").glob("*.py"))]

FLASK_SETTINGS = set(DEFAULTS) | {setting.name for setting in SETTINGS}
#: Shown on purpose: the docs' example of a name the app refuses, naming the setting.
DOCUMENTED_MISSPELLINGS = {"CATEGORIES_CACHE_STRATAGY"}
#: Read by gunicorn itself or by gunicorn.conf.py, not as GUNICORN_*.
OTHER_VARIABLES = {"FORWARDED_ALLOW_IPS", "PROMETHEUS_MULTIPROC_DIR"}
WRITE_METHOD = re.compile(r"-X\s*(POST|PATCH|PUT|DELETE)\b")


def gunicorn_variables() -> set[str]:
    """GUNICORN_* names gunicorn.conf.py reads (its docstring lists the same ones)."""
    source = GUNICORN_CONF.read_text()
    return set(re.findall(r"\"(GUNICORN_[A-Z_]+)\"", source)) | {"GUNICORN_CMD_ARGS"}


def env_example_variables() -> list[str]:
    """Every variable the example sets or offers commented out (``#NAME='...'``)."""
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    return list(dict.fromkeys(names))


@pytest.mark.parametrize("name", env_example_variables())
def test_every_variable_in_the_env_example_is_read_by_the_code(name: str) -> None:
    if name.startswith("FLASK_"):
        assert name.removeprefix("FLASK_") in FLASK_SETTINGS, f"{name}: no such app setting"
    else:
        assert name in gunicorn_variables() | OTHER_VARIABLES, f"{name}: nothing reads it"


def test_every_gunicorn_variable_read_is_in_the_docstring() -> None:
    docstring = GUNICORN_CONF.read_text().split('"""')[1]
    assert {name for name in gunicorn_variables() if name not in docstring} == set()


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("document", USER_DOCS, ids=page_id)
def test_documented_flask_settings_exist(document: Path) -> None:
    named = set(re.findall(r"\bFLASK_([A-Z][A-Z0-9_]*[A-Z0-9])\b", document.read_text()))
    assert named - FLASK_SETTINGS - DOCUMENTED_MISSPELLINGS == set()


def test_the_misspelling_the_readme_shows_is_refused_as_it_says() -> None:
    variables = {f"FLASK_{name}": "" for name in DOCUMENTED_MISSPELLINGS}
    assert len(misspelled_settings(variables)) == len(DOCUMENTED_MISSPELLINGS)


@pytest.mark.parametrize("document", USER_DOCS, ids=page_id)
def test_docs_cite_no_internal_issue_numbers(document: Path) -> None:
    assert re.findall(r"\bissue \d+", document.read_text(), re.IGNORECASE) == []


def curl_commands(text: str) -> list[str]:
    """Each curl command with its continuation lines (``\\`` or, in a docstring, ``\\\\``)."""
    commands, current = [], None
    for line in text.splitlines():
        if current is None and "curl " in line:
            current = line
        elif current is not None:
            current += " " + line.strip()
        if current is not None and not line.rstrip().endswith("\\"):
            commands.append(current)
            current = None
    return commands


@pytest.mark.parametrize("example_file", EXAMPLE_FILES, ids=page_id)
def test_curl_writes_carry_the_bearer_token(example_file: Path) -> None:
    writes = [c for c in curl_commands(example_file.read_text()) if WRITE_METHOD.search(c)]
    assert [c for c in writes if "Authorization: Bearer" not in c] == []


def generated_block(page: Path, block: str) -> str:
    """What ``make bench-fleet ARGS=--write-docs`` wrote between ``page``'s markers."""
    text = page.read_text()
    start, end = f"<!-- bench-fleet:{block} -->\n", f"\n<!-- /bench-fleet:{block} -->"
    assert start in text and end in text, f"{page.name} lost its bench-fleet:{block} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_deploy_guides_costs_are_the_fleet_benchmarks_model() -> None:
    """The cost table operators read is the model of the run docs/bench-fleet.md shows."""
    run = generated_block(ROOT / "docs" / "bench-fleet.md", "run")
    model = generated_block(ROOT / "docs" / "deploy.md", "model")
    table = model.split("\n\n(`make bench-fleet`", 1)[0]
    assert table in run, "docs/deploy.md's model is not the one of docs/bench-fleet.md's run"


def test_the_reference_pages_are_what_the_code_says() -> None:
    """Settings, metrics, commands and routes as the generator writes them from the code."""
    stale = reference_docs.stale_pages()
    assert [page_id(page) for page in stale] == [], reference_docs.REGENERATE


def test_every_setting_meaning_belongs_to_a_setting() -> None:
    assert reference_docs.unused_meanings() == set()


def test_the_site_builds_strictly() -> None:
    """``make docs`` as the README shows it: ``mkdocs build --strict`` (as ``make lint``
    runs it) into ``site/``, where a page missing from the nav, a broken link or anchor, a
    missing include fail it; it names the page to open."""
    result = subprocess.run(
        ["make", "--no-print-directory", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    opened = re.search(r"file://(\S+)", result.stdout)
    assert opened and Path(opened.group(1)).is_file(), result.stdout


def test_the_backend_manual_and_the_how_to_rotate_in_the_same_order() -> None:
    """The backend's docstring (the library's manual) and the how-to tell one order: accept
    the new key everywhere first, sign with it second, drop the old key last. Told the
    other way round, every instance not yet rolled rejects what the rolled ones write."""
    from cache_backends.dynamodb import DynamoDBCache

    manual = " ".join((DynamoDBCache.__doc__ or "").split())
    assert (
        manual.index("first deploy the new key here")
        < manual.index("then deploy it as ``signing_key`` with the old one here")
        < manual.index("drop the old one")
    )
    how_to = (ROOT / "docs" / "how-to" / "rotate-signing-keys.md").read_text()
    steps = re.findall(r"^\d\. (.+(?:\n   .+)*)", how_to, flags=re.MULTILINE)
    assert 'OLD_SIGNING_KEYS=["<new>"]' in steps[0]
    assert "SIGNING_KEY=<new>" in steps[1] and 'OLD_SIGNING_KEYS=["<old>"]' in steps[1]
    assert "OLD_SIGNING_KEYS=[]" in steps[2]
