"""The broker conformance kit, run on the brokers osMarkets ships (the exchange sandbox's run
is in tests/ccxt/)."""

from __future__ import annotations

from osmarkets.testing.broker_conformance import BrokerConformance
from osmarkets.testing.venues import OandaSandboxVenue, SimulatedVenue, venue_fixture


class TestSimulatedBroker(BrokerConformance):
    venue = venue_fixture(SimulatedVenue)


class TestOandaSandbox(BrokerConformance):
    venue = venue_fixture(OandaSandboxVenue)
