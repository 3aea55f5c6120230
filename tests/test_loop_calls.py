"""Calls asked from an asyncio loop, as the gateway sends: the reply settles a future, no thread waits.

They must fail exactly as the blocking calls do (a core actor restarted: ``Restarting``; the chat shut
down: ``ChatClosed``; no answer: ``ChatTimeout``) and leave no waiter behind, whatever the caller does
(cancels, times out). Run on both databases and both system bases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future as ThreadFuture
from typing import Any, TypeVar

import pytest
from test_server import Client, ServerThread

from chatactors import Chat, ChatClosed, Restarting
from chatactors.bridge import LoopPost
from chatactors.errors import ChatTimeout
from chatactors.messages import GetStats

PASSWORD = "secreto123"
T = TypeVar("T")


def on_loop(make: Callable[[LoopPost], Coroutine[Any, Any, T]]) -> T:
    """Run ``make(post)`` on a fresh event loop with its LoopPost."""

    async def main() -> T:
        return await make(LoopPost(asyncio.get_running_loop()))

    return asyncio.run(main())


async def unanswered(chat: Chat, post: LoopPost, timeout: float = 30.0) -> asyncio.Task[Any]:
    """A call in flight that nothing will answer (sent to the bridge itself, which ignores requests)."""
    bridge = chat._bridge
    before = bridge.pending()
    task = asyncio.create_task(bridge.call_async(post, bridge.address, GetStats(), timeout))
    while bridge.pending() == before:  # registered as it is sent, on the first step of the task
        await asyncio.sleep(0)
    return task


def test_a_send_from_the_loop_is_stored_once_pushed_and_leaves_no_waiter(
    make_chat: Callable[..., Chat], collector: Any
) -> None:
    chat = make_chat()
    juan, maria = chat.crear("juan", PASSWORD), chat.crear("maria", PASSWORD)
    pushed = collector()
    maria.on_message(pushed)

    async def sends(post: LoopPost) -> list[Any]:
        first = await juan.send_message_async(post, "maria", "hola", client_id="c-1")
        again = await juan.send_message_async(post, maria.user_id, "hola", client_id="c-1")  # a retry
        juan.create_room("general")
        maria.join("general")
        in_room = await juan.send_room_async(post, "general", "a todos")
        return [first, again, in_room]

    first, again, in_room = on_loop(sends)
    assert again.id == first.id and (first.sender, first.recipient, first.body) == ("juan", "maria", "hola")
    assert in_room.room == "general"
    assert [m.id for m in pushed.wait_for(2)] == [first.id, in_room.id]  # the retry is not pushed again
    assert chat._bridge.pending() == 0


def test_a_call_in_flight_when_a_core_actor_restarts_fails_with_restarting(
    make_chat: Callable[..., Chat],
) -> None:
    chat = make_chat()

    async def scenario(post: LoopPost) -> None:
        call = await unanswered(chat, post)
        chat._bridge.fail_pending(
            0.0, Restarting("a core actor (directory) restarted; retry")
        )  # as RolesChanged
        with pytest.raises(Restarting):
            await call

    on_loop(scenario)
    assert chat._bridge.pending() == 0


def test_calls_from_the_loop_time_out_in_deadline_order_and_leave_no_deadline(
    make_chat: Callable[..., Chat],
) -> None:
    """One timer serves every call's deadline: a call armed later with a shorter timeout still
    times out first, an answered call leaves nothing armed, and each says its own timeout."""
    chat = make_chat()
    order: list[str] = []

    async def scenario(post: LoopPost) -> None:
        answered = await chat._bridge.call_async(post, chat.roles.directory, GetStats(), 30.0)
        assert answered is not None and post._deadlines == {}
        slow = await unanswered(chat, post, timeout=0.4)
        fast = await unanswered(chat, post, timeout=0.05)  # due before the one the timer is armed for
        slow.add_done_callback(lambda _: order.append("slow"))
        fast.add_done_callback(lambda _: order.append("fast"))
        with pytest.raises(ChatTimeout, match=r"within 0\.05 s$"):
            await fast
        with pytest.raises(ChatTimeout, match=r"within 0\.4 s$"):
            await slow
        assert post._deadlines == {}

    on_loop(scenario)
    assert order == ["fast", "slow"]
    assert chat._bridge.pending() == 0


def test_a_call_that_times_out_or_is_cancelled_leaves_no_waiter(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()

    async def scenario(post: LoopPost) -> None:
        with pytest.raises(ChatTimeout, match=r"^no answer to GetStats within 0\.05 s$"):
            await (await unanswered(chat, post, timeout=0.05))
        assert chat._bridge.pending() == 0
        call = await unanswered(chat, post)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    on_loop(scenario)
    assert chat._bridge.pending() == 0


def test_a_call_in_flight_when_the_chat_shuts_down_fails_with_chat_closed(
    make_chat: Callable[..., Chat],
) -> None:
    chat = make_chat()

    async def scenario(post: LoopPost) -> None:
        call = await unanswered(chat, post)
        await asyncio.get_running_loop().run_in_executor(None, chat.shutdown)
        with pytest.raises(ChatClosed):
            await call
        with pytest.raises(ChatClosed):  # and a new one is refused at once
            await chat._bridge.call_async(post, chat._bridge.address, GetStats(), 30)

    on_loop(scenario)
    assert chat._bridge.pending() == 0


def test_loop_post_runs_calls_in_order_and_survives_a_failing_one(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(post: LoopPost) -> list[int]:
        seen: list[int] = []
        done: ThreadFuture[None] = ThreadFuture()

        def boom() -> None:
            raise RuntimeError("injected")

        def from_a_thread() -> None:
            post(seen.append, 1)
            post(boom)
            post(seen.append, 2)
            post(done.set_result, None)

        await asyncio.get_running_loop().run_in_executor(None, from_a_thread)
        await asyncio.wrap_future(done)
        return seen

    assert on_loop(scenario) == [1, 2]
    assert "a call handed to the event loop failed" in caplog.text


class NoThreads:
    """An executor that refuses work: a send must not need one."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a send went through the thread pool")

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def server(db_url: str) -> Iterator[ServerThread]:
    chat = Chat(database_url=db_url, password_profile="cheapest", echo=False, announce_login=False)
    server = ServerThread(chat).start()
    yield server
    server.stop()
    chat.shutdown()


def test_the_gateway_answers_sends_without_its_thread_pool(server: ServerThread) -> None:
    juan, maria = Client(server.url), Client(server.url)
    try:
        send_without_the_pool(server, juan, maria)
    finally:
        juan.close()
        maria.close()


def send_without_the_pool(server: ServerThread, juan: Client, maria: Client) -> None:
    juan.register("juan")
    maria.register("maria")
    juan.send("send", to="maria", body="primero", client_id="c0")  # maria's user actor is known now
    juan.expect("sent", client_id="c0")
    server.gateway._executor = NoThreads()  # type: ignore[assignment]
    for i in range(1, 6):
        juan.send("send", to="maria", body=f"m{i}", client_id=f"c{i}")
    sent = [juan.expect("sent", client_id=f"c{i}")["id"] for i in range(1, 6)]
    pushed = [maria.expect("message", body=f"m{i}")["id"] for i in range(1, 6)]
    assert sent == pushed and len(set(sent)) == 5
    juan.send("send", to="maria", body="m1", client_id="c1")  # a retry: the original, not pushed again
    assert juan.expect("sent", client_id="c1")["id"] == sent[0]
    assert server.gateway.chat._bridge.pending() == 0


def test_frames_queued_in_one_loop_turn_leave_in_order_in_one_write(server: ServerThread) -> None:
    juan = Client(server.url)
    try:
        juan.register("juan")
        gateway = server.gateway
        [conn] = [c for c in gateway.connections if c.session is not None]
        writes: list[bytes] = []
        done = ThreadFuture[None]()

        def one_turn() -> None:  # on the loop: three frames queued before the writer runs
            write = conn.ws.transport.write

            def counted(data: Any) -> None:
                writes.append(bytes(data))
                write(data)

            conn.ws.transport.write = counted  # type: ignore[method-assign]
            for n in range(3):
                conn.push({"type": "pong", "n": n})
            done.set_result(None)

        assert server._loop is not None
        server._loop.call_soon_threadsafe(one_turn)
        done.result(10)
        assert [juan.expect("pong")["n"] for _ in range(3)] == [0, 1, 2]
        assert len(writes) == 1 and writes[0].count(b'"pong"') == 3
    finally:
        juan.close()


def test_a_frame_that_cannot_be_written_closes_only_its_own_socket(server: ServerThread) -> None:
    """The flusher writes every socket's frames in one callback: a failure on one (a bug: a frame
    orjson cannot encode) closes that socket with 1011 and the others' frames still leave."""
    juan, maria = Client(server.url), Client(server.url)
    try:
        juan.register("juan")
        maria.register("maria")
        conns = {c.session.username: c for c in server.gateway.connections if c.session is not None}
        done = ThreadFuture[None]()

        def one_turn() -> None:
            conns["juan"].push({"type": "pong", "bad": object()})
            conns["maria"].push({"type": "pong", "n": 1})
            done.set_result(None)

        assert server._loop is not None
        server._loop.call_soon_threadsafe(one_turn)
        done.result(10)
        assert maria.expect("pong")["n"] == 1
        assert juan.closed_with() == (1011, "internal error")
        maria.alive()
    finally:
        juan.close()
        maria.close()
