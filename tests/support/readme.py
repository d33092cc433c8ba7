"""The README's code blocks, which tests run as written."""

from __future__ import annotations

import re

from devtools import REPOSITORY_ROOT

README = REPOSITORY_ROOT / "README.md"


def code_block_after(heading: str, language: str, *, skip: int = 0) -> str:
    """The first ```<language> block after ``heading`` in the README (after ``skip`` others)."""
    text = README.read_text()
    start = text.index(heading)
    blocks = re.findall(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert len(blocks) > skip, f"no {language} block {skip + 1} after {heading!r}"
    return blocks[skip]
