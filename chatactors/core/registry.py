"""The directory's state machine: where each virtual actor lives, and who is online.

A key (``("user", 7)``, ``("room", 3)``) is in one of three states:

- absent: a message for it starts an activation and is buffered;
- activating / retiring: messages are buffered, never sent to an address that may vanish;
- live: messages are forwarded to its address.

Retiring is a two-phase handshake (docs/architecture.md, Virtual actors): the actor asks, the registry approves only when it
holds nothing for that actor and has nothing on its way to it, and then buffers; when the exit is
confirmed, anything buffered meanwhile starts a fresh activation. "Nothing on its way" is counted, not
assumed: every forward to an activation is numbered, and the actor's request says how many it has
received. On multiprocTCPBase a forward can still be in flight when the actor asks (or overtaken by the
approval); an actor that exited with it in flight would lose it, so the request is denied until the
numbers match. An exit the registry did not approve is a crash: the supervisor is asked
to restart the actor at once when its user is online or messages wait, else it comes back on demand.

Addresses are opaque (:data:`~chatactors.core.model.Address`); they are compared by ``str`` because
Thespian's cannot be hashed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from chatactors.core.clock import Clock, MonotonicClock
from chatactors.core.model import Address, Kind

Key = tuple[Kind, int]


@dataclass(frozen=True)
class Start:
    key: Key


@dataclass(frozen=True)
class Forward:
    key: Key
    address: Address
    message: Any
    seq: int = field(default=0, compare=False)  # its number among the forwards to this activation


@dataclass(frozen=True)
class Approve:
    address: Address


@dataclass(frozen=True)
class Deny:
    address: Address


Effect = Start | Forward | Approve | Deny

ACTIVATING, LIVE, RETIRING = "activating", "live", "retiring"


UNSEEN_FOR = 10.0  # seconds a message stored for no session is remembered (note_unseen)


@dataclass
class _Entry:
    state: str
    address: Address | None = None
    buffer: list[Any] = field(default_factory=list)
    last_routed: float = 0.0
    sent: int = 0  # forwards to this activation (its address) so far


class Registry:
    """Location and presence. Every message to an actor passes through here, so the registry also
    knows when each one was last used: one timer in the directory finds the idle ones (Thespian's
    simple base scans every pending timer on every send, so one timer per actor would not scale)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self._entries: dict[Key, _Entry] = {}
        self._sinks: dict[Key, dict[str, set[int]]] = {}  # key -> sink -> its sessions' numbers
        self._sink_addresses: dict[str, Address] = {}
        self._unseen: OrderedDict[Key, float] = OrderedDict()  # key -> until when, oldest first
        self.activations = 0
        self.retirements = 0
        self.crashes = 0

    # -- location -------------------------------------------------------------------------------
    def route(self, key: Key, message: Any) -> list[Effect]:
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(ACTIVATING, buffer=[message], last_routed=self.clock.now())
            self.activations += 1
            return [Start(key)]
        entry.last_routed = self.clock.now()
        if entry.state == LIVE and entry.address is not None:  # a live entry always has one
            return [self._forward(key, entry, entry.address, message)]
        entry.buffer.append(message)
        return []

    # -- messages stored for no session -----------------------------------------------------------
    def note_unseen(self, key: Key) -> None:
        """A message just went to ``key``'s actor while no session of its user was known here: it
        is stored for no one. Remembered for UNSEEN_FOR seconds, the window in which nodes can
        disagree about a ring (most such messages are for users who are simply offline)."""
        self._unseen[key] = self.clock.now() + UNSEEN_FOR
        self._unseen.move_to_end(key)  # the dict stays in deadline order

    def take_unseen(self, key: Key) -> bool:
        """Whether a message went to ``key`` for no session within the window (forgotten now)."""
        deadline = self._unseen.pop(key, None)
        return deadline is not None and deadline > self.clock.now()

    def unseen_keys(self) -> list[Key]:
        self._expire_unseen()
        return list(self._unseen)

    def _expire_unseen(self) -> None:
        """From the oldest (an OrderedDict: a plain dict's iterator rescans the slots its deleted
        front entries leave, and expiring k notes cost k squared steps)."""
        now, unseen = self.clock.now(), self._unseen
        while unseen:
            key, deadline = unseen.popitem(last=False)
            if deadline > now:
                unseen[key] = deadline
                unseen.move_to_end(key, last=False)
                return

    def notify(self, key: Key, message: Any) -> list[Effect]:
        """A message for the actor only if it is live now (an offline notice): never starts one."""
        entry = self._entries.get(key)
        if entry is None or entry.state != LIVE or entry.address is None:
            return []
        return [self._forward(key, entry, entry.address, message)]

    def _forward(self, key: Key, entry: _Entry, address: Address, message: Any) -> Forward:
        entry.sent += 1
        return Forward(key, address, message, entry.sent)

    def started(self, key: Key, address: Address) -> list[Effect]:
        entry = self._entries.setdefault(key, _Entry(ACTIVATING))
        if str(entry.address) != str(address):
            entry.sent = 0  # a new activation: its forwards are counted from one
        entry.state, entry.address = LIVE, address
        pending, entry.buffer = entry.buffer, []
        return [self._forward(key, entry, address, m) for m in pending]

    def retire_request(self, key: Key, address: Address, received: int) -> list[Effect]:
        """``received``: how many of this registry's forwards the actor has had. Fewer than were sent
        means one is on its way: deny, and the actor asks again after serving it."""
        entry = self._entries.get(key)
        if entry is None or entry.state != LIVE or str(entry.address) != str(address) or entry.buffer:
            return [Deny(address)]
        if received < entry.sent:
            return [Deny(address)]
        entry.state = RETIRING
        return [Approve(address)]

    def stop(self, key: Key) -> Address | None:
        """Stop a live actor now (no handshake): from here on it is retiring. Returns its address,
        or None when nothing runs for ``key``."""
        entry = self._entries.get(key)
        if entry is None or entry.state != LIVE:
            return None
        entry.state = RETIRING
        return entry.address

    def abandon(self, key: Key) -> list[Any]:
        """Forget an actor that is to start (another node owns ``key`` now); returns what was
        buffered for it, oldest first, for the caller to send on."""
        entry = self._entries.get(key)
        if entry is None or entry.state != ACTIVATING:
            return []
        del self._entries[key]
        self.activations -= 1  # counted when the start was asked for; it never happened
        return entry.buffer

    def live_keys(self) -> list[Key]:
        """Every key whose actor runs here now (not starting, not retiring)."""
        return [key for key, entry in self._entries.items() if entry.state == LIVE]

    def cancel_retire(self, key: Key, address: Address) -> list[Effect]:
        """The actor found new work after asking: it stays, and takes what was buffered."""
        entry = self._entries.get(key)
        if entry is None or entry.state != RETIRING or str(entry.address) != str(address):
            return []
        return self.started(key, address)

    def exited(self, key: Key, address: Address) -> list[Effect]:
        entry = self._entries.get(key)
        if entry is None or str(entry.address) != str(address):
            return []  # an old activation, already replaced
        if entry.state == RETIRING:
            self.retirements += 1
        else:
            self.crashes += 1
        if entry.buffer or (entry.state != RETIRING and self.is_online(key)):
            entry.state, entry.address = ACTIVATING, None
            self.activations += 1
            return [Start(key)]
        del self._entries[key]
        return []

    def supervisor_lost(self) -> list[Effect]:
        """The supervisor died, and every user and room actor with it (or its start request): each
        is handled as a crash, so those with buffered messages or online users start again."""
        effects: list[Effect] = []
        for key, entry in list(self._entries.items()):
            if entry.state == ACTIVATING:
                effects.append(Start(key))  # its start request went to the dead supervisor
                continue
            if entry.state == LIVE:
                self.crashes += 1
            if entry.buffer or (entry.state == LIVE and self.is_online(key)):
                entry.state, entry.address = ACTIVATING, None
                self.activations += 1
                effects.append(Start(key))
            else:
                del self._entries[key]
        return effects

    def adopt(self, key: Key, address: Address) -> bool:
        """A live actor the previous directory knew (this one was restarted). False when ``key`` is
        already taken by a newer activation: the caller stops the old one, so there is never two."""
        entry = self._entries.get(key)
        if entry is not None:
            return str(entry.address) == str(address)
        self._entries[key] = _Entry(LIVE, address, last_routed=self.clock.now())
        return True

    def known(self, key: Key) -> bool:
        """Whether an actor for ``key`` is starting, live or retiring here."""
        return key in self._entries

    def addresses(self) -> list[tuple[Key, Address]]:
        """Every actor that has an address now (live or retiring)."""
        return [(k, e.address) for k, e in self._entries.items() if e.address is not None]

    def idle(self, timeout: float) -> list[tuple[Key, Address]]:
        """Live actors that nothing was routed to for ``timeout`` seconds; each is reported once per
        ``timeout``, so an actor that declines to retire is asked again later, not on every tick."""
        self._expire_unseen()
        now, found = self.clock.now(), []
        for key, entry in self._entries.items():
            if entry.state == LIVE and entry.address is not None and now - entry.last_routed >= timeout:
                entry.last_routed = now
                found.append((key, entry.address))
        return found

    def address(self, key: Key) -> Address | None:
        entry = self._entries.get(key)
        return entry.address if entry is not None and entry.state == LIVE else None

    def live(self, kind: Kind | None = None) -> int:
        """Actors starting or running: a retiring one counts until its exit is confirmed."""
        return sum(1 for k, _ in self._entries if kind in (None, k))

    # -- presence -------------------------------------------------------------------------------
    def attach(self, key: Key, sink: Address, session: int) -> None:
        """Session number ``session`` at ``sink`` is open; told twice (an Attach and a Reattach that
        crossed it), it is still one session."""
        self._sink_addresses[str(sink)] = sink
        self._sinks.setdefault(key, {}).setdefault(str(sink), set()).add(session)

    def detach(self, key: Key, sink: Address, session: int) -> None:
        held = self._sinks.get(key, {})
        numbers = held.get(str(sink))
        if numbers is None:
            return
        numbers.discard(session)
        if not numbers:
            del held[str(sink)]
        if not held:
            del self._sinks[key]

    def drop_sink(self, sink: Address) -> list[Key]:
        """A gateway went away: every session it held is closed. Returns the keys it held."""
        name, touched = str(sink), []
        for key in list(self._sinks):
            if self._sinks[key].pop(name, None):
                touched.append(key)
            if not self._sinks[key]:
                del self._sinks[key]
        self._sink_addresses.pop(name, None)
        return touched

    def attached_keys(self) -> list[Key]:
        """Every key with at least one live session."""
        return list(self._sinks)

    def forget_sinks(self, key: Key) -> None:
        """Another node owns ``key`` now: its sessions are that node's to know."""
        self._sinks.pop(key, None)

    def sinks(self, key: Key) -> tuple[Address, ...]:
        return tuple(self._sink_addresses[s] for s in self._sinks.get(key, ()))

    def is_online(self, key: Key) -> bool:
        return key in self._sinks

    def online(self) -> int:
        return len(self._sinks)
