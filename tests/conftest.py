"""Fixtures for the whole test suite."""

import os

import pytest
from hypothesis import settings

# The same examples on every run: CI must not pass or fail by the draw. A failure found by a
# random search belongs in an issue with its example (exploring: HYPOTHESIS_PROFILE=explore).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def private_nameserver_registry(tmp_path_factory, monkeypatch):
    """Every architecture a test starts records its name server in a registry folder of its
    own, so tests never see (or leave behind) entries of the user's real architectures."""
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(tmp_path_factory.mktemp("registry")))
