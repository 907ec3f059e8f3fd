"""Real-time charts of a running architecture (optional extra: from a checkout,
``python -m pip install '.[gui]'``).

:mod:`osmarkets.gui.model` (candles, forming bar, indicators, fills, positions) needs neither
Qt nor osBrain; :mod:`~osmarkets.gui.bridge` links to an architecture from its own process;
:mod:`~osmarkets.gui.chart` and :mod:`~osmarkets.gui.window` are the PySide6 + PyQtGraph views.
Importing this package does not import Qt.
"""

from .app import GuiProcess, add_gui, demo_architecture, qt_error, run_gui
from .model import DEFAULT_INDICATORS, Blotter, CandleModel, IndicatorSpec

__all__ = [
    "DEFAULT_INDICATORS",
    "Blotter",
    "CandleModel",
    "GuiProcess",
    "IndicatorSpec",
    "add_gui",
    "demo_architecture",
    "qt_error",
    "run_gui",
]
