"""Every message the actors exchange, as frozen dataclasses (they must pickle on multiprocTCPBase).

One module per conversation; each module's docstring says who sends and who receives:

- :mod:`~chatactors.messages.edge`: the edge (a ``Chat``'s bridge, a WebSocket gateway) asks the core
  actors, and gets ``Reply``/``Failed`` and ``Push`` back.
- :mod:`~chatactors.messages.supervision`: starting, configuring and restarting actors (the root, the
  supervisor of user and room actors, the directory, the watching bridges).
- :mod:`~chatactors.messages.routing`: to and from the directory: routing to users' and rooms' actors,
  presence, retiring.
- :mod:`~chatactors.messages.peers`: one user's or room's actor to another, routed by the directory.
- :mod:`~chatactors.messages.persistence`: actors and the persistence actor.
- :mod:`~chatactors.messages.cluster`: node to node over the link (batches and their acks).

Every name is importable from here too (``from chatactors.messages import Deliver``), and that is how
the rest of the package imports them. Commands are verbs (``Deliver``); events and replies are past
participles or nouns (``Reply``, ``Failed``, ``UserLoaded``). Kinds, room actions and statuses are
typed (:data:`~chatactors.core.model.Kind`, :data:`~chatactors.core.model.RoomAction`,
:class:`~chatactors.core.model.Status`), and so are actor addresses
(:data:`~chatactors.core.model.Address`).

Correlation: two schemes, because they promise different things.

- A *request* (:class:`Request`: ``req_id``, ``reply_to``) comes from a caller that blocks on it: a
  bridge (the root too, for its ``Ping``). It gets exactly one answer, ``Reply`` or ``Failed``, sent to
  ``reply_to`` by whichever actor ends the chain, however many hops it took (each hop copies both
  fields into the next message). The id is the caller's: a bridge counts up, matches the first answer
  and forgets the id, and expires by id what a dead core actor held (``Bridge.fail_pending``). Since
  someone waits, every generic error path answers any request it drops with ``Failed``: a handler that
  raised (``ChatActor``), the stash of an activation that could not load (``Activation``'s ``Refuse``),
  the requests an activation holds when a core actor it waits on restarted (``FailOutstanding``).
- A *step* (``token``, and ``ack_to`` when the answer skips hops) is sent by a user's actor, on behalf
  of a request it holds (a read, a room command), to other actors; the answer is a typed result
  (``UnreadFetched``, ``RoomOpDone``, ``ReadAck``) that goes back to that actor, never to the caller. A
  token names the operation, not one answer: a read sends one ``ConfirmRead`` per sender and one
  ``AdvanceCursor`` per room under one token, and each comes back as a ``ReadAck`` naming its ``part``;
  a failed part is data in its answer, and the actor answers the request once, when every part is in.
  Tokens count per activation: an answer for an older activation goes to that one's address, which is
  dead, so it never meets the new one's tokens. ``FetchUnread`` and ``RoomOp`` are answered to their
  Thespian sender; ``ConfirmRead`` and ``AdvanceCursor`` pass through another actor on the way to the
  persistence actor, so they name the reader's actor in ``ack_to``.

They are not unified because each breaks the other's promise: a step sent as a ``Request`` would be
answered ``Failed`` by those generic error paths, at an actor that waits for its typed result (and
counts parts), where today the step's own answer carries the error; and an id that gets several
answers (one per part) would be forgotten by a bridge at the first. Loads (``LoadUser``,
``LoadRoom``) need neither: an activation asks once and is answered at its Thespian sender; so is a
``Configure``, with ``Reply(0, ...)``, which the root matches by sender.
"""

from chatactors.core.commit import Fanout
from chatactors.core.model import Address
from chatactors.messages.cluster import (
    ClusterView,
    Delivery,
    Forwarded,
    LinkAck,
    LinkBatch,
    LinkHello,
    MemberSinks,
    RemoteRef,
    WatchMembers,
)
from chatactors.messages.edge import (
    Batch,
    Deliver,
    DropSink,
    Failed,
    GetHistory,
    GetInbox,
    GetPid,
    GetStats,
    GetStatus,
    Hashed,
    ListMembers,
    ListRooms,
    LoginResult,
    LoginUser,
    Logout,
    LookupUser,
    Push,
    ReadBy,
    ReadMessages,
    RegisterUser,
    Reply,
    Request,
    RoomCommand,
    SearchNames,
    SendRoom,
    Stats,
    StopActor,
    WhoIsOnline,
)
from chatactors.messages.peers import (
    AdvanceCursor,
    ConfirmRead,
    MemberJoined,
    MemberLeft,
    MemberPresence,
    PostRoom,
)
from chatactors.messages.persistence import (
    DeliverWaiting,
    FetchUnread,
    Flush,
    LoadInbox,
    LoadRoom,
    LoadUser,
    MarkRead,
    MarkRoomRead,
    ReadAck,
    RelayCatchUp,
    RoomLoaded,
    RoomOp,
    RoomOpDone,
    StoreDirect,
    StoreRoom,
    UnreadFetched,
    UserLoaded,
)
from chatactors.messages.routing import (
    Attach,
    CatchUp,
    Detach,
    Envelope,
    HandOver,
    IdleCheck,
    Notify,
    Offline,
    RetireApproved,
    RetireCancelled,
    RetireDenied,
    RetireRequest,
    RoomMembers,
    RoomSinks,
    Route,
)
from chatactors.messages.supervision import (
    Adopt,
    Assigned,
    ChildExited,
    ChildStarted,
    Config,
    Configure,
    CoreStopped,
    HeldSessions,
    Init,
    Ping,
    Reattach,
    Roles,
    RolesChanged,
    Spares,
    StartChild,
    StartCore,
    Watch,
    WhoAmI,
)

__all__ = [
    "Address",
    "Fanout",
    # edge
    "Request",
    "Reply",
    "Failed",
    "Push",
    "Batch",
    "RegisterUser",
    "LoginUser",
    "Logout",
    "LoginResult",
    "Hashed",
    "GetStats",
    "Stats",
    "WhoIsOnline",
    "StopActor",
    "DropSink",
    "LookupUser",
    "GetStatus",
    "GetHistory",
    "ListMembers",
    "ListRooms",
    "ReadBy",
    "SearchNames",
    "GetInbox",
    "GetPid",
    "Deliver",
    "ReadMessages",
    "SendRoom",
    "RoomCommand",
    # supervision
    "Config",
    "Roles",
    "StartCore",
    "Configure",
    "Ping",
    "Watch",
    "WhoAmI",
    "RolesChanged",
    "CoreStopped",
    "Adopt",
    "Reattach",
    "HeldSessions",
    "StartChild",
    "Spares",
    "Assigned",
    "ChildStarted",
    "Init",
    "ChildExited",
    # routing
    "Route",
    "Envelope",
    "Attach",
    "Detach",
    "Notify",
    "CatchUp",
    "Offline",
    "RoomMembers",
    "RoomSinks",
    "HandOver",
    "IdleCheck",
    "RetireRequest",
    "RetireApproved",
    "RetireDenied",
    "RetireCancelled",
    # peers
    "ConfirmRead",
    "AdvanceCursor",
    "MemberPresence",
    "MemberJoined",
    "MemberLeft",
    "PostRoom",
    # persistence
    "LoadUser",
    "UserLoaded",
    "LoadRoom",
    "RoomLoaded",
    "LoadInbox",
    "StoreDirect",
    "StoreRoom",
    "DeliverWaiting",
    "RelayCatchUp",
    "FetchUnread",
    "UnreadFetched",
    "MarkRead",
    "MarkRoomRead",
    "ReadAck",
    "RoomOp",
    "RoomOpDone",
    "Flush",
    # cluster
    "LinkBatch",
    "LinkAck",
    "LinkHello",
    "RemoteRef",
    "Delivery",
    "Forwarded",
    "ClusterView",
    "WatchMembers",
    "MemberSinks",
]
