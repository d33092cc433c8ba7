"""The README's runnable examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def code_block_after(heading: str, language: str, *, skip: int = 0) -> str:
    """The first ```<language> block after ``heading`` in the README (after ``skip`` others)."""
    text = README.read_text()
    start = text.index(heading)
    blocks = re.findall(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert len(blocks) > skip, f"no {language} block {skip + 1} after {heading!r}"
    return blocks[skip]


def python_block_after(heading: str) -> str:
    return code_block_after(heading, "python")


def test_the_loader_example_runs_as_written() -> None:
    exec(compile(python_block_after("### The loader, without Flask"), "README.md", "exec"), {})


def test_the_near_cache_example_runs_as_written() -> None:
    heading = "### The hot path: a near-cache in front of DynamoDB"
    exec(compile(python_block_after(heading), "README.md", "exec"), {})
