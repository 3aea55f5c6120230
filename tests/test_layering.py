"""Imports only point down, and each boundary has one door: read from the source with ``ast``.

From the bottom up: ``core`` (the chat rules: no actors, no I/O) and ``errors``; ``messages``,
``storage``, ``ports``, ``transport``; ``actors`` (Thespian shells) and ``cluster`` (the membership
table and its shell); and the edge, where threads and sockets meet the actors: ``bridge``,
``peering``, ``settings``, ``node``, ``session``, ``chat``, ``server``, ``cli``.
"""

from __future__ import annotations

import ast
import asyncio
import queue
from pathlib import Path

import pytest

import chatactors
from chatactors.bridge import drain

PACKAGE = Path(chatactors.__file__).parent
EDGE = (
    "chatactors.bridge",
    "chatactors.peering",
    "chatactors.settings",
    "chatactors.node",
    "chatactors.session",
    "chatactors.chat",
    "chatactors.gateway",
    "chatactors.client",
    "chatactors.cli",
)
# What each layer may not import (a module or anything below it).
FORBIDDEN = {
    "chatactors.core": (
        "chatactors.actors",
        "chatactors.storage",
        "chatactors.ports",
        "chatactors.transport",
        "chatactors.cluster",
        *EDGE,
        "thespian",
        "peewee",
        "playhouse",
        "psycopg2",
        "websockets",
    ),
    "chatactors.actors": EDGE,
    "chatactors.cluster": EDGE,
    # The protocol's codec is shared with the Python client: frames and rules, nothing that runs.
    "chatactors.gateway.frames": (
        "chatactors.actors",
        "chatactors.storage",
        "chatactors.ports",
        "chatactors.transport",
        "chatactors.cluster",
        "chatactors.bridge",
        "chatactors.node",
        "chatactors.session",
        "chatactors.chat",
        "chatactors.cli",
        "chatactors.gateway.server",
        "chatactors.gateway.connection",
        "thespian",
        "peewee",
        "psycopg2",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str) -> set[str]:
    """Every module ``source`` imports, at any depth (a function's late import counts too);
    ``from a import b`` counts as ``a.b`` as well, since ``b`` may be a module."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(module: str, source: str) -> list[str]:
    bad = []
    for layer, forbidden in FORBIDDEN.items():
        if module == layer or module.startswith(layer + "."):
            for imported in sorted(imports(source, module)):
                if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                    bad.append(f"{module} imports {imported}")
    return bad


def test_the_checker_sees_every_form_of_import() -> None:
    assert violations("chatactors.core.x", "import thespian.actors") == [
        "chatactors.core.x imports thespian.actors"
    ]
    assert violations("chatactors.core.x", "def f():\n    from chatactors import storage\n") == [
        "chatactors.core.x imports chatactors.storage"
    ]
    assert violations("chatactors.actors.x", "from ..bridge import local_port") == [
        "chatactors.actors.x imports chatactors.bridge",
        "chatactors.actors.x imports chatactors.bridge.local_port",
    ]
    assert violations("chatactors.actors.x", "from chatactors.core.model import UserInfo") == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_imports_against_the_layering(path: Path) -> None:
    assert violations(module_name(path), path.read_text()) == []


# -- one door per boundary ---------------------------------------------------------------------------
def _class(path: Path, name: str) -> ast.ClassDef:
    tree = ast.parse(path.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def test_a_session_uses_only_public_names_of_its_chat() -> None:
    session = _class(PACKAGE / "session.py", "Session")
    private = sorted(
        f"line {node.lineno}: self._chat.{node.attr}"
        for node in ast.walk(session)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_chat"
    )
    assert private == []


THESPIAN_INTERNALS = {
    "_systemBase",
    "external_clone",
    "my_instance",
    "rcvq",
    "_realizeWakeups",
    "_runSends",
    "_newRefAndActor",
    "actorRegistry",
}


# One adapter per base: the bridge's SimpleSystem (simpleSystemBase), and for multiprocTCPBase
# contexts (bench/link_probe.py, the first node link's basis) the transport's context_address.
ADAPTERS = {"SimpleSystem", "context_address"}


def test_thespian_internals_are_used_by_one_adapter_only() -> None:
    where = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        inside = {
            id(node)
            for adapter in ast.walk(tree)
            if isinstance(adapter, ast.ClassDef | ast.FunctionDef) and adapter.name in ADAPTERS
            for node in ast.walk(adapter)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in THESPIAN_INTERNALS and id(node) not in inside:
                where.append(f"{module_name(path)}:{node.lineno} {node.attr}")
    assert where == []


def test_the_queue_drain_loop_is_written_once() -> None:
    calls = [
        f"{module_name(path)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "get_nowait"
    ]
    assert len(calls) == 1 and calls[0].startswith("chatactors.bridge:")  # in drain()


def test_drain_takes_what_is_queued_oldest_first_without_waiting() -> None:
    q: queue.SimpleQueue[int] = queue.SimpleQueue()
    assert drain(q) == []
    for i in range(3):
        q.put(i)
    assert drain(q) == [0, 1, 2]
    assert q.empty()
    frames: asyncio.Queue[str] = asyncio.Queue()  # a connection's frames out, drained by its writer
    assert drain(frames) == []
    frames.put_nowait("a")
    frames.put_nowait("b")
    assert drain(frames) == ["a", "b"] and frames.empty()
