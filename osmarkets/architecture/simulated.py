"""The deployment on the embedded simulated broker: :class:`SimulatedArchitecture`.

It replays historical bars or ticks (or seeded synthetic quotes) in lock-step: a Brain sees bar
*t+1* only after the fills its orders of bar *t* got at *t+1*'s open, so a run's fills match
the in-process backtest's (:func:`osmarkets.backtest.backtest`), fill for fill.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from .. import feeds
from ..brokers.money import CLOSEOUT_LEVEL
from ..data.conform import conform, given_for, own_timeframe
from ..data.resample import regular_hours_mask
from ..data.timeframes import Alignment
from .base import _ALWAYS_RESTARTED, Architecture, _visible, _wait

__all__ = ["SimulatedArchitecture"]


def _aligned(conversions: list[float] | None, fills: list[Any]) -> list[float] | None:
    """The fills' conversions when there is one per fill (an account currency), else None."""
    return conversions if conversions and len(conversions) == len(fills) else None


def _conform_replay(
    data: Mapping[str, Any], alignment: Alignment, data_timeframe: Any
) -> tuple[dict[str, pd.DataFrame], dict[str, str | None], dict[str, dict[str, Any]]]:
    """Each symbol's replay frame at its own time frame (daily files stamped by date or by
    session, regular hours kept: :func:`~osmarkets.data.conform.conform`), its frame code
    (None for ticks) and the alignment the Router resamples it with."""
    frames: dict[str, pd.DataFrame] = {}
    base: dict[str, str | None] = {}
    alignments: dict[str, dict[str, Any]] = {}
    for symbol, source in data.items():
        frame = feeds.load_frame(source, symbol)
        if feeds.is_tick_frame(frame):
            if alignment.regular_hours and len(frame):
                times = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
                frame = frame[regular_hours_mask(times, str(alignment.calendar))]
            if not len(frame):
                raise ValueError(f"data for {symbol!r}: no ticks inside {alignment.calendar} "
                                 "sessions (regular_hours=True)")  # fmt: skip
            frames[symbol], base[symbol] = frame, None
            alignments[symbol] = alignment._asdict()
            continue
        given = given_for(data_timeframe, symbol)
        label = f"data for {symbol!r}"
        own = own_timeframe(frame, given, default="M1")
        frames[symbol], aligned = conform(frame, own, alignment, data_timeframe=own, label=label)
        if not len(frames[symbol]):
            raise ValueError(f"{label}: no bars inside {alignment.calendar} sessions "
                             "(regular_hours=True)")  # fmt: skip
        base[symbol] = own.code
        alignments[symbol] = aligned._asdict()
    return frames, base, alignments


class SimulatedArchitecture(Architecture):
    """The architecture on the embedded simulated broker, replaying data in lock-step.

    ``data``: a mapping of symbol to a bars or ticks DataFrame or a CSV/Parquet path; with
    ``None``, seeded synthetic quotes for ``symbols`` (``bars`` one-minute bars' worth).
    ``cash``, ``spread``, ``slippage``, ``commission``, ``margin_rate``, ``instruments``,
    ``currency``, ``rates``, ``financing``, ``closeout``, ``max_fill``: the
    :class:`~osmarkets.brokers.simulated.SimulatedBroker`'s options (an account currency
    switches on OANDA's money rules). The data options (``data_timeframe``, the alignment,
    ``calendar``, ``regular_hours``) are :func:`~osmarkets.backtest.backtest`'s. ``speed``: 0
    replays as fast as the lock-step allows, else a factor of real time.

    :meth:`run` replays to the end and returns the :class:`~osmarkets.backtest.Result`
    (:meth:`result` gives it again).
    """

    lockstep = True
    _lockstep_run = 256  # see Architecture._lockstep_run and docs/architecture.rst
    restartable = ("brain",)  # a dead Router, Trader or Feeder stops the run (_check_alive)

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        cash: float = 100_000.0,
        *,
        seed: int = 0,
        symbols: Iterable[str] = ("EUR_USD",),
        bars: int = 500,
        speed: float = 0.0,
        spread: float | dict[str, float] = 0.0,
        slippage: float = 0.0,
        commission: Any = None,
        margin_rate: float | dict[str, float] = 1.0,
        ticks_per_minute: float = 60.0,
        data_timeframe: Any = None,
        daily_alignment: int = 17,
        alignment_timezone: str = "America/New_York",
        weekly_alignment: str = "Friday",
        calendar: str | None = None,
        regular_hours: bool = False,
        instruments: Any = None,
        currency: str | None = None,
        rates: Mapping[str, float] | None = None,
        financing: Mapping[str, Any] | None = None,
        closeout: float | None = CLOSEOUT_LEVEL,
        max_fill: float | dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        from ..brokers.simulated import SimulatedBroker
        from ..instruments import load_instruments

        if kwargs.get("state_dir") is not None:
            raise ValueError(
                "state_dir: a simulation starts from its data every run; state_dir is for live "
                "deployments (its journal is private to the run)"
            )
        if data is not None:
            if not isinstance(data, Mapping):
                raise ValueError(
                    "data: expected a mapping of symbol -> DataFrame or file path, "
                    f"got {type(data).__name__}"
                )
            if not data:
                raise ValueError("data: expected at least one symbol")
            alignment = Alignment.of(
                daily_alignment=daily_alignment, alignment_timezone=alignment_timezone,
                weekly_alignment=weekly_alignment, calendar=calendar,
                regular_hours=regular_hours,
            )  # fmt: skip
            frames, base, alignments = _conform_replay(data, alignment, data_timeframe)
            self._source: dict[str, Any] = {"data": frames}
        else:
            symbols = list(symbols)
            if not symbols:
                raise ValueError("symbols: expected at least one instrument")
            frames, alignments = {}, {}
            base = {sym: None for sym in symbols}
            self._source = {"symbols": symbols, "seed": seed, "bars": bars,
                            "options": {"ticks_per_minute": ticks_per_minute}}  # fmt: skip
        specs = load_instruments(instruments)
        factory = functools.partial(
            SimulatedBroker, cash, spread=spread, slippage=slippage, commission=commission,
            margin_rate=margin_rate, instruments=specs, currency=currency, rates=rates,
            financing=financing, closeout=closeout, max_fill=max_fill,
        )  # fmt: skip
        check = factory()  # bad options fail here, in the caller
        if check.account is not None:
            check.account.check(list(frames) if frames else list(base))
        self.cash = float(cash)
        self.speed = speed
        self.frames = frames
        self.instruments = specs
        self._base_timeframes = base
        self._result: Any = None
        self._started = False
        super().__init__(
            broker_factory=factory, base_timeframes=base, alignments=alignments, **kwargs
        )

    def _start_feed(self) -> None:
        if self._started:
            return
        self._started = True
        # the Feeder sends a replay's bars and ticks in batches: the Router has a run's steps
        # at hand (with one step at a time, one message each, as before)
        batch = 256 if self._lockstep_run > 1 else 1
        if "data" in self._source:
            self.stream(data=self._source["data"], speed=self.speed, batch=batch,
                        base_timeframes=self._base_timeframes)  # fmt: skip
        else:
            src = self._source
            self.stream(src["symbols"], seed=src["seed"], bars=src["bars"], speed=self.speed,
                        options=src["options"], batch=batch)  # fmt: skip

    @_visible
    def progress(self) -> dict[str, Any]:
        """Router and Trader counters: steps, bars, orders, fills, equity."""
        info = dict(self["router"].progress())
        stats = self["trader"].osm_stats()
        equity = stats.get("equity")
        if equity is None:  # the broker has run nothing yet (its first answer sets it): no
            equity = self.cash  # fill has happened, the account is its starting cash
        info.update(orders=stats.get("orders", 0), fills=stats.get("fills", 0),
                    equity=float(equity))  # fmt: skip
        return info

    @_visible
    def run(
        self,
        timeout: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        every: float = 0.5,
    ) -> Any:
        """Replay everything, wait until every order is settled, return the Result.

        ``progress(info)`` is called about every ``every`` seconds with :meth:`progress`.
        """
        router = self["router"]
        self._check_alive()
        _wait(router.sync, 15.0, "the Brains' subscriptions to reach the Router")
        self._start_feed()
        feeder = self[self._feeders[0]]
        deadline = None if timeout is None else time.monotonic() + timeout
        last_report = 0.0
        while True:
            self._check_alive()
            try:
                info = router.progress()
                done = info["finished"] and self["trader"].idle_now()
                error = None if done else feeder.get_attr("feed_error")
                due = not done and time.monotonic() - last_report >= every
                if progress is not None and due:
                    last_report = time.monotonic()
                    progress(self.progress())
            except Exception:
                # An agent that died during a proxy call breaks the call's connection: name
                # the dead agent rather than surfacing Pyro's connection error (the process
                # may be reaped a moment after its sockets closed: wait for it a little).
                self._check_alive(grace=3.0)
                raise
            if done:
                break
            if error:
                raise RuntimeError(f"the Feeder failed: {error}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"simulation not finished after {timeout} s: {info}")
            time.sleep(0.01)
        if progress is not None:
            progress(self.progress())
        self._result = None
        return self.result()

    def _check_alive(self, grace: float = 0.0) -> None:
        """Raise if an agent the replay cannot do without has died.

        The simulated broker's state (cash, positions, pending orders) lives in the Trader's
        process, the lock-step's in the Router's and the replay's position in the Feeder's:
        none can be restarted without silently changing the result, so the run stops with
        an :class:`AgentDiedError` naming the dead agent (a dead Brain is restarted by the
        Overmind; without supervision it is fatal too)."""
        self._raise_if_dead(grace)

    _dead_advice = "a simulation cannot resume without it: start it again"

    def _restartable(self, kind: str) -> bool:
        # nothing restarts a Brain without supervision (and a simulation has no restart_trader)
        restartable = kind in self.restartable or kind in _ALWAYS_RESTARTED
        return restartable and self.overmind is not None

    @_visible
    def result(self) -> Any:
        """The backtest :class:`~osmarkets.backtest.Result` of the replay so far."""
        from ..backtest.result import Result

        if self._result is not None:
            return self._result
        record = self["trader"].record()
        points = record["equity"]
        index = pd.DatetimeIndex(
            pd.to_datetime([t for t, _ in points], unit="ns", utc=True), name="time"
        )
        equity = pd.Series([v for _, v in points], index=index, name="equity", dtype=float)
        brains = [h.name for h in self._agents.values() if h.kind == "brain"]
        result = Result.from_run(
            record["fills"], equity, initial_cash=self.cash, prices=self.frames,
            open_positions=record["state"].get("positions", {}), name=",".join(brains),
            multipliers={symbol: spec.multiplier for symbol, spec in self.instruments.items()},
            conversions=_aligned(record.get("conversions"), record["fills"]),
            events=record.get("events") or None,
        )  # fmt: skip
        self._result = result
        return result
