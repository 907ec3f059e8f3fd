"""The owner's record of what went wrong and what was done about it: incidents.

Every restart, dead agent, failed restart, reconciliation difference and recovered order of an
:class:`~osmarkets.architecture.Architecture` becomes an incident: a dict ``time`` (epoch
seconds), ``agent``, ``kind`` (one of :data:`KINDS`) and ``detail`` (one line), kept in a
bounded memory (:meth:`Architecture.incidents`), logged with Python's :mod:`logging`
(logger ``'osmarkets'``: WARNING for ``dead`` and ``restart_failed``, INFO otherwise) and, when
the architecture has a Logger agent, written by it like any agent's line (origin ``owner`` or
``overmind``).

Agents report their own incidents (the Trader's reconciliation report, the orders it recovered)
in ``osm_stats()['incidents']``: a list of ``{'n', 'kind', 'detail'}`` dicts, newest last,
``n`` increasing from 1 in each process. The Overmind reads them with the counters and records
each once (:meth:`Incidents.from_agent` remembers the last ``n`` per agent process).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections import deque
from typing import Any

#: the kinds of incident
KINDS = ("restart", "dead", "reconciliation", "recovered_order", "restart_failed")
#: kinds logged at WARNING (the others at INFO)
SERIOUS = ("dead", "restart_failed")
ORIGINS = ("owner", "overmind")
MAX_DETAIL = 2000  # characters kept of one incident's detail

log = logging.getLogger("osmarkets")


def one_line(text: Any, limit: int = MAX_DETAIL) -> str:
    """``text`` on one line (newlines folded), at most ``limit`` characters."""
    return " ".join(str(text).split())[:limit]


def describe(exc: BaseException) -> str:
    """An exception as one line: ``Type: message``."""
    return one_line(f"{type(exc).__name__}: {exc}", 300)


class Incidents:
    """The incidents of one architecture (thread-safe: the Overmind thread and the owner's
    threads record). ``architecture``: where the Logger agent is found (``_agents['logger']``,
    ``proxy(name)``), if any."""

    def __init__(self, architecture: Any = None, maxlen: int = 1000) -> None:
        self.architecture = architecture
        self._lock = threading.RLock()
        self._items: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._counts: dict[tuple[str, str], int] = {}  # (agent, kind) -> all recorded so far
        self._last: dict[str, dict[str, Any]] = {}  # agent -> its newest incident
        self._dead: set[tuple[str, int | None]] = set()  # deaths recorded: (agent, pid)
        self._seen: dict[tuple[str, int | None], int] = {}  # (agent, pid) -> last n read
        #: agent -> its failed restart: ``pid`` (its process after the attempt), ``dead_pid``,
        #: ``exitcode``, ``error``
        self.failed: dict[str, dict[str, Any]] = {}
        self._logger: Any = None  # proxy to the Logger agent, made on first use
        self._logger_pid: int | None = None
        self._closed = False

    # -- recording -------------------------------------------------------------------------
    def record(self, agent: str, kind: str, detail: str, origin: str = "owner") -> dict[str, Any]:
        """Record an incident; log it (Python logging, and the Logger agent if any)."""
        if kind not in KINDS:
            raise ValueError(f"incident kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if origin not in ORIGINS:
            raise ValueError(f"incident origin: expected one of {ORIGINS}, got {origin!r}")
        agent, detail = str(agent), one_line(detail)
        item: dict[str, Any] = {"time": time.time(), "agent": agent, "kind": kind,
                                "detail": detail}  # fmt: skip
        level = "WARNING" if kind in SERIOUS else "INFO"
        line = f"{agent}: {kind}: {detail}"
        with self._lock:
            self._items.append(item)
            self._counts[agent, kind] = self._counts.get((agent, kind), 0) + 1
            self._last[agent] = item
            log.log(logging.WARNING if kind in SERIOUS else logging.INFO, "%s (%s)", line, origin)
            self._to_logger(level, line, origin)
        return dict(item)

    def dead(self, agent: str, kind: str, pid: int | None, exitcode: int | None,
             why: str = "", origin: str = "owner") -> bool:  # fmt: skip
        """Record the death of agent ``agent``'s process ``pid``, once. True if recorded now."""
        with self._lock:
            if (agent, pid) in self._dead:
                return False
            self._dead.add((agent, pid))
            detail = f"{kind} process pid {pid} died (exit code {exitcode})"
            self.record(agent, "dead", f"{detail}: {why}" if why else detail, origin)
            return True

    def restart_failed(self, agent: str, pid: int | None, dead_pid: int | None,
                       exitcode: int | None, exc: BaseException,
                       origin: str = "overmind") -> None:  # fmt: skip
        """Record that restarting ``agent`` (process ``dead_pid``, which died with
        ``exitcode``) raised ``exc``; ``pid``: its process after the attempt."""
        error = describe(exc)
        with self._lock:
            self.failed[agent] = {"pid": pid, "dead_pid": dead_pid, "exitcode": exitcode,
                                  "error": error}  # fmt: skip
            self.record(agent, "restart_failed", f"pid {dead_pid}: {error}", origin)

    def failure(self, agent: str, pid: int | None) -> dict[str, Any] | None:
        """The failed restart of ``agent`` if its process is still ``pid`` (the one left by the
        attempt), else None."""
        with self._lock:
            failed = self.failed.get(agent)
            return dict(failed) if failed is not None and failed["pid"] == pid else None

    def from_agent(self, agent: str, pid: int | None, reported: Any) -> int:
        """Record the incidents agent ``agent`` (process ``pid``) reported in its stats that are
        newer than those read before; return how many."""
        if not isinstance(reported, list | tuple):
            return 0
        count = 0
        with self._lock:
            last = self._seen.get((agent, pid), 0)
            for entry in reported:
                n = entry.get("n") if isinstance(entry, dict) else None
                if not isinstance(n, int) or isinstance(n, bool) or n <= last:
                    continue
                kind = entry.get("kind")
                if kind not in KINDS:
                    log.warning("%s reported an incident of unknown kind %r: %s", agent, kind,
                                one_line(entry.get("detail", ""), 200))  # fmt: skip
                else:
                    self.record(agent, kind, str(entry.get("detail", "")), "overmind")
                    count += 1
                last = max(last, n)
            self._seen[(agent, pid)] = last
        return count

    # -- reading -----------------------------------------------------------------------------
    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self._items]

    def count(self, agent: str, kind: str) -> int:
        with self._lock:
            return self._counts.get((agent, kind), 0)

    def last_text(self, agent: str) -> str:
        """``agent``'s newest incident, short: ``'HH:MM:SS kind: detail'`` ('' if none)."""
        with self._lock:
            item = self._last.get(agent)
        if item is None:
            return ""
        when = datetime.datetime.fromtimestamp(item["time"]).strftime("%H:%M:%S")
        return one_line(f"{when} {item['kind']}: {item['detail']}", 120)

    # -- the Logger agent --------------------------------------------------------------------
    def _to_logger(self, level: str, line: str, origin: str) -> None:
        """Send ``line`` to the Logger agent (oneway), if the architecture has a live one."""
        arch = self.architecture
        handle = arch._agents.get("logger") if arch is not None and not self._closed else None
        process = handle.process if handle is not None else None
        if handle is None or handle.proxy is None or process is None or not process.is_alive():
            return
        try:
            if self._logger is None or self._logger_pid != process.pid:
                self._release()
                self._logger = arch.proxy("logger", timeout=2.0)
                self._logger._pyroTimeout = 2.0
                self._logger_pid = process.pid
            self._logger.oneway.osm_log(level, line, origin)
        except Exception as exc:  # the incident is recorded: its log line is not worth a raise
            self._release()
            log.debug("could not send an incident to the Logger: %s", describe(exc))

    def _release(self) -> None:
        proxy, self._logger, self._logger_pid = self._logger, None, None
        if proxy is not None:
            with contextlib.suppress(Exception):
                proxy._pyroRelease()

    def close(self) -> None:
        """Stop sending to the Logger (the architecture shuts down)."""
        with self._lock:
            self._closed = True
            self._release()
