"""Where a deployment's log lines go, and how they are shown on the launcher's terminal.

A deployment with a Logger writes every agent's lines to a file by default, one file per run
in ``<state_dir>/logs/`` (``latest.log`` points at the newest), so that what happened is still
there after the run, after a crash and after a temporary state directory was removed: the
``logs`` subdirectory is the one part of a temporary state directory that is kept. Warnings and
errors are also echoed to the launcher's terminal, one line each, naming the agent; the full
text (a traceback) stays in the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

LOG_DIR = "logs"
LATEST = "latest.log"
#: the levels of a log line, least serious first (the Logger's topics)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# an agent's line: '[<utc time>] (<agent>): <text>' (osBrain's layout)
_LINE = re.compile(r"^\[[^\]]*?(\d\d:\d\d:\d\d)[^\]]*\] \(([^)]*)\): (.*)$", re.DOTALL)


def new_log_path(state_dir: str | os.PathLike[str]) -> Path:
    """A new file for this run's lines in ``state_dir``'s ``logs`` directory (0700), named by
    its UTC start time and the owner's pid; ``latest.log`` is pointed at it."""
    logs = Path(state_dir) / LOG_DIR
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = logs / f"{stamp}-{os.getpid()}.log"
    path.touch(mode=0o600)
    latest = logs / LATEST
    with contextlib.suppress(OSError):  # a filesystem without symlinks: no 'latest'
        temporary = logs / f".{LATEST}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(path.name)
        temporary.replace(latest)
    return path


def remove_keeping_logs(path: str | os.PathLike[str]) -> None:
    """Remove directory ``path``, except its ``logs`` subdirectory if it holds any file (what
    the user reads after the run)."""
    root = Path(path)
    logs = root / LOG_DIR
    if not logs.is_dir() or not any(p.is_file() for p in logs.iterdir()):
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir() if root.is_dir() else ():
        if child == logs:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def console_line(level: str, line: str, log_path: str | os.PathLike[str] | None) -> str:
    """One terminal line for a log line: ``HH:MM:SS LEVEL agent: text``. A text of several lines
    (a traceback) shows its first and last lines and where the rest is."""
    match = _LINE.match(line)
    when, agent, text = match.groups() if match else ("", "", line)
    lines = [part for part in text.strip().splitlines() if part.strip()] or [""]
    shown = lines[0].strip()
    if len(lines) > 1:
        shown = f"{shown.rstrip(':')}: {lines[-1].strip()}"
        if log_path is not None:
            shown += f" (traceback in {log_path})"
    where = f"{agent}: " if agent else ""
    return f"{when} {level} {where}{shown}".strip()


class ConsoleBudget:
    """At most ``burst`` lines at once and ``rate`` per second after that: a flood of warnings
    must not flood the terminal. Lines over budget are counted, and said once it returns."""

    def __init__(self, burst: int = 20, rate: float = 2.0) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.suppressed = 0

    def take(self) -> tuple[bool, int]:
        """Whether a line may be shown now, and how many were suppressed before it (to say)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return False, 0
        self.tokens -= 1.0
        suppressed, self.suppressed = self.suppressed, 0
        return True, suppressed
