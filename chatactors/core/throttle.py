"""Login throttling, after OWASP's authentication guidance: growing delays, not lockouts.

Failures are counted twice: per (account, client address) and per client address. Each counter
allows a few failures, then refuses attempts for a delay that doubles with every further failure, up
to a cap. So:

- an attacker's failures from address A delay (account, A) and A, never the owner on address B;
- a success from A resets only (account, A): it hands nobody fresh guesses on other addresses, and
  the address counter (guesses against many accounts from A) keeps counting;
- a counter is forgotten after ``forget_after`` seconds without a failure (memory stays bounded too).

An account is whatever was looked up (``user:7``, or ``unknown:name`` for a name that does not exist),
so unknown names are throttled like real ones and count against the address.

:class:`HashSlots` bounds the password hashes in flight (a pool of workers plus a queue), overall and
per address, so a login storm gets a quick "busy" instead of an ever longer wait. A few of those slots
are kept for an account logging in from an address where it logged in before (OWASP's "device
cookie", by address): a storm from many addresses does not keep the owner out of a known place.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from chatactors.core.clock import Clock

LOCAL = "local"  # the REPL API: every login typed into one Python process counts as one address


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """The throttle's settings (``Chat(login_policy=...)``); the defaults suit people typing."""

    account_attempts: int = 5  # failures per (account, address) before delays start
    address_attempts: int = 20  # failures per address, any account, before delays start
    base_delay: float = 1.0  # seconds; doubles with every failure past the free ones
    max_delay: float = 300.0  # the longest delay
    forget_after: float = 3600.0  # a counter with no failure for this long starts over
    max_records: int = 100_000  # counters kept at most; the oldest go first
    hash_workers: int = 2  # password hashes computed at once (threads; argon2 releases the GIL)
    hash_queue: int = 8  # hashes waiting for a worker before logins are refused as busy
    hashes_per_address: int = 4  # hashes one address may have running or queued
    hash_reserved: int = 2  # of the queue, kept for accounts logging in from an address they used before


def client_key(address: str | None) -> str:
    """The address a failure counts against: an IPv4 address, an IPv6 /64 (what one host usually
    holds), or the text as given (``"local"`` for the REPL)."""
    if not address:
        return LOCAL
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    def __init__(self, clock: Clock, policy: LoginPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or LoginPolicy()
        self._records: dict[tuple[str, ...], _Record] = {}  # oldest failure first
        self._known: dict[tuple[str, str], None] = {}  # (account, address) that logged in; oldest first

    def _keys(self, account: str, address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (account, address), (address,)

    def _record(self, key: tuple[str, ...]) -> _Record | None:
        record = self._records.get(key)
        if record is not None and self._forgotten(record, self.clock.now()):
            del self._records[key]
            return None
        return record

    def _forgotten(self, record: _Record, now: float) -> bool:
        return now >= record.locked_until and now - record.last_failure >= self.policy.forget_after

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until ``account`` may be tried again from ``address`` (0 when it may now)."""
        now, wait = self.clock.now(), 0.0
        for key in self._keys(account, address):
            record = self._record(key)
            if record is not None:
                wait = max(wait, record.locked_until - now)
        return wait

    def failed(self, account: str, address: str) -> None:
        policy, now = self.policy, self.clock.now()
        account_key, address_key = self._keys(account, address)
        for key, free in ((account_key, policy.account_attempts), (address_key, policy.address_attempts)):
            record = self._record(key) or _Record()
            self._records.pop(key, None)  # re-inserted last: the dict stays ordered by last failure
            self._records[key] = record
            record.failures += 1
            record.last_failure = now
            over = record.failures - free
            if over >= 0:
                record.locked_until = now + min(policy.max_delay, policy.base_delay * 2**over)
        self._trim(now)

    def succeeded(self, account: str, address: str, *aliases: str) -> None:
        """The right password from ``address``: only (account, address) starts over, and the account
        (also by its ``aliases``: the name it was typed as) is known there from now on."""
        self._records.pop(self._keys(account, address)[0], None)
        for name in (account, *aliases):
            self._known.pop((name, address), None)
            self._known[(name, address)] = None
        while len(self._known) > self.policy.max_records:
            del self._known[next(iter(self._known))]

    def known(self, account: str, address: str) -> bool:
        """Whether ``account`` logged in from ``address`` before (since this throttle started)."""
        return (account, address) in self._known

    def __len__(self) -> int:
        return len(self._records)

    def _trim(self, now: float) -> None:
        while self._records:
            key, record = next(iter(self._records.items()))
            if len(self._records) <= self.policy.max_records and not self._forgotten(record, now):
                return
            del self._records[key]


class HashSlots:
    """Room for ``workers + queue`` password hashes at once, and ``per_address`` of them per address."""

    def __init__(self, policy: LoginPolicy | None = None) -> None:
        policy = policy or LoginPolicy()
        self.capacity = policy.hash_workers + policy.hash_queue
        self.reserved = min(policy.hash_reserved, policy.hash_queue)
        self.per_address = policy.hashes_per_address
        self._held: Counter[str] = Counter()
        self.in_use = 0

    def free(self, address: str, known: bool = False) -> bool:
        """Whether ``take`` would succeed: checked first, so a refusal costs no database read.
        Only ``known`` logins (an account from an address it used before) may use the reserved slots."""
        limit = self.capacity if known else self.capacity - self.reserved
        return self.in_use < limit and self._held[address] < self.per_address

    def take(self, address: str, known: bool = False) -> bool:
        """A slot for one hash, or False when the pool or this address's share is full."""
        if not self.free(address, known):
            return False
        self._held[address] += 1
        self.in_use += 1
        return True

    def release(self, address: str) -> None:
        self._held[address] -= 1
        if self._held[address] <= 0:
            del self._held[address]
        self.in_use -= 1
