"""Pure parts of the architecture: synthetic and replayed feeds, risk limits, the demo CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_bars

import osmarkets.feeds as feeds
from osmarkets.agents.risk import RiskLimits
from osmarkets.brokers.base import make_order


def test_synthetic_ticks_are_reproducible_and_realistic() -> None:
    a = list(feeds.synthetic_ticks("EUR_USD", seed=5, count=3000))
    b = list(feeds.synthetic_ticks("EUR_USD", seed=5, count=3000))
    c = list(feeds.synthetic_ticks("EUR_USD", seed=6, count=3000))
    assert a == b and a != c
    times = np.array([t.time for t in a])
    assert np.all(np.diff(times) > 0)
    spreads = np.array([t.ask - t.bid for t in a]) / 0.0001
    assert spreads.min() >= 0.8 - 1e-6 and spreads.max() <= 1.5 + 1e-6
    assert all(t.bid > 0 for t in a)


def test_synthetic_activity_follows_the_time_of_day() -> None:
    day = list(feeds.synthetic_ticks(seed=1, start="2024-01-02 00:00", until="2024-01-03"))
    hours = np.array([(t.time // 3_600_000_000_000) % 24 for t in day])
    assert np.sum(hours == 14) > 2 * np.sum(hours == 2)  # London/NY overlap vs Asia


def test_synthetic_yen_pairs_use_yen_pips() -> None:
    ticks = list(feeds.synthetic_ticks("USD_JPY", seed=1, count=100))
    assert 100 < ticks[0].bid < 200
    assert all(0.008 <= t.ask - t.bid <= 0.015 + 1e-9 for t in ticks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ticks_per_minute": 0}, "ticks_per_minute"), ({"count": -1}, "count"),
     ({"price": -1.0}, "price")],
)  # fmt: skip
def test_synthetic_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        next(feeds.synthetic_ticks(**kwargs))


def test_replay_merges_symbols_in_time_order(tmp_path) -> None:
    eur = make_bars(30, seed=1)
    gbp = make_bars(20, seed=2, start="2024-01-02 00:05")
    path = tmp_path / "gbp.csv"
    gbp.reset_index().to_csv(path, index=False)
    events = list(feeds.replay_events({"EUR_USD": eur, "GBP_USD": str(path)}))
    assert len(events) == 50
    times = [e[2].time for e in events]
    assert times == sorted(times)
    gbp_closes = [e[2].close for e in events if e[1] == "GBP_USD"]
    np.testing.assert_allclose(gbp_closes, gbp["close"].to_numpy())
    assert feeds.base_timeframes({"EUR_USD": eur, "GBP_USD": str(path)}) == {
        "EUR_USD": "M1", "GBP_USD": "M1"
    }  # fmt: skip


def test_replay_of_ticks() -> None:
    ticks = list(feeds.synthetic_ticks(seed=2, count=10))
    import pandas as pd

    frame = pd.DataFrame(
        {"bid": [t.bid for t in ticks], "ask": [t.ask for t in ticks]},
        index=pd.DatetimeIndex(pd.to_datetime([t.time for t in ticks], utc=True), name="time"),
    )
    events = list(feeds.replay_events({"EUR_USD": frame}))
    assert [e[0] for e in events] == ["tick"] * 10
    assert [e[2] for e in events] == ticks
    assert feeds.base_timeframes({"EUR_USD": frame}) == {"EUR_USD": None}


def test_load_frame_refuses_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="DataFrame or a file path"):
        feeds.load_frame(42, "EUR_USD")
    with pytest.raises(ValueError, match="backwards"):
        feeds.load_frame(make_bars(5).iloc[::-1], "EUR_USD")
    with pytest.raises(ValueError, match="no such file"):
        feeds.load_frame(tmp_path / "missing.csv", "EUR_USD")


def test_risk_limits() -> None:
    limits = RiskLimits.from_mapping(
        {"allowed_symbols": ["EUR_USD"], "max_order_size": 1000, "max_position": 1500}
    )
    order = make_order("a-1", "buy", 800, "EUR_USD")
    assert limits.check(order, 0.0) is None
    assert "max_position" in limits.check(order, 1000.0)
    assert limits.check(make_order("a-2", "sell", 800, "EUR_USD"), 1000.0) is None  # reduces
    assert "max_order_size" in limits.check(make_order("a-3", "buy", 1001, "EUR_USD"), 0.0)
    assert "not allowed" in limits.check(make_order("a-4", "buy", 1, "GBP_USD"), 0.0)
    limits.kill_switch = True
    assert "kill switch" in limits.check(order, 0.0)


@pytest.mark.parametrize(
    ("values", "match"),
    [({"max_size": 1}, "unknown"), ({"max_order_size": -1}, "max_order_size"),
     ({"allowed_symbols": "EUR_USD"}, "allowed_symbols")],
)  # fmt: skip
def test_risk_limits_bad_input(values, match) -> None:
    with pytest.raises(ValueError, match=match):
        RiskLimits.from_mapping(values)


@pytest.mark.timeout(120)
def test_demo_runs_and_leaves_nothing() -> None:
    # A private, short runtime directory (ipc paths are limited to 107 bytes): what is left in
    # it is the demo's, whatever other test runs on this machine do meanwhile.
    runtime = Path(tempfile.mkdtemp(prefix="osm", dir="/tmp"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "osmarkets", "demo", "--bars", "80", "--seed", "3"],
            capture_output=True, text=True, timeout=100,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = proc.stdout
        assert "bars" in out and "fills" in out and "equity" in out
        assert "all agents stopped" in out
        # what it did, where the logs are, what to try next
        assert "realised P&L" in out and "unrealised P&L" in out and "next: osmarkets" in out
        logs = Path(out.split("logs: ", 1)[1].splitlines()[0])
        assert logs.exists()  # the Logger agent writes every line it gets there
        assert logs.parent.name == "logs" and f"logs to {logs}" in proc.stderr
        assert [p.name for p in logs.parent.parent.iterdir()] == ["logs"]  # the rest removed
        shutil.rmtree(logs.parent.parent)
        assert list((runtime / ".osbrain_ipc").glob("osm-*")) == []
        assert list((runtime / "osmarkets" / "nameservers").glob("*")) == []
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.parametrize(("argv", "match"), [(["--bars", "0"], "--bars"),
                                             (["--speed", "-1"], "--speed"),
                                             (["--symbol", "EUR USD"], "--symbol")])  # fmt: skip
def test_demo_bad_input_is_one_line(argv, match) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "osmarkets", "demo", *argv], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert match in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_synthetic_feed_labels_each_symbol_with_its_own_ticks() -> None:
    from osmarkets.agents.feeder import source_events

    source = {"kind": "synthetic", "symbols": ["EUR_USD", "USD_JPY"], "seed": 2, "bars": 30}
    events = list(source_events(source))
    by_symbol: dict[str, list] = {}
    for kind, symbol, tick in events:
        assert kind == "tick"
        by_symbol.setdefault(symbol, []).append(tick)
    assert set(by_symbol) == {"EUR_USD", "USD_JPY"}
    # each symbol's ticks are that symbol's own stream (yen prices near 150, euro near 1.1)
    assert all(t.bid < 10 for t in by_symbol["EUR_USD"])
    assert all(t.bid > 10 for t in by_symbol["USD_JPY"])
    assert by_symbol["EUR_USD"] == list(feeds.synthetic_minutes("EUR_USD", bars=30, seed=2))
    times = [tick.time for _, _, tick in events]
    assert times == sorted(times)
