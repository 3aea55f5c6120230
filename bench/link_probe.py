"""Probe for the cluster's node link (docs/cluster.md, "The node link: measured").

Two OS processes, each with its own multiprocTCPBase system (transient, own admin port), the
chatactors transport installed (bound to 127.0.0.1, frames signed with CHATACTORS_CLUSTER_SECRET),
talk context to context: no actor, no admin on the path. Prints the round trip and the CPU per
round trip, then kills the peer and shows what a send to it does.

    .venv/bin/python bench/link_probe.py [--count 500]

Loopback only. The peer is a child process of this one and is killed by pid.
"""

from __future__ import annotations

import argparse
import base64
import os
import pickle
import socket
import subprocess
import sys
import time
from typing import Any

from thespian.actors import ActorSystem

from chatactors import transport


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def system() -> Any:
    transport.install()
    return ActorSystem("multiprocTCPBase", transport.system_capabilities(free_port()), transientUnique=True)


def peer(limit: float) -> None:
    """Answer every ("ping", reply_to, n) with ("pong", n) until killed or ``limit`` seconds pass."""
    asys = system()
    try:
        with asys.private() as ctx:
            address = transport.tcp_address(*transport.context_address(ctx))
            print("ADDR", base64.b64encode(pickle.dumps(address)).decode(), flush=True)
            until = time.monotonic() + limit
            while time.monotonic() < until:
                msg = ctx.listen(0.5)
                if isinstance(msg, tuple) and msg[0] == "ping":
                    ctx.tell(msg[1], ("pong", msg[2]))
    finally:
        asys.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault(transport.SECRET_ENV, base64.b64encode(os.urandom(24)).decode())
    os.environ.setdefault("THESPLOG_FILE", os.devnull)
    if args.peer:
        peer(limit=120)
        return 0
    child = subprocess.Popen([sys.executable, __file__, "--peer"], stdout=subprocess.PIPE, text=True)
    asys = system()
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        address = pickle.loads(base64.b64decode(line.split()[1]))  # our own child's: trusted
        with asys.private() as ctx:
            me = transport.tcp_address(*transport.context_address(ctx))
            ctx.tell(address, ("ping", me, -1))  # the first connection is not measured
            assert ctx.listen(10) == ("pong", -1)
            cpu0, lat = sum(os.times()[:2]), []
            for i in range(args.count):
                t = time.perf_counter()
                ctx.tell(address, ("ping", me, i))
                assert ctx.listen(10) == ("pong", i)
                lat.append(time.perf_counter() - t)
            cpu = (sum(os.times()[:2]) - cpu0) / args.count
            lat.sort()
            print(
                f"context to context, two processes: round trip p50 {1000 * lat[len(lat) // 2]:.2f} ms, "
                f"p99 {1000 * lat[int(len(lat) * 0.99)]:.2f} ms; sender CPU {1000 * cpu:.2f} ms a round trip "
                f"(one send, one receive)"
            )
            child.kill()
            child.wait(10)
            t = time.perf_counter()
            ctx.tell(address, ("ping", me, 0))
            blocked = time.perf_counter() - t
            got = ctx.listen(3)
            print(
                f"peer killed: a tell to it blocked the sender {1000 * blocked:.0f} ms; then listen(3 s) "
                f"got {got!r} (a context is told of no dead letter)"
            )
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        asys.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
