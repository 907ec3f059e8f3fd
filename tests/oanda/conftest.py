import pytest
from oanda_support import TOKEN

from osmarkets.brokers.oanda import OandaClient, OandaSandbox


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN,
        instruments=["EUR_USD", "USD_JPY", "DE30_EUR"],
        seed=7,
        heartbeat=0.2,
        tick_interval=0.05,
    ) as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    with OandaClient(
        TOKEN,
        sandbox.account_id,
        rest_url=sandbox.rest_url,
        stream_url=sandbox.stream_url,
        backoff=0.01,
        max_backoff=0.05,
        timeout=(2.0, 5.0),
    ) as c:
        yield c
