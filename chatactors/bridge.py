"""How threads outside the actor system talk to it: requests with replies, and pushes.

Every request carries ``req_id`` and ``reply_to`` (this bridge's address); whichever actor ends the
chain replies there, so a reply is matched by id however many hops it took. Pushes (new messages,
receipts) arrive at the same address and are handed to a dispatcher thread, never run on the thread
that drives the actors, so a callback may call the API again.

Two implementations, one per kind of Thespian base (their differences: docs/architecture.md):

- :class:`SimpleBridge` for ``simpleSystemBase``: actors run only inside the system's own calls, so one
  driver thread owns the system; it takes every queued request, then runs the actors until they are
  quiet (a burst of requests reaches the persistence actor as one batch), then collects replies.
- :class:`ProcessBridge` for ``multiprocTCPBase``: one thread listens on its own private context,
  another sends from a second one (a shared handle would deliver replies to the wrong thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from thespian.actors import Actor, ActorAddress, ActorSystemMessage
from thespian.system import simpleSystemBase
from thespian.system.timing import currentTime

from chatactors.core.model import Address, Kind
from chatactors.errors import ChatClosed, ChatError, ChatTimeout
from chatactors.messages import Batch, CoreStopped, Failed, Push, Reply, Request, RolesChanged, Route, WhoAmI
from chatactors.messages.edge import stamped

log = logging.getLogger("chatactors.bridge")
PushHandler = Callable[[Push | RolesChanged | CoreStopped], None]
_STOP = object()
T_co = TypeVar("T_co", covariant=True)


class _Queue(Protocol[T_co]):
    def get_nowait(self) -> T_co: ...


def drain(source: _Queue[T_co]) -> list[T_co]:
    """Everything queued in ``source`` now (a thread's queue or an asyncio one), oldest first, without waiting."""
    items: list[T_co] = []
    while True:
        try:
            items.append(source.get_nowait())
        except (queue.Empty, asyncio.QueueEmpty):
            return items


class _Waiter:
    """One caller waiting for its reply: a bare lock, released once (cheaper than an Event)."""

    __slots__ = ("lock", "value", "error", "direct", "on_reply")

    def __init__(self, direct: bool, on_reply: Callable[[Any], Any] | None) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.direct = direct  # the caller is the push dispatcher itself (a callback calling the API)
        self.on_reply = on_reply

    def release(self) -> None:
        if self.on_reply is not None and self.error is None:
            try:
                self.value = self.on_reply(self.value)
            except Exception as exc:
                self.error = exc
        self.lock.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.lock.release()


class LoopPost:
    """Hands calls to an asyncio loop from other threads, in order, with one wake-up per burst.

    ``call_soon_threadsafe`` writes to the loop's self-pipe each time; a burst of pushes and replies
    (one actor turn's worth) needs the loop woken once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        # Calls from the loop waiting for a reply, and when each times out (loop thread only). One
        # timer, at the earliest deadline, for all of them: a timer per call (its handle, the heap
        # push, the cancel) was ~2 % of a message's time, and almost every call is answered.
        self._deadlines: dict[asyncio.Future[Any], tuple[float, Request, float]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._calls.append((fn, args))
            if len(self._calls) > 1:
                return  # the loop is already due to run the list
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to tell
            self.loop.call_soon_threadsafe(self._run)

    def expire(self, future: asyncio.Future[Any], request: Request, timeout: float) -> None:
        """``future`` fails with ChatTimeout ``timeout`` s from now unless :meth:`forget` comes first."""
        deadline = self.loop.time() + timeout
        self._deadlines[future] = (deadline, request, timeout)
        if self._sweep is None or deadline < self._sweep_at:
            self._arm(deadline)

    def forget(self, future: asyncio.Future[Any]) -> None:
        self._deadlines.pop(future, None)  # the sweep, still armed, finds nothing due and re-arms

    def _arm(self, deadline: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep, self._sweep_at = self.loop.call_at(deadline, self._expire_due), deadline

    def _expire_due(self) -> None:
        self._sweep = None
        now = self.loop.time()
        due = sorted((d, n, f) for n, (f, (d, _, _)) in enumerate(self._deadlines.items()) if d <= now)
        for _, _, future in due:  # in deadline order
            _, request, timeout = self._deadlines.pop(future)
            _time_out(future, request, timeout)
        if self._deadlines:
            self._arm(min(deadline for deadline, _, _ in self._deadlines.values()))

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, args in calls:
            try:
                fn(*args)
            except Exception:
                log.exception("a call handed to the event loop failed")


class _FutureWaiter:
    """A caller on an asyncio loop: its future is settled on the loop, no thread waits."""

    __slots__ = ("future", "post", "error", "value")

    def __init__(self, future: asyncio.Future[Any], post: LoopPost) -> None:
        self.future = future
        self.post = post
        self.value: Any = None
        self.error: BaseException | None = None

    def release(self) -> None:
        self.post(_settle, self.future, self.value, self.error)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.release()


def _time_out(future: asyncio.Future[Any], request: Request, timeout: float) -> None:
    if not future.done():  # the text is made only now: most calls are answered
        future.set_exception(ChatTimeout(f"no answer to {type(request).__name__} within {timeout} s"))


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # its caller gave up (timed out, or its connection went away)
        return
    if error is not None:
        future.set_exception(error.with_traceback(None))
    else:
        future.set_result(value)


class Bridge:
    """The common part: request ids, waiting for replies, dispatching pushes in arrival order.

    A reply goes through the push queue behind the pushes that arrived before it, so those are shown
    before the call returns (REPL order) without callers waiting on a shared condition, and the
    thread that drives the actors only enqueues: it never wakes callers itself.
    """

    address: Address  # where replies and pushes for this bridge arrive; set by each kind of bridge

    def __init__(self, on_push: PushHandler) -> None:
        self._on_push = on_push
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter | _FutureWaiter] = {}
        self._lock = threading.Lock()
        self._pushes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="chatactors-push", daemon=True)
        self._dispatcher.start()
        self.closed = False
        self.calls = 0  # requests sent so far (a gauge of load: not locked, may miss a count)

    # -- to override ---------------------------------------------------------------------------
    def _send(self, target: Address, message: Any) -> None:
        raise NotImplementedError

    # -- API -----------------------------------------------------------------------------------
    def call(
        self,
        target: Address,
        request: Request,
        timeout: float,
        route: tuple[Kind, int] | None = None,
        on_reply: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send ``request`` (wrapped in a Route when ``route`` is given) and wait for its reply.

        ``on_reply(value)`` runs on the push dispatcher, in order with the pushes, and its result is
        returned: a login registers its session there, so no push that follows the reply is missed.
        """
        if self.closed:
            raise ChatClosed("this chat is shut down")
        req_id = next(self._ids)
        self.calls += 1
        waiter = _Waiter(threading.current_thread() is self._dispatcher, on_reply)
        with self._lock:
            self._waiters[req_id] = waiter
        request = stamped(request, req_id, self.address)
        self._send(target, request if route is None else Route(route[0], route[1], request))
        if not waiter.lock.acquire(timeout=timeout):
            with self._lock:
                self._waiters.pop(req_id, None)
            raise ChatTimeout(f"no answer to {type(request).__name__} within {timeout} s")
        if waiter.error is not None:
            raise waiter.error.with_traceback(None)  # the actor's frames mean nothing here
        return waiter.value

    async def call_async(
        self,
        post: LoopPost,
        target: Address,
        request: Request,
        timeout: float,
        route: tuple[Kind, int] | None = None,
    ) -> Any:
        """:meth:`call` for a caller on ``post``'s event loop: no thread is held while it waits.

        The reply settles a future through ``post``, behind the pushes that arrived before it (the
        same order :meth:`call` keeps). A caller that times out or is cancelled leaves nothing behind.
        """
        if self.closed:
            raise ChatClosed("this chat is shut down")
        req_id = next(self._ids)
        self.calls += 1
        future: asyncio.Future[Any] = post.loop.create_future()
        with self._lock:
            self._waiters[req_id] = _FutureWaiter(future, post)
        request = stamped(request, req_id, self.address)
        self._send(target, request if route is None else Route(route[0], route[1], request))
        # Not asyncio.timeout() (~18 us a call), nor a timer per call: one sweep for all of them.
        post.expire(future, request, timeout)
        try:
            return await future
        finally:
            post.forget(future)
            if not future.done() or future.cancelled() or isinstance(future.exception(), ChatTimeout):
                with self._lock:
                    self._waiters.pop(req_id, None)

    def pending(self) -> int:
        """Calls waiting for a reply (tests check that none is left behind)."""
        with self._lock:
            return len(self._waiters)

    def fail_pending(self, grace: float, error: ChatError) -> None:
        """Requests sent before now that are still unanswered ``grace`` seconds later get ``error``.

        For a core actor that died: what it held is lost, and its callers would otherwise wait for
        their whole timeout. A reply already on its way arrives well within the grace period."""
        cutoff = next(self._ids)  # ids only grow: every request below it was sent before now

        def expire() -> None:
            with self._lock:
                stale = [(i, w) for i, w in self._waiters.items() if i < cutoff]
                for i, _ in stale:
                    del self._waiters[i]
            for _, waiter in stale:
                waiter.error = error
                self._hand_back(waiter)

        timer = threading.Timer(grace, expire)
        timer.daemon = True
        timer.start()

    def send(self, target: Address, message: Any) -> None:
        """Fire and forget (a bridge telling the actors something that needs no answer)."""
        if not self.closed:
            self._send(target, message)

    def close(self) -> None:
        self.closed = True
        self._pushes.put(_STOP)
        with self._lock:
            waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.fail(ChatClosed("this chat is shut down"))

    # -- inbound -------------------------------------------------------------------------------
    def _hand_back(self, waiter: _Waiter | _FutureWaiter) -> None:
        """A caller's answer, released behind the pushes that came before it."""
        if isinstance(waiter, _Waiter) and waiter.direct:
            waiter.release()  # the dispatcher is the caller: it cannot wait for itself
        else:
            self._pushes.put(waiter)

    def _inbound(self, message: Any) -> None:
        if isinstance(message, Batch):
            for item in message.items:
                self._inbound(item)
        elif isinstance(message, (Reply, Failed)):
            with self._lock:
                waiter = self._waiters.pop(message.req_id, None)
            if waiter is None:
                return  # its caller timed out and left
            if isinstance(message, Failed):
                waiter.error = message.error
            else:
                waiter.value = message.value
            self._hand_back(waiter)
        elif isinstance(message, (Push, RolesChanged, CoreStopped)):
            self._pushes.put(message)
        else:
            log.debug("bridge ignored %r", type(message).__name__)

    def _dispatch(self) -> None:
        while True:
            item = self._pushes.get()
            if item is _STOP:
                break
            if isinstance(item, (_Waiter, _FutureWaiter)):
                item.release()
                continue
            try:
                self._on_push(item)
            except Exception:
                log.exception("a push callback failed")
        for item in drain(self._pushes):  # replies queued behind the stop: their callers are told
            if isinstance(item, (_Waiter, _FutureWaiter)):
                item.fail(ChatClosed("this chat is shut down"))


_THESPIAN_LOG = logging.getLogger("Thespian")


def _deliver(actor: Any, message: Any, sender: Any) -> None:
    """Thespian's ``actor_base_receive`` without its ``logging.getLogger()`` for every delivery (the
    logging module's lock and a dict lookup: ~2 % of the GIL's time under load); its debug line is
    still written when Thespian's logger is at DEBUG."""
    if _THESPIAN_LOG.isEnabledFor(logging.DEBUG):
        _THESPIAN_LOG.debug('Actor "%s" got message "%s" from "%s"', actor, message, sender)
    actor.receiveMessage(message, sender)


# Each simpleSystemBase actor gets this as its ``_receive`` when it is created; set on import, before any.
simpleSystemBase.actor_base_receive = _deliver


def _deadlines(wakeups: list[Any]) -> Iterator[float]:
    """The deadlines (in Thespian's ``currentTime``) of ``(actor, ExpirationTimer, payload)`` entries."""
    return (t._time_to_quit for _, t, _ in wakeups if t._time_to_quit is not None)


class _Outlet(Actor):  # type: ignore[misc]
    """An address in this system whose mail leaves it: what arrives goes to ``out`` under ``key``
    (Thespian's own messages, an exit request say, stay here)."""

    key: Any = None
    out: list[tuple[Any, Any]] | None = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if self.out is not None and not isinstance(msg, ActorSystemMessage):
            self.out.append((self.key, msg))


class SimpleSystem:
    """The few ``simpleSystemBase`` internals the driver needs, in one place (Thespian 4.0).

    The public ``ActorSystem.tell``/``ask`` run the actors inside the caller's call, on whichever
    thread makes it; the driver instead enqueues from an external context and runs the actors itself,
    so one thread owns the system and a burst of requests reaches an actor as one batch.
    """

    def __init__(self, asys: Any) -> None:
        self._base = asys._systemBase
        self._ctx = self._base.external_clone()  # enqueues only; run() runs the actors
        self.address: Address = self._ctx.my_ext_addr
        self._inbox: _Queue[Any] = self._ctx.my_instance.rcvq
        self._outlets = 0
        # the earliest pending wakeup's deadline (actors created before this may have armed some)
        self._next_due: float | None = min(_deadlines(self._base._wakeUps), default=None)
        self._pop_expired = self._base._pop_expired_wakeups
        self._add_wakeup = self._base._add_wakeup
        self._base._pop_expired_wakeups = self._pop_expired_wakeups
        self._base._add_wakeup = self._add_wakeup_noted

    # Thespian looks for expired wakeups before every message it delivers, with a fold of lambdas over
    # the whole list even when nothing is due: ~10 % of the driver's time under load. The earliest
    # deadline, kept here, answers "nothing is due" with one comparison.

    def _pop_expired_wakeups(self, now: float) -> list[Any]:
        due = self._next_due
        if due is None or now < due:
            return []
        expired: list[Any] = self._pop_expired(now)
        self._next_due = min(_deadlines(self._base._wakeUps), default=None)
        return expired

    def _add_wakeup_noted(self, from_actor: Any, period: Any, payload: Any) -> None:
        self._add_wakeup(from_actor, period, payload)
        due = next(_deadlines(self._base._wakeUps[-1:]), None)
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due

    def tell(self, target: Address, message: Any) -> None:
        """Queue ``message`` for ``target``; it is delivered by the next :meth:`run`."""
        self._ctx.tell(target, message)

    def run(self) -> None:
        """Fire the timers that are due, then deliver until no actor has anything left to send.

        What Thespian's ``_runSends()`` does with no timeout, without its per-message work for what
        is never asked of it here (a send limit, a deadline, a stop condition) and with the wakeup
        check above: each message still goes through Thespian's own ``_runSingleSend``."""
        base = self._base
        pending, lock, deliver = base._pendingSends, base._private_lock, base._runSingleSend
        base._realizeWakeups()
        while pending:
            due = self._next_due
            if due is not None and currentTime() >= due:
                base._realizeWakeups()
            with lock:
                if not pending:
                    break
                sent = pending.pop(0)
            deliver(sent)

    def received(self) -> list[Any]:
        """What the actors sent to :attr:`address` so far."""
        return drain(self._inbox)

    def open_outlet(self, key: Any, out: list[tuple[Any, Any]]) -> Address:
        """A new address whose messages are appended to ``out`` as ``(key, message)`` (a proxy for an
        actor elsewhere). Only on the driver thread."""
        self._outlets += 1
        name = ActorAddress(f"System:Outlet:{self._outlets}")
        ref = self._base._newRefAndActor(self._base.system, self._base.system.systemAddress, name, _Outlet)
        self._base.actorRegistry[name.actorAddressString] = ref
        ref.instance.key, ref.instance.out = key, out
        return ref.address  # type: ignore[no-any-return]

    def close_outlet(self, address: Address) -> None:
        """Messages to ``address`` become dead letters from now on."""
        self._base.actorRegistry[address.actorAddressString] = None  # type: ignore[attr-defined]


class SimpleBridge(Bridge):
    """One driver thread owns a ``simpleSystemBase`` system (through :class:`SimpleSystem`)."""

    POLL = 0.02  # how late an idle timer may fire

    def __init__(self, asys: Any, on_push: PushHandler, work: queue.SimpleQueue[Any] | None = None) -> None:
        super().__init__(on_push)
        self._system = SimpleSystem(asys)
        self.address = self._system.address
        self._work: queue.SimpleQueue[Any] = work if work is not None else queue.SimpleQueue()
        self.after_run: Callable[[], None] | None = None  # the cluster's: hand on what outlets got
        self._driver = threading.Thread(target=self._drive, name="chatactors-driver", daemon=True)
        self._driver.start()

    def _send(self, target: Address, message: Any) -> None:
        self._work.put((target, message))

    @property
    def system(self) -> SimpleSystem:
        """The system this bridge drives: touch it only on the driver thread (:meth:`post`)."""
        return self._system

    def post(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the thread that owns the system, soon; nobody waits for it."""
        self._work.put(fn)

    def run_in_driver(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the thread that owns the system (createActor, shutdown)."""
        done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

        def job() -> None:
            try:
                done.put((True, fn()))
            except BaseException as exc:  # handed back to the caller
                done.put((False, exc))

        self._work.put(job)
        ok, value = done.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def _drive(self) -> None:
        while True:
            try:
                items = [self._work.get(timeout=self.POLL)]
            except queue.Empty:
                items = []
            items += drain(self._work)
            stop = False
            for item in items:
                if item is _STOP:
                    stop = True
                elif callable(item):
                    try:
                        item()
                    except Exception:  # one bad job must not stop the thread every call waits on
                        log.exception("a job on the actors' thread failed")
                else:
                    self._system.tell(*item)
            try:
                self._system.run()
            except Exception:
                log.exception("the actor system failed while running")
            for message in self._system.received():
                self._inbound(message)
            if self.after_run is not None:
                try:
                    self.after_run()
                except Exception:
                    log.exception("what the actors sent out of this node could not be handed on")
            if stop:
                return

    def close(self) -> None:
        if not self.closed:
            self._work.put(_STOP)
            self._driver.join(10)
        super().close()


class ProcessBridge(Bridge):
    """For ``multiprocTCPBase``: a listening thread and a sending thread, each with a private context."""

    def __init__(self, asys: Any, root: Address, on_push: PushHandler) -> None:
        super().__init__(on_push)
        self._asys = asys
        self._outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._own: Address | None = None  # learned by the listening thread
        ready = threading.Event()
        self._listener = threading.Thread(
            target=self._listen, args=(root, ready), name="chatactors-listen", daemon=True
        )
        self._sender = threading.Thread(target=self._send_loop, name="chatactors-send", daemon=True)
        self._listener.start()
        if not ready.wait(30) or self._own is None:
            raise ChatTimeout("could not reach the actor system's root supervisor within 30 s")
        self.address = self._own
        self._sender.start()

    def _listen(self, root: Address, ready: threading.Event) -> None:
        with self._asys.private() as ctx:
            answer = ctx.ask(root, WhoAmI(), 30)  # the root also takes this address as a watcher
            self._own = answer.value if isinstance(answer, Reply) else None
            ready.set()
            while not self.closed:
                message = ctx.listen(0.2)
                if message is not None:
                    self._inbound(message)

    def _send_loop(self) -> None:
        # What queued up meanwhile goes as one Batch per target: a hop costs ~0.7 ms of CPU whatever
        # it carries, and concurrent callers mostly talk to the directory.
        with self._asys.private() as ctx:
            while True:
                items = [self._outgoing.get()] + drain(self._outgoing)
                by_target: dict[str, tuple[Address, list[Any]]] = {}
                for item in items:
                    if item is not _STOP:
                        by_target.setdefault(str(item[0]), (item[0], []))[1].append(item[1])
                for target, messages in by_target.values():
                    # Only requests: an ActorExitRequest must reach Thespian as itself.
                    if len(messages) > 1 and all(isinstance(m, (Route, Request)) for m in messages):
                        messages = [Batch(tuple(messages))]
                    for message in messages:
                        try:
                            ctx.tell(target, message)
                        except Exception:
                            log.exception("could not send %r", type(message).__name__)
                if _STOP in items:
                    return

    def _send(self, target: Address, message: Any) -> None:
        self._outgoing.put((target, message))

    def close(self) -> None:
        if not self.closed:
            self._outgoing.put(_STOP)
            self._sender.join(10)
            super().close()
            self._listener.join(10)
