"""A node link in a process of its own, driven by tests/test_cluster_link.py over stdin and stdout.

``python tests/link_peer.py NODE``: starts a Link (ack timeout 0.5 s, 2 attempts), prints
``ADDR host:port``, then ``GOT <node> <json list>`` for every batch it receives and ``LOST <node>
<json list>`` for what a peer never acknowledged. Commands on stdin: ``SEND <node> <link> <json>``,
``SENDMANY <node> <link> <count>`` (the integers 0..count-1), ``FORGET <node>``.

``python tests/link_peer.py --stranger HOST:PORT``: sends one LinkBatch to that link in the link's
framing, signed with its own secret (not the cluster's), prints ``SENDING``, then waits to be killed.

A process of its own because the transport's secret is per process: the pytest process may already
have one of its own (any multiprocTCPBase test started before).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Any

from peer_lines import say

from chatactors import transport
from chatactors.cluster.link import Link, frame, link_address
from chatactors.messages import LinkBatch


def node(name: str) -> None:
    def on_batch(sender: str, messages: tuple[Any, ...]) -> None:
        say("GOT", sender, json.dumps(list(messages)))

    def on_unreachable(peer: str, messages: tuple[Any, ...], gone: str | None) -> None:
        say("LOST", peer, "gone" if gone else "unanswered", json.dumps(list(messages)))

    link = Link(name, 1, on_batch, on_unreachable, ack_timeout=0.5, attempts=2)
    say("ADDR", link.start())
    for line in sys.stdin:
        command, *args = line.split(" ", 3)
        if command == "SEND":
            link.send(args[0], args[1], json.loads(args[2]))
        elif command == "SENDMANY":
            for i in range(int(args[2])):
                link.send(args[0], args[1], i)
        elif command == "FORGET":
            link.forget(args[0].strip())
    link.stop()


def stranger(target: str) -> None:
    transport.install()
    with socket.create_connection(link_address(target), timeout=10) as s:
        say("SENDING")
        s.sendall(frame(LinkBatch("stranger", 1, 1, ("from a stranger",))))
        threading.Event().wait()


if __name__ == "__main__":
    if sys.argv[1] == "--stranger":
        stranger(sys.argv[2])
    else:
        node(sys.argv[1])
