"""The REPL sessions the README and docs/api.md open with are what a real session prints: each block
runs as a doctest, in an empty directory (``Chat()`` makes ``./chatactors.db``) with the interpreter's
``sys.ps1`` set, so the chat echoes arriving messages as it does at a ``>>>`` prompt."""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Five minutes in a REPL"
SESSIONS = {"README.md": HEADING, "docs/api.md": "# chatactors: the Python API"}


def repl_block(path: Path, heading: str) -> tuple[str, int]:
    """The first ```pycon block after ``heading``, and the line it starts on."""
    text = path.read_text(encoding="utf-8")
    found = re.compile(r"^```pycon\n(.*?)^```$", re.S | re.M).search(text, text.index(heading))
    assert found is not None, f"no pycon block after {heading!r} in {path.name}"
    return found.group(1), text.count("\n", 0, found.start(1))


@pytest.mark.parametrize("page", list(SESSIONS))
def test_the_repl_session_a_page_shows_is_what_it_prints(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block, line = repl_block(ROOT / page, SESSIONS[page])
    monkeypatch.chdir(tmp_path)
    for name in ("CHATACTORS_DATABASE_URL", "CHATACTORS_SYSTEM", "CHATACTORS_ADMIN_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    globs: dict[str, Any] = {}
    test = doctest.DocTestParser().get_doctest(block, globs, page, str(ROOT / page), line)
    assert len(test.examples) >= 8  # the block was found whole
    report: list[str] = []
    try:
        result = doctest.DocTestRunner(verbose=False).run(test, out=report.append)
    finally:
        chat = globs.get("chat")
        if chat is not None:
            chat.shutdown()  # the block's own shutdown may not have been reached
    assert result.failed == 0, "".join(report)
    assert (tmp_path / "chatactors.db").exists()  # it ran on the default database, here


def test_a_readme_without_the_block_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(f"{HEADING}\n\n```python\n>>> 1\n1\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="no pycon block"):
        repl_block(page, HEADING)
