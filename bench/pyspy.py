"""Reading a ``py-spy record --format raw --function`` profile: top frames, threads and where a message's CPU goes.

A raw profile is one line per distinct stack, ``root;...;leaf COUNT``, each frame ``name (file.py:line)``.
Only samples of threads that were running are in it (py-spy leaves idle threads out), so a share of the
samples is a share of the CPU the server spent. ``python bench/pyspy.py PROFILE.txt`` prints the summary.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Which thread a stack ran on, from the frames near its root (checked in this order).
THREADS = (
    ("event loop", ("_run_once (asyncio/base_events.py", "run_until_complete (asyncio/base_events.py")),
    ("thread pool (executor)", ("_worker (concurrent/futures/thread.py",)),
    ("actor driver", ("SimpleBridge._drive (chatactors/bridge.py",)),
    ("push dispatcher", ("Bridge._dispatch (chatactors/bridge.py",)),
    # a coroutine's stack as py-spy cut it short (--nonblocking): the loop is the only thread running them
    ("event loop", ("asyncio/", "websockets/", "chatactors/server.py")),
)

# What a sample's CPU was spent on: the innermost frame that matches a rule decides (so json called
# from the gateway counts as JSON, a lock taken inside a queue as a hand-off). Checked leaf to root;
# for each frame the rules are tried in this order.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON encode/decode", ("json/",)),
    (
        "database: INSERT, commit, SELECT (peewee, driver)",
        ("peewee.py", "psycopg2/", "sqlite3/", "playhouse/"),
    ),
    ("logging", ("logging/",)),
    (
        "dataclasses: building and converting (__init__, replace, message_dict, isoformat)",
        ("dataclasses.py", "__create_fn__", "message_dict", "message_frame", "_iso (", "_plain ("),
    ),
    (
        "thread hand-offs (executor, queues, locks, call_soon_threadsafe)",
        (
            "concurrent/futures/",
            "threading.py",
            "queue.py",
            "call_soon_threadsafe",
            "_write_to_self",
            "run_in_executor",
            "_chain_future",
            "_copy_future_state",
            "_call_set_state",
            "_read_from_self",
            "_process_self_data",
            "Bridge.call",
            "_Waiter",
            "Bridge._hand_back",
            "Bridge._inbound",
            "Gateway._from_thread",
            "Gateway._blocking",
        ),
    ),
    ("WebSocket frames in/out (websockets)", ("websockets/",)),
    ("Thespian message delivery", ("thespian/",)),
    (
        "socket syscalls (transport write, read)",
        ("_SelectorSocketTransport.write", "_read_ready__", "socket.py"),
    ),
    ("event loop: select, callbacks, tasks, futures", ("asyncio/", "selectors.py")),
    ("actors and core logic (chatactors.actors, .core)", ("chatactors/actors/", "chatactors/core/")),
    ("gateway (chatactors.gateway)", ("chatactors/gateway/",)),
    ("Chat/Session and bridge", ("chatactors/chat.py", "chatactors/bridge.py", "chatactors/messages.py")),
    ("storage layer (chatactors.storage)", ("chatactors/storage.py",)),
)
OTHER = "other"


@dataclass
class Profile:
    """Samples per stack, root first."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.stacks.values())

    @classmethod
    def read(cls, path: Path) -> Profile:
        profile = cls()
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                profile.stacks[tuple(stack.split(";"))] += int(count)
        return profile

    def self_time(self) -> Counter[str]:
        """Samples per leaf frame (where the CPU was when sampled)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            out[stack[-1]] += n
        return out

    def inclusive(self) -> Counter[str]:
        """Samples per frame anywhere on the stack (each stack counts a frame once)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            for frame in set(stack):
                out[frame] += n
        return out

    def by(self, classify: Iterable[tuple[str, tuple[str, ...]]], *, leaf_first: bool) -> Counter[str]:
        rules = list(classify)
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            out[_first_match(stack[::-1] if leaf_first else stack, rules)] += n
        return out

    def threads(self) -> Counter[str]:
        return self.by(THREADS, leaf_first=False)

    def buckets(self) -> Counter[str]:
        return self.by(BUCKETS, leaf_first=True)

    def buckets_per_thread(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for stack, n in self.stacks.items():
            thread = _first_match(stack, list(THREADS))
            out.setdefault(thread, Counter())[_first_match(stack[::-1], list(BUCKETS))] += n
        return out


# A thread's own start-up frames say nothing about what it was doing.
ROOTS = ("Thread._bootstrap", "Thread.run (threading.py", "<module>")
# Nor do the frames under every callback of the event loop (left out of the inclusive table).
LOOP_ROOTS = (
    "main (",
    "serve_main (",
    "Runner.run (",
    "run (asyncio/runners.py",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop.run_forever",
    "BaseEventLoop._run_once",
    "Handle._run (",
)


def _first_match(frames: Iterable[str], rules: list[tuple[str, tuple[str, ...]]]) -> str:
    for frame in frames:
        if frame.startswith(ROOTS):
            continue
        for name, needles in rules:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def short(frame: str) -> str:
    """``name (file.py:12)`` -> ``name (file.py)``: a function, whatever line it was on."""
    m = FRAME.match(frame)
    return f"{m['name']} ({m['file']})" if m else frame


def summary(profile: Profile, top: int = 15, thread_us: dict[str, float] | None = None) -> str:
    """The text ``docs/performance.md`` quotes: threads, top self and inclusive frames, buckets.

    ``thread_us``: each thread's CPU per message (from /proc). Each thread's samples then share out its
    own CPU, so the accounting adds up to what the server spent, GIL-free C and syscalls included.
    """
    total = profile.total or 1
    lines = [f"{profile.total} samples"]

    def table(title: str, counts: Counter[str], n: int, us: dict[str, float] | None = None) -> None:
        lines.append(f"\n{title}")
        for name, count in counts.most_common(n):
            cost = f"  {us.get(name, 0.0):6.0f} us/msg" if us is not None else ""
            lines.append(f"  {100 * count / total:5.1f} %{cost}  {name}")

    per_thread = profile.buckets_per_thread()
    spread: dict[str, dict[str, float]] = {}  # thread -> bucket -> us per message
    if thread_us is not None:
        for thread, counts in per_thread.items():
            n = sum(counts.values())
            spread[thread] = {b: thread_us.get(thread, 0.0) * c / n for b, c in counts.items()}
    table("by thread (share of GIL samples; CPU per message from /proc)", profile.threads(), 10, thread_us)
    selfs: Counter[str] = Counter()
    for frame, n in profile.self_time().items():
        selfs[short(frame)] += n
    table(f"top {top} frames by self time (the leaf: where the CPU was)", selfs, top)
    incl: Counter[str] = Counter()
    for frame, n in profile.inclusive().items():
        if not frame.startswith(ROOTS + LOOP_ROOTS):
            incl[short(frame)] = max(incl[short(frame)], n)
    table(f"top {top} frames by inclusive time (on the stack)", incl, top)
    overall: dict[str, float] | None = None
    if thread_us is not None:
        overall = {}
        for buckets in spread.values():
            for b, us in buckets.items():
                overall[b] = overall.get(b, 0.0) + us
    table("where a message's CPU goes (innermost matching frame decides)", profile.buckets(), 20, overall)
    for thread, counts in sorted(per_thread.items(), key=lambda kv: -sum(kv[1].values())):
        table(
            f"  ... on the {thread} thread", counts, 8, spread.get(thread) if thread_us is not None else None
        )
    return "\n".join(lines)


def under(profile: Profile, prefix: str, top: int = 15) -> str:
    """What the frames starting with ``prefix`` spend their samples on: their callees (or themselves)."""
    total = profile.total or 1
    out: Counter[str] = Counter()
    for stack, n in profile.stacks.items():
        names = [short(f) for f in stack]
        at = next((i for i, f in enumerate(names) if f.startswith(prefix)), None)
        if at is not None:
            out[names[at + 1] if at + 1 < len(names) else "(itself)"] += n
    lines = [f"under {prefix}: {100 * sum(out.values()) / total:.1f} % of all samples"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in out.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``pyspy.py PROFILE`` prints the summary; ``pyspy.py PROFILE --under FRAME`` one frame's callees."""
    if not argv:
        print(__doc__)
        return 2
    profile = Profile.read(Path(argv[0]))
    if len(argv) > 2 and argv[1] == "--under":
        print(under(profile, argv[2]))
        return 0
    print(summary(profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
