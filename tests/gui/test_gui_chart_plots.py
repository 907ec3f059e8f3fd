"""What a Brain plots, and the chart itself (headless Qt: QT_QPA_PLATFORM=offscreen).

The model places each plotted value on the bar of its time; the chart draws exactly those
values (read back from its plot items), from history and live. The chart fills its area, its
fill markers are filled, coloured by side and sized with the candles, its time labels do not
overlap, and a time without bars is empty space.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from osmarkets.brokers.base import OrderEvent  # noqa: E402
from osmarkets.data.types import BAR_DTYPE  # noqa: E402
from osmarkets.gui.app import qt_error  # noqa: E402
from osmarkets.gui.model import CandleModel  # noqa: E402

MIN = 60_000_000_000
DAY = 1_440 * MIN
T0 = 1_704_186_000_000_000_000  # 2024-01-02 09:00 UTC
_QT = qt_error()
needs_qt = pytest.mark.skipif(_QT is not None, reason=f"Qt cannot load here: {_QT}")


def bars_at(times: Any, seed: int = 0) -> np.ndarray:
    """Bars (``BAR_DTYPE``) opening at ``times``: a random walk around 1.1."""
    times = np.asarray(times, dtype=np.int64)
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 5e-4, len(times))))
    open_ = np.r_[close[0], close[:-1]] if len(times) else close
    wick = np.abs(rng.normal(0, 2e-4, len(times)))
    bars = np.zeros(len(times), dtype=BAR_DTYPE)
    bars["time"] = times
    bars["open"], bars["close"] = open_, close
    bars["high"] = np.maximum(open_, close) + wick
    bars["low"] = np.minimum(open_, close) - wick
    bars["volume"] = rng.integers(1, 100, len(times))
    for side in ("bid", "ask"):
        for col in ("open", "high", "low", "close"):
            bars[f"{side}_{col}"] = np.nan
    return bars


def minutes(*runs: tuple[int, int]) -> np.ndarray:
    """Times of one-minute bars: each run is (first minute after T0, count)."""
    return np.concatenate([T0 + MIN * np.arange(a, a + n) for a, n in runs])


GAPPED = minutes((0, 100), (160, 100))  # an hour without bars after the 100th


# -- the model ----------------------------------------------------------------------------------
def test_x_is_time_in_bar_periods_so_missing_bars_leave_a_gap():
    model = CandleModel("EUR_USD M1")
    model.load(bars_at(GAPPED), seq=200)
    w = model.window(0, 200)
    np.testing.assert_array_equal(w.x[:100], np.arange(100))
    np.testing.assert_array_equal(w.x[100:], np.arange(160, 260))
    assert model.last_x == 259
    assert model.index_range(95, 165) == (95, 106)  # the bars whose x is in view
    assert model.index_at(99.4) == 99 and model.index_at(160.2) == 100
    assert model.index_at(130) is None  # over the gap: no bar
    assert model.readout(100)["x"] == 160.0
    assert model.time_at(160) == GAPPED[100]
    # a fill is drawn at the x of the bar holding it
    fill = OrderEvent("filled", "a", "EUR_USD", "buy", 1, 1.1, time=int(GAPPED[100]) + 5)
    model.add_fill(fill)
    assert list(model.markers().x) == [160.0]
    # the origin stays where the first bar was: dropping old bars does not move the others
    small = CandleModel("EUR_USD M1", max_bars=50)
    for seq, bar in enumerate(bars_at(GAPPED), start=1):
        small.add_bar(tuple(bar), seq)
    assert small.completed <= 50 and small.last_x == 259


def test_longer_time_frames_are_one_unit_a_bar_too():
    days = T0 + DAY * np.array([0, 1, 2, 3, 6, 7])  # a weekend without bars
    model = CandleModel("EUR_USD D")
    model.load(bars_at(days), seq=6)
    np.testing.assert_allclose(model.window(0, 6).x, [0, 1, 2, 3, 6, 7])
    months = np.array(
        ["2023-01", "2023-02", "2023-03", "2023-05", "2023-06"], dtype="datetime64[M]"
    ).astype("datetime64[ns]")
    model = CandleModel("EUR_USD MN")
    model.load(bars_at(months.astype(np.int64)), seq=5)
    x = model.window(0, 5).x
    np.testing.assert_allclose(x, [0, 1, 2, 4, 5], atol=0.1)  # April missing: a gap


def test_plotted_values_are_placed_at_the_bars_of_their_times():
    model = CandleModel("EUR_USD M1")
    model.load(bars_at(GAPPED), seq=200)
    times = np.r_[GAPPED[::3], T0 + 130 * MIN]  # the last: a minute without a bar
    values = np.sin(np.arange(len(times)) / 7.0)
    values[5] = np.nan  # no value: a gap in the line
    model.load_plots("sma:fast", "price", times, values)
    panel, x, drawn = model.plots(0, len(model))["sma:fast"]
    assert panel == "price"
    np.testing.assert_array_equal(x, model.x_of(GAPPED[::3]))
    np.testing.assert_array_equal(drawn, values[:-1])  # NaN where NaN was plotted
    # a window of display indices shows the values of its bars only
    panel, x, drawn = model.plots(100, 130)["sma:fast"]
    expected = np.flatnonzero(np.isin(GAPPED[100:130], times))
    np.testing.assert_array_equal(x, model.x_of(GAPPED[100:130][expected]))
    index = model.plot_points(100, 130)["sma:fast"][1]
    np.testing.assert_array_equal(index, 100 + expected)
    assert [len(x) for _, x, _ in model.plots(200, 300).values()] == [0]


def test_live_values_and_a_later_value_for_the_same_bar_replaces_the_earlier():
    model = CandleModel("EUR_USD M1")
    bars = bars_at(minutes((0, 30)))
    computed = {}
    for seq, bar in enumerate(bars, start=1):
        model.add_bar(tuple(bar), seq)
        model.dirty = False
        version = model.version
        value = float(bar["close"]) * 2
        model.add_plot("b:double", "sub", int(bar["time"]), value - 1)
        model.add_plot("b:double", "sub", int(bar["time"]), value)  # the last one wins
        computed[int(bar["time"])] = value
        assert model.dirty and model.version > version
    panel, x, drawn = model.plots(0, len(model))["b:double"]
    assert panel == "sub"
    np.testing.assert_array_equal(x, np.arange(30))
    np.testing.assert_array_equal(drawn, [computed[int(t)] for t in bars["time"]])
    # a value for an older bar, and one for the forming bar
    model.add_plot("b:double", "sub", int(bars["time"][3]), -1.0)
    assert model.plots(3, 4)["b:double"][2][0] == -1.0
    forming = int(bars["time"][-1]) + MIN
    model.add_tick((forming + 5, 1.2, 1.2002, 0.0, 0.0))
    model.add_plot("b:double", "sub", forming, 7.0)
    _, x, drawn = model.plots(len(model) - 1, len(model))["b:double"]
    assert list(x) == [30.0] and list(drawn) == [7.0]
    # history replaces what was held for that name
    model.load_plots("b:double", "price", bars["time"][:2], [1.0, 2.0])
    panel, x, drawn = model.plots(0, len(model))["b:double"]
    assert panel == "price" and list(drawn) == [1.0, 2.0]


def test_plots_keep_at_most_max_bars_values_per_name():
    model = CandleModel("EUR_USD M1", max_bars=50)
    times = minutes((0, 500))
    model.load(bars_at(times[-50:]), seq=500)
    for k, t in enumerate(times):
        model.add_plot("b:x", "price", int(t), float(k))
    held = model._plots["b:x"]
    assert held.n <= 50 and len(held.times) <= 50
    assert held.times[held.n - 1] == times[-1] and held.values[held.n - 1] == 499.0
    _, _, drawn = model.plots(0, len(model))["b:x"]
    assert drawn[-1] == 499.0 and len(drawn) >= 45
    # unsorted history with a repeated time: sorted, the last value of the time kept
    model.load_plots("b:y", "price", np.r_[times[::-1], times[-1]], np.r_[np.arange(500.0), -5])
    held = model._plots["b:y"]
    assert held.n == 50 and np.all(np.diff(held.times[: held.n]) > 0)
    assert held.times[held.n - 1] == times[-1] and held.values[held.n - 1] == -5.0


def test_bad_plot_input_is_refused_with_one_clear_line():
    model = CandleModel("EUR_USD M1")
    cases = [
        (("b:x", "top", T0, 1.0), "panel"),
        ((5, "price", T0, 1.0), "name"),
        (("", "price", T0, 1.0), "name"),
        (("b:x", "price", float("nan"), 1.0), "time"),
        (("b:x", "price", float("inf"), 1.0), "time"),
        (("b:x", "price", "soon", 1.0), "time"),
        (("b:x", "price", T0, "high"), "value"),
        (("b:x", "price", T0, float("inf")), "value"),
    ]
    for args, field in cases:
        with pytest.raises(ValueError, match=field) as info:
            model.add_plot(*args)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="2 times but 3 values"):
        model.load_plots("b:x", "price", [T0, T0 + MIN], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="time"):
        model.load_plots("b:x", "price", [T0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="panel"):
        model.load_plots("b:x", "below", [T0], [1.0])
    assert model._plots == {}
    model.add_plot("b:x", "price", T0, float("nan"))  # NaN is allowed: no value
    model.add_plot("b:x", "price", T0 + MIN, None)


# -- the chart ----------------------------------------------------------------------------------
@pytest.fixture
def app() -> Any:
    from osmarkets.gui.app import application

    return application()


def show(model: CandleModel, app: Any, width: int = 1000, height: int = 600, **kw: Any) -> Any:
    from osmarkets.gui.chart import ChartWidget

    chart = ChartWidget(model, **kw)
    chart.resize(width, height)
    chart.show()
    app.processEvents()
    chart.refresh(force=True)
    app.processEvents()
    return chart


def drawn(item: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = item.getData()
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


@needs_qt
def test_chart_draws_the_history_of_plots_as_given(app):
    model = CandleModel("EUR_USD M1")
    model.load(bars_at(GAPPED), seq=200)
    values = np.cos(np.arange(200) / 5.0)
    values[150] = np.nan
    model.load_plots("sma:fast", "price", GAPPED, values * 1e-3 + 1.1)
    model.load_plots("sma:osc", "sub", GAPPED, values)
    chart = show(model, app, visible_bars=300)  # everything in view
    items = chart.plot_items()
    assert set(items) == {"sma:fast", "sma:osc"}
    x, y = drawn(items["sma:fast"])
    np.testing.assert_array_equal(x, model.x_of(GAPPED))
    np.testing.assert_array_equal(y, values * 1e-3 + 1.1)
    x, y = drawn(items["sma:osc"])
    np.testing.assert_array_equal(x, model.x_of(GAPPED))
    np.testing.assert_array_equal(y, values)
    assert items["sma:fast"].getViewBox() is chart.price.vb
    assert chart.sub_plot is not None and items["sma:osc"].getViewBox() is chart.sub_plot.vb
    # a legend entry each, in the panel of the line
    for panel, name in (("price", "sma:fast"), ("sub", "sma:osc")):
        labels = [label.text for _, label in chart.legends[panel].items]
        assert labels == [name]
    # the sub panel is laid out under the others and follows the price plot's x
    assert chart.sub_plot.isVisible()
    assert chart.sub_plot.vb.linkedView(0) is chart.price.vb
    y_lo, y_hi = chart.sub_plot.vb.viewRange()[1]
    assert y_lo < -0.99 and y_hi > 0.99
    # distinct colours, stable across redraws
    colours = {name: item.opts["pen"].color().getRgb() for name, item in items.items()}
    assert len(set(colours.values())) == 2
    model.add_plot("sma:third", "price", int(GAPPED[-1]), 1.1)
    chart.refresh()
    after = {name: item.opts["pen"].color().getRgb() for name, item in chart.plot_items().items()}
    assert {n: after[n] for n in colours} == colours and len(set(after.values())) == 3


@needs_qt
def test_chart_draws_live_plots_as_given_and_only_makes_a_sub_panel_for_sub(app):
    model = CandleModel("EUR_USD M1")
    bars = bars_at(minutes((0, 60)))
    chart = show(model, app)
    computed: dict[int, float] = {}
    for seq, bar in enumerate(bars, start=1):
        model.add_bar(tuple(bar), seq)
        value = float(np.mean(bars["close"][max(0, seq - 5) : seq]))  # what a Brain computes
        model.add_plot("b:sma5", "price", int(bar["time"]), value)
        computed[int(bar["time"])] = value
        assert chart.refresh()
        x, y = drawn(chart.plot_items()["b:sma5"])
        assert x[-1] == model.last_x and y[-1] == value  # the newest value, on the newest bar
    x, y = drawn(chart.plot_items()["b:sma5"])
    times = model.bars()["time"]
    np.testing.assert_array_equal(x, model.x_of(times))
    np.testing.assert_array_equal(y, [computed[int(t)] for t in times])
    assert chart.sub_plot is None  # only 'price' plots: no sub panel
    panels_before = chart.graphics.ci.layout.count()
    model.add_plot("b:spread", "sub", int(times[-1]), 0.5)
    chart.refresh()
    assert chart.sub_plot is not None and chart.sub_plot.isVisible()
    assert chart.graphics.ci.layout.count() == panels_before + 1
    assert list(drawn(chart.plot_items()["b:spread"])[1]) == [0.5]


@needs_qt
def test_each_plotted_name_has_one_legend_entry(app):
    model = CandleModel("EUR_USD M1")
    bars = bars_at(minutes((0, 10)))
    model.load(bars)
    chart = show(model, app)
    for name in ("b:fast", "b:slow", "c:fast"):
        model.add_plot(name, "price", int(bars["time"][-1]), 1.1)
        chart.refresh()
    model.add_plot("b:z", "sub", int(bars["time"][-1]), 0.0)
    chart.refresh()
    price = [label.text for _, label in chart.legends["price"].items]
    assert sorted(price) == ["b:fast", "b:slow", "c:fast"]
    assert [label.text for _, label in chart.legends["sub"].items] == ["b:z"]


@needs_qt
def test_plots_stay_bounded_by_the_screen_when_zoomed_out(app):
    n = 20_000
    times = minutes((0, n))
    model = CandleModel("EUR_USD M1")
    model.load(bars_at(times), seq=n)
    model.load_plots("b:i", "price", times, np.arange(n, dtype=float))
    chart = show(model, app, width=800, visible_bars=n + 10)
    assert chart.bucket > 1
    pixels = chart.price.vb.width()
    assert chart.candles.drawn <= pixels / 2 + 2
    x, y = drawn(chart.plot_items()["b:i"])
    assert len(x) == chart.candles.drawn
    np.testing.assert_array_equal(x, chart.candles.x)
    # each point is the value of the last bar its candle merges
    size = chart.bucket
    last_bar = np.searchsorted(model.x_of(times), x + size / 2, side="right") - 1
    np.testing.assert_array_equal(y, last_bar.astype(float))


@needs_qt
def test_a_gap_in_time_is_an_x_gap_between_candles(app):
    from osmarkets.gui.chart import _connect, _gaps

    model = CandleModel("EUR_USD M1")
    model.load(bars_at(GAPPED), seq=200)
    model.load_plots("b:c", "price", GAPPED, bars_at(GAPPED)["close"])
    chart = show(model, app, visible_bars=300)
    assert chart.bucket == 1 and chart.candles.drawn == 200
    steps = np.diff(chart.candles.x)
    assert sorted(set(steps.tolist())) == [1.0, 61.0]  # one step of an hour and a minute
    assert steps[99] == 61.0
    # no line is drawn across the gap
    x, y = drawn(chart.plot_items()["b:c"])
    connect = _connect(x, y, _gaps(chart.candles.x, 1))
    assert not connect[99] and connect[:99].all() and connect[100:-1].all()
    assert np.array_equal(chart.plot_items()["b:c"].opts["connect"], connect)
    # the readout over the gap names no bar; over a bar, that bar
    chart._cursor = 130.0
    chart._update_readout()
    assert "no bar" in chart.readout.text()
    chart._cursor = 160.0
    chart._update_readout()
    assert "2024-01-02 11:40" in chart.readout.text()


@needs_qt
def test_following_keeps_the_newest_bar_in_view_after_a_gap(app):
    model = CandleModel("EUR_USD M1")
    model.load(bars_at(minutes((0, 50))), seq=50)
    chart = show(model, app, visible_bars=60)
    late = bars_at(minutes((50 + 2 * 1_440, 1)))[0]  # two days later
    model.add_bar(tuple(late), 51)
    chart.refresh()
    x0, x1 = chart.price.vb.viewRange()[0]
    assert x0 < model.last_x < x1 and x1 - x0 == pytest.approx(60)
    assert chart.candles.x[-1] == model.last_x


@needs_qt
def test_the_chart_uses_the_whole_area(app):
    from osmarkets.gui.chart import AXIS_WIDTH

    model = CandleModel("EUR_USD M1")
    model.load(bars_at(minutes((0, 300))), seq=300)
    chart = show(model, app, width=900, height=640)
    area = chart.graphics.viewport().rect()

    def heights() -> list[float]:
        return [p.geometry().height() for p, _ in chart._panels()]

    for shown in ({"SMA 20"}, {"SMA 20", "RSI 14", "MACD 12,26,9"}):
        chart.set_indicators(shown)
        app.processEvents()
        panels = [p for p, _ in chart._panels()]
        assert sum(heights()) == pytest.approx(area.height(), abs=1.0)
        for plot in panels:
            assert plot.geometry().width() == pytest.approx(area.width(), abs=1.0)
            assert plot.vb.sceneBoundingRect().left() == pytest.approx(AXIS_WIDTH, abs=1.0)
        assert panels[0].geometry().top() == 0
        # the price plot takes the largest share; the time axis is under the lowest panel only
        assert heights()[0] > 2 * max(heights()[1:])
        assert [p.getAxis("bottom").isVisible() for p in panels] == [False] * (len(panels) - 1) + [
            True
        ]
    # hidden panels take no room
    chart.set_indicators({"SMA 20"})
    app.processEvents()
    assert not chart.rsi_plot.isVisible() and not chart.macd_plot.isVisible()
    assert chart.graphics.ci.layout.count() == 2


@needs_qt
def test_fill_markers_are_filled_coloured_by_side_and_sized_with_the_candles(app):
    from osmarkets.gui.chart import BUY, DOWN, MARKER_MAX, MARKER_MIN, SELL, UP

    model = CandleModel("EUR_USD M1")
    bars = bars_at(minutes((0, 300)))
    model.load(bars, seq=300)
    for k, side in ((292, "buy"), (296, "sell")):
        model.add_fill(
            OrderEvent("filled", str(k), "EUR_USD", side, 1, 1.1, time=int(bars["time"][k]))
        )
    sizes = []
    for span in (250, 120, 60, 30, 12):
        chart = show(model, app, width=1000, visible_bars=span)
        spots = chart.markers.points()
        assert len(spots) == 2
        by_side = {spot.pos().x(): spot for spot in spots}
        buy, sell = by_side[292.0], by_side[296.0]
        assert buy.symbol() == "t1" and sell.symbol() == "t"  # up for buys, down for sells
        assert (
            buy.brush().color().getRgb()[:3] == BUY and sell.brush().color().getRgb()[:3] == SELL
        )
        assert buy.brush().style() == sell.brush().style() == pg_solid()
        assert buy.pen().widthF() >= 1 and buy.pen().color().lightness() > 200  # an outline
        assert MARKER_MIN <= buy.size() <= MARKER_MAX and buy.size() == chart.marker_size
        sizes.append(buy.size())
        chart.close()
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # wider candles, bigger markers
    assert sizes[0] >= MARKER_MIN and sizes[-1] == MARKER_MAX
    assert BUY not in (UP, DOWN) and SELL not in (UP, DOWN)


def pg_solid() -> Any:
    from pyqtgraph.Qt import QtCore

    return QtCore.Qt.BrushStyle.SolidPattern


def _labels_fit(axis: Any, x0: float, x1: float, pixels: float) -> int:
    """Asserts neighbouring labels of the axis leave room between them; returns how many."""
    from pyqtgraph.Qt import QtGui

    from osmarkets.gui.chart import LABEL_GAP

    metrics = QtGui.QFontMetricsF(axis.label_font)
    levels = axis.tickValues(x0, x1, pixels)
    shown: list[tuple[float, float, str]] = []
    for spacing, values in levels:
        strings = axis.tickStrings(values, 1.0, spacing)
        for value, text in zip(values, strings, strict=True):
            if text:
                shown.append(
                    ((value - x0) * pixels / (x1 - x0), metrics.horizontalAdvance(text), text)
                )
    shown.sort()
    for (p1, w1, s1), (p2, w2, s2) in zip(shown, shown[1:], strict=False):
        room = p2 - p1 - (w1 + w2) / 2
        assert room >= LABEL_GAP / 2, (x0, x1, pixels, s1, s2, room)
    return len(shown)


@needs_qt
@pytest.mark.parametrize(
    "series", ["EUR_USD M1", "EUR_USD S5", "EUR_USD H4", "EUR_USD D", "EUR_USD W", "EUR_USD MN"]
)
def test_time_labels_do_not_overlap(app, series):
    from osmarkets.gui.chart import TimeAxis

    model = CandleModel(series)
    model.load(bars_at([T0]), seq=1)
    axis = TimeAxis(model)
    labelled = 0
    for pixels in (120, 300, 640, 1280, 2560):
        for span in (3, 10, 40, 120, 600, 5_000, 60_000, 1_000_000):
            for offset in (0.0, 17.3, -1234.5):
                labelled += _labels_fit(axis, offset, offset + span, pixels)
    assert labelled > 100  # labels are shown, just not on top of each other


@needs_qt
def test_time_labels_drawn_on_the_chart_do_not_overlap(app):
    from pyqtgraph.Qt import QtGui

    model = CandleModel("EUR_USD M1")
    model.load(bars_at(GAPPED), seq=200)
    for width in (260, 500, 1200):
        for span in (20, 120, 240):
            chart = show(model, app, width=width, visible_bars=span)
            axis = chart._panels()[-1][0].getAxis("bottom")
            picture = QtGui.QPicture()
            painter = QtGui.QPainter(picture)
            specs = axis.generateDrawSpecs(painter)
            painter.end()
            rects = sorted((rect for rect, _, text in specs[2]), key=lambda r: r.left())
            assert rects, (width, span)
            for a, b in zip(rects, rects[1:], strict=False):
                assert a.right() < b.left(), (width, span)
            chart.close()


@needs_qt
def test_month_labels_name_the_year_in_january(app):
    from osmarkets.gui.chart import TimeAxis

    months = np.arange("2020-01", "2024-01", dtype="datetime64[M]").astype("datetime64[ns]")
    model = CandleModel("EUR_USD D")
    model.load(bars_at(months.astype(np.int64)), seq=len(months))
    axis = TimeAxis(model)
    x0, x1 = 0.0, float(model.last_x)
    ((spacing, values),) = axis.tickValues(x0, x1, 1200)
    strings = axis.tickStrings(values, 1.0, spacing)
    assert "2021" in strings and "2022" in strings
    names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
    assert all(s in names or s.isdigit() for s in strings)
    # ticks fall on the first of a month
    for value in values:
        stamp = np.datetime64(round(model.time_at(value)), "ns")
        assert stamp == stamp.astype("datetime64[M]")
