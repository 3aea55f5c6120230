"""The real server (``python -m chatactors serve``) dies in the middle of a burst of sends, and comes back.

What crash runs of the server found true, kept true: whatever the server acknowledged (a ``sent`` frame) is
stored exactly once, and a client that retries every send it got no answer for, with the same
``client_id``, ends with exactly one row per message; a retry of an acknowledged send is answered with
the original id. Killed with SIGKILL (no goodbye: the sockets just end) and stopped with SIGTERM
(graceful: close 1001), on both system bases and both databases. The clients run in threads of this
process and wait on frames with deadlines; the burst is bounded (3 senders, 30 messages each).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from test_server import Client, Marker, _serve
from websockets.exceptions import ConnectionClosed

from chatactors.chat import free_port

SENDERS = ("juan", "pedro", "ana")
PER_SENDER = 30  # with the login, under the default burst of 40 frames: no send is rate limited
KILL_AFTER = 25  # acknowledged sends (of 90) before the signal


class Sender:
    """One user's burst: sends one message at a time, remembers what was acknowledged with which id."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.planned = [(f"{name}-{i}", f"{name} mensaje {i}") for i in range(PER_SENDER)]
        self.acked: dict[str, int] = {}  # client_id -> message id, from 'sent' frames
        self.attempted: set[str] = set()

    def burst(self, url: str, progress: threading.Semaphore) -> None:
        """Send until the plan is done or the server goes away; never raises for a dying server."""
        try:
            client = Client(url)
        except OSError:
            return
        try:
            client.login(self.name)
            for client_id, body in self.planned:
                self.attempted.add(client_id)
                client.send("send", to="maria", body=body, client_id=client_id)
                answer = self._answer(client, client_id)
                if answer is None:
                    continue  # an error frame: not acknowledged, retried later
                self.acked[client_id] = answer
                progress.release()
        except (ConnectionClosed, OSError, AssertionError):
            return  # the server died (or stopped) with this send in flight
        finally:
            client.close()

    @staticmethod
    def _answer(client: Client, client_id: str, timeout: float = 20.0) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(client.ws.recv(timeout=max(deadline - time.monotonic(), 0.001)))
            if frame.get("client_id") == client_id and frame["type"] in ("sent", "error"):
                return frame["id"] if frame["type"] == "sent" else None

    def retry(self, url: str) -> dict[str, int]:
        """After the restart: every unacknowledged send again, plus one that was acknowledged."""
        again: dict[str, int] = {}
        client = Client(url)
        try:
            client.login(self.name)
            unacked = [(c, b) for c, b in self.planned if c not in self.acked]
            acked_once = [(c, b) for c, b in self.planned if c in self.acked][:1]
            for client_id, body in unacked + acked_once:
                client.send("send", to="maria", body=body, client_id=client_id)
                again[client_id] = client.expect("sent", client_id=client_id, timeout=20)["id"]
        finally:
            client.close()
        return again


def stored(db_url: str) -> list[tuple[str, str, int]]:
    """(sender, client_id, id) of every stored message, read straight from the database."""
    query = "SELECT u.username, m.client_id, m.id FROM mensajes m JOIN users u ON u.id = m.sender_id ORDER BY m.id"
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]
        finally:
            conn.close()
    with psycopg2.connect(db_url) as pg, pg.cursor() as cur:
        cur.execute(query)
        rows = [tuple(row) for row in cur.fetchall()]
    pg.close()
    return rows  # type: ignore[return-value]


@pytest.fixture
def marker() -> Iterator[Marker]:
    """Every process the servers fork; whatever is still running at the end is killed (that no
    process outlives its server is tests/test_orphans.py's; this test only makes sure it leaves none)."""
    found = Marker()
    yield found
    for pid in found.holders():
        os.kill(pid, signal.SIGKILL)
    found.close()


@pytest.mark.multiproc
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_every_acknowledged_send_is_stored_once_when_the_server_dies_mid_burst(
    db_url: str, system: str, stop: signal.Signals, marker: Marker, tmp_path: Path
) -> None:
    port = free_port()  # the same port after the restart, as clients expect
    args = ["--port", str(port), "--system", system, "--database-url", db_url]
    args += ["--password-profile", "cheapest", "--log-level", "WARNING"]

    def start() -> Any:
        server_args = args + (["--admin-port", str(free_port())] if system == "multiprocTCPBase" else [])
        return _serve(server_args, marker)

    proc, url = start()
    servers = [proc]
    try:
        for name in ("maria", *SENDERS):
            first = Client(url)
            first.register(name)
            first.close()
        senders = [Sender(name) for name in SENDERS]
        progress = threading.Semaphore(0)
        threads = [threading.Thread(target=s.burst, args=(url, progress)) for s in senders]
        for t in threads:
            t.start()
        for _ in range(KILL_AFTER):
            assert progress.acquire(timeout=30), "the burst stalled before the signal"
        proc.send_signal(stop)
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert proc.wait(60) == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
        if stop == signal.SIGTERM:  # after kill -9, orphaned actor processes still hold the pipe open
            out, _ = proc.communicate(timeout=60)
            assert " INFO " not in out and "chatactors server stopped" in out  # --log-level WARNING
        acked = sum(len(s.acked) for s in senders)
        assert KILL_AFTER <= acked < len(SENDERS) * PER_SENDER, "the signal did not land mid-burst"

        proc, url = start()
        servers.append(proc)
        retried = {s.name: s.retry(url) for s in senders}

        rows = stored(db_url)
        for s in senders:
            mine = {client_id: id_ for sender, client_id, id_ in rows if sender == s.name}
            assert len([r for r in rows if r[0] == s.name]) == len(mine), (
                f"{s.name}: a client_id stored twice"
            )
            assert set(mine) == {c for c, _ in s.planned}, f"{s.name}: a message lost"
            for client_id, id_ in s.acked.items():
                assert mine[client_id] == id_, f"{s.name}: acknowledged {client_id} changed id"
            for client_id, id_ in retried[s.name].items():
                assert mine[client_id] == id_, f"{s.name}: the retry of {client_id} got another id"
        assert len(rows) == len(SENDERS) * PER_SENDER
    finally:
        for server in servers:
            if server.poll() is not None:
                assert server.stdout is not None
                server.stdout.close()
            else:
                server.send_signal(signal.SIGTERM)
                try:
                    server.communicate(timeout=30)
                except Exception:  # noqa: BLE001 - then it is killed
                    server.kill()
                    server.wait(10)
