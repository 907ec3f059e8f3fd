"""Ctrl-C stops a launcher cleanly: the terminal sends SIGINT to the whole process group (the
launcher and every agent); everything stops within 5 s, with one line and no traceback, and no
process or ipc file is left (issue 14)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line with {text!r} from the launcher")


@pytest.mark.parametrize(
    ("argv", "ready"),
    [
        (["examples/launcher.py"], "equity"),
        (
            ["-m", "osmarkets", "demo", "--bars", "3000", "--speed", "60"],
            "equity",
        ),  # a progress line: running
        (["examples/gui_example.py"], "name server"),  # the window, its bridge, the agents
    ],
)
def test_ctrl_c_stops_everything_within_5_s_without_a_traceback(argv, ready) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="osm", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1",
           "QT_QPA_PLATFORM": "offscreen"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_line(proc, ready)
        children = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()  # fmt: skip
        assert len(children) >= 5  # the launcher, the name server and the agents
        if "gui" in argv[0]:
            time.sleep(3)  # the window is up (its process started after the line)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - started
        # Qt's offscreen platform says this of every window: not ours
        err = "\n".join(line for line in err.splitlines() if "propagateSizeHints" not in line)
        assert elapsed < 5.0, elapsed
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "interrupted" in err

        def left() -> list[str]:
            found = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True,
                                   text=True)  # fmt: skip
            return found.stdout.split()

        while left() and time.monotonic() - started < 5.0:  # the window's own exit
            time.sleep(0.1)
        assert left() == []
        assert list((runtime / ".osbrain_ipc").glob("osm-*")) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)
