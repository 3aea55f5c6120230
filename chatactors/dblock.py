"""One server per SQLite database: an exclusive lock on ``<database>.lock``, beside the file.

Two servers on one SQLite file would share the messages but neither presence nor delivery: each
would think the other's users offline. The second one is refused instead, with a clear message.

The lock is the kernel's (``flock``): it belongs to the open file, so it goes away with the process
that holds it, however that process ends. A server killed with ``kill -9`` leaves the file behind
but no lock on it; the next server takes the lock at once. The file holds the holder's pid, for the
message. A forked child (every actor process of multiprocTCPBase) closes its copy of the descriptor
at once: the lock is the server's alone, and ends with it even while its actors are still stopping.
PostgreSQL is a server of its own, shared by design (clustering), and an in-memory SQLite
database cannot be shared at all: neither is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from chatactors.errors import DatabaseInUse, StorageUnavailable

_held: set[int] = set()  # descriptors of the locks this process holds


def _close_in_child() -> None:
    # Closing, never LOCK_UN: unlocking in a child would unlock the parent's lock too (it is one open
    # file); a closed copy only stops the child from keeping the lock alive after the parent is gone.
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL, as peewee's
    ``playhouse.db_url`` reads it; None for another database or an in-memory one."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("sqlite"):
        return None
    path = rest.split("?", 1)[0]
    path = path[1:] if path.startswith("/") else path
    return None if path in ("", ":memory:") else Path(path)


class DatabaseLock:
    """Held from :meth:`acquire` (or ``with``) until :meth:`release` or the process's end."""

    def __init__(self, url: str) -> None:
        self.url = url
        database = sqlite_file(url)
        self.path = None if database is None else database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse naming the server that holds it. Never waits."""
        if self.path is None or self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # no such folder, no permission: the database could not be opened either
            raise StorageUnavailable(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DatabaseInUse(
                f"{self.url} is in use by another chatactors server{by}: stop it, or give this one "
                "another database with --database-url"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _held.add(fd)

    def release(self) -> None:
        """Let the next server in. The file stays: removing it could let two servers lock two files."""
        fd, self._fd = self._fd, None
        if fd is not None and fd in _held:  # not in a forked child, whose copy is closed already
            _held.discard(fd)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor of the open file releases its flock

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
