"""Starting the GUI: in this process (:func:`run_gui`), or as its own process next to a running
architecture (:func:`add_gui`), and the live demo deployment ``osmarkets gui --demo`` shows."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from ..data.timeframes import BarSeriesID
from .prerequisites import check_prerequisites, prerequisites_error

if TYPE_CHECKING:
    from ..agents.auth import DeploymentKeys


def qt_error(platform: str | None = None) -> str | None:
    """Why Qt and PyQtGraph cannot be used here, or None when they can: PySide6 or pyqtgraph
    not installed, or the system libraries of Qt's platform plugin missing (one line naming
    the packages to install, see :mod:`osmarkets.gui.prerequisites`; Qt would abort the
    process instead). ``platform``: the Qt platform plugin to be used (default: the one
    ``QT_QPA_PLATFORM`` and ``DISPLAY`` select)."""
    try:
        import pyqtgraph  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except Exception as exc:  # ImportError, or a missing system library (OSError)
        return (
            "the GUI needs PySide6 and pyqtgraph (from a checkout: python -m pip install "
            f"'.[gui]'): {type(exc).__name__}: {exc}"
        )
    return prerequisites_error(platform)


def application() -> Any:
    """The QApplication (created once per process). Raises :class:`RuntimeError` with one
    line naming the packages to install when the system libraries of Qt's platform plugin
    are missing, before Qt would abort the process."""
    from pyqtgraph.Qt import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        check_prerequisites()
        app = QtWidgets.QApplication(["osmarkets"])
    return app


def open_window(
    nsaddr: Any,
    *,
    keys: DeploymentKeys | None = None,
    series: Any = None,
    history: int = 500,
    fps: float = 30.0,
) -> Any:
    """Connect to the architecture whose name server is at ``nsaddr`` and show the window
    (the caller runs the Qt event loop). ``keys``: the deployment's
    (:class:`~osmarkets.agents.auth.DeploymentKeys`: ``system.keys``, or
    :func:`~osmarkets.agents.auth.read_key_file` of its registry entry or key file).
    ``series``: the bar series to open first."""
    from .bridge import Connection
    from .window import MainWindow

    application()
    window = MainWindow(
        Connection(nsaddr, keys=keys), history=history, fps=fps, title=f"osMarkets - {nsaddr}"
    )
    if series is not None:
        window.open_series(BarSeriesID.parse(series))
    window.show()
    return window


def run_gui(
    nsaddr: Any,
    *,
    keys: DeploymentKeys | None = None,
    series: Any = None,
    history: int = 500,
    fps: float = 30.0,
    report: Any = None,
) -> int:
    """Show the window until it is closed (or this process gets SIGTERM). ``keys``: the
    deployment's (see :func:`open_window`). ``report``: a multiprocessing connection told
    ``{'pid', 'bridge', 'candles'}`` once data flows."""
    from pyqtgraph.Qt import QtCore

    app = application()
    window = open_window(nsaddr, keys=keys, series=series, history=history, fps=fps)
    stop = {"asked": False}

    def on_term(signum: int, frame: Any) -> None:
        stop["asked"] = True

    with contextlib.suppress(ValueError):  # Ctrl-C and SIGTERM close the window cleanly
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
    parent = os.getppid()

    def watchdog() -> None:
        if stop["asked"] or (report is not None and os.getppid() != parent):
            window.close()  # as if the user closed it: only this process and its bridge end
            app.quit()
            return
        if report is not None and window.charts:
            chart = next(iter(window.charts.values()))
            with contextlib.suppress(Exception):
                report.send(
                    {
                        "pid": os.getpid(),
                        "bridge": window.source.process.pid,
                        "candles": chart.candles.drawn,
                        "frames": chart.frames,
                    }
                )

    timer = QtCore.QTimer()
    timer.timeout.connect(watchdog)
    timer.start(200)
    app.setQuitOnLastWindowClosed(True)
    app.exec()
    timer.stop()
    if not window.closed:
        window.close()
    return 0


def _gui_main(
    nsaddr: str, options: dict[str, Any], report: Any, keys: DeploymentKeys | None
) -> None:
    # Ctrl-C before the window is up: leave quietly (the window's own handler comes later)
    signal.signal(signal.SIGINT, _leave_quietly)
    os.environ.setdefault(
        "QT_QPA_PLATFORM", options.pop("platform", None) or os.environ.get("QT_QPA_PLATFORM", "")
    )
    if not os.environ["QT_QPA_PLATFORM"]:
        del os.environ["QT_QPA_PLATFORM"]
    run_gui(nsaddr, keys=keys, report=report, **options)


def _leave_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class GuiProcess:
    """The window running in its own process (from :func:`add_gui`). ``keys``: the
    deployment's, handed to the process as an argument of multiprocessing's 'spawn' (never
    through its environment or command line)."""

    def __init__(
        self, nsaddr: str, options: dict[str, Any], keys: DeploymentKeys | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._reader, writer = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_gui_main,
            args=(nsaddr, options, writer, keys),
            name="osmarkets-gui",
            daemon=False,
        )
        from .bridge import start_ignoring_sigint

        start_ignoring_sigint(self.process)  # it closes its window on SIGINT itself
        writer.close()
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def poll(self) -> dict[str, Any]:
        """The latest report from the window: its pid, its bridge's pid, candles drawn."""
        with contextlib.suppress(EOFError, OSError):
            while self._reader.poll():
                self.info = self._reader.recv()
        return self.info

    def wait(self, condition: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the reports until ``condition(info)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.poll()
            if info and condition(info):
                return info
            if not self.process.is_alive():
                raise RuntimeError("the GUI process ended")
            self._reader.poll(0.1)
        raise TimeoutError(f"GUI condition not met after {timeout} s (last report {self.info})")

    def join(self, timeout: float | None = None) -> None:
        """Wait until the user closes the window."""
        self.process.join(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Close the window (and its bridge); the architecture keeps running."""
        if self.process.is_alive() and self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)


def add_gui(
    system: Any,
    *,
    series: Any = None,
    history: int = 500,
    fps: float = 30.0,
    platform: str | None = None,
) -> GuiProcess:
    """Open the GUI on ``system`` (an :class:`~osmarkets.architecture.Architecture`) in its
    own process, with the deployment's keys (``system.keys``). Closing the window ends that
    process only; the architecture keeps running. ``platform``: a Qt platform plugin
    (``'offscreen'`` for headless use)."""
    error = qt_error(platform)
    if error is not None:
        raise RuntimeError(error)
    options = {"series": series, "history": history, "fps": fps, "platform": platform}
    return GuiProcess(str(system.nsaddr), options, system.keys)


def demo_architecture(
    *,
    symbols: tuple[str, ...] = ("EUR_USD",),
    speed: float = 60.0,
    seed: int = 0,
    cash: float = 100_000.0,
) -> Any:
    """A live-paced deployment worth watching: synthetic quotes at ``speed`` times real time,
    the example SmaCross Brain, a Trader on the simulated broker. The caller shuts it down.
    Its keys are ``system.keys``: ``run_gui(system.nsaddr, keys=system.keys)`` (or
    ``add_gui(system)``) opens a window on it."""
    from ..architecture import Architecture
    from ..brokers.simulated import SimulatedBroker
    from ..strategies import SmaCross

    system = Architecture(broker_factory=functools.partial(SimulatedBroker, cash))
    try:
        system.add_brain("sma", base=SmaCross, fast=5, slow=20)
        for symbol in symbols:
            system["sma"].subscribe((symbol, 1, "Minutes"), 100)
        system.stream(list(symbols), speed=speed, seed=seed)
    except BaseException:
        system.shutdown()
        raise
    return system
