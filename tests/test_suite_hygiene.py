"""The test suite's own rules: helpers come from one module, and the check that the session left
nothing running is a session hook, not a file that must sort last."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from helpers import SESSION_MARKER_FD, alive, leftover_processes, leftovers

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_conftest() -> None:
    importers = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if "conftest" in names:
                importers.append(f"{path.name}:{node.lineno}")
    assert importers == []


def test_the_leftover_check_is_a_session_hook_not_a_file_sorted_last() -> None:
    hooks = [
        node.name
        for node in ast.parse((TESTS / "conftest.py").read_text()).body
        if isinstance(node, ast.FunctionDef)
    ]
    assert "pytest_sessionfinish" in hooks
    assert sorted(p.name for p in TESTS.glob("test_zz*.py")) == []


def test_a_process_the_session_started_is_a_leftover_until_it_exits() -> None:
    # It holds the session's marker, as every process the session forks does (Thespian's daemonized
    # admin included, which is no longer a descendant of pytest).
    process = subprocess.Popen(["sleep", "60"], pass_fds=(SESSION_MARKER_FD,))
    try:
        assert any(f"pid {process.pid} " in line for line in leftover_processes())
        assert any(f"pid {process.pid} " in line for line in leftovers(timeout=0))
    finally:
        process.kill()
        process.wait(10)
    assert not alive(process.pid)
    assert not any(f"pid {process.pid} " in line for line in leftover_processes())
