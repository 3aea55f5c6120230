"""What a core object says to a caller that waits: the actor answers the request it was handed.

The request is opaque here (a message the actor received); the actor replies to whoever it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatactors.errors import ChatError


@dataclass(frozen=True)
class Answer:
    """Reply ``value`` to ``request``."""

    request: Any
    value: Any = None


@dataclass(frozen=True)
class Refuse:
    """Answer ``request`` (or the request a message carries), if it is one, with ``error``."""

    request: Any
    error: ChatError
