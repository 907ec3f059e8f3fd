"""Running a script's ``main``: what every example ends with, and what a launcher may copy.

Ctrl-C in a terminal raises ``KeyboardInterrupt`` wherever the script happens to be, and Python
answers with a traceback through it. An architecture already stops its agents on Ctrl-C; this
turns the interrupt into one line and the conventional exit status (130), for scripts with an
architecture or without one (a backtest, an optimisation).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def run_script(main: Callable[..., int | None], *args: Any) -> NoReturn:
    """Call ``main(*args)`` and exit with its return value (None: 0); on Ctrl-C print
    ``<script>: interrupted (Ctrl-C)`` on stderr and exit with status 130."""
    try:
        status = main(*args)
    except KeyboardInterrupt:
        name = os.path.basename(sys.argv[0]) or "osmarkets"
        print(f"{name}: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    raise SystemExit(status or 0)
