"""Common plumbing of every osMarkets agent: guarded handlers, counters, raw pickled messages.

osBrain stops an agent's main loop when a handler raises (the process stays alive but deaf),
and it deserialises a message *before* calling the handler, so one malformed message would kill
the loop too. Every osMarkets socket therefore uses osBrain's ``raw`` serializer: the handler
receives bytes, unpickles them itself inside :meth:`OsmAgent._guard`, and any exception, from
decoding or from user code, is logged with its traceback and counted. The agent keeps running.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
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

RAW = "raw"


def dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes | memoryview) -> Any:
    return pickle.loads(data)


class OsmAgent(osbrain.Agent):
    """Base of the osMarkets agents. Configuration arrives as the ``osm_cfg`` attribute (a
    plain dict passed at process creation: osbrain.config edits in the parent are not seen by
    agents started with *spawn*, and this works under both start methods)."""

    osm_cfg: dict[str, Any]

    def on_init(self) -> None:
        self.osm_errors = 0  # handler exceptions (user code included)
        self.osm_malformed = 0  # messages that could not be decoded or understood
        self.osm_received = 0
        self.osm_sent = 0
        self.osm_last_errors: deque[str] = deque(maxlen=20)
        self.osm_started = time.time()
        self.osm_pid = os.getpid()
        cfg = getattr(self, "osm_cfg", None) or {}
        self.osm_cfg = cfg
        start_orphan_guard(cfg.get("parent_pid"))
        if cfg.get("logger") is not None:
            self.set_logger(cfg["logger"])
        self.osm_setup()

    def shutdown(self) -> None:
        # Stop the timers first: a timer that fires after the loop ended raises in its thread.
        self.stop_all_timers()
        super().shutdown()

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
    def osm_decode(self, data: Any, expect: tuple[str, ...] | None = None) -> Any:
        """Unpickle a message: a tuple whose first item is a known kind, else None (counted)."""
        try:
            message = loads(data)
        except Exception as exc:
            self.osm_bad(f"undecodable message ({type(exc).__name__}: {exc})")
            return None
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            self.osm_bad(f"message is not a (kind, ...) tuple: {message!r:.200}")
            return None
        if expect is not None and message[0] not in expect:
            self.osm_bad(f"unexpected message kind {message[0]!r}")
            return None
        return message

    def osm_bad(self, what: str) -> None:
        self.osm_malformed += 1
        self.osm_last_errors.append(f"malformed: {what}")
        self.log_warning(f"dropped {what}")

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
    that owns it."""

    ipc_dir: str | None = None

    def run(self) -> None:
        parent = os.getppid()

        def orphan_guard() -> None:
            while True:
                time.sleep(1.0)
                if os.getppid() != parent:
                    # The owner was SIGKILLed and could not shut down. The agents notice too
                    # and close their sockets (removing their ipc files) within about a second;
                    # give them time, then remove the owner's ipc directory.
                    if self.ipc_dir:
                        time.sleep(3.0)
                        shutil.rmtree(self.ipc_dir, ignore_errors=True)
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
    host: str, port: int | None = None, ipc_dir: str | None = None
) -> NameServerProcess:
    """Start a :class:`QuietNameServer` on ``host``, on ``port`` or a free random one."""
    last: Exception | None = None
    for _ in range(1 if port else 20):
        server = QuietNameServer(SocketAddress(host, port or random.randrange(20_000, 40_000)))
        server.ipc_dir = ipc_dir
        try:
            server.start()
            return server
        except RuntimeError as exc:  # port taken: try another
            last = exc
    raise RuntimeError(f"could not start the name server on {host}: {last}")


def socket_option(agent: osbrain.Agent, alias: str, option: int, value: int) -> None:
    agent._socket[alias].setsockopt(option, value)


__all__ = [
    "OsmAgent", "QuietNameServer", "dumps", "loads", "socket_option", "start_nameserver", "zmq",
]  # fmt: skip
