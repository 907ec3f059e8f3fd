"""Backtests with instrument specifications: a futures contract with a multiplier of 50, a stock
traded in lots of 100, worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from osmarkets import Brain
from osmarkets.architecture import SimulatedArchitecture
from osmarkets.backtest import backtest
from osmarkets.instruments import Instrument


def bars(rows, start="2024-03-04", freq="D"):
    index = pd.date_range(start, periods=len(rows), freq=freq, tz="UTC", name="time")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index).assign(
        volume=1.0
    )


class Script(Brain):
    """Sends ``orders[k]`` (side, size) while handling bar k (0-based)."""

    orders: dict = {}

    def on_start(self):
        self.count = 0
        self.events = []

    def on_new_bar(self, series):
        order = self.orders.get(self.count)
        if order:
            self.send_order(order[0], order[1], series.bsid.symbol)
        self.count += 1

    def on_order_event(self, event):
        self.events.append(event)


FUTURE = bars(
    [
        (4000.00, 4010.00, 3990.00, 4005.00),
        (4006.00, 4020.00, 4001.00, 4012.50),  # buy 2 fills at this open: 4006.00
        (4013.00, 4030.00, 4010.00, 4025.25),
        (4024.00, 4026.00, 4015.00, 4018.75),  # sell 2 fills at this open: 4024.00
        (4019.00, 4022.00, 4011.00, 4020.00),
    ]
)


def test_a_futures_contract_with_a_multiplier_of_50():
    es = Instrument("ES", multiplier=50, tick_size=0.25, margin_rate=0.05)
    result = backtest(Script, FUTURE, "ES:D", params={"orders": {0: ("buy", 2), 2: ("sell", 2)}},
                      instruments=[es])  # fmt: skip
    # bought 2 at 4006.00, sold 2 at 4024.00: (4024 - 4006) * 2 contracts * 50 = 1,800
    assert result.final_value == pytest.approx(100_000 + 1_800, abs=1e-9)
    assert result.positions["pnl"].tolist() == pytest.approx([1_800.0])
    # equity after bar 2 (held, marked at its close 4025.25): (4025.25 - 4006) * 2 * 50 = 1,925
    assert result.equity.iloc[2] == pytest.approx(101_925.0)
    # without the specification the same trades are worth 50 times less
    plain = backtest(Script, FUTURE, "ES:D", params={"orders": {0: ("buy", 2), 2: ("sell", 2)}})
    assert plain.final_value == pytest.approx(100_036.0)


def test_a_futures_position_is_margined_with_its_multiplier():
    # margin = contracts x price x 50 x 5 %: 2 at 4,006 need 20,030, 3 need 30,045
    es = Instrument("ES", multiplier=50, tick_size=0.25, margin_rate=0.05)
    for contracts, filled in ((2, True), (3, False)):
        result = backtest(Script, FUTURE, "ES:D", params={"orders": {0: ("buy", contracts)}},
                          cash=20_100, instruments={"ES": es})  # fmt: skip
        assert (len(result.trades) == 1) is filled


STOCK = bars(
    [
        (20.00, 20.50, 19.80, 20.10),
        (20.12, 20.40, 20.00, 20.30),  # fills at 20.12
        (20.35, 21.00, 20.30, 20.90),
        (20.95, 21.10, 20.60, 20.70),  # sells at 20.95
    ]
)


def test_a_stock_traded_in_lots_of_100():
    spec = {"XYZ": {"lot_size": 100, "min_size": 100, "tick_size": 0.01}}
    events = {}

    class Kept(Script):
        def on_start(self):
            super().on_start()
            events["list"] = self.events

    orders = {0: ("buy", 150), 1: ("buy", 50), 2: ("buy", 200)}
    result = backtest(Kept, STOCK, "XYZ:D", instruments=spec, params={"orders": orders})
    rejected = [e.reason for e in events["list"] if e.kind == "rejected"]
    assert rejected == [
        "size 150 is not a multiple of the lot size 100 for XYZ",
        "size 50 is below the minimum size 100 for XYZ",
    ]
    # only the 200 shares bought at bar 3's open (20.95) are held; marked at 20.70:
    # 100,000 + 200 * (20.70 - 20.95) = 99,950
    assert result.final_value == pytest.approx(99_950.0)
    assert result.open_positions == {"XYZ": 200.0}


def test_the_simulated_architecture_takes_the_same_specifications(tmp_path):
    path = tmp_path / "instruments.toml"
    path.write_text("[ES]\nmultiplier = 50\ntick_size = 0.25\nmargin_rate = 0.05\n")
    params = {"orders": {0: ("buy", 2), 2: ("sell", 2)}}
    expected = backtest(Script, FUTURE, "ES:D", params=params, instruments=str(path))
    with SimulatedArchitecture({"ES": FUTURE}, instruments=str(path)) as system:
        system.add_brain("script", base=Script, **params)
        system["script"].subscribe("ES:D", 10)
        result = system.run(timeout=120)
    assert result.final_value == pytest.approx(expected.final_value)
    np.testing.assert_allclose(result.trades["price"], expected.trades["price"])
    assert result.positions["pnl"].tolist() == pytest.approx([1_800.0])  # x 50, not x 1


def test_a_bad_specification_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[ES]\nmultiplier = -50\n")
    with pytest.raises(ValueError, match="multiplier"):
        backtest(Script, FUTURE, "ES:D", instruments=str(path))
    with pytest.raises(ValueError, match="multiplier"):
        SimulatedArchitecture({"ES": FUTURE}, instruments=str(path))


def test_order_prices_are_rounded_to_ticks_never_worse_than_asked():
    from osmarkets.brokers.base import Order
    from osmarkets.brokers.simulated import SimulatedBroker

    broker = SimulatedBroker(1e9, instruments=[Instrument("ES", tick_size=0.25)])
    broker.mark("ES", 4000.0)

    def accepted(**fields):
        order = Order(client_id=f"c{len(fields)}{fields}", symbol="ES", size=1, **fields)
        (event,) = broker.submit(order)
        assert event.kind == "accepted", event.reason
        return broker.pending_orders[-1]

    assert accepted(side="buy", type="limit", price=3990.13).price == 3990.0
    assert accepted(side="sell", type="limit", price=4010.13).price == 4010.25
    assert accepted(side="buy", type="stop", price=4010.13).price == 4010.25
    assert accepted(side="sell", type="stop", price=3990.13).price == 3990.0
    long = accepted(side="buy", type="limit", price=3999.0, stop_loss=3950.13, take_profit=4050.13)
    assert (long.stop_loss, long.take_profit) == (3950.0, 4050.25)
    short = accepted(side="sell", type="limit", price=4001.0, stop_loss=4050.13,
                     take_profit=3950.13)  # fmt: skip
    assert (short.stop_loss, short.take_profit) == (4050.25, 3950.0)
