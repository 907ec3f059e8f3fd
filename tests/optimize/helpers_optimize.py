"""Shared data and brains of the optimiser tests (generated, never from /work/shared)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from osmarkets import Brain


def make_bars(n=3000, seed=1, start="2024-01-02 00:00", freq="1min", price=10.0):
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[price, close[:-1]] * np.exp(rng.normal(0, 0.0005, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )


SEEN: list[tuple[pd.Timestamp, pd.Timestamp]] = []


class EventMomentum(Brain):
    """Long ``size`` when the close is above its close ``lag`` bars ago (no vectorised path:
    the event-driven engine runs it)."""

    lag = 5
    size = 100

    def on_new_bar(self, series):
        if len(series) <= self.lag:
            return
        symbol = series.bsid.symbol
        want = self.size if series.close[0] > series.close[self.lag] else 0
        held = self.position(symbol)
        if want != held:
            side = "buy" if want > held else "sell"
            self.send_order(side=side, size=abs(want - held), symbol=symbol)


class Momentum(EventMomentum):
    """The same rule with a vectorised ``signals``, which records the span of every data set
    it sees (for the leak test)."""

    @classmethod
    def signals(cls, data, lag=5, size=100, **_):
        SEEN.append((data.index[0], data.index[-1]))
        close = data["close"].to_numpy(dtype=float)
        target = np.zeros(len(close))
        target[lag:] = np.where(close[lag:] > close[:-lag], float(size), 0.0)
        return target


class SlowMomentum(Momentum):
    """Momentum whose ``signals`` takes a few milliseconds (so a run lasts long enough to kill
    a worker in the middle of it) and fails on purpose for ``lag == fail_lag``."""

    fail_lag = -1

    @classmethod
    def signals(cls, data, lag=5, size=100, fail_lag=-1, **_):
        import time

        if lag == fail_lag:
            raise RuntimeError(f"planned failure for lag={lag}")
        time.sleep(0.002)
        return Momentum.signals(data, lag=lag, size=size)
