"""The WebSocket gateway, along its seams.

``frames`` (the protocol's codec and checks, pure: the Python client uses it too), ``limits`` (what
one connection may do), ``static`` (the chat page), ``connection`` (one socket's queue and writer),
``server`` (the :class:`Gateway` and its frame handlers), ``runner`` (a gateway as a process),
``nodes`` (N gateways as cluster nodes on one port, supervised: ``chatactors serve --nodes N``).
"""

from chatactors.errors import NotLoggedIn, RateLimited
from chatactors.gateway.frames import message_frame, parse_frame, receipt_frames
from chatactors.gateway.limits import Limits, TokenBucket
from chatactors.gateway.runner import run, serve_until_signalled
from chatactors.gateway.server import Gateway

__all__ = [
    "Gateway",
    "Limits",
    "NotLoggedIn",
    "RateLimited",
    "TokenBucket",
    "message_frame",
    "parse_frame",
    "receipt_frames",
    "run",
    "serve_until_signalled",
]
