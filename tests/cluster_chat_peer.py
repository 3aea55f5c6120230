"""A chat node for the cluster tests: ``python cluster_chat_peer.py NODE_ID DATABASE_URL``.

A ``Chat(cluster=True)`` and its gateway on a free port of ``$THESPIAN_BASE_IPADDR`` (127.0.0.1 by
default). Prints ``READY {"port", "node", "pid"}``, then answers stdin: ``ring`` prints ``RING a,b,c``
(the node ids it routes by), ``stats`` prints ``STATS {...}``, ``pause-ring`` (``PAUSED``) holds
the rings its membership sees back from its actors and ``resume-ring`` (``RESUMED``) lets them through
(a node slow to see a change), ``quit`` (or end of input) stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from chatactors import Chat
from chatactors.gateway import Gateway

logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s", stream=sys.stderr)


async def main(node_id: str, database_url: str) -> None:
    host = os.environ.get("THESPIAN_BASE_IPADDR", "127.0.0.1")
    chat = Chat(
        database_url,
        cluster=True,
        node_id=node_id,
        advertise=host,
        password_profile="cheapest",
        echo=False,
        announce_login=False,
    )
    gateway = Gateway(chat, host, 0)
    await gateway.start()
    print("READY " + json.dumps({"port": gateway.port, "node": chat.node_id, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    peering = chat._node.peering
    apply, held = peering._new_ring, [False, []]  # paused?, the rings held meanwhile

    def new_ring(ring: object) -> None:  # on the driver thread
        if held[0]:
            held[1].append(ring)
        else:
            apply(ring)

    peering._new_ring = new_ring
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "ring":
                print("RING " + ",".join(sorted(chat._node.peering.ring.node_ids)), flush=True)
            elif line == "stats":
                stats = await loop.run_in_executor(None, chat.stats)
                nodes = {n: s.online_users for n, s in stats.nodes}
                retired = {n: s.retirements for n, s in stats.nodes}
                report = {"online": stats.online_users, "nodes": nodes, "retired": retired}
                print("STATS " + json.dumps(report), flush=True)
            elif line == "pause-ring":
                await loop.run_in_executor(
                    None, peering.bridge.run_in_driver, lambda: held.__setitem__(0, True)
                )
                print("PAUSED", "", flush=True)
            elif line == "resume-ring":

                def resume() -> None:
                    held[0] = False
                    for ring in held[1]:
                        apply(ring)
                    held[1].clear()

                await loop.run_in_executor(None, peering.bridge.run_in_driver, resume)
                print("RESUMED", "", flush=True)
            elif line in ("quit", ""):
                break
    finally:
        await gateway.stop()
        chat.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
