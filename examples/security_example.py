"""A tcp deployment with its keys, and what a stranger gets from it (nothing).

Run: ``python examples/security_example.py``. It starts the whole architecture on the simulated
broker over tcp (every link CURVE-encrypted, every control call HMAC-authenticated), writes the
deployment's key file the way ``osmarkets gui --key-file`` and ``osmarkets worker --key-file``
read it, then plays the stranger: a Pyro call without the key and a ZeroMQ peer with another
CURVE key. Both are refused and counted; the deployment trades on. See docs/security.rst.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import Pyro4
import zmq

from osmarkets import Brain, SimulatedArchitecture, run_script
from osmarkets.agents.auth import DeploymentKeys, curve_client, read_key_file, write_key_file


class BuyOnce(Brain):
    def on_new_bar(self, series) -> None:  # type: ignore[no-untyped-def]
        if len(series) == 5 and self.position(series.bsid.symbol) == 0:
            self.send_order(side="buy", size=1000, symbol=series.bsid.symbol)


def main() -> None:
    with SimulatedArchitecture(symbols=["EUR_USD"], bars=200, transport="tcp") as system:
        system.add_brain("buyer", base=BuyOnce)
        system["buyer"].subscribe(("EUR_USD", 1, "Minutes"), 50)

        # the key file a tool on another machine would be given (mode 0600)
        key_file = Path(tempfile.mkdtemp()) / "keys.json"
        write_key_file(key_file, system.keys)
        assert read_key_file(key_file) == system.keys
        print(f"key file: {key_file} (mode {key_file.stat().st_mode & 0o777:o})")

        # a stranger's Pyro call: refused before anything is deserialised
        uri = system._nameserver_proxy().lookup("trader")
        stranger = Pyro4.core.Proxy(uri)
        stranger._pyroHmacKey = None
        try:
            stranger.ping()
        except Pyro4.errors.PyroError as exc:
            print(f"Pyro call without the key: refused ({exc})")

        # a ZeroMQ peer with another CURVE key: refused at the handshake, counted
        context = zmq.Context()
        peer = context.socket(zmq.PUSH)
        curve_client(peer, DeploymentKeys.generate())
        peer.curve_serverkey = system.keys.curve_public
        address = system["trader"].addr("orders")
        peer.connect(f"tcp://{address.address}")
        peer.send(b"an order, maybe", zmq.NOBLOCK)
        deadline = time.monotonic() + 10
        while system["trader"].osm_stats()["refused_peers"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"peers refused by the Trader: {system['trader'].osm_stats()['refused_peers']}")
        context.destroy(linger=0)

        result = system.run(timeout=120)
        print(f"the deployment traded on: {len(result.trades)} fill(s), "
              f"final value {result.final_value:,.2f}")  # fmt: skip


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
