"""The serving process tunes its garbage collector once the gateway is up (``tune_collector``)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Iterator

import pytest

from chatactors.gateway.runner import SERVING_GC_THRESHOLDS, serve_until_signalled


class FakeGateway:
    """What ``serve_until_signalled`` needs of a gateway, recording the collector it started under."""

    def __init__(self) -> None:
        self.started_with: tuple[int, int, int] | None = None
        self.stopped = False

    async def start(self, *, reuse_port: bool = False) -> None:
        self.started_with = gc.get_threshold()

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def collector() -> Iterator[None]:
    """Give the test process its collector back as it was."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_serving_freezes_start_up_and_collects_less_often(collector: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gateway = FakeGateway()
    seen: dict[str, object] = {}

    def ready(_: object) -> None:
        seen["thresholds"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        os.kill(os.getpid(), signal.SIGINT)  # the loop's handler ends the serving, as for an operator

    asyncio.run(asyncio.wait_for(serve_until_signalled(gateway, ready), timeout=10))  # type: ignore[arg-type]
    assert gateway.started_with == (700, 10, 10)  # start-up ran under the default
    assert seen["thresholds"] == SERVING_GC_THRESHOLDS
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 1000  # modules, classes, the test's own state
    assert gateway.stopped
