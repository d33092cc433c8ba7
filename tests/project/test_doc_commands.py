"""The docs' commands that no other test replays: run as written, or checked as accepted.

The curl story (test_readme_story.py), the deploy guide's AWS commands
(test_deploy_guide.py), the region's example app (tests/integration/test_region_example.py)
and the README's and explanation pages' Python (test_readme.py) have tests of their own.
This module takes the rest, block by block, found by the heading above it:

- Run as written, on this machine: docs/region.md's ``flask run`` on SimpleCache and on
  DynamoDB Local with its curl lines, the backend page's Python without Flask, the deploy
  guide's ``flask db`` lines (on a SQLite database of the test's own).
  What differs from a reader's terminal, as in the story test: the ports (a free one for
  ``5000`` and ``8001``), the database (a fresh file, named through the setting the app
  reads), and ``.venv/bin/`` or ``/opt/ecommerce/current/.venv/bin/``, which become the
  virtualenv running the tests (``.venv`` itself under ``make test``).
- Checked as accepted only, because they need what this machine has not (an AWS
  account, an EC2 instance, sudo and systemd) or run for minutes (the suite, a release):
  each ``make`` target exists and ``make -n`` takes it with the block's variables; each
  ``aws`` call names an operation and options of the service's API, and its ``--query``
  fields exist in the answer (botocore's own service models); each ``flask`` command
  exists (``--help``); each repository file a block installs exists.
- The commands the text names inline (`make cluster CLUSTER_PORT=8090`, `flask cache clear
  --yes`, `python -m benchmarks.http --sustained 180`) are checked as accepted the same
  way: the target and variables are the Makefile's, the options the script's or the
  ``flask`` command's.

``BLOCK_TESTS`` at the end names, for every fenced block of the README and the docs site,
the test that runs or reads it, so that a new block without one fails here.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.session
import jmespath
import pytest
from botocore import xform_name
from botocore.exceptions import DataNotFoundError
from botocore.model import ListShape, Shape, StructureShape
from flask.testing import FlaskClient

from cache_backends import signals
from devtools import REPOSITORY_ROOT
from devtools.credentials import use_local_aws_credentials
from devtools.dynamodb_local import DynamoDBLocal
from devtools.ports import free_port, wait_for_port
from devtools.processes import background_process
from tests.support.dynamodb import CallLog
from tests.support.logs import json_log_lines
from tests.support.readme import DOCS, README, code_block_after, commands

REGION_PAGE = DOCS / "region.md"
BACKEND_PAGE = DOCS / "reference" / "backend.md"
GUIDE = DOCS / "deploy.md"
LAYOUT_PAGE = DOCS / "reference" / "layout.md"
#: Where the blocks find the virtualenv: the checkout's, or a deployed release's.
VENV_BIN = re.compile(r"(?:/opt/ecommerce/current/)?\.venv/bin/")
#: The ports the region page's blocks name: flask run's default, DynamoDB Local's.
FLASK_RUN_PORT = "5000"
DYNAMODB_LOCAL_PORT = "8001"
#: A cold JVM for DynamoDB Local on a busy machine, then the flask dev server.
START_TIMEOUT_SECONDS = 60.0
#: The prices app's seed and what the page's PUT makes of it, as its curl comments say.
SEEDED_PRICES = '{"EUR":1.0,"USD":1.08}'
WRITTEN_PRICES = '{"EUR":0.95,"USD":1.08}'


def with_test_venv(command: str) -> str:
    """``command`` with its virtualenv paths on the virtualenv that runs the tests."""
    return VENV_BIN.sub(f"{Path(sys.executable).parent}/", command)


def clean_environment(**settings: str) -> dict[str, str]:
    """The test's environment without its own FLASK_ and AWS_ settings, plus ``settings``."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("FLASK_", "AWS_"))
    }
    return environment | settings


def run_shell(script: str, environment: Mapping[str, str], cwd: Path = REPOSITORY_ROOT) -> str:
    """``script`` in bash, failing on any line's failure; its output."""
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- docs/region.md: the prices app on SimpleCache and on DynamoDB Local -----------------


@contextmanager
def serving(command: str, port: int, environment: Mapping[str, str], log: Path) -> Iterator[None]:
    """``command`` (one shell command, continuation lines and all) until it listens on
    ``port``; stopped (SIGTERM to its process group) at the end."""
    with background_process(
        ["bash", "-c", command], log, cwd=REPOSITORY_ROOT, env=dict(environment)
    ) as process:
        try:
            wait_for_port(port, START_TIMEOUT_SECONDS, process, server_name=command)
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(log.read_text(errors="replace")) from error
        yield


def replay_the_prices_curl_lines(port: int) -> str:
    block = code_block_after("## Run it on SimpleCache", "sh", skip=1, document=REGION_PAGE)
    script = block.replace(f"127.0.0.1:{FLASK_RUN_PORT}", f"127.0.0.1:{port}")
    return run_shell(script, clean_environment())


def assert_the_curl_lines_answer_as_their_comments_say(output: str) -> None:
    assert re.findall(r"X-Cache: \w+", output) == ["X-Cache: MISS", "X-Cache: HIT", "X-Cache: MISS"]
    assert output.count(SEEDED_PRICES) == 2, output  # the MISS's body and the HIT's
    assert '"rate":0.95' in output  # the PUT's answer
    assert output.rstrip().endswith(WRITTEN_PRICES), output


@pytest.mark.slow
@pytest.mark.parametrize("heading", ["## Run it on SimpleCache", "## Run it on DynamoDB"])
def test_the_prices_app_runs_as_the_page_says(
    heading: str, tmp_path: Path, dynamodb_local: DynamoDBLocal
) -> None:
    """The page's start line, then its curl lines. ``dynamodb_local`` only makes sure the
    jar is there: the DynamoDB block starts its own on the port it names (a free one here)."""
    port, ddb_port = free_port(), free_port()
    command = with_test_venv(code_block_after(heading, "sh", document=REGION_PAGE))
    command = command.replace(f":{DYNAMODB_LOCAL_PORT}", f":{ddb_port}")
    command = command.replace(f"--port {DYNAMODB_LOCAL_PORT}", f"--port {ddb_port}")
    environment = clean_environment(
        FLASK_RUN_PORT=str(port),  # flask run's own setting for its port
        FLASK_DATABASE=str(tmp_path / "prices.sqlite"),  # the app's config DATABASE
    )

    with serving(command, port, environment, tmp_path / "server.log"):
        output = replay_the_prices_curl_lines(port)

    assert_the_curl_lines_answer_as_their_comments_say(output)


# --- docs/reference/backend.md: the backend without Flask ---------------------------------


@pytest.fixture
def page_table_dropped(dynamodb_local: DynamoDBLocal) -> Iterator[list[str]]:
    """Tables the test names are dropped after it: the page's is the app's default table,
    which the session's other tests must not find."""
    created: list[str] = []
    yield created
    client = botocore.session.get_session().create_client(
        "dynamodb", endpoint_url=dynamodb_local.endpoint_url, region_name="us-east-1"
    )
    for name in created:
        client.delete_table(TableName=name)


def test_the_backend_without_flask_batches_as_its_comments_say(
    dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch, page_table_dropped: list[str]
) -> None:
    """As written, with the environment the page names; the table made first, as it says."""
    use_local_aws_credentials()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    monkeypatch.setenv("CACHE_SIGNING_KEY", "backend-page-key")
    block = code_block_after("## Without Flask", "python", document=BACKEND_PAGE)
    setup, calls = block.split("cache.set_many", 1)
    namespace: dict[str, Any] = {"__name__": "backend_page"}
    exec(compile(setup, BACKEND_PAGE.name, "exec"), namespace)
    page_table_dropped.append(namespace["cache"].table_name)
    namespace["cache"].create_table()
    call_log = CallLog()
    signals.dynamodb_call.connect(call_log)
    try:
        exec(compile("cache.set_many" + calls, BACKEND_PAGE.name, "exec"), namespace)
    finally:
        signals.dynamodb_call.disconnect(call_log)

    assert call_log.operations() == ["BatchWriteItem", "BatchGetItem"]
    assert namespace["cache"].get_many("a", "b") == [1, 2]


# --- docs/deploy.md: the blocks its AWS test does not run ---------------------------------


def test_the_guides_schema_lines_run_as_written(tmp_path: Path) -> None:
    """Sections 7 and 8's ``flask db`` lines (on an instance in the guide), here on a SQLite
    database at the release's head; the downgrade's placeholder is the revision before."""
    environment = clean_environment(
        FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'guide.sqlite'}"
    )
    run_shell(with_test_venv(".venv/bin/flask --app wsgi init-db"), environment)
    look = code_block_after("### Schema migrations during a roll-out", "sh", document=GUIDE)
    history = run_shell(with_test_venv(look), environment)
    (previous,) = re.findall(r"(\w+) -> \w+ \(head\)", history)

    downgrade = code_block_after("## 8. Roll back", "sh", skip=2, document=GUIDE)
    placeholder = "<the previous release's newest revision>"
    assert placeholder in downgrade
    run_shell(with_test_venv(downgrade.replace(placeholder, previous)), environment)

    current = run_shell(with_test_venv(commands(look)[0]), environment)
    assert current.split()[0] == previous, current


AWS_GLOBAL_OPTIONS = {"query", "output", "region", "profile", "endpoint-url", "no-paginate"}
AWS_PAGINATION_OPTIONS = {"max-items", "starting-token", "page-size"}
#: Where a command ends inside a line of shell.
SHELL_PUNCTUATION = {")", ";", ");", "|", "||", "&&", "&"}


def aws_calls(block: str) -> list[tuple[str, str, dict[str, str | None]]]:
    """Each ``aws SERVICE OPERATION --option value...`` of a shell block."""
    lexer = shlex.shlex(block.replace("\\\n", " "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    calls = []
    for at, word in enumerate(words):
        if word != "aws":
            continue
        service, operation, options = words[at + 1], words[at + 2], {}
        rest = words[at + 3 :]
        for index, option in enumerate(rest):
            if option in SHELL_PUNCTUATION:
                break
            if option.startswith("--"):
                value = rest[index + 1] if index + 1 < len(rest) else None
                options[option[2:]] = None if value is None or value.startswith("--") else value
        calls.append((service, operation, options))
    return calls


def shape_after(node: dict[str, Any], shape: Shape | None, missing: list[str]) -> Shape | None:
    """The shape a JMESPath AST node selects from ``shape``; unknown fields go to
    ``missing``. None where the shape is not known any more (a multi-select's list)."""
    kind, children = node["type"], node.get("children", [])
    if shape is None or kind == "identity":
        return shape
    if kind == "field":
        if isinstance(shape, StructureShape) and node["value"] in shape.members:
            return shape.members[node["value"]]
        missing.append(node["value"])
        return None
    if kind in ("subexpression", "projection", "index_expression"):
        left = shape_after(children[0], shape, missing)
        if kind == "subexpression":
            return shape_after(children[1], left, missing)
        element = left.member if isinstance(left, ListShape) else None
        return element if kind == "index_expression" else shape_after(children[1], element, missing)
    if kind == "flatten":
        return shape_after(children[0], shape, missing)
    if kind == "multi_select_list":
        for child in children:
            shape_after(child, shape, missing)
        return None
    raise AssertionError(f"a query the check does not read: {kind}")


def unaccepted(service: str, operation: str, options: Mapping[str, str | None]) -> list[str]:
    """What the AWS CLI would refuse in the call: an operation or option the API lacks, a
    ``--query`` field its answer lacks."""
    model = botocore.session.get_session().get_service_model(service)
    by_cli_name = {xform_name(name, "-"): name for name in model.operation_names}
    if operation not in by_cli_name:
        return [f"{service} {operation}"]
    operation_model = model.operation_model(by_cli_name[operation])
    members = operation_model.input_shape.members if operation_model.input_shape else {}
    accepted = {xform_name(name, "-") for name in members} | AWS_GLOBAL_OPTIONS
    accepted |= AWS_PAGINATION_OPTIONS if paginated(service, operation_model.name) else set()
    refused = [f"--{option}" for option in options if option not in accepted]
    query = options.get("query")
    if query:
        shape_after(jmespath.compile(query).parsed, operation_model.output_shape, refused)
    return refused


def paginated(service: str, operation: str) -> bool:
    """The CLI pages the operation's answer itself (``--max-items`` and the like)."""
    try:
        botocore.session.get_session().get_paginator_model(service).get_paginator(operation)
    except (DataNotFoundError, ValueError):  # no paginators for the service, or the operation
        return False
    return True


#: The guide's blocks the AWS test does not run: (the heading above, blocks to skip).
GUIDE_AWS_BLOCKS_NOT_RUN = {
    "results": ("### Run a command on the instances (SSM Run Command)", 1),
    "outputs-per-instance": ("### Run a command on the instances (SSM Run Command)", 2),
    "port-forwarding": ("## 9. What to watch", 0),
}


@pytest.mark.parametrize("block", GUIDE_AWS_BLOCKS_NOT_RUN)
def test_the_guides_aws_calls_not_run_would_be_accepted(block: str) -> None:
    """Accepted only: moto has no ``ssm list-command-invocations`` nor sessions."""
    heading, skip = GUIDE_AWS_BLOCKS_NOT_RUN[block]
    calls = aws_calls(code_block_after(heading, "sh", skip=skip, document=GUIDE))
    assert calls, f"no aws call in the {block} block"
    assert {f"{s} {o}": unaccepted(s, o, opts) for s, o, opts in calls} == {
        f"{s} {o}": [] for s, o, _ in calls
    }


def test_the_query_check_finds_a_misspelt_field() -> None:
    """The check above fails on the mistake it is there for."""
    options = {"command-id": "x", "query": "CommandInvocations[].[InstanceID,Status]"}
    assert unaccepted("ssm", "list-command-invocations", options) == ["InstanceID"]
    assert unaccepted("ssm", "list-command-invocation", {}) == ["ssm list-command-invocation"]
    assert unaccepted("ssm", "list-command-invocations", {"command-ids": "x"}) == ["--command-ids"]


def insights_fields(query: str) -> set[str]:
    """The log line's fields a Logs Insights query names (not CloudWatch's own ``@`` ones)."""
    without_strings = re.sub(r'"[^"]*"', "", query)
    named = re.findall(r"(?:fields|filter|sort)\s+([^|]+)", without_strings)
    words = {word for clause in named for word in re.findall(r"@?[A-Za-z_]+", clause)}
    return {word for word in words if not word.startswith("@")} - {"desc", "asc"}


def test_the_guides_insights_queries_name_the_access_lines_fields(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read only: the queries run in CloudWatch. Each field is the app's JSON line's, and
    ``status`` a number (``filter status >= 500``)."""
    queries = [
        code_block_after("## 9. What to watch", "", skip=skip, document=GUIDE) for skip in (0, 1)
    ]
    capsys.readouterr()
    client.get("/categories")
    (line,) = json_log_lines(capsys.readouterr().out)

    assert {field for query in queries for field in insights_fields(query)} - set(line) == set()
    assert isinstance(line["status"], int)


def make_accepts(target: str, *variables: str, dry_run: bool = True) -> str:
    """``make -n`` (print, run nothing) of ``target``: what it would run."""
    result = subprocess.run(
        ["make", *(["-n"] if dry_run else []), "--no-print-directory", target, *variables],
        cwd=REPOSITORY_ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_single_host_block_would_be_accepted() -> None:
    """Accepted only (sudo, systemd and a release build): its ``make release VERSION=`` passes
    the version on, its ``flask`` commands exist, the files it installs are the
    repository's, and the credentials' drop-in extends the unit the repository ships."""
    heading = "## 10. Single host: systemd and nginx"
    block = code_block_after(heading, "sh", document=GUIDE)
    (release,) = [line for line in commands(block) if line.startswith("make ")]
    assert shlex.split(release, comments=True) == ["make", "release", "VERSION=$VERSION"]
    assert "--version v9.9.9" in make_accepts("release", "VERSION=v9.9.9").replace('"', "")

    installed = re.findall(r"\b(deploy/[\w./-]+)", block)
    assert installed, "the block installs the repository's deploy files"
    assert [path for path in installed if not (REPOSITORY_ROOT / path).is_file()] == []

    create_table = code_block_after(heading, "sh", skip=1, document=GUIDE)
    flask_line = re.compile(r"flask --app wsgi ([a-z -]+?)\s*(?:$|\))", re.MULTILINE)
    flask_commands = flask_line.findall(block + create_table)
    assert sorted(set(flask_commands)) == ["cache create-table", "init-db"]
    for flask_command in flask_commands:
        help_line = f".venv/bin/flask --app wsgi {flask_command} --help"
        run_shell(with_test_venv(help_line), clean_environment())

    credentials = code_block_after(heading, "sh", skip=2, document=GUIDE)
    drop_ins = re.findall(r"/etc/systemd/system/([\w-]+\.service)\.d/", credentials)
    assert drop_ins, "the credentials block adds a drop-in to the unit"
    assert [unit for unit in drop_ins if not (REPOSITORY_ROOT / "deploy" / unit).is_file()] == []


# --- README.md: make run, make test ---------------------------------------------------------


def test_the_readmes_first_make_lines_are_targets_make_accepts() -> None:
    """Accepted only: test_readme_story.py runs ``make run``; ``make test`` is the suite."""
    block = code_block_after("# Categories API with a DynamoDB cache", "sh", document=README)
    targets = [shlex.split(line, comments=True) for line in commands(block)]
    assert targets == [["make", "run"], ["make", "test"]]
    help_text = make_accepts("help", dry_run=False).replace("\n", " ")
    for _, target in targets:
        make_accepts(target)
        assert re.search(rf"(^| ){target} ", help_text), f"make help does not list {target}"


# --- docs/reference/layout.md --------------------------------------------------------------


def test_the_layout_names_files_that_exist() -> None:
    """The layout page's tree: every path in its first column is in the repository (an
    indented one in ``ecommerce/``)."""
    block = code_block_after("# Source layout", "", document=LAYOUT_PAGE)
    entries = re.findall(r"^( {2})?(\S+(?:, \S+)?)\s{2,}", block, re.MULTILINE)
    paths = [
        ("ecommerce/" if indented else "") + path
        for indented, entry in entries
        for path in entry.split(", ")
    ]
    assert len(paths) > 10, entries
    assert [path for path in paths if not (REPOSITORY_ROOT / path).exists()] == []


# --- Commands inside the text ------------------------------------------------------------

#: A command in a sentence (`make run`, `flask cache status`), with the settings before it.
INLINE_COMMAND = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:make|flask|python -m)(?: [^`]*)?)`")
FENCED = re.compile(r"^\s*```.*?^\s*```", re.MULTILINE | re.DOTALL)
MAKEFILE = REPOSITORY_ROOT / "Makefile"


def inline_commands(program: str) -> list[str]:
    """Each distinct ``program ...`` command the README and the docs name in their text."""
    found: dict[str, None] = {}
    for document in [README, *sorted(DOCS.rglob("*.md"))]:
        text = FENCED.sub("", document.read_text())
        for command in INLINE_COMMAND.findall(text):
            words = shlex.split(command)
            settings = list(itertools.takewhile(lambda word: "=" in word, words))
            if words[len(settings)] == program:
                found[" ".join(command.split())] = None
    return list(found)


def recipe(target: str) -> str:
    """The Makefile's recipe lines of ``target``."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", MAKEFILE.read_text(), re.M)
    assert match, f"no make target {target}"
    return match.group(1)


def options_the_module_defines(module: str) -> set[str]:
    """Every ``"--option"`` string in ``module``'s source (its package's, for a package)."""
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, f"no module {module}"
    origin = Path(spec.origin)
    sources = origin.parent.glob("*.py") if origin.name == "__init__.py" else [origin]
    return {
        option for source in sources for option in re.findall(r'"(--[a-z-]+)"', source.read_text())
    }


def assert_options_exist(module: str, arguments: str) -> None:
    given = set(re.findall(r"(?<!\S)(--[a-z-]+)", arguments))
    assert given - options_the_module_defines(module) == set(), f"{module} {arguments}"


@pytest.mark.parametrize("command", inline_commands("make"))
def test_the_texts_make_commands_name_targets_and_variables(command: str) -> None:
    """Accepted only (the targets are the suite, servers and benchmarks): the target is the
    Makefile's, each ``VAR=`` one it reads, and ``ARGS``' options the script's."""
    words = shlex.split(command)
    arguments = words[words.index("make") + 1 :]
    if not arguments:
        return  # make alone: the README's "make" as a tool
    target, *variables = arguments
    steps = recipe(target)
    for name, value in (variable.split("=", 1) for variable in variables):
        assert f"$({name})" in MAKEFILE.read_text(), f"the Makefile reads no {name}"
        if name == "ARGS":
            (module,) = re.findall(r"-m (\S+) \$\(ARGS\)", steps)
            assert_options_exist(module, value)


@pytest.mark.parametrize("command", inline_commands("python"))
def test_the_texts_python_modules_take_their_options(command: str) -> None:
    """Accepted only (benchmarks run for minutes): the module exists, its options too."""
    module, _, arguments = command.removeprefix("python -m ").partition(" ")
    assert_options_exist(module, arguments)


@pytest.mark.parametrize("command", inline_commands("flask"))
def test_the_texts_flask_commands_exist_with_their_options(command: str, tmp_path: Path) -> None:
    """Accepted only (``--help``: click refuses an unknown command or option before it
    helps); ``<...>`` placeholders get a value. The prices app keeps its database here."""
    words = command.split()
    if words[1:] in ([], ["--app", "wsgi", "db", "..."]):
        return  # the tool itself, Flask-Migrate's commands as a whole
    line = re.sub(r"<[^>]*>", "x", command.replace("'", ""))
    if "--app" not in line:
        line = line.replace("flask ", "flask --app wsgi ", 1)
    environment = clean_environment(FLASK_DATABASE=str(tmp_path / "prices.sqlite"))
    run_shell(with_test_venv(f".venv/bin/{line} --help"), environment)


# --- Every block has its test ----------------------------------------------------------------

#: What runs or reads each fenced block of the README and the docs site, by page, heading,
#: language and rank under that heading. Not listed: the deploy guide's blocks marked
#: ``<!-- tested: NAME -->`` (test_deploy_guide.py runs them) and the commands reference's
#: ``--help`` texts (test_docs.py checks them against the code).
BLOCK_TESTS = {
    ("README.md", "# Categories API with a DynamoDB cache", "sh", 0): "test_doc_commands.py",
    ("README.md", "## The story, with curl", "sh", 0): "test_readme_story.py",
    ("README.md", "## Use the backend in your own Flask app", "python", 0): "test_readme.py",
    ("docs/deploy.md", "# Deploying the categories API", "", 0): "none: a diagram",
    ("docs/chaos.md", "# Randomized faults, checked", "sh", 0): "test_chaos.py",
    ("docs/deploy.md", "### Run a command on the instances (SSM Run Command)", "sh", 1): (
        "test_doc_commands.py"
    ),
    ("docs/deploy.md", "### Run a command on the instances (SSM Run Command)", "sh", 2): (
        "test_doc_commands.py"
    ),
    ("docs/deploy.md", "### Schema migrations during a roll-out", "sh", 0): "test_doc_commands.py",
    ("docs/deploy.md", "## 8. Roll back", "sh", 2): "test_doc_commands.py",
    ("docs/deploy.md", "## 9. What to watch", "", 0): "test_doc_commands.py",
    ("docs/deploy.md", "## 9. What to watch", "", 1): "test_doc_commands.py",
    ("docs/deploy.md", "## 9. What to watch", "sh", 0): "test_doc_commands.py",
    ("docs/deploy.md", "## 10. Single host: systemd and nginx", "sh", 0): "test_doc_commands.py",
    ("docs/deploy.md", "## 10. Single host: systemd and nginx", "sh", 1): "test_doc_commands.py",
    ("docs/deploy.md", "## 10. Single host: systemd and nginx", "sh", 2): "test_doc_commands.py",
    ("docs/explanation/caching-strategies.md", "## The loader, without Flask", "python", 0): (
        "test_readme.py"
    ),
    ("docs/explanation/hot-path.md", "## A near-cache over any backend", "python", 0): (
        "test_readme.py"
    ),
    ("docs/how-to/migrations.md", "## Bring a database up to date", "sh", 0): "test_readme.py",
    ("docs/reference/backend.md", "## Without Flask", "python", 0): "test_doc_commands.py",
    ("docs/reference/layout.md", "# Source layout", "", 0): "test_doc_commands.py",
    ("docs/region.md", "## The app", "python", 0): "test_region_example.py",
    ("docs/region.md", "## Run it on SimpleCache", "sh", 0): "test_doc_commands.py",
    ("docs/region.md", "## Run it on SimpleCache", "sh", 1): "test_doc_commands.py",
    ("docs/region.md", "## Run it on DynamoDB", "sh", 0): "test_doc_commands.py",
    ("docs/region.md", "## Run the contract on your own backend", "python", 0): (
        "test_region_example.py"
    ),
    **{
        ("docs/tutorial/curl-story.md", heading, "sh", 0): "test_readme_story.py"
        for heading in [
            "## 1. Start the app on a slow database",
            "## 2. A miss, then a hit",
            "## 3. A write changes the list",
            "## 4. Past the TTL",
            "## 6. Refresh-async: the reload off the write",
            "## 7. Ask the cache how it is",
            "## 8. Revalidate: a 304 without database work",
        ]
    },
}
FENCE = re.compile(r"^\s*```(\w*)\s*$")
DEPLOY_GUIDE_MARK = re.compile(r"^\s*<!-- tested: [a-z-]+ -->$")
REFERENCE_HELP_TEXTS = ("docs/reference/cli.md", "text")


def fenced_blocks(document: Path) -> list[tuple[str, str, str, int]]:
    """(page, heading, language, rank among the heading's blocks of that language) of each
    block, but the deploy guide's marked blocks and the commands reference's help texts."""
    page = str(document.relative_to(REPOSITORY_ROOT))
    blocks: list[tuple[str, str, str, int]] = []
    heading, inside, previous = "", False, ""
    ranks: dict[tuple[str, str], int] = {}
    for line in document.read_text().splitlines():
        fence = FENCE.match(line)
        if fence and not inside:
            language = fence.group(1)
            rank = ranks[heading, language] = ranks.get((heading, language), -1) + 1
            marked = DEPLOY_GUIDE_MARK.match(previous)
            if not marked and (page, language) != REFERENCE_HELP_TEXTS:
                blocks.append((page, heading, language, rank))
        elif not inside and line.startswith("#"):
            heading = line
        inside = inside != bool(fence)
        previous = line if line.strip() else previous
    return blocks


def test_every_block_has_a_test() -> None:
    """A new block of the README or a docs page needs a test, or a reason it has none."""
    documents = [README, *sorted(DOCS.rglob("*.md"))]
    found = {block for document in documents for block in fenced_blocks(document)}
    assert sorted(found - set(BLOCK_TESTS)) == [], "blocks no test runs"
    assert sorted(set(BLOCK_TESTS) - found) == [], "listed blocks the pages no longer have"
    named = {test for test in BLOCK_TESTS.values() if not test.startswith("none: ")}
    tests = REPOSITORY_ROOT / "tests"
    assert [test for test in named if not list(tests.rglob(test))] == []
