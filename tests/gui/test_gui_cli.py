"""``osmarkets gui`` without ``--nameserver`` finds the architecture running on this machine
through the per-user registry (no Qt needed: only the address resolution is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from osmarkets import registry
from osmarkets.cli import UsageError, build_parser, main
from osmarkets.commands.gui import _check


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "nameservers"
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(folder))
    monkeypatch.delenv("OSMARKETS_NAMESERVER", raising=False)
    return folder


def resolve(*argv: str) -> str | None:
    return _check(build_parser().parse_args(["gui", *argv]))


def test_no_running_architecture_is_a_one_line_error(capsys: Any, own_registry: Path) -> None:
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no running architecture" in err and "--nameserver" in err


def test_the_one_running_architecture_is_found() -> None:
    from osmarkets.architecture import Architecture

    with Architecture(supervise=False) as system:
        assert resolve() == str(system.nsaddr)
        assert resolve("--nameserver", "127.0.0.1:1234") == "127.0.0.1:1234"  # explicit wins
    with pytest.raises(UsageError, match="no running architecture"):
        resolve()  # removed on shutdown


def test_several_are_listed_and_the_user_picks_one(capsys: Any) -> None:
    registry.register("127.0.0.1:30001")
    registry.register("127.0.0.1:30002")
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 architectures" in err
    assert err.index("127.0.0.1:30002") < err.index("127.0.0.1:30001")  # newest first


def test_dead_owners_are_ignored_and_cleaned(own_registry: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = registry.register("127.0.0.1:30003", pid=child.pid)
    live = registry.register("127.0.0.1:30004")
    assert resolve() == "127.0.0.1:30004"
    assert not stale.exists() and live.exists()


def test_environment_variable_and_bad_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSMARKETS_NAMESERVER", "127.0.0.1:4321")
    assert resolve() == "127.0.0.1:4321"
    with pytest.raises(UsageError, match="HOST:PORT"):
        resolve("--nameserver", "127.0.0.1:notaport")
