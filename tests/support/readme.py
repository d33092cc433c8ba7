"""The README's code blocks (and docs/ pages'), which tests run as written."""

from __future__ import annotations

import re
from pathlib import Path

from devtools import REPOSITORY_ROOT

README = REPOSITORY_ROOT / "README.md"


def code_block_after(heading: str, language: str, *, skip: int = 0, document: Path = README) -> str:
    """The first ```<language> block after ``heading`` in ``document`` (after ``skip`` others)."""
    text = document.read_text()
    start = text.index(heading)
    blocks = re.findall(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert len(blocks) > skip, f"no {language} block {skip + 1} after {heading!r}"
    return blocks[skip]
