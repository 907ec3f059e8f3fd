"""Common plumbing of every osMarkets agent: guarded handlers, counters, the safe codec.

osBrain stops an agent's main loop when a handler raises (the process stays alive but deaf),
and it deserialises a message *before* calling the handler, so one malformed message would kill
the loop too. Every osMarkets socket therefore uses osBrain's ``raw`` serializer: the handler
receives bytes and decodes them itself with the socket's schema (:mod:`osmarkets.wire`: data,
never code); a message that does not decode is dropped, logged and counted, and any exception
from user code is logged with its traceback and counted. The agent keeps running.

Every agent process holds its deployment's keys (:mod:`osmarkets.agents.auth`): its Pyro daemon
and proxies authenticate with the HMAC key, and its tcp sockets are CURVE servers or clients.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

import cloudpickle
import osbrain
import Pyro4
import zmq
from osbrain.address import SocketAddress
from osbrain.common import format_method_exception
from osbrain.nameserver import NameServerProcess

from .. import wire
from ..logfiles import remove_keeping_logs
from .auth import CurveGate, DeploymentKeys, install_pyro_key, secure_socket

RAW = "raw"


def dumps(message: Any) -> bytes:
    """Encode a message for the wire (:func:`osmarkets.wire.encode`)."""
    return wire.encode(message)


class OsmAgentProcess(osbrain.AgentProcess):
    """osBrain's agent process, whose Pyro daemon and proxies carry the deployment's HMAC key
    from the start (the key travels in this object's memory, never in the environment)."""

    def __init__(self, *args: Any, pyro_key: bytes | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._osm_pyro_key = pyro_key

    def run(self) -> None:
        install_pyro_key(self._osm_pyro_key)
        super().run()

    #: seconds an agent may take between its fork and its word that its daemon runs
    START_TIMEOUT = 60.0

    def start(self) -> str:
        """osBrain's start (:meth:`launch`, then :meth:`wait_started`), which waited for the
        child's word without end: a child that died or hung while starting left the owner
        waiting forever."""
        self.launch()
        return self.wait_started()

    def launch(self) -> None:
        """Fork (or spawn) the agent's process."""
        multiprocessing.Process.start(self)

    def wait_started(self, timeout: float | None = None) -> str:
        """Wait for the child's word; raise if it dies, fails or says nothing in ``timeout``
        seconds (the child is then killed)."""
        limit = self.START_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + limit
        status: str | None = None
        while status is None:
            try:
                status = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.is_alive() and time.monotonic() < deadline:
                    continue
                with contextlib.suppress(queue.Empty):  # its last word, if it had time
                    status = self._queue.get(timeout=0.2)
                if status is not None:
                    break
                if self.is_alive():  # (osBrain's kill() is not the process's)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self.join(5)
                    message = f"agent {self.name!r} did not start within {limit:g} s"
                    raise RuntimeError(message) from None
                raise RuntimeError(
                    f"agent {self.name!r} died while starting (exit code {self.exitcode})"
                ) from None
        if not status.startswith("STARTED"):
            raise RuntimeError(f"agent {self.name!r} could not start:\n{status}")
        return str(status.partition(":")[-1])

    def _sigint_handler(self, signum: Any, frame: Any) -> None:
        """Ctrl-C in a terminal reaches the whole process group: the owner stops every agent
        in order. osBrain's own handler would make this agent kill itself on its own, half
        stopped, and the owner would wait for it until its deadline."""


class OsmAgent(osbrain.Agent):
    """Base of the osMarkets agents. Configuration arrives as the ``osm_cfg`` attribute (a
    plain dict passed at process creation: osbrain.config edits in the parent are not seen by
    agents started with *spawn*, and this works under both start methods)."""

    osm_cfg: dict[str, Any]

    def on_init(self) -> None:
        self.osm_errors = 0  # handler exceptions (user code included)
        self.osm_malformed = 0  # messages that could not be decoded or understood
        self.osm_dropped: dict[str, int] = {}  # the same, by reason
        self.osm_received = 0
        self.osm_sent = 0
        self.osm_last_errors: deque[str] = deque(maxlen=20)
        self.osm_started = time.time()
        self.osm_pid = os.getpid()
        # the secrets leave the config, which proxies read (a GUI reads the status feed's
        # address there): they stay in this process's attributes only
        cfg = dict(getattr(self, "osm_cfg", None) or {})
        keys = cfg.pop("keys", None)
        secret = ("auth", "brain_auth", "informer_urls")
        self.osm_secrets = {key: cfg.pop(key) for key in secret if key in cfg}
        self.osm_cfg = cfg
        self.osm_keys: DeploymentKeys | None = keys if isinstance(keys, DeploymentKeys) else None
        self.osm_gate: CurveGate | None = None
        if self.osm_keys is not None and cfg.get("transport") == "tcp":
            self.osm_gate = CurveGate(self._context, self.osm_keys)
        start_orphan_guard(cfg.get("parent_pid"))
        if cfg.get("logger") is not None:
            self.set_logger(cfg["logger"])
        self.osm_setup()

    def shutdown(self) -> None:
        # Stop the timers first: a timer that fires after the loop ended raises in its thread.
        self.stop_all_timers()
        if self.osm_gate is not None:
            self.osm_gate.stop()
        super().shutdown()

    def _log_message(self, level: Any, message: str, logger: str = "_logger") -> None:
        """Log lines travel as text (``LEVEL`` + line) to the Logger's raw socket: osBrain's
        default pickles them, and the Logger would unpickle whatever reached it."""
        if self._registered(logger):
            line = f"[{datetime.datetime.utcnow()}] ({self.name}): {message}"
            self._socket[logger].send(str(level).encode() + line.encode("utf-8", "replace"))
        else:
            super()._log_message(level, message, logger)

    # -- CURVE on every tcp socket osBrain binds or connects (private osBrain 0.6.5 methods) ---
    def _bind_socket(self, socket: Any, addr: Any = None, transport: Any = None) -> Any:
        if transport == "tcp" and getattr(self, "osm_keys", None) is not None:
            assert self.osm_keys is not None
            secure_socket(socket, "tcp://", self.osm_keys, server=True)
        if transport != "tcp" or not (getattr(self, "osm_cfg", None) or {}).get("ports"):
            return super()._bind_socket(socket, addr=addr, transport=transport)
        # the ports of a predecessor (a restarted agent): the system may hold one a moment
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return super()._bind_socket(socket, addr=addr, transport=transport)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect_and_register(
        self, client_address: Any, alias: Any = None, handler: Any = None, register_as: Any = None
    ) -> Any:
        if str(client_address.transport) != "tcp" or getattr(self, "osm_keys", None) is None:
            return super()._connect_and_register(client_address, alias, handler, register_as)
        socket = self._context.socket(client_address.kind.zmq())
        secure_socket(socket, "tcp://", self.osm_keys, server=False)
        socket.connect(f"tcp://{client_address.address}")
        self._register(socket, register_as or client_address, alias, handler)
        return client_address

    def osm_socket(self, kind: int, url: str) -> zmq.Socket:
        """A plain ZeroMQ socket connected to ``url`` (feed and broker threads), CURVE-secured
        over tcp."""
        socket = self._context.socket(kind)
        secure_socket(socket, url, self.osm_keys, server=False)
        socket.connect(url)
        return socket

    # -- sockets -----------------------------------------------------------------------------
    def osm_address(self, purpose: str) -> str | None:
        """Where to bind ``purpose``: a file in the architecture's ipc directory (so shutdown
        can remove every ipc file, even those of a killed process), or None for tcp."""
        ipc_dir = self.osm_cfg.get("ipc_dir")
        if self.osm_cfg.get("transport", "ipc") != "ipc" or not ipc_dir:
            return None
        return os.path.join(ipc_dir, f"{self.name}-{purpose}")

    def osm_bind(self, kind: str, alias: str, handler: Any = None) -> Any:
        transport = self.osm_cfg.get("transport", "ipc")
        addr = self.osm_address(alias)
        if transport == "tcp":
            addr = self.osm_cfg.get("host", "127.0.0.1")
            port = (self.osm_cfg.get("ports") or {}).get(alias)
            if port:  # a restarted agent binds its predecessor's port: peers reconnect to it
                addr = f"{addr}:{int(port)}"
        return osbrain.Agent.bind(
            self, kind, alias=alias, handler=handler, addr=addr, transport=transport,
            serializer=RAW,
        )  # fmt: skip

    def osm_send(self, alias: str, message: Any, topic: str | None = None) -> None:
        socket = self._socket[alias]
        data = dumps(message)
        if topic is not None:
            data = topic.encode() + data
        socket.send(data)
        self.osm_sent += 1

    # -- guarded handling ----------------------------------------------------------------------
    def osm_decode(self, data: Any, decoder: wire.Decoder) -> Any:
        """Decode a message with its socket's schema: a ``(kind, ...)`` tuple, else None (the
        message is dropped, logged and counted)."""
        try:
            return decoder(data)
        except wire.WireError as exc:
            self.osm_bad(f"message refused by the codec ({exc})", "codec")
            return None

    def osm_bad(self, what: str, reason: str = "malformed") -> None:
        """Count a dropped message; log the first five of each ``reason`` and then one in a
        thousand (a flood of garbage must not become a flood of log lines, nor hide the first
        message of another kind)."""
        self.osm_malformed += 1
        count = self.osm_dropped[reason] = self.osm_dropped.get(reason, 0) + 1
        self.osm_last_errors.append(f"{reason}: {what:.500}")
        if count <= 5 or count % 1000 == 0:
            self.log_warning(f"dropped {what:.500} ({reason} #{count})")

    def osm_guard(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call ``function``; log and count any exception instead of letting it stop the loop."""
        try:
            return function(*args)
        except Exception:
            self.osm_errors += 1
            text = f"{what} raised:\n{traceback.format_exc()}"
            self.osm_last_errors.append(text)
            self.log_error(text)
            return None

    def _process_sub_event(self, socket: Any, addr: Any, data: bytes) -> None:
        """osBrain inspects each handler's signature on every SUB message; every osMarkets SUB
        handler takes the raw bytes, so call it directly (the hot path of every Brain)."""
        for topic, handler in self._handler[socket].items():
            if data.startswith(topic):
                handler(self, data)

    # -- calls through the proxy and timers ---------------------------------------------------
    def _handle_loopback_safe(self, data: bytes) -> Any:
        """osBrain runs proxy calls on the main loop and *re-raises* their exceptions there,
        which stops the loop: here the exception goes back to the caller only, is counted,
        and the loop keeps running."""
        method, args, kwargs = cloudpickle.loads(data)
        try:
            response = getattr(self, method)(*args, **kwargs)
        except Exception as error:
            self.osm_errors += 1
            self.osm_last_errors.append(f"{method} raised {error!r}")
            yield format_method_exception(error, method, args, kwargs)
            return
        yield response

    def _handle_loopback(self, message: bytes) -> Any:
        """Timers (``each``/``after``) run here: same protection as proxy calls."""
        header, data = cloudpickle.loads(message)
        if header != "EXECUTE_METHOD":
            self.osm_bad(f"unrecognised loopback message {header!r}")
            yield "unrecognised"
            return
        method, args, kwargs = data
        try:
            response = getattr(self, method)(*args, **kwargs)
        except Exception as error:
            self.osm_errors += 1
            text = f"timer {method} raised:\n{traceback.format_exc()}"
            self.osm_last_errors.append(text)
            self.log_error(text)
            yield format_method_exception(error, method, args, kwargs)
            return
        yield response or True

    # -- supervision ---------------------------------------------------------------------------
    def osm_stats(self) -> dict[str, Any]:
        """Counters the Overmind reads."""
        return {
            "pid": self.osm_pid,
            "received": self.osm_received,
            "sent": self.osm_sent,
            "errors": self.osm_errors,
            "malformed": self.osm_malformed,
            "dropped": dict(self.osm_dropped),
            "refused_peers": self.osm_gate.refused if self.osm_gate is not None else 0,
        }

    def osm_recent_errors(self) -> list[str]:
        return list(self.osm_last_errors)


def start_orphan_guard(parent_pid: int | None) -> None:
    """Exit this agent process if the process that owns the architecture disappears.

    When the owner is killed with SIGKILL it cannot shut its agents down. A plain thread (not
    an osBrain timer, which needs the agent's loop to be alive) checks the parent every second
    and ends the process; the name server, which does the same, removes the architecture's ipc
    directory a few seconds later.
    """
    if not parent_pid:
        return

    def guard() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=guard, name="osmarkets-orphan-guard", daemon=True).start()


class QuietNameServer(NameServerProcess):
    """osBrain's name server without its start-up banner on stdout, whose Pyro broadcast
    responder stays on the name server's own address, and which does not outlive the process
    that owns it. ``cleanup_dirs``: more directories it removes when the owner dies (the
    OandaArchitecture's private token directory)."""

    ipc_dir: str | None = None
    cleanup_dirs: tuple[str, ...] = ()
    hmac_key: bytes | None = None

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner shuts it down (see above)
        install_pyro_key(self.hmac_key)
        parent = os.getppid()

        def orphan_guard() -> None:
            while True:
                time.sleep(1.0)
                if os.getppid() != parent:
                    # The owner was SIGKILLed and could not shut down. The agents notice too
                    # and close their sockets (removing their ipc files) within about a second;
                    # give them time, then remove the owner's ipc directory (and token dir).
                    dirs = [d for d in (self.ipc_dir, *self.cleanup_dirs) if d]
                    if dirs:
                        time.sleep(3.0)
                    for path in dirs:
                        remove_keeping_logs(path)
                    os._exit(0)

        threading.Thread(target=orphan_guard, daemon=True).start()
        # osBrain always starts Pyro's UDP broadcast responder, which listens on every
        # interface by default: keep it on the name server's own address (127.0.0.1 unless
        # the user chose another).
        Pyro4.config.NS_BCHOST = self.host
        with open(os.devnull, "w") as devnull:
            sys.stdout = devnull
            super().run()


def start_nameserver(
    host: str,
    port: int | None = None,
    ipc_dir: str | None = None,
    hmac_key: bytes | None = None,
    cleanup_dirs: tuple[str, ...] = (),
) -> NameServerProcess:
    """Start a :class:`QuietNameServer` on ``host``, on ``port`` or a free random one; with
    ``hmac_key`` it answers only Pyro calls authenticated with it. It removes ``ipc_dir`` and
    ``cleanup_dirs`` if the owner dies without shutting down."""
    last: Exception | None = None
    for _ in range(1 if port else 20):
        server = QuietNameServer(SocketAddress(host, port or random.randrange(20_000, 40_000)))
        server.ipc_dir = ipc_dir
        server.hmac_key = hmac_key
        server.cleanup_dirs = tuple(cleanup_dirs)
        try:
            server.start()
            return server
        except RuntimeError as exc:  # port taken: try another
            last = exc
    raise RuntimeError(f"could not start the name server on {host}: {last}")


def socket_option(agent: osbrain.Agent, alias: str, option: int, value: int) -> None:
    agent._socket[alias].setsockopt(option, value)


__all__ = [
    "OsmAgent", "OsmAgentProcess", "QuietNameServer", "dumps", "socket_option",
    "start_nameserver", "zmq",
]  # fmt: skip
