"""OANDA v20 REST client: one keep-alive ``requests.Session``, retries, rate limit, typed errors.

Why it looks the way it does:

- **Retries** with exponential backoff and jitter on connection errors, 429 and 5xx; never on
  401/403 (a wrong token is not going to get better) nor on other 4xx.
- **An order is placed at most once, and its answer is never a false reject.** An order's
  ``clientExtensions.id`` is the osMarkets client id, which OANDA keeps unique in an account
  (a second order with it is refused with ``CLIENT_ORDER_ID_ALREADY_EXISTS``). If the answer to
  ``POST .../orders`` is lost (read timeout, connection error, 5xx) the client looks the order
  up by ``@<client id>``; while OANDA does not know it, it sends it again (harmless: the id
  makes it idempotent) and looks again, until ``order_deadline`` seconds have passed
  (:class:`OrderStateUnknown` then: not a reject). ``CLIENT_ORDER_ID_ALREADY_EXISTS`` is
  answered with the current state of the order that holds the id, looked up the same way.
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
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import pandas as pd
import requests
import urllib3

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


DUPLICATE_CLIENT_ID = "CLIENT_ORDER_ID_ALREADY_EXISTS"


class Response(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]
    #: How an order answer was obtained: ``''`` OANDA's own answer; ``'lookup'`` the answer was
    #: lost and this one was rebuilt from the order found by its client id; ``'duplicate'``
    #: OANDA answered ``CLIENT_ORDER_ID_ALREADY_EXISTS`` at the first request of the call (the
    #: order had been placed before: a re-send) and this is that order's current state.
    recovered: str = ""


class OandaUnreachable(OandaConnectionError):
    """No connection could be made (refused, connect timeout, name resolution): the request
    never reached the server."""


class OrderStateUnknown(OandaConnectionError):
    """The answer to an order was lost and OANDA still did not know the order by its client id
    when ``order_deadline`` passed. The order may appear later (a request stuck in a queue) or
    never: it is *not* rejected. ``client_id`` names it; look it up again later."""

    def __init__(self, message: str, client_id: str) -> None:
        super().__init__(message)
        self.client_id = client_id


class OandaClient:
    """A thin, safe v20 REST client. Thread-safe; one instance per account is enough.

    ``rest_url`` / ``stream_url`` override the hosts of ``environment`` (the sandbox).
    ``timeout`` is ``(connect, read)`` seconds for REST calls. ``confirm_live`` (or the
    environment variable ``OSMARKETS_CONFIRM_LIVE=1``) is required before any order goes to
    the live environment. ``order_deadline``: seconds, from the first lost answer to an order,
    during which :meth:`create_order` keeps looking the order up (and re-sending it while OANDA
    does not know it) before it gives up with :class:`OrderStateUnknown`.
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
        order_deadline: float = 60.0,
    ) -> None:
        if environment not in ENVIRONMENTS:
            raise ValueError(f"environment: expected 'practice' or 'live', got {environment!r}")
        token = access_token if access_token is not None else os.environ.get("OANDA_ACCESS_TOKEN")
        if not token or not isinstance(token, str):
            raise ValueError("access_token: missing (pass it or set OANDA_ACCESS_TOKEN)")
        if max_retries < 0:
            raise ValueError(f"max_retries: expected >= 0, got {max_retries!r}")
        if not order_deadline >= 0:
            raise ValueError(f"order_deadline: expected seconds >= 0, got {order_deadline!r}")
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
        self.order_deadline = float(order_deadline)
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

    def _sleep_backoff(
        self, attempt: int, retry_after: str | None = None, until: float | None = None
    ) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.max_backoff, float(retry_after)))
        if until is not None:  # wake up in time for a last try before the deadline
            delay = min(delay, max(0.0, until - time.monotonic()))
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
                    klass = OandaUnreachable if _unsent(exc) else OandaConnectionError
                    raise klass(f"{what}: {reason}") from None
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
        """``POST .../orders`` safely: never a second order, never a false reject.

        Returns the 201 response, or the 400/404 one (a reject: the caller maps it), with
        :attr:`Response.recovered` saying whether it is OANDA's own answer or the order's state
        looked up by its client id (``clientExtensions.id``):

        - 429 (refused unprocessed) or no connection at all (:class:`OandaUnreachable`: the
          request never left): sent again after a backoff, at most ``max_retries`` times, then
          that error (the order is certainly not placed), unless an earlier answer was lost;
        - connection error, read timeout, 5xx (the order may or may not exist, now or later):
          the order is looked up by ``@<client id>``; found, its outcome is rebuilt from its
          transactions (``'lookup'``); not found, it is sent again, which is safe because OANDA
          refuses a second order with the same client id; and so on, with backoff, until
          ``order_deadline`` seconds after the first lost answer: then
          :class:`OrderStateUnknown` (never a reject);
        - 400 ``CLIENT_ORDER_ID_ALREADY_EXISTS`` (logged): the order holding the id is looked
          up, again until the deadline, and its current state returned (``'duplicate'`` when
          this call's first request got that answer, so the order was placed before this call;
          ``'lookup'`` when it is this call's own earlier request that placed it). If the order
          holding the id is not this one (another instrument, units, type or price: an id
          reused by another program or run), the 400 is returned: that is a true reject.

        An order without a client id cannot be looked up: a lost answer raises at once.
        """
        self.check_live_allowed()
        client_id = str((order.get("clientExtensions") or {}).get("id") or "")
        path = self._account_path("/orders")
        deadline: float | None = None  # set by the first lost answer
        attempt = 0
        while True:
            try:
                response = self.send(
                    "POST", path, json={"order": order}, retry=False, accept=(400, 404)
                )
            except (OandaRateLimited, OandaUnreachable):
                if deadline is None and attempt >= self.max_retries:
                    raise  # refused unprocessed or never sent, every time: not placed
            except OandaError as exc:
                lost = isinstance(exc, OandaConnectionError | OandaServerError)
                if not client_id or (deadline is None and not lost):
                    raise  # nothing to look it up by, or a plain refusal (401/403...)
                if deadline is None:
                    deadline = time.monotonic() + self.order_deadline
                log.warning("order %s: %s; looking it up by its client id", client_id, exc)
                found = self.find_order(client_id, order)
                if found is not None:
                    if found.status < 400:
                        log.warning("order %s was created despite the error", client_id)
                    return found._replace(recovered="lookup")
            else:
                if client_id and _error_code(response) == DUPLICATE_CLIENT_ID:
                    return self._resolve_duplicate(client_id, order, response, deadline)
                if response.status >= 400 and deadline is not None:
                    # a copy refused after an earlier answer was lost: that one may have landed
                    found = self.find_order(client_id, order, response)
                    if found is not None:
                        return found._replace(recovered="lookup")
                return response
            attempt += 1
            if deadline is not None and time.monotonic() >= deadline:
                raise OrderStateUnknown(
                    f"POST {path}: order {client_id}: answer lost and the order still unknown "
                    f"to OANDA after {self.order_deadline:g} s; not rejected, look it up later",
                    client_id,
                )
            self._sleep_backoff(attempt - 1, until=deadline)

    def _resolve_duplicate(
        self, client_id: str, order: dict[str, Any], refusal: Response, deadline: float | None
    ) -> Response:
        """OANDA answered ``CLIENT_ORDER_ID_ALREADY_EXISTS``: the state of the order holding
        the id, looked up until it is readable or the deadline passes."""
        placed_before = deadline is None  # no earlier request of this call may have placed it
        log.warning(
            "order %s: OANDA answered %s (%s); looking up the order that holds the id",
            client_id, DUPLICATE_CLIENT_ID,
            "a re-send of an order placed before" if placed_before else "a copy of this call's",
        )  # fmt: skip
        if deadline is None:
            deadline = time.monotonic() + self.order_deadline
        attempt = 0
        while True:
            found = self.find_order(client_id, order, refusal)
            if found is not None:
                if found.status >= 400:
                    return found  # another order holds the id: a true reject
                return found._replace(recovered="duplicate" if placed_before else "lookup")
            if time.monotonic() >= deadline:
                raise OrderStateUnknown(
                    f"order {client_id}: OANDA answered {DUPLICATE_CLIENT_ID} but the order "
                    f"could not be read within {self.order_deadline:g} s; not rejected",
                    client_id,
                )
            self._sleep_backoff(attempt, until=deadline)
            attempt += 1

    def find_order(
        self, client_id: str, request: Mapping[str, Any] | None = None,
        refusal: Response | None = None,
    ) -> Response | None:  # fmt: skip
        """The create-order answer of the order OANDA knows by ``client_id``, rebuilt from its
        transactions (201), or ``None`` while OANDA does not know it (or cannot be read: one
        attempt, no retries; the caller decides when to ask again).

        With ``request`` (the ``OrderRequest`` sent), an order that is not that one (another
        instrument, units, type or price) means the id was taken by another order: a 400
        ``CLIENT_ORDER_ID_ALREADY_EXISTS`` answer comes back (``refusal``, or one made up).
        """
        try:
            found = self.send("GET", self._account_path(f"/orders/@{client_id}"), retry=False)
        except OandaNotFound:
            return None
        except OandaError as exc:
            log.info("looking up order %s failed (%s); will ask again", client_id, exc)
            return None
        order = found.body.get("order") or {}
        if request is not None and not _same_order(request, order):
            log.error(
                "order %s: the client id is held by another order (OANDA order %s: %s %s "
                "units of %s); this order is refused as a duplicate client id",
                client_id, order.get("id"), order.get("type"), order.get("units"),
                order.get("instrument"),
            )  # fmt: skip
            if refusal is not None:
                return refusal
            message = f"the client id is held by another order ({order.get('id')})"
            return Response(400, {"errorCode": DUPLICATE_CLIENT_ID, "errorMessage": message}, {})
        body: dict[str, Any] = {"lastTransactionID": found.body.get("lastTransactionID")}
        try:
            body["orderCreateTransaction"] = self.transaction(str(order["id"]))
            for key, field in (
                ("orderFillTransaction", "fillingTransactionID"),
                ("orderCancelTransaction", "cancellingTransactionID"),
            ):
                if order.get(field):
                    body[key] = self.transaction(str(order[field]))
        except (OandaError, KeyError) as exc:
            log.info("reading order %s's transactions failed (%s); will ask again", client_id, exc)
            return None
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


def _unsent(exc: requests.RequestException) -> bool:
    """Whether a request failed before any byte of it could reach the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _error_code(response: Response) -> str:
    """The reject reason of a 400/404 order answer ('' for a 2xx)."""
    if response.status < 400:
        return ""
    body = response.body
    reject = body.get("orderRejectTransaction") or {}
    return str(body.get("errorCode") or reject.get("rejectReason") or "")


def _same_number(a: Any, b: Any) -> bool:
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except InvalidOperation:
        return False


def _same_order(request: Mapping[str, Any], order: Mapping[str, Any]) -> bool:
    """Whether the order OANDA holds is the one ``request`` asked for (type, instrument,
    units, price): a client id reused for another order is not mistaken for a re-send."""
    if str(order.get("type", "")) != str(request.get("type", "MARKET")):
        return False
    if order.get("instrument") != request.get("instrument"):
        return False
    return all(
        _same_number(request[key], order.get(key)) for key in ("units", "price") if key in request
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
