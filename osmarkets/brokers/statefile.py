"""A live broker's state file (the last transaction handled, the orders followed): written
whole and private (0600), through a temporary file and a rename, so a crash leaves the old
file or the new one, never half of one.

Where a Trader journals the broker's events, it writes the file itself, after the events the
state covers are in the journal (:class:`~osmarkets.agents.trader.TraderAgent`): a crash in
between makes the restarted broker report them again (the journal drops the copies), where
the other order would have lost them.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_state_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at ``path`` with ``text``, atomically and readable by its owner only."""
    target = Path(path)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)
