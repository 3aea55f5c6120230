"""The project cites only what is in it: every ``*.md`` it names exists, and no text points at a
tracker issue by number (a reader of the code has no tracker; say what is meant instead)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXTS = sorted(
    [ROOT / "README.md", ROOT / "Makefile"]
    + [
        p
        for d in ("chatactors", "tests", "bench", "examples", "docs")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    ]
)
TEXTS = [
    p
    for p in TEXTS
    if p.suffix in {".py", ".md", ".js", ".html", ""}
    and "__pycache__" not in p.parts
    and p != Path(__file__).resolve()  # this file spells the patterns out
]
MARKDOWN = re.compile(r"[\w./-]+\.md\b")
ISSUE = re.compile(r"\bissues? \d+", re.IGNORECASE)


def cited(path: Path, name: str) -> bool:
    """A citation resolves from the repository root, from the citing file's folder, or as docs/<name>."""
    return any((base / name).is_file() for base in (ROOT, path.parent, ROOT / "docs"))


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_cited_file_exists_and_no_issue_is_cited_by_number(path: Path) -> None:
    text = path.read_text(errors="replace")
    assert [name for name in MARKDOWN.findall(text) if not cited(path, name)] == []
    assert ISSUE.findall(text) == []
