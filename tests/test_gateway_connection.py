"""One connection's outgoing frames: the flusher's write each loop turn, the writer task while the peer's
buffer is full, and the hand-back between them, on a real ``websockets`` connection in one loop.

A full socket buffer is made with ``ws.pause_writing()`` / ``ws.resume_writing()``, what the transport
calls at its high and low water marks, so the writer's path is taken for certain. ``turn()`` lets the
loop run what is ready (the flusher's callback, a woken task); it waits on nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chatactors.gateway.connection import Connection, Flusher
from chatactors.gateway.limits import Limits


class OneGateway:
    """What a Connection asks of its gateway: limits, a clock, the flusher."""

    def __init__(self) -> None:
        self.limits = Limits()
        self.clock = time.monotonic
        self.flusher = Flusher()


async def turn() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def with_pair(scenario: Callable[[ClientConnection, Connection], Awaitable[None]]) -> None:
    """Run ``scenario(client, conn)`` with ``conn`` the server side of a fresh connection."""

    async def main() -> None:
        ready: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            ready.set_result(Connection(OneGateway(), ws))  # type: ignore[arg-type]
            await done.wait()

        server = await serve(handler, "127.0.0.1", 0, ping_interval=None)
        port = server.sockets[0].getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}", ping_interval=None)
        try:
            await scenario(client, await asyncio.wait_for(ready, 5))
        finally:
            done.set()
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_order_is_kept_from_the_flusher_to_the_writer_and_back() -> None:
    async def scenario(client: ClientConnection, conn: Connection) -> None:
        ws = conn.ws
        for i in range(3):
            conn.push({"n": i})  # written by the flusher
        await turn()
        ws.pause_writing()  # the peer's buffer is full
        for i in range(3, 6):
            conn.push({"n": i})  # the flusher finds it paused: to the writer task
        await turn()
        assert conn.writer is not None
        for i in range(6, 9):
            conn.push({"n": i})  # behind the writer's frames
        ws.resume_writing()
        await turn()
        for i in range(9, 12):
            conn.push({"n": i})
        got = [json.loads(await asyncio.wait_for(client.recv(), 5))["n"] for _ in range(12)]
        assert got == list(range(12))
        assert conn.writer is None  # caught up: handed back to the flusher

    with_pair(scenario)


def test_a_frame_that_cannot_be_written_on_the_writers_path_closes_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As on the flusher's path: 1011 and a logged error, not a dead writer and a silent socket."""
    caplog.set_level(logging.ERROR, logger="chatactors")

    async def scenario(client: ClientConnection, conn: Connection) -> None:
        conn.ws.pause_writing()
        conn.push({"n": 0})
        await turn()
        assert conn.writer is not None  # waiting for the buffer to drain
        conn.push({"bad": object()})  # orjson cannot encode it
        conn.push({"n": 1})
        conn.ws.resume_writing()
        assert json.loads(await asyncio.wait_for(client.recv(), 5)) == {"n": 0}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
        assert client.close_code == 1011
        await asyncio.wait_for(conn.finished(), 5)
        assert conn.closed

    with_pair(scenario)
    assert any("write failed" in r.getMessage() for r in caplog.records)
