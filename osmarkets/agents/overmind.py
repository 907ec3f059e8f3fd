"""The Overmind: supervises every agent of an architecture.

It runs as a thread of the process that owns the architecture, because only that process can
restart an agent (the agents are its child processes). Every ``interval`` seconds it checks each
agent: is the process alive, does it answer ``ping``, is its main loop running (an exception
that escaped a handler stops osBrain's loop while the process stays alive), and reads its
message and error counters. A Brain whose process died or whose loop stopped is restarted and
its subscriptions are re-applied, so it reloads its series from the Router's history.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import osbrain

if TYPE_CHECKING:
    from ..architecture import Architecture


class Overmind(threading.Thread):
    """Heartbeat, counters and restarts for the agents of ``architecture``."""

    def __init__(self, architecture: Architecture, interval: float = 0.5, restart: bool = True):
        super().__init__(name="osmarkets-overmind", daemon=True)
        self.architecture = architecture
        self.interval = interval
        self.restart = restart
        self.restarts: dict[str, int] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self._stop_event = threading.Event()
        self._proxies: dict[tuple[str, int], Any] = {}

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # supervision must outlive any one failure
                self.last["overmind"] = {"name": "overmind", "error": repr(exc)}

    def _proxy(self, name: str, pid: int) -> Any:
        key = (name, pid)
        proxy = self._proxies.get(key)
        if proxy is None:
            for old in [k for k in self._proxies if k[0] == name]:
                self._release(self._proxies.pop(old))
            proxy = osbrain.Proxy(name, self.architecture.nsaddr, timeout=2.0)
            proxy._pyroTimeout = 3.0
            self._proxies[key] = proxy
        return proxy

    @staticmethod
    def _release(proxy: Any) -> None:
        with contextlib.suppress(Exception):
            proxy._pyroRelease()

    def probe(self, name: str) -> dict[str, Any]:
        """One agent's health and counters."""
        arch = self.architecture
        handle = arch._agents.get(name)
        row: dict[str, Any] = {"name": name, "kind": handle.kind if handle else "?"}
        if handle is None:
            row["alive"] = False
            return row
        process = handle.process
        row.update(pid=process.pid, alive=process.is_alive(), running=False, answers=False)
        row["restarts"] = self.restarts.get(name, 0)
        if not row["alive"]:
            return row
        try:
            proxy = self._proxy(name, process.pid)
            row["answers"] = proxy.unsafe.ping() == "pong"
            row["running"] = bool(proxy.unsafe.is_running())
            if row["running"] and handle.kind != "logger":
                row.update(proxy.unsafe.osm_stats())
        except Exception as exc:
            row["problem"] = f"{type(exc).__name__}: {exc}"[:200]
        return row

    def check(self, restart: bool | None = None) -> list[dict[str, Any]]:
        """Probe every agent; restart the Brains that are down (if ``restart``)."""
        restart = self.restart if restart is None else restart
        rows = []
        for name in list(self.architecture._agents):
            if self._stop_event.is_set() or self.architecture._closing:
                break
            row = self.probe(name)
            row["checked"] = time.time()
            dead = not row.get("alive")
            stalled = row.get("alive") and row.get("answers") and not row.get("running")
            if restart and row.get("kind") == "brain" and (dead or stalled):
                self._restart(name)
                row["restarts"] = self.restarts.get(name, 0)
            self.last[name] = row
            rows.append(row)
        return rows

    def _restart(self, name: str) -> None:
        arch = self.architecture
        if arch._closing:
            return
        self.restarts[name] = self.restarts.get(name, 0) + 1
        arch._restart_brain(name)
