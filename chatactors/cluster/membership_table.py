"""The cluster's membership table in PostgreSQL, as Orleans keeps its own: one row per node.

Every statement is one short transaction, and every time in it comes from the database's clock
(``now()``): the nodes' clocks may disagree, the ages they read may not. One row per node id, kept
after the node is dead or gone, so that its next join gets ``epoch + 1`` in the same statement
(an upsert that locks the row: concurrent joins of one id get distinct epochs, never the same).

PostgreSQL only: SQLite is one process's file, and a cluster spans processes and machines.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import peewee as pw
from playhouse.db_url import schemes

from chatactors.core.membership import ACTIVE, DEAD, LEFT, Row, Snapshot
from chatactors.core.ring import Node
from chatactors.errors import ClusterNeedsPostgres
from chatactors.storage import BaseModel, Store

MAX_NODE_ID = 64
FORGET_AFTER = 3600  # seconds after its last heartbeat that a dead or departed row is no longer read


class TimestampTZ(pw.DateTimeField):
    """``timestamptz``: an instant, whatever the session's time zone."""

    field_type = "TIMESTAMPTZ"


class NodeRecord(BaseModel):
    node_id = pw.CharField(max_length=MAX_NODE_ID, primary_key=True)
    epoch = pw.BigIntegerField()
    status = pw.CharField(max_length=8)  # active, dead or left
    link = pw.TextField()  # where the node's link listens: host:port
    gateway = pw.TextField()  # the WebSocket URL its clients use
    heartbeat = TimestampTZ()
    joined_at = TimestampTZ()
    sessions = pw.IntegerField(default=0)  # sessions its gateway holds, as of its last heartbeat
    load = pw.FloatField(default=0.0)  # requests per second from its edge, likewise

    class Meta:
        table_name = "nodes"


def check_postgres(url: str) -> None:
    """Refuse a database a cluster cannot share, before anything is opened."""
    scheme = urlsplit(url).scheme
    database = schemes.get(scheme)
    if database is None or not issubclass(database, pw.PostgresqlDatabase):
        raise ClusterNeedsPostgres(
            f"clustering needs PostgreSQL (a postgresql://... database URL), not {scheme or url!r}:"
            " the nodes share their membership and their data through one database"
        )


class MembershipTable:
    """The ``nodes`` table of one database; database errors come out as StorageUnavailable."""

    def __init__(self, url: str) -> None:
        check_postgres(url)
        self._store = Store(url)

    def exists(self) -> bool:
        """Whether a cluster ever ran on this database (its ``nodes`` table is there)."""
        return bool(
            self._store.run(lambda: self._store.db.table_exists(NodeRecord._meta.table_name), read_only=True)
        )

    def create_schema(self) -> None:
        def work() -> None:
            self._store.db.create_tables([NodeRecord], safe=True)
            # A table made before the load columns (they are only reported, never routed on).
            for column, kind in (
                ("sessions", "integer NOT NULL DEFAULT 0"),
                ("load", "double precision NOT NULL DEFAULT 0"),
            ):
                self._store.db.execute_sql(f"ALTER TABLE nodes ADD COLUMN IF NOT EXISTS {column} {kind}")  # type: ignore[no-untyped-call]

        self._store.run(work)

    def join(self, node_id: str, link: str, gateway: str) -> int:
        """Insert or revive our row with a new epoch (one more than the row's last); returns it.

        The row's previous incarnation, alive or not, is superseded in the same statement: its
        next heartbeat is refused, so a stale process with our id is fenced."""
        now = pw.SQL("now()")
        query = (
            NodeRecord.insert(
                node_id=node_id,
                epoch=1,
                status=ACTIVE,
                link=link,
                gateway=gateway,
                heartbeat=now,
                joined_at=now,
            )
            .on_conflict(
                conflict_target=[NodeRecord.node_id],
                update={
                    NodeRecord.epoch: NodeRecord.epoch + 1,
                    NodeRecord.status: ACTIVE,
                    NodeRecord.link: pw.EXCLUDED.link,
                    NodeRecord.gateway: pw.EXCLUDED.gateway,
                    NodeRecord.heartbeat: now,
                    NodeRecord.joined_at: now,
                },
            )
            .returning(NodeRecord.epoch)
            .tuples()
        )
        return int(self._store.run(lambda: list(query.execute()))[0][0])  # a write: settled if lost

    def heartbeat(self, node: Node, sessions: int = 0, load: float = 0.0) -> bool:
        """Stamp our row (and what we carry now); False when we were marked dead or superseded by a
        newer epoch: fenced."""
        query = NodeRecord.update(heartbeat=pw.SQL("now()"), sessions=sessions, load=load).where(
            (NodeRecord.node_id == node.node_id)
            & (NodeRecord.epoch == node.epoch)
            & (NodeRecord.status == ACTIVE)
        )
        return bool(self._store.run(query.execute) == 1)

    def mark_dead(self, node: Node) -> bool:
        """Mark ``node`` dead if that incarnation is still the active one; False otherwise."""
        return self._set_status(node, DEAD)

    def leave(self, node: Node) -> bool:
        return self._set_status(node, LEFT)

    def _set_status(self, node: Node, status: str) -> bool:
        query = NodeRecord.update(status=status).where(
            (NodeRecord.node_id == node.node_id)
            & (NodeRecord.epoch == node.epoch)
            & (NodeRecord.status == ACTIVE)
        )
        return bool(self._store.run(query.execute) == 1)

    def read(self) -> Snapshot:
        """Every row by node id, and the database's ``now()`` to age their heartbeats against (one transaction:
        ``now()`` is its start, so no row read is older than it by a commit made meanwhile).

        A row dead or left for FORGET_AFTER is not read: every node dropped it from its view seconds
        after its last heartbeat, and a cluster whose processes take a fresh id each start (the
        default) would otherwise read one more row every poll for each process it ever ran. The row
        stays in the table, so its id's next join still gets the next epoch."""
        forgotten = pw.SQL(f"now() - interval '{FORGET_AFTER} seconds'")
        query = (
            NodeRecord.select(
                NodeRecord.node_id,
                NodeRecord.epoch,
                NodeRecord.status,
                pw.fn.date_part("epoch", NodeRecord.heartbeat),
                NodeRecord.link,
                NodeRecord.gateway,
            )
            .where((NodeRecord.status == ACTIVE) | (NodeRecord.heartbeat > forgotten))
            .order_by(NodeRecord.node_id)
            .tuples()
        )

        def work() -> Snapshot:
            ((at,),) = NodeRecord.raw("SELECT date_part('epoch', now())").tuples()
            rows = tuple(
                Row(Node(node_id, int(epoch)), status, float(beat), link, gateway)
                for node_id, epoch, status, beat, link, gateway in query.execute()
            )
            return Snapshot(float(at), rows)

        return self._store.run(work, read_only=True)

    def loads(self) -> dict[str, tuple[int, float]]:
        """Each node's sessions and requests per second, as of its last heartbeat (for status)."""
        query = NodeRecord.select(NodeRecord.node_id, NodeRecord.sessions, NodeRecord.load).tuples()
        return self._store.run(lambda: {n: (int(s), float(r)) for n, s, r in query.execute()}, read_only=True)

    def live(self) -> list[Row]:
        """The rows marked active (some may be stale: ages are for the membership to judge)."""
        return [row for row in self.read().rows if row.status == ACTIVE]

    def close(self) -> None:
        self._store.close()
