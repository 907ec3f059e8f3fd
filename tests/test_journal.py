"""The journal alone (osmarkets/journal.py): write-ahead records, acknowledgements, recovery
points, ownership, and hostile files."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from osmarkets.brokers.base import Order, OrderEvent, event_key
from osmarkets.data.types import Bar
from osmarkets.journal import SCHEMA_VERSION, Journal, JournalError


def _order(cid: str, brain: str = "bot", size: float = 10.0) -> Order:
    return Order(cid, "EUR_USD", "buy", size, brain=brain, time=1)


def _fill(cid: str, brain: str = "bot", size: float = 10.0, t: int = 5) -> OrderEvent:
    return OrderEvent("filled", cid, "EUR_USD", "buy", size, 1.1, t, brain=brain)


@pytest.fixture
def journal(tmp_path):
    made = Journal.in_dir(tmp_path / "state")
    yield made
    made.close()


def test_file_is_private_and_in_wal_mode(journal) -> None:
    assert oct(os.stat(journal.path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(journal.path.parent).st_mode & 0o777) == "0o700"
    mode = sqlite3.connect(journal.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_deployment_id_is_made_once(journal, tmp_path) -> None:
    ident = journal.deployment_id()
    assert len(ident) == 8 and int(ident, 16) >= 0
    again = Journal(journal.path)
    assert again.deployment_id() == ident
    assert Journal.in_dir(tmp_path / "other").deployment_id() != ident


def test_orders_by_cause_and_numbers(journal) -> None:
    journal.record_order(_order("bot-ab-1"), "bar|EUR_USD:M1|5", 0)
    journal.record_order(_order("bot-ab-2", size=3), "bar|EUR_USD:M1|5", 1)
    journal.record_order(_order("bot-ab-2", size=99), "other", 0)  # a copy is ignored
    journal.record_order(_order("bot_x-ab-7", brain="bot_x"), "free|bot_x-ab-7", 0)
    found = journal.orders_for("bot", "bar|EUR_USD:M1|5")
    assert [(o.client_id, o.size) for o in found] == [("bot-ab-1", 10.0), ("bot-ab-2", 3.0)]
    assert journal.last_order_number("bot", "bot-ab-") == 2
    # '_' and '%' in a prefix are not wildcards
    assert journal.last_order_number("bot", "bot_ab-") == 0
    assert journal.last_order_number("bot_x", "bot_x-ab-") == 7
    assert journal.order("bot-ab-1") == (_order("bot-ab-1"), "sent")


def test_submitting_then_answered(journal) -> None:
    journal.record_order(_order("bot-ab-1"), "c", 0)
    journal.mark_submitting("bot-ab-1")
    journal.mark_submitting("bot-ab-9", _order("bot-ab-9"))  # not journaled by its Brain
    assert {o.client_id for o in journal.submitting()} == {"bot-ab-1", "bot-ab-9"}
    assert journal.record_events([_fill("bot-ab-1")]) == [_fill("bot-ab-1")]
    assert [o.client_id for o in journal.submitting()] == ["bot-ab-9"]
    assert journal.order("bot-ab-1")[1] == "answered"
    assert sorted(journal.handled_ids()) == ["bot-ab-1", "bot-ab-9"]


def test_a_request_and_the_orders_it_makes_are_recorded_in_one_commit(journal) -> None:
    journal.set("request", "pending")

    def orders():  # fails after the first order: nothing of the commit may remain
        yield _order("flat-1", brain="operator")
        raise RuntimeError("lost mid-way")

    with pytest.raises(RuntimeError):
        journal.set_with_orders({"request": "done"}, orders())
    assert journal.get("request") == "pending" and journal.submitting() == []
    journal.set_with_orders({"request": "done"}, [_order("flat-1", brain="operator")])
    assert journal.get("request") == "done"
    assert [o.client_id for o in journal.submitting()] == ["flat-1"]
    assert journal.handled_ids() == ["flat-1"]


def test_unsent_orders_are_those_the_trader_never_took(journal) -> None:
    for n in (1, 2, 3):
        journal.record_order(_order(f"bot-ab-{n}"), f"c{n}", 0)
    journal.mark_submitting("bot-ab-2")  # with the broker: the Trader's to resolve
    journal.record_events([_fill("bot-ab-3")])  # answered
    assert [o.client_id for o in journal.unsent_orders("bot")] == ["bot-ab-1"]
    assert journal.unsent_orders("eve") == []


def test_events_are_recorded_once_and_acknowledged(journal) -> None:
    a, b = _fill("bot-ab-1"), _fill("bot-ab-2", t=6)
    other = _fill("eve-ab-1", brain="eve")
    assert journal.record_events([a, b, other]) == [a, b, other]
    assert journal.record_events([a]) == []  # a copy (a reconciliation reporting it again)
    assert journal.unacked_events("bot") == [a, b]
    journal.checkpoint("bot", {"acked": {"k": 3}}, acked=event_key(a))
    assert journal.unacked_events("bot") == [b]
    assert journal.acked_keys("bot") == [event_key(a)]
    assert journal.positions("bot") == {"EUR_USD": 10.0}  # acknowledged fills only
    assert journal.events_of("bot-ab-2") == [b]
    assert journal.recovery_point("bot") == {"acked": {"k": 3}}
    assert journal.recovery_point("nobody") is None


def test_positions_count_a_fee_taken_in_the_asset_bought(journal) -> None:
    buy = OrderEvent("filled", "bot-ab-1", "BTC/USDT", "buy", 0.01, 50_000.0, 5, "", 0.5,
                     "bot", 0.0, 0.00001, "BTC")  # fmt: skip
    journal.record_events([buy])
    journal.checkpoint("bot", {}, acked=event_key(buy))
    assert journal.positions("bot") == {"BTC/USDT": pytest.approx(0.00999)}  # what is held


def test_a_recovery_point_that_is_not_data_is_refused(journal) -> None:
    with pytest.raises(TypeError):
        journal.checkpoint("bot", {"user": object()})
    assert journal.recovery_point("bot") is None  # nothing half-written


def test_bars_and_series(journal) -> None:
    bars = [("EUR_USD:M1", seq, Bar(seq, 1.0, 2.0, 0.5, 1.5, 1.0)) for seq in range(1, 2001)]
    journal.record_bars(bars, {"EUR_USD:M1": {"seq": 2000}}, capacity=100)
    kept = journal.bars("EUR_USD:M1", 10_000)
    assert kept[-1][0] == 2000 and len(kept) <= 1100  # trimmed to about the capacity
    assert [seq for seq, _ in journal.bars("EUR_USD:M1", 3)] == [1998, 1999, 2000]
    assert journal.series() == {"EUR_USD:M1": {"seq": 2000}}


def test_claim_refuses_a_live_owner_and_takes_over_a_dead_one(journal) -> None:
    assert journal.claim(os.getpid()) is None
    assert journal.claim(os.getpid()) is None  # the same owner again
    with pytest.raises(JournalError, match=f"in use by a running deployment .pid {os.getpid()}"):
        journal.claim(1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal.set("owner", str(dead.pid))
    assert journal.claim(os.getpid()) == dead.pid
    journal.release(os.getpid())
    assert journal.get("owner") is None


def test_a_zombie_owner_is_dead(journal) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    while " Z " not in stat.read_text():
        pass  # it exits at once and is not reaped: a zombie
    journal.set("owner", str(zombie.pid))
    assert journal.claim(os.getpid()) == zombie.pid
    zombie.wait()


def test_hostile_files(tmp_path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="garbage.sqlite"):
        Journal(garbage)
    newer = Journal(tmp_path / "newer.sqlite")
    newer.set("schema", str(SCHEMA_VERSION + 1))
    newer.close()
    with pytest.raises(JournalError, match="newer than this osMarkets"):
        Journal(tmp_path / "newer.sqlite")
    with pytest.raises(ValueError, match="durability"):
        Journal(tmp_path / "x.sqlite", durability="fast")


def _writer(path: str, brain: str, count: int) -> None:
    journal = Journal(path)
    for n in range(count):
        journal.record_events([_fill(f"{brain}-ab-{n}", brain=brain, t=n)])
        journal.checkpoint(brain, {"n": n})


def test_processes_write_at_once_and_nothing_is_lost(journal) -> None:
    journal.deployment_id()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_writer, args=(str(journal.path), f"b{i}", 200)) for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for i in range(3):
        assert len(journal.unacked_events(f"b{i}")) == 200
        assert journal.recovery_point(f"b{i}") == {"n": 199}


def test_a_killed_writer_leaves_a_consistent_journal(journal) -> None:
    """SIGKILL in the middle of writing: every committed record is there, none is torn."""
    code = (
        "import sys; from osmarkets.journal import Journal; "
        "from osmarkets.brokers.base import OrderEvent as E; j = Journal(sys.argv[1])\n"
        "for n in range(10**9):\n"
        "    e = E('filled', f'k-ab-{n}', 'EUR_USD', 'buy', 1.0, 1.0, n, brain='k')\n"
        "    j.record_events([e])\n"
        "    j.checkpoint('k', {'n': n})\n"
        "    print(n, flush=True) if n == 50 else None\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(journal.path)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "50"
    proc.kill()
    proc.wait()
    again = Journal(journal.path)
    events = again.unacked_events("k")
    point = again.recovery_point("k")
    assert point is not None and len(events) in (point["n"] + 1, point["n"] + 2)
    assert [e.time for e in events] == list(range(len(events)))
