"""Fixtures for the whole test suite."""

import pytest


@pytest.fixture(autouse=True)
def private_nameserver_registry(tmp_path_factory, monkeypatch):
    """Every architecture a test starts records its name server in a registry folder of its
    own, so tests never see (or leave behind) entries of the user's real architectures."""
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(tmp_path_factory.mktemp("registry")))
