"""Token hygiene: the OANDA access token is in no process's environment, no core dump, no
command line, and no directory its SIGKILLed owner left behind.

Real processes and files: owners run as subprocesses with the token in their real
environment (the block ``/proc/<pid>/environ`` shows and ``fork`` copies), against the bundled
sandbox on 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from oanda_arch_support import TOKEN, fast_clock, pid_alive, proc_environ, wait_for

from osmarkets import secrecy
from osmarkets.architecture import OandaArchitecture
from osmarkets.brokers.oanda import OandaSandbox
from osmarkets.brokers.oanda.trading import TOKEN_ENV

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
]
FAST_CLIENT = {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)}
REPO = Path(__file__).resolve().parents[2]
PR_GET_DUMPABLE = 3

# An owner process: an OandaArchitecture (Logger, Router, Trader, OANDA Feeder, a Brain) on
# the sandbox, its token from OANDA_ACCESS_TOKEN; prints what the test needs as one JSON line,
# then runs until its stdin closes.
OWNER = r"""
import json, os, sys
from osmarkets import Brain
from osmarkets.architecture import OandaArchitecture

class Idle(Brain):
    pass

cfg = json.loads(sys.argv[1])
cfg["client_options"]["timeout"] = tuple(cfg["client_options"]["timeout"])
system = OandaArchitecture(
    account_id=cfg["account_id"], rest_url=cfg["rest_url"], stream_url=cfg["stream_url"],
    client_options=cfg["client_options"], heartbeat=0.2, poll_interval=0.2,
)
system.add_brain("idle", base=Idle)
system.stream(["EUR_USD"])
agents = {name: system._agents[name].process.pid for name in system.agents}
print(json.dumps({
    "owner": os.getpid(), "pids": system.pids(), "agents": agents,
    "private": os.path.dirname(system._settings["token_file"]), "ipc_dir": str(system.ipc_dir),
    "env_has_token": "OANDA_ACCESS_TOKEN" in os.environ,
}), flush=True)
sys.stdin.readline()
system.shutdown()
"""


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD", "USD_JPY"], seed=5, heartbeat=0.5,
        tick_interval=0.05, clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """This process's temporary directory (where the token directories go), the test's own."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setattr(secrecy, "_remembered", {})  # no token remembered across tests
    return where


def _line(stream, timeout: float) -> str:
    """One line of ``stream`` within ``timeout`` seconds."""
    box: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: box.put(stream.readline()), daemon=True).start()
    try:
        return box.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no line within {timeout} s") from None


@pytest.fixture
def owner(sandbox, tmp_path):
    """Start an owner subprocess (see OWNER) with the token in its real environment; yields
    (process, info) and makes sure nothing it started survives the test."""
    started = []

    def start():
        tmpdir = tmp_path / "owner-tmp"
        tmpdir.mkdir(exist_ok=True)
        env = dict(os.environ, OANDA_ACCESS_TOKEN=TOKEN, TMPDIR=str(tmpdir))
        cfg = {"account_id": sandbox.account_id, "rest_url": sandbox.rest_url,
               "stream_url": sandbox.stream_url, "client_options": FAST_CLIENT}  # fmt: skip
        err = open(tmp_path / "owner.err", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [sys.executable, "-c", OWNER, json.dumps(cfg)], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
        started.append((proc, err))
        line = _line(proc.stdout, 60)
        if not line:
            proc.wait(10)
            raise AssertionError((tmp_path / "owner.err").read_text()[-3000:])
        return proc, json.loads(line)

    yield start
    for proc, err in started:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.close()


def _core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return " ".join(line.split()[4:6])
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


def _dumpable() -> int:
    return ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)


# -- (a) no environment shows the token ----------------------------------------------------------
def test_token_from_environment_is_in_no_process_environ(owner) -> None:
    proc, info = owner()
    processes = [info["owner"], *info["pids"]]
    assert len(processes) == 7  # owner, name server, Logger, Router, Trader, Brain, Feeder
    assert not info["env_has_token"]
    for pid in processes:
        environ = proc_environ(pid)
        if os.geteuid() == 0:  # else a non-dumpable process's environ is unreadable: b""
            assert environ, f"/proc/{pid}/environ is empty"
        assert TOKEN.encode() not in environ, f"the token is in /proc/{pid}/environ"
        assert f"{TOKEN_ENV}=".encode() not in environ
    # the token did reach the agents that need it, through the file: the Feeder streams
    assert Path(info["private"], "oanda-token").read_text() == TOKEN
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert not Path(info["private"]).exists()


def test_token_from_monkeypatched_environment(sandbox, private_tmp, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with OandaArchitecture(
        account_id=sandbox.account_id, rest_url=sandbox.rest_url, stream_url=sandbox.stream_url,
        client_options=FAST_CLIENT, heartbeat=0.2, poll_interval=0.2,
    ) as system:  # fmt: skip
        system.stream(["EUR_USD"])
        assert TOKEN_ENV not in os.environ
        for pid in [*system.pids(), os.getpid()]:
            assert TOKEN.encode() not in proc_environ(pid), f"the token is in {pid}'s environ"
        child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
        assert TOKEN not in child  # a program this process runs does not inherit it
        # (b) core dumps: off in the owner and in every agent
        assert _dumpable() == 0
        for pid in [*system.pids(), os.getpid()]:
            assert _core_limit(pid) == "0 0", pid
        trader = system._agents["trader"].process.pid
        assert _core_limit(trader) == "0 0"
        # a second architecture of this process still finds the token
        with OandaArchitecture(
            account_id=sandbox.account_id, rest_url=sandbox.rest_url, logging=False,
            stream_url=sandbox.stream_url, client_options=FAST_CLIENT, supervise=False,
        ) as second:  # fmt: skip
            assert second["trader"].osm_stats()["pid"]


def test_scrub_environ_erases_the_original_block_for_forked_children() -> None:
    """The helper alone, in a process whose exec environment holds the variable."""
    script = r"""
import json, os
from osmarkets.secrecy import scrub_environ
def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return fh.read()
before = environ_of("self")
value = scrub_environ("OSM_SECRET")
again = scrub_environ("OSM_SECRET")
os.environ["OSM_SECRET"] = "heap-value-1234"  # set later: lives on the heap
heap = scrub_environ("OSM_SECRET")
child = os.fork()
if child == 0:
    os._exit(0 if b"secret-value-5678" not in environ_of("self") else 1)
_, status = os.waitpid(child, 0)
print(json.dumps({
    "before": b"secret-value-5678" in before, "value": value, "again": again, "heap": heap,
    "after": b"secret-value-5678" in environ_of("self"), "child_clean": status == 0,
    "env": "OSM_SECRET" in os.environ, "other": os.environ.get("OSM_SECRET_NOT"),
    "other_in_block": b"OSM_SECRET_NOT=keep-me" in environ_of("self"),
}))
"""
    env = dict(os.environ, OSM_SECRET="secret-value-5678", OSM_SECRET_NOT="keep-me")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, text=True,
                         capture_output=True, timeout=60, check=True).stdout  # fmt: skip
    result = json.loads(out)
    assert result == {
        "before": True, "value": "secret-value-5678", "again": None, "heap": "heap-value-1234",
        "after": False, "child_clean": True, "env": False, "other": "keep-me",
        "other_in_block": True,
    }  # fmt: skip


# -- (b) core dumps ------------------------------------------------------------------------------
def test_trader_and_owner_do_not_dump_core(owner) -> None:
    proc, info = owner()
    assert _core_limit(info["agents"]["trader"]) == "0 0"
    assert _core_limit(info["agents"]["feeder"]) == "0 0"
    assert _core_limit(info["owner"]) == "0 0"
    if os.geteuid() != 0:  # a non-dumpable process's /proc files belong to root
        assert Path(f"/proc/{info['agents']['trader']}/environ").stat().st_uid == 0


def test_reading_the_token_file_disables_core_dumps(tmp_path) -> None:
    """An agent started without its owner's limits (spawn) disables them itself."""
    path = tmp_path / "oanda-token"
    path.write_text(TOKEN)
    script = r"""
import ctypes, json, resource, sys
from osmarkets.brokers.oanda.trading import read_token
prctl = ctypes.CDLL(None).prctl
soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # cores on, as far as allowed
before = [prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE)]
token = read_token({"token_file": sys.argv[1]})
after = [prctl(3, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE)]
print(json.dumps({"before": before, "after": after, "token": token == sys.argv[2]}))
"""
    run = subprocess.run(  # a fresh exec: dumpable again (the core limit is inherited)
        [sys.executable, "-c", script, str(path), TOKEN],
        cwd=REPO, text=True, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    result = json.loads(run.stdout)
    assert result["before"][0] == 1 and result["token"]
    assert result["after"] == [0, [0, 0]]


# -- (c) the sandbox's token from a file ---------------------------------------------------------
def _get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_sandbox_token_file(tmp_path) -> None:
    token_file = tmp_path / "sandbox-token"
    token_file.write_text(TOKEN + "\nsecond line ignored\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "osmarkets", "sandbox", "--port", "0", "--token-file",
         str(token_file), "--heartbeat", "0.5"],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        lines = []
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = _line(proc.stdout, 30)
            assert line, proc.stderr.read()
            lines.append(line)
        output = "".join(lines)
        assert TOKEN not in output
        rest_url = next(ln.split("=", 1)[1].strip() for ln in lines if "rest_url" in ln)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert str(token_file).encode() in cmdline and TOKEN.encode() not in cmdline
        if shutil.which("ps"):
            ps = subprocess.run(
                ["ps", "-ww", "-eo", "args"], capture_output=True, text=True
            ).stdout
            assert str(token_file) in ps and TOKEN not in ps
        assert _get(f"{rest_url}/v3/accounts", TOKEN) == 200
        assert _get(f"{rest_url}/v3/accounts", None) == 401
        assert _get(f"{rest_url}/v3/accounts", TOKEN + "x") == 401
        assert _get(f"{rest_url}/v3/accounts", "second line ignored") == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("case", ["missing", "empty", "directory", "both"])
def test_sandbox_token_file_errors(tmp_path, case) -> None:
    path = tmp_path / "token"
    argv = ["--token-file", str(path)]
    if case == "empty":
        path.write_text("\n  \n")
    elif case == "directory":
        path.mkdir()
    elif case == "both":
        path.write_text(TOKEN)
        argv += ["--token", TOKEN]
    run = subprocess.run(
        [sys.executable, "-m", "osmarkets", "sandbox", "--port", "0", *argv],
        cwd=REPO, text=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    err = run.stderr.strip()
    if case == "both":  # argparse's own usage message
        assert "not allowed with argument" in err
        return
    assert len(err.splitlines()) == 1, err
    assert err.startswith("osmarkets sandbox: --token-file:") and str(path) in err
    reason = {"missing": "No such file", "empty": "empty", "directory": "Is a directory"}[case]
    assert reason in err
    assert run.stdout == ""


def test_sandbox_token_help_warns_about_ps() -> None:
    run = subprocess.run([sys.executable, "-m", "osmarkets", "sandbox", "--help"], cwd=REPO,
                         text=True, capture_output=True, timeout=60, check=True)  # fmt: skip
    text = " ".join(run.stdout.split())
    assert "--token-file PATH" in text and "visible to every user in `ps`" in text
    assert "prefer --token-file" in text


# -- (d) a SIGKILLed owner's token directory ----------------------------------------------------
def test_sigkilled_owner_token_dir_is_removed(owner) -> None:
    proc, info = owner()
    private, ipc_dir = Path(info["private"]), Path(info["ipc_dir"])
    assert (private / "oanda-token").exists()
    assert (private / "owner").read_text().split()[0] == str(info["owner"])
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not private.exists(), 30, "the name server to remove the token directory")
    wait_for(lambda: not [p for p in info["pids"] if pid_alive(p)], 30, "the agents to exit")
    wait_for(lambda: not ipc_dir.exists(), 10, "the ipc directory to go")


# -- (e) stale directories removed by the next start ---------------------------------------------
def _dead_owner_dir(parent: Path, name: str) -> Path:
    """A token directory whose owner (a real process, now dead and reaped) is recorded."""
    directory = parent / name
    directory.mkdir(mode=0o700)
    (directory / "oanda-token").write_text(TOKEN)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        secrecy.write_owner(directory, child.pid)  # with its start time
    finally:
        child.stdin.close()
        child.wait(10)
    assert not pid_alive(child.pid)
    return directory


def test_remove_stale_dirs(tmp_path) -> None:
    parent = tmp_path / "tmp"
    parent.mkdir()
    dead = _dead_owner_dir(parent, "osm-oanda-dead")
    alive = parent / "osm-oanda-alive"
    alive.mkdir()
    secrecy.write_owner(alive)  # this process, with its start time
    alive_pid_only = parent / "osm-oanda-pidonly"
    alive_pid_only.mkdir()
    (alive_pid_only / "owner").write_text(f"{os.getpid()}\n")
    reused = parent / "osm-oanda-reused"  # this pid, but another process's start time
    reused.mkdir()
    (reused / "owner").write_text(f"{os.getpid()} {secrecy.process_start_time(os.getpid()) - 1}")
    unknown = parent / "osm-oanda-unknown"  # no owner file: being created, or an old version
    unknown.mkdir()
    garbled = parent / "osm-oanda-garbled"
    garbled.mkdir()
    (garbled / "owner").write_text("not a pid")
    other_prefix = _dead_owner_dir(parent, "osm-other-dead")
    elsewhere = _dead_owner_dir(tmp_path, "osm-oanda-elsewhere")
    link = parent / "osm-oanda-link"
    link.symlink_to(elsewhere)
    plain_file = parent / "osm-oanda-file"
    plain_file.write_text("")
    foreign = None
    if os.geteuid() == 0:
        foreign = _dead_owner_dir(parent, "osm-oanda-foreign")
        os.chown(foreign, 65534, 65534)

    removed = secrecy.remove_stale_dirs(parent, "osm-oanda-")

    assert sorted(removed) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    for kept in (alive, alive_pid_only, unknown, garbled, other_prefix, elsewhere, link,
                 plain_file, foreign):  # fmt: skip
        assert kept is None or kept.exists() or kept.is_symlink(), kept
    assert secrecy.remove_stale_dirs(parent, "osm-oanda-") == []
    assert secrecy.remove_stale_dirs(tmp_path / "nowhere", "osm-oanda-") == []


def test_owner_alive() -> None:
    me = os.getpid()
    assert secrecy.owner_alive(me) and secrecy.owner_alive(me, secrecy.process_start_time(me))
    assert not secrecy.owner_alive(me, secrecy.process_start_time(me) + 1)
    assert not secrecy.owner_alive(0) and not secrecy.owner_alive(-1)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().split(")")[-1].split()[0]
             == "Z", what="a zombie")  # fmt: skip
    assert not secrecy.owner_alive(zombie.pid)
    zombie.wait()
    assert not secrecy.owner_alive(zombie.pid)


def test_next_start_removes_a_dead_owners_dir(sandbox, private_tmp) -> None:
    stale = _dead_owner_dir(private_tmp, "osm-oanda-stale1")
    live_owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE)  # fmt: skip
    try:
        live = private_tmp / "osm-oanda-live1"
        live.mkdir(mode=0o700)
        (live / "oanda-token").write_text(TOKEN)
        secrecy.write_owner(live, live_owner.pid)
        with OandaArchitecture(
            account_id=sandbox.account_id, rest_url=sandbox.rest_url, access_token=TOKEN,
            stream_url=sandbox.stream_url, client_options=FAST_CLIENT, logging=False,
            supervise=False,
        ) as system:  # fmt: skip
            mine = Path(system._settings["token_file"]).parent
            assert mine.parent == private_tmp
            assert (mine / "owner").read_text().split() == [
                str(os.getpid()),
                str(secrecy.process_start_time(os.getpid())),
            ]
            assert not stale.exists()
            assert (live / "oanda-token").read_text() == TOKEN
        assert not mine.exists()
        assert live.exists()
    finally:
        live_owner.stdin.close()
        live_owner.wait(10)
