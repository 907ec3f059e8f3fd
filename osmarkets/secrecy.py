"""Keeping a secret (the OANDA access token) out of places other processes and files can see.

Pure helpers, no osBrain: they act on the calling process only.

- :func:`scrub_environ` takes a variable out of the environment *and* out of the memory that
  ``/proc/<pid>/environ`` shows. ``os.environ.pop`` alone is not enough on Linux: the kernel's
  ``/proc/<pid>/environ`` is the block of ``NAME=value`` strings the process received at
  ``execve`` (on its initial stack), and ``unsetenv`` only drops the pointer to the string from
  libc's ``environ`` array, leaving the bytes where they were. Every process *forked* afterwards
  (multiprocessing's default start method on Linux: every osBrain agent and the name server)
  gets a copy of that memory, so its ``/proc/<pid>/environ`` shows the parent's original
  environment, value included, to any process of the same user. The bytes are therefore
  overwritten in place: the strings libc's ``environ`` array points to (found before
  ``unsetenv``, since a value given to ``setenv`` later lives on the heap) and every
  ``NAME=`` entry of the original block (its bounds are in ``/proc/self/stat``).
- :func:`disable_core_dumps` for processes that hold the secret: no core file (``RLIMIT_CORE``
  0) and not dumpable (``PR_SET_DUMPABLE`` 0, which also stops ptrace by other processes of the
  same user and makes ``/proc/<pid>/environ``, ``mem`` and the like owned by root).
- :func:`write_owner` / :func:`remove_stale_dirs`: a private directory records the process that
  owns it, so that a later run removes the directory a SIGKILLed owner could not remove.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import stat
import sys
from pathlib import Path

__all__ = [
    "disable_core_dumps", "environ_secret", "owner_alive", "process_start_time",
    "remove_stale_dirs", "scrub_environ", "write_owner",
]  # fmt: skip

OWNER_FILE = "owner"
_PR_SET_DUMPABLE = 4
_MAX_ENVIRON = 64 << 20  # bytes: a sanity bound on the environment block's size
_remembered: dict[str, str] = {}


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
    except OSError:
        return None


# -- the environment -----------------------------------------------------------------------------
def _entries_from_libc(prefix: bytes) -> list[tuple[int, int]]:
    """(address, length) of the ``NAME=value`` strings libc's ``environ`` points to."""
    libc = _libc()
    if libc is None:
        return []
    try:
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (ValueError, AttributeError):
        return []
    found: list[tuple[int, int]] = []
    if not environ:
        return found
    for i in range(1_000_000):
        address = environ[i]
        if not address:
            break
        text = ctypes.string_at(address)
        if text.startswith(prefix):
            found.append((int(address), len(text)))
    return found


def _environ_block() -> tuple[int, int] | None:
    """Bounds of this process's original environment block (``/proc/self/stat`` fields 50 and
    51, Linux 3.5+), or None."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # fields 50, 51 (the first after ')' is 3)
    except (OSError, IndexError, ValueError):
        return None
    if not start or end <= start or end - start > _MAX_ENVIRON:
        return None
    return start, end


def _entries_in_block(prefix: bytes) -> list[tuple[int, int]]:
    """(address, length) of the ``NAME=...`` entries of the original environment block."""
    bounds = _environ_block()
    if bounds is None:
        return []
    start, end = bounds
    block = ctypes.string_at(start, end - start)
    found = []
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            found.append((start + offset, len(entry)))
        offset += len(entry) + 1
    return found


def scrub_environ(name: str) -> str | None:
    """Remove ``name`` from the environment and erase its value from this process's memory
    (see the module docstring for why ``os.environ.pop`` is not enough): afterwards neither
    ``/proc/self/environ`` nor that of a process forked later shows it. Returns the value, or
    None if the variable was not set. Off Linux, only ``os.environ.pop``."""
    if not sys.platform.startswith("linux"):
        return os.environ.pop(name, None)
    prefix = name.encode() + b"="
    entries: list[tuple[int, int]] = []
    with contextlib.suppress(Exception):
        entries.extend(_entries_from_libc(prefix))  # before unsetenv drops the pointers
    value = os.environ.pop(name, None)  # os.environ and libc's environ (unsetenv)
    with contextlib.suppress(Exception):  # posix.environ: the interpreter's start-up copy
        del sys.modules["posix"].environ[prefix[:-1]]
    with contextlib.suppress(Exception):
        entries.extend(_entries_in_block(prefix))
    for address, length in dict(entries).items():
        with contextlib.suppress(Exception):
            ctypes.memset(address, 0, length)
    return value


def environ_secret(name: str) -> str | None:
    """:func:`scrub_environ` remembering the value: a later call in this process (a second
    architecture) gets it even though the environment no longer has it. A new value set in the
    environment meanwhile wins (and is scrubbed in turn)."""
    value = scrub_environ(name)
    if value:
        _remembered[name] = value
    return _remembered.get(name)


# -- core dumps ----------------------------------------------------------------------------------
def disable_core_dumps() -> bool:
    """No core file of this process (``RLIMIT_CORE`` 0, soft and hard) and, on Linux, not
    dumpable (``prctl(PR_SET_DUMPABLE, 0)``: no core even through a ``core_pattern`` pipe, no
    ptrace by the same user, ``/proc/<pid>/environ`` and ``mem`` owned by root). Both survive
    ``fork``. True if everything applied; never raises."""
    done = True
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        done = False
    if sys.platform.startswith("linux"):
        libc = _libc()
        try:
            if libc is None or libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                done = False
        except (AttributeError, OSError):
            done = False
    return done


# -- private directories of a process ------------------------------------------------------------
def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or
    None if unknown: with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def owner_alive(pid: int, start: int | None = None) -> bool:
    """True if process ``pid`` exists, is not a zombie and (when ``start`` is given and known)
    is the process that started then, not a later one with the same pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        pass
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return not Path("/proc/self/stat").exists()  # no procfs: trust kill(0)
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    return start is None or process_start_time(pid) in (start, None)


def write_owner(directory: str | os.PathLike[str], pid: int | None = None) -> Path:
    """Record in ``directory`` (file ``owner``: pid and start time) the process that owns it."""
    pid = os.getpid() if pid is None else pid
    start = process_start_time(pid)
    path = Path(directory) / OWNER_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{pid} {start if start is not None else ''}".rstrip() + "\n")
    return path


def _read_owner(directory: Path) -> tuple[int, int | None] | None:
    try:
        parts = (directory / OWNER_FILE).read_text().split()
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else None
    except (OSError, ValueError, IndexError):
        return None


def remove_stale_dirs(parent: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Remove the directories ``parent/<prefix>*`` of this user whose recorded owner process
    (see :func:`write_owner`) is dead; the paths removed.

    Kept: directories of another user, symbolic links, and directories without a readable
    ``owner`` file (being created right now, or written by an older version).
    """
    removed: list[Path] = []
    try:
        candidates = sorted(Path(parent).glob(f"{prefix}*"))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in candidates:
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        owner = _read_owner(path)
        if owner is None or owner_alive(*owner):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed
