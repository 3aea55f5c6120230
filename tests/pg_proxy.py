"""A TCP relay in front of the test PostgreSQL that can lose a statement on the way: the faults of a
network between a node and its database, made on loopback with the real server behind them.

``arm("reply")``: the next COMMIT (or the statement ``match`` names) reaches the server and runs; its
reply is dropped and the client's connection closed, as a connection lost after the server did it.
``arm("request")``: the next COMMIT is dropped and the client's connection closed. Either way the
server's session stays open, as after a network cut that no reset announces: idle, or in its
transaction and holding its locks.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # the simple-protocol Query psycopg2 sends for commit()
READY = b"Z\x00\x00\x00\x05"  # ReadyForQuery: the server is done with the previous query


class PgProxy:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
        self.url = urlunsplit(parts._replace(netloc=netloc, query="sslmode=disable"))
        self._armed: str | None = None
        self._match = COMMIT
        self._refuse_next = False  # the next connection after the fault is closed at once
        self.fired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def arm(self, fault: str, then_refuse: bool = False, match: bytes = COMMIT) -> None:
        """Lose the next COMMIT, or the next statement whose bytes hold ``match``; with
        ``then_refuse``, also refuse the connection made after it (the database unreachable a
        moment longer)."""
        assert fault in ("reply", "request")
        self._armed, self._refuse_next, self._match = fault, then_refuse, match

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._refuse_next and self.fired.is_set():
                self._refuse_next = False
                _close(client)
                continue
            server = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, server]
            lost_reply = threading.Event()
            for target in (
                lambda c=client, s=server, e=lost_reply: self._to_server(c, s, e),
                lambda c=client, s=server, e=lost_reply: self._to_client(s, c, e),
            ):
                thread = threading.Thread(target=target, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _to_server(self, client: socket.socket, server: socket.socket, lost_reply: threading.Event) -> None:
        while data := _recv(client):
            if self._armed is not None and self._match in data:
                fault, self._armed = self._armed, None
                if fault == "request":  # the COMMIT never arrives; the server's session lives on
                    self.fired.set()  # first: the client reconnects as soon as it sees the close
                    _close(client)
                    return
                lost_reply.set()
            try:
                server.sendall(data)
            except OSError:
                break
        if not lost_reply.is_set():  # after a lost reply the server's session lives on
            _close(server)

    def _to_client(self, server: socket.socket, client: socket.socket, lost_reply: threading.Event) -> None:
        while data := _recv(server):
            if lost_reply.is_set():  # the server did it; its reply goes nowhere
                if READY in data:
                    self.fired.set()
                    _close(client)
                    return
                continue
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)

    def close(self) -> None:
        _close(self._listener)
        with self._lock:
            for s in self._sockets:
                _close(s)
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> PgProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
