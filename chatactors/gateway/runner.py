"""Running a gateway as a process: a Chat, a Gateway, and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable
from typing import Any

from chatactors.chat import Chat
from chatactors.dblock import DatabaseLock
from chatactors.gateway.limits import Limits
from chatactors.gateway.server import Gateway
from chatactors.settings import resolve_database_url

#: The collector's thresholds while serving (Python's default: 700, 10, 10).
SERVING_GC_THRESHOLDS = (50_000, 20, 10)


def tune_collector() -> None:
    """Freeze what start-up built, and collect the young generation 70 times less often.

    Almost every object a served message allocates dies by reference count within the message, yet
    the collector's default (a young collection every 700 more allocations than frees) ran ~35 young
    collections a second at 4,500 msg/s, each ~1.5 ms of CPU, and a full collection every ~3 s, ~70 ms of
    CPU over the ~90,000 objects start-up leaves behind (modules, actors, caches), all with the GIL
    held: the queues behind those pauses were most of the latency at the node's top rates
    (docs/performance.md, "The garbage collector"). Reference cycles are rare on a message's path,
    so collecting less often keeps little garbage longer; frozen objects are never collected, which
    is what start-up's are for: they live as long as the process.
    """
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)


async def serve_until_signalled(
    gateway: Gateway, on_ready: Callable[[Gateway], None] | None = None, *, reuse_port: bool = False
) -> None:
    """Serve until SIGINT or SIGTERM, then stop the gateway gracefully (``reuse_port``: see
    :meth:`Gateway.start`). The process is a server from here on: its collector is tuned for it
    (:func:`tune_collector`)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await gateway.start(reuse_port=reuse_port)
    tune_collector()
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
