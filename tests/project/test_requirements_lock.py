"""The locks in requirements/: fully pinned and hashed, in step with setup.cfg and each other.

`make lock` writes them; these checks catch a setup.cfg edit that was not re-locked (the
deploy would then install a release whose dependencies the lock does not satisfy) and a
hand edit that left a line without a pin or a hash (pip --require-hashes would refuse it
at boot, on every instance).
"""

from __future__ import annotations

import configparser

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devtools import REPOSITORY_ROOT
from tests.support.locks import read_lock

APP_LOCK = REPOSITORY_ROOT / "requirements" / "app.txt"
DEV_LOCK = REPOSITORY_ROOT / "requirements" / "dev.txt"

# What the deploy must not float: the web stack, the cache's AWS client, and the database
# driver, which the lock carries instead of the stack taking a driver as a parameter.
PINNED_FOR_THE_DEPLOY = ("flask", "pynamodb", "botocore", "gunicorn", "psycopg")


def declared(section: str, key: str) -> list[Requirement]:
    """The requirements setup.cfg lists under [section] key, comments dropped."""
    parser = configparser.ConfigParser()
    parser.read(REPOSITORY_ROOT / "setup.cfg")
    lines = (line.split("#", 1)[0].strip() for line in parser[section][key].splitlines())
    return [Requirement(line) for line in lines if line]


def unmet(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """The requirements that the pinned versions do not satisfy, with what is pinned."""
    unsatisfied = []
    for requirement in requirements:
        version = pins.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unsatisfied.append(f"{requirement} (locked: {version})")
    return unsatisfied


def test_app_lock_satisfies_install_requires_and_the_postgres_driver() -> None:
    requirements = declared("options", "install_requires")
    requirements += declared("options.extras_require", "postgres")

    assert unmet(requirements, read_lock(APP_LOCK)) == [], "setup.cfg changed: run make lock"


def test_dev_lock_satisfies_install_requires_and_dev_extra() -> None:
    requirements = declared("options", "install_requires")
    requirements += declared("options.extras_require", "dev")

    assert unmet(requirements, read_lock(DEV_LOCK)) == [], "setup.cfg changed: run make lock"


def test_tests_run_the_versions_the_deploy_runs() -> None:
    app_pins, dev_pins = read_lock(APP_LOCK), read_lock(DEV_LOCK)

    differing = {
        name: (version, dev_pins[name])
        for name, version in app_pins.items()
        if name in dev_pins and dev_pins[name] != version
    }
    assert differing == {}, "requirements/dev.txt must be compiled with -c requirements/app.txt"


@pytest.mark.parametrize("name", PINNED_FOR_THE_DEPLOY)
def test_deploy_lock_pins(name: str) -> None:
    assert name in read_lock(APP_LOCK)
