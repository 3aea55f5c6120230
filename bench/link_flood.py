"""A member's messages through a node link while strangers flood its port with plain connects.

``python bench/link_flood.py [--seconds 6] [--workers 2]``: link ``a`` listens; ``--workers``
processes connect to it as fast as they can (no secret, nothing sent; each keeps its last 300
sockets open and resets older ones), for ``--seconds``. Meanwhile link ``b``, a member that has to
open a new connection in the middle of the flood (``forget`` first), sends ``a`` one message every
50 ms. Prints the flood's rate, what the member sent, what arrived and what was handed back as
unreachable, and whether ``a``'s accepting thread is still alive. Loopback only; every loop is
bounded in count and time; the workers are this script's children, joined at the end. Needs
``CHATACTORS_CLUSTER_SECRET`` (made up here if unset).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import multiprocessing as mp
import os
import socket
import struct
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("CHATACTORS_CLUSTER_SECRET", "a-secret-for-the-link-benchmark")

from chatactors.cluster.link import Link, link_address  # noqa: E402

MAX_CONNECTS = 2_000_000  # per worker, whatever the time


def stranger(address: tuple[str, int], seconds: float, out: Any) -> None:
    """Connect without a word, as fast as possible; reset (SO_LINGER 0) all but the last 300."""
    held: collections.deque[socket.socket] = collections.deque()
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end and count < MAX_CONNECTS:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setblocking(False)
        try:
            sock.connect(address)
        except BlockingIOError:
            pass
        except OSError:  # the backlog is full, or out of ports: a moment, then again
            sock.close()
            time.sleep(0.001)
            continue
        held.append(sock)
        count += 1
        if len(held) > 300:
            held.popleft().close()
    for sock in held:
        sock.close()
    out.put(count)


class Arrivals:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.got: list[Any] = []

    def on_batch(self, node: str, messages: tuple[Any, ...]) -> None:
        with self.cond:
            self.got.extend(messages)
            self.cond.notify_all()

    def wait_for(self, message: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: message in self.got, timeout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("chatactors.transport").setLevel(logging.ERROR)  # one warning per refusal
    arrivals, lost = Arrivals(), []
    a = Link("a", 1, arrivals.on_batch, lambda n, m, r: None)
    b = Link("b", 1, lambda n, m: None, lambda n, m, r: lost.extend(m))
    address = a.start()
    b.start()
    b.send("a", address, "warm up")
    assert arrivals.wait_for("warm up", 10), "the member did not get through before the flood"
    b.forget("a")  # the member must open a new connection during the flood
    out: Any = mp.Queue()
    workers = [
        mp.Process(target=stranger, args=(link_address(address), args.seconds, out))
        for _ in range(args.workers)
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.5)  # the flood under way
    sent, end = 0, time.monotonic() + args.seconds - 1.0
    while time.monotonic() < end and sent < 1000:
        b.send("a", address, sent)
        sent += 1
        time.sleep(0.05)
    connects = sum(out.get(timeout=args.seconds + 10) for _ in workers)
    for worker in workers:
        worker.join(10)
    arrivals.wait_for(sent - 1, 5)  # the last one, if it comes
    delivered = len({m for m in arrivals.got if isinstance(m, int)})
    missing = sorted(set(range(sent)) - set(arrivals.got))
    alive = a._acceptor is not None and a._acceptor.is_alive()
    b.stop()
    a.stop()
    print(
        json.dumps(
            {
                "flood_connects_per_s": round(connects / args.seconds),
                "member_sent": sent,
                "member_delivered": delivered,
                "handed_back_unreachable": len(lost),
                "missing": missing[:10],
                "accepting_thread_alive": alive,
            }
        )
    )


if __name__ == "__main__":
    main()
