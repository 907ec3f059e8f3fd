"""A JSON webhook receiver on 127.0.0.1, to try notifications without the internet.

``WebhookReceiver().url`` is an Apprise URL (``json://127.0.0.1:PORT/hook``) for
``Architecture(informer={'urls': [...]})`` or :class:`~osmarkets.notify.Notifier`; what
arrives is kept in :attr:`bodies` (:meth:`messages`: their lines). ``status`` is what it
answers (set 500 to play a failing channel) and clearing ``hold`` makes it hang (a channel that
does not answer), until it is set again or the receiver is closed.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """See the module docstring; :meth:`close` it (or use it as a context manager)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.posts = 0  # every request, answered or not
        self.status = 200
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                receiver.posts += 1
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                receiver.hold.wait(30)
                if receiver.status == 200:
                    receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def messages(self) -> list[str]:
        """Every line of every message received, in order."""
        return [line for body in list(self.bodies)
                for line in str(body.get("message", "")).splitlines()]  # fmt: skip

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
