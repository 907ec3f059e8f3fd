"""The distributed optimiser's security: Pyro HMAC on the control plane, CURVE on every tcp
socket, schema'd messages (never pickles) on the data plane, and ``osmarkets worker``'s key
file. Real agents on 127.0.0.1."""

import contextlib
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import Pyro4
import Pyro4.errors
import pytest
import zmq
from helpers_optimize import Momentum, make_bars

from osmarkets import wire
from osmarkets.agents.auth import (
    DeploymentKeys,
    curve_client,
    pyro_key,
    read_key_file,
    write_key_file,
)
from osmarkets.cli import main
from osmarkets.optimize.agents import COLLECTOR, GENERATOR, AgentRunner
from osmarkets.optimize.evaluate import Evaluator
from osmarkets.optimize.messages import JobSpecDecoder

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "sma_cross.py") + ":SmaCross"


def tcp(address) -> str:
    """``tcp://host:port`` of an osBrain AgentAddress."""
    return f"tcp://{address.address.host}:{address.address.port}"


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class WritesAFile:
    """A pickle whose loading would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_peer_without_the_curve_key_gets_nothing_and_is_counted():
    evaluator = Evaluator(Momentum, make_bars(600))
    configs = [{"lag": k} for k in range(1, 41)]
    intruder = DeploymentKeys.generate()
    context = zmq.Context()
    sockets = []
    try:
        with AgentRunner(evaluator, workers=1, batch=4) as runner:
            addresses = runner.addresses

            def intruder_socket(kind, address, keys=intruder):
                socket = context.socket(kind)
                socket.linger = 0
                if keys is not None:  # knows the server's public key, not its secret one
                    socket.curve_serverkey = runner.keys.curve_public
                    socket.curve_publickey = keys.curve_public
                    socket.curve_secretkey = keys.curve_secret
                socket.connect(tcp(address))
                sockets.append(socket)
                return socket

            batches = intruder_socket(zmq.PULL, addresses["configs"])
            job = intruder_socket(zmq.REQ, addresses["job"])
            plain = intruder_socket(zmq.PULL, addresses["configs"], keys=None)
            with contextlib.suppress(zmq.Again):  # queued until a handshake succeeds: never
                job.send(wire.encode(("job_request", 1, "intruder")), zmq.NOBLOCK)
            generator = runner.proxies[GENERATOR]
            assert wait_for(lambda: generator.osm_stats()["refused_peers"] >= 2)
            rows = runner.run(configs)
            assert batches.poll(300) == 0 and plain.poll(10) == 0 and job.poll(10) == 0
            stats = generator.osm_stats()
            status = runner.status()
    finally:
        for socket in sockets:
            socket.close()
        context.term()
    assert sorted(r["params"]["lag"] for r in rows) == list(range(1, 41))
    assert stats["refused_peers"] >= 2
    assert "intruder" not in status["workers"]


def test_pyro_calls_without_the_key_are_refused():
    with AgentRunner(Evaluator(Momentum, make_bars(300)), workers=0) as runner:
        host, port = runner.nsaddr.host, runner.nsaddr.port
        with pyro_key(runner.keys.pyro):
            uri = Pyro4.locateNS(host, port).lookup(GENERATOR)
        for key in (None, DeploymentKeys.generate().pyro):
            for target, call in ((uri, "status"), (f"PYRO:Pyro.NameServer@{host}:{port}", "ping")):
                proxy = Pyro4.Proxy(target)
                proxy._pyroHmacKey = key
                with pytest.raises(
                    (Pyro4.errors.CommunicationError, Pyro4.errors.SecurityError), match="hmac"
                ):
                    getattr(proxy, call)()
                proxy._pyroRelease()
        # the runner's own proxies hold the key
        assert runner.proxies[GENERATOR].status()["queued"] == 0
        # a configuration that cannot travel as data is refused before it is sent
        with pytest.raises(ValueError, match="cannot travel"):
            runner.run([{"lag": (1, 2)}])


def test_garbage_and_pickles_sent_to_the_collector_are_dropped_and_counted(tmp_path):
    target = tmp_path / "written-by-a-pickle"
    evaluator = Evaluator(Momentum, make_bars(600))
    context = zmq.Context()
    sockets = []
    try:
        with AgentRunner(evaluator, workers=1, batch=4) as runner:
            results = context.socket(zmq.PUSH)
            job = context.socket(zmq.REQ)
            for socket, alias in ((results, "results"), (job, "job")):
                socket.linger = 0
                curve_client(socket, runner.keys)  # a properly keyed peer
                socket.connect(tcp(runner.addresses[alias]))
                sockets.append(socket)
            payloads = [
                b"",
                b"garbage\x00\xff" * 10,
                pickle.dumps(WritesAFile(str(target))),
                pickle.dumps(("rows", 1, 0, [WritesAFile(str(target))], 0.1)),
                wire.encode(("rows", 1, 0, "not rows", 0.1)),
                wire.encode(("rows", 1, 0, [], -1.0)),
                wire.encode(("done", 1, 0, 0.1)),
            ]
            for payload in payloads:
                results.send(payload)
            collector = runner.proxies[COLLECTOR]
            assert wait_for(lambda: collector.osm_stats()["malformed"] >= len(payloads))
            # the Generator's REP socket answers garbage (REQ/REP is lock-step) and counts it
            job.send(pickle.dumps(WritesAFile(str(target))))
            assert job.poll(5000)
            assert JobSpecDecoder()(job.recv()) == (-1, None)
            rows = runner.run([{"lag": k} for k in range(1, 21)])
            collected = collector.osm_stats()
            generated = runner.proxies[GENERATOR].osm_stats()
    finally:
        for socket in sockets:
            socket.close()
        context.term()
    assert sorted(r["params"]["lag"] for r in rows) == list(range(1, 21))
    assert collected["malformed"] == len(payloads) and collected["errors"] == 0
    assert generated["malformed"] == 1
    assert not target.exists()


# -- osmarkets worker --key-file ------------------------------------------------------------
def _worker(*extra):
    return main(["worker", "--nameserver", "127.0.0.1:9", "--workers", "1", *extra])


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_worker_needs_a_key_file(tmp_path, capsys):
    assert _worker() == 2
    assert "--key-file" in _one_line(capsys)
    assert _worker("--key-file", str(tmp_path / "missing")) == 2
    assert "--key-file" in _one_line(capsys)
    loose = write_key_file(tmp_path / "loose", DeploymentKeys.generate())
    loose.chmod(0o644)
    assert _worker("--key-file", str(loose)) == 2
    assert "readable by other users" in _one_line(capsys)
    junk = tmp_path / "junk"
    junk.write_text("not keys")
    junk.chmod(0o600)
    assert _worker("--key-file", str(junk)) == 2
    assert "--key-file" in _one_line(capsys)


def test_worker_command_without_a_key_file_exits_with_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "osmarkets", "worker", "--nameserver", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "--key-file" in done.stderr


def test_worker_with_another_optimisations_keys_is_refused(tmp_path, capsys):
    other = write_key_file(tmp_path / "other", DeploymentKeys.generate())
    with AgentRunner(None, workers=0) as runner:
        code = main(["worker", "--nameserver", runner.address, "--key-file", str(other),
                     "--workers", "1"])  # fmt: skip
        generator = runner.proxies[GENERATOR].status()
    assert code == 2
    assert "refused" in _one_line(capsys)
    assert generator["workers"] == []


def test_optimize_writes_a_private_key_file(tmp_path, capsys):
    bars = tmp_path / "bars.csv"
    make_bars(800, seed=3).to_csv(bars)
    key_file = tmp_path / "run.keys"
    key_file.write_text("stale")
    key_file.chmod(0o644)  # replaced, not reused
    base = ["optimize", EXAMPLE, "--data", str(bars), "--bsid", "X:M1", "--space", "fast=2:9",
            "--space", "slow=10:30", "--samples", "8", "--quiet"]  # fmt: skip
    assert main([*base, "--port", "0"]) == 2
    assert "--key-file" in _one_line(capsys)
    assert main([*base, "--workers", "1", "--key-file", str(key_file)]) == 0
    err = capsys.readouterr().err
    assert "--key-file" in err and str(key_file) in err
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert isinstance(read_key_file(key_file), DeploymentKeys)
