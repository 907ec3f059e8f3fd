"""The distributed pipeline on osBrain agents (Generator -> Backtesters -> Collector)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_optimize import Momentum, SlowMomentum, make_bars

from osmarkets.optimize import IntRange, Space, explore
from osmarkets.optimize.agents import AgentRunner
from osmarkets.optimize.evaluate import Evaluator

pytestmark = pytest.mark.timeout(120)


def test_workers_give_the_same_table_as_in_process():
    bars = make_bars(1500, seed=2)
    space = {"lag": IntRange(1, 200)}
    local = explore(Momentum, bars, space, samples=60, seed=4)
    remote = explore(Momentum, bars, space, samples=60, seed=4, workers=2, batch=5)
    a = local.table.set_index("id").sort_index()
    b = remote.table.set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    cols = ["lag", "sharpe", "total_return", "trades", "passed", "included"]
    assert a[cols].equals(b[cols])
    assert set(b["worker"]) <= {f"osm-opt-backtester-{os.getpid()}-{k}" for k in (0, 1)}


def test_a_killed_backtester_loses_no_configuration():
    configs = Space({"lag": IntRange(1, 400)}).sample(120, seed=0)
    evaluator = Evaluator(SlowMomentum, make_bars(400))
    killed = []
    with AgentRunner(evaluator, workers=2, batch=4) as runner:
        processes = list(runner.processes.values())

        def progress(done, total):
            if not killed and done >= 16:
                pid = runner.worker_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        rows = runner.run(configs, progress)
        status = runner.status()
    assert killed, "the run finished before a worker could be killed"
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 120
    assert {r["params"]["lag"] for r in rows} == {c["lag"] for c in configs}
    assert status["requeued"] >= 1
    assert all(not p.is_alive() for p in processes)


def test_a_failing_configuration_raises_instead_of_hanging():
    evaluator = Evaluator(SlowMomentum, make_bars(300), params={"fail_lag": 7})
    with (
        AgentRunner(evaluator, workers=1, batch=2) as runner,
        pytest.raises(RuntimeError, match="planned failure"),
    ):
        runner.run([{"lag": k} for k in range(1, 12)])


def test_remote_worker_command_joins_and_leaves(tmp_path):
    evaluator = Evaluator(Momentum, make_bars(800))
    configs = [{"lag": k} for k in range(1, 41)]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(root)])}
    key_file = tmp_path / "keys"
    runner = AgentRunner(evaluator, workers=0, batch=4, key_file=key_file)
    worker = None
    try:
        assert key_file.stat().st_mode & 0o777 == 0o600
        address = f"{runner.nsaddr.host}:{runner.nsaddr.port}"
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "osmarkets",
                "worker",
                "--nameserver",
                address,
                "--key-file",
                str(key_file),
                "--workers",
                "1",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rows = runner.run(configs)
        assert sorted(r["params"]["lag"] for r in rows) == list(range(1, 41))
        assert {r["worker"] for r in rows} != {"local"}
    finally:
        runner.close()
        if worker is not None:
            try:
                out, err = worker.communicate(timeout=30)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
    assert worker.returncode == 0, err
    assert "batches" in out


def test_walk_forward_on_agents_switches_jobs_between_windows():
    from osmarkets.optimize import walk_forward

    bars = make_bars(1500, seed=13)
    space = {"lag": IntRange(1, 60)}
    local = walk_forward(Momentum, bars, space, train=500, test=250, samples=12)
    remote = walk_forward(Momentum, bars, space, train=500, test=250, samples=12, workers=2,
                          batch=3)  # fmt: skip
    cols = ["train_start", "test_start", "members", "oos_total_return", "configurations"]
    assert local.windows[cols].equals(remote.windows[cols])
    assert local.windows["params"].tolist() == remote.windows["params"].tolist()
    assert local.equity.equals(remote.equity)
