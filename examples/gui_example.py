"""Watch a running architecture in the real-time window (needs the ``gui`` extra:
``python -m pip install '.[gui]'`` from the checkout).

A live-paced deployment (synthetic EUR_USD quotes at 60x real time, the example SmaCross Brain,
a Trader on the simulated broker) and the GUI in its own process. Closing the window ends only
the GUI; the script then shuts the architecture down.

    python examples/gui_example.py
"""

from osmarkets import run_script
from osmarkets.gui import add_gui, demo_architecture


def main() -> int:
    with demo_architecture(speed=60.0, seed=1) as system:
        print(
            f"name server {system.nsaddr}: `osmarkets gui --nameserver {system.nsaddr}` "
            "opens another window on it"
        )
        gui = add_gui(system, series="EUR_USD:M1")
        gui.join()  # until the window is closed
        print(system.status()[["kind", "running", "received", "errors"]])
    return 0


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
