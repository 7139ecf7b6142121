"""Serve the built site on 127.0.0.1 only (never all interfaces): a local preview, not a server."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from benchmark.errors import UserError

HOST = "127.0.0.1"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_server(directory: Path, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0 picks a free port) serving `directory`."""
    directory = Path(directory)
    if not (directory / "index.html").is_file():
        raise UserError(
            f"no site at {directory} (index.html missing); run `marinebench site build` first"
        )
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {HOST}:{port} ({exc.strerror}); pick another --port"
        ) from exc
