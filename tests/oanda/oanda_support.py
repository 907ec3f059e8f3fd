"""Helpers shared by the OANDA tests."""

import json
import time
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "sandbox-secret-token-0123456789"


def load(name: str):
    path = FIXTURES / name
    if path.suffix == ".ndjson":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def wait_for(condition, timeout: float = 10.0, interval: float = 0.01):
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
