"""The broker conformance kit on the ccxt adapter: ccxt's unmodified binance class against the
local exchange sandbox."""

from __future__ import annotations

import pytest

from osmarkets.brokers.ccxt.testing import ExchangeSandboxVenue
from osmarkets.testing.broker_conformance import BrokerConformance
from osmarkets.testing.venues import venue_fixture


class TestExchangeSandbox(BrokerConformance):
    venue = venue_fixture(ExchangeSandboxVenue)

    # Known to fail now and then in a full run of the suite (never alone, 9 runs): a bar with
    # no quote at all, neither backfilled nor live. The sandbox's prices move on a thread of
    # this test process (a step every 50 ms): when the loaded machine starves it for a whole
    # 1-second bar, the venue itself has no price in that bar, and the check cannot tell that
    # from a lost one. Left open (closing note of session 7): the kit should ask the venue
    # which bars it had.
    @pytest.mark.xfail(strict=False, reason="a starved sandbox clock thread leaves a bar "
                       "without any price (see the comment)")  # fmt: skip
    def test_a_dropped_stream_reconnects_without_a_lost_bar(self, venue):
        super().test_a_dropped_stream_reconnects_without_a_lost_bar(venue)
