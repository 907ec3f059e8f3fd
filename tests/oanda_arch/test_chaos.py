"""Chaos on real agent processes and the sandbox (issue 10): SIGKILL each agent kind, the owner,
and the Trader right after it saved a broker answer; order POSTs slower than the read timeout;
the same launcher run twice on one account. After each, with a ChaosBrain trading every bar
(see chaos_support): the orders on the account are the orders the Brain journaled (none twice,
none lost), its position is the account's, every order has exactly one terminal event, and the
bars it saw (replayed ones included) or was told of through ``on_gap`` are the bars completed.

Bounded: one-minute bars complete every second of the sandbox's clock, each test kills once or
twice at seeded random points, and every wait has a timeout (the module takes about two to three
minutes on 2 cores).
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import chaos_support as chaos
import oanda_arch_support
import pytest
from oanda_arch_support import DIE_ON_SIZE, TOKEN, fast_clock

from osmarkets.brokers.oanda import OandaSandbox, trading

pytestmark = pytest.mark.timeout(150)
DUPLICATE = "CLIENT_ORDER_ID_ALREADY_EXISTS"


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=10, heartbeat=0.5, tick_interval=0.05,
        clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


class Files:
    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.log = str(root / "chaos.log")
        self.stop = str(root / "stop")
        self.journal = self.state / "journal.sqlite"


@pytest.fixture
def files(tmp_path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def deploy(sandbox, files):
    """Builds OandaArchitectures with the ChaosBrain on the test's state_dir; all shut down
    on leaving."""
    made = []

    def build(**options):
        system = chaos.launch(sandbox, TOKEN, files.state, files.log, files.stop, **options)
        made.append(system)
        return system

    yield build
    for system in made:
        system.shutdown()


def _settle_and_check(sandbox, files: Files, system=None, downtime: bool = False) -> dict:
    """Quiesce, then check every invariant. ``downtime``: the whole deployment was down for a
    while (shut down, or its owner killed); the minutes that completed meanwhile are checked
    by :func:`_downtime_minutes` at the end of the test."""
    chaos.quiesce(files.journal, files.stop, sandbox.clock, files.log, system)
    result = chaos.check_all(sandbox, files.journal, {"chaos": files.log}, system)
    found = chaos.violations(result)
    if downtime:
        found.pop("unpublished", None)
    assert found == {}, result["problems"]
    assert result["orders"] > 0 and result["placed"] == result["orders"]
    return result


def _downtime_minutes(result: dict) -> None:
    """Last check of a test where the deployment was down: the bars that completed meanwhile
    reach the Brain (the new run's Feeder backfills them from where the journal stopped)."""
    assert result["unpublished"] == 0, [p for p in result["problems"] if "never published" in p]


def _numbers(journal_path: Path, run_id: str) -> dict[str, int]:
    """Client id -> its n, every id checked to be 'chaos-<run_id>-<n>'."""
    journal = chaos.open_journal(journal_path)
    try:
        ids = [row[0] for row in journal._query("SELECT client_id FROM orders")]
    finally:
        journal.close()
    out = {}
    for cid in ids:
        match = re.fullmatch(rf"chaos-{run_id}-(\d+)", cid)
        assert match, cid
        out[cid] = int(match.group(1))
    return out


@pytest.mark.parametrize("agent", ["chaos", "trader", "feeder", "router"])
def test_an_agent_killed_at_random_points(deploy, sandbox, files, agent) -> None:
    """SIGKILL the Brain / Trader / Feeder / Router three times while the Brain trades: at a
    random moment of a bar, then twice a random few tens of milliseconds before a bar
    completes (it completes while the agent is down or restarting); the Overmind restarts it;
    trading goes on."""
    rng = random.Random(0)
    system = deploy()
    for n in range(3):
        chaos.wait_bars(files.log, 2)
        if n == 0:  # pacing: a random point of the next bar
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # just before a bar completes: it completes while the agent is down
            time.sleep(chaos.before_next_bar(sandbox.clock, margin=rng.uniform(0.02, 0.08)))
        pid, killed = chaos.kill_agent(system, agent)
        took = chaos.wait_restarted(system, agent, pid, killed, timeout=30)
        assert took < 15, f"the {agent} took {took:.1f} s to come back"
    chaos.wait_bars(files.log, 3)
    result = _settle_and_check(sandbox, files, system)
    if agent == "chaos":
        assert system["chaos"].get_attr("osm_restored")  # from its recovery point
    assert result["bars_seen"] >= 9


def test_the_trader_killed_right_after_saving_an_answer(
    deploy, sandbox, files, monkeypatch
) -> None:
    """The Trader dies between saving OANDA's answer and delivering it (the Brain has no event
    for the order); the Overmind restarts it, the Brain re-sends, OANDA refuses the copy: one
    order, one fill, delivered once."""
    monkeypatch.setattr(
        trading, "make_trading_broker", oanda_arch_support.make_dying_trading_broker
    )
    system = deploy()
    chaos.wait_bars(files.log, 2)
    old = system._agents["trader"].process.pid
    cid = system["chaos"].send_order(side="buy", size=DIE_ON_SIZE, symbol="EUR_USD")
    chaos.wait_for(lambda: not chaos.pid_alive(old), 30, "the Trader dying after it saved")
    chaos.wait_restarted(system, "trader", old, time.monotonic(), timeout=30)
    chaos.wait_bars(files.log, 3)
    _settle_and_check(sandbox, files, system)
    kinds = [r["kind"] for r in chaos.read_log(files.log) if r.get("cid") == cid
             and r.get("k") == "event"]  # fmt: skip
    assert kinds.count("filled") == 1 and "rejected" not in kinds, kinds


def test_order_posts_slower_than_the_read_timeout(deploy, sandbox, files) -> None:
    """OANDA learns of two orders only after the client's read timeout: the copies the Trader
    sends are placed, the late originals refused as duplicates, the Brain sees no rejection."""
    system = deploy(client_options=dict(chaos.FAST_CLIENT, timeout=(2.0, 0.5)))
    chaos.wait_bars(files.log, 1)
    sandbox.slow_orders(2, delay=1.5, before=True)

    def refused() -> int:
        with sandbox._lock:
            return sum(1 for t in sandbox.transactions if t.get("rejectReason") == DUPLICATE)

    chaos.wait_for(lambda: refused() >= 2, 40, "the late originals refused")
    chaos.wait_bars(files.log, 2)
    _settle_and_check(sandbox, files, system)


def test_the_same_launcher_run_twice_on_one_account(deploy, sandbox, files) -> None:
    """Shut down mid-trading, run again on the same account and state_dir: the deployment id
    is kept, client ids go on, nothing is refused as a duplicate, the position goes on."""
    first = deploy()
    chaos.wait_bars(files.log, 3)
    first.shutdown()
    before = _numbers(files.journal, first.run_id)
    second = deploy()
    assert second.run_id == first.run_id and second.resumed_from is None
    chaos.wait_bars(files.log, 3)
    result = _settle_and_check(sandbox, files, second, downtime=True)
    after = _numbers(files.journal, second.run_id)
    new = set(after) - set(before)
    assert new and min(after[c] for c in new) > max(before.values())
    with sandbox._lock:
        rejects = [t for t in sandbox.transactions if t["type"].endswith("_REJECT")]
    assert rejects == []
    pids = {second._agents["chaos"].process.pid}
    restored = [r for r in chaos.read_log(files.log) if r["k"] == "restore" and r["pid"] in pids]
    assert restored and restored[0]["state"]["handled"] >= 3
    _downtime_minutes(result)


def test_the_owner_killed(sandbox, files) -> None:
    """SIGKILL the launcher's process mid-run: its agents exit (orphan guard); the launcher run
    again on the same state_dir resumes the deployment (same id, the Brain's recovery point,
    no order sent twice, the position the account's) and the dead owner's token directory is
    gone."""
    rng = random.Random(0)
    proc, info = chaos.start_launcher(sandbox, TOKEN, files.state, files.log, files.stop)
    second = None
    try:
        chaos.wait_bars(files.log, 2)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        chaos.wait_for(lambda: not any(chaos.pid_alive(p) for p in info["pids"]), 20,
                       "the dead owner's agents exiting")  # fmt: skip
        before = _numbers(files.journal, info["run_id"])
        second, again = chaos.start_launcher(sandbox, TOKEN, files.state, files.log, files.stop)
        assert again["run_id"] == info["run_id"]
        assert again["resumed_from"] == info["pid"]
        assert not Path(info["private"]).exists()
        chaos.wait_bars(files.log, 3)
        result = _settle_and_check(sandbox, files, downtime=True)
        after = _numbers(files.journal, info["run_id"])
        new = set(after) - set(before)
        assert new and min(after[c] for c in new) > max(before.values())
        restored = [r for r in chaos.read_log(files.log)
                    if r["k"] == "restore" and r["pid"] in again["pids"]]  # fmt: skip
        assert restored and restored[0]["state"]["handled"] >= 2
    finally:
        chaos.stop_launcher(proc, signal.SIGKILL)
        if second is not None:
            chaos.stop_launcher(second, signal.SIGTERM)
    chaos.wait_for(lambda: not any(chaos.pid_alive(p) for p in again["pids"]), 20,
                   "the second run's agents exiting")  # fmt: skip
    assert not Path(again["private"]).exists()
    _downtime_minutes(result)


def test_the_checkers_see_each_violation(tmp_path) -> None:
    """In-process, no agents: the checkers count what they must (a journal and an account
    built by hand, each invariant broken once)."""
    import threading

    from osmarkets.brokers.base import Order, OrderEvent, event_key
    from osmarkets.data.types import Bar
    from osmarkets.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    cause = f"bar|{chaos.M1_KEY}|"
    for n, (seq, rank) in enumerate([(1, 0), (2, 0), (3, 0), (3, 0), (4, 0)], start=1):
        order = Order(f"chaos-r-{n}", "EUR_USD", "buy", 10.0, brain="chaos")
        journal.record_order(order, f"{cause}{seq}", rank)

    def event(kind: str, n: int) -> OrderEvent:
        return OrderEvent(kind, f"chaos-r-{n}", "EUR_USD", "buy", 10.0, time=n, brain="chaos")

    events = [event("filled", 1), event("filled", 2), event("cancelled", 2),
              event("filled", 3), event("filled", 4)]  # fmt: skip
    journal.record_events(events)  # chaos-r-5: none
    start = 1_704_178_800_000_000_000
    journal.record_bars([(chaos.M1_KEY, n + 1, Bar(start + n * chaos.MINUTE, 1, 1, 1, 1, 1))
                         for n in range(6) if n != 4])  # minute 4 never published  # fmt: skip
    log = str(tmp_path / "chaos.log")
    for n in (0, 1, 3, 5):  # minute 2 lost, told of nothing
        chaos.append_line(log, {"k": "bar", "t": start + n * chaos.MINUTE, "replayed": False})
    chaos.append_line(log, {"k": "bar", "t": start + 5 * chaos.MINUTE, "replayed": False})
    for e in events[:3]:  # the Brain got two terminal events of chaos-r-2, none of 3 and 4
        chaos.append_line(log, {"k": "event", "cid": e.client_id, "kind": e.kind,
                                "key": event_key(e)})  # fmt: skip

    class Account:
        _lock = threading.Lock()
        transactions = [
            {"type": "MARKET_ORDER", "clientExtensions": {"id": cid}}
            for cid in ("chaos-r-1", "chaos-r-1", "chaos-r-2", "chaos-r-3", "chaos-r-4",
                        "stranger-1")
        ]  # fmt: skip
        trades = {"1": {"state": "OPEN", "instrument": "EUR_USD", "currentUnits": "50"}}

    result = chaos.check_all(Account(), journal.path, {"chaos": log})
    journal.close()
    # chaos-r-1 placed twice; bar 3 gave two orders, both placed
    assert result["duplicates"] == 2
    assert result["lost"] == 1 and result["unjournaled"] == 1  # chaos-r-5; stranger-1
    assert result["wrong_positions"] == 1  # fills say 40, the account 50
    # chaos-r-2 (two, in the journal and at the Brain), 3 and 4 (none at the Brain), 5 (none)
    assert result["bad_terminal"] == 4
    assert result["bars_lost"] == 1 and result["unpublished"] == 1
    assert result["bars_twice"] == 1
    assert set(chaos.violations(result)) == {
        "duplicates", "lost", "unjournaled", "wrong_positions", "bad_terminal", "bars_lost",
        "unpublished", "bars_twice",
    }  # fmt: skip
