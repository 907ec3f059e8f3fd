"""Where the running architectures of this user are: one small file per name server.

Each :class:`~osmarkets.architecture.Architecture` writes its name server address to
``<registry>/<pid>-<port>`` (mode 0600, in a directory of mode 0700) and removes it on
shutdown, so ``osmarkets gui`` with no ``--nameserver`` finds the architecture running on this
machine. An owner killed with SIGKILL cannot remove its file: readers ignore and delete entries
whose process is gone (or whose pid now belongs to another process).

The registry is ``$OSMARKETS_REGISTRY_DIR`` if set, else ``$XDG_RUNTIME_DIR/osmarkets/
nameservers`` (a per-user tmpfs on most Linux desktops), else ``~/.osmarkets/nameservers``.
No osBrain here: only files and process ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any


def registry_dir() -> Path:
    """The directory holding this user's entries (not created here)."""
    explicit = os.environ.get("OSMARKETS_REGISTRY_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "osmarkets" / "nameservers"
    return Path.home() / ".osmarkets" / "nameservers"


def _process_start(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's: not one of ours
        return False
    now = _process_start(pid)
    return start is None or now is None or now == start


def register(
    nsaddr: Any,
    kind: str = "Architecture",
    pid: int | None = None,
    keys: dict[str, str] | None = None,
) -> Path:
    """Record that this process (``pid``) runs an architecture whose name server is at
    ``nsaddr`` (``host:port``), with the deployment's ``keys`` (its Pyro HMAC key and CURVE
    keys, see :mod:`osmarkets.agents.auth`): the entry is the key file of tools that attach to
    it, readable by this user only. Returns the entry's path, for :func:`unregister`."""
    pid = os.getpid() if pid is None else int(pid)
    address = str(nsaddr)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"nsaddr: expected HOST:PORT, got {address!r}")
    folder = registry_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    entry = {
        "pid": pid,
        "nameserver": address,
        "kind": kind,
        "started": time.time(),
        "process_start": _process_start(pid),
    }
    if keys is not None:
        entry["keys"] = keys
    path = folder / f"{pid}-{port}"
    temporary = folder / f".{pid}-{port}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(entry).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)  # readers never see a half-written entry
    return path


def unregister(path: Path | None) -> None:
    """Remove an entry written by :func:`register` (missing is fine)."""
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def running(clean: bool = True) -> list[dict[str, Any]]:
    """The live entries, newest first: dicts with ``nameserver`` (``host:port``), ``pid``,
    ``kind``, ``started`` (epoch seconds) and ``path``. Entries of dead processes, and
    unreadable ones, are skipped and (with ``clean``) deleted."""
    folder = registry_dir()
    try:
        paths = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []
    uid = os.getuid() if hasattr(os, "getuid") else None
    found = []
    for path in paths:
        with contextlib.suppress(OSError):
            if uid is not None and path.stat().st_uid != uid:
                continue  # not written by this user: neither trusted nor deleted
        entry = _read(path)
        if entry is None or not _alive(entry["pid"], entry.get("process_start")):
            if clean:
                unregister(path)
            continue
        entry["path"] = path
        found.append(entry)
    found.sort(key=lambda e: e["started"], reverse=True)
    return found


def _read(path: Path) -> dict[str, Any] | None:
    """A well-formed entry, or None."""
    try:
        entry = json.loads(path.read_text())
        entry["pid"] = int(entry["pid"])
        entry["started"] = float(entry.get("started", 0.0))
        host, _, port = str(entry["nameserver"]).rpartition(":")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not host or not port.isdigit() or entry["pid"] <= 0:
        return None
    return dict(entry)
