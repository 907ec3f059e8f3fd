"""tcp deployments: CURVE on every link, and what another local user can reach.

A peer with the wrong CURVE key is refused and counted while the deployment keeps trading; a
peer without CURVE gets nothing through. As the user ``nobody`` (CI runs as root), a Pyro call to
the Trader and a message to each tcp socket are refused, and the ipc directory is closed to it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import zmq
from arch_brains import Recorder
from conftest import wait_for

from osmarkets.agents.auth import DeploymentKeys, curve_client
from osmarkets.brokers.simulated import SimulatedBroker

pytestmark = pytest.mark.timeout(180)
M1 = ("EUR_USD", 1, "Minutes")


class _WritesFile:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _tcp_system(architectures: Any) -> Any:
    system = architectures(
        transport="tcp", broker_factory=lambda: SimulatedBroker(100_000.0), heartbeat=0.2
    )
    system.add_brain("rec", base=Recorder, buy_on=5)
    system["rec"].subscribe(M1, 20)
    system.stream(["EUR_USD"], seed=4, speed=600)
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 2, what="bars over tcp")
    return system


def _tcp_addresses(system: Any) -> dict[str, str]:
    """Every tcp socket of the deployment a stranger could send to."""
    out = {}
    for name, alias in (("router", "in"), ("router", "history"), ("trader", "orders"),
                        ("rec", "events")):  # fmt: skip
        address = system[name].addr(alias)
        assert address.transport == "tcp"
        out[f"{name}-{alias}"] = f"tcp://{address.address}"
    return out


def test_wrong_curve_key_is_refused_counted_and_trading_goes_on(architectures, tmp_path) -> None:
    system = _tcp_system(architectures)
    marker = tmp_path / "pwned"
    context = zmq.Context()
    try:
        intruder = DeploymentKeys.generate()
        for name, url in _tcp_addresses(system).items():
            agent = name.split("-")[0]
            before = system[agent].osm_stats()
            # knows the server's public key (it is no secret), not the deployment's secret
            push = context.socket(zmq.PUSH if not name.endswith("history") else zmq.REQ)
            curve_client(push, intruder)
            push.curve_serverkey = system.keys.curve_public
            push.connect(url)
            push.send(pickle.dumps(_WritesFile(marker)), zmq.NOBLOCK)
            wait_for(
                lambda a=agent, b=before: (
                    system[a].osm_stats()["refused_peers"] > b["refused_peers"]
                ),
                what=f"{name} to refuse the wrong key",
            )
            # a peer without CURVE at all: nothing reaches the handler either
            plain = context.socket(zmq.PUSH)
            plain.connect(url)
            plain.send(b"garbage", zmq.NOBLOCK)
            push.close(linger=0)
            plain.close(linger=0)
            after = system[agent].osm_stats()
            assert after["malformed"] == before["malformed"], name
        # the deployment keeps trading: the Brain's order of its fifth bar fills
        wait_for(lambda: system["rec"].get_attr("osm_positions").get("EUR_USD") == 100.0,
                 what="the Brain's fill")  # fmt: skip
        assert not marker.exists()
        assert system.status()["running"].all()
    finally:
        context.destroy(linger=0)


def test_the_status_feed_over_tcp_needs_the_key(architectures) -> None:
    system = _tcp_system(architectures)
    context = zmq.Context()
    try:
        keyed = context.socket(zmq.SUB)
        curve_client(keyed, system.keys)
        keyed.setsockopt(zmq.SUBSCRIBE, b"")
        keyed.connect(system.status_feed)
        assert keyed.poll(10_000), "no status table for the key holder"
        stranger = context.socket(zmq.SUB)
        curve_client(stranger, DeploymentKeys.generate())
        stranger.curve_serverkey = system.keys.curve_public
        stranger.setsockopt(zmq.SUBSCRIBE, b"")
        stranger.connect(system.status_feed)
        assert not stranger.poll(2_000)
    finally:
        context.destroy(linger=0)


def test_ipc_directory_is_private(architectures) -> None:
    system = architectures(broker_factory=lambda: SimulatedBroker(100_000.0))
    assert stat.S_IMODE(os.stat(system.ipc_dir).st_mode) == 0o700
    entry = system._registry_entry
    assert entry is not None and stat.S_IMODE(os.stat(entry).st_mode) == 0o600


# -- as another local user ---------------------------------------------------------------------
_NOBODY_SCRIPT = textwrap.dedent(
    """
    import pickle, sys
    sys.path.insert(0, sys.argv[1])
    import Pyro4, zmq
    uri, marker, urls = sys.argv[2], sys.argv[3], sys.argv[4:]

    class Bomb:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % marker,))

    try:
        Pyro4.Proxy(uri).ping()
        print("PYRO ACCEPTED")
    except Exception as exc:
        print("PYRO REFUSED", type(exc).__name__, exc)
    context = zmq.Context()
    for url in urls:
        socket = context.socket(zmq.PUSH)
        socket.connect(url)
        try:
            socket.send(pickle.dumps(Bomb()), zmq.NOBLOCK)
            print("QUEUED", url)
        except zmq.Again:
            print("NOT CONNECTED", url)
        socket.close(linger=1000)
    context.term()
    """
)


def _nobody_python(tmp: Path) -> list[str] | None:
    """A python the user nobody can run, with Pyro4, serpent and pyzmq copied where it can
    read them (this interpreter lives under /root, closed to other users)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return None
    system_python = "/usr/bin/python3"
    if not os.path.exists(system_python):
        return None
    probe = subprocess.run([system_python, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.stdout.strip() != str(sys.version_info[:2]):
        return None  # pyzmq's compiled module must match the interpreter
    site = Path(zmq.__file__).parent.parent
    lib = tmp / "lib"
    for name in ("Pyro4", "zmq", "pyzmq.libs", "serpent.py"):
        source = site / name
        if source.is_dir():
            shutil.copytree(source, lib / name)
        elif source.exists():
            lib.mkdir(exist_ok=True)
            shutil.copy(source, lib / name)
    for path in [tmp, *tmp.rglob("*")]:
        path.chmod(0o755)
    return ["runuser", "-u", "nobody", "--", system_python]


def test_another_user_cannot_call_or_message_the_agents(architectures, tmp_path) -> None:
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"osm-nobody-{os.getpid()}"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    try:
        python = _nobody_python(base)
        if python is None:
            pytest.skip("needs root, runuser and a system python of the same version")
        marker = base / "pwned"
        system = _tcp_system(architectures)
        uri = str(system._nameserver_proxy().lookup("trader"))
        script = base / "probe.py"
        script.write_text(_NOBODY_SCRIPT)
        script.chmod(0o755)
        urls = list(_tcp_addresses(system).values())
        ipc = architectures(broker_factory=lambda: SimulatedBroker(100_000.0))
        ipc_orders = ipc["trader"].addr("orders")
        urls.append(f"ipc://{ipc_orders.address}")
        before = {name: system[name].osm_stats() for name in ("router", "trader", "rec")}
        proc = subprocess.run([*python, str(script), str(base / "lib"), uri, str(marker), *urls],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "PYRO REFUSED" in proc.stdout and "hmac" in proc.stdout, proc.stdout
        assert "PYRO ACCEPTED" not in proc.stdout
        assert not marker.exists()
        for name in ("router", "trader", "rec"):
            after = system[name].osm_stats()
            assert after["malformed"] == before[name]["malformed"], name
            assert after["errors"] == before[name]["errors"], name
        assert ipc["trader"].osm_stats()["malformed"] == 0
        assert system["trader"].is_running() and ipc["trader"].is_running()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_security_example_runs() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "security_example.py"
    proc = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                          timeout=150)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused (" in proc.stdout and "hmac" in proc.stdout
    assert "peers refused by the Trader: 1" in proc.stdout
    assert "1 fill(s)" in proc.stdout
