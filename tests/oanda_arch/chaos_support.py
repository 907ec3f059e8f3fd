"""The chaos tests' Brain and invariant checkers (a module: agent processes import it, and so
does ``benchmarks/chaos_live.py``).

:class:`ChaosBrain` trades every bar and writes what it sees to a log file, one JSON line per
``on_new_bar``, ``on_gap``, ``on_order_event``, order sent and ``on_restore`` (opened, appended,
flushed and closed per line: the lines written before a SIGKILL stay).

The checkers compare, after :func:`quiesce`:

(a) :func:`check_orders`: the orders the Brains journaled with the orders on the account
    (``MARKET_ORDER`` transactions carrying the client id): each exactly once, none unknown,
    and no input (a bar) that produced two orders on the account;
(b) :func:`check_positions`: every Brain's position (live, through its proxy when a system is
    given, and recomputed from the fills the journal reported to it) with the account's (the
    open trades' units of each instrument);
(c) :func:`check_terminal`: every journaled order has exactly one terminal event (filled,
    rejected or cancelled) in the journal and in what the Brain received (its log);
(d) :func:`check_bars`: the bars the Brain saw (its log, replayed ones included) plus those it
    was told of through ``on_gap`` cover the series' bars from its first to its last, as the
    Router journaled them (and the minutes between: a minute missing from the journal was
    never published).

Each returns a dict of counts (all 0 when the invariant holds) and a ``problems`` list saying
what is wrong; :func:`check_all` merges them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent, event_key
from osmarkets.data.timeframes import BarSeriesID
from osmarkets.journal import JOURNAL_NAME, Journal

M1 = ("EUR_USD", 1, "Minutes")
M1_KEY = BarSeriesID.parse(M1).key
MINUTE = 60_000_000_000
TERMINAL = ("filled", "rejected", "cancelled")
COUNTS = ("duplicates", "lost", "unjournaled", "rejected", "wrong_positions", "bad_terminal",
          "bars_lost", "unpublished", "bars_twice")  # fmt: skip


# -- the Brain ---------------------------------------------------------------------------------
def append_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """One JSON line, in one write, flushed and closed at once (it survives a SIGKILL)."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a Brain's log (a line cut by a kill is left out)."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def read_stop(path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError), open(path) as fh:
        return int(fh.read().strip())
    return None


class ChaosBrain(Brain):
    """Trades every bar, a market order of ``size`` units: it sells on bars whose sequence
    number is a multiple of 3 and buys on the others (its position drifts, so a lost or doubled
    order shows; the same bar always gives the same order: a bar handled again after a crash
    re-issues the journaled one). It stops trading bars that open at or after the time
    written in ``stop_file`` (so the decision does not change when a bar is handled again).
    ``log_path``: its log (see the module docstring)."""

    size = 10
    log_path = ""
    stop_file = ""

    def on_start(self) -> None:
        if not hasattr(self, "handled"):
            self.handled = 0

    def on_save(self) -> dict[str, Any]:
        return {"handled": int(getattr(self, "handled", 0))}

    def on_restore(self, state: dict[str, Any]) -> None:
        self.handled = int(state.get("handled", 0))
        self._log(k="restore", state=dict(state))

    def _log(self, **record: Any) -> None:
        if self.log_path:
            record["pid"] = os.getpid()
            append_line(self.log_path, record)

    def on_new_bar(self, series: BarSeries) -> None:
        seq = getattr(self, "osm_seq", {}).get(series.bsid)
        bar_time = int(series[0].time)
        self.handled += 1
        self._log(k="bar", t=bar_time, seq=seq, replayed=bool(series.replayed),
                  backfilled=bool(getattr(series, "backfilled", False)))  # fmt: skip
        stop = read_stop(self.stop_file) if self.stop_file else None
        if stop is not None and bar_time >= stop:
            return
        number = seq if seq is not None else self.handled
        side = "sell" if number % 3 == 0 else "buy"
        client_id = self.send_order(side=side, size=self.size, symbol=series.bsid.symbol)
        self._log(k="order", cid=client_id, t=bar_time, seq=seq, side=side)

    def on_gap(self, bsid: Any, missed: int) -> None:
        self._log(k="gap", key=BarSeriesID.parse(bsid).key, missed=int(missed))

    def on_order_event(self, event: OrderEvent) -> None:
        self._log(k="event", cid=event.client_id, kind=event.kind, key=event_key(event),
                  size=event.size, side=event.side)  # fmt: skip


# -- helpers -----------------------------------------------------------------------------------
def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             step: float = 0.05) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # an agent restarting, a proxy timing out: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_agent(system: Any, name: str) -> tuple[int, float]:
    """SIGKILL agent ``name``; returns its pid and the monotonic time of the kill."""
    pid = system._agents[name].process.pid
    os.kill(pid, signal.SIGKILL)
    return pid, time.monotonic()


def wait_restarted(system: Any, name: str, old_pid: int, killed_at: float,
                   timeout: float = 30.0) -> float:  # fmt: skip
    """Seconds from the kill until a new process of ``name`` runs (its loop started: the
    architecture set its proxy)."""

    def running() -> bool:
        handle = system._agents[name]
        process = handle.process
        return (process is not None and process.pid != old_pid and handle.proxy is not None
                and process.is_alive())  # fmt: skip

    wait_for(running, timeout, f"a new {name} process", step=0.01)
    return time.monotonic() - killed_at


def before_next_bar(clock: Callable[[], int], margin: float = 0.05, factor: float = 60.0,
                    step: int = MINUTE) -> float:  # fmt: skip
    """Real seconds from now until ``margin`` seconds before the sandbox's ``clock`` (running
    ``factor`` times real time) reaches the next bar boundary (0 if closer than that)."""
    left = (step - clock() % step) / factor / 1e9
    return max(0.0, left - margin)


def bars_seen(log_path: str) -> int:
    return sum(1 for r in read_log(log_path) if r.get("k") == "bar")


def wait_bars(log_path: str, count: int, timeout: float = 30.0) -> None:
    """Wait until the Brain logged ``count`` more bars than now."""
    start = bars_seen(log_path)
    wait_for(lambda: bars_seen(log_path) >= start + count, timeout, f"{count} more bars")


def open_journal(state_dir_or_path: str | os.PathLike[str]) -> Journal:
    path = Path(state_dir_or_path)
    return Journal(path / JOURNAL_NAME if path.is_dir() else path, timeout=30.0)


def _journal_orders(journal: Journal) -> list[tuple[str, str, str, int, str]]:
    return [
        (str(c), str(b), str(cause), int(rank), str(state))
        for c, b, cause, rank, state in journal._query(
            "SELECT client_id, brain, cause, rank, state FROM orders ORDER BY rowid"
        )
    ]


def _journal_events(journal: Journal) -> list[tuple[str, str, str, str, int]]:
    return [
        (str(key), str(b), str(c), str(kind), int(acked))
        for key, b, c, kind, acked in journal._query(
            "SELECT key, brain, client_id, kind, acked FROM events ORDER BY id"
        )
    ]


def _account(sandbox: Any) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The account's transactions and its positions (the open trades' units)."""
    with sandbox._lock:
        transactions = list(sandbox.transactions)
        trades = [dict(t) for t in sandbox.trades.values()]
    held: dict[str, float] = defaultdict(float)
    for trade in trades:
        if trade.get("state") == "OPEN":
            held[trade["instrument"]] += float(trade["currentUnits"])
    return transactions, {k: v for k, v in held.items() if abs(v) > 1e-9}


def _client_id(transaction: Mapping[str, Any]) -> str | None:
    return (transaction.get("clientExtensions") or {}).get("id")


# -- deployments -------------------------------------------------------------------------------
HERE = Path(__file__).resolve().parent
FAST_CLIENT = {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)}


def launch(sandbox: Any, token: str, state_dir: str | os.PathLike[str], log_path: str,
           stop_file: str = "", size: float = 10, history: int = 10, first_bars: int = 1,
           **options: Any) -> Any:  # fmt: skip
    """An OandaArchitecture on ``sandbox`` and ``state_dir`` with a ChaosBrain ``chaos`` on
    EUR_USD M1 and the stream started, once the Brain handled ``first_bars`` bars."""
    from osmarkets.architecture import OandaArchitecture

    settings = {"client_options": FAST_CLIENT, "poll_interval": 0.2, "heartbeat": 0.2,
                "logging": False}  # fmt: skip
    settings.update(options)
    system = OandaArchitecture(
        account_id=sandbox.account_id, access_token=token, rest_url=sandbox.rest_url,
        stream_url=sandbox.stream_url, state_dir=str(state_dir), **settings,
    )  # fmt: skip
    try:
        system.add_brain("chaos", base=ChaosBrain, log_path=str(log_path),
                         stop_file=str(stop_file), size=size)  # fmt: skip
        system["chaos"].subscribe(M1, history)
        before = bars_seen(log_path)
        system.stream(["EUR_USD"])
        wait_for(lambda: bars_seen(log_path) >= before + first_bars, 30.0, "the first bars")
    except BaseException:
        system.shutdown()
        raise
    return system


def start_launcher(
    sandbox: Any,
    token: str,
    state_dir: str | os.PathLike[str],
    log_path: str,
    stop_file: str = "",
    timeout: float = 60.0,
    first_bars: int = 1,
    output: str | os.PathLike[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run ``chaos_launcher.py`` in a new interpreter; returns the process and its ready line
    (a dict) once printed. The token goes through ``OANDA_ACCESS_TOKEN``. Its output (the
    agents' log lines too) goes to the file ``output`` (``<log_path>.out`` by default): a pipe
    nobody reads would block them."""
    import subprocess
    import sys

    env = dict(os.environ, OANDA_ACCESS_TOKEN=token)
    paths = [str(HERE), str(HERE.parents[1]), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    command = [
        sys.executable, str(HERE / "chaos_launcher.py"), "--rest-url", sandbox.rest_url,
        "--stream-url", sandbox.stream_url, "--account", sandbox.account_id,
        "--state-dir", str(state_dir), "--log", str(log_path), "--stop-file", str(stop_file),
        "--first-bars", str(first_bars),
    ]  # fmt: skip
    output = Path(output if output is not None else f"{log_path}.out")
    with open(output, "ab") as out:
        start = out.tell()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=str(HERE.parents[1]))  # fmt: skip

    def ready() -> dict[str, Any] | None:
        with open(output, "rb") as fh:
            fh.seek(start)
            for line in fh.read().decode(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        found = json.loads(line)
                        if isinstance(found, dict) and "ready" in found:
                            return found
        if proc.poll() is not None:
            return {"ready": False, "error": f"exited with {proc.returncode}"}
        return None

    try:
        info = wait_for(ready, timeout, "the launcher's ready line")
        if not info.get("ready"):
            raise AssertionError(f"the launcher failed: {info}; see {output}")
    except BaseException:
        stop_launcher(proc, signal.SIGKILL)
        raise
    return proc, info


def stop_launcher(proc: Any, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
    """Signal the launcher (SIGTERM: it shuts down cleanly) and reap it; SIGKILL if it is
    still alive after ``timeout``."""
    import subprocess

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    return proc.returncode


# -- quiescence --------------------------------------------------------------------------------
def unsettled(journal: Journal) -> list[str]:
    """What the journal still waits for: orders without a terminal event, events not
    acknowledged by their Brain."""
    terminal = {c for _, _, c, kind, _ in _journal_events(journal) if kind in TERMINAL}
    out = [f"order {c} ({state}) without a terminal event"
           for c, _, _, _, state in _journal_orders(journal) if c not in terminal]  # fmt: skip
    out += [f"event {key} not acknowledged by {b}"
            for key, b, _, _, acked in _journal_events(journal) if not acked]  # fmt: skip
    return out


def quiesce(journal_path: str | os.PathLike[str], stop_file: str, clock: Callable[[], int],
            log_path: str | None = None, system: Any = None,
            brains: Iterable[str] = ("chaos",), timeout: float = 40.0) -> None:  # fmt: skip
    """Stop the ChaosBrains trading (bars opening from the sandbox's ``clock()`` on), wait
    until they handled a bar past it (so every bar that trades was handled), then until every
    journaled order has its terminal event, every event is acknowledged, and (with ``system``)
    no Brain has an order without an event and the Trader has no broker call in flight."""
    deadline = time.monotonic() + timeout
    stop = int(clock())
    Path(stop_file).write_text(str(stop))
    if log_path is not None:
        wait_for(lambda: any(r.get("k") == "bar" and r["t"] >= stop for r in read_log(log_path)),
                 max(1.0, deadline - time.monotonic()), "a bar after the stop")  # fmt: skip
    journal = open_journal(journal_path)
    try:

        def settled() -> bool:
            if unsettled(journal):
                return False
            if system is not None:
                if any(system[b].osm_stats()["unacked"] for b in brains):
                    return False
                if not system["trader"].idle_now():
                    return False
            return True

        try:
            wait_for(settled, max(1.0, deadline - time.monotonic()), "quiescence")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still waiting for: {unsettled(journal)[:10]}") from None
    finally:
        journal.close()


# -- the invariants ----------------------------------------------------------------------------
def check_orders(sandbox: Any, journal: Journal) -> dict[str, Any]:
    """(a) Orders on the account == orders the Brains journaled: ``duplicates`` (a client id
    placed more than once, or a bar that led to more than one order on the account), ``lost``
    (journaled, not on the account and not rejected), ``unjournaled`` (on the account, not in
    the journal), ``rejected`` (journaled orders whose terminal event is a rejection)."""
    transactions, _ = _account(sandbox)
    placed = Counter(_client_id(t) for t in transactions if t["type"] == "MARKET_ORDER")
    placed.pop(None, None)
    orders = _journal_orders(journal)
    journaled = {c for c, *_ in orders}
    rejected = {c for _, _, c, kind, _ in _journal_events(journal) if kind == "rejected"}
    problems: list[str] = []
    duplicates = 0
    for cid, count in placed.items():
        if count > 1:
            duplicates += count - 1
            problems.append(f"{cid} placed {count} times")
    # one order per (Brain, input, rank): a bar handled again must not give a second order
    by_cause: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for cid, brain, cause, rank, _ in orders:
        if cause.startswith("bar|") and cid in placed:
            by_cause[(brain, cause, rank)].append(cid)
    for (brain, cause, rank), ids in by_cause.items():
        if len(ids) > 1:
            duplicates += len(ids) - 1
            problems.append(f"{brain} {cause} #{rank}: {len(ids)} orders placed {ids}")
    lost = sorted(journaled - set(placed) - rejected)
    unjournaled = sorted(set(placed) - journaled)
    problems += [f"{cid} journaled, never placed" for cid in lost]
    problems += [f"{cid} placed, not journaled" for cid in unjournaled]
    problems += [f"{cid} rejected" for cid in sorted(rejected & journaled)]
    return {
        "orders": len(journaled), "placed": sum(placed.values()), "duplicates": duplicates,
        "lost": len(lost), "unjournaled": len(unjournaled),
        "rejected": len(rejected & journaled), "problems": problems,
    }  # fmt: skip


def check_positions(sandbox: Any, journal: Journal, system: Any = None) -> dict[str, Any]:
    """(b) Every Brain's position == the account's, per instrument: the fills the journal
    reported to it and, with ``system``, its live ``osm_positions`` (through its proxy). The
    account's is the sum of its open trades' units. With several Brains, their sum is compared
    with the account and each Brain's live position with its journaled one."""
    _, account = _account(sandbox)
    brains = sorted({b for _, b, *_ in _journal_orders(journal)})
    pairs: list[tuple[str, dict[str, float], dict[str, float]]] = []  # (what, held, expected)
    total: dict[str, float] = defaultdict(float)
    for brain in brains:
        recorded = journal.positions(brain)
        for symbol, units in recorded.items():
            total[symbol] += units
        if len(brains) == 1:
            pairs.append((f"{brain} (journal fills)", recorded, account))
        if system is not None and brain in system:
            live = {k: v for k, v in system[brain].get_attr("osm_positions").items() if v}
            pairs.append((f"{brain} (live)", live, account if len(brains) == 1 else recorded))
    if len(brains) > 1:
        pairs.append(("the Brains together (journal fills)", dict(total), account))
    problems: list[str] = []
    wrong = 0
    for what, held, expected in pairs:
        for symbol in sorted(set(held) | set(expected)):
            if abs(held.get(symbol, 0.0) - expected.get(symbol, 0.0)) > 1e-6:
                wrong += 1
                problems.append(
                    f"{what}: {symbol} {held.get(symbol, 0.0):g}, expected "
                    f"{expected.get(symbol, 0.0):g} (the account: {account})"
                )
    return {"wrong_positions": wrong, "account": dict(account), "problems": problems}


def check_terminal(journal: Journal, logs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """(c) Every journaled order has exactly one terminal event in the journal and, for the
    Brains whose log is given, among the events the Brain received (copies of one event, the
    same key delivered again after a crash, count once)."""
    orders = _journal_orders(journal)
    in_journal: dict[str, set[str]] = defaultdict(set)
    for key, _, cid, kind, _ in _journal_events(journal):
        if kind in TERMINAL:
            in_journal[cid].add(key)
    received: dict[str, dict[str, set[str]]] = {}
    for brain, path in (logs or {}).items():
        got: dict[str, set[str]] = defaultdict(set)
        for record in read_log(path):
            if record.get("k") == "event" and record.get("kind") in TERMINAL:
                got[record["cid"]].add(record["key"])
        received[brain] = got
    bad: set[str] = set()
    problems: list[str] = []
    for cid, brain, _, _, _ in orders:
        count = len(in_journal.get(cid, ()))
        if count != 1:
            bad.add(cid)
            problems.append(f"{cid}: {count} terminal events in the journal")
        if brain in received:
            count = len(received[brain].get(cid, ()))
            if count != 1:
                bad.add(cid)
                problems.append(f"{cid}: {brain} received {count} terminal events")
    return {"bad_terminal": len(bad), "problems": problems}


def check_bars(journal: Journal, logs: Mapping[str, str], key: str = M1_KEY,
               step: int = MINUTE) -> dict[str, Any]:  # fmt: skip
    """(d) Per Brain: the bars of series ``key`` the Router journaled from the Brain's first
    bar to its last, minus those it saw (live or replayed) and minus as many as ``on_gap``
    told it of: ``bars_lost``. ``unpublished``: minutes (``step``) in that span the journal
    has no bar of (never published: a gap of the feed nobody filled). ``bars_twice``: a bar
    handled twice without ``series.replayed`` the second time. ``thin_bars`` (informational,
    not an invariant): bars built from under a quarter of the usual number of quotes."""
    volumes = {int(bar.time): float(bar.volume) for _, bar in journal.bars(key, 1_000_000)}
    journaled = set(volumes)
    counts = {"bars_lost": 0, "unpublished": 0, "bars_twice": 0, "bars_seen": 0, "gaps": 0,
              "replayed": 0, "backfilled": 0, "thin_bars": 0}  # fmt: skip
    problems: list[str] = []
    for brain, path in logs.items():
        records = read_log(path)
        bars = [r for r in records if r.get("k") == "bar"]
        if not bars:
            continue
        seen = {int(r["t"]) for r in bars}
        live = Counter(int(r["t"]) for r in bars if not r.get("replayed"))
        reported = sum(int(r["missed"]) for r in records if r.get("k") == "gap" and
                       r.get("key") == key)  # fmt: skip
        first, last = min(seen), max(seen)
        expected = {t for t in journaled if first <= t <= last}
        missing = sorted(expected - seen)
        lost = max(0, len(missing) - reported)
        grid = set(range(first, last + 1, step))
        unpublished = sorted(grid - journaled - seen)
        twice = sorted(t for t, n in live.items() if n > 1)
        # informational: a bar built from far fewer quotes than usual (not from candles), after
        # its first: the quotes of a bar forming in an agent that died were lost with it
        marked = {int(r["t"]) for r in bars if r.get("backfilled")}
        inside = [t for t in sorted(expected) if t > first and t not in marked]
        usual = statistics.median([volumes[t] for t in inside]) if inside else 0.0
        thin = [t for t in inside if volumes[t] < 0.25 * usual]
        counts["thin_bars"] += len(thin)
        counts["bars_lost"] += lost
        counts["unpublished"] += len(unpublished)
        counts["bars_twice"] += len(twice)
        counts["bars_seen"] += len(seen)
        counts["gaps"] += reported
        counts["replayed"] += sum(1 for r in bars if r.get("replayed"))
        counts["backfilled"] += sum(1 for r in bars if r.get("backfilled"))
        if lost:
            problems.append(f"{brain}: {lost} bars lost ({len(missing)} missing, {reported} "
                            f"reported by on_gap): {_times(missing)}")  # fmt: skip
        if unpublished:
            problems.append(f"{brain}: {len(unpublished)} minutes never published: "
                            f"{_times(unpublished)}")  # fmt: skip
        if twice:
            problems.append(f"{brain}: bars handled twice, not marked replayed: {_times(twice)}")
        if thin:
            problems.append(f"{brain} (informational): {len(thin)} bars of under a quarter of "
                            f"the usual {usual:g} quotes: {_times(thin)}")  # fmt: skip
    counts["problems"] = problems
    return counts


def _times(stamps: list[int], limit: int = 8) -> str:
    import pandas as pd

    shown = [pd.Timestamp(t, unit="ns").strftime("%H:%M") for t in stamps[:limit]]
    return ", ".join(shown) + (" ..." if len(stamps) > limit else "")


def check_all(sandbox: Any, journal_path: str | os.PathLike[str], logs: Mapping[str, str],
              system: Any = None) -> dict[str, Any]:  # fmt: skip
    """Every invariant: one dict of counts (see :data:`COUNTS`, all 0 when they hold) and the
    ``problems`` found."""
    journal = open_journal(journal_path)
    try:
        out: dict[str, Any] = {"problems": []}
        for result in (
            check_orders(sandbox, journal),
            check_positions(sandbox, journal, system),
            check_terminal(journal, logs),
            check_bars(journal, logs),
        ):
            problems = result.pop("problems")
            out.update(result)
            out["problems"] += problems
        return out
    finally:
        journal.close()


def violations(result: Mapping[str, Any]) -> dict[str, int]:
    """The counts of ``result`` that must be 0 and are not."""
    return {key: result[key] for key in COUNTS if result.get(key)}
