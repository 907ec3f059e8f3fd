"""The pure pieces under the OANDA agents, in-process against the sandbox."""

from __future__ import annotations

import pytest
from oanda_arch_support import TOKEN, fast_clock

from osmarkets.brokers.base import make_order
from osmarkets.brokers.oanda import OandaClient, OandaSandbox, candles_to_frame
from osmarkets.brokers.oanda.trading import (
    OandaTradingBroker,
    backfill_ticks,
    brain_of,
    read_token,
    write_token_file,
)
from osmarkets.data.aggregate import TickAggregator


@pytest.fixture
def client():
    with (
        OandaSandbox(token=TOKEN, instruments=["EUR_USD"], seed=2, clock=fast_clock(600.0)) as sb,
        OandaClient(
            TOKEN,
            sb.account_id,
            rest_url=sb.rest_url,
            stream_url=sb.stream_url,
            backoff=0.01,
            max_backoff=0.05,
        ) as c,  # fmt: skip
    ):
        yield c


def test_backfill_ticks_rebuild_the_candles(client) -> None:
    now = client.prices(["EUR_USD"])[0].tick.time
    since = now - 30 * 60_000_000_000 + 17_000_000_000  # mid-minute, half an hour ago
    ticks = backfill_ticks(client, "EUR_USD", since, "M1")
    assert [t.time for t in ticks] == sorted(t.time for t in ticks)
    aggregator = TickAggregator("M1")
    bars = [bar for tick in ticks for bar in aggregator.update(tick)]
    raw = client.candles("EUR_USD", "M1", price="BA", start=since - since % 60_000_000_000,
                         count=100)  # fmt: skip
    candles = candles_to_frame(raw).iloc[1:]  # the first minute was partly seen already
    assert len(bars) == len(candles) - 1 >= 28  # the last bar completes with the next tick
    for bar, (_, row) in zip(bars, candles.iterrows(), strict=False):
        assert bar.bid_open == row.bid_open and bar.ask_close == row.ask_close
        assert bar.bid_high == row.bid_high and bar.ask_low == row.ask_low
    with pytest.raises(ValueError, match="intraday"):
        backfill_ticks(client, "EUR_USD", since, "D")


def test_trading_broker_reports_each_outcome_once(client, tmp_path) -> None:
    state = tmp_path / "state.json"
    broker = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
    assert broker.reconcile().missed_events == []
    events = broker.submit(make_order("bot-1", "buy", 100, "EUR_USD", brain="bot"))
    assert [e.kind for e in events] == ["accepted", "filled"]
    assert broker.poll(force=True) == []  # the fill is not reported a second time
    assert broker.positions == {"EUR_USD": 100.0}
    # a limit order filled while "nobody was running": the next incarnation reports it
    price = client.prices(["EUR_USD"])[0].tick.ask
    broker.submit(make_order("bot-2", "buy", 10, "EUR_USD", "limit", price=price + 0.01))
    fresh = OandaTradingBroker(client, state_path=state)
    found = fresh.reconcile()
    assert [(e.kind, e.client_id, e.brain) for e in found.missed_events] in (
        [],
        [("filled", "bot-2", "bot")],  # already filled on submit (marketable limit)
    )
    assert fresh.positions == {"EUR_USD": 110.0}
    assert fresh.poll(force=True) == []


def test_refused_orders_become_rejected_events(client) -> None:
    broker = OandaTradingBroker(client)
    (event,) = broker.submit(make_order("x-1", "buy", 100, "XAU_EUR"))
    assert event.kind == "rejected" and "XAU_EUR" in event.reason
    live = OandaClient(TOKEN, client.account_id, "live", rest_url=client.rest_url)
    (event,) = OandaTradingBroker(live).submit(make_order("x-2", "buy", 1, "EUR_USD"))
    assert event.kind == "rejected" and "confirm_live" in event.reason


def test_token_file_and_brain_names(tmp_path, monkeypatch) -> None:
    path = write_token_file(tmp_path, "abc")
    assert read_token({"token_file": path}) == "abc"
    monkeypatch.delenv("OANDA_ACCESS_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token_file"):
        read_token({"token_file": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="access_token"):
        read_token({})
    assert brain_of("my-brain-12") == "my-brain" and brain_of("oanda:7") == ""
