"""Streamed backtests (files read chunk by chunk) against the same backtests in memory, and the
compact records and zero-copy series under both."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osmarkets import Brain
from osmarkets.backtest import BacktestError, backtest
from osmarkets.backtest.engine import ReplaySeries, frame_columns
from osmarkets.backtest.records import RecordLog
from osmarkets.brokers.base import Order, OrderEvent
from osmarkets.data.chunks import bar_chunks
from osmarkets.data.io import write_csv
from osmarkets.data.validate import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def bars(n: int, seed: int = 0, start: str = "2024-01-02", quotes: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(4 * (1000 + np.cumsum(rng.normal(0, 1.0, n)))) / 4
    open_ = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + 0.25,
         "low": np.minimum(open_, close) - 0.25, "close": close, "volume": 1.0 + (close % 3)},
        index=pd.date_range(start, periods=n, freq="1min", tz="UTC", name="time"),
    )  # fmt: skip
    if quotes:
        for side, shift in (("bid", -0.125), ("ask", 0.125)):
            for name in ("open", "high", "low", "close"):
                frame[f"{side}_{name}"] = frame[name] + shift
    return frame


class Busy(Brain):
    """Reads 40 bars of history, sends market, limit and stop orders with protective orders,
    cancels some: the broker stays active across windows."""

    def on_start(self) -> None:
        self.seen = 0
        self.widest = 0

    def on_new_bar(self, series) -> None:
        self.seen += 1
        self.widest = max(self.widest, len(series._columns["time"]))
        symbol = series.bsid.symbol
        if len(series) < 40:
            return
        mean = series.close[:40].mean()
        last = series.close[0]
        held = self.position(symbol)
        if self.seen % 53 == 0:
            self.send_order("buy", 2, symbol, "limit", price=last - 0.5, stop_loss=last - 4,
                            take_profit=last + 3)  # fmt: skip
        elif self.seen % 71 == 0:
            cid = self.send_order("sell", 1, symbol, "stop", price=last - 2)
            if self.seen % 3 == 0:
                self.cancel_order(cid)
        elif last > mean and held <= 0:
            self.send_order("buy", 1 - held, symbol)
        elif last < mean and held > 0:
            self.send_order("sell", held, symbol)


def same(a, b) -> None:
    pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
    pd.testing.assert_frame_equal(a.orders, b.orders, check_exact=True)
    pd.testing.assert_series_equal(a.equity, b.equity, check_exact=True)
    assert a.open_positions == b.open_positions


@pytest.mark.parametrize("chunk", [7, 100, 1_000, None])
def test_one_instrument_streamed_is_the_in_memory_backtest_bit_for_bit(tmp_path, chunk) -> None:
    frame = bars(3_000)
    frame.to_parquet(tmp_path / "ES.parquet")
    for fill in ("next_open", "close"):
        kwargs = dict(history=60, spread=0.25, slippage=0.1, fill=fill)
        memory = backtest(Busy, frame, "ES:M1", **kwargs)
        streamed = backtest(Busy, tmp_path, "ES:M1", chunk_bars=chunk, **kwargs)
        assert len(memory.trades) > 50
        same(memory, streamed)


def test_streamed_window_holds_one_chunk_and_the_history_only(tmp_path) -> None:
    bars(5_000).to_parquet(tmp_path / "ES.parquet")
    seen = {}

    class Spy(Busy):
        def on_start(self) -> None:
            super().on_start()
            seen["brain"] = self

    backtest(Spy, tmp_path, "ES:M1", chunk_bars=500, history=60)
    assert seen["brain"].seen == 5_000
    assert seen["brain"].widest <= 500 + 60


def test_several_instruments_merge_by_time_from_a_directory(tmp_path) -> None:
    a = bars(2_000, seed=1)
    b = bars(1_500, seed=2, start="2024-01-02 00:07:00")
    c = bars(900, seed=3, start="2024-01-02 03:00:00", quotes=True)
    a.to_parquet(tmp_path / "A.parquet")
    write_csv(b, tmp_path / "B.csv")
    c.to_parquet(tmp_path / "C.pq")
    ids = ["A:M1", "B:M1", "C:M1"]
    memory = backtest(Busy, {"A": a, "B": b, "C": c}, ids, history=50)
    for chunk in (13, 400, None):
        same(memory, backtest(Busy, tmp_path, ids, history=50, chunk_bars=chunk))
    mapping = {"A": tmp_path / "A.parquet", "B": str(tmp_path / "B.csv"), "C": tmp_path / "C.pq"}
    same(memory, backtest(Busy, mapping, ids, history=50, stream=True, chunk_bars=99))


def test_account_currency_streams_the_brokers_own_equity(tmp_path) -> None:
    frame = bars(1_200)
    frame.to_parquet(tmp_path / "EUR_USD.parquet")
    kwargs = dict(history=50, currency="USD", margin_rate=0.05)
    memory = backtest(Busy, frame, "EUR_USD:M1", **kwargs)
    same(memory, backtest(Busy, tmp_path, "EUR_USD:M1", chunk_bars=77, **kwargs))


def test_a_file_path_streams_only_when_asked(tmp_path) -> None:
    frame = bars(500)
    path = tmp_path / "ES.parquet"
    frame.to_parquet(path)
    memory = backtest(Busy, path, "ES:M1")  # read whole, as before
    assert set(memory.prices) == {"ES"}
    streamed = backtest(Busy, path, "ES:M1", stream=True, chunk_bars=64)
    same(memory, streamed)
    assert streamed.prices == {}


def test_equity_kept_as_float32_or_per_period(tmp_path) -> None:
    frame = bars(3_000)
    frame.to_parquet(tmp_path / "ES.parquet")
    full = backtest(Busy, frame, "ES:M1")
    small = backtest(Busy, frame, "ES:M1", equity_dtype="float32")
    assert small.equity.dtype == np.float32
    assert np.array_equal(small.equity.to_numpy(), full.equity.to_numpy().astype(np.float32))
    hourly = backtest(Busy, tmp_path, "ES:M1", equity_every="H1", chunk_bars=250)
    expected = full.equity.groupby(full.equity.index.floor("h")).last()
    assert np.array_equal(hourly.equity.to_numpy(), expected.to_numpy())
    assert list(hourly.equity.index) == [
        full.equity.index[full.equity.index.floor("h") == hour][-1] for hour in expected.index
    ]
    assert math.isfinite(hourly.stats["sharpe"]) or math.isnan(hourly.stats["sharpe"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"equity_dtype": "float16"}, "equity_dtype"),
        ({"equity_every": "fortnight"}, "equity_every"),
        ({"stream": "yes"}, "stream"),
        ({"chunk_bars": 0}, "chunk_bars"),
        ({"chunk_bars": True}, "chunk_bars"),
    ],
)
def test_bad_options_are_refused_naming_them(tmp_path, kwargs, message) -> None:
    bars(100).to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(ValueError, match=message):
        backtest(Busy, tmp_path, "ES:M1", **kwargs)


def test_what_streaming_does_not_do_is_refused_with_what_to_do(tmp_path) -> None:
    bars(300).to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(ValueError, match="longer frames"):
        backtest(Busy, tmp_path, ["ES:M1", "ES:M5"])
    with pytest.raises(ValueError, match="calendar"):
        backtest(Busy, tmp_path, "ES:M1", calendar="XNYS")
    with pytest.raises(ValueError, match="data_timeframe"):
        backtest(Busy, tmp_path, "ES:M1", data_timeframe="M1")
    with pytest.raises(ValueError, match=r"has M1 bars.*ES:M1"):
        backtest(Busy, tmp_path, "ES:M5")


def test_missing_repeated_and_unreadable_files_are_named(tmp_path) -> None:
    bars(100).to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(ValueError, match=r"no file for 'NQ'.*ES\.parquet"):
        backtest(Busy, tmp_path, "NQ:M1")
    write_csv(bars(100), tmp_path / "ES.csv")
    with pytest.raises(ValueError, match="several files for 'ES'"):
        backtest(Busy, tmp_path, "ES:M1")
    (tmp_path / "x.txt").write_text("time,open\n")
    with pytest.raises(ValueError, match="cannot stream"):
        backtest(Busy, tmp_path / "x.txt", "X:M1", stream=True)
    with pytest.raises(FileNotFoundError):
        backtest(Busy, {"ES": tmp_path / "nope.parquet"}, "ES:M1", stream=True)
    with pytest.raises(TypeError, match="streaming reads files"):
        backtest(Busy, bars(10), "ES:M1", stream=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ES.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(ValueError, match="not a Parquet file"):
        backtest(Busy, bad, "ES:M1")
    empty = tmp_path / "empty"
    empty.mkdir()
    bars(10).iloc[:0].to_parquet(empty / "ES.parquet")
    with pytest.raises(ValueError, match="no bars"):
        backtest(Busy, empty, "ES:M1")


def test_a_bad_bar_deep_in_a_file_is_named_by_its_row_and_not_blamed_on_the_brain(
    tmp_path,
) -> None:
    frame = bars(5_000)
    frame.iloc[4_321, frame.columns.get_loc("high")] = frame["low"].iloc[4_321] - 1
    frame.to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(DataError, match=r"ES\.parquet, row 4321: .*high") as caught:
        backtest(Busy, tmp_path, "ES:M1", chunk_bars=1_000)
    assert not isinstance(caught.value, BacktestError)


def test_times_going_back_between_chunks_are_refused_with_the_row(tmp_path) -> None:
    frame = bars(300)
    swapped = pd.concat([frame.iloc[150:], frame.iloc[:150]])
    write_csv(swapped, tmp_path / "ES.csv")
    with pytest.raises(DataError, match=r"row 150: .*time order|row 150: time"):
        list(bar_chunks(tmp_path / "ES.csv", chunk_bars=150))
    text = (tmp_path / "ES.csv").read_text().splitlines()
    text[5] = text[5].replace(text[5].split(",")[2], "abc")
    (tmp_path / "ES.csv").write_text("\n".join(text))
    with pytest.raises(ValueError, match="ES.csv"):
        list(bar_chunks(tmp_path / "ES.csv"))


def test_chunks_of_a_csv_and_a_parquet_file_are_the_file(tmp_path) -> None:
    frame = bars(1_000, quotes=True)
    write_csv(frame, tmp_path / "a.csv")
    frame.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        chunks = list(bar_chunks(tmp_path / name, chunk_bars=128))
        assert max(len(c) for c in chunks) <= 128
        joined = pd.concat(chunks)
        pd.testing.assert_frame_equal(joined, frame, check_freq=False, check_index_type=False)
    with pytest.raises(ValueError, match="chunk_bars"):
        list(bar_chunks(tmp_path / "a.csv", chunk_bars=-1))


def test_a_brain_error_in_a_streamed_run_names_the_bar(tmp_path) -> None:
    bars(500).to_parquet(tmp_path / "ES.parquet")

    class Fails(Brain):
        def on_new_bar(self, series) -> None:
            if len(series) == 321:
                raise RuntimeError("boom")

    with pytest.raises(BacktestError, match="2024-01-02T05:20:00.*boom"):
        backtest(Fails, tmp_path, "ES:M1", chunk_bars=100, history=1000)


def test_the_series_is_a_read_only_view_of_the_users_own_arrays() -> None:
    frame = bars(200)
    columns = frame_columns(frame)
    assert np.shares_memory(columns["close"], frame["close"].to_numpy())
    series = ReplaySeries("ES:M1", 50, columns)
    series._head, series._len = len(frame) - 1 - 99, 50  # bar 99 is the newest
    assert series[0].time == series.last.time == frame.index[99].value
    assert series[0].close == frame["close"].iloc[99]
    assert series[-1].time == frame.index[50].value
    assert np.array_equal(series.close, frame["close"].to_numpy()[99:49:-1])
    assert np.shares_memory(series.close, frame["close"].to_numpy())
    records = series.to_records()
    assert list(records["close"]) == list(frame["close"].iloc[50:100])
    assert math.isnan(records["bid_close"][0]) and not series.has_quotes
    with pytest.raises(ValueError, match="read-only"):
        series.close[0] = 1.0
    with pytest.raises(IndexError):
        series[50]

    class Writes(Brain):
        def on_new_bar(self, series) -> None:
            series.close[0] = 0.0

    with pytest.raises(BacktestError, match="read-only"):
        backtest(Writes, frame, "ES:M1")
    assert frame["close"].iloc[0] != 0.0
    quoted = ReplaySeries("ES:M1", 5, frame_columns(bars(10, quotes=True)))
    quoted._head, quoted._len = 9, 1
    assert quoted.has_quotes


def test_record_log_gives_back_equal_records_of_the_same_types() -> None:
    log: RecordLog[OrderEvent] = RecordLog(OrderEvent)
    assert len(log) == 0 and list(log) == [] and log.column("price") == []
    first = OrderEvent("filled", "b-1", "ES", "buy", 1.0, 10.5, 7, commission=0.25)
    second = OrderEvent("accepted", "b-2", "ES", "sell", 2, 11.0, 8)  # an int size
    log.append(first)
    log.extend([second])
    assert list(log) == [first, second]
    assert type(log[1].size) is int and type(log[0].size) is float
    assert log[-1] == second and log[0] == first
    with pytest.raises(IndexError):
        log[2]
    assert list(log.column("time")) == [7, 8]
    assert log.column("kind") == ["filled", "accepted"]
    with pytest.raises(KeyError):
        log.column("nope")
    log.append(OrderEvent("rejected", "b-3", "ES", "buy", 1.0))
    assert math.isnan(log[2].price) and log[2].reason == ""
    orders: RecordLog[Order] = RecordLog(Order)
    order = Order("b-1", "ES", "buy", 1.0, "limit", 10.0, None, 12.5, brain="b", time=5)
    orders.append(order)
    orders.append(Order("b-2", "ES", "sell", 1.0))
    assert orders[0] == order and orders[1].price is None and orders[1].reduce_only is False


def test_large_backtest_example_runs(capsys, tmp_path) -> None:
    import large_backtest

    large_backtest.main(["--bars", "3000"])
    out = capsys.readouterr().out
    assert "3 instruments streamed" in out and "fills" in out
    folder = tmp_path / "bars"
    folder.mkdir()
    large_backtest.write_example(folder, 2000)
    large_backtest.main([str(folder)])
    assert "3 instruments streamed" in capsys.readouterr().out


def test_record_log_takes_a_fields_values_at_positions_across_batches(monkeypatch) -> None:
    monkeypatch.setattr(RecordLog, "BATCH", 3)
    log: RecordLog[OrderEvent] = RecordLog(OrderEvent)
    events = [
        OrderEvent("filled", f"b-{i}", "ES", "buy" if i % 2 else "sell", float(i), 10.0 + i, i)
        for i in range(8)
    ]
    for event in events:
        log.append(event)
    assert list(log) == events and log[7] == events[7] and log[1] == events[1]
    at = np.array([0, 4, 7])
    assert list(log.take("price", at)) == [10.0, 14.0, 17.0]
    assert list(log.take("side", at)) == ["sell", "sell", "buy"]
    log.append(OrderEvent("filled", "b-8", "ES", "buy", 1, 3.0, 9))  # an int size from now on
    assert type(log[8].size) is int and list(log.take("size", np.array([7, 8]))) == [7.0, 1]
    with pytest.raises(KeyError):
        log.take("nope", at)


def _bits(value: float) -> bytes:
    return np.float64(value).tobytes()


def test_record_log_codes_few_values_and_gives_them_back_bit_for_bit(monkeypatch) -> None:
    """Coded columns (few distinct values) give back the same types and bits: -0.0 is not
    0.0, NaN stays NaN, True is not 1, and a column passing 256 distinct values, changing
    type or holding an int beyond 64 bits moves to a typed array or a list, values intact."""
    monkeypatch.setattr(RecordLog, "BATCH", 4)
    log: RecordLog[OrderEvent] = RecordLog(OrderEvent)
    prices = [0.0, -0.0, math.nan, 2.5]
    events = [
        OrderEvent("filled", f"b-{i}", "ES", "buy", 1.0, prices[i % 4], i,
                   commission=-0.0 if i % 3 else 0.0, brain="b")
        for i in range(12)
    ]  # fmt: skip
    events += [
        OrderEvent("accepted", f"c-{i}", "NQ", "sell", float(i), 1.0 + i, 100 + i, brain="b")
        for i in range(300)  # past 256 distinct sizes and prices: typed arrays from here
    ]
    events.append(OrderEvent("filled", "d-1", "NQ", "buy", 3, 1.0, 2**70, reason="x"))
    for event in events:
        log.append(event)
    back = list(log)
    assert len(back) == len(events)
    for got, sent in zip(back, events, strict=True):
        for a, b in zip(got, sent, strict=True):
            assert type(a) is type(b)
            if isinstance(a, float):
                assert _bits(a) == _bits(b) or (math.isnan(a) and math.isnan(b))
            else:
                assert a == b
    assert _bits(log[1].price) == _bits(-0.0) and math.isnan(log[2].price)
    assert log.take("commission", np.array([0, 1])).tolist() == [0.0, -0.0]
    assert np.signbit(log.take("commission", np.array([1])))[0]
    assert list(log.take("side", np.array([0, 12]))) == ["buy", "sell"]
    assert type(log[-1].size) is int and log[-1].time == 2**70
    flags: RecordLog[Order] = RecordLog(Order)
    for i in range(6):
        flags.append(Order(f"b-{i}", "ES", "buy", 1.0, reduce_only=bool(i % 2), brain="b"))
    assert [o.reduce_only for o in flags] == [False, True] * 3
    assert all(type(o.reduce_only) is bool for o in flags)
    assert flags.column("size").tolist() == [1.0] * 6 and flags.column("side") == ["buy"] * 6


def test_streaming_daily_bars_is_refused_they_are_restamped_in_memory(tmp_path) -> None:
    daily = bars(30)
    daily.index = pd.date_range("2024-06-03 04:00", periods=30, freq="D", tz="UTC", name="time")
    daily.to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(ValueError, match="daily and longer"):
        backtest(Busy, tmp_path, "ES:D")


def test_a_csv_whose_integer_prices_turn_decimal_late_streams_whole(tmp_path) -> None:
    frame = bars(40_000)
    frame[["open", "high", "low", "close"]] = np.floor(frame[["open", "high", "low", "close"]])
    frame["high"] = frame[["open", "close", "high"]].max(axis=1)
    frame["low"] = frame[["open", "close", "low"]].min(axis=1)
    frame.iloc[-5:, frame.columns.get_loc("close")] += 0.5  # decimals after the first blocks
    frame.iloc[-5:, frame.columns.get_loc("high")] += 0.5
    write_csv(frame, tmp_path / "ES.csv")
    same(backtest(Busy, frame, "ES:M1"), backtest(Busy, tmp_path, "ES:M1", chunk_bars=3_000))
    text = (tmp_path / "ES.csv").read_text().splitlines()
    text[-3] = text[-3].replace(text[-3].split(",")[4], "x1")
    (tmp_path / "ES.csv").write_text("\n".join(text))
    with pytest.raises(DataError, match="ES.csv"):
        backtest(Busy, tmp_path, "ES:M1")


def test_a_data_error_counts_rows_from_the_start_of_the_file(tmp_path) -> None:
    frame = bars(3_000)
    frame.iloc[2_345, frame.columns.get_loc("low")] = frame["high"].iloc[2_345] + 1
    frame.to_parquet(tmp_path / "ES.parquet")
    with pytest.raises(DataError) as caught:
        backtest(Busy, tmp_path, "ES:M1", chunk_bars=500)
    assert caught.value.row == 2_345
    assert "row 2345" in str(caught.value) and "row 345" not in str(caught.value)


def test_the_files_time_frame_is_that_of_its_smallest_gap_whatever_the_chunks(tmp_path) -> None:
    frame = bars(300)
    gapped = frame.drop(frame.index[1:5])  # a leading gap of 5 minutes, then minutes
    gapped.to_parquet(tmp_path / "ES.parquet")
    memory = backtest(Busy, gapped, "ES:M1")
    for chunk in (1, 2, 50):
        same(memory, backtest(Busy, tmp_path, "ES:M1", chunk_bars=chunk))
    hourly = bars(200)
    hourly.index = pd.date_range("2024-01-02", periods=200, freq="h", tz="UTC", name="time")
    folder = tmp_path / "h"
    folder.mkdir()
    hourly.to_parquet(folder / "ES.parquet")
    for chunk in (1, 7):
        with pytest.raises(ValueError, match=r"has H1 bars.*ES:H1"):
            backtest(Busy, folder, "ES:M1", chunk_bars=chunk)
    with pytest.raises(ValueError, match=r"has H1 bars"):
        backtest(Busy, folder, "ES:H4", chunk_bars=3)  # shorter than asked: refused at once


def test_equity_every_keeps_only_the_periods_last_values_while_streaming(tmp_path) -> None:
    frame = bars(5_000)
    frame.to_parquet(tmp_path / "EUR_USD.parquet")
    for kwargs in ({}, {"currency": "USD"}):
        memory = backtest(Busy, frame, "EUR_USD:M1", equity_every="H1", **kwargs)
        for chunk in (7, 333, 5_000):
            streamed = backtest(Busy, tmp_path, "EUR_USD:M1", equity_every="H1",
                                chunk_bars=chunk, **kwargs)  # fmt: skip
            pd.testing.assert_series_equal(memory.equity, streamed.equity, check_exact=True)
    parts = []

    from osmarkets.backtest import equity as equity_module

    original = equity_module.KeptEquity.add

    def spy(self, equity):
        original(self, equity)
        parts.append(sum(len(p) for p in self.parts))

    equity_module.KeptEquity.add = spy
    try:
        backtest(Busy, tmp_path, "EUR_USD:M1", equity_every="H1", chunk_bars=500)
    finally:
        equity_module.KeptEquity.add = original
    assert parts and max(parts) <= 5_000 // 60 + 1  # never a value per bar held


def test_hostile_symbols_and_file_names_in_a_directory(tmp_path) -> None:
    bars(100).to_parquet(tmp_path / "ES.PARQUET")
    same(backtest(Busy, bars(100), "ES:M1"), backtest(Busy, tmp_path, "ES:M1"))
    with pytest.raises(ValueError, match="cannot name a file"):
        backtest(Busy, tmp_path, "EUR/USD:M1")


def test_record_log_survives_an_int_beyond_64_bits(monkeypatch) -> None:
    monkeypatch.setattr(RecordLog, "BATCH", 2)
    log: RecordLog[OrderEvent] = RecordLog(OrderEvent)
    events = [OrderEvent("filled", "b", "ES", "buy", 1.0, 2.0, t) for t in (1, 2, 3, 2**70, 5)]
    for event in events:
        log.append(event)
    assert list(log) == events and log[3].time == 2**70 and len(log) == 5
