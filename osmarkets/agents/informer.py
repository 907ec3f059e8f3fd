"""The Informer: tells a person what matters, through Apprise (:mod:`osmarkets.notify`).

It only listens, to three sources that never wait for it:

* the Trader's order events and account, read twice a second (:meth:`TraderAgent.observed_since
  <osmarkets.agents.TraderAgent.observed_since>`: the events after the last one it saw):
  fills, rejections, the equity (drawdown and daily-loss thresholds), and what the daily
  summary adds up (fills, P&L and positions per Brain, orders, rejections). Not the Trader's
  ``observers`` feed, which carries an update per tick while a position is held: a message each
  for the Informer cost the trading path up to 10 % (``benchmarks/bench_observers.py``), two
  calls a second cost it nothing measurable;
* the Overmind's status feed (:data:`wire.STATUS`): an agent restarted (its ``restarts`` went
  up) or dead and not restarted;
* the Logger's ``alerts`` PUB: warnings and errors, one line each (errors are told; the
  Trader's ``operator: ...`` lines, the operator's controls, too).

Each message is decoded with its schema, a malformed one is dropped and counted. The sending
happens in the :class:`~osmarkets.notify.Notifier`'s own thread, so a slow or failing channel
never holds this agent's loop, let alone trading. The Apprise URLs (which hold the channels'
tokens) reach this process as a secret: not in the configuration a proxy can read, and every
text sent is scrubbed of them.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from osbrain.address import AgentAddress

from .. import wire
from ..brokers.base import OrderEvent
from ..notify import Notifier
from ..operator import LOG_PREFIX
from .base import OsmAgent

_STATUS = wire.Decoder(wire.STATUS)
#: a Trader's operator line, as the Logger publishes it: ``[time] (trader): operator: ...``
_CONTROL = re.compile(r"^\[[^\]]*\] \(trader\): " + re.escape(LOG_PREFIX) + r"(.*)$", re.S)
SUMMARY_CHECK = 10.0  # seconds between two looks at the clock for the daily summary
POLL_TRADER = 0.5  # seconds between two reads of the Trader's new order events


def url_secrets(urls: list[str]) -> list[str]:
    """The parts of Apprise URLs that may be secret, longest first, for scrubbing: each URL,
    its user, password, host and port parts as written (a Telegram bot token is
    ``tgram://123456:AAH.../``: what a URL parser takes for a host and a port), its path
    segments and query values, each also percent-decoded. The password always; other parts
    from 6 characters (shorter ones would blank common words)."""
    parts: set[str] = set()
    always: set[str] = set()
    for url in urls:
        parts.add(url)
        _scheme, _, rest = url.partition("://")
        netloc, _, tail = rest.partition("/")
        path, _, query = tail.partition("?")
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        if password:
            always.update({password, unquote(password)})
        parts.update((user, *hostport.split(":"), *path.split("/")))
        parts.update(value for _, value in parse_qsl(query))
        parts.update(pair.partition("=")[2] for pair in query.split("&"))  # as written
    parts.update(unquote(p) for p in list(parts))
    found = {p for p in parts if len(p) >= 6} | {p for p in always if p}
    return sorted(found, key=len, reverse=True)


class InformerAgent(OsmAgent):
    """Configuration (``osm_cfg``): ``rules`` (a mapping, :class:`~osmarkets.notify.Rules`),
    ``nsaddr`` (the name server: the Trader is read through its proxy), ``status_feed`` and
    ``logger_alerts`` (the feeds' addresses), the deployment's ``transport``; secret:
    ``informer_urls``."""

    def osm_setup(self) -> None:
        cfg = self.osm_cfg
        urls = list(self.osm_secrets.get("informer_urls") or [])
        self.notifier = Notifier(urls, cfg.get("rules"), title=str(cfg.get("title", "osMarkets")),
                                 secrets=url_secrets(urls))  # fmt: skip
        self.updates = 0  # reads of the Trader that brought order events
        self.update_gaps = 0  # reads that found events missed (see TraderAgent.observed_since)
        self.trader_unreachable = 0
        self._trader: Any = None
        self.statuses = 0
        self.alerts = 0
        self._update_seq: int | None = None  # None: from the Trader's next event on
        self._trader_pid: int | None = None  # a new one: a restarted Trader, read from 0
        self._pnl_base: dict[str, float] | None = None  # each Brain's P&L at the last summary
        self._restarts: dict[str, int] = {}  # agent -> restarts seen
        self._dead: set[tuple[str, Any]] = set()  # (agent, pid) told dead
        self._fills: dict[str, int] = {}  # Brain -> fills since the last summary
        self._orders: dict[str, int] = {}  # Brain -> orders accepted since the last summary
        self._rejections: dict[str, int] = {}
        self._account: dict[str, Any] = {}
        transport = cfg.get("transport", "ipc")
        for alias, key, handler in (
            ("status", "status_feed", self.osm_on_status),
            ("alerts", "logger_alerts", self.osm_on_alert),
        ):
            url = cfg.get(key)
            if url:
                address = str(url).partition("://")[2]
                server = AgentAddress(transport, address, "PUB", "server", "raw")
                self.connect(server, alias=alias, handler=handler)

    def before_loop(self) -> None:
        self.poll_trader()  # where the Trader's events stand: what comes after is told
        self.each(POLL_TRADER, "poll_trader")
        self.each(SUMMARY_CHECK, "check_summary")

    def shutdown(self) -> None:
        self.notifier.close(timeout=2.0)
        if self._trader is not None:
            self._trader._pyroRelease()
        super().shutdown()

    # -- the Trader ----------------------------------------------------------------------------
    def poll_trader(self) -> bool:
        """Read the Trader's order events after the last one seen, and its account. A
        Trader that does not answer (restarting) is read again next time. True if read."""
        from .proxy import AgentProxy

        try:
            if self._trader is None:  # (with the deployment's key, as every agent's proxy)
                self._trader = AgentProxy("trader", self.osm_cfg["nsaddr"], timeout=2.0,
                                          call_timeout=3.0)  # fmt: skip
            answer = self._trader.observed_since(self._update_seq or 0)
            restarted = self._trader_pid not in (None, answer.get("pid"))
            if self._update_seq is not None and restarted:
                answer = self._trader.observed_since(0)  # a restarted Trader: all it has
            self._trader_pid = answer.get("pid")
            if self._pnl_base is None:  # where the day's P&L starts
                self._pnl_base = self._pnl(self._trader.operator_status())
        except Exception:
            self.trader_unreachable += 1
            if self._trader is not None:
                self._trader._pyroRelease()
            self._trader = None
            return False
        self.osm_guard("informer trader", self._on_observed, answer)
        return True

    def _on_observed(self, answer: dict[str, Any]) -> None:
        first = self._update_seq is None
        self._update_seq = int(answer["seq"])
        account = answer.get("account")
        self._account = dict(account) if isinstance(account, dict) else {}
        if first:
            return  # what happened before this Informer started is not news
        events = [e for e in answer.get("events") or () if isinstance(e, OrderEvent)]
        if answer.get("gap"):
            self.update_gaps += 1  # told in the log, not guessed at
            self.log_warning("missed some of the Trader's order events (too many at once)")
        if events:
            self.updates += 1
        for event in events:
            self.notifier.on_event(event)
            self._tally(event)
        equity = self._account.get("equity")
        if isinstance(equity, int | float) and not isinstance(equity, bool):
            self.notifier.on_equity(float(equity))

    def _tally(self, event: OrderEvent) -> None:
        """Count what the summary reports (bounded: counters per Brain)."""
        brain = event.brain or "?"
        if event.kind == "filled":
            self._fills[brain] = self._fills.get(brain, 0) + 1
        elif event.kind == "accepted":
            self._orders[brain] = self._orders.get(brain, 0) + 1
        elif event.kind == "rejected" and event.size > 0:
            self._rejections[brain] = self._rejections.get(brain, 0) + 1

    def osm_on_status(self, data: bytes) -> None:
        self.osm_received += 1
        message = self.osm_decode(data, _STATUS)
        if message is not None:
            self.osm_guard("informer status", self._on_status, message)

    def _on_status(self, message: tuple) -> None:
        self.statuses += 1
        for row in message[2]:
            name = str(row.get("name", "?"))
            restarts = row.get("restarts")
            if isinstance(restarts, int) and not isinstance(restarts, bool):
                known = self._restarts.setdefault(name, restarts)
                if restarts > known:
                    self._restarts[name] = restarts
                    self.notifier.on_agent(name, "restarted", str(row.get("last_incident") or ""))
            problem = row.get("problem")
            if row.get("alive") is False and problem and (name, row.get("pid")) not in self._dead:
                self._dead.add((name, row.get("pid")))
                self.notifier.on_agent(name, "died", str(problem))

    def osm_on_alert(self, data: bytes) -> None:
        self.osm_received += 1
        level, _, line = bytes(data).partition(b" ")
        try:
            text = line.decode("utf-8")
            if level not in (b"WARNING", b"ERROR"):
                raise ValueError(level)
        except ValueError:
            self.osm_bad(f"alert that is not a level and UTF-8 text: {bytes(data)[:80]!r}")
            return
        self.alerts += 1
        control = _CONTROL.match(text)
        if control is not None:
            self.notifier.on_control(control.group(1))
        else:
            self.notifier.on_log(level.decode(), text)

    # -- the daily summary -----------------------------------------------------------------
    def check_summary(self, now: float | None = None) -> bool:
        """Send the daily summary if it is due at ``now`` (seconds since the epoch; the clock
        when None: a test passes its own). True if sent."""
        now = time.time() if now is None else float(now)
        if not self.notifier.summary_due(now):
            return False
        self.notifier.summary(self.summary_text(new_day=True), now)
        return True

    def send_summary(self) -> str:
        """Send the summary of the day so far now (an operator's report; the daily one
        still goes at its time). Returns its text."""
        text = self.summary_text()
        self.notifier.send("summary", text)
        return text

    def summary_text(self, new_day: bool = False) -> str:
        """Per Brain (as the Trader keeps them): its P&L since the last summary (or since
        this Informer started), its state and positions, and the fills, orders and
        rejections since then; then the account. ``new_day``: start the next day's counts."""
        try:
            status = self._trader.operator_status() if self._trader is not None else {}
        except Exception:  # the Trader restarting: the counts alone
            status = {}
        rows = status.get("brains") or {}
        pnl = self._pnl(status)
        base = self._pnl_base or {}
        lines = []
        for brain in sorted(set(rows) | set(self._fills) | set(self._orders)):
            row = rows.get(brain, {})
            held = ", ".join(f"{s} {u:g}" for s, u in sorted((row.get("positions") or {}).items()))
            day = pnl.get(brain, 0.0) - base.get(brain, 0.0)
            lines.append(
                f"{brain} ({row.get('state', '?')}): P&L {day:+,.2f}, "
                f"{self._fills.get(brain, 0)} fills, {self._orders.get(brain, 0)} orders, "
                f"{self._rejections.get(brain, 0)} rejections, positions: {held or 'none'}"
            )
        account = self._account
        equity = account.get("equity")
        if isinstance(equity, float | int):
            lines.append(f"account: equity {equity:,.2f}, positions "
                         f"{account.get('positions') or 'none'}")  # fmt: skip
        if new_day:
            self._fills, self._orders, self._rejections = {}, {}, {}
            if status:
                self._pnl_base = pnl
        return "daily summary: " + ("; ".join(lines) if lines else "no activity")

    @staticmethod
    def _pnl(status: dict[str, Any]) -> dict[str, float]:
        rows = status.get("brains") or {}
        return {brain: float(row.get("pnl", 0.0)) for brain, row in rows.items()}

    # -- inspection --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The Notifier's counters (``queued``, ``sending``, ``sent``, ``sends``,
        ``failures``, ``dropped``, ``last_error``) and what this agent received."""
        return {**self.notifier.status(), "updates": self.updates, "statuses": self.statuses,
                "alerts": self.alerts, "update_gaps": self.update_gaps,
                "trader_unreachable": self.trader_unreachable,
                "malformed": self.osm_malformed}  # fmt: skip

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stats["notifications"] = self.notifier.status()
        return stats
