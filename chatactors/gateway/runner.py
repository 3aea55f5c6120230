"""Running a gateway as a process: a Chat, a Gateway, and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from chatactors.chat import Chat
from chatactors.dblock import DatabaseLock
from chatactors.gateway.limits import Limits
from chatactors.gateway.server import Gateway
from chatactors.settings import resolve_database_url


async def serve_until_signalled(
    gateway: Gateway, on_ready: Callable[[Gateway], None] | None = None, *, reuse_port: bool = False
) -> None:
    """Serve until SIGINT or SIGTERM, then stop the gateway gracefully (``reuse_port``: see
    :meth:`Gateway.start`)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await gateway.start(reuse_port=reuse_port)
    if on_ready is not None:
        on_ready(gateway)
    try:
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await gateway.stop()


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    chat_options: dict[str, Any] | None = None,
    limits: Limits | None = None,
    on_ready: Callable[[Gateway], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Start a Chat and a Gateway, serve until SIGINT/SIGTERM, then shut both down (no process left).
    ``reuse_port``: share the port with other processes that set it too (see :meth:`Gateway.start`).

    Raises DatabaseInUse if another server runs on the same SQLite database (see chatactors.dblock).
    """
    options = {"announce_login": False, "echo": False, **(chat_options or {})}
    with DatabaseLock(resolve_database_url(options.get("database_url"))):
        chat = Chat(**options)
        try:
            gateway = Gateway(chat, host, port, limits=limits)
            asyncio.run(serve_until_signalled(gateway, on_ready, reuse_port=reuse_port))
        finally:
            chat.shutdown()
