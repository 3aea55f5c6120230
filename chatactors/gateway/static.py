"""The chat page (``chatactors/static``), served to plain HTTP GETs on the gateway's port."""

from __future__ import annotations

import http
import mimetypes
from importlib import resources

from websockets.datastructures import Headers
from websockets.http11 import Response


class StaticFiles:
    """The chat page, read once at start-up (a handful of small files, no build step)."""

    def __init__(self, package: str = "chatactors", folder: str = "static") -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        root = resources.files(package) / folder
        if not root.is_dir():
            return
        for entry in root.iterdir():
            if entry.is_file():
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind == "application/javascript":
                    kind += "; charset=utf-8"
                self.files["/" + entry.name] = (entry.read_bytes(), kind)

    def response(self, path: str) -> Response:
        path = path.split("?", 1)[0]
        found = self.files.get("/index.html" if path == "/" else path)
        if found is None:
            return _http(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        return _http(http.HTTPStatus.OK, *found)


def _http(status: http.HTTPStatus, body: bytes, kind: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", kind),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)
