"""CcxtArchitecture end to end on the local exchange sandbox: real agents, ccxt's unmodified
binance classes, bars from the websocket stream, orders filled in parts, a Trader restart that
reconciles, and credentials that never leave the private directory."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import ccxt
import pytest
from ccxt_support import DIE_ON_SIZE, make_dying_ccxt_broker, wait_for

from osmarkets import Brain
from osmarkets.architecture import CcxtArchitecture
from osmarkets.brokers.ccxt import ExchangeSandbox
from osmarkets.brokers.ccxt import broker as ccxt_broker

pytestmark = pytest.mark.timeout(180)
SYMBOL = "BTC/USDT"


class BuyThenSell(Brain):
    """Buys ``size`` on its first bar, sells what it holds (on the step) on a later one."""

    size = 0.01
    sell_after = 2

    def on_new_bar(self, series):
        self.bars_seen = getattr(self, "bars_seen", 0) + 1
        held = self.position(SYMBOL)
        if self.bars_seen == 1:
            self.send_order("buy", self.size, SYMBOL)
        elif self.bars_seen == 1 + self.sell_after and held > 0:
            self.send_order("sell", round(int(held / 0.00001 + 1e-9) * 0.00001, 8), SYMBOL)


class Resting(Brain):
    """Places one limit buy far below the market on its first bar."""

    limit = 0.0
    size = 0.01

    def on_new_bar(self, series):
        if not getattr(self, "sent", False):
            self.sent = True
            self.send_order("buy", self.size, SYMBOL, type="limit", price=self.limit)


@pytest.fixture
def sandbox():
    with ExchangeSandbox(symbols=[SYMBOL], seed=2, tick_interval=0.1,
                         balances={"USDT": 100_000}) as sb:  # fmt: skip
        yield sb


def _arch(sandbox, **kw):
    options = sandbox.ccxt_options()
    key, secret = options.pop("apiKey"), options.pop("secret")
    return CcxtArchitecture("binance", key, secret, options=options, poll_interval=0.2,
                            log_console=None, **kw)  # fmt: skip


def test_a_brain_trades_end_to_end_on_websocket_bars(sandbox):
    with _arch(sandbox) as system:
        system.add_brain("bot", base=BuyThenSell)
        system["bot"].subscribe((SYMBOL, 1, "Seconds"), 5)
        system.stream([SYMBOL])
        bot, trader = system["bot"], system["trader"]
        events = wait_for(
            lambda: [e for e in bot.get_attr("osm_events") if e.kind == "filled"][1:] and
            bot.get_attr("osm_events"), 40, "a buy and a sell filled")  # fmt: skip
        assert system["feeder"].osm_stats()["using"] == "websocket"
        fills = [e for e in events if e.kind == "filled"]
        buy, sell = fills[0], fills[-1]
        assert (buy.side, buy.size, buy.fee_currency) == ("buy", 0.01, "BTC")
        assert buy.fee == pytest.approx(0.01 * 0.001)  # 0.1 % taken in BTC
        assert buy.commission == pytest.approx(buy.fee * buy.price)  # in USDT
        assert sell.side == "sell" and sell.fee_currency == "USDT"
        assert sell.size == pytest.approx(0.00999)  # what the buy left on the step
        assert not [e for e in events if e.kind == "rejected"]
        wait_for(lambda: not trader.get_attr("positions"), 10, "the Trader flat")
        balances = sandbox.balances()
        assert float(balances["BTC"]["free"]) == pytest.approx(0.0, abs=1e-12)
        assert bot.get_attr("osm_positions").get(SYMBOL, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_partial_fills_reach_the_brain(sandbox):
    market = sandbox._by_symbol[SYMBOL]
    from decimal import Decimal

    with sandbox._lock:
        market.book_qty = Decimal("0.004")  # a 0.01 market order walks three levels
    with _arch(sandbox) as system:
        system.add_brain("bot", base=BuyThenSell, sell_after=10_000)
        system["bot"].subscribe((SYMBOL, 1, "Seconds"), 5)
        system.stream([SYMBOL])
        fills = wait_for(
            lambda: [e for e in system["bot"].get_attr("osm_events") if e.kind == "filled"
                     and not e.remaining] and
            [e for e in system["bot"].get_attr("osm_events") if e.kind == "filled"],
            40, "the order's last fill")  # fmt: skip
        assert len(fills) >= 3
        assert sum(f.size for f in fills) == pytest.approx(0.01)
        assert [f.remaining for f in fills] == sorted((f.remaining for f in fills), reverse=True)
        assert [f.terminal for f in fills].count(True) == 1 and fills[-1].terminal


def _below_the_market(sandbox) -> float:
    bid, _, _ = sandbox.quote(SYMBOL)
    return round(float(bid) * 0.9, 2)


def _resting(system, limit: float, **params):
    """A Resting Brain 'bot' on 1-second bars whose limit order the exchange accepted."""
    system.add_brain("bot", base=Resting, limit=limit, **params)
    system["bot"].subscribe((SYMBOL, 1, "Seconds"), 5)
    system.stream([SYMBOL])
    bot = system["bot"]
    wait_for(lambda: [e for e in bot.get_attr("osm_events") if e.kind == "accepted"], 30,
             "the limit order accepted")  # fmt: skip
    return bot


def test_a_restarted_trader_reports_the_fill_it_missed_once(sandbox, tmp_path):
    limit = _below_the_market(sandbox)
    with _arch(sandbox, state_dir=tmp_path / "state") as system:
        bot = _resting(system, limit)
        old = system["trader"].osm_stats()["pid"]
        system.restart_trader()
        # meanwhile the market falls through the limit: the order fills at the exchange
        sandbox.set_price(SYMBOL, limit * 0.99, limit * 0.995)
        fills = wait_for(lambda: [e for e in bot.get_attr("osm_events") if e.kind == "filled"],
                         30, "the missed fill reported by the new Trader")  # fmt: skip
        assert system["trader"].osm_stats()["pid"] != old
        assert len(fills) == 1 and fills[0].size == pytest.approx(0.01)
        assert fills[0].price <= limit
        time.sleep(0)  # the next polls must not report it again:
        wait_for(lambda: system["trader"].osm_stats().get("fills", 0) >= 1, 10, "trader fills")
        trader_fills = system["trader"].get_attr("fills")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # several polls (every 0.2 s) later
            assert len([e for e in bot.get_attr("osm_events") if e.kind == "filled"]) == 1
            time.sleep(0.2)
        assert len([e for e in trader_fills if e.client_id == fills[0].client_id]) == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead for our purposes
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _restarted_after_death(system) -> None:
    """The Trader's process dies (its broker kills it) and the Overmind starts another."""
    old = system._agents["trader"].process.pid
    wait_for(lambda: not _alive(old), 30, "the Trader dying")
    wait_for(lambda: system.overmind.restarts.get("trader", 0) >= 1, 30, "the Trader restarted")
    assert system._agents["trader"].process.pid != old


def _fills_stay(bot, count: int) -> list:
    """The Brain's fills, checked over several polls (every 0.2 s) not to grow past
    ``count``."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        fills = [e for e in bot.get_attr("osm_events") if e.kind == "filled"]
        assert len(fills) == count, fills
        time.sleep(0.2)
    return fills


def test_a_fill_in_a_market_that_sends_no_quote_is_found_by_the_idle_poll(sandbox, tmp_path):
    """The price is pinned after the limit order fills: no quote, no bar, no market data
    reaches the Trader, which polls its broker by itself every poll_interval."""
    limit = _below_the_market(sandbox)
    with _arch(sandbox) as system:
        bot = _resting(system, limit)
        sandbox.set_price(SYMBOL, limit * 0.99, limit * 0.995)  # filled, then quiet
        assert sandbox.orders()[0]["status"] == "FILLED"
        wait_for(lambda: [e for e in bot.get_attr("osm_events") if e.kind == "filled"], 10,
                 "the fill found without market data")  # fmt: skip
        (fill,) = _fills_stay(bot, 1)
        assert fill.size == pytest.approx(0.01) and fill.price <= limit


def test_a_fill_the_broker_thread_took_is_not_lost_when_the_trader_dies_before_journaling_it(
    sandbox, tmp_path, monkeypatch
):
    """The poll that saw the fill moved the broker's state; the process died before the
    journal had the fill: the state file is written after the journal, so the restarted
    Trader reports the fill again, once."""
    monkeypatch.setattr(ccxt_broker, "make_ccxt_broker", make_dying_ccxt_broker)
    limit = _below_the_market(sandbox)
    with _arch(sandbox, state_dir=tmp_path / "state", heartbeat=0.2) as system:
        bot = _resting(system, limit, size=DIE_ON_SIZE)
        sandbox.set_price(SYMBOL, limit * 0.99, limit * 0.995)  # it fills at the exchange
        assert sandbox.orders()[0]["status"] == "FILLED"
        sandbox.release_price(SYMBOL)  # quotes move again: the Trader's broker polls on them
        _restarted_after_death(system)
        wait_for(lambda: [e for e in bot.get_attr("osm_events") if e.kind == "filled"], 30,
                 "the fill reported by the new Trader")  # fmt: skip
        (fill,) = _fills_stay(bot, 1)
        assert fill.size == pytest.approx(DIE_ON_SIZE) and fill.price <= limit
        assert bot.get_attr("osm_positions")[SYMBOL] == pytest.approx(DIE_ON_SIZE * 0.999)
        assert len(sandbox.orders()) == 1


def test_an_order_executed_as_the_trader_died_is_looked_up_never_placed_again(
    sandbox, tmp_path, monkeypatch
):
    """The exchange executed the order and the process died before the journal had its
    answer (nor the state file, written after the journal): the restarted Trader looks the
    order up by its client id and reports it; it is never placed a second time."""
    monkeypatch.setattr(ccxt_broker, "make_ccxt_broker", make_dying_ccxt_broker)
    with _arch(sandbox, state_dir=tmp_path / "state", heartbeat=0.2) as system:
        system.add_brain("bot", base=BuyThenSell, size=DIE_ON_SIZE, sell_after=10**9)
        system["bot"].subscribe((SYMBOL, 1, "Seconds"), 5)
        system.stream([SYMBOL])
        bot = system["bot"]
        _restarted_after_death(system)
        wait_for(lambda: [e for e in bot.get_attr("osm_events") if e.kind == "filled"], 30,
                 "the fill reported by the new Trader")  # fmt: skip
        (fill,) = _fills_stay(bot, 1)
        assert fill.size == pytest.approx(DIE_ON_SIZE)
        assert len(sandbox.orders()) == 1
        assert system["trader"].osm_stats()["recovered_orders"] == 1
        assert not [e for e in bot.get_attr("osm_events") if e.kind == "rejected"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_credentials_stay_in_the_private_directory(sandbox, monkeypatch):
    options = sandbox.ccxt_options()
    key, secret = options.pop("apiKey"), options.pop("secret")
    monkeypatch.setenv("CCXT_API_KEY", key)
    monkeypatch.setenv("CCXT_SECRET", secret)
    with CcxtArchitecture("binance", options=options, log_console=None) as system:
        system.add_brain("bot", base=Resting, limit=1.0)
        system.stream([SYMBOL])
        assert "CCXT_API_KEY" not in os.environ and "CCXT_SECRET" not in os.environ
        private = Path(system.broker.settings["key_file"]).parent
        assert oct(private.stat().st_mode & 0o777) == "0o700"
        assert oct(Path(system.broker.settings["secret_file"]).stat().st_mode & 0o777) == "0o600"
        for name in system.agents:
            pid = system._agents[name].process.pid
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert key.encode() not in environ and secret.encode() not in environ, name
            assert key not in repr(system[name].get_attr("osm_cfg")), name
            assert secret not in repr(system[name].get_attr("osm_cfg")), name
        assert key not in repr(system.broker) and key not in system.broker.state_file
        # the agents that read public data only never get the credentials' files
        assert "key_file" not in repr(system["feeder"].get_attr("osm_cfg"))
        assert "secret_file" not in repr(system["router"].get_attr("osm_cfg"))
        log = system.log_path
    assert not private.exists()
    text = Path(log).read_text() if log and Path(log).exists() else ""
    assert key not in text and secret not in text


def test_a_wrong_secret_fails_before_any_process(sandbox):
    options = sandbox.ccxt_options()
    key = options.pop("apiKey")
    options.pop("secret")
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("osm-ccxt-*"))
    with pytest.raises(ccxt.AuthenticationError) as raised:
        CcxtArchitecture("binance", key, "wrong-secret", options=options, log_console=None)
    assert "wrong-secret" not in str(raised.value)
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("osm-ccxt-*")) == before


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"exchange": "nope"}, "exchange"), ({"currency": ""}, "currency"),
     ({"backfill": "D"}, "backfill"), ({"options": {"apiKey": "x"}}, "options"),
     ({"options": {"password": "x"}}, "password"),
     ({"order_deadline": 0}, "order_deadline")],
)  # fmt: skip
def test_bad_options_name_the_option(kw, field):
    with pytest.raises(ValueError, match=field):
        CcxtArchitecture(**kw)


def test_the_demo_runs_on_the_exchange_sandbox(capsys) -> None:
    import re

    from osmarkets.cli import main

    assert main(["demo", "--broker", "ccxt-sandbox", "--bars", "30", "--speed", "1200"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"bars +[3-9]\d", out) and "all agents and the sandbox stopped" in out
    assert "SmaCross on BTC/USDT" in out


def test_the_demo_refuses_a_symbol_the_exchange_sandbox_lacks(capsys) -> None:
    from osmarkets.cli import main

    assert main(["demo", "--broker", "ccxt-sandbox", "--symbol", "EUR_USD"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--symbol" in err[0] and "BTC/USDT" in err[0]
