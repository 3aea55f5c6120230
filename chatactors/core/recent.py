"""The message ids a receiver has seen lately: a push that repeats one is dropped.

The core pushes a message once, but a receiver can meet one twice: a gateway mirrors what a user
sends to their other connections (a retry is mirrored again), and after a ring change a catch-up can
push a message that a login racing it returned in its inbox.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds:
    """The last ``size`` ids: a set to look them up, a deque for which to forget first."""

    def __init__(self, size: int, ids: Iterable[int] = ()) -> None:
        self._order: deque[int] = deque(maxlen=size)
        self._ids: set[int] = set()
        for ident in ids:
            self.add(ident)

    def __contains__(self, ident: object) -> bool:
        return ident in self._ids

    def add(self, ident: int) -> bool:
        """Remember ``ident``; False if it was remembered already (a repeat)."""
        if ident in self._ids:
            return False
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(ident)
        self._ids.add(ident)
        return True
