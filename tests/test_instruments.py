"""Instrument specifications and the simulated broker's use of them: multiplier, ticks, lots,
per-instrument margin; and the round trips of a Result valued with the multiplier."""

import json

import pandas as pd
import pytest

from osmarkets.backtest.result import Result
from osmarkets.brokers.base import make_order
from osmarkets.brokers.simulated import Commission, SimulatedBroker
from osmarkets.data.types import Bar
from osmarkets.instruments import Instrument, load_instruments

MIN = 60_000_000_000
_ids = iter(range(1, 1_000_000))


def order(side, size, symbol, type="market", price=None, **kw):
    return make_order(f"o{next(_ids)}", side, size, symbol, type, price, **kw)


def bar(i, o, h, low, c):
    return Bar(i * MIN, o, h, low, c, 1.0)


def fills(events):
    return [e for e in events if e.kind == "filled"]


def kinds(events):
    return [e.kind for e in events]


ES = Instrument("ES", multiplier=50, tick_size=0.25, margin_rate=0.05, quote_currency="usd")
XYZ = Instrument("XYZ", lot_size=100, min_size=100)


# -- Instrument -----------------------------------------------------------------------------


def test_instrument_defaults_and_normalisation():
    plain = Instrument("EUR_USD")
    assert (plain.multiplier, plain.tick_size, plain.lot_size, plain.min_size) == (
        1.0, None, None, None,
    )  # fmt: skip
    assert plain.quote_currency is None and plain.margin_rate is None
    assert ES.multiplier == 50.0 and isinstance(ES.multiplier, float)
    assert ES.quote_currency == "USD"
    with pytest.raises(AttributeError):
        ES.multiplier = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("multiplier", 0),
        ("multiplier", -50),
        ("multiplier", float("nan")),
        ("multiplier", float("inf")),
        ("multiplier", True),
        ("multiplier", "50"),
        ("multiplier", None),
        ("tick_size", 0.0),
        ("tick_size", -0.25),
        ("tick_size", "0.25"),
        ("lot_size", -100),
        ("lot_size", float("inf")),
        ("min_size", 0),
        ("min_size", False),
        ("margin_rate", 0),
        ("margin_rate", 1.5),
        ("margin_rate", -0.1),
        ("quote_currency", "US"),
        ("quote_currency", "USD1"),
        ("quote_currency", "€UR"),
        ("quote_currency", 840),
    ],
)
def test_every_bad_field_is_named_with_the_symbol(field, value):
    with pytest.raises(ValueError) as info:
        Instrument("ES", **{field: value})
    message = str(info.value)
    assert field in message and "ES" in message and "\n" not in message


@pytest.mark.parametrize("symbol", ["", "ES Z4", "ES;rm", "€", 5, None])
def test_bad_symbol_is_named(symbol):
    with pytest.raises(ValueError, match="instrument symbol"):
        Instrument(symbol)


def test_round_price_nearest_and_adverse():
    assert ES.round_price(4000.10) == 4000.00  # nearest
    assert ES.round_price(4000.13) == 4000.25
    assert ES.round_price(4000.125) == 4000.25  # a half tick goes up
    assert ES.round_price(4000.01, "buy") == 4000.25  # buys up
    assert ES.round_price(4000.24, "sell") == 4000.00  # sells down
    assert ES.round_price(4000.25, "buy") == 4000.25  # on the tick: kept
    assert ES.round_price(4000.25, "sell") == 4000.25
    dime = Instrument("D", tick_size=0.1)
    # 0.1 * 3 is 0.30000000000000004: on the tick, whatever the side, and written as 0.3
    for side in (None, "buy", "sell"):
        assert dime.round_price(0.1 * 3, side) == 0.3
    assert dime.round_price(0.26, "buy") == 0.3
    assert Instrument("P", tick_size=0.00001).round_price(1.123456) == 1.12346
    assert Instrument("N").round_price(1.234567) == 1.234567  # no tick: unchanged
    with pytest.raises(ValueError, match="side"):
        ES.round_price(4000.0, "up")


def test_size_problem():
    assert XYZ.size_problem(200) is None
    assert XYZ.size_problem(150) == "size 150 is not a multiple of the lot size 100 for XYZ"
    assert XYZ.size_problem(50) == "size 50 is below the minimum size 100 for XYZ"
    assert Instrument("M", min_size=1).size_problem(0.5) == (
        "size 0.5 is below the minimum size 1 for M"
    )
    lots = Instrument("L", lot_size=0.1)
    assert lots.size_problem(0.1 * 3) is None  # float noise within the tolerance
    assert "lot size 0.1" in lots.size_problem(0.25)
    assert "lot size" in lots.size_problem(1e-12)  # not even one lot
    assert Instrument("ANY").size_problem(0.123) is None


# -- load_instruments -----------------------------------------------------------------------

TOML = """
[ES]
multiplier = 50
tick_size = 0.25
margin_rate = 0.05
quote_currency = "USD"

["BRK.B"]
lot_size = 100
min_size = 100
"""


def test_load_from_toml_and_json(tmp_path):
    path = tmp_path / "instruments.toml"
    path.write_text(TOML)
    found = load_instruments(path)
    assert found == {
        "ES": Instrument("ES", 50, 0.25, margin_rate=0.05, quote_currency="USD"),
        "BRK.B": Instrument("BRK.B", lot_size=100, min_size=100),
    }
    assert load_instruments(str(path)) == found
    as_json = tmp_path / "instruments.json"
    as_json.write_text(
        json.dumps(
            {
                "ES": {"multiplier": 50, "tick_size": 0.25, "margin_rate": 0.05,
                       "quote_currency": "USD"},
                "BRK.B": {"lot_size": 100, "min_size": 100, "symbol": "BRK.B"},
            }
        )
    )  # fmt: skip
    assert load_instruments(as_json) == found


def test_load_from_objects():
    assert load_instruments(None) == {}
    assert load_instruments({"ES": {"multiplier": 50}}) == {"ES": Instrument("ES", 50)}
    assert load_instruments({"ES": ES, "XYZ": XYZ}) == {"ES": ES, "XYZ": XYZ}
    assert load_instruments([ES, XYZ]) == {"ES": ES, "XYZ": XYZ}
    assert load_instruments(i for i in [XYZ]) == {"XYZ": XYZ}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[ES]\nmultiplier = 50\ncontract_size = 5\n", ["ES", "contract_size", "unknown"]),
        ("[ES]\nmultiplier = -50\n", ["ES", "multiplier", "positive"]),
        ("[ES]\nmultiplier = true\n", ["ES", "multiplier"]),
        ('[ES]\nmultiplier = "50"\n', ["ES", "multiplier"]),
        ("[ES]\ntick_size = 0\n", ["ES", "tick_size"]),
        ('[ES]\nquote_currency = "dollars"\n', ["ES", "quote_currency"]),
        ('[ES]\nsymbol = "NQ"\n', ["ES", "symbol", "NQ"]),
        ('["ES Z4"]\nmultiplier = 50\n', ["symbol", "ES Z4"]),
        ("multiplier = 50\n", ["multiplier", "table"]),
        ("[ES\nmultiplier = 50\n", ["not valid TOML"]),
        ("this is not toml at all", ["not valid TOML"]),
    ],
)
def test_hostile_toml_files(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_instruments(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_hostile_files(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ValueError, match="nowhere.toml: not found"):
        load_instruments(missing)
    junk = tmp_path / "junk.toml"
    junk.write_bytes(b"\xff\xfe\x00[ES]")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_instruments(junk)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"ES": {"multiplier": 50,}}')
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_instruments(bad_json)
    listed = tmp_path / "list.json"
    listed.write_text('[{"symbol": "ES"}]')
    with pytest.raises(ValueError, match="table per symbol"):
        load_instruments(listed)
    other = tmp_path / "instruments.yaml"
    other.write_text("ES: {}")
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        load_instruments(other)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(ValueError, match="dir.toml"):
        load_instruments(directory)


def test_hostile_objects():
    with pytest.raises(ValueError, match="twice"):
        load_instruments([ES, ES])
    with pytest.raises(ValueError, match="Instrument objects"):
        load_instruments([ES, {"symbol": "NQ"}])
    with pytest.raises(ValueError, match="'NQ' holds the instrument ES"):
        load_instruments({"NQ": ES})
    with pytest.raises(ValueError, match="'ES'.*table of fields"):
        load_instruments({"ES": 50})
    with pytest.raises(ValueError, match="expected"):
        load_instruments(50)


# -- the simulated broker -------------------------------------------------------------------


def test_no_instruments_means_multiplier_one():
    b = SimulatedBroker(1000)
    assert b.instruments == {} and b.multiplier("ES") == 1.0
    assert SimulatedBroker(1000, instruments=[ES]).multiplier("NQ") == 1.0
    with pytest.raises(ValueError, match="multiplier"):
        SimulatedBroker(1000, instruments={"ES": {"multiplier": -1}})


def test_futures_multiplier_50_worked_by_hand():
    fee = Commission(per_unit=2.0, fraction=0.0001)
    b = SimulatedBroker(100_000, slippage=0.10, commission=fee, instruments={"ES": ES})
    assert b.multiplier("ES") == 50.0 and b.margin_rate("ES") == 0.05
    b.on_bar("ES", bar(0, 4002.00, 4003.00, 4001.00, 4002.00))
    # A buy limit at 4000.10 is off the 0.25 tick: it is accepted at the nearest tick, 4000.00.
    (accepted,) = b.submit(order("buy", 2, "ES", "limit", 4000.10))
    assert (accepted.kind, accepted.price) == ("accepted", 4000.00)
    # Bullish bar: open 4001 -> low 3999.50 crosses 4000.00, a limit fill at its price (no
    # slippage on limit fills).
    (buy,) = fills(b.on_bar("ES", bar(1, 4001.00, 4003.00, 3999.50, 4002.50)))
    assert (buy.side, buy.size, buy.price) == ("buy", 2, 4000.00)
    # commission = 2 contracts * 2.00 + 0.0001 * notional (2 * 4000.00 * 50 = 400,000) = 44
    assert buy.commission == pytest.approx(44.0)
    # balance = 100,000 - 44 = 99,956
    assert b.balance == pytest.approx(99_956.0)
    # marked at the close 4002.50: unrealised = 2 * (4002.50 - 4000.00) * 50 = 250
    assert b.unrealized_pnl == pytest.approx(250.0)
    assert b.equity == pytest.approx(100_206.0)
    # margin = |2| * 4002.50 * 50 * 0.05 (the instrument's rate) = 20,012.50
    assert b.margin_used == pytest.approx(20_012.5)

    b.submit(order("sell", 2, "ES"))
    # Market sell at the next open 4010.00 less 0.10 slippage = 4009.90, rounded down to the
    # tick (the adverse side for a seller): 4009.75.
    (sell,) = fills(b.on_bar("ES", bar(2, 4010.00, 4012.00, 4009.00, 4011.00)))
    assert sell.price == 4009.75
    # commission = 2 * 2.00 + 0.0001 * (2 * 4009.75 * 50 = 400,975) = 4 + 40.0975 = 44.0975
    assert sell.commission == pytest.approx(44.0975)
    # realised = 2 * (4009.75 - 4000.00) * 50 = 975
    assert b.realized_pnl == pytest.approx(975.0)
    # balance = 99,956 + 975 - 44.0975 = 100,886.9025; flat, so equity = balance, no margin
    assert b.balance == pytest.approx(100_886.9025)
    assert b.equity == pytest.approx(100_886.9025)
    assert b.margin_used == 0.0
    assert b.commission_paid == pytest.approx(88.0975)

    # The Result values the round trip with the same multiplier:
    # pnl = 2 * (4009.75 - 4000.00) * 50 - (44 + 44.0975) = 975 - 88.0975 = 886.9025
    index = pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True)
    equity = pd.Series([100_206.0, 100_886.9025], index=index)
    result = Result.from_run(
        [buy, sell], equity, initial_cash=100_000, multipliers={"ES": 50, "NQ": 20}
    )
    (trip,) = result.positions.itertuples()
    assert (trip.size, trip.entry_price, trip.exit_price) == (2, 4000.00, 4009.75)
    assert trip.pnl == pytest.approx(886.9025)
    assert result.stats["average_trade"] == pytest.approx(886.9025)
    assert result.stats["win_rate"] == 1.0
    # without multipliers the same fills are worth 2 * 9.75 - 88.0975 = -68.5975
    plain = Result.from_run([buy, sell], equity, initial_cash=100_000)
    assert plain.positions["pnl"].iloc[0] == pytest.approx(-68.5975)
    assert plain.stats["win_rate"] == 0.0
    ones = Result.from_run([buy, sell], equity, initial_cash=100_000, multipliers={"ES": 1})
    pd.testing.assert_frame_equal(ones.positions, plain.positions)
    assert ones.stats == plain.stats


def test_futures_fills_and_protective_levels_round_to_the_tick():
    b = SimulatedBroker(100_000, spread=0.30, instruments=[ES])
    b.on_bar("ES", bar(0, 4000.00, 4001.00, 3999.00, 4000.00))
    # stop-loss 3990.10 -> 3990.00 and take-profit 4020.20 -> 4020.25 (nearest ticks)
    b.submit(order("buy", 1, "ES", stop_loss=3990.10, take_profit=4020.20))
    # market buy at the ask: open 4000.00 + half spread 0.15 = 4000.15, rounded up to 4000.25
    (buy,) = fills(b.on_bar("ES", bar(1, 4000.00, 4001.00, 3999.00, 4000.00)))
    assert buy.price == 4000.25
    # the bid reaches 4021.00 - 0.15 = 4020.85: the take-profit fills at its rounded level
    (tp,) = fills(b.on_bar("ES", bar(2, 4001.00, 4021.00, 4000.00, 4010.00)))
    assert (tp.reason, tp.side, tp.price) == ("take_profit", "sell", 4020.25)
    # realised = 1 * (4020.25 - 4000.25) * 50 = 1,000
    assert b.balance == pytest.approx(101_000.0)


def test_price_rounded_to_zero_is_rejected():
    b = SimulatedBroker(100_000, instruments=[ES])
    (event,) = b.submit(order("buy", 1, "ES", "limit", 0.1))
    assert event.kind == "rejected" and "price" in event.reason


def test_stock_lot_size_100_worked_by_hand():
    fee = Commission(per_unit=0.01, minimum=1.0)
    b = SimulatedBroker(100_000, commission=fee, instruments=[XYZ])
    b.on_bar("XYZ", bar(0, 50.00, 50.50, 49.50, 50.00))
    (odd,) = b.submit(order("buy", 150, "XYZ"))
    assert odd.kind == "rejected"
    assert odd.reason == "size 150 is not a multiple of the lot size 100 for XYZ"
    (small,) = b.submit(order("buy", 50, "XYZ"))
    assert small.kind == "rejected"
    assert small.reason == "size 50 is below the minimum size 100 for XYZ"
    assert kinds(b.submit(order("buy", 200, "XYZ"))) == ["accepted"]
    assert b.pending_orders[0].size == 200 and len(b.pending_orders) == 1

    (buy,) = fills(b.on_bar("XYZ", bar(1, 50.00, 51.50, 49.80, 51.20)))
    assert (buy.size, buy.price) == (200, 50.00)
    # commission = max(1.00, 200 * 0.01) = 2.00; balance = 100,000 - 2 = 99,998
    assert buy.commission == pytest.approx(2.0)
    assert b.balance == pytest.approx(99_998.0)
    # unrealised at the close = 200 * (51.20 - 50.00) = 240; equity = 100,238
    assert b.unrealized_pnl == pytest.approx(240.0)
    assert b.equity == pytest.approx(100_238.0)
    # margin (rate 1, multiplier 1) = 200 * 51.20 = 10,240
    assert b.margin_used == pytest.approx(10_240.0)

    # closing an odd size is refused as well: the rule is the exchange's, not the position's
    assert b.submit(order("sell", 150, "XYZ"))[0].kind == "rejected"
    b.submit(order("sell", 200, "XYZ"))
    (sell,) = fills(b.on_bar("XYZ", bar(2, 52.35, 52.50, 52.00, 52.10)))
    # realised = 200 * (52.35 - 50.00) = 470; balance = 99,998 + 470 - 2 = 100,466
    assert b.realized_pnl == pytest.approx(470.0)
    assert b.balance == pytest.approx(100_466.0)
    assert b.equity == pytest.approx(100_466.0)

    # pnl of the round trip = 470 - 4 = 466 (multiplier 1: with or without the mapping)
    index = pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True)
    equity = pd.Series([100_238.0, 100_466.0], index=index)
    result = Result.from_run([buy, sell], equity, initial_cash=100_000, multipliers={"ES": 50})
    assert result.positions["pnl"].iloc[0] == pytest.approx(466.0)


def test_margin_rate_per_instrument():
    fx = Instrument("EUR_USD", margin_rate=0.02)
    b = SimulatedBroker(1000, margin_rate={"EUR_USD": 0.5, "GBP_USD": 0.5}, instruments=[fx])
    assert b.margin_rate("EUR_USD") == 0.02  # the instrument's rate wins
    assert b.margin_rate("GBP_USD") == 0.5
    b.on_bar("EUR_USD", bar(0, 1.10, 1.10, 1.10, 1.10))
    b.on_bar("GBP_USD", bar(0, 1.10, 1.10, 1.10, 1.10))
    # 10,000 units at 1.10: notional 11,000; at 2 % the margin is 220 <= equity 1,000
    assert kinds(b.submit(order("buy", 10_000, "EUR_USD"))) == ["accepted"]
    # at 50 % it would be 5,500 > 1,000
    (refused,) = b.submit(order("buy", 10_000, "GBP_USD"))
    assert (refused.kind, refused.reason) == ("rejected", "insufficient margin")
    b.on_bar("EUR_USD", bar(1, 1.10, 1.10, 1.10, 1.10))
    assert b.margin_used == pytest.approx(220.0)


def test_futures_margin_uses_the_multiplier():
    b = SimulatedBroker(10_000, instruments=[ES])
    b.on_bar("ES", bar(0, 4000.00, 4000.00, 4000.00, 4000.00))
    # one contract: 1 * 4000 * 50 * 0.05 = 10,000 <= equity 10,000
    assert kinds(b.submit(order("buy", 1, "ES"))) == ["accepted"]
    # two contracts: 20,000 > 10,000
    assert b.submit(order("buy", 2, "ES"))[0].reason == "insufficient margin"
    b.on_bar("ES", bar(1, 4000.00, 4000.00, 4000.00, 4000.00))
    assert b.position("ES") == 1 and b.margin_used == pytest.approx(10_000.0)
    # a second contract no longer fits, selling it is always allowed
    assert b.submit(order("buy", 1, "ES"))[0].reason == "insufficient margin"
    assert kinds(b.submit(order("sell", 1, "ES"))) == ["accepted"]


def test_result_rejects_bad_multipliers():
    equity = pd.Series([1.0], index=pd.to_datetime([0], utc=True))
    for bad in (0, -2, float("nan"), "50", True):
        with pytest.raises(ValueError, match="multipliers"):
            Result.from_run([], equity, initial_cash=1.0, multipliers={"ES": bad})
