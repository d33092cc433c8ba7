"""The requirements/ locks, read as pip --require-hashes reads them."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name

# One entry per package: "name==version", then its "--hash=sha256:..." options.
PINNED_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?P<options>(?:\s+--hash=\S+)*)$"
)


def read_lock(path: Path) -> dict[str, str]:
    """Map canonical package name to pinned version; fail on any entry not pinned and hashed."""
    pins: dict[str, str] = {}
    entries = path.read_text().replace("\\\n", " ").splitlines()
    for entry in (line.split("#", 1)[0].strip() for line in entries):
        if not entry:
            continue
        match = PINNED_ENTRY.match(entry)
        assert match, f"{path.name}: not pinned with ==: {entry[:80]}"
        assert "--hash=sha256:" in match["options"], f"{path.name}: no hash for {match['name']}"
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins
