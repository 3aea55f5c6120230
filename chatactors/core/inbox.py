"""A user's live inbox: the last N messages received, newest last (roadmap V0.7)."""

from __future__ import annotations

from collections.abc import Iterable

from chatactors.core.model import Message

INBOX_SIZE = 10


class Inbox:
    def __init__(self, messages: Iterable[Message] = (), size: int = INBOX_SIZE) -> None:
        self.size = size
        self._items: list[Message] = []
        for message in messages:
            self.add(message)

    def add(self, message: Message) -> None:
        """Insert in id order; a duplicate id (a redelivery) replaces the old copy."""
        self._items = [m for m in self._items if m.id != message.id]
        self._items.append(message)
        self._items.sort(key=lambda m: m.id)
        del self._items[: -self.size]

    def mark(self, ids: Iterable[int], status: str) -> None:
        wanted = set(ids)
        self._items = [m.with_status(status) if m.id in wanted else m for m in self._items]

    def messages(self) -> tuple[Message, ...]:
        return tuple(self._items)
