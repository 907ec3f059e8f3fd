"""Architecture in live mode (no lock-step): the full path, history, supervision, hostile input,
and clean shutdown (no process, no ipc file left)."""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest
import zmq
from arch_brains import Recorder
from conftest import make_bars, pid_alive, wait_for

from osmarkets.agents.feeder import zmq_url
from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data import Bar, BarSeriesID

M1 = ("EUR_USD", 1, "Minutes")
BROKER = functools.partial(SimulatedBroker, 100_000)


def _safe(function):
    try:
        return function()
    except Exception:
        return None


def test_full_path_tick_bar_brain_order_fill_event(architectures) -> None:
    system = architectures(broker_factory=BROKER)
    system.add_brain("rec", base=Recorder, buy_on=3, size=250)
    system["rec"].set_attr(DEBUG=True)
    system["rec"].subscribe(M1, 100)
    system.stream(["EUR_USD"], bars=30, seed=2, speed=0)
    events = wait_for(
        lambda: [
            e for e in _safe(lambda: system["rec"].get_attr("events")) or [] if e.kind == "filled"
        ],
        what="a fill event at the Brain",
    )
    (fill,) = events
    assert fill.size == 250 and fill.side == "buy" and fill.brain == "rec"
    assert system["rec"].position("EUR_USD") == 250  # Brain.position through the proxy
    assert system["rec"].get_attr("debug_seen") >= 3  # set_attr reached the user's code
    record = system["trader"].record()
    assert [f.client_id for f in record["fills"]] == [fill.client_id]
    kinds = [e.kind for e in system["rec"].get_attr("events")]
    assert kinds == ["accepted", "filled"]


def test_history_on_subscribe(architectures) -> None:
    data = make_bars(200, seed=8)
    system = architectures(broker_factory=BROKER)
    system.add_brain("first", base=Recorder, buy_on=10**9)
    system["first"].subscribe(M1, 500)
    system.stream(data={"EUR_USD": data}, speed=0)
    wait_for(lambda: system["router"].progress()["bars_out"] == 200, what="200 bars routed")
    system.add_brain("late", base=Recorder, buy_on=10**9)
    system["late"].subscribe(M1, 50)
    got = system["late"].osm_series_frame(M1)
    expected = data.iloc[-50:][["open", "high", "low", "close", "volume"]]
    assert list(got.index) == list(expected.index)
    assert (got[expected.columns].to_numpy() == expected.to_numpy()).all()


def test_sequence_gap_reloads_history(architectures) -> None:
    data = make_bars(50, seed=12)
    system = architectures(broker_factory=BROKER)
    system.add_brain("rec", base=Recorder, buy_on=10**9)
    system["rec"].subscribe(M1, 100)
    system.stream(data={"EUR_USD": data}, speed=0)
    wait_for(lambda: _safe(lambda: system["rec"].get_attr("osm_seq")[BarSeriesID(*M1)]) == 50,
             what="50 bars at the Brain")  # fmt: skip
    # a bar whose sequence number jumps (as if bars 51-54 were dropped by PUB/SUB)
    late = Bar(int(data.index[-1].value) + 10 * 60_000_000_000, 1.2, 1.2, 1.2, 1.2)
    bsid = BarSeriesID(*M1)
    system["router"].osm_send("pub", ("bar", bsid, 55, late, None), bsid.key)
    wait_for(lambda: system["rec"].osm_stats()["gaps"] == 1, what="the gap to be seen")
    frame = system["rec"].osm_series_frame(M1)
    assert len(frame) == 51  # history reloaded from the Router, then the new bar
    assert frame.index[-1].value == late.time


def test_killed_brain_is_restarted_and_resumes_from_history(architectures) -> None:
    system = architectures(broker_factory=BROKER, heartbeat=0.2)
    system.add_brain("victim", base=Recorder, buy_on=10**9)
    system["victim"].subscribe(M1, 30)
    system.stream(["EUR_USD"], seed=3, speed=600)  # ten one-minute bars per second, endless
    wait_for(lambda: system["victim"].get_attr("osm_bars") >= 3, what="bars at the Brain")
    old_pid = system.status().loc["victim", "pid"]
    seen_before = system["victim"].get_attr("osm_bars")
    os.kill(int(old_pid), signal.SIGKILL)
    wait_for(lambda: system.overmind.restarts.get("victim") == 1, what="the restart")

    def resumed() -> bool:
        proxy = system["victim"]
        frame = _safe(lambda: proxy.osm_series_frame(M1))
        return frame is not None and len(frame) >= seen_before and proxy.get_attr("osm_bars") > 0

    wait_for(resumed, what="the restarted Brain to reload history and get new bars")
    status = system.status()
    assert status.loc["victim", "pid"] != old_pid
    assert status.loc["victim", "running"]
    assert not pid_alive(int(old_pid))


def test_stopped_loop_is_detected_and_restarted(architectures) -> None:
    system = architectures(broker_factory=BROKER, heartbeat=0.2)
    system.add_brain("stuck", base=Recorder, buy_on=10**9)
    system["stuck"].subscribe(M1, 30)
    # A method that raises through the proxy reaches the caller and the loop keeps running
    # (plain osBrain would stop the loop here) ...
    with pytest.raises(RuntimeError, match="User raised"):
        system["stuck"].raise_exception()
    assert system["stuck"].is_running()
    assert system["stuck"].osm_stats()["errors"] == 1
    # ... but a loop that stops anyway is detected and the Brain restarted.
    system["stuck"].stop()
    wait_for(lambda: system.overmind.restarts.get("stuck") == 1, what="the restart")
    wait_for(lambda: _safe(lambda: system["stuck"].is_running()), what="the new loop")


def test_malformed_messages_are_counted_and_survived(architectures) -> None:
    data = make_bars(120, seed=9)
    system = architectures(SimulatedArchitecture, {"EUR_USD": data})
    system.add_brain("rec", base=Recorder, buy_on=40)
    system["rec"].subscribe(M1, 100)

    class Unloadable:
        def __reduce__(self):
            return (int, ("not a number",))  # raises when unpickled

    hostile = [
        b"",
        b"\x80\x05garbage",
        pickle.dumps("just a string"),
        pickle.dumps(("no-such-kind", 1)),
        pickle.dumps(("order", "not an order")),
        pickle.dumps(("tick", "EUR_USD")),
        pickle.dumps(("tick", "EUR_USD", (1, float("nan"), 2.0))),
        pickle.dumps(("ack", "x")),
        pickle.dumps(Unloadable()),
        b"EUR_USD M1|" + b"\x00\x01",
    ]
    context = zmq.Context.instance()
    targets = [system["router"].addr("in"), system["trader"].addr("orders"),
               system["rec"].addr("events")]  # fmt: skip
    for address in targets:
        push = context.socket(zmq.PUSH)
        push.connect(zmq_url(address))
        for message in hostile:
            push.send(message)
        push.close(linger=2000)
    req = context.socket(zmq.REQ)
    req.connect(zmq_url(system["router"].addr("history")))
    req.send(b"\xff\xfe")
    assert req.poll(5000)
    assert req.recv() == b"\x00"
    req.close()
    for name in ("router", "trader", "rec"):
        wait_for(lambda n=name: system[n].osm_stats()["malformed"] >= 5, what=f"{name} counting")
    result = system.run(timeout=60)
    assert system["rec"].get_attr("osm_bars") == 120
    assert len(result.trades) == 1
    status = system.status()
    assert status["running"].all()
    assert status.loc["router", "malformed"] >= 8


def test_shutdown_leaves_no_process_and_no_ipc_file(architectures) -> None:
    system = Architecture(broker_factory=BROKER, logging=True, heartbeat=0.2)
    try:
        system.add_brain("rec", base=Recorder)
        system["rec"].subscribe(M1, 10)
        system.stream(["EUR_USD"], seed=1, speed=60)
        pids = system.pids()
        ipc_dir = system.ipc_dir
        assert len(pids) == 6 and all(pid_alive(p) for p in pids)
        assert any(ipc_dir.iterdir())
    finally:
        system.shutdown()
    assert not [p for p in pids if pid_alive(p)]
    assert not ipc_dir.exists()


def test_exception_in_with_block_shuts_down(architectures) -> None:
    with pytest.raises(RuntimeError, match="user error"), Architecture(heartbeat=0.2) as system:
        system.add_brain("rec", base=Recorder)
        pids = system.pids()
        ipc_dir = system.ipc_dir
        raise RuntimeError("user error")
    assert not [p for p in pids if pid_alive(p)]
    assert not ipc_dir.exists()


LAUNCHER = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, {here!r})
    from arch_brains import Recorder
    from osmarkets.architecture import Architecture
    with Architecture(transport={transport!r}, logging=True) as system:
        system.add_brain("rec", base=Recorder)
        system["rec"].subscribe(("EUR_USD", 1, "Minutes"), 10)
        system.stream(["EUR_USD"], seed=1, speed=60)
        print(json.dumps({{"pids": system.pids(), "ipc": str(system.ipc_dir)}}), flush=True)
        while True:
            time.sleep(0.05)
    """
)


@pytest.mark.parametrize(("signum", "transport"), [(signal.SIGTERM, "ipc"),
                                                   (signal.SIGINT, "ipc"),
                                                   (signal.SIGTERM, "tcp")])  # fmt: skip
def test_signal_to_launcher_leaves_nothing(signum, transport) -> None:
    here = os.path.dirname(__file__)
    code = LAUNCHER.format(here=here, transport=transport)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert all(pid_alive(p) for p in info["pids"])
        proc.send_signal(signum)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: not [p for p in info["pids"] if pid_alive(p)], timeout=10, what="no orphan")
    assert proc.returncode != 0
    if transport == "ipc":
        assert not os.path.exists(info["ipc"])


def test_agents_do_not_outlive_a_killed_owner() -> None:
    here = os.path.dirname(__file__)
    code = LAUNCHER.format(here=here, transport="ipc")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        proc.kill()  # SIGKILL: no chance to shut anything down
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: not [p for p in info["pids"] if pid_alive(p)], timeout=15, what="no orphan")
    # the name server, last to go, removes the architecture's ipc directory
    wait_for(lambda: not os.path.exists(info["ipc"]), timeout=15, what="no ipc directory")
