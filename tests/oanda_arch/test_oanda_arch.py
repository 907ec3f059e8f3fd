"""OandaArchitecture end to end: real agent processes against the real sandbox on 127.0.0.1.

The sandbox clock runs 60 times real time (one-minute bars complete every second), so whole
minutes of stream gap happen within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from oanda_arch_support import M1, TOKEN, Buyer, fast_clock, pid_alive, proc_environ, wait_for

from osmarkets.architecture import OandaArchitecture
from osmarkets.brokers.oanda import OandaAuthError, OandaClient, OandaSandbox, candles_to_frame

pytestmark = pytest.mark.timeout(120)
FAST_CLIENT = {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)}


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD", "USD_JPY"], seed=5, heartbeat=0.5,
        tick_interval=0.05, clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def client(sandbox):
    with OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url,
                     stream_url=sandbox.stream_url, **FAST_CLIENT) as c:  # fmt: skip
        yield c


@pytest.fixture
def make(sandbox, tmp_path):
    made = []

    def build(**kwargs):
        kwargs.setdefault("access_token", TOKEN)
        kwargs.setdefault("client_options", FAST_CLIENT)
        kwargs.setdefault("poll_interval", 0.2)
        kwargs.setdefault("heartbeat", 0.2)
        system = OandaArchitecture(
            account_id=sandbox.account_id, rest_url=sandbox.rest_url,
            stream_url=sandbox.stream_url, **kwargs,
        )  # fmt: skip
        made.append(system)
        return system

    yield build
    for system in made:
        system.shutdown()


def _fills(sandbox, client_id):
    return [t for t in sandbox.transactions
            if t["type"] == "ORDER_FILL" and t.get("clientOrderID") == client_id]  # fmt: skip


def _events(system, brain, kind=None, client_id=None):
    return [e for e in system[brain].get_attr("events")
            if (kind is None or e.kind == kind)
            and (client_id is None or e.client_id == client_id)]  # fmt: skip


def test_full_path_token_secrecy_and_clean_shutdown(make, sandbox, tmp_path) -> None:
    log_path = tmp_path / "agents.log"
    system = make(logging=True, log_path=str(log_path))
    system.add_brain("buyer", base=Buyer, buy_on=3, size=250)
    system["buyer"].subscribe(M1, 100)
    system.stream(["EUR_USD"])
    # price stream -> Feeder -> Router -> Brain -> order -> Trader -> OandaBroker -> fill
    (fill,) = wait_for(lambda: _events(system, "buyer", "filled"), what="a fill at the Brain")
    assert fill.size == 250 and fill.side == "buy" and fill.brain == "buyer"
    assert [e.kind for e in _events(system, "buyer")] == ["accepted", "filled"]
    (tx,) = _fills(sandbox, fill.client_id)
    assert float(tx["price"]) == fill.price
    assert system["buyer"].position("EUR_USD") == 250
    wait_for(lambda: system["trader"].get_attr("positions") == {"EUR_USD": 250.0},
             what="the Trader's position")  # fmt: skip
    assert system["trader"].get_attr("reconciliation")["positions"] == {}
    assert system["feeder"].osm_stats()["sent"] > 0

    # the token never reaches an agent attribute, a repr, the status table or a log
    token_file = Path(system._settings["token_file"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    texts = [repr(system), repr(system.client), system.status().to_string()]
    for name in system.agents:
        texts.append(repr(system[name]))
        texts.append(repr(system[name].get_attr("osm_cfg")))
    texts.append(repr(system["trader"].get_attr("reconciliation")))
    texts.append(repr(system["trader"].get_attr("broker_state")))
    texts.append(repr(system["trader"].osm_recent_errors()))
    texts.append(repr(system["feeder"].get_attr("feed_error")))
    for pid in system.pids():
        assert TOKEN.encode() not in proc_environ(pid)
    assert all(TOKEN not in text for text in texts)

    pids, ipc_dir = system.pids(), system.ipc_dir
    system.shutdown()
    assert not [p for p in pids if pid_alive(p)]
    assert not ipc_dir.exists()
    assert not token_file.exists() and not token_file.parent.exists()
    text = log_path.read_text()
    assert "reconciled with the account" in text  # the log did receive lines
    assert TOKEN not in text


def test_dropped_stream_loses_no_bar(make, sandbox, client) -> None:
    # the first stream connection ends abruptly after 40 messages (about 2 simulated
    # minutes); the Feeder waits 2.25-4.5 s (as many simulated minutes) before reconnecting
    sandbox.drop_streams(after=40)
    system = make(logging=False, stream_options={"backoff": 4.5, "max_backoff": 4.5})
    system.add_brain("rec", base=Buyer, buy_on=10**9)
    system["rec"].subscribe(M1, 500)
    system.stream(["EUR_USD"])
    feeder = system["feeder"]
    wait_for(lambda: feeder.get_attr("reconnects") >= 1, what="the reconnection")
    bars_then = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars_then + 3, what="bars after it")
    assert feeder.get_attr("backfilled_bars") >= 1
    frame = system["rec"].osm_series_frame(M1)
    raw = client.candles("EUR_USD", "M1", price="BA", start=frame.index[0], count=len(frame) + 5)
    candles = candles_to_frame(raw)
    candles = candles[candles.index <= frame.index[-1]]
    assert list(frame.index) == list(candles.index)  # every minute, none missing
    # rebuilt from 4 synthetic quotes per candle, so equal to the candle: among the live bars
    # (the downloaded history before them holds real candles, whose volume may be 4 too; so
    # may the live bar cut by the drop, which is not the candle)
    columns = [f"{s}_{p}" for s in ("bid", "ask") for p in ("open", "high", "low", "close")]
    live = frame.index.asi8 >= min(system["rec"].get_attr("seen"))
    same = (frame[columns] == candles.loc[frame.index, columns]).all(axis=1).to_numpy()
    backfilled = frame[(frame["volume"] == 4) & live & same]
    assert len(backfilled) == feeder.get_attr("backfilled_bars")
    expected = candles.loc[backfilled.index, columns].to_numpy()
    np.testing.assert_allclose(backfilled[columns].to_numpy(), expected, rtol=1e-12)


def test_rate_limit_and_server_error_bursts_create_no_duplicate(make, sandbox) -> None:
    system = make(logging=False)
    system.add_brain("rec", base=Buyer, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    system.stream(["EUR_USD"])
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 1, what="a bar")
    ids = []
    for _ in range(2):
        sandbox.fail_requests(2, 429)
        sandbox.fail_requests(2, 500)
        sandbox.lose_order_responses(1)  # executed, but answered 500
        ids.append(system["rec"].send_order(side="buy", size=100, symbol="EUR_USD"))
        wait_for(lambda cid=ids[-1]: _events(system, "rec", "filled", cid), what="the fill")
    for cid in ids:
        assert len(_fills(sandbox, cid)) == 1
        creates = [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"
                   and (t.get("clientExtensions") or {}).get("id") == cid]  # fmt: skip
        assert len(creates) == 1
    wait_for(lambda: system["trader"].get_attr("positions") == {"EUR_USD": 200.0},
             what="the Trader's position")  # fmt: skip
    for cid in ids:  # the Trader's account polling does not report the fills again
        assert len(_events(system, "rec", "filled", cid)) == 1


def test_trader_restart_reconciles_before_accepting_orders(make, sandbox, client) -> None:
    system = make(logging=False, supervise=False)  # the test restarts the Trader itself
    system.add_brain("rec", base=Buyer, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    system.stream(["EUR_USD"])
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 1, what="a bar")
    market = system["rec"].send_order(side="buy", size=100, symbol="EUR_USD")
    wait_for(lambda: _events(system, "rec", "filled", market), what="the market fill")
    (price,) = client.prices(["EUR_USD"])
    limit_price = round(price.tick.ask - 0.005, 5)
    limit = system["rec"].send_order(side="buy", size=50, symbol="EUR_USD", type="limit",
                                     price=limit_price)  # fmt: skip
    wait_for(lambda: _events(system, "rec", "accepted", limit), what="the limit order accepted")

    old_pid = system._agents["trader"].process.pid
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old_pid), what="the Trader's death")
    # the limit order fills while no Trader is running
    sandbox.set_price("EUR_USD", limit_price - 0.0012, limit_price - 0.0010)
    wait_for(lambda: _fills(sandbox, limit), what="the fill in the account")
    # slow REST answers: the new Trader's reconciliation takes a while, and an order sent
    # meanwhile is held until it is done, not dropped
    sandbox.latency = 0.2
    trader = system.restart_trader()
    queued = system["rec"].send_order(side="sell", size=30, symbol="EUR_USD")
    info = wait_for(lambda: trader.get_attr("reconciliation"), what="the reconciliation")
    assert info["positions"] == {"EUR_USD": 150.0}  # before the queued order
    missed = [e for e in info["missed_events"] if e.kind == "filled"]
    assert [e.client_id for e in missed] == [limit] and missed[0].brain == "rec"
    # the Brain learns of the missed fill, then the queued order is filled
    wait_for(lambda: _events(system, "rec", "filled", limit), what="the missed fill")
    wait_for(lambda: _events(system, "rec", "filled", queued), what="the queued order's fill")
    assert trader.get_attr("orders_received") == {"rec": 1}
    sandbox.latency = 0.0
    sandbox.release_price("EUR_USD")
    after = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _events(system, "rec", "filled", after), what="a new order filled")
    assert system["rec"].position("EUR_USD") == 130
    assert len(_events(system, "rec", "filled", limit)) == 1
    assert not pid_alive(old_pid)


def test_wrong_token_fails_fast_with_a_clear_error(sandbox) -> None:
    before = sandbox.requests
    with pytest.raises(OandaAuthError, match="401") as info:
        OandaArchitecture(account_id=sandbox.account_id, access_token="not-the-token",
                          rest_url=sandbox.rest_url, stream_url=sandbox.stream_url)  # fmt: skip
    assert "access token" in str(info.value)
    assert "not-the-token" not in str(info.value)
    assert sandbox.requests - before == 1  # not retried


def test_missing_token_and_bad_arguments(sandbox, monkeypatch) -> None:
    monkeypatch.delenv("OANDA_ACCESS_TOKEN", raising=False)
    with pytest.raises(ValueError, match="access_token"):
        OandaArchitecture(account_id=sandbox.account_id, rest_url=sandbox.rest_url)
    with pytest.raises(ValueError, match="environment"):
        OandaArchitecture(account_id="x", access_token=TOKEN, environment="paper")
    with pytest.raises(ValueError, match="account_id"):
        OandaArchitecture(access_token=TOKEN)


def test_live_without_confirmation_refuses_orders(make, sandbox, monkeypatch) -> None:
    monkeypatch.delenv("OSMARKETS_CONFIRM_LIVE", raising=False)
    monkeypatch.setenv("OANDA_ACCESS_TOKEN", TOKEN)  # the token from the environment
    system = make(logging=False, environment="live", access_token=None)
    system.add_brain("rec", base=Buyer, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    system.stream(["EUR_USD"])
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 1, what="a bar")
    cid = system["rec"].send_order(side="buy", size=100, symbol="EUR_USD")
    (event,) = wait_for(lambda: _events(system, "rec", "rejected", cid), what="the refusal")
    assert "LIVE" in event.reason and "confirm_live" in event.reason
    assert not [t for t in sandbox.transactions if t["type"].endswith("ORDER")]
    with pytest.raises(ValueError, match="stream symbols"):
        system.stream("EUR_USD")
    with pytest.raises(ValueError, match="XAU_EUR"):
        system.stream(["XAU_EUR"])


def test_example_launcher_runs_unchanged_against_the_sandbox(sandbox, tmp_path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OANDA_ACCESS_TOKEN=TOKEN, OANDA_ACCOUNT_ID=sandbox.account_id,
               OANDA_REST_URL=sandbox.rest_url, OANDA_STREAM_URL=sandbox.stream_url)  # fmt: skip
    env.pop("OANDA_ENVIRONMENT", None)
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "oanda_example.py"), "--seconds", "3",
         "--state-dir", str(tmp_path / "state")],
        cwd=root / "examples", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bars " in done.stdout and "example" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_demo_with_the_oanda_sandbox(capsys) -> None:
    from osmarkets.cli import main

    assert main(["demo", "--broker", "oanda-sandbox", "--bars", "20", "--speed", "1200"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"bars +2\d", out) and "all agents and the sandbox stopped" in out


def test_example_launcher_resumes_after_a_sigkill(sandbox, tmp_path) -> None:
    """The launcher is SIGKILLed (no shutdown at all) and run again on the same state_dir: it
    says it resumes, keeps the deployment id, its agents of the first run are gone, the token
    directory the dead owner left is removed, and the Brain resumes from its recovery point."""
    import tempfile

    from osmarkets.journal import Journal

    root = Path(__file__).resolve().parents[2]
    state = tmp_path / "state"
    env = dict(os.environ, OANDA_ACCESS_TOKEN=TOKEN, OANDA_ACCOUNT_ID=sandbox.account_id,
               OANDA_REST_URL=sandbox.rest_url, OANDA_STREAM_URL=sandbox.stream_url)  # fmt: skip
    env.pop("OANDA_ENVIRONMENT", None)
    command = [sys.executable, str(root / "examples" / "oanda_example.py"),
               "--state-dir", str(state)]  # fmt: skip
    first = subprocess.Popen(command, cwd=root / "examples", env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert first.stdout is not None
        line = ""
        while not line.startswith("bars "):  # a status line: the deployment runs
            line = first.stdout.readline()
            assert line, "the launcher ended before it ran"
        journal = Journal(state / "journal.sqlite")
        deployment = journal.deployment_id()
        wait_for(lambda: journal.recovery_point("example"), timeout=30,
                 what="the Brain's first recovery point")  # fmt: skip
        dirs = [p for p in Path(tempfile.gettempdir()).glob("osm-oanda-*")
                if (p / "owner").exists()
                and (p / "owner").read_text().split()[0] == str(first.pid)]  # fmt: skip
        assert dirs
        agents = [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(first.pid)], capture_output=True, text=True
        ).stdout.split()]  # fmt: skip
        first.kill()
        first.wait(10)
        for pid in agents:  # the orphan guard ends every agent of the dead owner
            wait_for(lambda pid=pid: not pid_alive(pid), timeout=15, what=f"agent {pid} ending")
        point = journal.recovery_point("example")
    finally:
        if first.poll() is None:
            first.kill()
    done = subprocess.run(command + ["--seconds", "4"], cwd=root / "examples", env=env,
                          capture_output=True, text=True, timeout=90)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming deployment {deployment}: its previous owner (pid {first.pid})" in done.stdout
    assert Journal(state / "journal.sqlite").deployment_id() == deployment
    assert not [p for p in dirs if p.exists()]  # the dead owner's token directory
    after = Journal(state / "journal.sqlite").recovery_point("example")
    assert point is not None and after is not None
    key = next(iter(point["acked"]))
    assert after["acked"][key] > point["acked"][key]  # it went on from where it was
    assert TOKEN not in done.stdout + done.stderr


def test_a_restarted_router_binds_only_after_the_feeders_are_gone(make) -> None:
    """A live Feeder would reconnect to the new Router and push the quotes it queued while
    the Router was down, past the resume points; the Router then refused the new Feeder's
    backfill of the minute the dead Router never completed (a minute never published)."""
    system = make(supervise=False)
    system.stream(["EUR_USD"])
    steps: list[tuple[str, str, bool]] = []
    bury, spawn = system._bury, system._spawn

    def buried(name):
        steps.append(("bury", name, system._agents[name].process.is_alive()))
        return bury(name)

    def spawned(name, *args, **kwargs):
        feeder = system._agents["feeder"].process
        steps.append(("spawn", name, feeder.is_alive()))
        return spawn(name, *args, **kwargs)

    system._bury, system._spawn = buried, spawned
    system._restart_router()
    assert steps[:3] == [("bury", "router", True), ("bury", "feeder", True),
                         ("spawn", "router", False)]  # fmt: skip
    assert ("spawn", "feeder", False) in steps[3:]
    wait_for(lambda: system["router"].get_attr("ticks_in") > 0, what="quotes to the new Router")
