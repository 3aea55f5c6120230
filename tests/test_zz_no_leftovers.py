"""Runs last (file order): nothing the test session started is still running.

Two nets, because Thespian daemonizes its admin (setsid + double fork, parent becomes init):
descendants of this pytest process, and any process holding the session's marker descriptor
(see conftest.py), which every process forked from this one inherits, daemonized or not.
"""

from __future__ import annotations

import os
from typing import Any

from conftest import (
    SESSION_MARKER_ID,
    USED_ADMIN_PORTS,
    listen_sockets,
    listening_ports,
    poll_until,
    socket_inodes,
)


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) for every process we can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # it exited while we looked
        fields = stat.rsplit(")", 1)[1].split()
        found[pid] = (int(fields[1]), fields[0], cmdline)
    return found


def _holds_marker(pid: int) -> bool:
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == SESSION_MARKER_ID:
            return True
    return False


def _leftovers() -> list[str]:
    me = os.getpid()
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    descendants: set[int] = set()
    stack = [me]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in descendants:
                descendants.add(child)
                stack.append(child)
    marked = {pid for pid in processes if pid != me and _holds_marker(pid)}
    report = []
    for pid in sorted(descendants | marked):
        ppid, state, cmdline = processes.get(pid, (0, "?", "?"))
        if state == "Z":
            continue  # already dead; its parent just has not reaped it
        if pid in descendants and not cmdline:
            continue  # a kernel helper thread of ours
        report.append(f"pid {pid} (parent {ppid}, state {state}): {cmdline}")
    return report


def test_no_process_started_by_the_suite_is_still_running() -> None:
    # Processes asked to stop may take a moment to go: wait for that, not for a fixed time.
    found: list[Any] = []

    def none_left() -> bool:
        found[:] = _leftovers()
        return not found

    try:
        poll_until(none_left, timeout=10.0, what="leftover processes to exit")
    except AssertionError:
        raise AssertionError("left running by the test session:\n" + "\n".join(found)) from None


def _listeners(ports: set[int]) -> dict[int, set[int]]:
    """port -> pids of the processes listening on it, for the given ports."""
    inodes = {inode: port for port, inode in listen_sockets() if port in ports}
    owners: dict[int, set[int]] = {}
    if not inodes:
        return owners
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for inode in socket_inodes(int(entry)) & inodes.keys():
                owners.setdefault(inodes[inode], set()).add(int(entry))
    return owners


def test_no_thespian_admin_listens_on_a_port_the_suite_used() -> None:
    """An admin port of ours still open by a process of ours is a leftover. Other programs on this
    host (other test runs) may have been given one of those ports since: no concern of ours."""

    def ours_still_listening() -> dict[int, set[int]]:
        listening = _listeners(USED_ADMIN_PORTS & listening_ports())
        return {
            port: pids
            for port, pids in listening.items()
            if any(pid == os.getpid() or _holds_marker(pid) for pid in pids)
        }

    found: dict[int, set[int]] = {}

    def none_left() -> bool:
        found.clear()
        found.update(ours_still_listening())
        return not found

    try:
        poll_until(none_left, timeout=10.0, what="admins to stop listening")
    except AssertionError:
        raise AssertionError(f"admin ports of this session still listening: {found}") from None
