"""The candlestick chart widget (PyQtGraph): draws a :class:`~osmarkets.gui.model.CandleModel`.

Drawing cost is bounded by the screen, not by the history: each redraw takes only the bars in
view from the model, and when there are more bars than about one per two pixels it merges
neighbours into one candle (open of the first, close of the last, extreme high and low, summed
volume), so 100,000 bars zoomed out cost no more than a screenful. Candles and volume are each
a single :class:`CandleItem` (one QPicture), not one graphics item per bar.

:meth:`ChartWidget.refresh` redraws only when the model or the view changed; the window calls
it from a ~30 Hz timer, so messages are consumed at full speed while the screen is rate-limited.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from .model import CandleModel, Window

UP = (38, 166, 91)
DOWN = (214, 69, 65)
BACKGROUND = (19, 23, 34)
LINE_COLOURS = {
    "sma": (255, 193, 7),
    "ema": (0, 188, 212),
    "bollinger": (156, 39, 176),
    "rsi": (255, 152, 0),
    "macd": (33, 150, 243),
}


class CandleItem(pg.GraphicsObject):
    """Candles (``mode='candle'``) or volume bars (``mode='volume'``) in one QPicture."""

    def __init__(self, mode: str = "candle") -> None:
        super().__init__()
        self.mode = mode
        self.picture = QtGui.QPicture()
        self._rect = QtCore.QRectF()
        self.drawn = 0  # candles in the current picture
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


class TimeAxis(pg.AxisItem):
    """Bottom axis: x is a bar index; the labels are the bars' times."""

    def __init__(self, model: CandleModel) -> None:
        super().__init__(orientation="bottom")
        self.model = model

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        n = len(self.model)
        intraday = self.model.bsid.timeframe.is_intraday
        for value in values:
            index = int(round(value))
            if not 0 <= index < n:
                out.append("")
                continue
            time = self.model.window(index, index + 1).time
            stamp = np.datetime64(int(time[0]), "ns").astype("datetime64[s]").item()
            out.append(stamp.strftime("%m-%d %H:%M" if intraday else "%Y-%m-%d"))
        return out


def _bucket(w: Window, size: int) -> tuple[np.ndarray, ...]:
    """Merge every ``size`` neighbouring bars into one candle."""
    n = len(w.open)
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n) - 1
    high = np.maximum.reduceat(w.high, starts)
    low = np.minimum.reduceat(w.low, starts)
    volume = np.add.reduceat(w.volume, starts)
    x = w.start + (starts + ends) / 2.0
    return x, w.open[starts], high, low, w.close[ends], volume, w.start + ends


class ChartWidget(QtWidgets.QWidget):
    """Candles, volume, overlays, RSI/MACD sub-plots, fills, crosshair, zoom/pan, follow."""

    def __init__(
        self, model: CandleModel, parent: QtWidgets.QWidget | None = None, visible_bars: int = 120
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.follow = True
        self.span = float(visible_bars)
        self.frames = 0
        self.bucket = 1
        self._view_changed = True
        self._setting_range = False
        self._cursor: int | None = None
        self.shown = {spec.name for spec in model.specs if spec.kind in ("sma", "bollinger")}
        self.readout = QtWidgets.QLabel(str(model.bsid))
        self.readout.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.readout.setStyleSheet("font-family: monospace; padding: 2px;")
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.readout)
        layout.addWidget(self.graphics)

        self.price = self.graphics.addPlot(row=0, col=0, axisItems={"bottom": TimeAxis(model)})
        self.volume = self.graphics.addPlot(row=1, col=0)
        self.rsi_plot = self.graphics.addPlot(row=2, col=0)
        self.macd_plot = self.graphics.addPlot(row=3, col=0)
        self.subplots = {"volume": self.volume, "rsi": self.rsi_plot, "macd": self.macd_plot}
        layout_ = self.graphics.ci.layout
        for row, stretch in enumerate((5, 1, 1, 1)):
            layout_.setRowStretchFactor(row, stretch)
        for plot in (self.price, *self.subplots.values()):
            # no grid: pyqtgraph draws it with the axes, alpha-blended over the whole plot,
            # which costs more than all the candles on a software-rendered screen
            plot.setMouseEnabled(x=True, y=False)
            plot.disableAutoRange()
            plot.hideButtons()
            plot.getAxis("left").setWidth(70)
            if plot is not self.price:
                plot.setXLink(self.price)
                plot.getAxis("bottom").setStyle(showValues=False)
        self.rsi_plot.setYRange(0, 100, padding=0)

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
                item = pg.PlotDataItem(pen=pen, connect="finite")
                plot.addItem(item)
                self.lines[f"{spec.name}:{line}"] = item
        self.markers = pg.ScatterPlotItem(size=11, pen=pg.mkPen("w", width=0.5))
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
        self.set_indicators(self.shown)

    # -- controls ------------------------------------------------------------------------------
    def set_indicators(self, names: set[str]) -> None:
        """Show the indicators named (``IndicatorSpec.name``); sub-plots without one hide."""
        self.shown = set(names)
        kinds = {spec.kind for spec in self.model.specs if spec.name in self.shown}
        for spec in self.model.specs:
            for line in spec.lines:
                self.lines[f"{spec.name}:{line}"].setVisible(spec.name in self.shown)
        self.rsi_plot.setVisible("rsi" in kinds)
        self.macd_plot.setVisible("macd" in kinds)
        self._view_changed = True

    def set_follow(self, on: bool = True) -> None:
        self.follow = on
        self._view_changed = True

    def _on_manual_range(self, *args: Any) -> None:
        (x0, x1), _ = self.price.vb.viewRange()
        self.span = max(5.0, x1 - x0)
        self.follow = x1 >= len(self.model) - 0.5
        self._view_changed = True

    def _on_x_range(self, *args: Any) -> None:
        if not self._setting_range:
            self._view_changed = True

    def _on_mouse(self, pos: QtCore.QPointF) -> None:
        if not self.price.sceneBoundingRect().contains(pos):
            return
        point = self.price.vb.mapSceneToView(pos)
        self.vline.setVisible(True)
        self.hline.setVisible(True)
        self.vline.setPos(point.x())
        self.hline.setPos(point.y())
        self._cursor = int(round(point.x()))
        self._update_readout()

    def _update_readout(self) -> None:
        index = self._cursor if self._cursor is not None else len(self.model) - 1
        info = self.model.readout(index)
        if info is None:
            self.readout.setText(str(self.model.bsid))
            return
        text = (
            f"{self.model.bsid}  {info['time']:%Y-%m-%d %H:%M}"
            f"{' (forming)' if info['forming'] else ''}  O {info['open']:.5f}  "
            f"H {info['high']:.5f}  L {info['low']:.5f}  C {info['close']:.5f}  "
            f"V {info['volume']:g}"
        )
        for spec in self.model.specs:
            if spec.name in self.shown:
                values = [info[f"{spec.name}:{line}"] for line in spec.lines]
                shown = "/".join("-" if math.isnan(v) else f"{v:.5g}" for v in values)
                text += f"  {spec.name} {shown}"
        self.readout.setText(text)

    # -- drawing -------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Redraw if the model or the view changed. Returns whether it drew."""
        model = self.model
        if not (force or model.dirty or self._view_changed):
            return False
        total = len(model)
        if self.follow:
            x1 = total + 1.5
            x0 = x1 - self.span
            self._setting_range = True
            try:
                self.price.setXRange(x0, x1, padding=0)
            finally:
                self._setting_range = False
        else:
            (x0, x1), _ = self.price.vb.viewRange()
        start, stop = max(0, math.floor(x0) - 1), math.ceil(x1) + 1
        w = model.window(start, stop)
        model.dirty = False
        self._view_changed = False
        pixels = max(100, int(self.price.vb.width()))
        self.bucket = size = max(1, math.ceil(len(w.open) / (pixels / 2)))
        if len(w.open):
            x, o, h, low, c, v, ends = _bucket(w, size)
        else:
            x = o = h = low = c = v = ends = np.array([], dtype=float)
        self.candles.set_data(x, size, o, h, low, c, v)
        self.volume_bars.set_data(x, size, o, h, low, c, v)
        idx = (ends - w.start).astype(int)
        for name, item in self.lines.items():
            if item.isVisible():
                item.setData(x, w.lines[name][idx] if len(idx) else idx.astype(float))
        mk = model.markers(start, stop)
        spots = [
            {
                "pos": (float(px), float(pp)),
                "symbol": "t1" if s > 0 else "t",
                "brush": pg.mkBrush(UP if s > 0 else DOWN),
            }
            for px, pp, s in zip(mk.x, mk.price, mk.side, strict=True)
        ]
        self.markers.setData(spots)
        if len(low):
            lo, hi = float(np.nanmin(low)), float(np.nanmax(h))
            pad = (hi - lo) * 0.05 or abs(hi) * 1e-4 or 1.0
            self.price.setYRange(lo - pad, hi + pad, padding=0)
            self.volume.setYRange(0, float(np.nanmax(v)) * 1.1 or 1.0, padding=0)
            if self.macd_plot.isVisible():
                parts = [
                    w.lines[f"{s.name}:{ln}"]
                    for s in model.specs
                    if s.kind == "macd"
                    for ln in s.lines
                ]
                finite = np.concatenate(parts) if parts else np.array([])
                finite = finite[np.isfinite(finite)]
                if len(finite):
                    m = float(np.abs(finite).max()) or 1.0
                    self.macd_plot.setYRange(-m * 1.1, m * 1.1, padding=0)
        if self._cursor is None or self.follow:
            self._update_readout()
        self.frames += 1
        return True
