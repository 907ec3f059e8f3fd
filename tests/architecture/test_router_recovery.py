"""The Router survives its own death: it journals every bar series before it publishes, a Router
started on a journal takes its series up (sequence numbers, subscribers, history), and in a live
architecture the Overmind restarts a dead Router on the same addresses, the other agents
reconnecting to it by themselves."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest
from arch_brains import Recorder
from conftest import make_bars, pid_alive, wait_for

from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.data import Bar, BarSeriesID
from osmarkets.journal import Journal

M1 = ("EUR_USD", 1, "Minutes")
BSID = BarSeriesID(*M1)
TOKEN = "router-recovery-secret-token-0a1b2c3d"


class SeqRecorder(Recorder):
    """A Recorder that also records the sequence number of each bar ``on_new_bar`` gets
    (replayed ones included, read from its agent)."""

    def on_new_bar(self, series: Any) -> None:
        if not hasattr(self, "seqs"):
            self.seqs: list[int] = []
        self.seqs.append(int(self.osm_seq[series.bsid]))  # type: ignore[attr-defined]
        super().on_new_bar(series)


def _safe(function: Any) -> Any:
    try:
        return function()
    except Exception:
        return None


def _bar(row: Any) -> Bar:
    return Bar(int(row.Index.value), row.open, row.high, row.low, row.close, row.volume)


def test_router_started_on_a_journal_takes_up_its_series(tmp_path, architectures) -> None:
    """A Router starting on a journal (a deployment resumed on its state_dir) restores each
    series' sequence number, subscribers and history, the base time frames and the last times;
    its next bar follows the journaled ones, and a late quote of a published period is
    dropped."""
    data = make_bars(60, seed=21)
    rows = list(data.itertuples())
    state = tmp_path / "state"
    journal = Journal.in_dir(state)
    # bars 101..150 of a series whose first 100 bars were trimmed away
    journal.record_bars(
        [(BSID.key, 101 + n, _bar(row)) for n, row in enumerate(rows[:50])],
        {BSID.key: {"bsid": str(BSID), "seq": 150, "subscribers": {"gone": 30}}},
    )
    journal.set("router.base_timeframes", '{"EUR_USD": "M1"}')
    journal.set("router.last_time", json.dumps({"EUR_USD": rows[49].Index.value}))
    journal.close()

    system = architectures(Architecture, state_dir=state)
    router = system["router"]
    assert router.osm_stats()["restored_series"] == 1
    assert router.subscriptions() == {"gone": [(BSID, 30)]}
    assert router.get_attr("base_timeframes") == {"EUR_USD": "M1"}
    assert router.last_times() == {"EUR_USD": rows[49].Index.value}
    system.add_brain("rec", base=SeqRecorder, buy_on=10**9)
    system["rec"].subscribe(M1, 20)
    assert system["rec"].get_attr("osm_seq")[BSID] == 150
    frame = system["rec"].osm_series_frame(M1)
    assert list(frame.index) == list(data.index[30:50])  # the journaled history
    assert (frame["close"].to_numpy() == data["close"].to_numpy()[30:50]).all()
    # the feed repeats the last three journaled periods, then goes on: only the new ones
    # are published, numbered after the journaled ones
    system.stream(data={"EUR_USD": data.iloc[47:]}, speed=0)
    wait_for(lambda: _safe(lambda: system["rec"].get_attr("osm_seq")[BSID]) == 160,
             what="the ten new bars at the Brain")  # fmt: skip
    assert system["rec"].get_attr("seqs") == list(range(151, 161))
    seen = [t for _, t in system["rec"].get_attr("seen")]
    assert seen == [t.value for t in data.index[50:]]
    assert system["rec"].osm_stats()["gaps"] == 0
    # the journal has the new bars and the new subscriber
    assert [seq for seq, _ in system.journal.bars(BSID.key, 3)] == [158, 159, 160]
    assert system.journal.series()[BSID.key]["subscribers"] == {"gone": 30, "rec": 20}


def test_router_journals_nothing_without_a_journal(architectures) -> None:
    system = architectures(Architecture, durability="none")
    system.add_brain("rec", base=SeqRecorder, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    system.stream(data={"EUR_USD": make_bars(20, seed=2)}, speed=0)
    wait_for(lambda: system["router"].progress()["bars_out"] == 20, what="20 bars routed")
    assert system["router"].get_attr("journal") is None
    assert system.journal.series() == {}


def _router_pid(system: Architecture) -> int:
    return int(system._agents["router"].process.pid)


def _restarted(system: Architecture, old: int) -> bool:
    status = _safe(system.status)
    if status is None or "router" not in status.index:
        return False
    row = status.loc["router"]
    return bool(row["alive"] and row["restarts"] >= 1 and int(row["pid"]) != old)


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_killed_router_is_restarted_and_the_series_go_on(architectures, transport) -> None:
    system = architectures(Architecture, transport=transport, heartbeat=0.2)
    assert "router" in system.restartable
    system.add_brain("rec", base=SeqRecorder, buy_on=10**9)
    system["rec"].subscribe(M1, 500)
    system.stream(["EUR_USD"], seed=3, speed=600)  # ten one-minute bars a second, endless
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 5, what="bars before the kill")
    before = [t for _, t in system["rec"].get_attr("seen")]
    old = _router_pid(system)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), what="the Router's death")
    wait_for(lambda: _restarted(system, old), what="the Overmind to restart the Router")
    restarted_at = system["rec"].get_attr("osm_bars")
    # the Brain's sockets reconnected by themselves: bars go on
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= restarted_at + 5, timeout=30,
             what="bars at the Brain from the new Router")  # fmt: skip
    router = system["router"]
    assert router.osm_stats()["restored_series"] == 1
    assert router.subscriptions() == {"rec": [(BSID, 500)]}
    # no sequence number reused: every bar the Brain was given came after the previous one
    seqs = system["rec"].get_attr("seqs")
    assert seqs == sorted(set(seqs)), seqs
    assert seqs[0] == 1
    # no bar skipped: a bar lost during the restart was replayed from the history
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    # a new Brain after the restart gets the history, the bars from before the kill included
    system.add_brain("late", base=SeqRecorder, buy_on=10**9)
    system["late"].subscribe(M1, 500)
    late_times = {t.value for t in system["late"].osm_series_frame(M1).index}
    assert set(before) <= late_times
    wait_for(lambda: _safe(lambda: system["late"].get_attr("osm_bars")), what="bars at 'late'")
    # both Brains hold the same series, with no hole: stop the feed and compare
    system["feeder"].stop_feed()

    def settled() -> bool:
        seq = router.progress()["bars_out"]
        rec = system["rec"].get_attr("osm_seq")[BSID]
        late = system["late"].get_attr("osm_seq")[BSID]
        return bool(seq) and rec == late == _router_seq(system)

    wait_for(settled, what="both Brains at the Router's last bar")
    rec_frame = system["rec"].osm_series_frame(M1)
    late_frame = system["late"].osm_series_frame(M1)
    assert list(rec_frame.index[-50:]) == list(late_frame.index[-50:])
    assert (rec_frame.to_numpy()[-50:] == late_frame.to_numpy()[-50:]).all()


def _router_seq(system: Architecture) -> int:
    """The sequence number of the newest bar the Router journaled (so published or about to)."""
    return int(system.journal.bars(BSID.key, 1)[0][0])


def test_a_simulation_does_not_restart_its_router(simulated) -> None:
    system = simulated(symbols=["EUR_USD"], bars=50, seed=4)
    assert "router" not in system.restartable and isinstance(system, SimulatedArchitecture)
    system.add_brain("rec", base=Recorder)
    system["rec"].subscribe(M1, 30)
    old = _router_pid(system)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), what="the Router's death")
    with pytest.raises(RuntimeError, match="router agent 'router' died"):
        system.run(timeout=60)
    assert _router_pid(system) == old  # not replaced


def test_a_history_request_lost_with_the_router_is_asked_again(architectures) -> None:
    """A Brain whose history request died with the Router (sent, never answered) times out,
    makes its request socket again and asks again: the new Router answers."""
    system = architectures(Architecture, heartbeat=0.2)
    system.add_brain("rec", base=SeqRecorder, buy_on=10**9)
    old = _router_pid(system)
    os.kill(old, signal.SIGSTOP)  # alive, deaf: the request will wait in its socket
    outcome: list[Any] = []

    def ask() -> None:
        try:
            outcome.append(system["rec"].subscribe(M1, 10))
        except Exception as exc:  # the Router died with the request
            outcome.append(exc)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    wait_for(lambda: _unread_bytes(old) > 0, what="the request to reach the Router's socket")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _restarted(system, old), what="the Overmind to restart the Router")
    asking.join(30)
    assert outcome == [True], outcome  # the subscription went through, to the new Router
    assert system["rec"].subscribe(M1, 10) is True
    assert system["router"].subscriptions() == {"rec": [(BSID, 10)]}


def _unread_bytes(pid: int) -> int:
    """Bytes waiting in the receive queues of ``pid``'s unix sockets (``ss``)."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to see the request in the Router's socket")
    out = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, check=False).stdout
    queues = [line.split()[2] for line in out.splitlines()[1:] if f"pid={pid}," in line]
    return sum(int(queue) for queue in queues if queue.isdigit())


@pytest.fixture
def oanda_sandbox() -> Any:
    from osmarkets.brokers.oanda import OandaSandbox
    from osmarkets.data.types import to_ns

    base, origin = to_ns("2024-01-02T07:00:00Z"), time.monotonic_ns()
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=7, heartbeat=0.5, tick_interval=0.05,
        clock=lambda: base + (time.monotonic_ns() - origin) * 60,  # a minute a second
    ) as sandbox:  # fmt: skip
        yield sandbox


def test_oanda_router_restart_keeps_what_the_owner_set(architectures, oanda_sandbox) -> None:
    """On OANDA the restarted Router gets again what the owner set through calls after its
    start: the history source (a new subscription still downloads its history) and the base
    time frames of the stream."""
    from osmarkets.architecture import OandaArchitecture

    sandbox = oanda_sandbox
    system = architectures(
        OandaArchitecture, logging=False, account_id=sandbox.account_id, access_token=TOKEN,
        rest_url=sandbox.rest_url, stream_url=sandbox.stream_url, poll_interval=0.2,
        client_options={"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)},
    )  # fmt: skip
    assert "router" in system.restartable
    system.add_brain("rec", base=SeqRecorder, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    system.stream(["EUR_USD"])
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 3, what="bars before the kill")
    old = _router_pid(system)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old), what="the Router's death")
    wait_for(lambda: _restarted(system, old), timeout=30, what="the Router's restart")
    router = system["router"]
    assert router.get_attr("base_timeframes") == {"EUR_USD": None}
    assert "history_downloads" in router.osm_stats()  # the history source is set again
    bars = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 3, timeout=30,
             what="bars from the new Router")  # fmt: skip
    seqs = system["rec"].get_attr("seqs")
    assert seqs == sorted(set(seqs)), seqs
    # a series nobody asked for before: its history is downloaded by the new Router
    system.add_brain("late", base=SeqRecorder, buy_on=10**9)
    system["late"].subscribe(("EUR_USD", 5, "Minutes"), 20)
    assert len(system["late"].osm_series_frame(("EUR_USD", 5, "Minutes"))) == 20
    assert router.osm_stats()["history_downloads"] >= 1
