"""The Binance-spot exchange sandbox, driven by the unmodified ccxt.binance / ccxt.pro.binance.

Every test runs a real server on 127.0.0.1. Trading tests use a manual clock
(``tick_interval=None``): prices move and resting orders fill only on ``set_price`` /
``step``, so fills are deterministic.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal as D

import pytest
from ccxt_support import wait_for

pytest.importorskip("ccxt")
import ccxt  # noqa: E402
import ccxt.pro  # noqa: E402

from osmarkets.brokers.ccxt import ExchangeSandbox  # noqa: E402

BTC = "BTC/USDT"
FORM = "application/x-www-form-urlencoded"


def client(sb, **extra):
    ex = ccxt.binance({**sb.ccxt_options(), "enableRateLimit": False, "timeout": 5000, **extra})
    ex.load_markets()
    return ex


@pytest.fixture
def sb():
    """A manual-clock sandbox with BTC pinned at 50000.00 / 50000.01 and a thin book."""
    with ExchangeSandbox(seed=3, tick_interval=None, book_qty={"BTC/USDT": "0.01"}) as sandbox:
        sandbox.set_price(BTC, 50_000, 50_000.01)
        yield sandbox


@pytest.fixture
def ex(sb):
    return client(sb)


def raw(sb, method, path, query="", body=None, headers=None):
    """(status, json) of a plain HTTP request, errors included."""
    url = sb.url + path + (("?" + query) if query else "")
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def signed_query(sb, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    sig = hmac.new(sb.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"


# -- public market data ---------------------------------------------------------------------
def test_markets_time_ticker_book(sb, ex):
    market = ex.market(BTC)
    assert market["spot"] and market["id"] == "BTCUSDT"
    assert market["precision"] == {"amount": 1e-05, "price": 0.01, "base": 1e-08, "quote": 1e-08}
    assert market["limits"]["amount"]["min"] == 1e-05 and market["limits"]["cost"]["min"] == 5
    assert set(ex.symbols) == {"BTC/USDT", "ETH/USDT"}
    assert abs(ex.fetch_time() - time.time() * 1000) < 2000
    ticker = ex.fetch_ticker(BTC)
    assert (ticker["bid"], ticker["ask"], ticker["last"]) == (50_000.0, 50_000.01, 50_000.01)
    assert ticker["high"] >= ticker["low"] > 0
    book = ex.fetch_order_book(BTC, 5)
    assert book["bids"][:2] == [[50_000.0, 0.01], [49_999.99, 0.01]]
    assert book["asks"][:2] == [[50_000.01, 0.01], [50_000.02, 0.01]]
    assert len(book["bids"]) == 5 and book["nonce"] > 0
    assert "X-MBX-USED-WEIGHT-1M" in ex.last_response_headers
    assert repr(sb).count(sb.api_key) == 0 and sb.secret not in repr(sb)


def test_ohlcv_pagination_and_consistency():
    now = 1_700_000_000_000
    kwargs = dict(seed=5, tick_interval=None, clock=lambda: now)
    with ExchangeSandbox(**kwargs) as a, ExchangeSandbox(**kwargs) as b:
        ex = client(a)
        for tf, ms in (("1m", 60_000), ("5m", 300_000), ("1h", 3_600_000), ("1d", 86_400_000)):
            since = now - 250 * ms
            first = ex.fetch_ohlcv(BTC, tf, since=since, limit=100)
            second = ex.fetch_ohlcv(BTC, tf, since=first[-1][0] + ms, limit=100)
            assert len(first) == len(second) == 100
            assert first[0][0] >= since and first[0][0] - since < ms
            times = [row[0] for row in first + second]
            assert times == list(range(times[0], times[0] + 200 * ms, ms))
            for _, o, h, lo, c, v in first + second:
                assert lo <= min(o, c) <= max(o, c) <= h and v >= 0
            latest = ex.fetch_ohlcv(BTC, tf, limit=3)
            assert latest[-1][0] == now // ms * ms  # the kline still open
            assert latest[-1][4] == ex.fetch_ticker(BTC)["last"]  # closes at the live price
        # the same seed, the same history
        assert client(b).fetch_ohlcv(BTC, "1m", limit=50) == ex.fetch_ohlcv(BTC, "1m", limit=50)
        # a kline's close is the next one's open, on a contiguous path
        rows = ex.fetch_ohlcv(BTC, "1m", limit=20)
        assert all(rows[i][4] == rows[i + 1][1] for i in range(19))


# -- trading --------------------------------------------------------------------------------
def test_market_orders_fees_and_exact_balances(sb, ex):
    order = ex.create_order(BTC, "market", "buy", 0.01)
    assert order["status"] == "closed" and order["filled"] == 0.01
    assert order["average"] == 50_000.01
    assert order["fees"] == [{"currency": "BTC", "cost": 1e-05}]
    bal = sb.balances()
    assert bal["USDT"] == {"free": D("9499.9999"), "locked": D(0)}
    assert bal["BTC"] == {"free": D("0.00999"), "locked": D(0)}
    fetched = ex.fetch_balance()
    assert fetched["BTC"]["free"] == 0.00999 and fetched["USDT"]["total"] == 9499.9999
    sell = ex.create_order(BTC, "market", "sell", 0.00999)
    assert sell["fees"] == [{"currency": "USDT", "cost": 0.4995}]
    assert sb.balances()["USDT"]["free"] == D("9499.9999") + D("499.5") - D("0.4995")
    assert sb.balances()["BTC"]["free"] == 0
    trades = ex.fetch_my_trades(BTC)
    assert [(t["side"], t["fee"]["currency"], t["takerOrMaker"]) for t in trades] == [
        ("buy", "BTC", "taker"),
        ("sell", "USDT", "taker"),
    ]
    since = trades[1]["timestamp"]
    assert [t["id"] for t in ex.fetch_my_trades(BTC, since=since)] == [trades[1]["id"]]


def test_large_market_order_walks_the_book(sb, ex):
    order = ex.create_order(BTC, "market", "buy", 0.025)
    fills = [(t["price"], t["amount"]) for t in order["trades"]]
    assert fills == [(50_000.01, 0.01), (50_000.02, 0.01), (50_000.03, 0.005)]
    assert order["filled"] == 0.025 and order["status"] == "closed"
    cost = D("50000.01") * D("0.01") + D("50000.02") * D("0.01") + D("50000.03") * D("0.005")
    assert sb.balances()["USDT"]["free"] == D(10_000) - cost
    assert sb.balances()["BTC"]["free"] == D("0.025") - D("0.000025")


def test_limit_order_lifecycle(sb, ex):
    order = ex.create_order(BTC, "limit", "buy", 0.01, 49_000, {"clientOrderId": "mine-1"})
    assert order["status"] == "open" and order["clientOrderId"] == "mine-1"
    assert sb.balances()["USDT"] == {"free": D("9510"), "locked": D("490")}
    assert ex.fetch_balance()["USDT"]["used"] == 490
    assert ex.fetch_order(order["id"], BTC)["status"] == "open"
    by_client = ex.fetch_order(None, BTC, {"origClientOrderId": "mine-1"})
    assert by_client["id"] == order["id"]
    assert [o["id"] for o in ex.fetch_open_orders(BTC)] == [order["id"]]
    assert ex.cancel_order(order["id"], BTC)["status"] == "canceled"
    assert sb.balances()["USDT"] == {"free": D(10_000), "locked": D(0)}
    assert ex.fetch_open_orders(BTC) == []
    assert [o["status"] for o in ex.fetch_orders(BTC)] == ["canceled"]
    assert ex.fetch_closed_orders(BTC) == []  # ccxt's "closed" is filled, not canceled


def test_limit_partial_fills_then_rests_and_fills_on_later_ticks(sb, ex):
    order = ex.create_order(BTC, "limit", "buy", 0.03, 50_000.02)
    assert [(t["price"], t["amount"]) for t in order["trades"]] == [
        (50_000.01, 0.01),
        (50_000.02, 0.01),
    ]
    assert order["status"] == "open" and order["filled"] == 0.02
    locked = D("0.01") * D("50000.02")
    assert sb.balances()["USDT"]["locked"] == locked
    sb.set_price(BTC, 50_100, 50_100.01)  # above the limit: nothing
    assert ex.fetch_order(order["id"], BTC)["filled"] == 0.02
    sb.set_price(BTC, 49_990, 49_990.01)  # through it: the rest fills as maker at its price
    done = ex.fetch_order(order["id"], BTC)
    assert done["status"] == "closed" and done["filled"] == 0.03
    trades = ex.fetch_my_trades(BTC)
    assert [t["takerOrMaker"] for t in trades] == ["taker", "taker", "maker"]
    assert trades[-1]["price"] == 50_000.02
    assert sb.balances()["USDT"] == {
        "free": D(10_000) - D("500.0001") - D("500.0002") - D("500.0002"),
        "locked": D(0),
    }
    assert sb.balances()["BTC"]["free"] == D("0.03") - D("0.00003")


def test_resting_order_fills_over_several_ticks(sb, ex):
    order = ex.create_order(BTC, "limit", "buy", 0.025, 49_900)
    assert order["status"] == "open" and order["filled"] == 0
    sb.set_price(BTC, 49_800, 49_800.01)
    assert ex.fetch_order(order["id"], BTC)["filled"] == 0.01  # book_qty per tick
    sb.step()
    sb.step()
    assert ex.fetch_order(order["id"], BTC)["status"] == "closed"
    assert [t["amount"] for t in ex.fetch_my_trades(BTC)] == [0.01, 0.01, 0.005]


def test_ioc_fok_post_only_and_stop_limit(sb, ex):
    before = sb.balances()
    fok = ex.create_order(BTC, "limit", "buy", 0.02, 50_000.01, {"timeInForce": "FOK"})
    assert fok["status"] == "expired" and fok["filled"] == 0
    assert sb.balances() == before
    ioc = ex.create_order(BTC, "limit", "buy", 0.02, 50_000.01, {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0.01
    assert sb.balances()["USDT"]["locked"] == 0
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        ex.create_order(BTC, "limit", "buy", 0.01, 50_000.01, {"postOnly": True})
    maker = ex.create_order(BTC, "limit", "buy", 0.01, 49_000, {"postOnly": True})
    assert maker["status"] == "open" and maker["info"]["type"] == "LIMIT_MAKER"
    stop = ex.create_order(BTC, "limit", "sell", 0.005, 48_000, {"stopLossPrice": 48_500})
    assert stop["info"]["type"] == "STOP_LOSS_LIMIT"
    assert ex.fetch_order(stop["id"], BTC)["status"] == "open"
    sb.set_price(BTC, 48_400, 48_400.01)  # triggers, then sells into the bids
    assert ex.fetch_order(stop["id"], BTC)["status"] == "closed"
    with pytest.raises(ccxt.OrderImmediatelyFillable):  # Stop price would trigger immediately
        ex.create_order(BTC, "limit", "sell", 0.001, 48_000, {"stopLossPrice": 49_000})


# -- errors ---------------------------------------------------------------------------------
def test_error_codes_leave_state_unchanged(sb, ex):
    ex.create_order(BTC, "limit", "buy", 0.01, 49_000, {"clientOrderId": "dup"})
    orders, balances, requests = sb.orders(), sb.balances(), sb.requests

    def check(exc_class, code, call):
        """``code``: Binance's code (in the body ccxt quotes) or, where ccxt matched the
        message, the message."""
        with pytest.raises(exc_class) as info:
            call()
        assert type(info.value) is exc_class, repr(info.value)
        expected = f'"code":{code}' if isinstance(code, int) else code
        assert expected in str(info.value), str(info.value)
        assert sb.orders() == orders and sb.balances() == balances

    wrong_secret = client(sb, secret="0" * 64)
    check(ccxt.AuthenticationError, -1022, wrong_secret.fetch_balance)
    check(ccxt.AuthenticationError, -2015, client(sb, apiKey="A" * 64).fetch_balance)
    check(ccxt.AuthenticationError, -2014, client(sb, apiKey="not a key!").fetch_balance)
    late = client(sb)
    late.options["timeDifference"] = 60_000  # its clock 60 s behind: outside recvWindow
    check(ccxt.InvalidNonce, -1021, late.fetch_balance)
    check(ccxt.BadSymbol, -1121, lambda: ex.publicGetTicker24hr({"symbol": "NOPEUSDT"}))
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    check(
        ccxt.InvalidOrder,
        -1013,
        lambda: ex.privatePostOrder({**order, "quantity": "0.000015", "price": "49000"}),
    )
    check(
        ccxt.InvalidOrder,
        -1013,
        lambda: ex.privatePostOrder({**order, "quantity": "0.01", "price": "49000.001"}),
    )
    check(ccxt.BadRequest, -1013, lambda: ex.create_order(BTC, "limit", "buy", 0.00001, 49_000))
    check(ccxt.BadRequest, -1102, lambda: ex.privatePostOrder({**order, "price": "49000"}))
    funds = "Account has insufficient balance for requested action."
    check(ccxt.InsufficientFunds, funds, lambda: ex.create_order(BTC, "market", "buy", 1))
    check(ccxt.InsufficientFunds, funds, lambda: ex.create_order(BTC, "market", "sell", 0.01))
    check(
        ccxt.OrderImmediatelyFillable,
        "Order would immediately match and take.",
        lambda: ex.create_order(BTC, "limit", "sell", 0.01, 49_000, {"postOnly": True}),
    )
    check(
        ccxt.InvalidOrder,
        -2010,
        lambda: ex.create_order(BTC, "limit", "buy", 0.01, 48_000, {"clientOrderId": "dup"}),
    )
    check(ccxt.OrderNotFound, -2011, lambda: ex.cancel_order("999999", BTC))
    check(ccxt.OrderNotFound, -2013, lambda: ex.fetch_order("999999", BTC))
    assert sb.requests > requests  # fmt: skip


def test_weights_429_then_418(sb, ex):
    wait_for(lambda: time.time() % 60 < 50, timeout=15)  # the whole test in one weight minute
    sb.reset_weights()
    sb.set_weight_limit(30)
    ex.fetch_order_book(BTC, 100)  # weight 5
    assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "5"
    ex.publicGetExchangeInfo()  # 20
    ex.fetch_ticker(BTC)  # 2
    ex.fetch_time()  # 1
    ex.fetch_ticker(BTC)  # 2: 30, the limit
    assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "30"
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        ex.fetch_time()
    assert int(ex.last_response_headers["Retry-After"]) >= 1
    with pytest.raises(ccxt.DDoSProtection, match="418"):  # kept going after the 429
        ex.fetch_time()
    with pytest.raises(ccxt.DDoSProtection, match="418"):  # banned, even under the limit
        sb.set_weight_limit(None)
        ex.fetch_time()
    assert int(ex.last_response_headers["Retry-After"]) > 60
    sb.reset_weights()
    assert ex.fetch_time() > 0


# -- fault knobs ----------------------------------------------------------------------------
def test_fail_requests_and_latency(sb, ex):
    sb.fail_requests(1, 500)
    with pytest.raises(ccxt.OperationFailed):
        ex.fetch_ticker(BTC)
    sb.fail_requests(1, 503)
    with pytest.raises(ccxt.ExchangeError):
        ex.fetch_ticker(BTC)
    sb.fail_requests(1, 429)
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_ticker(BTC)
    assert ex.fetch_ticker(BTC)["bid"] == 50_000
    sb.latency = 0.2
    started = time.monotonic()
    ex.fetch_time()
    assert time.monotonic() - started >= 0.2
    sb.latency = 0


def test_lost_slow_and_rejected_orders(sb, ex):
    sb.lose_order_responses(1)  # executed, answered 503 -1007
    with pytest.raises(ccxt.BaseError):
        ex.create_order(BTC, "limit", "buy", 0.01, 49_000, {"clientOrderId": "lost-1"})
    assert ex.fetch_order(None, BTC, {"origClientOrderId": "lost-1"})["status"] == "open"
    sb.lose_order_responses(1, status=None)  # executed, connection dropped
    with pytest.raises(ccxt.NetworkError):
        ex.create_order(BTC, "limit", "buy", 0.01, 49_000, {"clientOrderId": "lost-2"})
    assert [o["clientOrderId"] for o in sb.orders()] == ["lost-1", "lost-2"]
    sb.reject_orders(1, -2010, "New order rejected.")
    with pytest.raises(ccxt.InvalidOrder):
        ex.create_order(BTC, "limit", "buy", 0.01, 49_000)
    assert len(sb.orders()) == 2
    sb.slow_orders(1, delay=1.0, before=True)
    impatient = client(sb, timeout=300)
    with pytest.raises(ccxt.RequestTimeout):
        impatient.create_order(BTC, "limit", "buy", 0.01, 49_000, {"clientOrderId": "slow-1"})
    assert "slow-1" not in [o["clientOrderId"] for o in sb.orders()]  # not yet executed
    wait_for(lambda: "slow-1" in [o["clientOrderId"] for o in sb.orders()])


# -- websockets -----------------------------------------------------------------------------
def test_websocket_streams():
    async def scenario(sb):
        ex = ccxt.pro.binance(sb.ccxt_options())
        try:
            ticker = await asyncio.wait_for(ex.watch_ticker(BTC), 5)
            assert ticker["symbol"] == BTC and ticker["last"] > 0
            quotes = await asyncio.wait_for(ex.watch_bids_asks([BTC]), 5)
            assert quotes[BTC]["bid"] < quotes[BTC]["ask"]
            trades = await asyncio.wait_for(ex.watch_trades(BTC), 5)
            assert trades[-1]["symbol"] == BTC and trades[-1]["amount"] > 0
            nonces = []
            for _ in range(3):
                book = await asyncio.wait_for(ex.watch_order_book(BTC), 5)
                nonces.append(book["nonce"])
                assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 50
            assert nonces == sorted(nonces) and len(set(nonces)) == 3
            # the book kept from REST snapshot + diffs matches the sandbox's own book
            sb.set_price(BTC, 40_000, 40_000.01)
            book = await asyncio.wait_for(ex.watch_order_book(BTC), 5)
            while book["bids"][0][0] != 40_000:
                book = await asyncio.wait_for(ex.watch_order_book(BTC), 5)
            assert book["asks"][0] == [40_000.01, 1.5] and len(book["asks"]) == 50
            # silenced streams send nothing, then resume
            sb.silence_streams(0.6)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ex.watch_bids_asks([BTC]), 0.3)
            assert (await asyncio.wait_for(ex.watch_bids_asks([BTC]), 5))[BTC]["bid"] == 40_000
            # a dropped connection: watches fail or wait, and ccxt reconnects
            connections = sb.stream_connections
            assert sb.drop_streams() >= 1
            deadline = time.monotonic() + 10
            errors = 0
            while sb.stream_connections <= connections and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(ex.watch_ticker(BTC), 2)
                except (TimeoutError, ccxt.NetworkError):
                    errors += 1
            ticker = await asyncio.wait_for(ex.watch_ticker(BTC), 5)
            assert sb.stream_connections > connections and ticker["last"] == 40_000.01
        finally:
            await ex.close()

    with ExchangeSandbox(seed=2, tick_interval=0.05) as sb:
        asyncio.run(scenario(sb))


def test_websocket_protocol_errors():
    import aiohttp

    async def scenario(sb):
        url = sb.url + "/stream?streams=btcusdt@bookTicker"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            first = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            assert first["stream"] == "btcusdt@bookTicker" and "b" in first["data"]
            for junk, code in (
                ("{nope", 3),
                ('{"method":"SUBSCRIBE","params":["x@y"],"id":7}', 2),
                ('{"method":"FLY","id":8}', 2),
            ):
                await ws.send_str(junk)
                while True:
                    msg = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                    if "error" in msg:
                        assert msg["error"]["code"] == code
                        break
            await ws.send_str('{"method":"LIST_SUBSCRIPTIONS","id":9}')
            while True:
                msg = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                if msg.get("id") == 9:
                    assert msg["result"] == ["btcusdt@bookTicker"]
                    break

    with ExchangeSandbox(seed=2, tick_interval=0.05) as sb:
        asyncio.run(scenario(sb))


# -- hostile input --------------------------------------------------------------------------
def test_hostile_input_gets_binance_errors(sb):
    key = {"X-MBX-APIKEY": sb.api_key}
    cases = [
        (("GET", "/api/v3/depth", "symbol=BTCUSDT&limit=abc"), 400, -1100),
        (("GET", "/api/v3/depth", "%%%&&==&symbol=%ZZ"), 400, -1121),
        (("GET", "/api/v3/depth", "symbol=BTCUSDT&symbol=ETHUSDT"), 400, -1101),
        (("GET", "/api/v3/klines", "symbol=BTCUSDT&interval=7m"), 400, -1120),
        (("GET", "/api/v3/klines", "symbol=BTCUSDT"), 400, -1102),
        (("GET", "/api/v3/nowhere", ""), 404, -1000),
        (("GET", "/api/v3/account", ""), 401, -2014),
        (("GET", "/api/v3/account", "timestamp=1", key), 400, -1102),  # no signature
        (("GET", "/api/v3/account", "timestamp=abc&signature=00", key), 400, -1100),
        (("GET", "/api/v3/account", f"timestamp={int(time.time() * 1000)}&signature=zz", key),
         400, -1022),
        (("POST", "/api/v3/order", "", {**key, "Content-Type": "application/json"},
          json.dumps({"symbol": "BTCUSDT", "timestamp": 1}).encode()), 400, -1102),
        (("POST", "/api/v3/order", "", {**key, "Content-Type": FORM}, b"a=" + b"x" * 200_000),
         413, -1101),
    ]  # fmt: skip
    for args, status, code in cases:
        method, path, query, *rest = args
        headers = rest[0] if rest else None
        body = rest[1] if len(rest) > 1 else None
        got_status, body_json, _ = raw(sb, method, path, query, body, headers)
        assert (got_status, body_json["code"]) == (status, code), (args[:3], body_json)
        assert isinstance(body_json["msg"], str)
    # a correctly signed order with a non-numeric quantity
    now = int(time.time() * 1000)
    query = signed_query(sb, symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                         quantity="1e-3", price="49000", timestamp=now)  # fmt: skip
    status, body_json, _ = raw(sb, "POST", "/api/v3/order", query, b"", key)
    assert (status, body_json["code"]) == (400, -1100)
    assert sb.orders() == []
    # still serving
    assert raw(sb, "GET", "/api/v3/ping")[:2] == (200, {})
