"""The Informer agent on a real deployment, against a real JSON webhook receiver on 127.0.0.1:
fills, rejections, errors, controls, agent restarts and deaths, the daily summary (on a clock
the test sets), a failing and a hanging channel (trading goes on), secrets never sent, bad
options refused."""

from __future__ import annotations

import datetime
import functools
import os
import signal
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import make_bars, pid_alive, wait_for
from operator_brains import Buyer, Faulty

from osmarkets.architecture import Architecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.testing.webhook import WebhookReceiver

M1 = ("EUR_USD", 1, "Minutes")
BROKER = functools.partial(SimulatedBroker, 10_000_000)
FAST = {"batch_seconds": 0.2, "retry_backoff": 0.1}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as made:
        yield made


def deploy(architectures: Any, receiver: WebhookReceiver, brains: dict[str, type] | None = None,
           rules: dict[str, Any] | None = None, url: str | None = None,
           risk: dict[str, Any] | None = None) -> Any:  # fmt: skip
    system = architectures(
        Architecture, broker_factory=BROKER, risk=risk,
        informer={"urls": [url or receiver.url], "rules": {**FAST, **(rules or {})}},
    )  # fmt: skip
    for name, cls in (brains or {"a": Buyer}).items():
        system.add_brain(name, cls)
        system[name].subscribe(M1, 10)
    system.stream(data={"EUR_USD": make_bars(5000)}, speed=120)
    return system


def told(receiver: WebhookReceiver, text: str, timeout: float = 30.0) -> list[str]:
    return wait_for(lambda: [m for m in receiver.messages() if text in m], timeout, repr(text))


def bars_of(system: Any, brain: str = "a") -> int:
    return int(system[brain].osm_stats()["bars"])


def test_fills_rejections_and_controls_are_told(architectures, receiver):
    system = deploy(architectures, receiver, risk={"max_position": 250})
    told(receiver, "[fill] a: buy 100 EUR_USD at ")
    told(receiver, "[rejection] a: buy 100 EUR_USD rejected: risk: position")
    system.pause("a")
    told(receiver, "[control] paused Brain a")
    bars = bars_of(system)
    wait_for(lambda: bars_of(system) >= bars + 3, 60, "bars while paused")
    refused = [e for e in system["a"].osm_event_list() if e.reason == "paused"]
    assert refused  # refused, and not told one by one: the pause was
    assert not [m for m in receiver.messages() if "rejected: paused" in m]
    system.flatten("a")
    told(receiver, "[control] flattening Brain a")
    told(receiver, "[fill] a: sell ")
    status = system["informer"].status()
    assert status["sent"] >= 4 and status["failures"] == 0 and status["dropped"] == 0
    assert status["updates"] > 0 and status["statuses"] > 0 and status["alerts"] > 0
    # the Informer's counters show in the architecture's table too
    row = system.status().loc["informer"]
    assert row["notifications"]["sent"] >= 4


def test_errors_restarts_and_deaths_are_told(architectures, receiver):
    system = deploy(architectures, receiver, {"a": Buyer, "bad": Faulty})
    told(receiver, "faulty brain: bar three")
    assert any(m.startswith("[error]") for m in told(receiver, "faulty brain"))
    pid = system["a"].osm_stats()["pid"]
    os.kill(pid, signal.SIGKILL)
    told(receiver, "[restart] agent a restarted")
    feeder = system._agents["feeder"].process.pid
    os.kill(feeder, signal.SIGKILL)  # not restartable in a plain Architecture
    told(receiver, "[death] agent feeder died")


def test_the_daily_summary_is_sent_once_a_day_at_its_time(architectures, receiver):
    zone = ZoneInfo("Europe/London")
    system = deploy(architectures, receiver,
                    rules={"summary_at": "17:00", "summary_zone": "Europe/London"})  # fmt: skip
    told(receiver, "[fill] a: buy")
    informer = system["informer"]

    def at(day: int, hour: int, minute: int) -> float:
        # days to come: a deployment started after today's summary time skips today's
        return datetime.datetime(2030, 1, day, hour, minute, tzinfo=zone).timestamp()

    assert informer.check_summary(at(3, 16, 59)) is False
    assert informer.check_summary(at(3, 17, 1)) is True
    summary = told(receiver, "[summary] daily summary: a (running): P&L ")[0]
    assert " fills, " in summary and "orders" in summary and "positions: EUR_USD" in summary
    assert informer.check_summary(at(3, 23, 0)) is False  # once a day
    assert "daily summary" in informer.send_summary()  # asked for: sent at once, as well
    assert informer.check_summary(at(4, 17, 0)) is True
    wait_for(lambda: len([m for m in receiver.messages() if "[summary]" in m]) == 3, 30)


def test_a_failing_channel_is_counted_and_trading_goes_on(architectures, receiver):
    receiver.status = 500
    system = deploy(architectures, receiver, rules={"retries": 1})
    status = wait_for(lambda: (s := system["informer"].status())["failures"] >= 2 and s, 30)
    assert status["last_error"]
    bars, fills = bars_of(system), len(system["trader"].record()["fills"])
    wait_for(lambda: bars_of(system) >= bars + 3, 60, "bars while the channel fails")
    assert len(system["trader"].record()["fills"]) > fills
    receiver.status = 200
    told(receiver, "[fill] a: buy")  # a later batch gets through


def test_a_hanging_channel_keeps_the_newest_until_its_queue_is_full(architectures, receiver):
    receiver.hold.clear()  # answers nothing
    system = deploy(architectures, receiver, rules={"queue_size": 5, "max_per_minute": 1000})
    status = wait_for(lambda: (s := system["informer"].status())["dropped"] > 0 and s, 60)
    assert status["queued"] <= 5 + status["sending"] + 50  # bounded: the queue and one batch
    bars = bars_of(system)
    wait_for(lambda: bars_of(system) >= bars + 3, 60, "bars while the channel hangs")
    receiver.hold.set()
    wait_for(lambda: receiver.messages(), 60, "the held batch delivered")


def test_no_secret_of_the_channel_reaches_a_message_or_the_configuration(architectures, receiver):
    secret = "S3cretT0ken42"
    url = receiver.url.replace("json://", f"json://user:{secret}@")

    class Leaky(Faulty):  # an error whose text holds the channel's token
        def on_new_bar(self, series: Any) -> None:
            raise RuntimeError(f"cannot reach json://user:{secret}@example")

    system = deploy(architectures, receiver, {"leaky": Leaky}, url=url)
    line = told(receiver, "cannot reach json://user:")[0]
    assert secret not in line and "***" in line
    assert all(secret not in m for m in receiver.messages())
    assert secret not in repr(system["informer"].get_attr("osm_cfg"))
    assert secret not in repr(system["informer"].status())


def test_the_informer_survives_malformed_feeds_and_is_restarted(architectures, receiver):
    system = deploy(architectures, receiver)
    informer = system["informer"]
    for garbage in (b"", b"\x93\xa6status", b"\xff" * 100, b"[1, 2, 3]"):
        informer.osm_on_status(garbage)
    informer.osm_on_alert(b"NOTALEVEL line")
    informer.osm_on_alert(b"ERROR \xff\xfe")
    assert informer.status()["malformed"] >= 5
    told(receiver, "[fill] a: buy")
    pid = informer.osm_stats()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10)
    wait_for(lambda: system.status().loc["informer"]["restarts"] >= 1, 30, "informer restart")
    count = len(receiver.messages())
    system.pause("a")
    told(receiver, "[control] paused Brain a")
    assert len(receiver.messages()) > count


@pytest.mark.parametrize(
    ("informer", "message"),
    [
        ("json://x", "informer: expected a mapping"),
        ({"urls": []}, "expected at least one Apprise URL"),
        ({"urls": "json://127.0.0.1/hook"}, "expected a list of Apprise URLs"),
        ({"urls": ["nope://secret-token-1234"]}, r"informer urls\[0\]: Apprise cannot use it"),
        ({"urls": ["json://127.0.0.1/h"], "rules": {"bogus": 1}}, "unknown key"),
        ({"urls": ["json://127.0.0.1/h"], "rules": {"drawdown": 2}}, "rules drawdown"),
        ({"urls": ["json://127.0.0.1/h"], "colour": "red"}, "colour"),
    ],
)
def test_bad_informer_options_are_refused_with_one_clear_error(architectures, informer, message):
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        architectures(Architecture, broker_factory=BROKER, informer=informer)
    assert "secret-token-1234" not in str(caught.value)
