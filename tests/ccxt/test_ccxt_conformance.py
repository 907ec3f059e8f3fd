"""The broker conformance kit on the ccxt adapter: ccxt's unmodified binance class against the
local exchange sandbox."""

from __future__ import annotations

from osmarkets.brokers.ccxt.testing import ExchangeSandboxVenue
from osmarkets.testing.broker_conformance import BrokerConformance
from osmarkets.testing.venues import venue_fixture


class TestExchangeSandbox(BrokerConformance):
    venue = venue_fixture(ExchangeSandboxVenue)
