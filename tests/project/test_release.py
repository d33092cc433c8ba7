"""make release's tarball, installed as the user data installs it, with no package index, serves.

The install is the template's own block (from "# The release:" through the ``ln -sfn``),
cut out of deploy/cloudformation.yaml and run by bash: the test runs what instances run.
``aws`` is a stub that copies the built tarball; every package index and proxy points at
a closed port, so any attempt to reach one fails the install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest

from devtools import REPOSITORY_ROOT
from devtools.fleet import wait_until_healthy
from devtools.ports import free_port
from devtools.processes import background_process
from scripts.release import build_release, source_date_epoch
from tests.support.app import SEED_CATEGORIES

pytestmark = pytest.mark.slow

TEMPLATE = REPOSITORY_ROOT / "deploy" / "cloudformation.yaml"
CURRENT_LINK = "/opt/ecommerce/current"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens there


def install_block() -> str:
    lines = TEMPLATE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# The release:"))
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("ln -sfn"))
    block = "\n".join(line.strip() for line in lines[start : end + 1])
    assert block.count('pip" install --quiet --no-cache-dir --no-index') == 2
    return block


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = build_release("test", dist, architectures=("x86_64", "aarch64"))
    assert (dist / "ecommerce-test.tar.gz.sha256").exists()
    return built


def published_sha256(tarball: Path) -> str:
    """The first word of make release's ``.sha256`` file: what ArtifactSha256 is given."""
    return Path(f"{tarball}.sha256").read_text().split()[0]


def run_install(
    tarball: Path, tmp_path: Path, artifact_sha256: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    """The template's install block, offline; its result, environment and current link."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "aws").write_text(f'#!/bin/bash\ncp {tarball} "${{@: -1}}"\n')
    (stubs / "aws").chmod(0o755)
    (stubs / "python3.11").symlink_to(getattr(sys, "_base_executable", sys.executable))
    current = tmp_path / "current"
    script = install_block().replace(CURRENT_LINK, str(current))
    offline = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "FLASK_"))}
    offline.pop("PYTHONPATH", None)
    offline |= {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": UNREACHABLE,
        "HTTP_PROXY": UNREACHABLE,
        "HTTPS_PROXY": UNREACHABLE,
        "REGION": "eu-west-1",
        "ARTIFACT_URL": "s3://bucket/releases/ecommerce-test.tar.gz",
        "ARTIFACT_SHA256": artifact_sha256,
        "RELEASE_DIR": str(tmp_path / "releases" / "test"),
    }
    installed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=offline,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return installed, offline, current


def test_the_release_installs_without_an_index_and_serves_the_categories(
    tarball: Path, tmp_path: Path
) -> None:
    installed, offline, current = run_install(tarball, tmp_path, published_sha256(tarball))
    assert installed.returncode == 0, installed.stderr

    venv = current / ".venv" / "bin"
    app_settings = offline | {
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}"
    }
    located = subprocess.run(
        [venv / "python", "-c", "import ecommerce; print(ecommerce.__file__)"],
        cwd=current,
        env=app_settings,
        check=True,
        capture_output=True,
        text=True,
    )
    assert located.stdout.startswith(str(current)), "the app must come from the release's venv"
    subprocess.run(
        [venv / "flask", "--app", "wsgi", "init-db"], cwd=current, env=app_settings, check=True
    )

    port = free_port()
    serving = app_settings | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"}
    log_path = tmp_path / "gunicorn.log"
    command = [str(venv / "gunicorn"), "wsgi:app"]
    with background_process(command, log_path, cwd=current, env=serving) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, process, log_path)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(url + "/categories", timeout=10) as response:
            assert response.status == 200
            assert json.load(response) == SEED_CATEGORIES


def test_a_tarball_that_is_not_the_stacks_is_refused_before_anything_is_unpacked(
    tarball: Path, tmp_path: Path
) -> None:
    """ArtifactSha256 set: another object at the release's key fails the boot at once."""
    installed, _, current = run_install(tarball, tmp_path, "0" * 64)

    assert installed.returncode != 0
    assert "FAILED" in installed.stdout + installed.stderr
    assert not (tmp_path / "releases").exists() and not current.exists()


def test_the_release_is_reproducible(tarball: Path, tmp_path: Path) -> None:
    """Rebuilt from the same commit and lock, the same bytes: its hash can be checked."""
    again = build_release("test", tmp_path / "again", architectures=("x86_64", "aarch64"))

    assert published_sha256(again) == published_sha256(tarball)
    with tarfile.open(tarball) as archive:
        assert {member.mtime for member in archive.getmembers()} == {source_date_epoch()}
