"""The seam of live deployments: a LiveArchitecture on a broker adapter that is not OANDA (a
fake one: the simulated broker as the Trader's, synthetic quotes as the Feeder), and the pure
parts of the seam (LiveBroker, secret files, the history source registry, OandaLive's checks)."""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from arch_brains import Recorder
from conftest import wait_for

from osmarkets import LiveArchitecture, LiveBroker, secrecy
from osmarkets.agents import history
from osmarkets.brokers.live import load_object, write_secret_file
from osmarkets.brokers.oanda import OandaLive
from osmarkets.brokers.simulated import SimulatedBroker

SECRET_ENV = "OSM_TEST_FAKE_SECRET"
SECRET = "fake-secret-0123456789"


class FakeLive(LiveBroker):
    """A crypto-exchange-shaped adapter: a secret from the environment, 'BTC/USDT' symbols."""

    kind: ClassVar[str] = "fake"
    secret_env: ClassVar[tuple[str, ...]] = (SECRET_ENV,)
    restartable: ClassVar[tuple[str, ...]] = ("brain", "router")

    def __init__(self, tradeable: Sequence[str] = ("BTC/USDT", "ETH/USDT")) -> None:
        self.tradeable = set(tradeable)
        self.secret_file = ""
        self.closed = 0

    @property
    def state_file(self) -> str:
        return "trader-fake-account.json"

    def open(self, private_dir: Path, environ: Mapping[str, str | None]) -> None:
        secret = environ.get(SECRET_ENV)
        if secret != SECRET:
            raise PermissionError("fake exchange: invalid API key")
        self.secret_file = write_secret_file(private_dir, "fake-secret", secret)

    def close(self) -> None:
        self.closed += 1

    def symbols(self, symbols: Sequence[str]) -> list[str]:
        for symbol in symbols:
            if symbol not in self.tradeable:
                raise ValueError(f"symbol {symbol!r}: not tradeable on the fake exchange")
        return list(symbols)

    def trader_factory(self, state_path: str, poll_interval: float) -> Any:
        return functools.partial(SimulatedBroker, 100_000)

    def feeder(
        self, symbols: Sequence[str], options: Mapping[str, Any]
    ) -> tuple[type | str, dict[str, Any]]:
        unknown = set(options) - {"bars"}
        if unknown:
            raise ValueError(f"stream: unknown option(s) {', '.join(sorted(unknown))}")
        source = {"kind": "synthetic", "symbols": list(symbols), "seed": 3,
                  "bars": options.get("bars", 60), "options": {}}  # fmt: skip
        return "osmarkets.agents.feeder:FeederAgent", {"source": source, "speed": 0}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    monkeypatch.setattr(secrecy, "_remembered", {})  # no secret remembered across tests
    return where


def test_a_live_architecture_on_another_adapter(architectures, private_tmp, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    broker = FakeLive()
    system = architectures(LiveArchitecture, broker=broker, logging=False)
    assert SECRET_ENV not in os.environ  # scrubbed before any process was forked
    private = Path(broker.secret_file).parent
    assert private.parent == private_tmp and private.name.startswith("osm-fake-")
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(broker.secret_file).st_mode) == 0o600
    assert system.restartable == ("brain", "router")
    system.add_brain("rec", base=Recorder, buy_on=2, size=1)
    system["rec"].subscribe(("BTC/USDT", 1, "Minutes"), 50)
    with pytest.raises(ValueError, match="DOGE/USDT"):
        system.stream(["BTC/USDT", "DOGE/USDT"])
    with pytest.raises(ValueError, match="unknown option"):
        system.stream(["BTC/USDT"], speed=3)
    with pytest.raises(ValueError, match="stream symbols"):
        system.stream("BTC/USDT")
    system.stream(["BTC/USDT"], bars=60)
    assert system.agents.count("feeder") == 1
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 5, what="bars at the Brain")
    wait_for(lambda: system["rec"].position("BTC/USDT") == 1, what="the fill")
    system.shutdown()
    assert not private.exists() and broker.closed >= 1


def test_a_refused_credential_starts_nothing(private_tmp, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "wrong")
    broker = FakeLive()
    with pytest.raises(PermissionError, match="invalid API key"):
        LiveArchitecture(broker=broker, logging=False)
    assert SECRET_ENV not in os.environ
    assert list(private_tmp.glob("osm-fake-*")) == [] and broker.closed == 1
    with pytest.raises(TypeError, match="LiveBroker"):
        LiveArchitecture(broker=object(), logging=False)  # type: ignore[arg-type]


def test_the_seam_is_abstract_and_secret_files_are_private(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        LiveBroker()  # type: ignore[abstract]
    path = write_secret_file(tmp_path, "key", "s3cret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and Path(path).read_text() == "s3cret"
    with pytest.raises(FileExistsError):
        write_secret_file(tmp_path, "key", "again")
    with pytest.raises(ValueError, match="plain file name"):
        write_secret_file(tmp_path, "../key", "s3cret")
    assert load_object("osmarkets.brokers.live:LiveBroker") is LiveBroker
    with pytest.raises(ValueError, match="import path"):
        load_object("osmarkets.brokers.live.LiveBroker")


def test_history_sources_are_registered_by_import_path(monkeypatch) -> None:
    monkeypatch.setattr(history, "HISTORY_SOURCES", dict(history.HISTORY_SOURCES))
    source = history.make_source({"kind": "oanda", "settings": {"account_id": "x"}})
    assert isinstance(source, history.OandaHistorySource)
    with pytest.raises(ValueError, match="unknown 'exchange'"):
        history.make_source({"kind": "exchange", "settings": {}})
    history.register_history_source("exchange", "osmarkets.agents.history:OandaHistorySource")
    assert isinstance(history.make_source({"kind": "exchange"}), history.OandaHistorySource)
    with pytest.raises(ValueError, match="import path"):
        history.register_history_source("bad", history.OandaHistorySource)  # type: ignore[arg-type]


def test_oanda_live_checks_its_options_without_the_network() -> None:
    with pytest.raises(ValueError, match="account_id"):
        OandaLive()
    with pytest.raises(ValueError, match="environment"):
        OandaLive("101-004-1-001", environment="paper")
    with pytest.raises(ValueError, match="backfill"):
        OandaLive("101-004-1-001", backfill="D")
    broker = OandaLive("101-004-1-001", access_token="never-shown")
    assert broker.kind == "oanda" and broker.secret_env == ("OANDA_ACCESS_TOKEN",)
    assert broker.state_file == "trader-101-004-1-001.json"
    assert "never-shown" not in repr(broker)
    with pytest.raises(ValueError, match="unknown option"):
        broker.feeder(["EUR_USD"], {"speed": 1})
    cls, cfg = broker.feeder(["EUR_USD"], {"backfill": "S5"})
    assert cls == "osmarkets.agents.oanda:OandaFeederAgent" and cfg["backfill"] == "S5"
