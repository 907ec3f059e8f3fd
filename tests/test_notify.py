"""Notifications (osmarkets.notify) through Apprise to a real JSON webhook receiver on
127.0.0.1: rules, batching, retries, a hanging channel, thresholds, the daily summary."""

from __future__ import annotations

import datetime
import time

import pytest

from osmarkets.brokers.base import OrderEvent
from osmarkets.notify import Notifier, Rules
from osmarkets.testing.webhook import WebhookReceiver


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s")


Receiver = WebhookReceiver


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def fill(size=1000.0, reason="") -> OrderEvent:
    return OrderEvent("filled", "sma-1", "EUR_USD", "buy", size, 1.1, 1, reason, 0.0, "sma")


def test_fills_and_rejections_go_out_in_one_batch(receiver):
    notifier = Notifier([receiver.url], {"batch_seconds": 0.3})
    notifier.on_event(fill())
    notifier.on_event(OrderEvent("rejected", "sma-2", "EUR_USD", "sell", 500.0, reason="no "
                                 "margin", brain="sma"))  # fmt: skip
    notifier.on_event(OrderEvent("rejected", "sma-3", "", "", 0.0, reason="unknown order"))
    notifier.on_event(OrderEvent("accepted", "sma-4", "EUR_USD", "buy", 1.0, brain="sma"))
    wait_for(lambda: notifier.status()["sent"] == 2)
    notifier.close()
    assert len(receiver.bodies) == 1  # one send for both
    assert receiver.messages() == [
        "[fill] sma: buy 1000 EUR_USD at 1.1",
        "[rejection] sma: sell 500 EUR_USD rejected: no margin",
    ]  # a refused cancel request and an acceptance are not told
    assert receiver.bodies[0]["title"] == "osMarkets: fill, rejection"


def test_rules_switch_kinds_off():
    sent: list[str] = []
    notifier = Notifier(rules={"fills": False, "batch_seconds": 0},
                        send=lambda title, body: sent.append(body) or True)  # fmt: skip
    notifier.on_event(fill())
    notifier.on_log("ERROR", "trader: the broker failed\nTraceback ...\nValueError: no margin")
    notifier.on_log("WARNING", "only a warning")
    notifier.on_agent("trader", "restarted", "pid 12")
    wait_for(lambda: notifier.status()["sent"] == 2)
    notifier.close()
    assert "\n".join(sent).splitlines() == [
        "[error] trader: the broker failed ValueError: no margin",
        "[restart] agent trader restarted: pid 12",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "name"),
    [({"nope": 1}, "nope"), ({"drawdown": 1.5}, "drawdown"), ({"drawdown": True}, "drawdown"),
     ({"daily_loss": -1}, "daily_loss"), ({"summary_at": "25:99"}, "summary_at"),
     ({"summary_zone": "Mars/Base"}, "summary_zone"), ({"queue_size": 0}, "queue_size"),
     ({"fills": "yes"}, "fills"), ({"batch_seconds": -1}, "batch_seconds")],
)  # fmt: skip
def test_bad_rules_are_named(rules, name):
    with pytest.raises(ValueError, match=name):
        Rules.from_mapping(rules)


def test_an_unknown_apprise_url_is_refused_at_once():
    with pytest.raises(ValueError, match="Apprise"):
        Notifier(["nosuchscheme://x"])


def test_a_failing_channel_is_retried_counted_and_nothing_is_lost(receiver):
    receiver.status = 500
    notifier = Notifier([receiver.url], {"batch_seconds": 0, "retries": 20,
                                         "retry_backoff": 0.05})  # fmt: skip
    notifier.on_event(fill())
    wait_for(lambda: notifier.status()["failures"] >= 2)
    receiver.status = 200  # the channel comes back
    wait_for(lambda: notifier.status()["sent"] == 1)
    notifier.close()
    assert receiver.messages() == ["[fill] sma: buy 1000 EUR_USD at 1.1"]
    assert notifier.status()["dropped"] == 0 and notifier.status()["last_error"]


def test_a_batch_that_exhausts_its_retries_waits_and_goes_later_not_dropped(receiver):
    receiver.status = 500
    notifier = Notifier([receiver.url], {"batch_seconds": 0, "retries": 0})
    for size in (1, 2, 3):
        notifier.on_event(fill(size))
    wait_for(lambda: notifier.status()["failures"] >= 2)  # tried, waited, tried again
    assert notifier.status()["dropped"] == 0 and notifier.status()["queued"] == 3
    receiver.status = 200
    wait_for(lambda: notifier.status()["sent"] == 3)
    notifier.close()
    assert [m.split(" at ")[0] for m in receiver.messages()] == [
        "[fill] sma: buy 1 EUR_USD", "[fill] sma: buy 2 EUR_USD", "[fill] sma: buy 3 EUR_USD"
    ]  # fmt: skip


def test_a_hanging_channel_never_blocks_and_a_full_queue_drops_and_counts(receiver):
    receiver.hold.clear()  # the receiver hangs
    notifier = Notifier([receiver.url], {"batch_seconds": 0, "queue_size": 5, "retries": 0})
    notifier.on_event(fill(1))  # taken by the worker, stuck in the send
    wait_for(lambda: notifier.status()["sending"] == 1)
    for size in range(2, 12):  # the caller never waits for the channel
        notifier.on_event(fill(size))
    status = notifier.status()
    assert (status["dropped"], status["queued"], status["sending"]) == (5, 5, 1)
    receiver.hold.set()
    wait_for(lambda: notifier.status()["sent"] == 6)
    notifier.close()


def test_secrets_never_reach_the_channel():
    sent: list[str] = []
    notifier = Notifier(rules={"batch_seconds": 0}, secrets=["s3cr3t-token"],
                        send=lambda title, body: sent.append(body) or True)  # fmt: skip
    notifier.on_log("ERROR", "broker refused token s3cr3t-token")
    wait_for(lambda: sent)
    notifier.close()
    assert sent == ["[error] broker refused token ***"]


def test_drawdown_and_daily_loss_are_told_once_per_crossing():
    sent: list[str] = []
    day = datetime.datetime(2024, 3, 4, 12, tzinfo=datetime.UTC).timestamp()
    notifier = Notifier(rules={"drawdown": 0.05, "daily_loss": 300, "batch_seconds": 0},
                        send=lambda title, body: sent.append(body) or True)  # fmt: skip
    # 9,650 crosses both (5.4 % below 10,200; 350 lost today); 9,600 tells nothing new;
    # 10,100 recovers from both; 9,500 crosses both again
    for equity in (10_000, 10_200, 9_800, 9_650, 9_600, 10_100, 9_500):
        notifier.on_equity(equity, day)
    notifier.on_equity(9_400, day + 86_400)  # a new day: nothing lost yet today
    wait_for(lambda: len("\n".join(sent).splitlines()) == 4)
    notifier.close()
    lines = "\n".join(sent).splitlines()
    assert [line.split("]")[0] + "]" for line in lines] == [
        "[drawdown]", "[daily_loss]", "[drawdown]", "[daily_loss]",
    ]  # fmt: skip
    assert "5.4% from the peak 10,200.00" in lines[0] and "lost 350.00 today" in lines[1]


def test_the_daily_summary_is_due_once_a_day_at_its_time_in_its_zone():
    clock = [datetime.datetime(2024, 3, 4, 21, 59, tzinfo=datetime.UTC).timestamp()]
    sent: list[str] = []
    notifier = Notifier(rules={"summary_at": "17:00", "summary_zone": "America/New_York",
                               "batch_seconds": 0},
                        send=lambda title, body: sent.append(body) or True,
                        clock=lambda: clock[0])  # fmt: skip
    assert not notifier.summary_due()  # 16:59 in New York
    clock[0] += 60
    assert notifier.summary_due()
    notifier.summary("P&L: sma +12.50; positions: none; orders 3; rejections 0")
    assert not notifier.summary_due()  # sent today
    clock[0] += 86_400
    assert notifier.summary_due()
    wait_for(lambda: sent)
    notifier.close()
    assert sent == ["[summary] P&L: sma +12.50; positions: none; orders 3; rejections 0"]


def test_the_secret_parts_of_apprise_urls_are_found_as_written() -> None:
    from osmarkets.agents.informer import url_secrets

    found = url_secrets([
        "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
        "json://user:pw@127.0.0.1:8080/hook?token=s%20ecret42",
    ])  # fmt: skip
    for secret in ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "123456789", "T1JJ3T3L2",
                   "TIiajkdnlazkcOXrIdevi7FQ", "pw", "s%20ecret42", "s ecret42"):  # fmt: skip
        assert secret in found, secret
    notifier = Notifier(send=lambda title, body: True, secrets=found)
    assert notifier._scrub("bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw failed") == (
        "bot ***:*** failed"
    )
    notifier.close()
