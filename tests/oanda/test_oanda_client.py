"""The client against the local sandbox: history, retries, errors, token hygiene."""

import logging
import pickle
import socket

import pandas as pd
import pytest
import requests
from oanda_support import TOKEN

from osmarkets.brokers.oanda import (
    LiveTradingNotConfirmed,
    OandaAuthError,
    OandaClient,
    OandaConnectionError,
    OandaError,
    OandaServerError,
)
from osmarkets.brokers.oanda.client import (
    MAX_CANDLES,
    OandaUnreachable,
    OrderStateUnknown,
    oanda_granularity,
)


def test_instruments_loaded_once(sandbox, client):
    before = sandbox.requests
    first = client.instruments()
    assert client.instruments() is first
    assert sandbox.requests == before + 1
    assert first["USD_JPY"].display_precision == 3


def test_history_paginates_over_5000_candles(sandbox, client):
    pages = []
    start, end = pd.Timestamp("2024-03-04", tz="UTC"), pd.Timestamp("2024-03-13", tz="UTC")
    frame = client.history("EUR_USD", "M1", start, end, price="BA", progress=pages.append)
    assert len(pages) >= 3 and pages[-1] == 1.0
    assert pages == sorted(pages)
    assert frame.index.is_unique and frame.index.is_monotonic_increasing
    assert frame.index[0] >= start and frame.index[-1] < end
    # no minute missing outside the simulated weekend
    gaps = frame.index.to_series().diff().dropna()
    assert (gaps == pd.Timedelta(minutes=1)).sum() >= len(frame) - 3
    assert len(frame) > MAX_CANDLES
    assert (frame["bid_close"] < frame["ask_close"]).all()
    assert frame["close"].to_numpy() == pytest.approx(
        ((frame["bid_close"] + frame["ask_close"]) / 2).to_numpy()
    )


def test_history_same_range_is_deterministic(client):
    a = client.history("USD_JPY", "H1", "2023-01-02", "2023-01-05")
    b = client.history("USD_JPY", "H1", "2023-01-02", "2023-01-05")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["open", "high", "low", "close", "volume"]
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all()


def test_history_excludes_incomplete_candle(client):
    frame = client.history("EUR_USD", "D", pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10))
    assert frame.index[-1] <= pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1)


@pytest.mark.parametrize("gran", ["S5", "M15", "H4", "D", "W", "M", ("EUR_USD", 1, "Hours")])
def test_history_any_granularity(client, gran):
    tf = oanda_granularity(gran)
    start = pd.Timestamp("2020-01-01", tz="UTC")
    end = start + {"S5": pd.Timedelta(hours=1), "M15": pd.Timedelta(days=3)}.get(
        tf, pd.Timedelta(days=400)
    )
    frame = client.history("EUR_USD", tf, start, end)
    assert len(frame) > 5 and frame.index.is_monotonic_increasing


def test_bad_granularity_and_price_named(client):
    with pytest.raises(ValueError, match="granularity"):
        client.history("EUR_USD", "M3", "2020-01-01", "2020-01-02")
    with pytest.raises(ValueError, match="price"):
        client.history("EUR_USD", "M1", "2020-01-01", "2020-01-02", price="X")
    with pytest.raises(ValueError, match="end"):
        client.history("EUR_USD", "M1", "2020-01-02", "2020-01-01")


def test_unknown_instrument_is_a_clear_error(client):
    with pytest.raises(OandaError, match="instrument") as info:
        client.candles("NOPE_USD", "M1", count=5)
    assert info.value.status == 400


def test_wrong_token_fails_fast_and_clearly(sandbox):
    wrong = OandaClient("wrong-token", sandbox.account_id, rest_url=sandbox.rest_url, backoff=0.01)
    before = sandbox.requests
    with pytest.raises(OandaAuthError, match="401") as info:
        wrong.account_summary()
    assert sandbox.requests == before + 1  # not retried
    assert "Insufficient authorization" in str(info.value)


def test_forbidden_account(sandbox):
    other = OandaClient(TOKEN, "101-004-9999999-001", rest_url=sandbox.rest_url)
    with pytest.raises(OandaAuthError, match="403"):
        other.account_summary()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_bursts_are_retried(sandbox, client, status):
    sandbox.fail_requests(3, status=status)
    before = sandbox.requests
    body = client.account_summary()
    assert body["account"]["id"] == sandbox.account_id
    assert sandbox.requests == before + 4


def test_retries_are_bounded(sandbox, client):
    sandbox.fail_requests(50, status=500)
    with pytest.raises(OandaServerError, match="500"):
        client.account_summary()
    assert sandbox.requests <= client.max_retries + 2


def test_connection_refused_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = OandaClient(TOKEN, "x", rest_url=f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01)
    with pytest.raises(OandaConnectionError) as info:
        c.account_summary()
    assert TOKEN not in str(info.value)


def test_an_order_that_never_left_is_not_looked_up_and_not_unknown():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = OandaClient(TOKEN, "x", rest_url=f"http://127.0.0.1:{port}", max_retries=2,
                    backoff=0.01, order_deadline=30.0)  # fmt: skip
    order = {"type": "MARKET", "instrument": "EUR_USD", "units": "1",
             "clientExtensions": {"id": "never-1"}}  # fmt: skip
    with pytest.raises(OandaUnreachable) as info:  # no connection: certainly not placed
        c.create_order(order)
    assert not isinstance(info.value, OrderStateUnknown)


def test_token_never_shown(sandbox, client, caplog):
    caplog.set_level(logging.DEBUG)
    assert TOKEN not in repr(client) and TOKEN not in str(vars(client))
    assert TOKEN not in repr(client._session.auth) and TOKEN not in str(client._session.headers)
    sandbox.fail_requests(2, status=500)
    client.account_summary()
    wrong = OandaClient("x" + TOKEN, sandbox.account_id, rest_url=sandbox.rest_url)
    with pytest.raises(OandaAuthError) as info:
        wrong.account_summary()
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.body)
    assert TOKEN not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(client._token)


def test_token_from_environment(monkeypatch, sandbox):
    monkeypatch.setenv("OANDA_ACCESS_TOKEN", TOKEN)
    c = OandaClient(account_id=sandbox.account_id, rest_url=sandbox.rest_url)
    assert c.account_summary()["account"]["id"] == sandbox.account_id
    monkeypatch.delenv("OANDA_ACCESS_TOKEN")
    with pytest.raises(ValueError, match="access_token"):
        OandaClient(account_id="x")


def test_live_orders_need_confirmation(monkeypatch, sandbox):
    monkeypatch.delenv("OSMARKETS_CONFIRM_LIVE", raising=False)
    live = OandaClient(TOKEN, sandbox.account_id, "live", rest_url=sandbox.rest_url)
    assert live.stream_url == "https://stream-fxtrade.oanda.com"
    before = sandbox.requests
    with pytest.raises(LiveTradingNotConfirmed, match="OSMARKETS_CONFIRM_LIVE"):
        live.create_order({"type": "MARKET", "instrument": "EUR_USD", "units": "1"})
    assert sandbox.requests == before  # nothing sent
    monkeypatch.setenv("OSMARKETS_CONFIRM_LIVE", "1")
    assert (
        live.create_order({"type": "MARKET", "instrument": "EUR_USD", "units": "1"}).status == 201
    )
    confirmed = OandaClient(
        TOKEN, sandbox.account_id, "live", rest_url=sandbox.rest_url, confirm_live=True
    )
    monkeypatch.delenv("OSMARKETS_CONFIRM_LIVE")
    confirmed.check_live_allowed()


def test_environment_hosts():
    practice = OandaClient(TOKEN)
    assert practice.rest_url == "https://api-fxpractice.oanda.com"
    assert practice.stream_url == "https://stream-fxpractice.oanda.com"
    with pytest.raises(ValueError, match="environment"):
        OandaClient(TOKEN, environment="demo")


def test_requests_send_rfc3339_and_bearer(sandbox, client):
    seen = {}

    def hook(response, *args, **kwargs):
        seen.update(response.request.headers)

    client._session.hooks["response"].append(hook)
    client.candles("EUR_USD", "M1", start="2024-01-02", count=2)
    assert seen["Authorization"] == f"Bearer {TOKEN}"
    assert seen["Accept-Datetime-Format"] == "RFC3339"


def test_keep_alive_reuses_the_connection(sandbox, client):
    before = sandbox.rest_connections
    for _ in range(5):
        client.account_summary()
    assert sandbox.rest_connections == before + 1


def test_sandbox_json_is_plain_requests_compatible(sandbox):
    r = requests.get(
        f"{sandbox.rest_url}/v3/accounts", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["RequestID"].isdigit()
