"""docs/deploy.md's AWS CLI commands, run as written: deploy, update, roll back, tear down.

The guide's shell blocks marked ``<!-- tested: NAME -->`` run in one bash shell, in the
order a reader meets them (``SCENARIO``), from a folder laid out like the checkout's
root. The ``aws`` is the real AWS CLI (version 1, from PyPI, in ``.venv/aws``:
requirements/awscli.txt); AWS is moto's server mode (devtools/moto_server.py), started
here on a free port of 127.0.0.1 and reached through ``AWS_ENDPOINT_URL``, with dummy
credentials and no region but the one the guide's first block sets. Between blocks the
test notes the stack's state, as a reader would look at the console.

What moto or this machine cannot do is stood in for by a shell function of the same name
(``STAND_INS``); the test checks that the guide reached each one:

- ``git describe``: the checkout is one commit, and the guide releases two; the stand-in
  names the version the scenario "checked out" (v1, then v2).
- ``make release``: building wheels for two platforms takes minutes and PyPI
  (tests/project/test_release.py builds one); the stand-in writes
  ``dist/ecommerce-$VERSION.tar.gz`` and its ``.sha256`` as the target names them, and
  the guide uploads, hashes and deploys those.
- ``curl``: nothing answers behind moto's load balancer; the stand-in records the calls,
  so the write's bearer token, read from SSM by the guide's command, is checked.
- ``aws autoscaling start-instance-refresh``, ``describe-instance-refreshes`` and
  ``cancel-instance-refresh``: moto has no instance refreshes.

Not run at all: reading Run Command's results (moto has no ``ssm
list-command-invocations``; ``send-command`` runs), what runs on an instance (``flask db
...`` through Run Command or a shell), ``aws ssm start-session`` (interactive),
CloudWatch Logs Insights queries, and section 10 (a single host: sudo, systemd, nginx).
moto creates instances but boots nothing, so no user data runs, no ``cfn-signal`` is
awaited and every target is healthy: test_deploy_template.py checks what the boot does.

The endpoint is ``http://localhost:PORT``, not 127.0.0.1 (where the server listens):
``deploy`` hands CloudFormation the template's address in S3 on that endpoint, and moto
reads such an address as bucket-then-key only when its host is ``localhost``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import REPOSITORY_ROOT
from devtools.credentials import LOCAL_AWS_ENVIRONMENT
from devtools.ports import free_port, wait_for_port
from devtools.processes import background_process
from tests.support.locks import read_lock

GUIDE = REPOSITORY_ROOT / "docs" / "deploy.md"
AWS_VENV = REPOSITORY_ROOT / ".venv" / "aws"
#: A marked block: the comment, then a ```sh fence at the same indentation (a list item's).
MARKED_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)<!-- tested: (?P<name>[a-z-]+) -->\n"
    r"(?P=indent)```sh\n(?P<body>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)
#: moto's server starts in a few seconds; a cold import of moto on a busy machine, more.
SERVER_START_TIMEOUT_SECONDS = 60.0
GUIDE_TIMEOUT_SECONDS = 300.0

#: Shell functions defined before the guide's blocks: the stand-ins the docstring lists,
#: each recording its call in $STOOD_IN, and the test's own look at the stack.
STAND_INS = r"""
git() {
  [ "$1" = describe ] || { echo "git $*: not stood in" >&2; return 1; }
  echo "git describe" >> "$STOOD_IN"
  cat "$CHECKED_OUT"
}
make() {
  [ "$1" = release ] || { echo "make $*: not stood in" >&2; return 1; }
  echo "make release" >> "$STOOD_IN"
  local version=${2#VERSION=}
  mkdir -p dist
  echo "release $version" | gzip -n > "dist/ecommerce-$version.tar.gz"
  (cd dist && sha256sum "ecommerce-$version.tar.gz" > "ecommerce-$version.tar.gz.sha256")
}
curl() {
  echo "curl" >> "$STOOD_IN"
  printf '%s\n' "$*" >> "$CURL_CALLS"
}
aws() {
  case "$1 $2" in
    "autoscaling start-instance-refresh" | "autoscaling describe-instance-refreshes" \
      | "autoscaling cancel-instance-refresh")
      echo "aws $1 $2" >> "$STOOD_IN"
      return 0 ;;
  esac
  command aws "$@"
}
look_at_the_stack() {
  command aws cloudformation describe-stacks --stack-name "$STACK" \
    --query 'Stacks[0]' --output json > "$LOOKS/$1.json"
}
"""


@dataclass(frozen=True)
class Look:
    """The test's look at the stack at this point of the scenario, named."""

    name: str


@dataclass(frozen=True)
class CheckOut:
    """The reader checks out the commit that ``git describe`` names ``version``."""

    version: str


#: The reader's path through the guide: sections 1 to 8, then 11.
SCENARIO: list[str | Look | CheckOut] = [
    CheckOut("v1"),
    "setup",
    "release",
    "database",
    "database-password",
    "database-again",
    "secrets",
    "deploy",
    Look("deployed"),
    "outputs",
    "failed-events",
    "targets",
    "smoke",
    "run-command",
    CheckOut("v2"),
    "release",
    "update",
    Look("updated"),
    "events",
    "instance-refresh",
    "rotate-accept",
    Look("rotating"),
    "rotate-drop",
    Look("rotated"),
    "cancel-refresh",
    "roll-back",
    Look("rolled-back"),
    "delete-stack",
    "remove-the-rest",
]
STOOD_IN = {
    "git describe",
    "make release",
    "curl",
    "aws autoscaling start-instance-refresh",
    "aws autoscaling describe-instance-refreshes",
    "aws autoscaling cancel-instance-refresh",
}


def marked_blocks(text: str) -> dict[str, str]:
    """Each marked ```sh block of the guide by name, its indentation removed."""
    blocks: dict[str, str] = {}
    for match in MARKED_BLOCK.finditer(text):
        assert match["name"] not in blocks, f"two blocks marked {match['name']}"
        indent = match["indent"]
        lines = match["body"].splitlines(keepends=True)
        blocks[match["name"]] = "".join(line.removeprefix(indent) for line in lines)
    return blocks


def scenario_script(blocks: dict[str, str]) -> str:
    """One bash script: the stand-ins, then the scenario's blocks and looks in order."""
    parts = ["set -euo pipefail", STAND_INS]
    for step in SCENARIO:
        if isinstance(step, CheckOut):
            parts.append(f'echo {step.version} > "$CHECKED_OUT"')
        elif isinstance(step, Look):
            parts.append(f"look_at_the_stack {step.name}")
        else:
            parts.append(f'echo "== {step} at ${{SECONDS}} s" >&2\n{blocks[step]}')
    return "\n".join(parts) + "\n"


@dataclass
class Emulator:
    """moto on 127.0.0.1, and the environment in which the AWS CLI talks to it."""

    environment: dict[str, str]

    def aws(self, region: str, *arguments: str) -> Any:
        """What ``aws ARGUMENTS`` answers, as JSON."""
        result = subprocess.run(
            ["aws", "--region", region, "--output", "json", *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    if not (AWS_VENV / "bin" / "aws").exists():
        pytest.skip("no .venv/aws: `make .venv/aws/bin/aws` (a prerequisite of make test)")
    port = free_port()
    command = [str(AWS_VENV / "bin" / "python"), "-m", "devtools.moto_server", "--port", str(port)]
    with background_process(command, tmp_path / "moto.log", cwd=REPOSITORY_ROOT) as process:
        wait_for_port(port, SERVER_START_TIMEOUT_SECONDS, process, server_name="moto")
        home = tmp_path / "home"
        home.mkdir()
        yield Emulator(
            {
                "PATH": f"{AWS_VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "HOME": str(home),  # no ~/.aws of the person running the tests
                "LANG": "C.UTF-8",
                "AWS_ENDPOINT_URL": f"http://localhost:{port}",
                "AWS_ACCESS_KEY_ID": LOCAL_AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": LOCAL_AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            }
        )


def server_log(tmp_path: Path) -> str:
    """moto's log, whose tracebacks say what a 500 from it meant."""
    return (tmp_path / "moto.log").read_text(errors="replace")


def release_hash(root: Path, version: str) -> str:
    return (root / "dist" / f"ecommerce-{version}.tar.gz.sha256").read_text().split()[0]


def parameters(look: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in look["Parameters"]}


def test_the_aws_lock_pins_and_hashes_the_cli_and_moto() -> None:
    """What ``make test`` installs in .venv/aws: pinned and hashed, as every lock here."""
    pins = read_lock(REPOSITORY_ROOT / "requirements" / "awscli.txt")
    assert {"awscli", "moto", "flask", "flask-cors"} <= set(pins)  # flask*: moto's server


def test_every_scenario_block_is_marked_once_in_the_guide() -> None:
    blocks = marked_blocks(GUIDE.read_text())
    named = {step for step in SCENARIO if isinstance(step, str)}
    assert set(blocks) == named
    for name, block in blocks.items():
        assert block.strip() and not block.startswith(" "), name


def test_the_guide_deploys_updates_rolls_back_and_tears_down(
    emulator: Emulator, tmp_path: Path
) -> None:
    root = tmp_path / "checkout"  # the commands run from the checkout's root
    root.mkdir()
    (root / "deploy").symlink_to(REPOSITORY_ROOT / "deploy")
    looks = tmp_path / "looks"
    looks.mkdir()
    stood_in, curl_calls = tmp_path / "stood-in", tmp_path / "curl-calls"
    environment = {
        **emulator.environment,
        "STOOD_IN": str(stood_in),
        "CURL_CALLS": str(curl_calls),
        "LOOKS": str(looks),
        "CHECKED_OUT": str(tmp_path / "checked-out"),
    }
    script = scenario_script(marked_blocks(GUIDE.read_text()))

    with background_process(
        ["bash", "-c", script],
        tmp_path / "guide.log",
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
    ) as shell:
        try:
            returncode: int | None = shell.wait(timeout=GUIDE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:  # the log says at which block
            returncode = None  # leaving the block stops the shell and any aws it runs

    shell_log = (tmp_path / "guide.log").read_text(errors="replace")
    assert returncode == 0, shell_log[-3000:] + server_log(tmp_path)[-3000:]
    assert set(stood_in.read_text().splitlines()) == STOOD_IN
    look = {path.stem: json.loads(path.read_text()) for path in looks.glob("*.json")}
    v1, v2 = release_hash(root, "v1"), release_hash(root, "v2")

    deployed = parameters(look["deployed"])
    assert look["deployed"]["StackStatus"] == "CREATE_COMPLETE"
    assert (deployed["AppVersion"], deployed["ArtifactSha256"]) == ("v1", v1)
    assert deployed["AdminTokenParameterName"] == "/ecommerce/prod/admin-token"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in look["deployed"]["Outputs"]}
    assert {"ServiceUrl", "AutoScalingGroupName", "TargetGroupArn"} <= set(outputs)

    updated = parameters(look["updated"])
    assert (updated["AppVersion"], updated["ArtifactSha256"]) == ("v2", v2)
    # --parameter-overrides left the parameters it does not name as they were.
    assert updated["SigningKeyParameterName"] == "/ecommerce/prod/cache-signing-key"
    old_keys = "OldSigningKeysParameterName"
    assert parameters(look["rotating"])[old_keys] == "/ecommerce/prod/cache-old-signing-keys"
    assert parameters(look["rotated"])[old_keys] == ""
    rolled_back = parameters(look["rolled-back"])
    assert (rolled_back["AppVersion"], rolled_back["ArtifactSha256"]) == ("v1", v1)

    # The smoke test asked the stack's address; its write carried the token stored in SSM.
    calls = curl_calls.read_text().splitlines()
    assert len(calls) == 5 and all(f"{outputs['ServiceUrl']}/" in call for call in calls)
    write = next(call for call in calls if "-X POST" in call)
    assert re.search(r"Authorization: Bearer [0-9a-f]{64}\b", write), write

    # Torn down: the stack, the database and its group, the parameters, the bucket.
    region = look["deployed"]["StackId"].split(":")[3]
    assert emulator.aws(region, "cloudformation", "describe-stacks")["Stacks"] == []
    assert emulator.aws(region, "rds", "describe-db-instances")["DBInstances"] == []
    groups = emulator.aws(region, "ec2", "describe-security-groups")["SecurityGroups"]
    assert [group["GroupName"] for group in groups if group["GroupName"] != "default"] == []
    path = ["--path", "/ecommerce", "--recursive"]
    assert emulator.aws(region, "ssm", "get-parameters-by-path", *path)["Parameters"] == []
    assert emulator.aws(region, "s3api", "list-buckets")["Buckets"] == []
