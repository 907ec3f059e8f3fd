"""The Overmind: supervises every agent of an architecture.

It runs as a thread of the process that owns the architecture, because only that process can
restart an agent (the agents are its child processes). Every ``interval`` seconds it checks each
agent: is the process alive, does it answer ``ping``, is its main loop running (an exception
that escaped a handler stops osBrain's loop while the process stays alive), and reads its
message and error counters. An agent whose process died or whose loop stopped is restarted if
the architecture lists its kind in ``restartable``: a Brain (its subscriptions are re-applied,
so it reloads its series from the Router's history) everywhere; the Router in every live
(not lock-step) architecture (a new process on the same addresses takes its series up from the
journal: sequence numbers, subscribers, history; the other agents' sockets reconnect to it by
themselves); on OANDA also the Trader (it reconciles with the account, and the Brains re-send
the orders it never acknowledged) and a Feeder (it backfills the gap). Any other dead agent
(a simulation's Router, a Trader or Feeder off OANDA) is reported in the status rows
(``alive`` False, ``problem`` saying it is not restarted), and the owner's next call of the
architecture raises :class:`~osmarkets.architecture.AgentDiedError` naming it.

Every restart (old and new pid, how long it took), failed restart (tried once) and death that is
not restarted becomes an incident of the architecture (:mod:`osmarkets.incidents`), and so do the
incidents agents report in their stats; the status rows carry ``restarts`` and
``last_incident``.

After each check it publishes the status rows, ``('status', seq, rows)``, on a PUB socket
(:meth:`Overmind.bind_status`), so a GUI reads one cheap feed instead of pinging every agent
itself. Each message is the whole table: one lost on the way is simply replaced by the next.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import wire
from .auth import CurveGate, pyro_key, secure_socket
from .proxy import AgentProxy

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
        self._pids: dict[str, int | None] = {}  # agent -> its process at the last check
        self.status_feed: str | None = None  # where the status rows are published
        self._status_seq = 0
        self._status_socket: Any = None
        self._status_context: Any = None
        self._gate: CurveGate | None = None

    def bind_status(self, url: str) -> str:
        """Bind the status PUB socket at ``url`` (``ipc://path``, or ``tcp://host`` for a
        random port) before :meth:`start`; return the address observers connect to. Over tcp
        it is a CURVE server of the deployment: only its key holders can read it."""
        import zmq

        self._status_context = zmq.Context()
        socket = self._status_context.socket(zmq.PUB)
        keys = self.architecture.keys
        if url.startswith("tcp://"):
            self._gate = CurveGate(self._status_context, keys)
            secure_socket(socket, url, keys, server=True)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 10)  # only the newest tables matter
        if url.startswith("tcp://") and url.count(":") == 1:
            url = f"{url}:{socket.bind_to_random_port(url)}"
        else:
            socket.bind(url)
        self._status_socket = socket
        self.status_feed = url
        return url

    def _close_status(self) -> None:
        if self._gate is not None:
            self._gate.stop()
            self._gate = None
        if self._status_socket is not None:
            self._status_socket.close(linger=0)
            self._status_context.term()
            self._status_socket = self._status_context = None

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is None:  # never started: no other thread uses the status socket
            self._close_status()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    rows = self.check()
                    if self._status_socket is not None and not self._stop_event.is_set():
                        self._status_seq += 1
                        data = wire.encode(("status", self._status_seq, rows))
                        self._status_socket.send(data)  # PUB: never blocks
                except Exception as exc:  # supervision must outlive any one failure
                    self.last["overmind"] = {"name": "overmind", "error": repr(exc)}
        finally:
            self._close_status()  # in this thread, the only one that used the socket

    def _proxy(self, name: str, pid: int) -> Any:
        key = (name, pid)
        proxy = self._proxies.get(key)
        if proxy is None:
            for old in [k for k in self._proxies if k[0] == name]:
                self._release(self._proxies.pop(old))
            with pyro_key(self.architecture.keys.pyro):
                proxy = AgentProxy(name, self.architecture.nsaddr, timeout=2.0, call_timeout=3.0)
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
            row["exitcode"] = process.exitcode
            return row
        if handle.proxy is None:  # still starting (its loop not running yet): not stalled
            row["starting"] = True
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
        """Probe every agent; restart the Brains that are down (if ``restart``). Record the
        incidents: restarts (and failed ones), deaths that are not restarted, the incidents
        agents report in their stats (``osm_stats()['incidents']``)."""
        restart = self.restart if restart is None else restart
        arch = self.architecture
        incidents = arch._incident_log
        rows = []
        for name in list(arch._agents):
            if self._stop_event.is_set() or arch._closing:
                break
            row = self.probe(name)
            row["checked"] = time.time()
            pid, kind = row.get("pid"), str(row.get("kind"))
            incidents.from_agent(name, pid, row.pop("incidents", None))
            if restart:  # the supervising thread: a process replaced by someone else
                self._replaced(name, pid)
            dead = not row.get("alive")
            stalled = row.get("alive") and row.get("answers") and not row.get("running")
            failed = incidents.failure(name, pid)
            if failed is not None:  # tried once: not again, the owner's calls raise
                row["problem"] = f"restart failed, not restarted: {failed['error']}"
            elif dead or stalled:
                restartable = arch._restartable(kind)
                if restart and restartable:
                    self._restart(name, row)
                elif not restartable:
                    row.setdefault("problem", "dead, not restarted" if dead else "loop stopped")
                if dead and not (restartable and arch.overmind is not None):
                    incidents.dead(name, kind, pid, row.get("exitcode"),
                                   "" if restartable else "not restartable",
                                   origin="overmind")  # fmt: skip
            row["restarts"] = incidents.count(name, "restart")
            row["last_incident"] = incidents.last_text(name)
            self.last[name] = row
            rows.append(row)
        return rows

    def _replaced(self, name: str, pid: int | None) -> None:
        """Record a restart the Overmind did not do (the owner's ``restart_trader``, say)."""
        known = self._pids.get(name)
        self._pids[name] = pid
        if known is not None and pid is not None and known != pid:
            self.architecture._incident_log.record(
                name, "restart", f"pid {known} -> {pid} (not by the Overmind)", "overmind"
            )

    def _restart(self, name: str, row: dict[str, Any]) -> None:
        arch = self.architecture
        if arch._closing:
            return
        pid, exitcode = row.get("pid"), row.get("exitcode")
        why = "loop stopped" if row.get("alive") else f"died, exit code {exitcode}"
        started = time.monotonic()
        try:
            done = arch._restart_agent(name, pid)
        except Exception as exc:
            if arch._closing:
                return
            handle = arch._agents.get(name)
            now = handle.process.pid if handle is not None and handle.process else None
            arch._incident_log.restart_failed(name, now, pid, exitcode, exc)
            return
        if done:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            handle = arch._agents.get(name)
            new = handle.process.pid if handle is not None and handle.process else None
            self._pids[name] = new
            took = time.monotonic() - started
            arch._incident_log.record(
                name, "restart", f"pid {pid} -> {new} in {took:.2f} s ({why})", "overmind"
            )
