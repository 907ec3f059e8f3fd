"""``osmarkets gui`` finds the architecture to open and its keys: without ``--nameserver``, the
one running on this machine, through the per-user registry whose entries hold the deployment's
keys; with ``--nameserver``, the registry entry of that name server; else ``--key-file`` (no
Qt needed: only the resolution is run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from osmarkets import registry
from osmarkets.agents.auth import DeploymentKeys, write_key_file
from osmarkets.cli import UsageError, build_parser, main
from osmarkets.commands.gui import _check


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "nameservers"
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(folder))
    monkeypatch.delenv("OSMARKETS_NAMESERVER", raising=False)
    return folder


def resolve(*argv: str) -> tuple[str, DeploymentKeys] | None:
    return _check(build_parser().parse_args(["gui", *argv]))


def register(nsaddr: str, **kwargs: Any) -> tuple[Path, DeploymentKeys]:
    """A registry entry of this (live) process, with keys, as an Architecture writes it."""
    keys = DeploymentKeys.generate()
    return registry.register(nsaddr, keys=keys.to_json(), **kwargs), keys


def one_line_error(capsys: Any, *argv: str) -> str:
    assert main(["gui", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_no_running_architecture_is_a_one_line_error(capsys: Any) -> None:
    err = one_line_error(capsys)
    assert "no running architecture" in err and "--nameserver" in err


def test_the_one_running_architecture_is_found_with_its_keys() -> None:
    from osmarkets.architecture import Architecture

    with Architecture(supervise=False) as system:
        assert resolve() == (str(system.nsaddr), system.keys)
        # an explicit --nameserver takes the keys of its registry entry
        assert resolve("--nameserver", str(system.nsaddr)) == (str(system.nsaddr), system.keys)
        port = str(system.nsaddr).rpartition(":")[2]
        assert resolve("--nameserver", f"localhost:{port}") == (f"localhost:{port}", system.keys)
    with pytest.raises(UsageError, match="no running architecture"):
        resolve()  # removed on shutdown


def test_several_are_listed_and_the_user_picks_one(capsys: Any) -> None:
    register("127.0.0.1:30001")
    _, keys = register("127.0.0.1:30002")
    err = one_line_error(capsys)
    assert "2 architectures" in err
    assert err.index("127.0.0.1:30002") < err.index("127.0.0.1:30001")  # newest first
    assert resolve("--nameserver", "127.0.0.1:30002") == ("127.0.0.1:30002", keys)


def test_dead_owners_are_ignored_and_cleaned() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = registry.register("127.0.0.1:30003", pid=child.pid)
    live, keys = register("127.0.0.1:30004")
    assert resolve() == ("127.0.0.1:30004", keys)
    assert not stale.exists() and live.exists()


def test_environment_variable_and_bad_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _, keys = register("127.0.0.1:4321")
    monkeypatch.setenv("OSMARKETS_NAMESERVER", "127.0.0.1:4321")
    assert resolve() == ("127.0.0.1:4321", keys)
    with pytest.raises(UsageError, match="HOST:PORT"):
        resolve("--nameserver", "127.0.0.1:notaport")


def test_an_unknown_nameserver_needs_a_key_file(capsys: Any, tmp_path: Path) -> None:
    register("127.0.0.1:30005")
    err = one_line_error(capsys, "--nameserver", "127.0.0.1:1234")
    assert "127.0.0.1:1234" in err and "--key-file" in err
    keys = DeploymentKeys.generate()
    path = write_key_file(tmp_path / "deployment.key", keys)
    assert resolve("--nameserver", "127.0.0.1:1234", "--key-file", str(path)) == (
        "127.0.0.1:1234",
        keys,
    )


def test_a_registry_entry_is_a_key_file_naming_its_nameserver(tmp_path: Path) -> None:
    entry, keys = register("127.0.0.1:30006")
    copy = tmp_path / "entry.json"
    copy.write_bytes(entry.read_bytes())
    copy.chmod(0o600)
    registry.unregister(entry)  # not running here any more: the file alone is enough
    assert resolve("--key-file", str(copy)) == ("127.0.0.1:30006", keys)


def test_a_missing_key_file_is_a_one_line_error(capsys: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    err = one_line_error(capsys, "--nameserver", "127.0.0.1:1234", "--key-file", str(missing))
    assert "--key-file" in err and str(missing) in err


def test_a_key_file_others_can_read_is_refused(capsys: Any, tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "open.key", DeploymentKeys.generate())
    os.chmod(path, 0o644)
    err = one_line_error(capsys, "--nameserver", "127.0.0.1:1234", "--key-file", str(path))
    assert "readable by other users" in err and "chmod 600" in err
    bad = tmp_path / "bad.key"
    bad.write_text("{not json")
    bad.chmod(0o600)
    assert "not JSON" in one_line_error(capsys, "--key-file", str(bad))


def test_a_registry_entry_without_keys_or_widened_is_refused(capsys: Any) -> None:
    old = registry.register("127.0.0.1:30007")  # an entry written without keys
    err = one_line_error(capsys)
    assert "holds no keys" in err and "--key-file" in err
    registry.unregister(old)
    entry, _ = register("127.0.0.1:30008")
    os.chmod(entry, 0o644)
    err = one_line_error(capsys, "--nameserver", "127.0.0.1:30008")
    assert "readable by other users" in err and "--key-file" in err


def test_the_demo_makes_its_own_keys(capsys: Any, tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "deployment.key", DeploymentKeys.generate())
    assert "--demo" in one_line_error(capsys, "--demo", "--key-file", str(path))
