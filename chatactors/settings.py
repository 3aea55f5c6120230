"""What a chat node is started with: :class:`ChatSettings`, resolved from arguments and the
environment in one place, so a REPL's ``Chat()`` and a server node start from the same values.

Pure: reading ``os.environ`` is all it does; choosing a free port, creating tables and starting
actors belong to :mod:`chatactors.node`. (:class:`chatactors.messages.Config` is the part of these
settings the actors receive.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatactors.core.throttle import LoginPolicy

SYSTEMS = ("simpleSystemBase", "multiprocTCPBase")
DEFAULT_DATABASE_URL = "sqlite:///chatactors.db"
DEFAULT_SYSTEM = "simpleSystemBase"


def resolve_database_url(given: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The database ``Chat(database_url=given)`` opens: ``given``, else ``$CHATACTORS_DATABASE_URL``,
    else ``chatactors.db`` in the working directory."""
    env = os.environ if environ is None else environ
    return given or env.get("CHATACTORS_DATABASE_URL") or DEFAULT_DATABASE_URL


def _admin_port(given: int | None, env: Mapping[str, str]) -> int | None:
    """``given``, else ``$CHATACTORS_ADMIN_PORT``; None (0 too) leaves the choice of a free port to the node."""
    if given is None:
        raw = env.get("CHATACTORS_ADMIN_PORT", "").strip()
        try:
            given = int(raw) if raw else None
        except ValueError:
            raise ValueError(f"CHATACTORS_ADMIN_PORT must be a port number, not {raw!r}") from None
    return None if given is None or given == 0 else given  # checked by ChatSettings itself


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """Everything :class:`chatactors.Chat` takes, resolved (see ``Chat`` in docs/api.md for each).

    ``admin_port`` is None on simpleSystemBase, and on multiprocTCPBase when the node is to pick a
    free port. ``echo`` None means "only in an interactive interpreter", decided by the facade.
    """

    database_url: str = DEFAULT_DATABASE_URL
    system: str = DEFAULT_SYSTEM
    admin_port: int | None = None
    idle_timeout: float = 300.0
    password_profile: str = "default"
    token_ttl: float = 7 * 24 * 3600.0
    timeout: float = 15.0
    max_restarts: int = 5
    max_seconds: float = 10.0
    login_policy: LoginPolicy = field(default_factory=LoginPolicy)
    echo: bool | None = None
    announce_login: bool = True
    # A cluster node (docs/cluster.md): PostgreSQL and simpleSystemBase only, checked when it starts.
    cluster: bool = False
    node_id: str | None = None  # None: one is made up, unique to this process
    advertise: str = "127.0.0.1"  # the interface the node's link binds and other nodes reach it on
    gateway_url: str = ""  # the node's WebSocket URL, listed in the nodes table and in status

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"system must be one of {', '.join(SYSTEMS)}, not {self.system!r}")
        if self.cluster and self.system != DEFAULT_SYSTEM:
            raise ValueError("a cluster node runs its actors on simpleSystemBase (one node is one process)")
        port = self.admin_port
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise ValueError(f"admin_port must be a port number (1-65535) or None, not {port!r}")

    @classmethod
    def from_env(
        cls,
        database_url: str | None = None,
        system: str | None = None,
        *,
        admin_port: int | None = None,
        login_policy: LoginPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ChatSettings:
        """The settings for these arguments: what is given wins, then ``$CHATACTORS_DATABASE_URL``,
        ``$CHATACTORS_SYSTEM`` and ``$CHATACTORS_ADMIN_PORT`` (read only on multiprocTCPBase, the one
        base that has an admin), then the defaults. ``options`` are the other fields by name.

        Raises ValueError for an unknown system or a bad admin port, TypeError for an unknown option.
        """
        env = os.environ if environ is None else environ
        chosen = system or env.get("CHATACTORS_SYSTEM") or DEFAULT_SYSTEM  # checked by ChatSettings
        return cls(
            database_url=resolve_database_url(database_url, env),
            system=chosen,
            admin_port=_admin_port(admin_port, env) if chosen == "multiprocTCPBase" else None,
            login_policy=login_policy or LoginPolicy(),
            **options,
        )
