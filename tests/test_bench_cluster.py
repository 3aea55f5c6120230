"""``bench/cluster.py --quick``: a smoke run of the cluster benchmark on the real PostgreSQL.

One node and ``serve --nodes 2`` each take two low steps of the open-loop load; the test checks that
the run ends cleanly and prints every figure the benchmark promises (the held rate of each
configuration with its latency, losses and duplicates, the ratio against the target, the cost of a
cross-node hop, the share of messages that crossed nodes, where the CPU went, nothing left running).
The values are the benchmark's business: they are printed, never asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import SESSION_MARKER_FD, postgres_url

ROOT = Path(__file__).resolve().parent.parent
NUM = r"(?:-?\d+(?:\.\d+)?|nan)"  # a figure; NaN when a step had no message of that kind
FIGURES = {
    "held, 1 node": rf"  held 1 node: offered \d+ msg/s, delivered {NUM} msg/s, p50 {NUM} ms, "
    rf"p99 {NUM} ms, lost \d+, duplicated \d+",
    "held, 2 nodes": rf"  held 2 nodes: offered \d+ msg/s, delivered {NUM} msg/s, p50 {NUM} ms, "
    rf"p99 {NUM} ms, lost \d+, duplicated \d+",
    "ratio": r"  ratio 2 nodes / 1 node: \d+\.\d\dx \(target >= 1\.5x\): (PASS|FAIL)$",
    "hop": rf"  cross-node hop \(2 nodes, at \d+ msg/s\): p50 {NUM} ms with 0 crossings, {NUM} ms with 1, "
    rf"{NUM} ms with 2: \+{NUM} ms a crossing",
    "crossed": r"  crossed nodes \(2 nodes, at \d+ msg/s\): \d+% of messages \(1 crossing \d+%, 2 crossings \d+%\)",
    "cpu": rf"    cpu at \d+ msg/s \(cores\): nodes {NUM} \+ {NUM} = {NUM}, supervisor {NUM}, "
    rf"generator {NUM}, postgres {NUM}, other {NUM}; machine {NUM} of \d+",
    "users per node": r"  users per node: \{'[^']+': \d+, '[^']+': \d+\}",
    "nothing left": r"left running: 0 processes$",
}


def test_a_quick_run_prints_every_figure_for_one_and_two_nodes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick", "--pg-url", postgres_url()],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        pass_fds=(SESSION_MARKER_FD,),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    lines = done.stdout.splitlines()
    missing = [
        name for name, pattern in FIGURES.items() if not any(re.match(pattern, line) for line in lines)
    ]
    assert missing == [], output[-4000:]
