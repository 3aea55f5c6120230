"""One node's start and stop: :class:`ChatNode` creates the schema, starts the actor system and the
root supervisor, and opens the bridge a facade calls the actors through.

Apart from :mod:`chatactors.chat` so a REPL's ``Chat`` and a server node start the same way; it
prints nothing and knows no sessions: the pushes for them go to the ``on_push`` it is given.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from thespian.actors import ActorSystem, InvalidActorAddress

from chatactors import transport
from chatactors.actors.root import CoreSupervisor
from chatactors.bridge import Bridge, LoopPost, ProcessBridge, SimpleBridge
from chatactors.cluster.membership_table import check_postgres
from chatactors.core.model import Address, Kind
from chatactors.errors import ChatClosed, ChatError, ChatTimeout, Restarting
from chatactors.messages import (
    Config,
    CoreStopped,
    DropSink,
    GetStats,
    HeldSessions,
    Ping,
    Push,
    Reattach,
    Request,
    Roles,
    RolesChanged,
    StartCore,
    Stats,
    Watch,
    WhoIsOnline,
)
from chatactors.ports import close_local_port, open_local_port
from chatactors.settings import ChatSettings
from chatactors.storage import Store, close_database
from chatactors.transport import free_port

log = logging.getLogger("chatactors")
RESTART_GRACE = 0.5  # seconds a call in flight when a core actor restarted may still be answered
Attached = Callable[[], HeldSessions]


def _log_defs() -> dict[str, Any]:
    # Actor processes log warnings to stderr; Thespian's own chatter stays in its file.
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain", "level": "WARNING"}},
        "loggers": {"chatactors": {"handlers": ["err"], "level": "WARNING"}},
    }


class ChatNode:
    """A started node: its actor system, root supervisor, core actors (``roles``) and bridge.

    ``on_push`` receives the pushes for the sessions of whoever started it; ``attached`` says which
    users have sessions here, for a restarted directory to learn them again. A core actor's restart
    and the core's stop are handled here. Stopped at interpreter exit if not before.
    """

    def __init__(self, settings: ChatSettings, on_push: Callable[[Push], None], attached: Attached) -> None:
        self.settings = settings
        self.database_url = settings.database_url
        self.system = settings.system
        self.stopped_reason: str | None = None  # why the core stopped on its own (CoreStopped)
        self.actor_group: int | None = None  # what to kill should a stop leave the system running
        self._on_session_push, self._attached = on_push, attached
        self._closed = False
        self.cluster: Any = None  # chatactors.cluster.node.ClusterNode, when settings.cluster
        self.peering: Any = None  # chatactors.peering.Peering, likewise
        self._last_load = (time.monotonic(), 0)
        if settings.cluster:
            check_postgres(self.database_url)  # ClusterNeedsPostgres before anything starts
            if settings.advertise != "127.0.0.1" or "THESPIAN_BASE_IPADDR" not in os.environ:
                os.environ["THESPIAN_BASE_IPADDR"] = settings.advertise  # where the link binds

        store = Store(self.database_url)
        try:
            store.create_schema()
        finally:
            store.close()  # forked actor processes open their own connections

        simple = self.system == "simpleSystemBase"
        self._port_key = f"chat-{id(self)}-{os.getpid()}" if simple else None
        work_queue = open_local_port(self._port_key) if self._port_key else None
        self.config = Config(
            database_url=self.database_url,
            idle_timeout=settings.idle_timeout,
            password_profile=settings.password_profile,
            token_ttl=settings.token_ttl,
            local_port=self._port_key,
            login_policy=settings.login_policy,
        )
        self.admin_port: int | None = None
        try:
            if simple:
                # logDefs=False: Thespian would otherwise replace the root logger's handlers with its
                # own, undoing the application's logging set-up (the server's --log-level, a REPL's).
                self._asys = ActorSystem(self.system, logDefs=False, transientUnique=True)
            else:
                self._asys = self._start_tcp_system(settings.admin_port)
        except BaseException:
            self._release()
            raise
        try:
            self.root, self.roles = self._start_actors()
            self.bridge: Bridge = (
                SimpleBridge(self._asys, self._on_push, work_queue)
                if simple
                else ProcessBridge(self._asys, self.root, self._on_push)
            )
            if simple:
                self.call(self.root, Watch())
            else:
                self.actor_group = transport.actor_group(self.os_pid(self.root))
        except BaseException:
            self._asys.shutdown()
            self._release()
            raise
        atexit.register(self.stop)
        if settings.cluster:
            try:
                self._join_cluster()
            except BaseException:
                self.stop()
                raise

    def _join_cluster(self) -> None:
        """Join the nodes that share this database: membership, the link, and the border between."""
        from chatactors.cluster.node import ClusterNode
        from chatactors.peering import Peering

        assert isinstance(self.bridge, SimpleBridge)
        s = self.settings
        node_id = s.node_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.peering = Peering(node_id, self.bridge, lambda: self.roles.directory, self._attached)
        self.cluster = ClusterNode(
            self.database_url,
            node_id,
            s.gateway_url,
            self.peering.received,
            self.peering.undelivered,
            on_ring=self.peering.ring_changed,
            report=self._load,
        )
        self.peering.send = self.cluster.send
        self.cluster.start()

    def _load(self) -> tuple[int, float]:
        """Sessions held here and requests per second since the last call (the heartbeat's)."""
        now, calls = time.monotonic(), self.bridge.calls
        then, before = self._last_load
        self._last_load = (now, calls)
        rate = (calls - before) / (now - then) if now > then else 0.0
        return sum(len(numbers) for _, numbers in self._attached()), round(rate, 1)

    def ring_generation(self) -> int:
        """How many rings this node has seen (0 when not clustered)."""
        return self.peering.generation if self.peering is not None else 0

    def reattach(self, user_id: int, number: int) -> None:
        """A session whose login spanned a ring change: its Attach went by the old ring, and the
        sessions sent to the new owners were read before it opened. Sent again (attaching is by
        number: a session the owner knows is not counted twice)."""
        self.bridge.send(self.roles.directory, Reattach(self.bridge.address, ((user_id, (number,)),)))

    def elsewhere(self, address: Address) -> tuple[str | None, str | None]:
        """(node, name) when ``address`` stands for an actor on another node; (None, None) if local."""
        if self.peering is None:
            return None, None
        return self.peering.stands_for(address)  # type: ignore[no-any-return]

    @property
    def node_id(self) -> str | None:
        """This node's id in the cluster (None when not clustered)."""
        return self.cluster.node_id if self.cluster is not None else None

    def online(self, user_ids: tuple[int, ...]) -> set[int]:
        """Which of these users have a live session anywhere: each owner's directory is asked."""
        groups: dict[str, tuple[Address, list[int]]] = {}  # addresses are unhashable: keyed by name
        for user_id in user_ids:
            target = self._directory_of(("user", user_id))
            groups.setdefault(str(target), (target, []))[1].append(user_id)
        found: set[int] = set()
        for target, ids in groups.values():
            found |= set(self.call(target, WhoIsOnline(user_ids=tuple(ids))))
        return found

    def _directory_of(self, key: tuple[Kind, int]) -> Address:
        """The directory of the node that owns ``key`` (ours when not clustered)."""
        peering = self.peering
        if peering is None or not len(peering.ring):
            return self.roles.directory
        owner = peering.ring.owner(key).node_id
        return peering.directories.get(owner, self.roles.directory)  # type: ignore[no-any-return]

    def stats(self) -> Stats:
        """This node's directory's figures; in a cluster, the sum over every node, with each node's
        own in ``nodes``."""
        mine: Stats = self.call(self.roles.directory, GetStats())
        if self.peering is None:
            return mine
        per_node = [(self.node_id or "", mine)]
        for node, directory in sorted(self.peering.directories.items()):
            try:
                per_node.append((node, self.call(directory, GetStats())))
            except ChatTimeout:
                log.warning("node %s did not answer for its stats", node)
        total = Stats(*(sum(getattr(s, f) for _, s in per_node) for f in Stats.COUNTS))
        return dataclasses.replace(total, nodes=tuple(per_node))

    def _start_tcp_system(self, asked: int | None) -> Any:
        """multiprocTCPBase: the admin on the port asked for, or on a free one. A port we picked
        ourselves that the admin still could not take (something bound it meanwhile: Thespian then
        tries for 11 s and gives up) is given up for another, once."""
        host = transport.install()  # bound sockets, signed frames, no orphans: see chatactors.transport
        for attempt in (1, 2):
            self.admin_port = asked or free_port()
            capabilities = transport.system_capabilities(self.admin_port)
            transport.wait_for_free_port(host, self.admin_port)  # never attach to a stale system
            try:
                return ActorSystem(self.system, capabilities, logDefs=_log_defs(), transientUnique=True)
            except InvalidActorAddress:
                if asked or attempt == 2:
                    raise
                log.warning(
                    "the actor system's admin did not start on port %d: trying another", self.admin_port
                )
        raise AssertionError("unreachable")

    def _start_actors(self) -> tuple[Address, Roles]:
        """The root supervisor, which starts the core actors and keeps them running."""
        root = self._asys.createActor(CoreSupervisor, globalName="chatactors.root")
        s = self.settings
        start = StartCore(
            req_id=1, config=self.config, max_restarts=s.max_restarts, max_seconds=s.max_seconds
        )
        answer = self._asys.ask(root, start, 30)
        if answer is None or not isinstance(answer.value, Roles):
            raise ChatTimeout("the core actors did not start within 30 s")
        return root, answer.value

    # -- calls ---------------------------------------------------------------------------------
    def call(self, target: Address, request: Request, route: tuple[Kind, int] | None = None) -> Any:
        """``request``'s reply from ``target`` (routed to a user or room actor by ``route``)."""
        self._check_running()
        return self.bridge.call(target, request, self.settings.timeout, route)

    async def call_async(
        self, post: LoopPost, target: Address, request: Request, route: tuple[Kind, int] | None = None
    ) -> Any:
        """:meth:`call` from an asyncio loop: the reply settles a future, no thread waits."""
        self._check_running()
        return await self.bridge.call_async(post, target, request, self.settings.timeout, route)

    def _check_running(self) -> None:
        if self.stopped_reason is not None:
            raise ChatClosed(f"this chat stopped: {self.stopped_reason}")

    def os_pid(self, address: Address) -> int:
        """The OS process id an actor runs in (the caller's own on simpleSystemBase)."""
        return int(self.call(address, Ping()))

    # -- pushes --------------------------------------------------------------------------------
    def _on_push(self, push: Push | RolesChanged | CoreStopped) -> None:
        if isinstance(push, RolesChanged):
            self._roles_changed(push)
        elif isinstance(push, CoreStopped):
            self.stopped_reason = push.reason
            log.critical("the chat's core stopped: %s", push.reason)
        else:
            self._on_session_push(push)

    def _roles_changed(self, event: RolesChanged) -> None:
        """A core actor was restarted: use its new address; a new directory learns our sessions;
        calls in flight that died with the old actor fail soon (``Restarting``) instead of timing out."""
        if "directory" in event.changed and self.peering is not None:
            # The new directory learns the ring first: what it routes next may be another node's.
            directory, peering, bridge = event.roles.directory, self.peering, self.bridge
            assert isinstance(bridge, SimpleBridge)
            bridge.post(lambda: bridge.system.tell(directory, peering.view()))
        if "directory" in event.changed:
            # Before the new address is used: the bridge sends in order, so the new directory knows
            # our sessions before any call of ours reaches it, and no push is missed.
            self.bridge.send(event.roles.directory, Reattach(self.bridge.address, self._attached()))
        self.roles = event.roles
        restarted = ", ".join(event.changed)
        self.bridge.fail_pending(RESTART_GRACE, Restarting(f"a core actor ({restarted}) restarted; retry"))

    # -- stop ----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def stop(self) -> None:
        """Stop every actor (and, on multiprocTCPBase, every process). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.cluster is not None:
                self.peering.send = None  # nothing more leaves: the link is going
                self.cluster.stop()  # leave first: the others stop routing here
            if not self.bridge.closed:
                try:
                    self.call(self.roles.directory, DropSink(sink=self.bridge.address))
                except ChatError:
                    pass  # stopping anyway
            if isinstance(self.bridge, SimpleBridge):
                self.bridge.run_in_driver(self._asys.shutdown)
                self.bridge.close()
            else:
                self.bridge.close()
                self._asys.shutdown()
                assert self.admin_port is not None
                transport.stop_leftovers(self.actor_group, transport.advertised_address(), self.admin_port)
        finally:
            self._release()
            atexit.unregister(self.stop)

    def _release(self) -> None:
        close_database(self.database_url)
        if self._port_key:
            close_local_port(self._port_key)
