"""The in-process backtest engine, its Result and the vectorised path."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osmarkets import Brain
from osmarkets.backtest import BacktestError, Result, backtest
from osmarkets.backtest.vectorized import vectorized
from osmarkets.brokers.simulated import Commission
from osmarkets.data.resample import resample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from sma_cross import SmaCross  # noqa: E402


def make_bars(n=600, seed=1, start="2024-01-02 00:00", freq="1min", price=100.0, quotes=0.0):
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[price, close[:-1]] * np.exp(rng.normal(0, 0.0005, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )
    if quotes:
        for name in ("open", "high", "low", "close"):
            frame[f"bid_{name}"] = frame[name] - quotes / 2
            frame[f"ask_{name}"] = frame[name] + quotes / 2
    return frame


class Recorder(Brain):
    """Buys on a chosen bar, sells on another; records everything it sees."""

    buy_at = 5
    sell_at = 10
    size = 10.0

    def on_start(self):
        self.seen, self.events, self.positions = [], [], []

    def on_new_bar(self, series):
        self.seen.append((series.bsid, int(series.time[0]), len(series)))
        self.positions.append(self.position(series.bsid.symbol))
        count = len(self.seen)
        if count == self.buy_at:
            self.send_order("buy", self.size, series.bsid.symbol)
        elif count == self.sell_at:
            self.send_order("sell", self.size, series.bsid.symbol)

    def on_order_event(self, event):
        self.events.append(event)


def run_recorder(data, bsid="X:M1", **kw):
    captured = {}

    class Spy(Recorder):
        def on_start(self):
            super().on_start()
            captured["brain"] = self

    result = backtest(Spy, data, bsid, **kw)
    return result, captured["brain"]


def cash_flow_value(result, data, cash):
    """Final value recomputed independently from the fills."""
    trades = result.trades
    signed = np.where(trades["side"] == "buy", 1.0, -1.0) * trades["size"]
    spent = (signed * trades["price"] + trades["commission"]).sum()
    return cash - spent + signed.sum() * data["close"].iloc[-1]


def test_market_order_fills_at_next_open_and_events_arrive():
    data = make_bars(50)
    result, brain = run_recorder(data)
    buy, sell = result.trades.iloc[0], result.trades.iloc[1]
    assert buy["time"] == data.index[5] and buy["price"] == data["open"].iloc[5]
    assert sell["time"] == data.index[10] and sell["price"] == data["open"].iloc[10]
    kinds = [e.kind for e in brain.events]
    assert kinds == ["accepted", "filled", "accepted", "filled"]
    assert brain.positions[4] == 0 and brain.positions[5] == 10 and brain.positions[10] == 0
    assert all(e.brain == brain.name for e in brain.events)


def test_fill_at_close_option():
    data = make_bars(50)
    result, _ = run_recorder(data, fill="close")
    assert result.trades["price"].iloc[0] == data["close"].iloc[4]
    assert result.trades["time"].iloc[0] == data.index[4]


def test_quotes_fill_buys_at_ask_and_sells_at_bid():
    data = make_bars(50, quotes=0.02)
    result, _ = run_recorder(data)
    assert result.trades["price"].iloc[0] == pytest.approx(data["ask_open"].iloc[5])
    assert result.trades["price"].iloc[1] == pytest.approx(data["bid_open"].iloc[10])


def test_series_is_newest_first_with_capped_history():
    seen = []

    class Peek(Brain):
        def on_new_bar(self, series):
            seen.append((len(series), series.close[0], series.close[-1], series[0].time))

    data = make_bars(30)
    backtest(Peek, data, "X:M1", history=8)
    assert [s[0] for s in seen] == [min(i + 1, 8) for i in range(30)]
    last = seen[-1]
    assert last[1] == data["close"].iloc[-1] and last[2] == data["close"].iloc[-8]
    assert last[3] == data.index[-1].value


def test_equity_and_final_value_are_consistent():
    data = make_bars(400, seed=3)
    fee = Commission(fraction=0.0005, minimum=0.1)
    result = backtest(SmaCross, data, "X:M1", params={"size": 50}, spread=0.01, commission=fee)
    assert len(result.trades) > 4
    assert result.equity.index.equals(data.index)
    assert result.final_value == pytest.approx(cash_flow_value(result, data, 100_000), rel=1e-12)
    assert result.stats["final_value"] == pytest.approx(result.final_value)
    assert result.stats["trades"] == len(result.trades)
    assert (result.trades["commission"] >= 0.1).all()
    assert "final_value=" in repr(result)
    assert len(result.positions) == len(result.trades) // 2


def test_stop_loss_through_the_engine():
    class Protected(Brain):
        def on_new_bar(self, series):
            if len(series) == 2:
                self.send_order("buy", 1, "X", stop_loss=series.close[0] * 0.5)

    data = make_bars(20)
    data.iloc[10, data.columns.get_loc("open")] = data["close"].iloc[9] * 0.3  # a crash
    data.iloc[10, data.columns.get_loc("low")] = data["close"].iloc[9] * 0.29
    result = backtest(Protected, data, "X:M1")
    assert list(result.trades["reason"]) == ["", "stop_loss"]
    assert result.trades["price"].iloc[1] == data["open"].iloc[10]  # gap: at the open


def test_margin_reject_reaches_the_brain():
    data = make_bars(20)
    result, brain = run_recorder(data, cash=100.0, params={"size": 10_000.0})
    rejected = [e for e in brain.events if e.kind == "rejected"]
    assert rejected and rejected[0].reason == "insufficient margin"
    assert result.trades.empty


def test_handler_error_names_the_bar_time():
    class Broken(Brain):
        def on_new_bar(self, series):
            if len(series) == 7:
                raise ZeroDivisionError("boom")

    data = make_bars(20)
    with pytest.raises(
        BacktestError, match=r"2024-01-02T00:06:00.*ZeroDivisionError: boom"
    ) as err:
        backtest(Broken, data, "X:M1")
    assert err.value.time == data.index[6].value


def test_bad_arguments():
    data = make_bars(20)
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        backtest(SmaCross, data, "X:M1", params={"nope": 1})
    with pytest.raises(ValueError, match="fill"):
        backtest(SmaCross, data, "X:M1", fill="later")
    with pytest.raises(ValueError, match="history"):
        backtest(SmaCross, data, "X:M1", history=0)
    with pytest.raises(ValueError, match="symbol 'Y'"):
        backtest(SmaCross, {"X": data}, "Y:M1")
    bad = data.copy()
    bad.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match="open"):
        backtest(SmaCross, bad, "X:M1")
    five = data.iloc[::5]  # M5 bars: M1 cannot be made from them, the error names M5
    with pytest.raises(ValueError, match=r"data for 'X' has M5 bars.*M1 is shorter"):
        backtest(SmaCross, five, "X:M1")
    with pytest.raises(ValueError, match=r"M7.*bar 0 at .* straddles"):
        backtest(SmaCross, five, "X:M7")  # M5 bars do not fit in 7-minute periods


def test_multi_instrument_orders_fill_at_the_other_instruments_next_bar():
    class Pair(Brain):
        def on_start(self):
            self.order = []

        def on_new_bar(self, series):
            self.order.append(series.bsid.symbol)
            if series.bsid.symbol == "A" and len(series) == 3:
                self.send_order("buy", 1, "B")

    captured = {}

    class Spy(Pair):
        def on_start(self):
            super().on_start()
            captured["b"] = self

    a, b = make_bars(10, seed=1), make_bars(10, seed=2, price=50)
    result = backtest(Spy, {"A": a, "B": b}, ["A:M1", "B:M1"])
    assert captured["b"].order[:4] == ["A", "B", "A", "B"]
    (trade,) = result.trades.itertuples()
    assert (trade.symbol, trade.time, trade.price) == ("B", b.index[3], b["open"].iloc[3])
    assert result.final_value == pytest.approx(100_000 + b["close"].iloc[-1] - b["open"].iloc[3])


def test_multi_instrument_with_different_calendars():
    a = make_bars(10, seed=1)
    b = make_bars(5, seed=2, start="2024-01-02 00:03")
    result, brain = run_recorder({"A": a, "B": b}, ["A:M1", "B:M1"], params={"buy_at": 1})
    assert len(result.equity) == 10
    assert brain.seen[:4] == [
        (("A", 1, "Minutes"), a.index[0].value, 1), (("A", 1, "Minutes"), a.index[1].value, 2),
        (("A", 1, "Minutes"), a.index[2].value, 3), (("A", 1, "Minutes"), a.index[3].value, 4),
    ]  # fmt: skip
    assert brain.seen[4][0] == ("B", 1, "Minutes")


def test_multi_timeframe_delivers_completed_longer_bars_after_their_last_base_bar():
    data = make_bars(23)
    data = data.drop(data.index[[12, 13, 14]])  # M5 period 10..14 ends early: late delivery
    result, brain = run_recorder(data, ["X:M1", "X:M5"], params={"buy_at": 10**6})
    m5 = resample(data, "M5")
    longer = [(t, n) for b, t, n in brain.seen if b == ("X", 5, "Minutes")]
    assert [t for t, _ in longer] == [x.value for x in m5.index[:4]]  # the 5th is forming
    order = [(b.size, t) for b, t, _ in brain.seen]
    m1 = ("X", 1, "Minutes")
    assert (
        brain.seen.index((("X", 5, "Minutes"), m5.index[0].value, 1))
        == order.index((1, data.index[4].value)) + 1
    )  # right after 00:04, the bar that completes 00:00-00:05
    # 00:10-00:15 has no bar at 00:14: it is complete only when 00:15 arrives
    late = brain.seen.index((("X", 5, "Minutes"), m5.index[2].value, 3))
    assert brain.seen[late - 1] == (m1, data.index[12].value, 13)
    assert result.equity.index.equals(data.index)


def test_series_lookup_from_the_brain():
    got = {}

    class Both(Brain):
        def on_new_bar(self, series):
            got["m5"] = self.series("X:M5")
            with pytest.raises(KeyError):
                self.series("X:H1")

    backtest(Both, make_bars(12), ["X:M1", ("X", 5, "Minutes")])
    assert len(got["m5"]) == 2


def test_data_forms_csv_and_barseries(tmp_path):
    from osmarkets.data.series import BarSeries

    data = make_bars(80, seed=5)
    path = tmp_path / "bars.csv"
    data.to_csv(path)
    base = backtest(SmaCross, data, "X:M1", params={"fast": 3, "slow": 8})
    from_csv = backtest(SmaCross, str(path), "X:M1", params={"fast": 3, "slow": 8})
    series = BarSeries.from_pandas(data, "X:M1")
    from_series = backtest(SmaCross, series, "X:M1", params={"fast": 3, "slow": 8})
    assert len(base.trades) > 0
    for other in (from_csv, from_series):
        assert other.final_value == pytest.approx(base.final_value)
        assert list(other.trades["price"]) == pytest.approx(list(base.trades["price"]))


@pytest.mark.parametrize(
    "costs",
    [{}, {"spread": 0.02, "slippage": 0.01, "commission": Commission(per_unit=0.01, minimum=1)}],
)
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_vectorized_matches_event_driven(costs, fill):
    data = make_bars(1500, seed=11)
    grid = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 3, "slow": 40, "size": 7}]
    grid = [{"size": 10, **g} for g in grid]
    fast = vectorized(SmaCross, data, grid, fill=fill, equity=True, **costs)
    for row, params in enumerate(grid):
        slow = backtest(SmaCross, data, "X:M1", params=params, fill=fill, **costs)
        assert len(slow.trades) > 10
        assert fast.table["trades"].iloc[row] == len(slow.trades)
        assert fast.table["final_value"].iloc[row] == pytest.approx(slow.final_value, rel=1e-12)
        curve = fast.equity[row]
        assert np.allclose(curve.to_numpy(), slow.equity.to_numpy(), rtol=1e-12)


def test_vectorized_grid_and_errors():
    data = make_bars(300, seed=2)
    out = vectorized(SmaCross, data, {"fast": [3, 5], "slow": [10, 20, 30]})
    assert len(out.table) == 6
    assert set(out.table.columns) >= {"fast", "slow", "final_value", "trades", "max_drawdown"}
    assert out.best()["final_value"] == out.table["final_value"].max()
    with pytest.raises(ValueError, match="no parameter 'x'"):
        vectorized(SmaCross, data, {"x": [1]})
    with pytest.raises(TypeError, match="signals"):
        vectorized(Recorder, data)


def test_result_from_run_for_other_runners():
    data = make_bars(30)
    result = backtest(SmaCross, data, "X:M1", params={"fast": 2, "slow": 5})
    from osmarkets.brokers.base import OrderEvent

    fills = [
        OrderEvent("filled", "a", "X", row.side, row.size, row.price, int(row.time.value))
        for row in result.trades.itertuples()
    ]
    again = Result.from_run(fills + [OrderEvent("accepted", "z", "X", "buy", 1.0)],
                            result.equity, initial_cash=100_000)  # fmt: skip
    assert len(again.trades) == len(result.trades)
    assert again.final_value == result.final_value
    assert again.stats["total_return"] == pytest.approx(result.stats["total_return"])


def test_plot_and_html_report(tmp_path):
    pytest.importorskip("matplotlib")
    data = make_bars(200, seed=4)
    result = backtest(SmaCross, data, "X:M1", params={"fast": 3, "slow": 9})
    fig = result.plot()
    assert len(fig.axes) == 3
    path = result.to_html(str(tmp_path / "report.html"))
    text = Path(path).read_text()
    assert "data:image/png;base64," in text and "max_drawdown" in text
    assert text.count("<tr>") > len(result.trades)


def test_backtest_example_runs(capsys, tmp_path):
    import backtest_example

    report = tmp_path / "report.html"
    backtest_example.main(str(report))
    out = capsys.readouterr().out
    assert "final_value" in out and "max_drawdown" in out
    assert "data:image/png;base64," in report.read_text()


def test_stats_table_shows_money_with_cents_and_fractions_as_percent():
    data = make_bars(300, seed=5)
    result = backtest(SmaCross, data, "X:M1", params={"fast": 3, "slow": 9})
    lines = dict(line.split(None, 1) for line in result.stats_table().splitlines())
    assert lines["final_value"].strip() == f"{result.final_value:,.2f}"
    assert lines["win_rate"].strip().endswith("%")


def test_an_error_in_on_start_is_reported_as_such_not_as_a_bar_of_1970() -> None:
    class Bad(Brain):
        def on_start(self):
            raise ZeroDivisionError("boom")

    for data, bsid in ((make_bars(10), "X:M1"),
                       ({"X": make_bars(10), "Y": make_bars(10)}, ["X:M1", "Y:M1"])):  # fmt: skip
        with pytest.raises(
            BacktestError, match="Bad raised in on_start: ZeroDivisionError: boom"
        ) as info:
            backtest(Bad, data, bsid)
        assert info.value.time is None and "1970" not in str(info.value)


def test_frames_keep_their_column_types_with_and_without_fills():
    """A run without fills gives the same column types as one with (times in ns, UTC)."""
    bars = make_bars(60)
    traded = backtest(Recorder, bars, "X:M1")
    quiet = backtest(Recorder, bars, "X:M1", params={"buy_at": 10**6, "sell_at": 10**6})
    assert len(traded.trades) == 2 and quiet.trades.empty and quiet.orders.empty
    assert quiet.trades.dtypes.to_dict() == traded.trades.dtypes.to_dict()
    assert quiet.orders.dtypes.to_dict() == traded.orders.dtypes.to_dict()
    assert str(quiet.trades["time"].dtype) == "datetime64[ns, UTC]"
