"""Notifications to a person: what the Informer agent sends, and how (no osBrain here).

:class:`Notifier` turns what happens in a deployment (order events, agents restarted or dead,
warnings and errors, the equity) into short messages chosen by :class:`Rules`, batches them,
and sends them through `Apprise <https://github.com/caronc/apprise>`_: one well-kept library
that speaks e-mail, Slack, Discord, Telegram, Matrix, ntfy, JSON webhooks and dozens more, so
no channel is hand-written here. Sending never blocks the caller (the Informer's handlers):
messages wait in a bounded queue that a worker thread empties, a failing or hanging channel is
retried with backoff and counted, and when the queue is full the newest messages are dropped
and counted (:meth:`Notifier.status`). Every text is scrubbed of the secrets it is given (a
token or API key never reaches a chat).
"""

from __future__ import annotations

import datetime
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from .brokers.base import OrderEvent
from .operator import PAUSED, STOPPED

__all__ = ["Notification", "Notifier", "Rules"]

#: messages in one send at most (a longer batch waits for the next)
BATCH_MAX = 50
#: seconds at most between two tries of a batch that keeps failing
MAX_BACKOFF = 60.0
#: what a rule can ask to be told
KINDS = ("fill", "rejection", "error", "restart", "death", "control", "drawdown", "daily_loss",
         "summary")  # fmt: skip


class Notification(NamedTuple):
    """One thing to tell: its ``kind`` (one of :data:`KINDS`), a one-line ``text``, and when
    (ns since the epoch)."""

    kind: str
    text: str
    time: int


@dataclass(frozen=True)
class Rules:
    """What is sent. ``fills``, ``rejections``, ``errors`` (the Logger's errors),
    ``restarts`` and ``deaths`` (of agents), ``controls`` (the operator's pause, resume,
    flatten, cancel and kill switch) switch those on or off; ``drawdown`` (a fraction:
    0.05 tells when the equity falls 5 % below its peak) and ``daily_loss`` (account currency
    lost since the day's first equity) are thresholds, told once each time they are crossed;
    ``summary_at`` (``'HH:MM'``) in ``summary_zone`` (an IANA zone) sends a daily summary.
    ``batch_seconds``: messages gathered into one send; ``max_per_minute``: sends per minute
    (the rest wait); ``queue_size``: messages waiting at most (the newest are dropped past it);
    ``retries`` / ``retry_backoff``: a failed send is tried again this many times, waiting
    ``retry_backoff`` seconds, doubled each time; then the batch waits, still first in line,
    and is tried again later (doubling, at most a minute apart): nothing is dropped until the
    queue behind it is full."""

    fills: bool = True
    rejections: bool = True
    errors: bool = True
    restarts: bool = True
    deaths: bool = True
    controls: bool = True
    drawdown: float | None = None
    daily_loss: float | None = None
    summary_at: str | None = None
    summary_zone: str = "UTC"
    batch_seconds: float = 5.0
    max_per_minute: int = 20
    queue_size: int = 1000
    retries: int = 3
    retry_backoff: float = 1.0

    def __post_init__(self) -> None:
        for name in ("fills", "rejections", "errors", "restarts", "deaths", "controls"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"rules {name}: expected True or False")
        if self.drawdown is not None and not _number(self.drawdown, 0.0, 1.0, strict=True):
            raise ValueError(
                f"rules drawdown: expected a fraction in (0, 1), got {self.drawdown!r}"
            )
        if self.daily_loss is not None and not _number(self.daily_loss, 0.0, math.inf, True):
            raise ValueError(f"rules daily_loss: expected an amount > 0, got {self.daily_loss!r}")
        if self.summary_at is not None:
            _clock_time(self.summary_at)
        try:
            ZoneInfo(self.summary_zone)
        except Exception:
            raise ValueError(f"rules summary_zone: unknown zone {self.summary_zone!r}") from None
        for name, low in (("batch_seconds", 0.0), ("retry_backoff", 0.0)):
            if not _number(getattr(self, name), low, math.inf, strict=False):
                raise ValueError(f"rules {name}: expected seconds >= 0")
        for name, low in (("max_per_minute", 1), ("queue_size", 1), ("retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"rules {name}: expected a whole number >= {low}")

    @classmethod
    def from_mapping(cls, rules: Mapping[str, Any] | None) -> Rules:
        """Rules from a mapping (``Architecture(..., informer={'rules': {...}})``); an
        unknown key is a :class:`ValueError` naming it."""
        given = dict(rules or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"rules: unknown key(s) {', '.join(unknown)}")
        return cls(**given)


def _number(value: Any, low: float, high: float, strict: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return low < value < high if strict else low <= value <= high


def _clock_time(text: Any) -> datetime.time:
    try:
        return datetime.time.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"rules summary_at: expected 'HH:MM', got {text!r}") from None


class Notifier:
    """See the module docstring. ``urls``: Apprise URLs (``'json://host/path'``,
    ``'mailto://...'``, ``'tgram://...'``); ``rules``: a :class:`Rules` or a mapping;
    ``secrets``: strings scrubbed from every text; ``send``: ``send(title, body) -> bool``
    replacing Apprise (tests, other channels); ``clock``: seconds since the epoch (tests)."""

    def __init__(
        self,
        urls: Iterable[str] = (),
        rules: Rules | Mapping[str, Any] | None = None,
        *,
        title: str = "osMarkets",
        secrets: Iterable[str] = (),
        send: Callable[[str, str], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules if isinstance(rules, Rules) else Rules.from_mapping(rules)
        self.title = title
        self._secrets = [s for s in secrets if s]
        self._clock = clock
        self._send = send if send is not None else _apprise_sender(list(urls))
        self._queue: queue.Queue[Notification] = queue.Queue(self.rules.queue_size)
        self._pending: list[Notification] = []  # this batch's, in the worker
        self._retry_at = 0.0  # (monotonic) a batch that failed is not tried before
        self._backoff = 0.0
        self._sending = 0  # messages of the send under way
        self._sends: list[float] = []  # times of the sends in the last minute
        self._lock = threading.Lock()
        self.sent = 0  # messages delivered (one send may carry several)
        self.sends = 0
        self.failures = 0  # failed attempts
        self.dropped = 0  # messages dropped: queue full, or retries exhausted
        self.last_error = ""
        self._peak = -math.inf
        self._day: tuple[datetime.date, float] | None = None  # (day, its first equity)
        self._told: set[str] = set()  # thresholds crossed and told, until they recover
        # the first summary is the next one to come: a deployment started after today's
        # summary time sends tomorrow's, not one of a day it did not see
        self._summary_day: datetime.date | None = None
        if self.rules.summary_at is not None and self.summary_due():
            self._summary_day = self._today(self._clock())
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._worker.start()

    # -- what happens ---------------------------------------------------------------------------
    def on_event(self, event: OrderEvent) -> None:
        """An order event of the Trader's: fills and rejections, as the rules say."""
        if event.kind == "filled" and self.rules.fills:
            why = f" ({event.reason})" if event.reason else ""
            self._put("fill", f"{event.brain or '?'}: {event.side} {event.size:g} {event.symbol}"
                              f" at {event.price:g}{why}")  # fmt: skip
        elif (
            event.kind == "rejected" and event.size > 0 and self.rules.rejections
            and event.reason not in (PAUSED, STOPPED)  # the operator's control was told
        ):  # fmt: skip
            self._put("rejection", f"{event.brain or '?'}: {event.side} {event.size:g} "
                                   f"{event.symbol} rejected: {event.reason}")  # fmt: skip

    def on_agent(self, name: str, what: str, detail: str = "") -> None:
        """An agent ``'restarted'`` or ``'died'`` (the Overmind's status feed)."""
        kind = {"restarted": "restart", "died": "death"}.get(what)
        if kind is None:
            raise ValueError(f"on_agent: expected 'restarted' or 'died', got {what!r}")
        if getattr(self.rules, kind + "s"):
            self._put(kind, f"agent {name} {what}" + (f": {detail}" if detail else ""))

    def on_control(self, text: str) -> None:
        """An operator's control (pause, resume, flatten, cancel, kill switch)."""
        if self.rules.controls:
            self._put("control", text)

    def on_log(self, level: str, line: str) -> None:
        """A line of the Logger's: errors are told, if the rules say so."""
        if level == "ERROR" and self.rules.errors:
            lines = [text for text in line.splitlines() if text.strip()] or [""]
            # a traceback: its first line says where, its last what was raised
            self._put("error", lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1].strip()}")

    def on_equity(self, equity: float, when: float | None = None) -> None:
        """The account's equity: the drawdown and daily-loss thresholds, told once per
        crossing (again only after the equity has come back above them)."""
        if not math.isfinite(equity):
            return
        now = self._clock() if when is None else when
        self._peak = max(self._peak, equity)
        today = self._today(now)
        if self._day is None or self._day[0] != today:
            self._day = (today, equity)
            self._told.discard("daily_loss")
        rules = self.rules
        if rules.drawdown is not None and self._peak > 0:
            fall = 1.0 - equity / self._peak
            self._threshold("drawdown", fall >= rules.drawdown,
                            f"drawdown {fall:.1%} from the peak {self._peak:,.2f} (equity "
                            f"{equity:,.2f})")  # fmt: skip
        if rules.daily_loss is not None:
            lost = self._day[1] - equity
            self._threshold("daily_loss", lost >= rules.daily_loss,
                            f"lost {lost:,.2f} today (equity {equity:,.2f})")  # fmt: skip

    def summary_due(self, now: float | None = None) -> bool:
        """Whether the daily summary is due (once a day, at ``summary_at`` or after; not on
        the day this Notifier started after that time)."""
        if self.rules.summary_at is None:
            return False
        now = self._clock() if now is None else now
        local = datetime.datetime.fromtimestamp(now, ZoneInfo(self.rules.summary_zone))
        due = local.time() >= _clock_time(self.rules.summary_at)
        return due and self._summary_day != local.date()

    def summary(self, text: str, now: float | None = None) -> None:
        """Send the daily summary (``text``: P&L per Brain, positions, orders, rejections)."""
        now = self._clock() if now is None else now
        self._summary_day = datetime.datetime.fromtimestamp(
            now, ZoneInfo(self.rules.summary_zone)
        ).date()
        self._put("summary", text)

    def send(self, kind: str, text: str) -> None:
        """Send ``text`` as a message of ``kind`` (one of :data:`KINDS`), whatever the rules."""
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        self._put(kind, str(text))

    def status(self) -> dict[str, Any]:
        """Counters: ``queued`` (waiting), ``sending`` (in the send under way), ``sent``,
        ``sends``, ``failures``, ``dropped`` and the ``last_error`` of a channel (scrubbed)."""
        with self._lock:
            return {"queued": self._queue.qsize() + len(self._pending),
                    "sending": self._sending, "sent": self.sent,
                    "sends": self.sends, "failures": self.failures, "dropped": self.dropped,
                    "last_error": self.last_error}  # fmt: skip

    def close(self, timeout: float = 2.0) -> None:
        """Send what is batched (waiting at most ``timeout``), then stop the worker."""
        self._stop.set()
        self._worker.join(timeout)

    # -- plumbing -------------------------------------------------------------------------------
    def _today(self, now: float) -> datetime.date:
        return datetime.datetime.fromtimestamp(now, ZoneInfo(self.rules.summary_zone)).date()

    def _threshold(self, name: str, crossed: bool, text: str) -> None:
        if crossed and name not in self._told:
            self._told.add(name)
            self._put(name, text)
        elif not crossed:
            self._told.discard(name)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _put(self, kind: str, text: str) -> None:
        note = Notification(kind, self._scrub(text)[:500], int(self._clock() * 1e9))
        try:
            self._queue.put_nowait(note)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _run(self) -> None:
        rules = self.rules
        while True:
            stopping = self._stop.is_set()
            notes: list[Notification] = []
            room = BATCH_MAX - len(self._pending)  # the rest waits in the bounded queue
            try:  # everything waiting joins the batch (a slow channel: fewer, fuller sends)
                if room > 0:
                    notes.append(self._queue.get(timeout=0.05))
                else:
                    self._stop.wait(0.05)
                while len(notes) < room:
                    notes.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if notes:
                with self._lock:
                    self._pending.extend(notes)
            waiting = time.monotonic() < self._retry_at and not stopping
            if self._pending and not waiting and (stopping or self._batch_due(rules)):
                self._flush(rules, stopping)
            if stopping and self._queue.empty() and not self._pending:
                return

    def _batch_due(self, rules: Rules) -> bool:
        first = self._pending[0].time / 1e9
        return self._clock() - first >= rules.batch_seconds or len(self._pending) >= BATCH_MAX

    def _flush(self, rules: Rules, stopping: bool) -> None:
        now = time.monotonic()
        self._sends = [t for t in self._sends if now - t < 60.0]
        if len(self._sends) >= rules.max_per_minute and not stopping:
            return  # rate limited: the batch waits (and grows)
        with self._lock:
            batch, self._pending = self._pending, []
            self._sending = len(batch)
        body = "\n".join(f"[{n.kind}] {n.text}" for n in batch)
        kinds = sorted({n.kind for n in batch})
        title = f"{self.title}: {', '.join(kinds)}"
        wait = rules.retry_backoff
        for attempt in range(rules.retries + 1):
            try:
                ok = bool(self._send(title, body))
                error = "" if ok else "the channel refused the message"
            except Exception as exc:  # a channel's failure never reaches the caller
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self._sends.append(time.monotonic())
            with self._lock:
                self.sends += 1
                if ok:
                    self.sent += len(batch)
                    self._sending = 0
                    self._backoff = 0.0
                    return
                self.failures += 1
                self.last_error = self._scrub(error)[:300]
            if attempt < rules.retries and not self._stop.wait(wait):
                wait *= 2
            elif attempt < rules.retries:
                continue  # stopping: try again at once
        with self._lock:
            self._sending = 0
            if stopping:  # no time left: lost, and counted
                self.dropped += len(batch)
                return
            # kept, ahead of what came since, and tried again later (doubling, at most a
            # minute apart): nothing is lost until the queue behind it is full
            self._pending[:0] = batch
            self._backoff = min(MAX_BACKOFF, max(self._backoff * 2, rules.retry_backoff, 0.5))
            self._retry_at = time.monotonic() + self._backoff


def _apprise_sender(urls: list[str]) -> Callable[[str, str], bool]:
    """``send(title, body)`` through Apprise to ``urls`` (a bad URL is a ValueError now)."""
    import apprise

    notifier = apprise.Apprise()
    for url in urls:
        if not notifier.add(url):
            raise ValueError("informer urls: Apprise cannot use one of them (check its scheme)")

    def send(title: str, body: str) -> bool:
        # plain text: one line per notification, and '<...>' kept (HTML would eat both)
        return bool(notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))

    return send
