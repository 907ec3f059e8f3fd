"""OANDA's money rules, the same in the simulated broker and in the bundled OANDA sandbox: home
conversion of USD_JPY, EUR_GBP and EUR_USD in a USD account (FIFO), a financing day and a margin
closeout, driven by the same scripted quotes and fills; balances equal to the cent."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import requests
from oanda_support import TOKEN

from osmarkets.brokers.base import Order
from osmarkets.brokers.money import AccountCurrency, NoConversion
from osmarkets.brokers.oanda import OandaSandbox
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data.types import Tick

FINANCING = {"EUR_USD": (-0.04, 0.01), "USD_JPY": (0.03, -0.06), "EUR_GBP": (-0.02, -0.01)}
START = pd.Timestamp("2024-03-05 12:00", tz="America/New_York")  # a Tuesday


class Pair:
    """A sandbox account and a simulated broker fed the same quotes and orders."""

    def __init__(self, balance: float, **sandbox: Any) -> None:
        self.now = [int(START.tz_convert("UTC").value)]
        self.sandbox = OandaSandbox(
            token=TOKEN, instruments=["EUR_USD", "USD_JPY", "EUR_GBP", "GBP_USD"], seed=3,
            tick_interval=3600, balance=balance, clock=lambda: self.now[0], **sandbox,
        ).start()  # fmt: skip
        self.broker = SimulatedBroker(
            balance, currency="USD", margin_rate=0.05,
            financing=sandbox.get("financing"),
        )  # fmt: skip
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        self.base = f"{self.sandbox.rest_url}/v3/accounts/{self.sandbox.account_id}"
        self.count = 0
        self.events: list[Any] = []

    def close(self) -> None:
        self.session.close()
        self.sandbox.close()

    def quote(self, **prices: tuple[float, float]) -> None:
        for symbol, (bid, ask) in prices.items():
            self.sandbox.set_price(symbol, bid, ask)
        for symbol, (bid, ask) in prices.items():
            self.events += self.broker.on_tick(symbol, Tick(self.now[0], bid, ask))
        self.sandbox.settle()

    def later(self, hours: float) -> None:
        self.now[0] += int(hours * 3600e9)

    def market(self, symbol: str, units: int) -> None:
        order = {"type": "MARKET", "instrument": symbol, "units": str(units)}
        reply = self.session.post(f"{self.base}/orders", json={"order": order}, timeout=5)
        assert reply.status_code == 201 and "orderFillTransaction" in reply.json(), reply.text
        self.count += 1
        side = "buy" if units > 0 else "sell"
        (accepted,) = self.broker.submit(
            Order(client_id=f"o{self.count}", symbol=symbol, side=side, size=abs(units))
        )
        assert accepted.kind == "accepted", accepted.reason
        bid, ask = self.broker._bid[symbol], self.broker._ask[symbol]
        (fill,) = self.broker.on_tick(symbol, Tick(self.now[0], bid, ask))
        assert fill.kind == "filled"

    def account(self) -> dict[str, float]:
        body = self.session.get(f"{self.base}/summary", timeout=5).json()["account"]
        return {k: float(body[k]) for k in ("balance", "unrealizedPL", "marginUsed", "NAV",
                                            "financing", "marginCloseoutPercent")}  # fmt: skip

    def assert_same(self) -> dict[str, float]:
        theirs = self.account()
        broker = self.broker
        ours = {"balance": broker.balance, "unrealizedPL": broker.unrealized_pnl,
                "marginUsed": broker.margin_used, "NAV": broker.equity}  # fmt: skip
        for key, value in ours.items():
            assert value == pytest.approx(theirs[key], abs=0.005), key
        return theirs


@pytest.fixture
def pair():
    made: list[Pair] = []

    def make(balance: float, **sandbox: Any) -> Pair:
        made.append(Pair(balance, **sandbox))
        return made[-1]

    yield make
    for item in made:
        item.close()


QUOTES = {
    "EUR_USD": (1.10000, 1.10010),
    "USD_JPY": (150.000, 150.020),
    "EUR_GBP": (0.86000, 0.86010),
    "GBP_USD": (1.27000, 1.27020),
}


def test_home_conversion_fifo_and_a_financing_day_match_the_sandbox(pair):
    p = pair(100_000.0, financing=FINANCING)
    p.quote(**QUOTES)
    p.market("EUR_USD", 10_000)
    p.market("USD_JPY", -5_000)
    p.market("EUR_GBP", 20_000)
    p.assert_same()
    p.later(1)
    p.quote(EUR_USD=(1.10500, 1.10510), USD_JPY=(149.200, 149.220), EUR_GBP=(0.86300, 0.86310),
            GBP_USD=(1.26500, 1.26520))  # fmt: skip
    p.market("EUR_USD", 10_000)  # a second lot at 1.10510
    p.market("EUR_USD", -15_000)  # FIFO: the whole first lot, half of the second
    p.market("USD_JPY", 2_000)  # buys back part of the short: P&L in yen, at 1/149.22
    p.market("EUR_GBP", -20_000)  # P&L in pounds, at GBP_USD's mid
    before = p.assert_same()
    # FIFO on EUR_USD: (1.10500 - 1.10010) x 10,000 + (1.10500 - 1.10510) x 5,000 = 48.5
    assert p.broker.realized_pnl == pytest.approx(
        48.5 + (150.000 - 149.220) * 2_000 / 149.220 + (0.86300 - 0.86010) * 20_000 * 1.2651,
        abs=1e-6,
    )
    assert before["financing"] == 0.0
    p.later(5)  # past 17:00 New York: one day of financing (a Tuesday)
    p.quote(**{k: v for k, v in QUOTES.items() if k != "EUR_GBP"})
    after = p.assert_same()
    assert after["financing"] != 0.0
    assert p.broker.financing_total == pytest.approx(after["financing"], abs=0.005)
    # the long 5,000 EUR_USD pays 4 %: 5,000 x 1.10000 x -0.04 / 365; the short 3,000
    # USD_JPY pays 6 %: 3,000 x 150.020 x -0.06 / 365 / 150.020 (in dollars)
    expected = 5_000 * 1.10000 * -0.04 / 365 + 3_000 * -0.06 / 365
    assert p.broker.financing_total == pytest.approx(expected, abs=0.005)


def test_wednesday_counts_three_days_of_financing(pair):
    p = pair(100_000.0, financing=FINANCING)
    p.later(24)  # Wednesday noon
    p.quote(**QUOTES)
    p.market("EUR_USD", 10_000)
    p.later(6)
    p.quote(**QUOTES)
    theirs = p.assert_same()
    assert theirs["financing"] == pytest.approx(10_000 * 1.10000 * -0.04 / 365 * 3, abs=0.005)


def test_a_margin_closeout_closes_everything_at_the_same_prices(pair):
    p = pair(10_000.0)
    p.quote(**QUOTES)
    p.market("EUR_USD", 150_000)  # margin 150,000 x 1.1 x 5 % = 8,250 of a 10,000 NAV
    theirs = p.assert_same()
    assert theirs["marginCloseoutPercent"] == pytest.approx(
        theirs["marginUsed"] / (2 * theirs["NAV"]), abs=1e-5
    )
    p.later(1)
    p.quote(EUR_USD=(1.08000, 1.08010))  # NAV 7,000 > half of 8,100: no closeout yet
    assert p.broker.positions == {"EUR_USD": 150_000.0}
    p.quote(EUR_USD=(1.06000, 1.06010))  # NAV 3,985 > half of 7,950 (3,975): still open
    assert p.broker.positions == {"EUR_USD": 150_000.0}
    p.assert_same()
    p.quote(EUR_USD=(1.05900, 1.05910))  # NAV 3,835 <= half of 7,942.50: closed out
    assert p.broker.positions == {}
    assert p.broker.closeouts == 1
    closing = [e for e in p.events if e.reason == "margin closeout"]
    assert len(closing) == 1 and closing[0].price == 1.05900 and closing[0].side == "sell"
    after = p.assert_same()
    assert after["balance"] == pytest.approx(10_000 + (1.05900 - 1.10010) * 150_000, abs=0.005)
    kinds = [t for t in p.sandbox.transactions if t.get("reason") == "MARGIN_CLOSEOUT"]
    assert len(kinds) == 1


def test_a_missing_conversion_is_one_clear_error():
    account = AccountCurrency("USD")
    with pytest.raises(NoConversion, match="EUR_GBP: no conversion from GBP to USD: add GBP_USD"):
        account.check(["EUR_GBP"])
    account.check(["EUR_GBP", "GBP_USD", "USD_JPY"])
    AccountCurrency("USD", rates={"GBP": 1.27}).check(["EUR_GBP"])
    broker = SimulatedBroker(100_000, currency="USD")
    broker.on_tick("EUR_GBP", Tick(1, 0.86, 0.8601))
    (event,) = broker.submit(Order(client_id="x", symbol="EUR_GBP", side="buy", size=1000))
    assert event.kind == "rejected" and "no conversion from GBP to USD" in event.reason
    for bad, message in (
        ({"currency": "dollars"}, "currency: expected a three-letter"),
        ({"currency": "USD", "rates": {"GBP": -1}}, r"rates\['GBP'\]"),
        ({"currency": "USD", "financing": {"EUR_USD": 0.1}}, r"financing\['EUR_USD'\]"),
        ({"rates": {"GBP": 1.2}}, "need an account currency"),
        ({"currency": "USD", "closeout": 2}, "closeout: expected a fraction"),
    ):
        with pytest.raises(ValueError, match=message):
            SimulatedBroker(100_000, **bad)
