"""A deployment that talks (issue 14): every agent's lines in a log file by default (under the
state directory, its path printed at start), warnings and errors on the launcher's terminal one
line each with the agent's name, and a dead or unreachable agent reported in one line naming it
(the traceback in the log file). Launchers run as real subprocesses, as a user runs them."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_for

from osmarkets import Brain
from osmarkets.agents.base import OsmAgent
from osmarkets.agents.proxy import AgentProxy, AgentUnreachableError
from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.logfiles import ConsoleBudget, console_line, remove_keeping_logs

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


class Chatty(Brain):
    """Logs a warning on bar 3, raises on bar 5 and logs ``flood`` warnings on bar 6."""

    flood = 0
    seen = 0

    def on_new_bar(self, series):
        self.seen += 1
        n = self.seen
        self.log_info(f"bar {n}")
        if n == 3:
            self.log_warning("three bars seen")
        if n == 5:
            raise ValueError("bad bar five")
        if n == 6:
            for i in range(self.flood):
                self.log_warning(f"flood {i}")


def _launch(tmp_path: Path, body: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run a launcher script (``body`` after the common imports) in its own process group."""
    script = tmp_path / "launcher.py"
    script.write_text(
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_arch_talks import Chatty\n"
        "from osmarkets.architecture import Architecture, SimulatedArchitecture\n"
        + textwrap.dedent(body)
    )
    # short: an ipc socket's path must fit in 107 bytes, and pytest's tmp_path is long
    runtime = Path(tempfile.mkdtemp(prefix="osm-t-", dir="/tmp"))
    temp = tmp_path / "temp"
    temp.mkdir(exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "TMPDIR": str(temp),
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert left.stdout.split() == [], "processes left behind"
    assert list((runtime / ".osbrain_ipc").glob("osm-*")) == [], "ipc files left behind"
    shutil.rmtree(runtime)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _log_path(err: str) -> Path:
    lines = [line for line in err.splitlines() if " logs to " in line]
    assert len(lines) == 1, err
    return Path(lines[0].split(" logs to ", 1)[1].strip())


# -- the log file ---------------------------------------------------------------------------
def test_logs_go_to_a_file_under_the_state_directory_by_default(tmp_path, capfd) -> None:
    state = tmp_path / "state"
    with Architecture(logging=True, state_dir=state) as system:
        assert system.log_path is not None and system.log_path.parent == state / "logs"
        assert f"logs to {system.log_path}" in capfd.readouterr().err  # printed at start
        assert stat.S_IMODE(system.log_path.stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
        assert (state / "logs" / "latest.log").resolve() == system.log_path.resolve()
        system.add_brain("chatty", base=Chatty)
        system["chatty"].log_warning("hello from the owner's test")
        wait_for(lambda: "hello from the owner" in system.log_path.read_text(), 10, "the line")
    text = system.log_path.read_text()
    assert "WARNING" in text and "(chatty): hello from the owner's test" in text
    # a second run on the same state directory writes a new file; latest.log follows it
    with Architecture(logging=True, state_dir=state) as again:
        assert again.log_path != system.log_path
        assert (state / "logs" / "latest.log").resolve() == again.log_path.resolve()
    assert system.log_path.exists()


def test_a_temporary_state_directory_keeps_only_the_logs() -> None:
    system = SimulatedArchitecture(bars=30, logging=True, log_console=None)
    try:
        system.add_brain("chatty", base=Chatty)
        system["chatty"].subscribe(("EUR_USD", 1, "Minutes"), 10)
        system.run(timeout=60)
        path = system.log_path
        state = system.state_dir
        assert path is not None and path.parent == state / "logs"
    finally:
        system.shutdown()
    assert sorted(p.name for p in state.iterdir()) == ["logs"]  # journal and the rest gone
    assert "(chatty): bar 30" in path.read_text()
    assert "bad bar five" in path.read_text()  # the traceback is in the file
    remove_keeping_logs(state)  # idempotent; the test's own cleanup
    (path.parent / "latest.log").unlink()
    path.unlink()
    remove_keeping_logs(state)
    assert not state.exists()  # no log file left: the whole directory goes


def test_an_explicit_log_path_and_a_bad_console_level(tmp_path) -> None:
    target = tmp_path / "mine.log"
    with Architecture(logging=True, log_path=target, log_console=None) as system:
        assert system.log_path == target
    assert target.exists()
    with pytest.raises(ValueError, match="log_console: expected one of"):
        Architecture(logging=True, log_console="LOUD")


# -- the terminal ---------------------------------------------------------------------------
LAUNCH_CHATTY = """
with SimulatedArchitecture(bars=12, logging=True%s) as system:
    system.add_brain('chatty', base=Chatty, flood=%d)
    system['chatty'].subscribe(('EUR_USD', 1, 'Minutes'), 10)
    system.run(timeout=60)
print('done', flush=True)
"""


def test_warnings_and_errors_reach_the_terminal_one_line_each(tmp_path) -> None:
    done = _launch(tmp_path, LAUNCH_CHATTY % ("", 0))
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    log = _log_path(done.stderr)
    lines = [line for line in done.stderr.splitlines() if " logs to " not in line]
    assert "Traceback" not in done.stderr
    assert len(lines) == 2, done.stderr
    assert "WARNING chatty: three bars seen" in lines[0]
    assert "ERROR chatty: on_new_bar raised: ValueError: bad bar five" in lines[1]
    assert f"(traceback in {log})" in lines[1]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "bar 12" in text
    assert "bar 12" not in done.stderr  # info lines stay in the file


def test_the_terminal_can_be_silent(tmp_path) -> None:
    done = _launch(tmp_path, LAUNCH_CHATTY % (", log_console=None", 0))
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_flood_of_warnings_does_not_flood_the_terminal(tmp_path) -> None:
    done = _launch(tmp_path, LAUNCH_CHATTY % ("", 500))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) <= 30, len(lines)
    assert "flood 499" in _log_path(done.stderr).read_text()  # all in the file


# -- a dead or unreachable agent ------------------------------------------------------------
def test_a_dead_agent_is_one_line_naming_it_with_the_traceback_in_the_log(tmp_path) -> None:
    done = _launch(tmp_path, """
        system = Architecture(logging=True)
        system.add_brain('chatty', base=Chatty)
        os.kill(system._agents['trader'].process.pid, signal.SIGKILL)
        time.sleep(1.5)
        system['chatty']  # any call of the architecture after the death
    """)  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    said = [line for line in done.stderr.splitlines() if "logs to" not in line]
    final = said[-1]
    assert final.startswith("osmarkets: the trader agent 'trader' died"), done.stderr
    assert f"traceback in {_log_path(done.stderr)}" in final
    assert all("trader" in line for line in said)  # the Overmind's line names it too
    assert "AgentDiedError" in _log_path(done.stderr).read_text()


def test_a_call_to_a_dead_agent_through_its_proxy_is_one_line(tmp_path) -> None:
    done = _launch(tmp_path, """
        system = Architecture(logging=True)
        system.add_brain('chatty', base=Chatty)
        proxy = system['chatty']
        logger = system['logger']
        os.kill(system._agents['logger'].process.pid, signal.SIGKILL)
        time.sleep(0.5)
        logger.recent()
    """)  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout  # no Pyro dump on stdout either
    final = done.stderr.splitlines()[-1]
    assert final.startswith("osmarkets: agent 'logger' is unreachable: recent() failed"), final


def _state(pid: int) -> str:
    """The process state letter of ``pid`` (``T``: stopped)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()[0]


def test_an_agent_that_does_not_answer_raises_naming_it() -> None:
    with Architecture() as system:
        system.add_brain("chatty", base=Chatty)
        pid = system._agents["chatty"].process.pid
        proxy = AgentProxy("chatty", system.nsaddr, call_timeout=1.0)
        assert proxy.get_attr("osm_pid") == pid
        os.kill(pid, signal.SIGSTOP)
        try:  # the stop is delivered asynchronously: wait until the process is stopped
            wait_for(lambda: _state(pid) in ("T", "t"), 5, "the agent stopped")
            started = time.monotonic()
            with pytest.raises(AgentUnreachableError, match="'chatty' did not answer") as info:
                proxy.get_attr("osm_pid")
            assert info.value.agent == "chatty" and time.monotonic() - started < 10
        finally:
            os.kill(pid, signal.SIGCONT)
            proxy._pyroRelease()


# -- the end of a launcher ------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["falls off its end", "raises"])
def test_a_launcher_without_shutdown_exits_and_leaves_nothing(tmp_path, ending) -> None:
    """multiprocessing joins every child at exit: the architecture must stop its agents
    before that (it hung forever)."""
    last = "raise RuntimeError('the launcher failed')" if ending == "raises" else "print('end')"
    started = time.monotonic()
    done = _launch(tmp_path, f"""
        system = Architecture(logging=True)
        system.add_brain('chatty', base=Chatty)
        {last}
    """, timeout=60)  # fmt: skip
    assert time.monotonic() - started < 30
    if ending == "raises":
        assert done.returncode == 1 and "RuntimeError: the launcher failed" in done.stderr
    else:
        assert done.returncode == 0 and done.stdout.strip() == "end"
    assert sorted(p.name for p in (tmp_path / "temp").glob("osm-state-*/*")) == ["logs"]


# -- the pure parts -------------------------------------------------------------------------
def test_console_line() -> None:
    line = "[2026-12-03 10:20:42.800801] (example): on_new_bar raised:\nTraceback ...\n  x\nE: y\n"
    assert console_line("ERROR", line, "/l.log") == (
        "10:20:42 ERROR example: on_new_bar raised: E: y (traceback in /l.log)"
    )
    assert console_line("WARNING", "[2026-12-03 01:02:03] (t): a", None) == "01:02:03 WARNING t: a"
    assert console_line("WARNING", "no layout", None) == "WARNING no layout"


def test_console_budget_counts_what_it_holds_back(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    budget = ConsoleBudget(burst=3, rate=1.0)
    assert [budget.take() for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    clock[0] = 1.0
    assert budget.take() == (True, 2)  # the two held back are said with the next line
    assert budget.take() == (False, 0)


class _Hangs(OsmAgent):
    def osm_setup(self) -> None:
        time.sleep(60)  # never says it started


class _Dies(OsmAgent):
    def osm_setup(self) -> None:
        os._exit(3)


@pytest.mark.parametrize(("base", "message"), [(_Hangs, "did not start within 1 s"),
                                               (_Dies, "died while starting")])  # fmt: skip
def test_an_agent_that_hangs_or_dies_while_starting_raises(base, message) -> None:
    """osBrain's start waited for the child's word without end (a hung launcher)."""
    from osmarkets.agents.base import OsmAgentProcess, start_nameserver

    server = start_nameserver("127.0.0.1")
    try:
        process = OsmAgentProcess(
            name="starter", nsaddr=server.addr, addr="127.0.0.1", base=base, transport="tcp",
            attributes={"osm_cfg": {}},
        )  # fmt: skip
        process.launch()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=message):
            process.wait_started(timeout=1.0)
        assert time.monotonic() - started < 10 and not process.is_alive()
    finally:
        server.kill()
        server.join(5)
