"""The main window: series list, one chart tab per series, orders/positions/P&L, agents.

Two timers drive it. A fast one (every 10 ms) drains every message the bridge sent and applies
it to the models, whatever their number: consumption never waits for drawing, so no backlog
builds up. A ~30 Hz one redraws the visible chart only if its model changed, and the tables a
few times a second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from ..data.timeframes import BarSeriesID
from .bridge import GuiState
from .chart import ChartWidget
from .model import DEFAULT_INDICATORS


class Source(Protocol):
    """Where messages come from: :class:`~osmarkets.gui.bridge.Connection`, or a test feed."""

    def drain(self) -> list[tuple]: ...

    def watch(self, bsid: Any, count: int = 500) -> None: ...

    def close(self) -> None: ...


#: the Brains panel's buttons: (label, control, applies to the selected Brain)
BRAIN_BUTTONS = (
    ("Pause", "pause", True),
    ("Resume", "resume", True),
    ("Flatten", "flatten", True),
    ("Cancel orders", "cancel", True),
    ("Flatten all", "flatten", False),
    ("Kill switch", "kill", False),
)


def _ask(parent: QtWidgets.QWidget, text: str) -> bool:
    """A yes/no question (the kill switch and flatten-all are asked for twice)."""
    answer = QtWidgets.QMessageBox.question(parent, "osMarkets", text)
    return answer == QtWidgets.QMessageBox.StandardButton.Yes


def _brain_state(state: Any, restarts: Any) -> str:
    """``running``, ``paused`` or ``stopped``, and how often the Overmind restarted it."""
    if isinstance(restarts, int) and restarts > 0:
        return f"{state}, restarted {restarts}x"
    return str(state)


def _table(headers: list[str]) -> QtWidgets.QTableWidget:
    table = QtWidgets.QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QtWidgets.QTableWidget, rows: list[list[Any]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if isinstance(value, float):
                text = "" if math.isnan(value) else f"{value:,.5f}".rstrip("0").rstrip(".")
            else:
                text = "" if value is None else str(value)
            item = table.item(r, c)
            if item is None:
                table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
            elif item.text() != text:
                item.setText(text)


class MainWindow(QtWidgets.QMainWindow):
    """See the module docstring. ``fps``: redraw rate; ``history``: bars a new chart loads."""

    def __init__(
        self,
        source: Source,
        state: GuiState | None = None,
        *,
        fps: float = 30.0,
        history: int = 500,
        title: str = "osMarkets",
    ) -> None:
        super().__init__()
        self.source = source
        self.state = state or GuiState(history=history)
        self.history = history
        self.charts: dict[BarSeriesID, ChartWidget] = {}
        self.pending: set[BarSeriesID] = set()
        self.auto_open = True
        self.closed = False
        self.drain_seconds = 0.0  # time spent consuming messages (for the benchmark)
        self.setWindowTitle(title)
        self.resize(1280, 800)

        self.series_list = QtWidgets.QListWidget()
        self.series_list.itemActivated.connect(lambda item: self.open_series(item.text()))
        self.series_list.itemDoubleClicked.connect(lambda item: self.open_series(item.text()))
        dock = QtWidgets.QDockWidget("Series", self)
        dock.setObjectName("series")
        dock.setWidget(self.series_list)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.tabs.currentChanged.connect(lambda _: self._redraw(force=True))
        self.setCentralWidget(self.tabs)

        self.orders = _table(["id", "brain", "symbol", "side", "size", "state", "price", "reason"])
        self.positions = _table(["symbol", "units", "average", "realised", "unrealised"])
        self.agents = _table(
            ["agent", "kind", "running", "pid", "restarts", "received", "sent", "errors",
             "malformed", "problem"]
        )  # fmt: skip
        panels = QtWidgets.QTabWidget()
        panels.addTab(self._build_brains(), "Brains")
        panels.addTab(self.positions, "Positions / P&L")
        panels.addTab(self.orders, "Orders")
        panels.addTab(self.agents, "Agents")
        bottom = QtWidgets.QDockWidget("Trading", self)
        bottom.setObjectName("trading")
        bottom.setWidget(panels)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, bottom)
        self.account_label = QtWidgets.QLabel("connecting…")
        self.statusBar().addPermanentWidget(self.account_label)

        self._build_menus()
        self.poll_timer = QtCore.QTimer(self)
        self.poll_timer.timeout.connect(self.poll)
        self.poll_timer.start(10)
        self.draw_timer = QtCore.QTimer(self)
        self.draw_timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.draw_timer.timeout.connect(self._redraw)
        self.draw_timer.start(max(1, int(1000 / fps)))
        self.table_timer = QtCore.QTimer(self)
        self.table_timer.timeout.connect(self._update_tables)
        self.table_timer.start(250)

    def _build_brains(self) -> QtWidgets.QWidget:
        """Every Brain with its state, P&L, fills, pending orders and positions, and the
        operator's controls (osmarkets.operator) for the selected Brain or all of them."""
        #: asked before the kill switch and flatten-all (a test answers for the user)
        self.confirm: Callable[[str], bool] = lambda text: _ask(self, text)
        self.brains = _table(["brain", "state", "P&L", "fills", "pending", "positions"])
        self.brains.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.brains.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.brain_buttons: dict[str, QtWidgets.QPushButton] = {}
        row = QtWidgets.QHBoxLayout()
        for label, action, selected in BRAIN_BUTTONS:
            button = QtWidgets.QPushButton(label)
            button.clicked.connect(lambda _=False, a=action, s=selected: self.control(a, s))
            self.brain_buttons[label] = button
            row.addWidget(button)
        self.kill_label = QtWidgets.QLabel("")
        row.addStretch(1)
        row.addWidget(self.kill_label)
        panel = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.brains)
        return panel

    def selected_brain(self) -> str | None:
        rows = self.brains.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.brains.item(rows[0].row(), 0)
        return item.text() if item is not None else None

    def control(self, action: str, for_selected: bool = True) -> bool:
        """Ask the bridge for a control; True if asked. A control on one Brain needs a
        selected row; the kill switch and flatten-all are confirmed first."""
        send = getattr(self.source, "control", None)
        if send is None:
            self.statusBar().showMessage("controls need a connection to a deployment", 5000)
            return False
        brain = self.selected_brain() if for_selected else None
        if for_selected and brain is None:
            self.statusBar().showMessage(f"{action}: select a Brain first", 5000)
            return False
        if not for_selected:
            what = ("the kill switch: cancel every order, flatten everything and stop every "
                    "Brain" if action == "kill" else "flatten every position")  # fmt: skip
            if not self.confirm(f"Really {what}?"):
                return False
        send(action, brain)
        return True

    def _build_menus(self) -> None:
        specs = self.state.model_options.get("indicators", DEFAULT_INDICATORS)
        menu = self.menuBar().addMenu("&Indicators")
        self.indicator_actions: dict[str, QtGui.QAction] = {}
        for spec in specs:
            action = QtGui.QAction(spec.name, self, checkable=True)
            action.setChecked(spec.kind in ("sma", "bollinger"))
            action.toggled.connect(self._apply_indicators)
            menu.addAction(action)
            self.indicator_actions[spec.name] = action
        view = self.menuBar().addMenu("&View")
        self.follow_action = QtGui.QAction("Follow newest bar", self, checkable=True)
        self.follow_action.setChecked(True)
        self.follow_action.setShortcut("F")
        self.follow_action.toggled.connect(self._set_follow)
        view.addAction(self.follow_action)
        price = view.addMenu("Price")
        group = QtGui.QActionGroup(self)
        for name in ("mid", "bid", "ask"):
            action = QtGui.QAction(name, self, checkable=True)
            action.setChecked(name == "mid")
            action.triggered.connect(lambda _=False, n=name: self._set_price(n))
            group.addAction(action)
            price.addAction(action)

    # -- series ----------------------------------------------------------------------------------
    def open_series(self, bsid: Any) -> None:
        """Open (or bring forward) the chart of ``bsid``; its history is requested first."""
        bsid = BarSeriesID.parse(bsid)
        self.auto_open = False
        if bsid in self.charts:
            self.tabs.setCurrentWidget(self.charts[bsid])
            return
        if bsid not in self.pending:
            self.pending.add(bsid)
            self.source.watch(bsid, self.history)

    def _close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        self.tabs.removeTab(index)
        for bsid, chart in list(self.charts.items()):
            if chart is widget:
                del self.charts[bsid]

    def current_chart(self) -> ChartWidget | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, ChartWidget) else None

    def _set_follow(self, on: bool) -> None:
        chart = self.current_chart()
        if chart is not None:
            chart.set_follow(on)

    def _apply_indicators(self) -> None:
        names = {n for n, action in self.indicator_actions.items() if action.isChecked()}
        for chart in self.charts.values():
            chart.set_indicators(names)

    def _set_price(self, price: str) -> None:
        for model in self.state.models.values():
            model.set_price(price)

    # -- timers ----------------------------------------------------------------------------------
    def poll(self) -> int:
        """Consume every pending message (never draws). Returns how many."""
        started = time.perf_counter()
        messages = self.source.drain()
        if messages:
            self.state.apply(messages)
        for bsid in list(self.pending):
            if bsid in self.state.models:
                self.pending.discard(bsid)
                self._add_chart(bsid)
        if self.auto_open and not self.charts and not self.pending:
            choices = self.state.series or [f"{s}:M1" for s in self.state.symbols]
            if choices:
                self.open_series(choices[0])
                self.auto_open = True  # until the user picks one
        self.drain_seconds += time.perf_counter() - started
        return len(messages)

    def _add_chart(self, bsid: BarSeriesID) -> None:
        chart = ChartWidget(self.state.models[bsid])
        chart.set_indicators({n for n, a in self.indicator_actions.items() if a.isChecked()})
        self.charts[bsid] = chart
        self.tabs.addTab(chart, str(bsid))
        self.tabs.setCurrentWidget(chart)

    def _redraw(self, force: bool = False) -> None:
        chart = self.current_chart()
        if chart is not None:
            chart.refresh(force=force)
            if chart.follow != self.follow_action.isChecked():
                self.follow_action.blockSignals(True)
                self.follow_action.setChecked(chart.follow)
                self.follow_action.blockSignals(False)

    def _update_tables(self) -> None:
        state = self.state
        names = [str(s) for s in state.series]
        for symbol in state.symbols:
            for code in ("M1", "M5", "H1"):
                if f"{symbol}:{code}" not in names:
                    names.append(f"{symbol}:{code}")
        if [self.series_list.item(i).text() for i in range(self.series_list.count())] != names:
            self.series_list.clear()
            self.series_list.addItems(names)
        blotter = state.blotter
        if blotter.dirty:
            blotter.dirty = False
            rows = list(blotter.orders.values())[-200:][::-1]
            _fill(
                self.orders,
                [
                    [
                        r["id"],
                        r.get("brain"),
                        r.get("symbol"),
                        r.get("side"),
                        r.get("size"),
                        r.get("kind"),
                        r.get("price"),
                        r.get("reason"),
                    ]
                    for r in rows
                ],
            )
        _fill(
            self.positions,
            [
                [p["symbol"], p["units"], p["average"], p["realized"], p["unrealized"]]
                for p in blotter.rows(state.last_price)
            ],
        )
        _fill(
            self.agents,
            [
                [
                    r.get("name"),
                    r.get("kind"),
                    r.get("running"),
                    r.get("pid"),
                    r.get("restarts"),
                    r.get("received"),
                    r.get("sent"),
                    r.get("errors"),
                    r.get("malformed"),
                    r.get("problem", ""),
                ]
                for r in state.status
            ],
        )
        brains = state.brains.get("brains") or {}
        restarts = {r.get("name"): r.get("restarts") or 0 for r in state.status}
        _fill(
            self.brains,
            [
                [name, _brain_state(row.get("state"), restarts.get(name, 0)),
                 float(row.get("pnl", math.nan)), row.get("fills"),
                 row.get("pending"),
                 ", ".join(f"{s} {u:g}" for s, u in sorted((row.get("positions") or {}).items()))]
                for name, row in sorted(brains.items())
            ],
        )  # fmt: skip
        self.kill_label.setText("KILL SWITCH ON" if state.brains.get("kill_switch") else "")
        account = blotter.account
        text = "connected" if state.connected else "connecting…"
        if account:
            text = (
                f"equity {account.get('equity', float('nan')):,.2f}   "
                f"balance {account.get('balance', float('nan')):,.2f}   fills {blotter.fills}"
            )
        if state.errors:
            self.statusBar().showMessage(state.errors[-1].splitlines()[-1][:200], 5000)
        self.account_label.setText(text)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Closing the window stops this window's bridge only; the architecture keeps running."""
        self.poll_timer.stop()
        self.draw_timer.stop()
        self.table_timer.stop()
        if not self.closed:
            self.closed = True
            self.source.close()
        super().closeEvent(event)
