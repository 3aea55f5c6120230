"""The supervisor's book of its children: which actor serves which key, and which are spares.

Spares are handed out by the directory, which then tells the supervisor (``Assigned``). On
multiprocTCPBase that message races Thespian's report of the child's exit, which the supervisor's
own process generates: an activation that loads, idles and retires within a few milliseconds (a
room whose members hibernated) can be reported gone before the supervisor hears it was assigned.
Such an exit is kept and reported when the assignment arrives; dropping it left the directory
waiting forever for that exit, holding every message for the key (a send that never returned).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from chatactors.core.model import Address, Kind

Key = tuple[Kind, int]


@dataclass(frozen=True)
class Exited:
    """Tell the directory that the actor serving ``key`` at ``address`` is gone."""

    key: Key
    address: Address


class Children:
    """Addresses are opaque and compared with ``==``: on multiprocTCPBase ``createActor`` returns a
    placeholder whose ``str`` changes once the child's process is up."""

    # Exits of spares not (yet) assigned. A spare that died on its own is never assigned, so the
    # record is bounded; 256 is far more than can race at once (eight user and two room spares).
    EARLY_EXITS_KEPT = 256

    def __init__(self) -> None:
        self.serving: list[tuple[Kind, int, Address]] = []
        self.spares: dict[Kind, list[Address]] = {}
        self._exited_spares: deque[tuple[Kind, Address]] = deque(maxlen=self.EARLY_EXITS_KEPT)

    def add_spare(self, kind: Kind, address: Address) -> None:
        self.spares.setdefault(kind, []).append(address)

    def missing_spares(self, kind: Kind, wanted: int) -> int:
        return max(0, wanted - len(self.spares.get(kind, ())))

    def started(self, key: Key, address: Address) -> None:
        """Started for ``key`` at the directory's request (no spare was left)."""
        self.serving.append((key[0], key[1], address))

    def assigned(self, key: Key, address: Address) -> list[Exited]:
        """The directory handed spare ``address`` to ``key``."""
        spares = self.spares.get(key[0], [])
        if address in spares:
            spares.remove(address)
        early: tuple[Kind, Address] = (key[0], address)
        if early in self._exited_spares:
            self._exited_spares.remove(early)
            return [Exited(key, address)]  # it is gone already: the directory learns it now
        self.serving.append((key[0], key[1], address))
        return []

    def exited(self, address: Address) -> list[Exited]:
        """Thespian reports a child gone (on multiprocTCPBase each exit is reported twice: the
        second finds nothing and is a no-op)."""
        for index, (kind, ident, serving) in enumerate(self.serving):
            if serving == address:
                del self.serving[index]
                return [Exited((kind, ident), address)]
        for kind, spares in self.spares.items():
            if address in spares:
                spares.remove(address)
                self._exited_spares.append((kind, address))  # its Assigned may be on the way
                return []
        return []

    def all_spares(self) -> tuple[tuple[Kind, Address], ...]:
        return tuple((kind, a) for kind, addresses in self.spares.items() for a in addresses)
