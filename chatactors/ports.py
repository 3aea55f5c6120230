"""Local ports: how a worker thread in this process hands a result back to an actor.

On ``simpleSystemBase`` only the bridge's driver thread may run the actors, so a thread of the
login actor's hashing pool cannot tell an actor itself: it puts ``(address, message)`` on the chat's
local port, and the driver tells it into the system on its next turn. The registry lives here, below
both the actors (which put) and the bridge (which drains), so that actors never import the edge.
"""

from __future__ import annotations

import queue
from typing import Any

_PORTS: dict[str, queue.SimpleQueue[Any]] = {}


def open_local_port(key: str) -> queue.SimpleQueue[Any]:
    """The queue of ``(address, message)`` for ``key``, made on first use."""
    return _PORTS.setdefault(key, queue.SimpleQueue())


def local_port(key: str) -> queue.SimpleQueue[Any]:
    """The queue an open port ``key`` delivers from; KeyError once it is closed."""
    return _PORTS[key]


def close_local_port(key: str) -> None:
    _PORTS.pop(key, None)


__all__ = ["close_local_port", "local_port", "open_local_port"]
