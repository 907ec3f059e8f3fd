"""The Logger agent: every agent's log lines, in a bounded memory, a log file and (warnings and
errors, one line each) the launcher's terminal.

osBrain's own Logger unpickles what reaches its SUB socket, so anyone who can connect to it could
run code in it. This one receives plain UTF-8 text (``topic + line``, topics ``INFO``,
``WARNING``, ``ERROR``, ``DEBUG``) on a raw socket, CURVE-secured over tcp like every other
:class:`~osmarkets.agents.base.OsmAgent` socket; anything else is dropped and counted.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections import deque
from typing import Any

import zmq

from ..logfiles import LEVELS as SEVERITY
from ..logfiles import ConsoleBudget, console_line
from .base import OsmAgent

LEVELS = ("INFO", "WARNING", "ERROR", "DEBUG")
ALERTS = ("WARNING", "ERROR")  # the levels published on ``alerts``
MAX_LINE = 64 * 1024  # characters kept of one log line
ORIGINS = ("owner", "overmind")  # who writes through osm_log


class LoggerAgent(OsmAgent):
    """Attributes set at start: ``osm_cfg`` with ``osm_log_path`` (append every line to this
    file), ``osm_console`` (the least serious level echoed to the terminal, the Logger's
    stderr, which is the launcher's; None: none), the architecture's transport, ipc directory
    and owner process."""

    def osm_setup(self) -> None:
        limit = 10_000
        self.log_history: deque[str] = deque(maxlen=limit)
        self.log_history_info: deque[str] = deque(maxlen=limit)
        self.log_history_warning: deque[str] = deque(maxlen=limit)
        self.log_history_error: deque[str] = deque(maxlen=limit)
        self.log_history_debug: deque[str] = deque(maxlen=limit)
        path = self.osm_cfg.get("osm_log_path")
        self._osm_path = path
        self._osm_file = None
        if path:  # 0600: the lines may name accounts and orders (never a token)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._osm_file = open(descriptor, "a", encoding="utf-8")  # noqa: SIM115
        console = self.osm_cfg.get("osm_console")
        self._osm_console = SEVERITY[SEVERITY.index(console) :] if console in SEVERITY else ()
        self._osm_budget = ConsoleBudget()
        self.osm_bind("SUB", "sub", handler=dict.fromkeys(LEVELS, self.osm_on_line))
        # warnings and errors again, ``LEVEL line``, for the Informer (PUB: never waits)
        self.osm_bind("PUB", "alerts")

    def shutdown(self) -> None:
        # lines that still arrive while the loop winds down stay in memory only
        file, self._osm_file = self._osm_file, None
        if file is not None:
            file.close()
        super().shutdown()

    def osm_on_line(self, data: bytes) -> None:
        self.osm_received += 1
        topic = next((level for level in LEVELS if data.startswith(level.encode())), None)
        try:
            if topic is None:
                raise ValueError("no level")
            line = bytes(data[len(topic) :]).decode("utf-8")[:MAX_LINE]
        except ValueError:
            self.osm_bad(f"log message that is not a level and UTF-8 text: {data[:80]!r}", "log")
            return
        self.osm_guard("logger", self.log_handler, line, topic)
        if topic in self._osm_console:
            self.osm_guard("logger", self._echo, line, topic)

    def log_handler(self, message: str, topic: str) -> None:
        if topic in ALERTS and "alerts" in self._socket:
            with contextlib.suppress(zmq.ZMQError):  # closed: shutting down
                self._socket["alerts"].send(f"{topic} {message}".encode("utf-8", "replace"))
        getattr(self, f"log_history_{topic.lower()}").append(message)
        self.log_history.append(message)
        if self._osm_file is not None:
            self._osm_file.write(f"{topic} {message}\n")
            self._osm_file.flush()

    def _echo(self, line: str, topic: str) -> None:
        """An agent's line on the terminal, one line. (The owner's own lines, its incidents,
        reach the terminal through Python's logging in the owner: not echoed twice.)"""
        shown, suppressed = self._osm_budget.take()
        if not shown:
            return
        if suppressed:
            print(f"osmarkets: {suppressed} more lines in {self._osm_path or 'the logs'}",
                  file=sys.stderr)  # fmt: skip
        print(console_line(topic, line, self._osm_path), file=sys.stderr, flush=True)

    def osm_log(self, level: str, message: str, origin: str = "owner") -> None:
        """Record a line of the architecture's owner (``origin`` ``'owner'`` or ``'overmind'``:
        its incidents) like an agent's line; called through the proxy, oneway."""
        if level not in LEVELS:
            raise ValueError(f"level: expected one of {', '.join(LEVELS)}, got {level!r}")
        if origin not in ORIGINS:
            raise ValueError(f"origin: expected one of {', '.join(ORIGINS)}, got {origin!r}")
        line = f"[{datetime.datetime.utcnow()}] ({origin}): {str(message)[:MAX_LINE]}"
        self.osm_received += 1
        self.log_handler(line, level)

    def recent(self, level: str = "", count: int = 50) -> list[str]:
        """The last ``count`` lines (of one level, if given)."""
        source = getattr(self, f"log_history_{level.lower()}", None) if level else None
        return list(source if source is not None else self.log_history)[-count:]

    def _log_message(self, level: Any, message: str, logger: str = "_logger") -> None:
        """The Logger's own lines go straight to its memory."""
        self.log_handler(str(message), str(level))
