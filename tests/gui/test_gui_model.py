"""The chart model and the blotter: pure Python, no Qt, no osBrain."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from osmarkets.brokers.base import OrderEvent
from osmarkets.data.series import frame_to_records
from osmarkets.data.types import Bar, Tick
from osmarkets.gui.bridge import GuiState
from osmarkets.gui.model import Blotter, CandleModel, IndicatorSpec
from osmarkets.indicators import bollinger, ema, macd, rsi, sma

MIN = 60_000_000_000
T0 = 1_704_186_000_000_000_000  # 2024-01-02 09:00 UTC


def make_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, 2e-4, n))
    index = pd.DatetimeIndex(pd.to_datetime(T0 + MIN * np.arange(n), utc=True), name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + wick,
            "low": np.minimum(open_, close) - wick,
            "close": close,
            "volume": rng.integers(1, 100, n).astype(float),
        },
        index=index,
    )


def test_bars_appended_in_order_with_their_ohlc():
    frame = make_bars(50)
    model = CandleModel(("EUR_USD", 1, "Minutes"), capacity=8)  # forces several resizes
    for seq, rec in enumerate(frame_to_records(frame), start=1):
        assert model.add_bar(tuple(rec), seq)
    assert model.completed == len(model) == 50
    w = model.window(0, 1_000)
    np.testing.assert_array_equal(w.open, frame["open"].to_numpy())
    np.testing.assert_array_equal(w.high, frame["high"].to_numpy())
    np.testing.assert_array_equal(w.low, frame["low"].to_numpy())
    np.testing.assert_array_equal(w.close, frame["close"].to_numpy())
    assert model.seq == 50 and model.dirty


def test_duplicate_and_old_bars_are_ignored():
    model = CandleModel("EUR_USD M1")
    records = frame_to_records(make_bars(5))
    for seq, rec in enumerate(records, start=1):
        model.add_bar(tuple(rec), seq)
    assert model.add_bar(tuple(records[2]), 3)  # old sequence number: ignored, no gap
    model.add_bar(tuple(records[1]))  # no seq, but older time: ignored
    assert model.completed == 5


def test_gap_in_sequence_is_reported_and_history_fills_it():
    records = frame_to_records(make_bars(10))
    model = CandleModel("EUR_USD M1")
    for seq in (1, 2, 3):
        model.add_bar(tuple(records[seq - 1]), seq)
    assert model.add_bar(tuple(records[6]), 7) is False  # bars 4..6 lost
    assert model.gaps == 1
    model.load(records[:7], seq=7)  # the Router's history
    assert model.completed == 7
    np.testing.assert_array_equal(model.bars()["time"], records["time"][:7])
    assert model.add_bar(tuple(records[7]), 8)
    assert model.completed == 8


def test_ticks_build_the_forming_bar_until_the_router_completes_it():
    model = CandleModel("EUR_USD M1")
    model.load(frame_to_records(make_bars(3)), seq=3)
    start = T0 + 3 * MIN
    quotes = [(1.1000, 1.1002), (1.1010, 1.1012), (1.0990, 1.0992), (1.1004, 1.1006)]
    for k, (bid, ask) in enumerate(quotes):
        model.add_tick(Tick(start + k * 1_000_000_000, bid, ask))
    bar = model.forming
    assert bar is not None and bar.time == start
    mids = [(b + a) / 2 for b, a in quotes]
    assert (bar.open, bar.high, bar.low, bar.close) == pytest.approx(
        (mids[0], max(mids), min(mids), mids[-1])
    )
    assert bar.volume == 4
    assert len(model) == 4
    w = model.window(0, 10)
    assert w.close[-1] == pytest.approx(mids[-1]) and w.time[-1] == start
    # the Router's completed bar for that minute replaces the forming one
    model.add_bar(Bar(start, 1.1, 1.1012, 1.0990, 1.1004, 4.0), 4)
    assert model.forming is None and len(model) == model.completed == 4
    # a tick of the next minute starts a new forming bar
    model.add_tick(Tick(start + MIN + 5, 1.2, 1.2002))
    assert model.forming is not None and len(model) == 5


def test_bad_ticks_are_dropped_and_counted():
    model = CandleModel("EUR_USD M1")
    model.add_tick(Tick(T0, 1.1, 1.1002))
    model.add_tick(Tick(T0 + 1, float("nan"), 1.1))
    model.add_tick(Tick(T0 + 2, 1.2, 1.1))  # bid above ask
    model.add_tick(Tick(T0 - MIN, 1.1, 1.1002))  # backwards
    assert model.dropped_ticks == 3 and model.forming.volume == 1


def test_indicators_match_the_vectorised_functions():
    frame = make_bars(400, seed=3)
    close = frame["close"].to_numpy()
    model = CandleModel("EUR_USD M1")
    records = frame_to_records(frame)
    model.load(records[:300], seq=300)  # bulk path
    for seq, rec in enumerate(records[300:], start=301):
        model.add_bar(tuple(rec), seq)  # incremental path
    w = model.window(0, 400)
    np.testing.assert_allclose(w.lines["SMA 20:value"], sma(close, 20), rtol=1e-10)
    np.testing.assert_allclose(w.lines["EMA 50:value"], ema(close, 50), rtol=1e-10)
    np.testing.assert_allclose(w.lines["RSI 14:value"], rsi(close, 14), rtol=1e-9)
    bands = bollinger(close, 20, 2.0)
    np.testing.assert_allclose(w.lines["BB 20,2.0:upper"], bands.upper, rtol=1e-10)
    m = macd(close, 12, 26, 9)
    np.testing.assert_allclose(w.lines["MACD 12,26,9:signal"], m.signal, rtol=1e-8, atol=1e-12)
    # the forming bar gets the value it would have as the next bar, without changing state
    model.add_tick(Tick(int(records["time"][-1]) + MIN, 1.3, 1.3))
    w2 = model.window(0, 401)
    expected = sma(np.r_[close, 1.3], 20)[-1]
    assert w2.lines["SMA 20:value"][-1] == pytest.approx(expected)
    assert model.window(0, 400).lines["SMA 20:value"][-1] == pytest.approx(sma(close, 20)[-1])


def test_max_bars_drops_the_oldest():
    records = frame_to_records(make_bars(100))
    model = CandleModel("EUR_USD M1", max_bars=40)
    for seq, rec in enumerate(records, start=1):
        model.add_bar(tuple(rec), seq)
    assert model.completed <= 40
    assert model.bars()["time"][-1] == records["time"][-1]
    np.testing.assert_allclose(
        model.window(0, 40).lines["SMA 20:value"][-1], sma(records["close"], 20)[-1]
    )


def test_fills_become_markers_on_the_bar_holding_them():
    model = CandleModel("EUR_USD M1")
    model.load(frame_to_records(make_bars(10)), seq=10)
    model.add_fill(OrderEvent("filled", "a", "EUR_USD", "buy", 1000, 1.1, time=T0 + 4 * MIN + 7))
    model.add_fill(OrderEvent("filled", "b", "GBP_USD", "buy", 1000, 1.3, time=T0))  # other
    model.add_fill(OrderEvent("accepted", "c", "EUR_USD", "sell", 1000, time=T0))  # not a fill
    mk = model.markers()
    assert list(mk.x) == [4] and list(mk.side) == [1] and list(mk.price) == [1.1]
    assert len(model.markers(5, 10).x) == 0


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="price"):
        CandleModel("EUR_USD M1", price="last")
    with pytest.raises(ValueError, match="max_bars"):
        CandleModel("EUR_USD M1", max_bars=1)
    with pytest.raises(ValueError, match="indicator kind"):
        IndicatorSpec("vwap")
    with pytest.raises(ValueError, match="period"):
        IndicatorSpec("sma", (0,))
    records = frame_to_records(make_bars(5))
    with pytest.raises(ValueError, match="row 3"):
        CandleModel("EUR_USD M1").load(records[[0, 1, 2, 1, 4]])
    with pytest.raises(ValueError, match="dtype"):
        CandleModel("EUR_USD M1").load(np.zeros(3))


def test_bid_and_ask_candles():
    frame = make_bars(30)
    for side, sign in (("bid", -1), ("ask", 1)):
        for col in ("open", "high", "low", "close"):
            frame[f"{side}_{col}"] = frame[col] + sign * 1e-4
    model = CandleModel("EUR_USD M1", price="bid")
    model.load(frame_to_records(frame), seq=30)
    np.testing.assert_allclose(model.window(0, 30).close, frame["bid_close"].to_numpy())
    model.set_price("ask")
    np.testing.assert_allclose(model.window(0, 30).close, frame["ask_close"].to_numpy())
    np.testing.assert_allclose(
        model.window(0, 30).lines["SMA 20:value"], sma(frame["ask_close"].to_numpy(), 20)
    )


def test_readout_has_ohlc_and_indicators():
    model = CandleModel("EUR_USD M1")
    frame = make_bars(30)
    model.load(frame_to_records(frame), seq=30)
    info = model.readout(25)
    assert info["close"] == frame["close"].iloc[25] and not info["forming"]
    assert info["SMA 20:value"] == pytest.approx(frame["close"].iloc[6:26].mean())
    assert model.readout(30) is None and model.readout(-1) is None


def test_blotter_nets_positions_and_realises_pnl():
    blotter = Blotter()

    def fill(cid: str, side: str, size: float, price: float) -> None:
        blotter.add_event(OrderEvent("filled", cid, "EUR_USD", side, size, price))

    fill("1", "buy", 1000, 1.10)
    fill("2", "buy", 1000, 1.20)
    pos = blotter.positions["EUR_USD"]
    assert pos.units == 2000 and pos.average == pytest.approx(1.15)
    fill("3", "sell", 500, 1.25)
    assert pos.realized == pytest.approx(0.10 * 500) and pos.units == 1500
    fill("4", "sell", 2500, 1.05)  # closes 1500 at a loss, opens 1000 short at 1.05
    assert pos.realized == pytest.approx(50 - 0.10 * 1500)
    assert pos.units == -1000 and pos.average == pytest.approx(1.05)
    assert blotter.unrealized("EUR_USD", 1.00) == pytest.approx(50.0)
    fill("5", "buy", 1000, 1.00)
    assert pos.units == 0 and math.isnan(pos.average)
    blotter.add_event(OrderEvent("rejected", "6", "EUR_USD", "buy", 1e9, reason="size"))
    assert blotter.orders["6"]["reason"] == "size" and blotter.fills == 5


def test_gui_state_applies_bridge_messages():
    records = frame_to_records(make_bars(5))
    state = GuiState()
    from osmarkets.data.timeframes import BarSeriesID

    bsid = BarSeriesID("EUR_USD", 1, "Minutes")
    state.apply(
        [
            ("hello", "gui-1", False),
            ("history", bsid, records[:4], 4),
            ("bar", bsid, 5, tuple(records[4])),
            ("ticks", "EUR_USD", [(int(records["time"][4]) + MIN, 1.2, 1.2002, 0.0, 0.0)]),
            (
                "account",
                [
                    OrderEvent(
                        "filled", "x", "EUR_USD", "buy", 10, 1.1, time=int(records["time"][2])
                    )
                ],
                {"equity": 5.0},
            ),
            ("series", ["EUR_USD:M1"], ["EUR_USD"]),
            ("status", [{"name": "router", "running": True}]),
            ("error", "boom"),
        ]
    )
    model = state.models[bsid]
    assert state.connected and model.completed == 5 and len(model) == 6
    assert state.last_price["EUR_USD"] == pytest.approx(1.2001)
    assert list(model.markers().x) == [2] and state.blotter.account["equity"] == 5.0
    assert state.series == ["EUR_USD:M1"] and state.errors == ["boom"]
