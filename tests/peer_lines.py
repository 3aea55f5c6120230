"""What a test's child process prints for the test to read: whole lines, one at a time."""

from __future__ import annotations

import sys
import threading

_say = threading.Lock()


def say(*parts: str) -> None:
    """One whole line at a time: the child's threads (membership, link) all print."""
    with _say:
        sys.stdout.write(" ".join(parts) + "\n")
        sys.stdout.flush()
