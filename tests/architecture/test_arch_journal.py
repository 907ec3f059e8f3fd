"""The journal in a live deployment: a Brain that dies while handling an input resumes
from its recovery point (on_save / on_restore), and handling that input again re-issues the
same client ids, so no order reaches the broker twice; what it cannot store is refused
without losing the deployment."""

from __future__ import annotations

import functools
from collections import Counter

from conftest import wait_for
from journal_brains import Suicidal, Unsaveable

from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.journal import Journal

M1 = ("EUR_USD", 1, "Minutes")
BROKER = functools.partial(SimulatedBroker, 1_000_000)


def _settled(system, brain: str) -> bool:
    stats = system[brain].osm_stats()
    return stats["unacked"] == 0 and system["trader"].idle_now()


def _run(architectures, tmp_path, **params):
    system = architectures(broker_factory=BROKER, heartbeat=0.2, state_dir=tmp_path / "state")
    marker = tmp_path / "died"
    system.add_brain("bot", base=Suicidal, marker=str(marker), **params)
    system["bot"].subscribe(M1, 50)
    first = system._agents["bot"].process.pid
    system.stream(["EUR_USD"], seed=5, speed=300, bars=40)  # 5 bars/s, then the feed ends
    wait_for(marker.exists, timeout=60, what="the Brain dying")
    wait_for(lambda: _restarted(system, "bot", first), timeout=30, what="the restarted Brain")
    wait_for(lambda: system["router"].progress()["finished"], timeout=60, what="the feed's end")
    wait_for(lambda: _settled(system, "bot"), timeout=30, what="every order settled")
    return system


def _restarted(system, name: str, old_pid: int) -> bool:
    handle = system._agents[name]
    return handle.process.pid != old_pid and handle.proxy is not None


def _fills_by_id(system) -> Counter:
    return Counter(fill.client_id for fill in system["trader"].record()["fills"])


def test_a_brain_dying_after_an_order_does_not_send_it_twice(architectures, tmp_path) -> None:
    system = _run(architectures, tmp_path, die_on=5)
    bot = system["bot"]
    journal = Journal(system.journal.path)
    sent = [o.client_id for o in journal.orders_for("bot", _bar_cause(journal, 5))]
    assert len(sent) == 1
    fills = _fills_by_id(system)
    assert fills[sent[0]] == 1  # the order of the bar it died on: filled once
    assert max(fills.values()) == 1  # no order filled twice
    assert bot.get_attr("osm_reissued") >= 1  # the replayed bar gave the same client id
    # on_restore got the state saved after bar 4; the bars after it were replayed, marked
    assert bot.get_attr("restored") == {"handled": 4}
    assert bot.get_attr("replayed_bars") >= 1
    assert bot.get_attr("handled") == system["router"].progress()["bars_out"]
    # positions: from the journal's fills, equal to the broker's
    broker = system["trader"].record()["state"]["positions"]
    assert _held(bot.get_attr("osm_positions")) == _held(broker)
    assert journal.unacked_events("bot") == []
    # every order has exactly one terminal event
    kinds = Counter(e.client_id for e in journal.fills("bot"))
    assert set(kinds.values()) == {1}
    assert {o for (o,) in journal._query("SELECT client_id FROM orders")} == set(kinds)


def _bar_cause(journal: Journal, rank: int) -> str:
    """The cause of the ``rank``-th bar the Brain handled (1-based)."""
    causes = [c for c, in journal._query(
        "SELECT cause FROM orders WHERE cause LIKE 'bar|%' ORDER BY rowid")]  # fmt: skip
    return sorted(set(causes), key=lambda c: int(c.rsplit("|", 1)[1]))[rank - 1]


def test_a_brain_dying_in_an_event_handler_sends_the_follow_up_once(
    architectures, tmp_path
) -> None:
    system = _run(architectures, tmp_path, die_in="event", every_bar=False)
    bot = system["bot"]
    fills = _fills_by_id(system)
    follow_ups = [cid for cid in fills if cid != min(fills, key=_number)]
    assert len(fills) == 2 and max(fills.values()) == 1, fills  # the order and ONE follow-up
    assert len(follow_ups) == 1
    assert bot.get_attr("osm_reissued") == 1  # the redelivered fill re-issued the same id
    assert _held(bot.get_attr("osm_positions")) == {"EUR_USD": -9.0}  # sell 10 (bar 2), buy 1
    assert system["trader"].osm_stats()["redelivered"] >= 1


def _held(positions: dict) -> dict:
    return {symbol: units for symbol, units in positions.items() if units}


def _number(client_id: str) -> int:
    return int(client_id.rsplit("-", 1)[1])


def test_client_ids_go_on_after_a_restart(architectures, tmp_path) -> None:
    system = _run(architectures, tmp_path, die_on=3)
    ids = [_number(c) for c in _fills_by_id(system)]
    assert len(ids) == len(set(ids))
    assert all(c.startswith(f"bot-{system.run_id}-") for c in _fills_by_id(system))


def test_on_save_that_cannot_be_stored_is_counted_and_survived(architectures, tmp_path) -> None:
    system = architectures(broker_factory=BROKER, heartbeat=0.2, state_dir=tmp_path / "s")
    system.add_brain("u", base=Unsaveable)
    system["u"].subscribe(M1, 10)
    system.stream(["EUR_USD"], seed=5, speed=600, bars=8)
    wait_for(lambda: system["router"].progress()["finished"], timeout=60, what="the feed's end")
    wait_for(lambda: system["u"].get_attr("bars") >= 5, what="bars")
    stats = system["u"].osm_stats()
    assert stats["dropped"].get("on_save") == 1
    point = Journal(system.journal.path).recovery_point("u")
    assert point is not None and point["user"]["bars"] == system["u"].get_attr("bars")
