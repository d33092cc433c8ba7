"""The README's code blocks and the docs site's pages', which tests run as written."""

from __future__ import annotations

import re
from pathlib import Path

from devtools import REPOSITORY_ROOT

README = REPOSITORY_ROOT / "README.md"
DOCS = REPOSITORY_ROOT / "docs"
#: The README's curl story, step by step.
TUTORIAL = DOCS / "tutorial" / "curl-story.md"


def code_block_after(heading: str, language: str, *, skip: int = 0, document: Path = README) -> str:
    """The first ```<language> block after ``heading`` in ``document`` (after ``skip`` others)."""
    text = document.read_text()
    start = text.index(heading)
    blocks = re.findall(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert len(blocks) > skip, f"no {language} block {skip + 1} after {heading!r}"
    return blocks[skip]


def code_blocks_between(first: str, last: str, language: str, *, document: Path) -> list[str]:
    """Every ```<language> block from heading ``first`` up to heading ``last`` (excluded)."""
    text = document.read_text()
    start = text.index(first)
    section = text[start : text.index(last, start)]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def commands(block: str) -> list[str]:
    """A shell block's lines without the comment-only and blank ones (what runs)."""
    lines = (line for line in block.splitlines() if line.strip())
    return [line for line in lines if not line.lstrip().startswith("#")]
