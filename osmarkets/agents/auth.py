"""Per-deployment secrets: the Pyro HMAC key of the control plane and the CURVE keys of tcp links.

Why: osBrain's control plane is Pyro4, whose calls carry (cloud)pickles: whoever can reach an
agent's daemon can run code in it. Pyro4's HMAC message authentication (``_pyroHmacKey``) makes
every daemon (the name server's included) refuse a message whose HMAC does not match *before*
deserialising it; so only holders of the deployment's key can call anything. The key is made at
start, held by the owner process and its agents (handed to them in memory, never through the
environment or a command line), and written for attaching tools only to a file its user alone can
read (:mod:`osmarkets.registry`, mode 0600).

ZeroMQ tcp links use CURVE (pyzmq's bundled libzmq has it): the deployment has one key pair;
every bound tcp socket is a CURVE server, every connecting one a CURVE client presenting the
deployment's public key, and a ZAP handler in each process admits only that key. A peer without
the deployment's secret key cannot complete the handshake: it is refused and counted. ipc sockets
live in a directory of mode 0700 (only the user reaches them).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import Pyro4
import Pyro4.core
import Pyro4.naming
import zmq


@dataclass(frozen=True)
class DeploymentKeys:
    """The secrets of one deployment. ``repr`` shows none of them."""

    pyro: bytes
    curve_public: bytes
    curve_secret: bytes

    @classmethod
    def generate(cls) -> DeploymentKeys:
        public, secret = zmq.curve_keypair()
        return cls(secrets.token_bytes(32), public, secret)

    def to_json(self) -> dict[str, str]:
        return {
            "pyro_key": self.pyro.hex(),
            "curve_public": self.curve_public.decode("ascii"),
            "curve_secret": self.curve_secret.decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Any) -> DeploymentKeys:
        try:
            return cls(
                bytes.fromhex(data["pyro_key"]),
                data["curve_public"].encode("ascii"),
                data["curve_secret"].encode("ascii"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"deployment keys: malformed ({type(exc).__name__})") from None

    def __repr__(self) -> str:
        return "DeploymentKeys(<secret>)"


def read_key_file(path: str | os.PathLike[str]) -> DeploymentKeys:
    """The keys in ``path`` (a registry entry or a ``--key-file``), refusing a file that other
    users can read: a key that leaked is no key."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"key file {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ValueError(f"key file {path}: readable by other users (chmod 600 it)")
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"key file {path}: not JSON") from None
    keys = data.get("keys", data) if isinstance(data, dict) else None
    return DeploymentKeys.from_json(keys)


def write_key_file(path: str | os.PathLike[str], keys: DeploymentKeys) -> Path:
    """Write ``keys`` to ``path`` with mode 0600 (created so, never widened)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"keys": keys.to_json()}, out)
    return path


# -- Pyro: every proxy and daemon of this process gets the key ------------------------------------
_default_key: bytes | None = None
_local = threading.local()
_patched = False


def _current_key() -> bytes | None:
    return getattr(_local, "key", None) or _default_key


def _patch_pyro() -> None:
    global _patched
    if _patched:
        return
    _patched = True
    proxy_init = Pyro4.core.Proxy.__init__
    daemon_init = Pyro4.core.Daemon.__init__

    def proxy_with_key(self: Any, *args: Any, **kwargs: Any) -> None:
        proxy_init(self, *args, **kwargs)
        key = _current_key()
        if key is not None:
            self._pyroHmacKey = key

    def daemon_with_key(self: Any, *args: Any, **kwargs: Any) -> None:
        daemon_init(self, *args, **kwargs)
        key = _current_key()
        if key is not None:
            self._pyroHmacKey = key

    Pyro4.core.Proxy.__init__ = proxy_with_key
    Pyro4.core.Daemon.__init__ = daemon_with_key

    # osBrain locates the name server with Pyro4.locateNS(host, port), which sets the proxy's
    # key to its ``hmac_key`` argument (None): default that argument to the current key.
    locate = Pyro4.core._locateNS

    def locate_with_key(
        host: Any = None, port: Any = None, broadcast: bool = True, hmac_key: Any = None
    ) -> Any:
        return locate(host, port, broadcast, hmac_key if hmac_key is not None else _current_key())

    Pyro4.locateNS = locate_with_key
    Pyro4.naming.locateNS = locate_with_key


def install_pyro_key(key: bytes | None) -> None:
    """Make ``key`` the HMAC key of every Pyro proxy and daemon this process creates from now on
    (in an agent process: its daemon and its proxies to the name server and other agents)."""
    global _default_key
    _patch_pyro()
    _default_key = key
    # A detailed remote traceback lists every local variable of every frame (credentials
    # included) to the caller and into its logs: the exception and its message are enough.
    Pyro4.config.DETAILED_TRACEBACK = False


@contextlib.contextmanager
def pyro_key(key: bytes | None) -> Iterator[None]:
    """Within the block, proxies and daemons this thread creates use ``key`` (an owner process
    may hold several deployments, each with its own key)."""
    _patch_pyro()
    previous = getattr(_local, "key", None)
    _local.key = key
    try:
        yield
    finally:
        _local.key = previous


def set_thread_key(key: bytes | None) -> None:
    """``key`` for every proxy this thread creates (a supervision thread of one deployment)."""
    _patch_pyro()
    _local.key = key


# -- CURVE ---------------------------------------------------------------------------------------
def curve_server(socket: zmq.Socket, keys: DeploymentKeys) -> None:
    """Make ``socket`` (about to bind on tcp) a CURVE server of the deployment."""
    socket.curve_secretkey = keys.curve_secret
    socket.curve_publickey = keys.curve_public
    socket.curve_server = True


def curve_client(socket: zmq.Socket, keys: DeploymentKeys) -> None:
    """Make ``socket`` (about to connect over tcp) a CURVE client with the deployment's key."""
    socket.curve_serverkey = keys.curve_public
    socket.curve_publickey = keys.curve_public
    socket.curve_secretkey = keys.curve_secret


class CurveGate:
    """The ZAP handler of one process's ZeroMQ context: admits only the deployment's public key
    and counts the peers it refused (``refused``)."""

    def __init__(self, context: zmq.Context, keys: DeploymentKeys) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.refused = 0
        self._allowed = keys.curve_public
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's ZAP hook: ``key`` is the peer's public key, Z85-encoded."""
        if secrets.compare_digest(bytes(key), self._allowed):
            return True
        self.refused += 1
        return False

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._auth.stop()


def secure_socket(
    socket: zmq.Socket, url: str, keys: DeploymentKeys | None, *, server: bool
) -> None:
    """CURVE options for a tcp ``url`` (ipc and inproc need none), before bind or connect."""
    if keys is not None and url.startswith("tcp://"):
        (curve_server if server else curve_client)(socket, keys)


__all__ = [
    "CurveGate", "DeploymentKeys", "curve_client", "curve_server", "install_pyro_key",
    "pyro_key", "read_key_file", "secure_socket", "set_thread_key", "write_key_file",
]  # fmt: skip
