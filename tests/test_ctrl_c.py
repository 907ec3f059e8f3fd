"""Ctrl-C stops every example, the demo and the GUI cleanly (issue 14): the terminal sends SIGINT
to the whole process group (the script and every agent); everything stops within 5 s, stderr
has one "interrupted" line and no traceback, and no process, ipc file or temporary state is
left (a run's log file is kept: it is what the user reads afterwards)."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from osmarkets.brokers.oanda import OandaSandbox

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ctrl-c-test-token-0123456789abcdef"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs pgrep -g"),
]

# name: (arguments after the interpreter, a stdout line that says the work is under way)
CASES = {
    "launcher": (["examples/launcher.py"], "equity"),
    "demo": (["-m", "osmarkets", "demo", "--bars", "3000", "--speed", "60"], "equity"),
    "gui_example": (["examples/gui_example.py"], "name server"),
    "backtest_example": (["examples/backtest_example.py"], "generated EUR_USD"),
    "any_market": (["examples/any_market.py"], "(inferred)"),
    "security_example": (["examples/security_example.py"], "key file"),
    "informer_example": (["examples/informer_example.py"], "operator: pause"),
    "optimize_example": (["examples/optimize_example.py", "{tmp}/out"], "saved to"),
    "optimize_example_agents": (
        ["examples/optimize_example.py", "{tmp}/out", "--workers", "2"],
        "saved to",
    ),  # fmt: skip
    "oanda_example": (["examples/oanda_example.py", "--state-dir", "{tmp}/state"], "bars "),
    "ccxt_example": (["examples/ccxt_example.py", "--state-dir", "{tmp}/state"], "bars "),
    "ccxt_demo": (
        ["-m", "osmarkets", "demo", "--broker", "ccxt-sandbox", "--bars", "3000", "--speed", "60"],
        "equity",
    ),
}
# stderr lines that are not about the interrupt: where the logs are, progress bars, and what
# Qt's offscreen platform says of every window
BENIGN = ("logs to", "cfg/s", "propagateSizeHints", "operator: ")  # (and the operator's controls)


def _group(pid: int) -> list[str]:
    found = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True)
    return found.stdout.split()


def _reader(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")  # end of the stream

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if text in line:
            return
        if not line:
            raise AssertionError(f"the script ended before printing {text!r}")
    raise AssertionError(f"no line with {text!r} within {timeout} s")


@pytest.mark.parametrize("case", list(CASES))
def test_ctrl_c_stops_everything_within_5_s_without_a_traceback(case: str) -> None:
    argv, ready = CASES[case]
    tmp = Path(tempfile.mkdtemp(prefix="osm-ctrl-c-", dir="/tmp"))
    runtime = tmp / "runtime"
    temp = tmp / "temp"  # the script's temporary directory: its state directories go there
    runtime.mkdir()
    temp.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PYTHONUNBUFFERED": "1",
           "QT_QPA_PLATFORM": "offscreen", "TMPDIR": str(temp)}  # fmt: skip
    sandbox = None
    if case == "oanda_example":
        sandbox = OandaSandbox(token=TOKEN, instruments=["EUR_USD"], seed=3, heartbeat=0.5,
                               tick_interval=0.05)  # fmt: skip
        sandbox.start()
        env.update(
            OANDA_ACCESS_TOKEN=TOKEN, OANDA_ACCOUNT_ID=sandbox.account_id,
            OANDA_REST_URL=sandbox.rest_url, OANDA_STREAM_URL=sandbox.stream_url,
        )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, *(arg.format(tmp=tmp) for arg in argv)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        _wait_for_line(_reader(proc.stdout), ready)
        if case == "gui_example":
            time.sleep(3)  # the window is up (its process started after the line)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert elapsed < 5.0, elapsed
        assert "Traceback" not in err, err
        lines = [
            line
            for line in err.splitlines()
            if line.strip() and not any(b in line for b in BENIGN)
        ]
        # an in-process run may finish in the moment the signal travels: then no interrupt
        if proc.returncode == 0 and case in ("backtest_example", "any_market"):
            assert lines == [], err
        else:
            assert proc.returncode == 130, (proc.returncode, err)
            assert len(lines) == 1 and "interrupted" in lines[0], err

        while _group(proc.pid) and time.monotonic() - started < 5.0:  # the window's own exit
            time.sleep(0.1)
        assert _group(proc.pid) == []
        assert list((runtime / ".osbrain_ipc").glob("osm-*")) == []
        for state in temp.glob("osm-state-*"):  # only a run's logs are kept
            assert [p.name for p in state.iterdir()] == ["logs"], list(state.iterdir())
        assert list(temp.glob("osm-oanda-*")) == []  # the token's private directory
        assert list(temp.glob("osm-ccxt-*")) == []  # the exchange keys' private directory
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if sandbox is not None:
            sandbox.close()
        shutil.rmtree(tmp, ignore_errors=True)


# Ctrl-C while the architecture starts its processes: the signal reaches the owner (and the
# children) in the middle of a fork, where it used to be dropped, to kill a child before its
# handler was set (the owner then waited for it forever) or to leave a child nobody could name.
EARLY = """
import os, signal, sys
from osmarkets import run_script
from osmarkets.agents import base
from osmarkets.architecture import SimulatedArchitecture

starts = 0
step = sys.argv[2]  # 'launch' (the fork) or 'wait_started' (the wait for the child's word)
original = getattr(base.OsmAgentProcess, step)

def patched(self, *args):
    global starts
    starts += 1
    if starts == int(sys.argv[1]):
        os.killpg(0, signal.SIGINT)  # Ctrl-C: the whole process group, as a terminal does
    return original(self, *args)

setattr(base.OsmAgentProcess, step, patched)

def main():
    with SimulatedArchitecture(bars=50, logging=True) as system:
        system.add_brain('idle', base=__import__('osmarkets').Brain)
        system.run(timeout=60)
    print('finished without the interrupt')

run_script(main)
"""


@pytest.mark.parametrize("step", ["launch", "wait_started"])
@pytest.mark.parametrize("which", [1, 2, 3, 4])  # the Logger, Router, Trader, the Brain
def test_ctrl_c_while_the_agents_start(tmp_path, which, step) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="osm-early-", dir="/tmp"))
    script = tmp_path / "early.py"
    script.write_text(EARLY)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(which), step], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15
        lines = [line for line in err.splitlines() if line.strip() and "logs to" not in line]
        assert proc.returncode == 130 and "Traceback" not in err, err
        assert lines == ["early.py: interrupted (Ctrl-C)"], err
        assert "finished" not in out
        deadline = time.monotonic() + 5
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group(proc.pid) == []
        assert list((runtime / ".osbrain_ipc").glob("osm-*")) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)


def test_a_half_built_pyro_proxy_is_recognised_and_nothing_else() -> None:
    """Ctrl-C inside a Pyro4 proxy's __init__ leaves a proxy whose __del__ raises
    AttributeError at collection; after Ctrl-C the launcher says nothing of it (seen once in
    CI as a traceback after the one line). Any other unraisable error still shows."""
    import Pyro4.core

    from osmarkets.architecture.base import _is_half_built_proxy

    seen: list[bool] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(_is_half_built_proxy(unraisable))

    class Other:
        def __del__(self) -> None:
            raise AttributeError("not a proxy")

    try:
        proxy = Pyro4.core.Proxy.__new__(Pyro4.core.Proxy)  # __init__ cut short
        proxy._pyroConnection = None
        del proxy
        other = Other()
        del other
    finally:
        sys.unraisablehook = previous
    assert seen == [True, False]
