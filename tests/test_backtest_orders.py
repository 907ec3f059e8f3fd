"""Every order accounted for: Result.orders, the order counts in the stats, the rejections in
the CLI, the HTML report and the optimiser's table; plots with gaps in time."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_backtest import make_bars

from osmarkets import Brain
from osmarkets.backtest import Result, backtest
from osmarkets.backtest.result import ORDER_COLUMNS, orders_frame, rejection_summary
from osmarkets.brokers.base import Order, OrderEvent
from osmarkets.cli import main
from osmarkets.instruments import Instrument
from osmarkets.optimize.evaluate import STAT_KEYS, Evaluator
from osmarkets.optimize.pipeline import explore
from osmarkets.strategies import SmaCross

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sma_cross.py"
MARGIN = "insufficient margin"


class Script(Brain):
    """Sends a fixed set of orders whose fates are known in advance (bars ~100, cash 100,000):

    bar 3: ``big`` buy 5,000 (rejected at submit: 500,000 of margin); ``first`` buy 600 with a
    stop-loss above the price (fills at bar 4's open, then its stop-loss closes the position at
    once); ``second`` buy 600 (accepted: the margin is checked on positions, not on pending
    orders; rejected at its fill, after ``first``'s 60,000). bar 5: ``cancelled`` and ``open``,
    limit buys far below the price; a cancel of an unknown order and one of ``first`` (both
    refused, neither an order). bar 7: ``cancelled`` is cancelled. bar 9: ``short`` sells 5.
    """

    def on_start(self):
        self.ids = {}

    def on_new_bar(self, series):
        count = len(series)
        symbol = series.bsid.symbol
        price = float(series.close[0])
        if count == 3:
            self.ids["big"] = self.send_order("buy", 5000, symbol)
            self.ids["first"] = self.send_order("buy", 600, symbol, stop_loss=price * 2)
            self.ids["second"] = self.send_order("buy", 600, symbol)
        elif count == 5:
            self.ids["cancelled"] = self.send_order("buy", 300, symbol, "limit", price=50.0)
            self.ids["open"] = self.send_order("buy", 10, symbol, "limit", price=50.0)
            self.cancel_order("no-such-order")
            self.cancel_order(self.ids["first"])
        elif count == 7:
            self.cancel_order(self.ids["cancelled"])
        elif count == 9:
            self.ids["short"] = self.send_order("sell", 5, symbol)


def run_script(**kw):
    data = make_bars(30, seed=3)
    brain = {}

    class Kept(Script):
        def on_start(self):
            super().on_start()
            brain["self"] = self

    result = backtest(Kept, data, "X:M1", **kw)
    return data, result, brain["self"].ids


def test_every_order_has_a_row_with_its_final_state():
    data, result, ids = run_script()
    orders = result.orders
    assert list(orders.columns) == list(ORDER_COLUMNS)
    assert list(orders["client_id"]) == [
        ids[k] for k in ("big", "first", "second", "cancelled", "open", "short")
    ]
    table = orders.set_index("client_id")
    state = table["state"].to_dict()
    assert state == {
        ids["big"]: "rejected",
        ids["first"]: "filled",
        ids["second"]: "rejected",
        ids["cancelled"]: "cancelled",
        ids["open"]: "accepted",
        ids["short"]: "filled",
    }
    assert table.loc[ids["big"], "reason"] == MARGIN
    assert table.loc[ids["second"], "reason"] == MARGIN
    assert table.loc[ids["cancelled"], "reason"] == "cancelled by request"
    times = data.index + pd.Timedelta(minutes=1)  # a bar's orders are sent at its close
    opens = data["open"].to_numpy()
    first = table.loc[ids["first"]]
    assert first["filled_size"] == 600  # its stop-loss fill is a trade, not a fill of the order
    assert first["fill_price"] == opens[3]
    assert first["submit_time"] == times[2] and first["final_time"] == data.index[3]
    big = table.loc[ids["big"]]
    assert big["filled_size"] == 0 and math.isnan(big["fill_price"])
    assert big["submit_time"] == big["final_time"] == times[2]  # rejected as it was sent
    assert table.loc[ids["second"], "final_time"] == data.index[3]  # rejected at its fill
    limit = table.loc[ids["cancelled"]]
    assert (limit["type"], limit["price"], limit["size"]) == ("limit", 50.0, 300.0)
    assert limit["submit_time"] == times[4]
    assert limit["final_time"] == times[6]  # cancelled when asked, at bar 7's close
    pending = table.loc[ids["open"]]
    assert pending["filled_size"] == 0 and pd.isna(pending["fill_price"])
    assert table.loc[ids["short"], "side"] == "sell"
    assert table.loc[ids["short"], "fill_price"] == opens[9]
    assert len(result.trades) == 3  # first, its stop-loss, short
    assert list(result.trades["reason"]) == ["", "stop_loss", ""]


def test_answers_to_orders_carry_the_time_they_were_sent_at_not_the_last_bar_traded():
    """The broker runs no bar while nothing is pending or held: an order sent long after the
    last trade is accepted (or refused) at the close of the bar it was sent on, and a cancel
    answered then too, not stamped with the last bar the broker saw."""

    class Late(Brain):
        def on_new_bar(self, series):
            count, symbol = len(series), series.bsid.symbol
            if count == 3:
                self.send_order("buy", 1, symbol)
            elif count == 4:
                self.send_order("sell", 1, symbol)
            elif count == 20:
                self.send_order("buy", 10**6, symbol)  # far beyond the cash: refused at once
                self.send_order("buy", 1, symbol, "limit", price=1.0)
                self.cancel_order("nothing-of-that-name")
            elif count == 25:
                self.cancel_order(f"{self.name}-4")

    data = make_bars(30, seed=3)
    result = backtest(Late, data, "X:M1")
    events = list(result._orders_from[0])  # every event of the run, before the frame is built
    closes = data.index + pd.Timedelta(minutes=1)
    table = result.orders.set_index("client_id")
    refused = table.loc["Late-3"]
    assert refused["state"] == "rejected" and refused["reason"] == MARGIN
    assert refused["submit_time"] == refused["final_time"] == closes[19]
    cancelled = table.loc["Late-4"]
    assert cancelled["state"] == "cancelled" and cancelled["final_time"] == closes[24]
    accepted = {e.client_id: e.time for e in events if e.kind == "accepted"}
    assert accepted["Late-2"] == int(closes[3].value)
    assert accepted["Late-4"] == int(closes[19].value)
    unknown = [e for e in events if e.kind == "rejected" and e.client_id == "nothing-of-that-name"]
    assert [e.time for e in unknown] == [int(closes[19].value)]


def test_stats_count_the_orders_and_the_rejections_by_reason():
    _, result, _ = run_script()
    stats = result.stats
    assert stats["orders"] == 6
    assert stats["orders_filled"] == 2
    assert stats["orders_rejected"] == 2
    assert stats["orders_cancelled"] == 1
    assert stats["trades"] == 3
    assert result.rejections == {MARGIN: 2}
    assert result.rejection_summary() == "2 orders rejected: insufficient margin"
    lines = dict(line.split(None, 1) for line in result.stats_table().splitlines())
    assert [lines[k] for k in ("orders", "orders_filled", "orders_rejected")] == ["6", "2", "2"]


def test_several_rejection_reasons():
    lots = Instrument("X", lot_size=100)
    _, result, _ = run_script(instruments=[lots])
    # 5,000, 600 and 300 are whole lots; 10 and 5 are not
    assert result.rejections == {
        MARGIN: 2,
        "size 10 is not a multiple of the lot size 100 for X": 1,
        "size 5 is not a multiple of the lot size 100 for X": 1,
    }
    assert result.stats["orders_rejected"] == 4 and result.stats["orders_cancelled"] == 1
    assert result.rejection_summary() == (
        "4 orders rejected: 2 insufficient margin, 2 for 2 other reasons"
    )
    assert rejection_summary({"a": 1}) == "1 order rejected: a"
    assert rejection_summary({"a": 5, "b": 1}, {"a": " (why)"}) == (
        "6 orders rejected: 5 a (why), 1 for 1 other reason"
    )
    assert rejection_summary({}) == ""


def test_partial_fills_expiry_and_events_of_other_runners():
    def ev(kind, cid, size=10.0, price=math.nan, time=1, reason=""):
        return OrderEvent(kind, cid, "EUR_USD", "buy", size, price, time, reason)

    events = [
        ev("accepted", "a"),
        ev("filled", "a", 4.0, 1.5, 2),
        ev("filled", "a", 2.0, 1.2, 3),
        ev("cancelled", "a", time=4, reason="TIME_IN_FORCE_EXPIRED"),
        ev("accepted", "b"),
        ev("cancelled", "b", time=5, reason="TIME_IN_FORCE_EXPIRED"),
        ev("accepted", "c"),
        ev("filled", "c", 10.0, 1.1, 6),
        ev("filled", "c", 10.0, 1.0, 7, reason="take_profit"),
        OrderEvent("rejected", "c", "", "", 0.0, time=8, reason="already filled"),
        OrderEvent("rejected", "ghost", "", "", 0.0, time=8, reason="unknown order"),
        ev("rejected", "d", time=9, reason="INSUFFICIENT_MARGIN"),
    ]
    table = orders_frame(events).set_index("client_id")
    assert list(table.index) == ["a", "b", "c", "d"]
    assert list(table["state"]) == ["partially_filled", "expired", "filled", "rejected"]
    assert table.loc["a", "filled_size"] == 6.0
    assert table.loc["a", "fill_price"] == pytest.approx((4 * 1.5 + 2 * 1.2) / 6)
    assert table.loc["a", "reason"] == "TIME_IN_FORCE_EXPIRED"
    assert table.loc["a", "final_time"] == pd.Timestamp(4, unit="ns", tz="UTC")
    assert table.loc["c", "filled_size"] == 10.0 and table.loc["c", "fill_price"] == 1.1
    sent = [Order("d", "EUR_USD", "buy", 10.0, "stop", 1.3, time=9), Order("e", "X", "sell", 1.0)]
    known = orders_frame(events, sent)
    assert list(known["client_id"]) == ["d", "e"]  # only the orders sent
    assert list(known["state"]) == ["rejected", "pending"]
    assert list(known["type"]) == ["stop", "market"] and known["price"].iloc[0] == 1.3
    assert pd.isna(known["submit_time"].iloc[1])  # time unknown
    # a runner that only has the fills (Result.from_run without events)
    equity = pd.Series([1.0, 1.0], index=pd.date_range("2024-01-01", periods=2, tz="UTC"))
    fills = [e for e in events if e.kind == "filled"]
    result = Result.from_run(fills, equity, initial_cash=1.0)
    assert list(result.orders["state"]) == ["filled", "filled"]  # a as 4 then 2 units: unknown
    assert result.stats["orders"] == 2 and result.rejections == {}


def expected_buy_signals(data, fast, slow):
    """Up-crosses of SmaCross's rule on every bar: what it sends when no buy ever fills."""
    close = data["close"].to_numpy()
    count = 0
    for i in range(slow, len(close)):
        fast_now, slow_now = close[i - fast + 1 : i + 1].mean(), close[i - slow + 1 : i + 1].mean()
        fast_before, slow_before = close[i - fast : i].mean(), close[i - slow : i].mean()
        count += fast_before <= slow_before and fast_now > slow_now
    return count


def test_too_little_cash_every_buy_rejected():
    data = make_bars(600, seed=2)
    result = backtest(SmaCross, data, "X:M1", params={"fast": 3, "slow": 9, "size": 5000})
    want = expected_buy_signals(data, 3, 9)
    assert want > 20
    assert result.stats["trades"] == 0
    assert result.stats["orders"] == result.stats["orders_rejected"] == want
    assert result.rejections == {MARGIN: want}
    assert set(result.orders["state"]) == {"rejected"}


def test_cli_prints_one_warning_line_and_exits_0(tmp_path, capsys):
    data = make_bars(300, seed=7)
    path = tmp_path / "bars.csv"
    data.to_csv(path)
    argv = ["backtest", f"{EXAMPLE}:SmaCross", "--data", str(path), "--bsid", "X:M1",
            "--param", "fast=3", "--param", "slow=9"]  # fmt: skip
    code = main([*argv, "--param", "size=5000"])
    out = capsys.readouterr()
    assert code == 0
    want = expected_buy_signals(data, 3, 9)
    assert out.err == (
        f"{want} orders rejected: insufficient margin (cash 100,000, margin rate 1.0); "
        "see --cash, --margin-rate, --param size\n"
    )
    lines = dict(line.split(None, 1) for line in out.out.splitlines()[1:])
    assert lines["orders_rejected"] == lines["orders"] == str(want)
    code = main([*argv, "--param", "size=5000", "--cash", "2500.5", "--margin-rate", "0.02"])
    out = capsys.readouterr()
    assert code == 0 and "(cash 2,500.50, margin rate 0.02)" in out.err
    code = main([*argv, "--param", "size=10"])
    out = capsys.readouterr()
    assert code == 0 and out.err == ""


def test_html_report_has_the_orders_and_a_warning(tmp_path):
    pytest.importorskip("matplotlib")
    _, result, ids = run_script()
    text = Path(result.to_html(str(tmp_path / "r.html"))).read_text()
    warning = text.index('<p class="warning">Warning: 2 orders rejected: insufficient margin')
    assert warning < text.index("<h2>Statistics</h2>")
    assert '<h2 id="orders">Orders (6)</h2>' in text
    assert "<h3>By final state</h3>" in text and "<h3>Rejections by reason</h3>" in text
    assert "<tr><th>rejected</th><td>2</td></tr>" in text
    assert "<tr><th>cancelled</th><td>1</td></tr>" in text
    assert f"<th>{MARGIN}</th><td>2</td>" in text
    assert all(f"<td>{cid}</td>" in text for cid in ids.values())
    ppy = "periods per year: 525,960 (inferred from the median spacing between bars, 1 minute"
    assert ppy in text
    params = {"fast": 3, "slow": 9, "size": 10}
    clean = backtest(SmaCross, make_bars(200, seed=4), "X:M1", params=params)
    assert clean.rejections == {} and clean.stats["orders_filled"] > 4
    text = Path(clean.to_html(str(tmp_path / "c.html"))).read_text()
    assert 'class="warning"' not in text and '<h2 id="orders">' in text


class Flood(Brain):
    """A rejected order on every bar (far too big), and a tiny filled buy or sell every bar."""

    def on_new_bar(self, series):
        symbol = series.bsid.symbol
        self.send_order("buy", 1e9, symbol)


def test_long_order_tables_are_cut_with_a_note(tmp_path):
    pytest.importorskip("matplotlib")
    result = backtest(Flood, make_bars(1200, seed=1), "X:M1")
    assert result.rejections == {MARGIN: 1200}
    text = Path(result.to_html(str(tmp_path / "r.html"))).read_text()
    assert "The first 1,000 of 1,200 rows; Result.orders has them all." in text
    assert text.count(f"<td>{MARGIN}</td>") == 1000


def test_optimiser_table_has_a_rejected_column():
    data = make_bars(600, seed=2)
    want = expected_buy_signals(data, 3, 9)
    assert "rejected" in STAT_KEYS
    configs = [{"fast": 3, "slow": 9, "size": 5000}, {"fast": 3, "slow": 9, "size": 10}]
    rows = Evaluator(SmaCross, data, "X:M1", engine="event").evaluate(configs)
    assert [r["stats"]["rejected"] for r in rows] == [want, 0]
    assert [r["stats"]["trades"] for r in rows][0] == 0
    fast = Evaluator(SmaCross, data, "X:M1").evaluate(configs)  # no margin model: none rejected
    assert [r["stats"]["rejected"] for r in fast] == [0, 0]
    out = explore(SmaCross, data, {"size": [10, 5000]}, bsid="X:M1", grid=True, engine="event",
                  params={"fast": 3, "slow": 9}, portfolio=False)  # fmt: skip
    table = out.table.set_index("size")
    assert table.loc[5000, "rejected"] == want and table.loc[10, "rejected"] == 0


def two_sessions():
    """Two sessions of 100 one-minute bars with a 15-hour night between them."""
    data = make_bars(200, seed=4)
    night = pd.to_timedelta(np.where(np.arange(200) >= 100, 15, 0), unit="h")
    return data.set_axis((data.index + night).rename("time"))


def test_plot_breaks_the_lines_at_gaps_in_time(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    data = two_sessions()
    result = backtest(SmaCross, data, "X:M1", params={"fast": 3, "slow": 9, "size": 10})
    fig = result.plot()
    fig.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    ax_price, ax_equity, ax_dd = fig.axes
    for line in (ax_price.get_lines()[0], ax_equity.get_lines()[0]):
        y = np.asarray(line.get_ydata(), dtype=float)
        x = np.asarray(line.get_xdata())
        assert len(y) == 201 and np.flatnonzero(np.isnan(y)).tolist() == [100]
        assert x[100] == x[99] + np.timedelta64(1, "m")  # the break sits one bar after
    assert len(ax_dd.collections[0].get_paths()) == 2  # the drawdown area too
    plain = backtest(SmaCross, make_bars(200, seed=4), "X:M1", params={"fast": 3, "slow": 9})
    fig2 = plain.plot()
    assert not np.isnan(np.asarray(fig2.axes[0].get_lines()[0].get_ydata(), float)).any()
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(fig2)


class FlipFlop(Brain):
    """Buys one unit on even bars and sells it on odd ones: a fill on every bar."""

    def on_new_bar(self, series):
        side = "buy" if len(series) % 2 else "sell"
        self.send_order(side, 1, series.bsid.symbol)


def test_many_fill_markers_do_not_hide_the_price():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    many = backtest(FlipFlop, make_bars(600, seed=1), "X:M1")
    assert len(many.trades) == 599
    fig = many.plot()
    ax = fig.axes[0]
    price = ax.get_lines()[0]
    buys, sells = ax.collections[:2]
    for markers in (buys, sells):
        assert list(markers.get_sizes()) == [8]
        assert markers.get_alpha() < 0.5 and markers.get_zorder() < price.get_zorder()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["X", "buy (300)", "sell (299)"]
    few = backtest(SmaCross, make_bars(200, seed=4), "X:M1", params={"fast": 3, "slow": 9})
    fig2 = few.plot()
    assert list(fig2.axes[0].collections[0].get_sizes()) == [30]
    plt.close(fig)
    plt.close(fig2)
