"""The durable journal of a deployment: what must survive a crash, in one SQLite file.

Every agent process of a deployment opens the same file (SQLite's WAL mode lets one writer and
many readers work at once; writers wait for each other up to ``timeout`` seconds) and records
what it alone knows, *before* acting on it (write-ahead):

- a Brain: each order before it leaves (with the *cause*, the input it was handling when it
  sent it, so re-handling that input after a restart reuses the order's client id instead of
  sending a second order), its recovery point after every bar and every order event it handled
  (the last bar of each series, the events acknowledged, the state of ``on_save``);
- the Trader: that an order goes to the broker, then every order event the broker answered
  (fills included) before it is delivered, the account's positions;
- the Router: every bar series, its sequence number and history, before the bars are
  published.

Why SQLite: it is in the standard library, embedded (no server to run), crash-safe by design
and fast enough to commit per order and per bar (see benchmarks/README.md). The class is pure
(no osBrain, no sockets) and small, so a server database can replace it later.

Durability: ``durability='process'`` (the default, SQLite ``synchronous=NORMAL``) survives the
crash of any process, the owner's included; ``'power'`` (``synchronous=FULL``) also survives a
power cut or a kernel crash, at the cost of an fsync per commit.

Values are stored as MessagePack (msgspec): data only, never code.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .brokers.base import Order, OrderEvent, event_key, position_change
from .data.types import Bar

JOURNAL_NAME = "journal.sqlite"
AUTOCHECKPOINT_PAGES = 16_384  # 64 MB of log at most between checkpoints
SCHEMA_VERSION = 1
_DURABILITY = {"process": "NORMAL", "power": "FULL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY,
    brain TEXT NOT NULL,
    cause TEXT NOT NULL,
    rank INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'sent'  -- sent | submitting | answered
);
CREATE INDEX IF NOT EXISTS orders_cause ON orders (brain, cause, rank);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    brain TEXT NOT NULL,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_brain ON events (brain, acked);
CREATE TABLE IF NOT EXISTS brains (brain TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS series (key TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    key TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (key, seq)
) WITHOUT ROWID;
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_order = msgspec.msgpack.Decoder(Order).decode
_decode_event = msgspec.msgpack.Decoder(OrderEvent).decode
_decode_bar = msgspec.msgpack.Decoder(Bar).decode
_decode_any = msgspec.msgpack.Decoder().decode


class JournalError(RuntimeError):
    """The journal cannot be used: unreadable, from a newer version, or owned by a running
    deployment."""


class Journal:
    """One deployment's journal at ``path`` (created if missing). Thread-safe within a
    process (one connection, one lock); every method commits before it returns."""

    def __init__(
        self, path: str | os.PathLike[str], *, durability: str = "process", timeout: float = 10.0
    ) -> None:
        if durability not in _DURABILITY:
            raise ValueError(f"durability: expected 'process' or 'power', got {durability!r}")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._timeout = float(timeout)
        try:
            # timeout 0: waiting for the write lock is done by _execute_waiting
            self._db = sqlite3.connect(
                str(self.path), timeout=0, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")  # for the set-up
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={_DURABILITY[durability]}")
            self._db.execute("PRAGMA busy_timeout=0")
            # the owner folds the log into the file every second (JournalKeeper): a commit of
            # an agent pays for it (an fsync) only if the log passed this many pages
            self._db.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            with self._transaction() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if found is None:
                    db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(found[0]) > SCHEMA_VERSION:
                    raise JournalError(
                        f"journal {self.path}: schema {found[0]} is newer than this osMarkets "
                        f"reads ({SCHEMA_VERSION})"
                    )
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)

    @classmethod
    def in_dir(cls, state_dir: str | os.PathLike[str], **options: Any) -> Journal:
        """The journal of the deployment whose state lives in ``state_dir`` (made 0700)."""
        directory = Path(state_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(directory / JOURNAL_NAME, **options)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _execute_waiting(self, sql: str) -> None:
        """Run ``sql`` (taking the write lock), waiting for another process that holds it.

        SQLite's own busy handler sleeps at least a millisecond at each try; the processes of
        a deployment hold the lock for tens of microseconds, so this one polls every 50 µs
        (then backs off to 1 ms), up to ``timeout``."""
        deadline = time.monotonic() + self._timeout
        pause = 0.00005
        while True:
            try:
                self._db.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                text = str(exc)
                if "locked" not in text and "busy" not in text:
                    raise
                if time.monotonic() > deadline:
                    raise JournalError(
                        f"journal {self.path}: {text} for {self._timeout:g} s"
                    ) from None
            time.sleep(pause)
            pause = min(pause * 1.5, 0.001)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._execute_waiting("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            for _ in range(1000):  # a reader waits only while a checkpoint resets the log
                try:
                    return self._db.execute(sql, tuple(args)).fetchall()
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(0.001)
            return self._db.execute(sql, tuple(args)).fetchall()

    def checkpoint_log(self) -> None:
        """Copy the write-ahead log into the database file without waiting for anyone (the
        owner calls it now and then, so that agents seldom pay for it in a commit)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- the deployment ------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else default

    def set(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def deployment_id(self) -> str:
        """This deployment's id (8 hex digits), made once and kept: client ids carry it, so
        they stay unique across restarts and across deployments on one account."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key='deployment'").fetchone()
            if row is not None:
                return str(row[0])
            ident = secrets.token_hex(4)
            db.execute("INSERT INTO meta VALUES ('deployment', ?)", (ident,))
            return ident

    def claim(self, pid: int) -> int | None:
        """Make process ``pid`` the owner of this journal. Returns the previous owner's pid
        when it is dead (a crashed deployment being resumed), else None. Raises
        :class:`JournalError` when another process that is alive owns it."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key='owner'").fetchone()
            previous = int(row[0]) if row is not None else None
            if previous is not None and previous != pid and _alive(previous):
                raise JournalError(
                    f"journal {self.path} is in use by a running deployment (pid {previous}); "
                    f"give another state_dir or stop that one first"
                )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('owner', ?)", (str(pid),))
            return previous if previous is not None and previous != pid else None

    def release(self, pid: int) -> None:
        """The owner shut down cleanly."""
        with self._transaction() as db:
            db.execute("DELETE FROM meta WHERE key='owner' AND value=?", (str(pid),))

    # -- orders (Brains write, the Trader reads) ------------------------------------------------
    def record_order(self, order: Order, cause: str, rank: int) -> None:
        """Before an order leaves its Brain: ``cause`` is what the Brain was handling (a bar,
        an order event), ``rank`` the order's place among those it sent for that cause."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO orders (client_id, brain, cause, rank, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (order.client_id, order.brain, cause, rank, _encode(order)),
            )

    def orders_for(self, brain: str, cause: str) -> list[Order]:
        """The orders ``brain`` sent while handling ``cause``, in the order it sent them."""
        rows = self._query(
            "SELECT body FROM orders WHERE brain=? AND cause=? ORDER BY rank", (brain, cause)
        )
        return [_decode_order(row[0]) for row in rows]

    def last_order_number(self, brain: str, prefix: str) -> int:
        """The highest ``n`` of ``brain``'s client ids ``<prefix>n`` (0 if none)."""
        rows = self._query(
            "SELECT client_id FROM orders WHERE brain=? AND client_id LIKE ? ESCAPE '\\'",
            (brain, _like_prefix(prefix)),
        )
        numbers = [row[0][len(prefix) :] for row in rows]
        return max((int(n) for n in numbers if n.isdigit()), default=0)

    def unsent_orders(self, brain: str) -> list[Order]:
        """``brain``'s orders the Trader never took charge of (journaled, then the Brain or
        the Trader died): a restarted Brain sends them again."""
        rows = self._query(
            "SELECT body FROM orders WHERE brain=? AND state='sent' AND client_id NOT IN "
            "(SELECT client_id FROM events) ORDER BY rowid",
            (brain,),
        )
        return [_decode_order(row[0]) for row in rows]

    def order(self, client_id: str) -> tuple[Order, str] | None:
        """An order and its state (``'sent'``, ``'submitting'``, ``'answered'``), or None."""
        rows = self._query("SELECT body, state FROM orders WHERE client_id=?", (client_id,))
        return (_decode_order(rows[0][0]), str(rows[0][1])) if rows else None

    def mark_submitting(self, client_id: str, order: Order | None = None) -> None:
        """The Trader is about to call the broker with this order (recorded first: after a
        crash, an order in this state is looked up at the broker, never sent blindly)."""
        with self._transaction() as db:
            _submitting(db, client_id, order)

    def set_with_orders(self, meta: Mapping[str, str], submitting: Iterable[Order] = ()) -> None:
        """:meth:`set` of every ``meta`` item and :meth:`mark_submitting` of the Trader's own
        orders ``submitting``, in one transaction: a request that makes orders (a flatten) is
        marked done in the commit that records them, so a crash can neither lose it nor carry
        it out twice."""
        with self._transaction() as db:
            for order in submitting:
                _submitting(db, order.client_id, order)
            for key, value in meta.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def order_brains(self) -> list[str]:
        """The Brains this deployment journaled orders for (the Trader's own included)."""
        return [row[0] for row in self._query("SELECT DISTINCT brain FROM orders ORDER BY brain")]

    def submitting(self) -> list[Order]:
        """Orders handed to the broker whose answer was never recorded."""
        rows = self._query("SELECT body FROM orders WHERE state='submitting'")
        return [_decode_order(row[0]) for row in rows]

    def handled_ids(self) -> list[str]:
        """Client ids the Trader took charge of (submitting or answered)."""
        return [row[0] for row in self._query("SELECT client_id FROM orders WHERE state!='sent'")]

    # -- order events (the Trader writes, Brains acknowledge) -----------------------------------
    def record_events(
        self, events: Iterable[OrderEvent], meta: Mapping[str, str] | None = None
    ) -> list[OrderEvent]:
        """Record the broker's answer before it is delivered; returns the events not already
        recorded (a copy reported again, by a reconciliation say, is left out). The orders
        they answer are marked answered. ``meta`` is :meth:`set` in the same commit (the
        broker's state that covers these events)."""
        new: list[OrderEvent] = []
        with self._transaction() as db:
            for key, value in (meta or {}).items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            for event in events:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (key, brain, client_id, kind, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (event_key(event), event.brain, event.client_id, event.kind, _encode(event)),
                )
                if cursor.rowcount:
                    new.append(event)
                db.execute(
                    "UPDATE orders SET state='answered' WHERE client_id=?", (event.client_id,)
                )
        return new

    def events_of(self, client_id: str) -> list[OrderEvent]:
        rows = self._query("SELECT body FROM events WHERE client_id=? ORDER BY id", (client_id,))
        return [_decode_event(row[0]) for row in rows]

    def unacked_events(self, brain: str) -> list[OrderEvent]:
        """``brain``'s events not acknowledged yet, oldest first: delivered again after a
        restart of the Trader or of the Brain."""
        rows = self._query(
            "SELECT body FROM events WHERE brain=? AND acked=0 ORDER BY id", (brain,)
        )
        return [_decode_event(row[0]) for row in rows]

    def acked_keys(self, brain: str, limit: int = 200_000) -> list[str]:
        rows = self._query(
            "SELECT key FROM events WHERE brain=? AND acked=1 ORDER BY id DESC LIMIT ?",
            (brain, int(limit)),
        )
        return [row[0] for row in reversed(rows)]

    def fills(self, brain: str | None = None, acked: bool = False) -> list[OrderEvent]:
        """The fills recorded (of ``brain``; only those it acknowledged with ``acked``)."""
        sql = "SELECT body FROM events WHERE kind='filled'"
        args: tuple = ()
        if brain is not None:
            sql, args = sql + " AND brain=?", (brain,)
        if acked:
            sql += " AND acked=1"
        return [_decode_event(row[0]) for row in self._query(sql + " ORDER BY id", args)]

    def open_orders(self) -> dict[str, str]:
        """Client id -> Brain of the orders accepted and not ended (no terminal event)."""
        rows = self._query(
            "SELECT body FROM events WHERE client_id IN "
            "(SELECT client_id FROM events WHERE kind='accepted') ORDER BY id"
        )
        from .operator import order_ended

        pending: dict[str, str] = {}
        for row in rows:
            event = _decode_event(row[0])
            if order_ended(event):
                pending.pop(event.client_id, None)
            elif event.kind == "accepted":
                pending[event.client_id] = event.brain
        return pending

    def positions(self, brain: str) -> dict[str, float]:
        """``brain``'s positions from the fills it acknowledged (those it did not are
        delivered to it again, and counted then)."""
        held: dict[str, float] = {}
        for fill in self.fills(brain, acked=True):
            value = held.get(fill.symbol, 0.0) + position_change(fill)
            held[fill.symbol] = 0.0 if abs(value) < 1e-9 else value
        return {symbol: value for symbol, value in held.items() if value}

    # -- Brains' recovery points ----------------------------------------------------------------
    def checkpoint(self, brain: str, point: dict[str, Any], acked: str | None = None) -> None:
        """Store ``brain``'s recovery point (and acknowledge the event of key ``acked``) in
        one transaction: they are consistent with each other after any crash."""
        body = _encode(point)
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO brains VALUES (?, ?)", (brain, body))
            if acked is not None:
                db.execute("UPDATE events SET acked=1 WHERE key=? AND brain=?", (acked, brain))

    def recovery_point(self, brain: str) -> dict[str, Any] | None:
        rows = self._query("SELECT body FROM brains WHERE brain=?", (brain,))
        return dict(_decode_any(rows[0][0])) if rows else None

    def brains(self) -> list[str]:
        return [row[0] for row in self._query("SELECT brain FROM brains ORDER BY brain")]

    # -- the Router's series ----------------------------------------------------------------------
    def record_bars(
        self,
        bars: Iterable[tuple[str, int, Bar]],
        series: dict[str, dict[str, Any]] | None = None,
        capacity: int | None = None,
    ) -> None:
        """Append ``(series key, seq, bar)`` and update the ``series`` descriptions given, in
        one transaction; keep the last ``capacity`` bars of each series touched."""
        touched: dict[str, int] = {}
        with self._transaction() as db:
            for key, seq, bar in bars:
                db.execute(
                    "INSERT OR REPLACE INTO bars VALUES (?, ?, ?)", (key, int(seq), _encode(bar))
                )
                touched[key] = max(touched.get(key, 0), int(seq))
            for key, description in (series or {}).items():
                db.execute(
                    "INSERT OR REPLACE INTO series VALUES (?, ?)", (key, _encode(description))
                )
            if capacity:
                for key, last in touched.items():
                    if last % 1000 == 0:  # trimming now and then is enough
                        db.execute(
                            "DELETE FROM bars WHERE key=? AND seq<=?", (key, last - capacity)
                        )

    def series(self) -> dict[str, dict[str, Any]]:
        """Series key -> the description the Router stored."""
        return {row[0]: dict(_decode_any(row[1])) for row in self._query("SELECT * FROM series")}

    def bars(self, key: str, count: int) -> list[tuple[int, Bar]]:
        """The newest ``count`` bars of series ``key``, oldest first, with their seq."""
        rows = self._query(
            "SELECT seq, body FROM bars WHERE key=? ORDER BY seq DESC LIMIT ?", (key, int(count))
        )
        return [(int(seq), _decode_bar(body)) for seq, body in reversed(rows)]

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"


class JournalKeeper(threading.Thread):
    """A thread of the owner that folds the journal's write-ahead log into its file every
    ``interval`` seconds (a checkpoint: an fsync, paid here rather than in an agent's commit
    on the path of an order), and once more when stopped."""

    def __init__(self, journal: Journal, interval: float = 1.0) -> None:
        super().__init__(name="osmarkets-journal", daemon=True)
        self.journal = journal
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.journal.checkpoint_log()

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is not None:
            self.join(5)


def _submitting(db: sqlite3.Connection, client_id: str, order: Order | None) -> None:
    if order is not None:
        db.execute(
            "INSERT OR IGNORE INTO orders (client_id, brain, cause, rank, body) "
            "VALUES (?, ?, '', 0, ?)",
            (client_id, order.brain, _encode(order)),
        )
    db.execute(
        "UPDATE orders SET state='submitting' WHERE client_id=? AND state='sent'", (client_id,)
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (a dead child not yet reaped) is dead for us
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
