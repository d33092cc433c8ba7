"""The README's runnable examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_the_loader_example_runs_as_written() -> None:
    exec(compile(python_block_after("### The loader, without Flask"), "README.md", "exec"), {})


def test_the_near_cache_example_runs_as_written() -> None:
    heading = "### The hot path: a near-cache in front of DynamoDB"
    exec(compile(python_block_after(heading), "README.md", "exec"), {})
