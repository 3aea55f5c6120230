"""Node to node, over the link (``chatactors/cluster/link.py``): batches and their acknowledgements.

They cross processes and machines, so they carry node ids and plain values, never a simpleSystemBase
address; the only address is ``reply_to``, the sending thread's own Thespian TCP context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LinkBatch:
    """Batch ``seq`` of what ``node`` (incarnation ``epoch``) had for this node, in the order queued."""

    node: str
    epoch: int
    seq: int
    messages: tuple[Any, ...]
    reply_to: Any  # the sender's context: where the ack goes


@dataclass(frozen=True, slots=True)
class LinkAck:
    """Batch ``seq`` was delivered (or had been: a repeat is acknowledged again)."""

    node: str
    seq: int
