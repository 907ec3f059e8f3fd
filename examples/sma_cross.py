"""A long-only moving-average crossover: the example Brain used across the docs.

Buys ``size`` units when the fast simple moving average of the close crosses above the slow
one, and goes flat when it crosses back below. The same class runs in a backtest, in the
simulated architecture and live.
"""

from osmarkets import BarSeries, Brain


class SmaCross(Brain):
    fast = 10
    slow = 30
    size = 1000

    def on_new_bar(self, series: BarSeries) -> None:
        if len(series) <= self.slow:
            return
        close = series.close  # newest first: close[0] is the bar that just completed
        fast_now, slow_now = close[: self.fast].mean(), close[: self.slow].mean()
        fast_before = close[1 : self.fast + 1].mean()
        slow_before = close[1 : self.slow + 1].mean()
        symbol = series.bsid.symbol
        held = self.position(symbol)
        if fast_before <= slow_before and fast_now > slow_now and held == 0:
            self.send_order(side="buy", size=self.size, symbol=symbol)
        elif fast_before >= slow_before and fast_now < slow_now and held > 0:
            self.send_order(side="sell", size=held, symbol=symbol)
