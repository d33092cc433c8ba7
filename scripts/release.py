"""Build one release tarball: ``make release [VERSION=...] [DIST=...]``.

Layout (extracted into /opt/ecommerce/releases/<version> by the user data):
``app/`` the app's wheel; ``wheels/`` every locked dependency of requirements/app.txt as
wheels for CPython 3.11 on manylinux x86_64 and aarch64 (Amazon Linux 2023); the lock;
the files the service runs from that are not in the wheel; ``SHA256SUMS`` over all of it.
Next to the tarball, ``<name>.tar.gz.sha256``. Instances install it with ``--no-index``.

Reproducible: built twice from one commit and lock, the tarball is the same bytes (so
its hash, the stack's ``ArtifactSha256``, can be checked by rebuilding). Every time
stamp is ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention; default: the
commit's time), entries are sorted and owned by root, and gzip records no time.
"""

from __future__ import annotations

import argparse
import configparser
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from devtools import REPOSITORY_ROOT

LOCK = Path("requirements/app.txt")
#: What the user data and the unit file use from the release directory besides the wheel.
RUNTIME_FILES = (
    "wsgi.py",
    "gunicorn.conf.py",
    "deploy/ecommerce.service",
    "deploy/nginx.conf",
    "deploy/ecommerce.env.example",
    "docs/deploy.md",  # the unit's Documentation=
)
#: Amazon Linux 2023 has glibc 2.34; older manylinux tags run there too.
ARCHITECTURES = ("x86_64", "aarch64")
MANYLINUX_TAGS = ("manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014")


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` if set, else the checked-out commit's time (now, outside git)."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    committed = subprocess.run(
        ["git", "log", "-1", "--format=%ct"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
    )
    return int(committed.stdout) if committed.returncode == 0 else int(time.time())


def build_app_wheel(destination: Path, epoch: int) -> None:
    """pip wheel from a copy of what setuptools reads: no build/ or stale files from the tree."""
    parser = configparser.ConfigParser()
    parser.read(REPOSITORY_ROOT / "setup.cfg")
    packages = {name.split(".")[0] for name in parser["options.packages.find"]["include"].split()}
    with tempfile.TemporaryDirectory() as staging_name:
        staging = Path(staging_name)
        for name in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy2(REPOSITORY_ROOT / name, staging / name)
        for package in packages:
            shutil.copytree(
                REPOSITORY_ROOT / package,
                staging / package,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(destination),
                str(staging),
            ],
            check=True,
            # setuptools stamps the wheel's zip entries with it instead of the files' times.
            env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
        )


def download_locked_wheels(destination: Path, architectures: tuple[str, ...]) -> None:
    for architecture in architectures:
        platforms = [f"--platform={tag}_{architecture}" for tag in MANYLINUX_TAGS]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "--python-version=3.11",
                "--implementation=cp",
                "--abi=cp311",
                "--abi=abi3",
                "--abi=none",
                *platforms,
                "--platform=any",
                "--dest",
                str(destination),
                "-r",
                str(REPOSITORY_ROOT / LOCK),
            ],
            check=True,
        )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_release(version: str, dist: Path, architectures: tuple[str, ...] = ARCHITECTURES) -> Path:
    """Build ``dist/ecommerce-<version>.tar.gz`` and its ``.sha256``; return the tarball."""
    dist.mkdir(parents=True, exist_ok=True)
    tarball = dist / f"ecommerce-{version}.tar.gz"
    epoch = source_date_epoch()
    with tempfile.TemporaryDirectory() as root_name:
        root = Path(root_name)
        build_app_wheel(root / "app", epoch)
        download_locked_wheels(root / "wheels", architectures)
        for name in (str(LOCK), *RUNTIME_FILES):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY_ROOT / name, root / name)
        (root / "VERSION").write_text(version + "\n")
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        (root / "SHA256SUMS").write_text("".join(f"{sha256(root / f)}  {f}\n" for f in files))

        def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.isdir() else 0o644
            info.mtime = epoch
            return info

        with (
            tarball.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
        ):
            for name in ["SHA256SUMS", *files]:
                archive.add(root / name, arcname=name, filter=normalized)
    Path(f"{tarball}.sha256").write_text(f"{sha256(tarball)}  {tarball.name}\n")
    return tarball


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--dist", type=Path, default=REPOSITORY_ROOT / "dist")
    arguments = parser.parse_args()
    print(build_release(arguments.version, arguments.dist))


if __name__ == "__main__":
    main()
