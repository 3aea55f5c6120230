"""Two node links in two processes: round trip and CPU per batch and per message, through ``Link``.

``python bench/link_rtt.py [--rounds 500] [--messages 20000]``: this process runs link ``a``, a child
runs link ``b`` that sends back every message it gets. First ``rounds`` round trips of one message,
one at a time (each crossing is a batch of one: the per-batch cost); then ``messages`` sent at once
and echoed (the link batches what queues: the per-message cost under load). CPU is both processes'
(user + system, every thread), from ``resource.getrusage``; a Thespian link's admin process is not
counted (it is idle: nothing goes through it). Prints one JSON line. Needs
``CHATACTORS_CLUSTER_SECRET`` (made up here if unset).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("CHATACTORS_CLUSTER_SECRET", "a-secret-for-the-link-benchmark")

from chatactors.cluster.link import Link  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def echo() -> None:
    """The child: echo every message back to ``a``; on ``CPU`` print this process's CPU so far."""
    target: list[str] = []

    def on_batch(node: str, messages: tuple[Any, ...]) -> None:
        for message in messages:
            link.send(node, target[0], message)

    link = Link("b", 2, on_batch, lambda n, m, r: None)
    print(link.start(), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "A":
            target.append(arg)
        elif command == "CPU":
            print(json.dumps({"cpu": cpu(), "batches": link.batches_received}), flush=True)
    link.stop()


class Echoes:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0

    def on_batch(self, node: str, messages: tuple[Any, ...]) -> None:
        with self.cond:
            self.count += len(messages)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= count, timeout):
                raise TimeoutError(f"{self.count} of {count} echoes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, __file__, "--echo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    b = child.stdout.readline().strip()
    echoes = Echoes()
    link = Link("a", 1, echoes.on_batch, lambda n, m, r: None)
    child.stdin.write(f"A {link.start()}\n")
    child.stdin.flush()

    def child_cpu() -> dict[str, Any]:
        child.stdin.write("CPU\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return dict(json.loads(child.stdout.readline()))  # type: ignore[union-attr]

    link.send("b", b, "warm up")
    echoes.wait_for(1)
    rtts: list[float] = []
    start_cpu, start_child = cpu(), child_cpu()
    for i in range(args.rounds):
        begin = time.perf_counter()
        link.send("b", b, i)
        echoes.wait_for(i + 2)
        rtts.append(time.perf_counter() - begin)
    round_cpu = cpu() - start_cpu + child_cpu()["cpu"] - start_child["cpu"]
    rtts.sort()

    done = echoes.count
    start_cpu, start_child, batches_a = cpu(), child_cpu(), link.batches_received
    begin = time.perf_counter()
    for i in range(args.messages):
        link.send("b", b, i)
    echoes.wait_for(done + args.messages)
    wall = time.perf_counter() - begin
    end_child = child_cpu()
    load_cpu = cpu() - start_cpu + end_child["cpu"] - start_child["cpu"]
    batches = link.batches_received - batches_a + end_child["batches"] - start_child["batches"]
    link.stop()
    child.stdin.close()
    child.wait(10)
    ms = 1000.0
    print(
        json.dumps(
            {
                "rtt_p50_ms": round(statistics.median(rtts) * ms, 3),
                "rtt_p99_ms": round(rtts[int(len(rtts) * 0.99) - 1] * ms, 3),
                "cpu_per_round_trip_ms": round(round_cpu / args.rounds * ms, 3),
                "cpu_per_batch_of_one_ms": round(round_cpu / args.rounds / 2 * ms, 3),
                "load_messages_per_s": round(2 * args.messages / wall),
                "load_batches": batches,
                "load_cpu_per_message_crossing_us": round(load_cpu / (2 * args.messages) * 1e6, 1),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--echo"]:
        echo()
    else:
        main()
