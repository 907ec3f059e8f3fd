"""The sandbox speaks OANDA: same keys as the captured fixtures, status codes, headers."""

import re

import pytest
import requests
from oanda_support import TOKEN, load

from osmarkets.brokers.oanda import OandaSandbox

H = "oandapyV20/"
M = "mab05k_oanda-client/"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
def http(sandbox):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    base = f"{sandbox.rest_url}/v3/accounts/{sandbox.account_id}"

    def call(method, path, **kw):
        url = path if path.startswith("http") else base + path
        return session.request(method, url, timeout=5, **kw)

    yield call
    session.close()


def missing_keys(real: dict, ours: dict, path: str = "") -> list[str]:
    """Keys of the real capture absent from ours, recursively (dicts and first list items)."""
    out = []
    for key, value in real.items():
        if key not in ours:
            out.append(path + key)
        elif isinstance(value, dict) and isinstance(ours[key], dict):
            out += missing_keys(value, ours[key], f"{path}{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict) and ours[key]:
            out += missing_keys(value[0], ours[key][0], f"{path}{key}[].")
    return out


def market(http, units="100", **extra):
    order = {"type": "MARKET", "instrument": "EUR_USD", "units": units, **extra}
    return http("POST", "/orders", json={"order": order})


def test_summary_has_the_real_keys(http):
    body = http("GET", "/summary").json()
    assert missing_keys(load(M + "account_account_summary.json"), body) == []
    assert missing_keys(load(H + "account_summary.json"), body) == []
    assert isinstance(body["account"]["openTradeCount"], int)
    assert re.match(r"^\d+\.\d{4}$", body["account"]["balance"])


def test_accounts_and_instruments_keys(http, sandbox):
    r = http("GET", f"{sandbox.rest_url}/v3/accounts")
    assert missing_keys(load(M + "account_accounts.json"), r.json()) == []
    body = http("GET", "/instruments").json()
    real = load(M + "account_instruments.json")
    assert missing_keys(real, body) == []
    eur = next(i for i in body["instruments"] if i["name"] == "EUR_USD")
    real_eur = next(i for i in real["instruments"] if i["name"] == "EUR_USD")
    for key in ("pipLocation", "displayPrecision", "tradeUnitsPrecision", "minimumTradeSize"):
        assert eur[key] == real_eur[key]


def test_candles_shape(http, sandbox):
    r = http(
        "GET",
        f"{sandbox.rest_url}/v3/instruments/EUR_USD/candles",
        params={"granularity": "D", "price": "A", "count": 5},
    )
    body = r.json()
    assert missing_keys(load(M + "instrument_candles.json"), body) == []
    assert [c["complete"] for c in body["candles"]][-1] is False  # today's candle
    candle = body["candles"][0]
    assert TIME.match(candle["time"]) and isinstance(candle["volume"], int)
    assert set(candle) == {"complete", "volume", "time", "ask"}
    assert re.match(r"^\d+\.\d{5}$", candle["ask"]["o"])
    mid = http(
        "GET",
        f"{sandbox.rest_url}/v3/instruments/DE30_EUR/candles",
        params={"granularity": "M5", "count": 5},
    ).json()
    assert missing_keys(load(H + "candles_DE30_EUR_M5_mid.json"), mid) == []


@pytest.mark.parametrize(
    "params, message",
    [
        ({"granularity": "M3"}, "granularity"),
        ({"count": 5001}, "Maximum value for 'count'"),
        ({"price": "Q"}, "price"),
        ({"from": "yesterday"}, "from"),
        (
            {"from": "2020-01-01T00:00:00Z", "to": "2021-01-01T00:00:00Z", "granularity": "M1"},
            "Maximum value for 'count'",
        ),
    ],
)
def test_candles_bad_params_400(http, sandbox, params, message):
    r = http("GET", f"{sandbox.rest_url}/v3/instruments/EUR_USD/candles", params=params)
    assert r.status_code == 400 and message in r.json()["errorMessage"]


def test_pricing_shape(http):
    body = http("GET", "/pricing", params={"instruments": "EUR_USD"}).json()
    real = load(M + "pricing_pricing.json")
    missing = missing_keys(real, body)
    # unitsAvailable and quoteHomeConversionFactors are deprecated: not served
    assert [k for k in missing if "unitsAvailable" not in k and "quoteHome" not in k] == []
    assert TIME.match(body["prices"][0]["time"])


def test_market_fill_shape_and_headers(http, sandbox):
    r = market(http, clientExtensions={"id": "x1", "tag": "t"})
    assert r.status_code == 201
    assert r.headers["Content-Type"] == "application/json" and r.headers["RequestID"]
    assert r.headers["Location"].startswith(sandbox.rest_url + "/v3/accounts/")
    assert missing_keys(load(M + "order_market_order.json"), r.json()) == []
    fill = r.json()["orderFillTransaction"]
    assert fill["tradeOpened"]["tradeID"] == fill["id"] and fill["clientOrderID"] == "x1"
    assert isinstance(fill["userID"], int) and TIME.match(fill["time"])


def test_limit_create_and_cancel_shapes(http):
    order = {
        "type": "LIMIT",
        "instrument": "EUR_USD",
        "units": "-100",
        "price": "9.00000",
        "stopLossOnFill": {"timeInForce": "GTC", "price": "9.50000"},
        "clientExtensions": {"id": "myID", "comment": "c"},
    }
    r = http("POST", "/orders", json={"order": order})
    assert r.status_code == 201
    assert missing_keys(load(H + "order_create_limit_201.json"), r.json()) == []
    pending = http("GET", "/pendingOrders").json()
    assert missing_keys(load(H + "orders_pending.json"), pending) == []
    r = http("PUT", "/orders/@myID/cancel")
    assert r.status_code == 200
    assert missing_keys(load(H + "order_cancel_200.json"), r.json()) == []
    again = http("PUT", "/orders/@myID/cancel")
    assert again.status_code == 404 and again.json()["errorCode"] == "ORDER_DOESNT_EXIST"


def test_reject_and_cancel_shapes(http, sandbox):
    order = {
        "type": "MARKET_IF_TOUCHED",
        "instrument": "EUR_USD",
        "units": "101",
        "price": "1.33687666666666",
    }
    r = http("POST", "/orders", json={"order": order})
    assert r.status_code == 400
    real = load(M + "order_error_order_rejected.json")
    assert missing_keys(real, r.json()) == []
    assert r.json()["orderRejectTransaction"]["type"] == "MARKET_IF_TOUCHED_ORDER_REJECT"
    assert r.json()["errorCode"] == "PRICE_PRECISION_EXCEEDED"
    sandbox.reject_orders(1, "MARKET_HALTED")
    r = market(http, clientExtensions={"id": "id", "tag": "tag"})
    assert r.status_code == 201
    assert missing_keys(load(M + "order_error_market_halted.json"), r.json()) == []


def test_trades_and_positions_shapes(http):
    market(http, "10")
    assert (
        missing_keys(load(M + "trade_open_trades.json"), http("GET", "/openTrades").json()) == []
    )
    assert missing_keys(load(H + "trades_list.json"), http("GET", "/trades").json()) == []
    positions = http("GET", "/openPositions").json()
    assert missing_keys(load(M + "position_open_positions.json"), positions) == []
    assert missing_keys(load(H + "open_positions.json"), positions) == []
    since = http("GET", "/transactions/sinceid", params={"id": 1}).json()
    assert {"transactions", "lastTransactionID"} <= set(since)
    assert all(TIME.match(t["time"]) for t in since["transactions"])


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/nothing", 404),
        ("DELETE", "/summary", 405),
        ("POST", "/summary", 405),
        ("GET", "/orders/999", 404),
        ("GET", "/trades/999", 404),
    ],
)
def test_error_statuses(http, method, path, status):
    r = http(method, path)
    assert r.status_code == status and r.json()["errorMessage"]
    assert r.headers["Content-Type"] == "application/json"


def test_auth_errors(sandbox):
    url = f"{sandbox.rest_url}/v3/accounts/{sandbox.account_id}/summary"
    assert requests.get(url, timeout=5).status_code == 401
    r = requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401 and r.json() == {
        "errorMessage": "Insufficient authorization to perform request."
    }
    other = url.replace(sandbox.account_id, "101-004-0000000-009")
    r = requests.get(other, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert r.status_code == 403


def test_rate_limit_answers_429():
    with OandaSandbox(token=TOKEN, instruments=["EUR_USD"], rate_limit=3) as sb:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        codes = [s.get(f"{sb.rest_url}/v3/accounts", timeout=5).status_code for _ in range(8)]
        assert 429 in codes and codes[0] == 200


def test_bad_json_body_400(http):
    r = http("POST", "/orders", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_stream_headers_and_lines(sandbox):
    r = requests.get(
        f"{sandbox.stream_url}/v3/accounts/{sandbox.account_id}/pricing/stream",
        params={"instruments": "EUR_USD"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        stream=True,
        timeout=5,
    )
    try:
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Content-Type"] == "application/octet-stream"
        kinds = set()
        for line in r.iter_lines():
            assert line.strip()  # never a blank line
            kinds.add(__import__("json").loads(line)["type"])
            if kinds == {"PRICE", "HEARTBEAT"}:
                break
    finally:
        r.close()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"instruments": []}, "instruments"),
        ({"instruments": ["XXX_YYY"]}, "XXX_YYY"),
        ({"token": ""}, "token"),
        ({"heartbeat": 0}, "heartbeat"),
    ],
)
def test_sandbox_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        OandaSandbox(**kwargs)
