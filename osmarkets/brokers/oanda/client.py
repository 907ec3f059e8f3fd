"""OANDA v20 REST client: one keep-alive ``requests.Session``, retries, rate limit, typed errors.

Why it looks the way it does:

- **Retries** with exponential backoff and jitter on connection errors, 429 and 5xx; never on
  401/403 (a wrong token is not going to get better) nor on other 4xx.
- **Orders are never blindly re-sent.** An order's ``clientExtensions.id`` is the osMarkets
  client id; if the answer to ``POST .../orders`` is lost (connection error, 5xx) the client
  first looks the order up by ``@<client id>`` and only re-sends when OANDA does not know it.
- **A client-side rate limit** (default 100 requests/s, under OANDA's 120/s per IP).
- **The token** lives in a private object whose ``repr`` is masked and is attached per request
  by a ``requests`` auth hook; it is not in the session headers, reprs, logs or exceptions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pandas as pd
import requests

from ...data.timeframes import BarSeriesID, Timeframe
from ...data.types import to_ns
from .errors import (
    LiveTradingNotConfirmed,
    OandaConnectionError,
    OandaError,
    OandaNotFound,
    OandaRateLimited,
    OandaServerError,
)
from .instruments import Instrument, parse_instruments
from .parsers import (
    OANDA_GRANULARITIES,
    Price,
    candles_to_frame,
    format_time,
    parse_price,
    parse_time,
)

log = logging.getLogger(__name__)

ENVIRONMENTS = {
    "practice": ("https://api-fxpractice.oanda.com", "https://stream-fxpractice.oanda.com"),
    "live": ("https://api-fxtrade.oanda.com", "https://stream-fxtrade.oanda.com"),
}
MAX_CANDLES = 5000
PRICE_COMPONENTS = ("M", "B", "A", "BA", "MB", "MA", "MBA")
CONFIRM_LIVE_ENV = "OSMARKETS_CONFIRM_LIVE"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _Secret:
    """Holds the access token; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<token hidden>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("the access token cannot be pickled")


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, secret: _Secret) -> None:
        self._secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._secret.reveal()}"
        return request

    def __repr__(self) -> str:
        return "<bearer auth, token hidden>"


class RateLimiter:
    """At most ``rate`` calls per second, spaced evenly; thread-safe."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit: expected requests per second > 0, got {rate!r}")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class Response(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


class OandaClient:
    """A thin, safe v20 REST client. Thread-safe; one instance per account is enough.

    ``rest_url`` / ``stream_url`` override the hosts of ``environment`` (the sandbox).
    ``timeout`` is ``(connect, read)`` seconds for REST calls. ``confirm_live`` (or the
    environment variable ``OSMARKETS_CONFIRM_LIVE=1``) is required before any order goes to
    the live environment.
    """

    def __init__(
        self,
        access_token: str | None = None,
        account_id: str | None = None,
        environment: str = "practice",
        *,
        rest_url: str | None = None,
        stream_url: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        rate_limit: float = 100.0,
        confirm_live: bool = False,
    ) -> None:
        if environment not in ENVIRONMENTS:
            raise ValueError(f"environment: expected 'practice' or 'live', got {environment!r}")
        token = access_token if access_token is not None else os.environ.get("OANDA_ACCESS_TOKEN")
        if not token or not isinstance(token, str):
            raise ValueError("access_token: missing (pass it or set OANDA_ACCESS_TOKEN)")
        if max_retries < 0:
            raise ValueError(f"max_retries: expected >= 0, got {max_retries!r}")
        self.environment = environment
        self.account_id = account_id
        default_rest, default_stream = ENVIRONMENTS[environment]
        self.rest_url = (rest_url or default_rest).rstrip("/")
        self.stream_url = (stream_url or default_stream).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.confirm_live = confirm_live
        self._token = _Secret(token)
        self._limiter = RateLimiter(rate_limit)
        self._session = requests.Session()
        self._session.auth = _BearerAuth(self._token)
        self._session.headers.update(
            {"Content-Type": "application/json", "Accept-Datetime-Format": "RFC3339"}
        )
        self._instruments: dict[str, Instrument] | None = None
        self._instruments_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"OandaClient(environment={self.environment!r}, account_id={self.account_id!r}, "
            f"rest_url={self.rest_url!r})"
        )

    def __enter__(self) -> OandaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- low level -------------------------------------------------------------------------
    def _account_path(self, suffix: str = "") -> str:
        if not self.account_id:
            raise ValueError("account_id: this call needs an account id")
        return f"/v3/accounts/{self.account_id}{suffix}"

    def _sleep_backoff(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.max_backoff, float(retry_after)))
        time.sleep(delay)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token.reveal(), "<token hidden>")

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        retry: bool = True,
        accept: tuple[int, ...] = (),
    ) -> Response:
        """One REST call with retries; returns the 2xx (or ``accept``-ed) response.

        Other statuses raise the matching :class:`OandaError` subclass. With ``retry=False``
        a connection error, 429 or 5xx raises at once (the order path decides itself).
        """
        what = f"{method} {path}"
        url = self.rest_url + path
        attempts = self.max_retries + 1 if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            self._limiter.wait()
            try:
                raw = self._session.request(
                    method, url, params=params, json=json, timeout=self.timeout
                )
            except requests.RequestException as exc:
                reason = self._scrub(f"{type(exc).__name__}: {exc}")
                if last:
                    raise OandaConnectionError(f"{what}: {reason}") from None
                log.warning("%s failed (%s); retrying", what, reason)
                self._sleep_backoff(attempt)
                continue
            body = _json_body(raw)
            if raw.status_code < 300 or raw.status_code in accept:
                return Response(raw.status_code, body, raw.headers)
            if raw.status_code in _RETRY_STATUSES and not last:
                log.warning("%s answered HTTP %s; retrying", what, raw.status_code)
                self._sleep_backoff(attempt, raw.headers.get("Retry-After"))
                continue
            raise OandaError.from_response(raw.status_code, body, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.send("GET", path, params=params or None).body

    def open_stream(self, path: str, params: Mapping[str, Any], read_timeout: float) -> Any:
        """Open a streaming GET on the stream host; the caller iterates and closes it.

        ``read_timeout`` is the longest silence tolerated between two reads.
        """
        self._limiter.wait()
        try:
            raw = self._session.get(
                self.stream_url + path,
                params=params,
                stream=True,
                timeout=(self.timeout[0], read_timeout),
            )
        except requests.RequestException as exc:
            reason = self._scrub(f"{type(exc).__name__}: {exc}")
            raise OandaConnectionError(f"GET {path} (stream): {reason}") from None
        if raw.status_code != 200:
            body = _json_body(raw)
            raw.close()
            raise OandaError.from_response(raw.status_code, body, f"GET {path} (stream)")
        return raw

    # -- instruments -----------------------------------------------------------------------
    def instruments(self) -> dict[str, Instrument]:
        """Every tradeable instrument of the account, fetched once and cached."""
        with self._instruments_lock:
            if self._instruments is None:
                self._instruments = parse_instruments(self.get(self._account_path("/instruments")))
            return self._instruments

    def instrument(self, name: str) -> Instrument:
        try:
            return self.instruments()[name]
        except KeyError:
            raise ValueError(f"instrument: {name!r} is not tradeable on this account") from None

    # -- history ---------------------------------------------------------------------------
    def candles(
        self,
        instrument: str,
        granularity: Any = "M1",
        *,
        price: str = "M",
        start: Any = None,
        end: Any = None,
        count: int | None = None,
        include_first: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One raw ``GET /v3/instruments/{i}/candles`` page (at most 5000 candles)."""
        params: dict[str, Any] = {
            "granularity": oanda_granularity(granularity),
            "price": _price_component(price),
        }
        if start is not None:
            params["from"] = format_time(to_ns(start))
            params["includeFirst"] = "true" if include_first else "false"
        if end is not None:
            params["to"] = format_time(to_ns(end))
        if count is not None:
            if not 0 < count <= MAX_CANDLES:
                raise ValueError(f"count: expected 1..{MAX_CANDLES}, got {count!r}")
            params["count"] = count
        params.update(extra or {})
        return self.get(f"/v3/instruments/{instrument}/candles", **params)

    def history(
        self,
        instrument: str,
        granularity: Any,
        start: Any,
        end: Any = None,
        *,
        price: str = "M",
        progress: Callable[[float], None] | None = None,
    ) -> pd.DataFrame:
        """Completed candles with open time in ``[start, end)`` as one bar DataFrame.

        Pages of at most 5000 candles are requested from ``start`` onwards (``from`` +
        ``count``, each page resuming after the last candle), so any range and any
        granularity work; the incomplete candle is excluded. ``progress(fraction)`` is called
        after each page.
        """
        start_ns = to_ns(start)
        end_ns = to_ns(end) if end is not None else time.time_ns()
        if end_ns <= start_ns:
            raise ValueError("history: end must be after start")
        frames: list[pd.DataFrame] = []
        cursor, include_first = start_ns, True
        while cursor < end_ns:
            page = self.candles(
                instrument,
                granularity,
                price=price,
                start=cursor,
                count=MAX_CANDLES,
                include_first=include_first,
            )
            raw = page.get("candles") or []
            frame = candles_to_frame(raw)
            stamps = frame.index.asi8  # type: ignore[attr-defined]
            frame = frame[(stamps >= start_ns) & (stamps < end_ns)]
            if len(frame):
                frames.append(frame)
            times = [parse_time(c["time"]) for c in raw if c.get("complete", True)]
            finished = (
                not times
                or len(raw) < MAX_CANDLES
                or times[-1] >= end_ns
                or not raw[-1].get("complete", True)
                or times[-1] <= cursor
                and not include_first
            )
            if progress is not None:
                done = 1.0 if finished else (times[-1] - start_ns) / (end_ns - start_ns)
                progress(min(1.0, max(0.0, done)))
            if finished:
                break
            cursor, include_first = times[-1], False
        if not frames:
            return candles_to_frame([])
        result = pd.concat(frames)
        return result[~result.index.duplicated(keep="first")]

    def history_for(self, bsid: Any, start: Any, end: Any = None, price: str = "BA") -> Any:
        """:meth:`history` for a :class:`BarSeriesID` (the Router's backfill helper)."""
        bsid = BarSeriesID.parse(bsid)
        return self.history(bsid.symbol, bsid.timeframe, start, end, price=price)

    # -- prices ----------------------------------------------------------------------------
    def prices(self, instruments: list[str]) -> list[Price]:
        """Current prices (``GET .../pricing``), non-tradeable ones flagged."""
        body = self.get(self._account_path("/pricing"), instruments=",".join(instruments))
        return [parse_price(p) for p in body.get("prices", [])]

    # -- account ---------------------------------------------------------------------------
    def account_summary(self) -> dict[str, Any]:
        return self.get(self._account_path("/summary"))

    def open_positions(self) -> dict[str, Any]:
        return self.get(self._account_path("/openPositions"))

    def position(self, instrument: str) -> dict[str, Any] | None:
        try:
            return self.get(self._account_path(f"/positions/{instrument}"))
        except OandaNotFound:
            return None

    def open_trades(self) -> dict[str, Any]:
        return self.get(self._account_path("/openTrades"))

    def pending_orders(self) -> dict[str, Any]:
        return self.get(self._account_path("/pendingOrders"))

    def order(self, specifier: str) -> dict[str, Any] | None:
        """``GET .../orders/{id or @clientID}``; ``None`` when OANDA does not know it."""
        try:
            return self.get(self._account_path(f"/orders/{specifier}"))
        except OandaNotFound:
            return None

    def transaction(self, transaction_id: str) -> dict[str, Any]:
        return self.get(self._account_path(f"/transactions/{transaction_id}"))["transaction"]

    def transactions_since(self, transaction_id: str) -> dict[str, Any]:
        return self.get(self._account_path("/transactions/sinceid"), id=transaction_id)

    # -- orders ----------------------------------------------------------------------------
    def check_live_allowed(self) -> None:
        if self.environment == "live" and not (
            self.confirm_live or os.environ.get(CONFIRM_LIVE_ENV) == "1"
        ):
            raise LiveTradingNotConfirmed(
                "refusing to send an order to the LIVE environment: pass confirm_live=True "
                f"or set {CONFIRM_LIVE_ENV}=1"
            )

    def create_order(self, order: dict[str, Any]) -> Response:
        """``POST .../orders`` safely: a lost answer never becomes a second order.

        Returns the 201 response, or the 400/404 one (a reject: the caller maps it). On a
        connection error or 5xx the order is looked up by its client id: if OANDA has it, its
        outcome is rebuilt from the account's transactions instead of re-sending; a 429 means
        the request was refused unprocessed, so it is simply re-sent after a backoff.
        """
        self.check_live_allowed()
        client_id = (order.get("clientExtensions") or {}).get("id")
        path = self._account_path("/orders")
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                return self.send(
                    "POST", path, json={"order": order}, retry=False, accept=(400, 404)
                )
            except OandaRateLimited:
                if last:
                    raise
            except (OandaConnectionError, OandaServerError):
                if not client_id:
                    raise  # nothing to look it up by: re-sending could duplicate it
                if last:
                    raise
                found = self._recover_order(client_id)
                if found is not None:
                    log.warning(
                        "order %s was created despite the error; not re-sending", client_id
                    )
                    return found
            self._sleep_backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _recover_order(self, client_id: str) -> Response | None:
        """Rebuild the create-order answer for an order OANDA already has, else ``None``."""
        for attempt in range(self.max_retries + 1):
            try:
                found = self.order(f"@{client_id}")
                break
            except (OandaConnectionError, OandaServerError, OandaRateLimited):
                if attempt == self.max_retries:
                    raise
                self._sleep_backoff(attempt)
        if found is None:
            return None
        order = found["order"]
        body: dict[str, Any] = {"lastTransactionID": found.get("lastTransactionID")}
        body["orderCreateTransaction"] = self.transaction(order["id"])
        if order.get("fillingTransactionID"):
            body["orderFillTransaction"] = self.transaction(order["fillingTransactionID"])
        if order.get("cancellingTransactionID"):
            body["orderCancelTransaction"] = self.transaction(order["cancellingTransactionID"])
        return Response(201, body, {})

    def cancel_order(self, specifier: str) -> Response:
        """``PUT .../orders/{spec}/cancel``; returns the 200 or 404 response."""
        return self.send("PUT", self._account_path(f"/orders/{specifier}/cancel"), accept=(404,))

    def close_trade(self, trade_id: str, units: str = "ALL") -> Response:
        self.check_live_allowed()
        return self.send(
            "PUT",
            self._account_path(f"/trades/{trade_id}/close"),
            json={"units": units},
            retry=False,
            accept=(400, 404),
        )


def _json_body(raw: requests.Response) -> dict[str, Any]:
    try:
        body = raw.json()
    except ValueError:
        return {"errorMessage": raw.text[:200]} if raw.text else {}
    return body if isinstance(body, dict) else {"value": body}


def oanda_granularity(value: Any) -> str:
    """OANDA's granularity code for a code, ``(size, unit)``, Timeframe or BarSeriesID."""
    if isinstance(value, BarSeriesID) or (isinstance(value, tuple | list) and len(value) == 3):
        value = BarSeriesID.parse(value).timeframe
    code = Timeframe.parse(value).code
    if code not in OANDA_GRANULARITIES:
        raise ValueError(
            f"granularity: OANDA has no {code} candles (use one of "
            f"{' '.join(OANDA_GRANULARITIES)})"
        )
    return code


def _price_component(price: str) -> str:
    if price not in PRICE_COMPONENTS:
        raise ValueError(f"price: expected one of {', '.join(PRICE_COMPONENTS)}, got {price!r}")
    return price
