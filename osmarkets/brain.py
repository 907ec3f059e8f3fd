"""The user's strategy base class, the same in a backtest, in simulation and live.

A :class:`Brain` knows nothing of where it runs. Whatever runs it (the in-process backtest
engine, or the Brain agent of an architecture) binds a *context* to it with :meth:`Brain.bind`;
``send_order``, ``position`` and ``series`` go through that context. This is what lets the one
class a user writes be backtested, optimised and deployed unchanged.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import re
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .brokers.base import Order, OrderEvent, make_order
from .data.series import BarSeries
from .data.types import Tick

#: where :meth:`Brain.plot` draws: over the candles, or in a panel below them
PLOT_PANELS = ("price", "sub")
PLOT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_PLOT_NAMES_SEEN: set[str] = set()  # names already checked (plot runs on every bar)


class BrainContext(Protocol):
    """What a runner provides to a bound Brain."""

    def submit_order(self, brain: Brain, order: Order) -> str | None:
        """Send ``order``; may return the client id it went out with (a live runner re-handling
        an input after a restart gives a repeated order its first client id)."""

    def cancel_order(self, brain: Brain, client_id: str) -> None: ...

    def position(self, brain: Brain, symbol: str) -> float: ...

    def series(self, brain: Brain, bsid: Any) -> BarSeries: ...

    def now(self, brain: Brain) -> int: ...


class Brain:
    """Subclass this and override :meth:`on_new_bar` (and optionally the other hooks).

    Parameters are plain class attributes (``fast = 10``); the backtester, the optimiser and
    ``set_attr`` override them per instance. :meth:`parameters` lists them.
    """

    name: str = "brain"
    #: ``system['x'].set_attr(DEBUG=True)`` (or ``DEBUG = True`` in the class) turns on
    #: :meth:`debug`'s lines; off by default, so they cost one attribute read.
    DEBUG: bool = False
    _osm_context: BrainContext | None = None
    _osm_order_counter: Any = None
    #: Set by the runner of a deployment (the architecture's run id): client ids are then
    #: ``'<name>-<run>-<n>'``, unique across runs on one broker account; ``'<name>-<n>'``
    #: without one (backtests).
    _osm_run_id: str = ""

    # -- hooks -------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Called once, before the first bar."""

    def on_new_bar(self, series: BarSeries) -> None:
        """Called once per completed bar of a subscribed series (newest first)."""

    def on_tick(self, tick: Tick) -> None:
        """Called for each tick of a subscribed instrument, where ticks are streamed."""

    def on_order_event(self, event: OrderEvent) -> None:
        """Called for every event of this Brain's orders (accepted, filled, rejected…)."""

    def on_gap(self, bsid: Any, missed: int) -> None:
        """Called after a restart when ``missed`` bars of ``bsid`` completed while this Brain
        was down and are older than the history it keeps: they cannot be replayed to
        :meth:`on_new_bar` (the ones that can are, with ``series.replayed`` True)."""

    def on_save(self) -> dict[str, Any] | None:
        """The state this Brain needs to resume after a crash, or None (the default: nothing
        beyond its series, which are reloaded, and its positions, which come from the account).

        Live, it is called after every bar and every order event handled, and stored in the
        deployment's journal with the point it was taken at; a restarted Brain (or the same
        launcher run again on the same ``state_dir``) gets it back through :meth:`on_restore`
        before any bar. Return plain data (dicts, lists, str, int, float, bool, None):
        it is stored as MessagePack, never pickled. Keep it small: it is written often."""
        return None

    def on_restore(self, state: dict[str, Any]) -> None:
        """Called once, before :meth:`on_start`, with what :meth:`on_save` last returned,
        when this Brain resumes after a crash."""

    # -- actions -----------------------------------------------------------------------------
    def send_order(
        self,
        side: str,
        size: float,
        symbol: str,
        type: str = "market",
        price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        *,
        time_in_force: str = "GTC",
        expire_time: Any = None,
        reduce_only: bool = False,
        post_only: bool = False,
    ) -> str:
        """Send an order; returns its client id. Raises ``ValueError`` for a malformed order.

        ``time_in_force``: ``'GTC'`` (default), ``'IOC'``, ``'FOK'`` or ``'GTD'`` with
        ``expire_time`` (ns since the epoch, or a timezone-aware datetime / pandas Timestamp);
        ``reduce_only`` / ``post_only``: see :class:`~osmarkets.brokers.base.Order`. A broker
        whose venue cannot do what is asked rejects the order with the reason.

        The outcome arrives later through :meth:`on_order_event`: 'accepted', then one or more
        'filled' (an order can fill in parts: ``event.remaining`` is what is left), or
        'rejected' / 'cancelled' with the reason.
        """
        context = self._osm_context
        if context is None:
            context = self._require_context()  # raises: not running
        counter = self._osm_order_counter
        if counter is None:
            counter = self._osm_order_counter = itertools.count(1)
        run = f"{self._osm_run_id}-" if self._osm_run_id else ""
        client_id = f"{self.name}-{run}{next(counter)}"
        order = make_order(
            client_id, side, size, symbol, type, price, stop_loss, take_profit, trailing_stop,
            self.name, context.now(self), time_in_force,
            0 if expire_time is None else _nanoseconds(expire_time), reduce_only, post_only,
        )  # fmt: skip
        sent = context.submit_order(self, order)
        return sent if isinstance(sent, str) else client_id

    def cancel_order(self, client_id: str) -> None:
        """Ask to cancel a pending order; a ``cancelled`` (or ``rejected``) event follows."""
        self._require_context().cancel_order(self, client_id)

    def position(self, symbol: str) -> float:
        """Signed units held in ``symbol`` (positive long, negative short)."""
        context = self._osm_context
        if context is None:
            context = self._require_context()  # raises: not running
        return context.position(self, symbol)

    def series(self, bsid: Any) -> BarSeries:
        """Another subscribed bar series of this Brain."""
        return self._require_context().series(self, bsid)

    @property
    def now(self) -> int:
        """Current time (ns since epoch, UTC) as the runner sees it: the bar's close in a
        backtest, the wall clock live."""
        return self._require_context().now(self)

    def plot(self, name: str, value: float, panel: str = "price") -> None:
        """Chart ``value`` under ``name`` at the bar being handled, exactly as computed here:
        ``panel='price'`` draws it over the candles (a moving average, a stop level),
        ``panel='sub'`` in a panel below them (an oscillator, a z-score). The GUI draws each
        Brain's values next to its bars, live and from the start of the run; plotting the same
        name twice on one bar keeps the last value. NaN (or an infinity) leaves a gap. In a
        backtest it costs
        nothing and draws nothing."""
        if not isinstance(name, str) or name not in _PLOT_NAMES_SEEN:
            if not isinstance(name, str) or not PLOT_NAME.fullmatch(name):
                raise ValueError(
                    f"plot name: expected 1 to 40 letters, digits or '_-.', got {name!r}"
                )
            _PLOT_NAMES_SEEN.add(name)
        if panel not in PLOT_PANELS:
            raise ValueError(f"plot panel: expected 'price' or 'sub', got {panel!r}")
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"plot {name}: expected a number, got {type(value).__name__}")
        draw = getattr(self._osm_context, "plot", None)
        if draw is not None:
            number = float(value)
            draw(self, name, number if math.isfinite(number) else math.nan, panel)

    def debug(self, message: str) -> None:
        """A debug line, written only while ``DEBUG`` is true: to the deployment's logs in an
        architecture (with the Brain's name), to the ``osmarkets.brain`` logger in a
        backtest."""
        if not self.DEBUG:
            return
        write = getattr(self._osm_context, "log_debug", None)
        if write is not None:
            write(self, str(message))
        else:
            logging.getLogger("osmarkets.brain").info("%s: %s", self.name, message)

    # -- plumbing ----------------------------------------------------------------------------
    def bind(self, context: BrainContext, name: str | None = None) -> None:
        """Attach the runner; called by the backtest engine or the Brain agent."""
        self._osm_context = context
        if name is not None:
            self.name = name

    def _require_context(self) -> BrainContext:
        # Not named ``_context``: osBrain agents keep their ZeroMQ context under that name, and
        # a Brain agent is both a Brain and an osBrain agent.
        if self._osm_context is None:
            raise RuntimeError(
                f"{type(self).__name__}: this Brain is not running; use osmarkets.backtest "
                "or add it to an architecture"
            )
        return self._osm_context

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The strategy's parameters: public, non-callable class attributes of the subclass."""
        params: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is Brain or not issubclass(klass, Brain):
                continue
            for key, value in vars(klass).items():
                if key.startswith("_") or key == "name":
                    continue
                if callable(value) or isinstance(value, classmethod | staticmethod | property):
                    continue
                params[key] = value
        return params


def _nanoseconds(when: Any) -> int:
    """``expire_time`` as ns since the epoch: an int as it is, a timezone-aware datetime or
    Timestamp converted (a naive one is refused: which zone was meant is a guess)."""
    if when is None:
        return 0
    if isinstance(when, int) and not isinstance(when, bool):
        return when
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise ValueError("order expire_time: expected a timezone-aware datetime")
        return int(pd.Timestamp(when).value)
    raise ValueError(f"order expire_time: expected ns since the epoch or a datetime, got {when!r}")
