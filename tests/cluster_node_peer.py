"""A cluster node (chatactors/cluster/node.py) in a process of its own, for tests/test_cluster_node.py.

``python tests/cluster_node_peer.py NODE DATABASE_URL``: joins with a short membership period (0.5 s;
dead after 1.75 s) and prints ``RING <ids,comma-separated>`` on each ring change, ``GOT <from>
<json>`` for each message, ``UNDELIVERED <node> <json list>``. Commands on stdin: ``SEND <node>
<json>``, ``OWNERS <kind> <count>`` (prints ``OWNERS <owner of id 1> <owner of id 2> ...``), ``RING``
(prints ``NOW <ids of the ring as it is>``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from peer_lines import say

from chatactors.cluster.node import ClusterNode
from chatactors.core.membership import Timing
from chatactors.core.ring import Ring


def main(name: str, url: str) -> None:
    def on_ring(ring: Ring) -> None:
        say("RING", ",".join(ring.node_ids))

    def on_message(sender: str, message: Any) -> None:
        say("GOT", sender, json.dumps(message))

    def on_undelivered(node: str, messages: tuple[Any, ...]) -> None:
        say("UNDELIVERED", node, json.dumps(list(messages)))

    node = ClusterNode(
        url, name, f"ws://{name}", on_message, on_undelivered, timing=Timing(0.5, 3, 0.25), on_ring=on_ring
    )
    node.start()
    say("STARTED", name)
    for line in sys.stdin:
        command, *args = line.rstrip("\n").split(" ", 2)
        if command == "SEND":
            node.send(args[0], json.loads(args[1]))
        elif command == "OWNERS":
            say("OWNERS", *(str(node.owner((args[0], i))) for i in range(1, int(args[1]) + 1)))  # type: ignore[arg-type]
        elif command == "RING":
            say("NOW", ",".join(node.ring.node_ids))
    node.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
