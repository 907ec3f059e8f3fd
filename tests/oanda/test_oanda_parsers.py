import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oanda_support import load

from osmarkets.brokers.oanda.instruments import Instrument, parse_instruments
from osmarkets.brokers.oanda.parsers import (
    Heartbeat,
    Price,
    candles_to_frame,
    format_time,
    order_response_events,
    parse_account_summary,
    parse_order,
    parse_position,
    parse_price,
    parse_stream_message,
    parse_time,
    parse_trade,
    transaction_events,
)

H = "oandapyV20/"
M = "mab05k_oanda-client/"


# -- times ---------------------------------------------------------------------------------
def test_parse_time_keeps_nanoseconds():
    ns = parse_time("2016-10-27T08:38:43.094548890Z")
    assert ns % 1_000_000_000 == 94548890
    assert pd.Timestamp(ns, tz="UTC") == pd.Timestamp("2016-10-27T08:38:43.094548890Z")


def test_parse_time_forms():
    base = parse_time("2017-01-01T00:00:00Z")
    assert base == pd.Timestamp("2017-01-01", tz="UTC").value
    assert parse_time("2017-01-01T01:00:00+01:00") == base
    assert parse_time("1483228800.000000000") == base
    assert parse_time("1483228800") == base


@pytest.mark.parametrize("bad", ["", "yesterday", "2017-02-30T00:00:00Z", 17, None])
def test_parse_time_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="time"):
        parse_time(bad)


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=4_000_000_000 * 10**9))
def test_format_time_round_trips(ns):
    text = format_time(ns)
    assert text.endswith("Z") and len(text.split(".")[1]) == 10
    assert parse_time(text) == ns


# -- candles -------------------------------------------------------------------------------
def test_mid_candles_fixture():
    body = load(H + "candles_DE30_EUR_M5_mid.json")
    frame = candles_to_frame(body)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert len(frame) == len(body["candles"])
    first = body["candles"][0]
    assert frame["open"].iloc[0] == float(first["mid"]["o"])
    assert frame["high"].iloc[0] == float(first["mid"]["h"])
    assert frame["volume"].iloc[0] == first["volume"]
    assert frame.index[0] == pd.Timestamp(first["time"])


def test_ask_candles_fixture_drops_incomplete():
    body = load(M + "instrument_candles.json")
    complete = [c for c in body["candles"] if c["complete"]]
    assert len(complete) < len(body["candles"])  # the fixture ends with complete:false
    frame = candles_to_frame(body)
    assert len(frame) == len(complete)
    assert frame.index[-1] == pd.Timestamp(complete[-1]["time"])
    assert "ask_close" in frame and "bid_close" not in frame
    # with only one side, open..close are that side's prices
    np.testing.assert_array_equal(frame["close"], frame["ask_close"])
    assert len(candles_to_frame(body, include_incomplete=True)) == len(body["candles"])


def test_bid_ask_candles_give_mid():
    candles = [
        {
            "time": "2024-01-01T00:00:00.000000000Z",
            "volume": 3,
            "complete": True,
            "bid": {"o": "1.0", "h": "1.2", "l": "0.9", "c": "1.1"},
            "ask": {"o": "1.2", "h": "1.4", "l": "1.1", "c": "1.3"},
        },
    ]
    frame = candles_to_frame(candles)
    assert frame["open"].iloc[0] == pytest.approx(1.1)
    assert frame["close"].iloc[0] == pytest.approx(1.2)
    assert list(frame.columns)[5:] == [
        "bid_open",
        "bid_high",
        "bid_low",
        "bid_close",
        "ask_open",
        "ask_high",
        "ask_low",
        "ask_close",
    ]


def test_empty_candles_give_empty_frame():
    frame = candles_to_frame({"candles": []})
    assert len(frame) == 0 and frame.index.name == "time"


@pytest.mark.parametrize(
    "candle, field",
    [
        ({"volume": 1, "complete": True, "mid": {"o": "1", "h": "1", "l": "1", "c": "1"}}, "time"),
        ({"time": "2024-01-01T00:00:00Z", "volume": 1}, "no mid, bid or ask"),
        (
            {"time": "2024-01-01T00:00:00Z", "mid": {"o": "x", "h": "1", "l": "1", "c": "1"}},
            "mid.o",
        ),
    ],
)
def test_bad_candles_name_the_field(candle, field):
    with pytest.raises(ValueError, match=field):
        candles_to_frame([candle])


def test_candles_out_of_order_rejected():
    c1 = {"time": "2024-01-01T00:01:00Z", "mid": {"o": "1", "h": "1", "l": "1", "c": "1"}}
    c2 = {**c1, "time": "2024-01-01T00:00:00Z"}
    with pytest.raises(ValueError, match="increasing"):
        candles_to_frame([c1, c2])


# -- prices --------------------------------------------------------------------------------
def test_pricing_fixture_2016_format():
    prices = [parse_price(p) for p in load(H + "pricing.json")["prices"]]
    eur = prices[0]
    assert eur.instrument == "EUR_USD" and eur.tradeable  # no tradeable field: from status
    assert eur.tick.bid == 1.12157 and eur.tick.ask == 1.12170
    assert eur.tick.bid_volume == 10000000
    assert eur.closeout_bid == 1.12153
    assert eur.tick.time == parse_time("2016-10-05T05:28:16.729643492Z")


def test_pricing_fixture_non_tradeable_flagged():
    price = parse_price(load(M + "pricing_pricing.json")["prices"][0])
    assert price.tradeable is False
    assert price.tick.spread == pytest.approx(1.29470 - 1.29360)


def test_stream_lines_fixture():
    messages = [parse_stream_message(m) for m in load(H + "pricing_stream.ndjson")]
    kinds = [type(m) for m in messages]
    assert kinds == [Price, Heartbeat, Price, Price]
    assert messages[0].instrument == "EUR_JPY" and messages[0].tick.bid == 114.295
    # a line without a type is a price (2016 format)
    line = load(H + "pricing_stream.ndjson")[0]
    del line["type"]
    assert isinstance(parse_stream_message(line), Price)


def test_transaction_stream_heartbeats_fixture():
    beats = [parse_stream_message(m) for m in load(H + "transactions_stream_heartbeats.ndjson")]
    assert all(isinstance(b, Heartbeat) for b in beats)
    assert beats[0].last_transaction_id == "2311"
    assert beats[1].time - beats[0].time > 5 * 10**9


def test_unknown_stream_object_comes_back_as_dict():
    assert parse_stream_message({"type": "ORDER_FILL", "id": "5"}) == {
        "type": "ORDER_FILL",
        "id": "5",
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"bids": [{"price": "1"}], "asks": [{"price": "1.1"}], "time": "2024-01-01T00:00:00Z"},
        {"instrument": "EUR_USD", "bids": [], "asks": [{"price": "1"}], "time": "1"},
        {
            "instrument": "EUR_USD",
            "bids": [{"price": "-1"}],
            "asks": [{"price": "1"}],
            "time": "2024-01-01T00:00:00Z",
        },
    ],
)
def test_bad_prices_rejected(bad):
    with pytest.raises(ValueError, match="price"):
        parse_price(bad)


# -- order outcomes ------------------------------------------------------------------------
def test_market_fill_fixture():
    body = load(M + "order_market_order.json")
    events = order_response_events(201, body, "id", "EUR_USD", "buy", 1000)
    assert [e.kind for e in events] == ["accepted", "filled"]
    fill = events[1]
    assert fill.price == 1.16555 and fill.size == 1000 and fill.side == "buy"
    assert fill.client_id == "id" and fill.commission == 0.0


def test_market_fill_with_tp_sl_fixture():
    body = load(H + "market_order_201_filled_with_tp_sl.json")
    events = order_response_events(201, body, "c1", "EUR_USD", "buy", 10000)
    assert events[-1].kind == "filled" and events[-1].price == 1.05563


@pytest.mark.parametrize(
    "name, reason",
    [
        (M + "order_error_market_halted.json", "MARKET_HALTED"),
        (H + "market_order_201_cancelled_STOP_LOSS_ON_FILL_LOSS.json", "STOP_LOSS_ON_FILL_LOSS"),
    ],
)
def test_201_cancel_fixtures_become_rejects(name, reason):
    events = order_response_events(201, load(name), "id", "EUR_USD", "buy", 1000)
    assert [(e.kind, e.reason) for e in events] == [("rejected", reason)]


def test_400_reject_fixture():
    events = order_response_events(
        400, load(M + "order_error_order_rejected.json"), "x", "GBP_USD", "buy", 101
    )
    assert [(e.kind, e.reason) for e in events] == [("rejected", "PRICE_PRECISION_EXCEEDED")]
    assert events[0].time == parse_time("2019-01-01T00:00:00.000000000Z")


def test_400_without_reject_transaction_uses_message():
    events = order_response_events(
        400, {"errorMessage": "Invalid value specified for 'order.instrument'"}, "x", "X", "buy", 1
    )
    assert events[0].kind == "rejected" and "order.instrument" in events[0].reason


def test_pending_limit_fixture_is_accepted():
    events = order_response_events(
        201, load(H + "order_create_limit_201.json"), "x", "EUR_USD", "sell", 100
    )
    assert [e.kind for e in events] == ["accepted"]


@pytest.mark.parametrize("name", [H + "order_cancel_200.json", M + "order_cancel_order.json"])
def test_cancel_fixtures(name):
    tx = load(name)["orderCancelTransaction"]
    events = transaction_events([tx], known={"myID": ("EUR_USD", "sell", 100.0)})
    assert [(e.kind, e.reason) for e in events] == [("cancelled", "CLIENT_REQUEST")]
    if tx.get("clientOrderID") == "myID":
        assert events[0].symbol == "EUR_USD" and events[0].size == 100


def test_transactions_sinceid_fixture_reject_found():
    events = transaction_events(load(M + "transaction_sinceid.json")["transactions"])
    assert events == []  # a position closeout reject has no units: not an order of ours
    hoot = transaction_events(load(H + "transactions_sinceid.json")["transactions"])
    assert all(e.kind in ("filled", "cancelled", "rejected") for e in hoot)


# -- account state -------------------------------------------------------------------------
@pytest.mark.parametrize("name", [H + "account_summary.json", M + "account_account_summary.json"])
def test_account_summary_fixtures(name):
    body = load(name)
    summary = parse_account_summary(body)
    assert summary.balance == float(body["account"]["balance"])
    assert summary.nav == float(body["account"]["NAV"])
    assert summary.open_trade_count == body["account"]["openTradeCount"]
    assert summary.last_transaction_id == body["lastTransactionID"]


def test_positions_fixtures():
    positions = [parse_position(p) for p in load(H + "open_positions.json")["positions"]]
    by = {p.symbol: p for p in positions}
    assert by["DE30_EUR"].units == 10 and by["DE30_EUR"].long_average_price == 10678.3
    assert by["EUR_USD"].units == -100 and math.isnan(by["EUR_USD"].long_average_price)
    flat = parse_position(load(M + "position_open_positions.json")["positions"][0])
    assert flat.units == 0


@pytest.mark.parametrize(
    "name", [H + "open_trades.json", H + "trades_list.json", M + "trade_open_trades.json"]
)
def test_trades_fixtures(name):
    body = load(name)
    trades = [parse_trade(t) for t in body["trades"]]
    assert [t.id for t in trades] == [t["id"] for t in body["trades"]]
    assert trades[0].units == float(body["trades"][0]["currentUnits"])
    assert trades[0].open_time == parse_time(body["trades"][0]["openTime"])


@pytest.mark.parametrize("name", [H + "orders_pending.json", M + "order_pending_orders.json"])
def test_pending_orders_fixtures(name):
    body = load(name)
    orders = [parse_order(o) for o in body["orders"]]
    assert orders[0].price == float(body["orders"][0]["price"])
    assert orders[0].units == float(body["orders"][0]["units"])


# -- instruments ---------------------------------------------------------------------------
def test_instruments_fixtures():
    hoot = parse_instruments(load(H + "account_instruments.json"))
    assert hoot["EUR_USD"].pip_location == -4 and hoot["EUR_USD"].display_precision == 5
    assert hoot["DE30_EUR"].display_precision == 1 and hoot["DE30_EUR"].pip == 1.0
    assert hoot["EUR_USD"].margin_rate == 0.05
    mab = parse_instruments(load(M + "account_instruments.json"))
    assert len(mab) == 70
    assert mab["USD_JPY"].pip_location == -2 and mab["USD_JPY"].display_precision == 3


def test_instrument_formats_prices_and_units():
    eur = parse_instruments(load(H + "account_instruments.json"))["EUR_USD"]
    assert eur.format_price(1.1) == "1.10000"
    assert eur.format_price(1.123456) == "1.12346"
    assert eur.format_price(110.79999999999999) == "110.80000"
    assert eur.format_units(-100.0) == "-100"
    assert eur.format_units(2.5) == "2"  # half to even
    with pytest.raises(ValueError, match="rounds to zero"):
        eur.format_units(0.4)
    with pytest.raises(ValueError, match="price"):
        eur.format_price(-1)
    with pytest.raises(ValueError, match="price"):
        eur.format_price(float("nan"))


def test_instrument_missing_field_named():
    with pytest.raises(ValueError, match="pipLocation"):
        Instrument.from_json({"name": "X", "displayPrecision": 5, "tradeUnitsPrecision": 0})


@settings(max_examples=50)
@given(st.floats(min_value=1e-4, max_value=1e5, allow_nan=False), st.integers(0, 6))
def test_formatted_price_has_display_precision(value, digits):
    inst = Instrument("X", "CURRENCY", "X", -digits, digits, 0, 1.0, 0.05)
    text = inst.format_price(value)
    decimals = text.split(".")[1] if "." in text else ""
    assert len(decimals) == digits
    assert abs(float(text) - value) <= 0.5 * 10**-digits + 1e-9
