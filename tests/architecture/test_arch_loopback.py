"""Safe default: every socket the architecture's processes listen on is bound to 127.0.0.1."""

import os
import socket
import struct
from pathlib import Path

import pytest

from osmarkets.architecture import SimulatedArchitecture

pytestmark = pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc")


def _inet_listeners() -> dict[int, str]:
    """Socket inode -> local IPv4 address, for listening TCP and bound UDP sockets."""
    found: dict[int, str] = {}
    for table, listening in (("tcp", "0A"), ("udp", "07")):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != listening:
                continue
            address = fields[1].split(":")[0]
            ip = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
            found[int(fields[9])] = ip
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_name_server_and_agents_listen_on_loopback_only(simulated) -> None:
    system: SimulatedArchitecture = simulated(symbols=["EUR_USD"], bars=20, seed=1)
    listeners = _inet_listeners()
    bound = {
        (pid, listeners[inode])
        for pid in system.pids()
        for inode in _socket_inodes(pid)
        if inode in listeners
    }
    assert bound, "expected the name server to listen on an inet socket"
    assert {ip for _, ip in bound} == {"127.0.0.1"}, bound
