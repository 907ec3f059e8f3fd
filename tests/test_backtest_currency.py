"""An account currency in the backtest and the simulated architecture: a USD account trading
USD_JPY shows dollars, EUR_GBP converts at GBP_USD or a given rate, a margin closeout and a
financing day are accounted (the same rules as the OANDA sandbox: tests/oanda/test_money_rules)."""

import numpy as np
import pandas as pd
import pytest

from osmarkets import Brain
from osmarkets.architecture import SimulatedArchitecture
from osmarkets.backtest import backtest


def bars(closes, start="2024-03-05 14:00", freq="h"):
    closes = np.asarray(closes, dtype=float)
    opens = np.r_[closes[0], closes[:-1]]
    index = pd.date_range(start, periods=len(closes), freq=freq, tz="UTC", name="time")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, closes),
                         "low": np.minimum(opens, closes), "close": closes, "volume": 1.0},
                        index=index)  # fmt: skip


class BuyThenSell(Brain):
    """Buys ``size`` of its symbol on bar ``buy``, sells it on bar ``sell`` (0-based)."""

    size = 10_000
    buy = 0
    sell = 4
    symbol = ""

    def on_start(self):
        self.count = 0
        self.events = []

    def on_new_bar(self, series):
        symbol = self.symbol or series.bsid.symbol
        if series.bsid.symbol != symbol:
            return
        if self.count == self.buy:
            self.send_order("buy", self.size, symbol)
        elif self.count == self.sell:
            self.send_order("sell", self.size, symbol)
        self.count += 1

    def on_order_event(self, event):
        self.events.append(event)


JPY = bars([150.0, 150.0, 151.0, 152.0, 153.0, 154.0, 154.0])


def test_a_usd_account_trading_usd_jpy_shows_dollars():
    yen = backtest(BuyThenSell, JPY, "USD_JPY:H1", margin_rate=0.05)  # 1.5M yen of notional
    dollars = backtest(BuyThenSell, JPY, "USD_JPY:H1", currency="USD")
    # bought 10,000 at bar 1's open (150), sold at bar 5's open (153): 30,000 yen, converted
    # at the exit price (USD_JPY itself: 1 / 153 dollars per yen) = 196.08 dollars
    assert yen.final_value == pytest.approx(100_000 + 30_000)
    assert dollars.final_value == pytest.approx(100_000 + 30_000 / 153.0, abs=1e-6)
    assert dollars.equity.iloc[-1] == pytest.approx(dollars.final_value)
    # while held, marked at the close and converted at it: bar 3 closes at 152
    assert dollars.equity.iloc[3] == pytest.approx(100_000 + (152 - 150) * 10_000 / 152)


def test_the_simulation_shows_the_same_dollars():
    expected = backtest(BuyThenSell, JPY, "USD_JPY:H1", currency="USD")
    with SimulatedArchitecture({"USD_JPY": JPY}, currency="USD") as system:
        system.add_brain("b", base=BuyThenSell)
        system["b"].subscribe("USD_JPY:H1", 10)
        result = system.run(timeout=120)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
    assert result.positions["pnl"].tolist() == pytest.approx(expected.positions["pnl"].tolist())
    assert result.trades["conversion"].tolist() == pytest.approx([1 / 150.0, 1 / 153.0])


def test_a_cross_converts_at_its_pair_in_the_data_or_at_a_given_rate():
    gbp = bars([0.86, 0.86, 0.87, 0.88, 0.89, 0.90, 0.90])
    cable = bars([1.25, 1.25, 1.26, 1.27, 1.28, 1.30, 1.30])
    with pytest.raises(ValueError, match="EUR_GBP: no conversion from GBP to USD"):
        backtest(BuyThenSell, gbp, "EUR_GBP:H1", currency="USD")
    fixed = backtest(BuyThenSell, gbp, "EUR_GBP:H1", currency="USD", rates={"GBP": 1.2})
    assert fixed.final_value == pytest.approx(100_000 + (0.89 - 0.86) * 10_000 * 1.2)
    both = backtest(BuyThenSell, {"EUR_GBP": gbp, "GBP_USD": cable},
                    ["EUR_GBP:H1", "GBP_USD:H1"], currency="USD",
                    params={"symbol": "EUR_GBP"})  # fmt: skip
    # the sell fills at bar 5's open (0.89): GBP_USD's mid at that moment is its open, 1.28
    assert both.final_value == pytest.approx(100_000 + (0.89 - 0.86) * 10_000 * 1.28, abs=1e-6)


def test_a_margin_closeout_in_the_backtest_is_reported():
    crash = bars([1.10, 1.10, 1.09, 1.07, 1.05, 1.02, 1.00], freq="h")
    result = backtest(BuyThenSell, crash, "EUR_USD:H1", currency="USD", cash=10_000,
                      margin_rate=0.05, params={"size": 150_000, "sell": 99})  # fmt: skip
    closing = result.trades[result.trades["reason"] == "margin closeout"]
    assert len(closing) == 1
    # 150,000 at 1.10 needs 8,250 of margin; NAV reaches half the margin used on the way
    # from 1.07 down to 1.05 (the path point at the bar's low), where it is closed
    assert closing["price"].iloc[0] <= 1.07
    assert result.open_positions == {}
    unprotected = backtest(BuyThenSell, crash, "EUR_USD:H1", currency="USD", cash=10_000,
                           margin_rate=0.05, params={"size": 150_000, "sell": 99},
                           closeout=None)  # fmt: skip
    assert unprotected.final_value < 0  # without the closeout the account goes below zero


def test_financing_is_charged_at_each_17_00_new_york():
    # hourly bars from Tuesday 14:00 UTC to Thursday 13:00 UTC: rollovers on Tuesday (1 day)
    # and Wednesday (3 days) at 21:00 UTC
    flat = bars([1.10] * 48)
    result = backtest(BuyThenSell, flat, "EUR_USD:H1", currency="USD",
                      financing={"EUR_USD": (-0.0365, 0.01)},
                      params={"sell": 99})  # fmt: skip
    # 10,000 x 1.10 x -3.65 % / 365 = -1.10 a day, four days
    assert result.final_value == pytest.approx(100_000 - 1.10 * 4, abs=1e-9)


def test_round_trips_are_in_dollars_at_the_closing_rate():
    dollars = backtest(BuyThenSell, JPY, "USD_JPY:H1", currency="USD")
    assert dollars.trades["conversion"].tolist() == pytest.approx([1 / 150.0, 1 / 153.0])
    (pnl,) = dollars.positions["pnl"].tolist()
    assert pnl == pytest.approx(30_000 / 153.0)
    assert dollars.stats["average_trade"] == pytest.approx(30_000 / 153.0)
    assert "conversion" not in backtest(BuyThenSell, JPY, "USD_JPY:H1", margin_rate=0.05).trades


def test_the_simulation_shows_its_rejected_orders():
    with SimulatedArchitecture({"USD_JPY": JPY}) as system:  # 1.5M yen of notional: refused
        system.add_brain("b", base=BuyThenSell)
        system["b"].subscribe("USD_JPY:H1", 10)
        result = system.run(timeout=120)
    # the buy is refused for margin; so is the sell, which would open a short as large
    assert result.stats["orders_rejected"] == 2 and result.stats["orders_filled"] == 0
    assert result.rejections == {"insufficient margin": 2}


def test_the_command_line_takes_a_currency_and_rates(tmp_path, capsys):
    from pathlib import Path

    from osmarkets.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "sma_cross.py"
    path = tmp_path / "eurgbp.csv"
    bars([0.86 + 0.001 * np.sin(k / 3) for k in range(200)]).to_csv(path)
    base = ["backtest", f"{example}:SmaCross", "--data", str(path), "--bsid", "EUR_GBP:H1",
            "--param", "fast=3", "--param", "slow=8"]  # fmt: skip
    assert main([*base, "--currency", "USD"]) == 2
    assert "no conversion from GBP to USD" in capsys.readouterr().err
    assert main([*base, "--currency", "USD", "--rate", "GBP=1.27"]) == 0
    assert "final_value" in capsys.readouterr().out
    for bad, message in ((["--rate", "GBP=1.27"], "--rate: needs --currency"),
                         (["--currency", "USD", "--rate", "GBP=x"], "expected CUR=VALUE"),
                         (["--currency", "dollars"], "three-letter")):  # fmt: skip
        assert main([*base, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
