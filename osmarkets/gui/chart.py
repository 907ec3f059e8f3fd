"""The candlestick chart widget (PyQtGraph): draws a :class:`~osmarkets.gui.model.CandleModel`.

x is time (:meth:`CandleModel.x_of <osmarkets.gui.model.CandleModel.x_of>`: one unit per bar
period), so a weekend or an hour without bars is empty space, not two candles side by side.

Drawing cost is bounded by the screen, not by the history: each redraw takes only the bars in
view from the model, and when the view spans more than about one bar period per two pixels it
merges the bars of neighbouring periods into one candle (open of the first, close of the last,
extreme high and low, summed volume), so 100,000 bars zoomed out cost no more than a screenful.
Candles and volume are each a single :class:`CandleItem` (one QPicture), not one graphics item
per bar. The values Brains plot (``Brain.plot``) are lines over the candles (panel ``'price'``)
or in a panel below them (``'sub'``), one colour and legend entry per name.

:meth:`ChartWidget.refresh` redraws only when the model or the view changed; the window calls
it from a ~30 Hz timer, so messages are consumed at full speed while the screen is rate-limited.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from .model import CandleModel, Window

UP = (38, 166, 91)
DOWN = (214, 69, 65)
BACKGROUND = (19, 23, 34)
# fill markers: brighter than the candles, so a trade stands out on a candle of its colour
BUY = (0, 230, 118)
SELL = (255, 45, 85)
MARKER_OUTLINE = (245, 245, 245)
MARKER_MIN, MARKER_MAX = 10.0, 28.0  # pixels
LINE_COLOURS = {
    "sma": (255, 193, 7),
    "ema": (0, 188, 212),
    "bollinger": (156, 39, 176),
    "rsi": (255, 152, 0),
    "macd": (33, 150, 243),
}
# the lines Brains plot, in the order their names first appear on a chart
PLOT_COLOURS = (
    (236, 64, 122),
    (0, 229, 255),
    (255, 238, 88),
    (198, 255, 0),
    (179, 136, 255),
    (255, 112, 67),
    (29, 233, 182),
    (68, 138, 255),
    (240, 240, 240),
    (255, 128, 171),
)
AXIS_WIDTH = 70  # pixels of the price axis, the same on every panel so they line up
LABEL_GAP = 14  # pixels at least between two time labels


def plot_colour(index: int) -> tuple[int, int, int]:
    """The colour of the ``index``-th name plotted on a chart."""
    if index < len(PLOT_COLOURS):
        return PLOT_COLOURS[index]
    colour = pg.intColor(index, hues=13, values=1, minValue=200)
    return (colour.red(), colour.green(), colour.blue())


class CandleItem(pg.GraphicsObject):
    """Candles (``mode='candle'``) or volume bars (``mode='volume'``) in one QPicture."""

    def __init__(self, mode: str = "candle") -> None:
        super().__init__()
        self.mode = mode
        self.picture = QtGui.QPicture()
        self._rect = QtCore.QRectF()
        self.drawn = 0  # candles in the current picture
        self.x = np.array([], dtype=float)  # where they are drawn
        self._pens = [pg.mkPen(UP), pg.mkPen(DOWN)]
        self._brushes = [pg.mkBrush(UP), pg.mkBrush(DOWN)]

    def set_data(
        self,
        x: np.ndarray,
        width: float,
        o: np.ndarray,
        h: np.ndarray,
        low: np.ndarray,
        c: np.ndarray,
        v: np.ndarray,
    ) -> None:
        picture = QtGui.QPicture()
        painter = QtGui.QPainter(picture)
        half = width * 0.4
        rising = c >= o
        QRectF, QLineF = QtCore.QRectF, QtCore.QLineF
        for group, mask in enumerate((rising, ~rising)):
            xs = x[mask].tolist()
            if not xs:
                continue
            painter.setPen(self._pens[group])
            painter.setBrush(self._brushes[group])
            if self.mode == "candle":
                painter.drawLines(
                    [
                        QLineF(a, b, a, t)
                        for a, b, t in zip(xs, low[mask].tolist(), h[mask].tolist(), strict=True)
                    ]
                )
                painter.drawRects(
                    [
                        QRectF(a - half, b, 2 * half, t - b)
                        for a, b, t in zip(xs, o[mask].tolist(), c[mask].tolist(), strict=True)
                    ]
                )
            else:
                painter.drawRects(
                    [
                        QRectF(a - half, 0.0, 2 * half, t)
                        for a, t in zip(xs, v[mask].tolist(), strict=True)
                    ]
                )
        painter.end()
        self.picture = picture
        self.drawn = len(x)
        self.x = np.asarray(x, dtype=float)
        if len(x):
            bottom = 0.0 if self.mode == "volume" else float(np.nanmin(low))
            top = float(np.nanmax(v if self.mode == "volume" else h))
            rect = QtCore.QRectF(
                float(x[0]) - width,
                bottom,
                float(x[-1] - x[0]) + 2 * width,
                max(top - bottom, 1e-12),
            )
        else:
            rect = QtCore.QRectF()
        self.prepareGeometryChange()
        self._rect = rect
        self.update()

    def paint(self, painter: QtGui.QPainter, *args: Any) -> None:
        painter.drawPicture(0, 0, self.picture)

    def boundingRect(self) -> QtCore.QRectF:
        return self._rect


# -- the time axis ------------------------------------------------------------------------------
_S = 1_000_000_000
_MIN, _HOUR, _DAY = 60 * _S, 3_600 * _S, 86_400 * _S
_MONTH = 30.436875 * _DAY
_MONDAY = 4 * _DAY  # 1970-01-05, the first Monday after the epoch
# Tick steps, finest first: (kind, count, nominal length in ns); 'ns' steps are exact.
_STEPS: tuple[tuple[str, int, float], ...] = (
    *(("ns", n * _S, float(n * _S)) for n in (1, 2, 5, 10, 15, 30)),
    *(("ns", n * _MIN, float(n * _MIN)) for n in (1, 2, 5, 10, 15, 30)),
    *(("ns", n * _HOUR, float(n * _HOUR)) for n in (1, 2, 3, 4, 6, 12)),
    *(("ns", n * _DAY, float(n * _DAY)) for n in (1, 2, 7)),
    *(("month", n, n * _MONTH) for n in (1, 2, 3, 6)),
    *(("year", n, n * 12 * _MONTH) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)),
)
# label formats for a step: (usual, at a day/year boundary)
_SAMPLES = [
    dt.datetime(2024, month, day, hour, 58, 58)
    for month in range(1, 13)
    for day, hour in ((10, 0), (28, 23))
]


def _formats(step: tuple[str, int, float]) -> tuple[str, str]:
    kind, count, _ = step
    if kind == "year":
        return "%Y", "%Y"
    if kind == "month":
        return "%b", "%Y"
    if count >= _DAY:
        return "%b %d", "%b %d"
    if count >= _MIN:
        return "%H:%M", "%b %d"
    return "%H:%M:%S", "%b %d"


class TimeAxis(pg.AxisItem):
    """Bottom axis: x is time in bar periods (the model's :meth:`~CandleModel.x_of`); the
    ticks fall on round times (every 15 minutes, every 6 hours, on the first of the month...),
    as many as fit without their labels overlapping: the step is the smallest whose distance in
    pixels exceeds the widest label of its format plus :data:`LABEL_GAP`."""

    def __init__(self, model: CandleModel) -> None:
        super().__init__(orientation="bottom")
        self.model = model
        self.label_font = QtGui.QFont()
        self.setStyle(tickFont=self.label_font, autoExpandTextSpace=False)
        self._widths: dict[tuple[str, str], float] = {}

    def label_width(self, step: tuple[str, int, float]) -> float:
        """Pixels of the widest label a tick of ``step`` can have."""
        formats = _formats(step)
        if formats not in self._widths:
            metrics = QtGui.QFontMetricsF(self.label_font)
            self._widths[formats] = max(
                metrics.horizontalAdvance(t.strftime(f)) for t in _SAMPLES for f in formats
            )
        return self._widths[formats]

    def _step(self, x0: float, x1: float, pixels: float) -> tuple[str, int, float] | None:
        unit = self.model.x_unit  # no ticks between two bars: a step of one bar at least
        per_ns = pixels / ((x1 - x0) * unit)
        for step in _STEPS:
            if step[2] >= unit * 0.999 and step[2] * per_ns >= self.label_width(step) + LABEL_GAP:
                return step
        return None

    def tick_times(self, x0: float, x1: float, pixels: float) -> tuple[float, np.ndarray]:
        """The step (in x) and the times (ns) of the ticks in ``[x0, x1]`` on ``pixels``."""
        none = (0.0, np.array([], dtype=np.int64))
        if self.model.origin is None or not (
            math.isfinite(x0) and math.isfinite(x1) and x1 > x0 and pixels > 0
        ):
            return none
        step = self._step(x0, x1, pixels)
        if step is None:
            return none
        t0, t1 = self.model.time_at(x0), self.model.time_at(x1)
        if not (t0 > -9e18 and t1 < 9e18):
            return none
        kind, count, nominal = step
        if kind == "ns":
            offset = _MONDAY if count == 7 * _DAY else 0
            first = math.ceil((t0 - offset) / count) * count + offset
            times = np.arange(first, int(t1) + 1, count, dtype=np.int64)
        else:
            unit = "M" if kind == "month" else "Y"
            lo = np.datetime64(int(t0), "ns").astype(f"datetime64[{unit}]").astype(np.int64)
            hi = np.datetime64(int(t1), "ns").astype(f"datetime64[{unit}]").astype(np.int64)
            periods = np.arange(math.ceil(lo / count) * count, hi + 1, count)
            times = periods.astype(f"datetime64[{unit}]").astype("datetime64[ns]").astype(np.int64)
            times = times[(times >= t0) & (times <= t1)]
        return nominal / self.model.x_unit, times

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:
        spacing, times = self.tick_times(minVal, maxVal, size)
        if not len(times):
            return []
        return [(spacing, self.model.x_of(times).tolist())]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.model.origin is None or not values:
            return ["" for _ in values]
        nominal = spacing * self.model.x_unit
        step = min(_STEPS, key=lambda s: abs(math.log(s[2] / nominal)) if nominal > 0 else 0)
        usual, boundary = _formats(step)
        out = []
        for value in values:
            t = round(self.model.time_at(value) / _S) * _S
            stamp = dt.datetime.fromtimestamp(t // _S, dt.UTC)
            at_boundary = (
                stamp.month == 1 if step[0] == "month" else (step[2] < _DAY and t % _DAY == 0)
            )
            out.append(stamp.strftime(boundary if at_boundary else usual))
        return out


# -- merging bars -------------------------------------------------------------------------------
def _slot(x: np.ndarray, size: int) -> np.ndarray:
    """Which group of ``size`` bar periods each x falls in (absolute, so panning is stable)."""
    return np.floor((np.asarray(x, dtype=float) + 0.5) / size)


def _slot_centre(x: np.ndarray, size: int) -> np.ndarray:
    """Where a candle merging the bars of ``x``'s group is drawn (x itself when not merging)."""
    return x if size == 1 else (_slot(x, size) + 0.5) * size - 0.5


def _bucket(w: Window, size: int) -> tuple[np.ndarray, ...]:
    """Merge the bars within each ``size`` bar periods into one candle; returns x, open, high,
    low, close, volume and the index in ``w`` of each candle's last bar."""
    n = len(w.open)
    if size == 1:
        return w.x, w.open, w.high, w.low, w.close, w.volume, np.arange(n)
    slot = _slot(w.x, size)
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    ends = np.r_[starts[1:], n] - 1
    high = np.maximum.reduceat(w.high, starts)
    low = np.minimum.reduceat(w.low, starts)
    volume = np.add.reduceat(w.volume, starts)
    x = (slot[starts] + 0.5) * size - 0.5
    return x, w.open[starts], high, low, w.close[ends], volume, ends


def _last_per_slot(x: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """One point per merged candle: the value of its last bar, at the candle's x."""
    if size == 1 or not len(x):
        return x, values
    slot = _slot(x, size)
    last = np.r_[slot[1:] != slot[:-1], True]
    return (slot[last] + 0.5) * size - 0.5, values[last]


def _gaps(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the candles at ``x`` (sorted) leave at least one bar period empty: the x of the
    candle before each gap and of the one after it."""
    if len(x) < 2:
        return np.array([]), np.array([])
    gap = np.flatnonzero(np.diff(x) > 1.5 * size)
    return x[gap], x[gap + 1]


def _connect(x: np.ndarray, y: np.ndarray, gaps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which points a line joins to the next (pyqtgraph's ``connect`` array): not across a
    missing value (NaN), nor across a gap in time."""
    connect = np.zeros(len(x), dtype=bool)
    if len(x) < 2:
        return connect
    finite = np.isfinite(y)
    connect[:-1] = finite[:-1] & finite[1:]
    before, after = gaps
    if len(before):
        j = np.searchsorted(x, before, side="right") - 1  # the last point before each gap
        ok = (j >= 0) & (j + 1 < len(x))
        j, after = j[ok], after[ok]
        connect[j[x[j + 1] >= after]] = False
    return connect


def _y_range(parts: list[np.ndarray]) -> tuple[float, float] | None:
    finite = np.concatenate(parts) if parts else np.array([])
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    lo, hi = float(finite.min()), float(finite.max())
    pad = (hi - lo) * 0.05 or abs(hi) * 1e-4 or 1.0
    return lo - pad, hi + pad


class ChartWidget(QtWidgets.QWidget):
    """Candles, volume, overlays, RSI/MACD sub-plots, Brains' plots, fills, crosshair,
    zoom/pan, follow."""

    def __init__(
        self, model: CandleModel, parent: QtWidgets.QWidget | None = None, visible_bars: int = 120
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.follow = True
        self.span = float(visible_bars)  # x units (bar periods) in view
        self.frames = 0
        self.bucket = 1
        self.marker_size = MARKER_MIN
        self._view_changed = True
        self._setting_range = False
        self._cursor: float | None = None  # x under the mouse
        self.shown = {spec.name for spec in model.specs if spec.kind in ("sma", "bollinger")}
        self.readout = QtWidgets.QLabel(str(model.bsid))
        self.readout.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.readout.setStyleSheet("font-family: monospace; padding: 2px;")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.graphics.setContentsMargins(0, 0, 0, 0)
        # the plots fill the widget: no margin around them, none between them
        self.graphics.ci.setContentsMargins(0, 0, 0, 0)
        self.graphics.ci.setSpacing(0)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.readout)
        layout.addWidget(self.graphics, 1)

        self.price = self._new_plot()
        self.volume = self._new_plot()
        self.rsi_plot = self._new_plot()
        self.macd_plot = self._new_plot()
        self.sub_plot: pg.PlotItem | None = None  # Brains' 'sub' plots, made for the first one
        self.subplots = {"volume": self.volume, "rsi": self.rsi_plot, "macd": self.macd_plot}
        self.rsi_plot.setYRange(0, 100, padding=0)
        self._relayout()  # puts the plots in the scene

        self.candles = CandleItem("candle")
        self.volume_bars = CandleItem("volume")
        self.price.addItem(self.candles)
        self.volume.addItem(self.volume_bars)
        self.lines: dict[str, pg.PlotDataItem] = {}
        for spec in model.specs:
            plot = self.price if spec.overlay else self.subplots[spec.kind]
            colour = LINE_COLOURS[spec.kind]
            for line in spec.lines:
                style = (
                    QtCore.Qt.PenStyle.DashLine
                    if line in ("upper", "lower", "signal")
                    else QtCore.Qt.PenStyle.SolidLine
                )
                pen = pg.mkPen(colour, width=1, style=style)
                item = pg.PlotDataItem(pen=pen)
                plot.addItem(item)
                self.lines[f"{spec.name}:{line}"] = item
        self.plot_lines: dict[str, pg.PlotDataItem] = {}  # Brains' plots by name
        self.plot_panels: dict[str, str] = {}
        self.legends: dict[str, pg.LegendItem] = {}
        self.markers = pg.ScatterPlotItem(pxMode=True)
        self.markers.setZValue(10)
        self._marker_pen = pg.mkPen(MARKER_OUTLINE, width=1.2)
        self._marker_brushes = {1: pg.mkBrush(BUY), -1: pg.mkBrush(SELL)}
        self.price.addItem(self.markers)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((150, 150, 150)))
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen((150, 150, 150)))
        self.vline.setVisible(False)
        self.hline.setVisible(False)
        self.price.addItem(self.vline, ignoreBounds=True)
        self.price.addItem(self.hline, ignoreBounds=True)
        self.price.scene().sigMouseMoved.connect(self._on_mouse)
        self.price.vb.sigRangeChangedManually.connect(self._on_manual_range)
        self.price.vb.sigXRangeChanged.connect(self._on_x_range)
        self.price.vb.sigResized.connect(self._on_resized)
        self.set_indicators(self.shown)

    def _new_plot(self) -> pg.PlotItem:
        plot = pg.PlotItem(axisItems={"bottom": TimeAxis(self.model)})
        plot.layout.setContentsMargins(0, 0, 0, 0)
        # no grid: pyqtgraph draws it with the axes, alpha-blended over the whole plot,
        # which costs more than all the candles on a software-rendered screen
        plot.setMouseEnabled(x=True, y=False)
        plot.disableAutoRange()
        plot.hideButtons()
        plot.getAxis("left").setWidth(AXIS_WIDTH)
        plot.getAxis("left").setStyle(hideOverlappingLabels=True)  # none across panels
        plot.setVisible(False)
        if hasattr(self, "price"):
            plot.setXLink(self.price)
        return plot

    def _panels(self) -> list[tuple[pg.PlotItem, int]]:
        """The plots shown, top to bottom, with their share of the height."""
        kinds = {spec.kind for spec in self.model.specs if spec.name in self.shown}
        panels = [(self.price, 5), (self.volume, 1)]
        if "rsi" in kinds:
            panels.append((self.rsi_plot, 1))
        if "macd" in kinds:
            panels.append((self.macd_plot, 1))
        if self.sub_plot is not None:
            panels.append((self.sub_plot, 2))
        return panels

    def _relayout(self) -> None:
        """Lay out only the plots shown (a hidden plot would keep its share of the height),
        with the time axis under the lowest."""
        grid = self.graphics.ci.layout
        panels = self._panels()
        shown = {id(plot) for plot, _ in panels}
        for i in reversed(range(grid.count())):
            grid.removeAt(i)
        for plot in (self.price, self.volume, self.rsi_plot, self.macd_plot, self.sub_plot):
            if plot is not None and id(plot) not in shown:
                plot.setVisible(False)
        for row, (plot, stretch) in enumerate(panels):
            grid.addItem(plot, row, 0)
            grid.setRowStretchFactor(row, stretch)
            plot.setVisible(True)
            plot.showAxis("bottom", row == len(panels) - 1)
        for row in range(len(panels), grid.rowCount()):
            grid.setRowStretchFactor(row, 0)
        grid.activate()

    # -- controls ------------------------------------------------------------------------------
    def set_indicators(self, names: set[str]) -> None:
        """Show the indicators named (``IndicatorSpec.name``); sub-plots without one hide."""
        self.shown = set(names)
        for spec in self.model.specs:
            for line in spec.lines:
                self.lines[f"{spec.name}:{line}"].setVisible(spec.name in self.shown)
        self._relayout()
        self._view_changed = True

    def set_follow(self, on: bool = True) -> None:
        self.follow = on
        self._view_changed = True

    def _newest_x(self) -> float:
        last = self.model.last_x
        return -1.0 if last is None else last

    def _on_manual_range(self, *args: Any) -> None:
        (x0, x1), _ = self.price.vb.viewRange()
        self.span = max(5.0, x1 - x0)
        self.follow = x1 >= self._newest_x() + 0.5
        self._view_changed = True

    def _on_x_range(self, *args: Any) -> None:
        if not self._setting_range:
            self._view_changed = True

    def _on_resized(self, *args: Any) -> None:
        self._view_changed = True

    def _on_mouse(self, pos: QtCore.QPointF) -> None:
        if not self.price.sceneBoundingRect().contains(pos):
            return
        point = self.price.vb.mapSceneToView(pos)
        self.vline.setVisible(True)
        self.hline.setVisible(True)
        self.vline.setPos(point.x())
        self.hline.setPos(point.y())
        self._cursor = float(point.x())
        self._update_readout()

    def _update_readout(self) -> None:
        model = self.model
        if self._cursor is None:
            index: int | None = len(model) - 1
        else:
            index = model.index_at(self._cursor)
        info = None if index is None else model.readout(index)
        if info is None:
            text = str(model.bsid)
            if self._cursor is not None and model.origin is not None:
                when = model.time_at(self._cursor)
                if abs(when) < 9e18:
                    stamp = np.datetime64(int(when), "ns").astype("datetime64[m]")
                    text += f"  {str(stamp).replace('T', ' ')}  no bar"
            self.readout.setText(text)
            return
        text = (
            f"{model.bsid}  {info['time']:%Y-%m-%d %H:%M}"
            f"{' (forming)' if info['forming'] else ''}  O {info['open']:.5f}  "
            f"H {info['high']:.5f}  L {info['low']:.5f}  C {info['close']:.5f}  "
            f"V {info['volume']:g}"
        )
        for spec in model.specs:
            if spec.name in self.shown:
                values = [info[f"{spec.name}:{line}"] for line in spec.lines]
                shown = "/".join("-" if math.isnan(v) else f"{v:.5g}" for v in values)
                text += f"  {spec.name} {shown}"
        assert index is not None
        for name, (_, _, plotted) in model.plot_points(index, index + 1).items():
            if len(plotted) and not math.isnan(plotted[0]):
                text += f"  {name} {plotted[0]:.5g}"
        self.readout.setText(text)

    # -- Brains' plots ---------------------------------------------------------------------------
    def _legend(self, panel: str, plot: pg.PlotItem) -> pg.LegendItem:
        if panel not in self.legends:
            legend = plot.addLegend(offset=(4, 4), brush=pg.mkBrush(19, 23, 34, 180))
            self.legends[panel] = legend
        return self.legends[panel]

    def _plot_line(self, name: str, panel: str) -> pg.PlotDataItem:
        """The line of ``name`` (made the first time, with the next colour and a legend entry;
        moved if its panel changed)."""
        item = self.plot_lines.get(name)
        if item is not None and self.plot_panels[name] == panel:
            return item
        if panel == "sub" and self.sub_plot is None:
            self.sub_plot = self._new_plot()
            self._relayout()
        plot = self.price if panel == "price" else self.sub_plot
        assert plot is not None
        if item is None:
            colour = plot_colour(len(self.plot_lines))
            item = pg.PlotDataItem(pen=pg.mkPen(colour, width=1.5), name=name)
            item.setZValue(5)
            self.plot_lines[name] = item
        else:  # the Brain moved it to the other panel
            old = self.price if self.plot_panels[name] == "price" else self.sub_plot
            assert old is not None
            self.legends[self.plot_panels[name]].removeItem(item)
            old.removeItem(item)
        self._legend(panel, plot)  # first: the plot adds each named item to its legend
        plot.addItem(item)
        self.plot_panels[name] = panel
        return item

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """The lines of the values Brains plotted, by name (``'<brain>:<name>'``)."""
        return dict(self.plot_lines)

    def _draw_plots(
        self, start: int, stop: int, size: int, gaps: tuple[np.ndarray, np.ndarray]
    ) -> None:
        sub_parts = []
        for name, (panel, x, values) in self.model.plots(start, stop).items():
            item = self._plot_line(name, panel)
            x, values = _last_per_slot(x, values, size)
            item.setData(x, values, connect=_connect(x, values, gaps))
            if panel == "sub":
                sub_parts.append(values)
        if self.sub_plot is not None:
            bounds = _y_range(sub_parts)
            if bounds is not None:
                self.sub_plot.setYRange(*bounds, padding=0)

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Redraw if the model or the view changed. Returns whether it drew."""
        model = self.model
        if not (force or model.dirty or self._view_changed):
            return False
        if self.follow:
            x1 = self._newest_x() + 2.5
            x0 = x1 - self.span
            first = model.first_x
            if first is not None:  # fewer bars than the span: they fill the chart
                x0 = max(x0, min(first - 1.0, x1 - 5.0))
            self._setting_range = True
            try:
                self.price.setXRange(x0, x1, padding=0)
            finally:
                self._setting_range = False
        else:
            (x0, x1), _ = self.price.vb.viewRange()
        first, last = model.index_range(x0, x1)
        start, stop = max(0, first - 1), last + 1  # and the bars just outside the edges
        w = model.window(start, stop)
        model.dirty = False
        self._view_changed = False
        pixels = max(100.0, float(self.price.vb.width()))
        self.bucket = size = max(1, math.ceil((x1 - x0) / (pixels / 2)))
        if len(w.open):
            x, o, h, low, c, v, ends = _bucket(w, size)
        else:
            x = o = h = low = c = v = np.array([], dtype=float)
            ends = np.array([], dtype=int)
        self.candles.set_data(x, size, o, h, low, c, v)
        self.volume_bars.set_data(x, size, o, h, low, c, v)
        gaps = _gaps(x, size)
        for name, item in self.lines.items():
            if item.isVisible():
                y = w.lines[name][ends] if len(ends) else ends.astype(float)
                item.setData(x, y, connect=_connect(x, y, gaps))
        self._draw_plots(start, stop, size, gaps)
        self._draw_markers(start, stop, size, pixels / max(x1 - x0, 1e-9))
        if len(low):
            bounds = _y_range([low, h])
            if bounds is not None:
                self.price.setYRange(*bounds, padding=0)
            self.volume.setYRange(0, float(np.nanmax(v)) * 1.1 or 1.0, padding=0)
            if self.macd_plot.isVisible():
                parts = [
                    w.lines[f"{s.name}:{ln}"]
                    for s in model.specs
                    if s.kind == "macd"
                    for ln in s.lines
                ]
                macd = _y_range(parts)
                if macd is not None:
                    m = max(abs(macd[0]), abs(macd[1]))
                    self.macd_plot.setYRange(-m, m, padding=0)
        if self._cursor is None or self.follow:
            self._update_readout()
        self.frames += 1
        return True

    def _draw_markers(self, start: int, stop: int, size: int, px_per_x: float) -> None:
        """Fills as filled triangles (up for buys, down for sells) in the side's colour, as
        wide as about one and a half candles (within :data:`MARKER_MIN`, :data:`MARKER_MAX`)."""
        candle_px = 0.8 * size * px_per_x
        self.marker_size = float(np.clip(1.5 * candle_px, MARKER_MIN, MARKER_MAX))
        mk = self.model.markers(start, stop)
        buys = mk.side > 0
        self.markers.setData(
            x=_slot_centre(mk.x, size),
            y=mk.price,
            symbol=np.where(buys, "t1", "t").tolist(),
            brush=[self._marker_brushes[1 if b else -1] for b in buys.tolist()],
            pen=self._marker_pen,
            size=self.marker_size,
        )
