"""Notifications and operator controls on the live demo, with local receivers only.

A live-paced deployment (synthetic EUR_USD quotes at 600x real time, the example SmaCross
Brain, a Trader on the simulated broker) with the Informer sending to two channels on
127.0.0.1: an SMTP server (aiosmtpd, in the ``test`` extra) and a JSON webhook. On the way the
operator pauses the Brain, resumes it, pauses it again and flattens it, as ``osmarkets ctl``
would; each control
is notified too. At the end the daily summary is asked for, and what each receiver got is
printed.

    python examples/informer_example.py [--seconds 20]
"""

import argparse
import functools
import socket
import sys
import time

from osmarkets import run_script
from osmarkets.architecture import Architecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.strategies import SmaCross
from osmarkets.testing.webhook import WebhookReceiver


class Inbox:
    """aiosmtpd's handler: keeps the text of every mail."""

    def __init__(self) -> None:
        self.mails: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)  # fmt: skip
        part = message.get_body(("plain",)) or message
        self.mails.append(f"{message['subject']}\n{part.get_content()}")
        return "250 OK"


def smtp_server(inbox: Inbox):  # noqa: ANN201
    """A plain SMTP server on a free port of 127.0.0.1 (aiosmtpd)."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        sys.exit("informer_example: needs aiosmtpd (python -m pip install aiosmtpd)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long it trades")
    args = parser.parse_args()
    inbox = Inbox()
    controller, port = smtp_server(inbox)
    mailto = (f"mailto://127.0.0.1:{port}?smtp=127.0.0.1&mode=insecure"
              "&from=osmarkets@example.com&to=operator@example.com")  # fmt: skip
    try:
        with WebhookReceiver() as webhook:
            print(f"webhook on {webhook.url}, SMTP on 127.0.0.1:{port}", flush=True)
            rules = {"batch_seconds": 2.0, "summary_at": "17:30", "drawdown": 0.02}
            with Architecture(
                broker_factory=functools.partial(SimulatedBroker, 100_000),
                informer={"urls": [webhook.url, mailto], "rules": rules},
            ) as system:
                system.add_brain("sma", SmaCross, fast=5, slow=20)
                system["sma"].subscribe(("EUR_USD", 1, "Minutes"), 100)
                system.stream(["EUR_USD"], speed=600.0, seed=3)
                # pause, resume; at the end pause (no new orders) and flatten: flat, quiet
                steps = [("pause", 0.3), ("resume", 0.5), ("pause", 0.8), ("flatten", 0.85)]
                started = time.monotonic()
                for action, at in steps:
                    time.sleep(max(0.0, started + at * args.seconds - time.monotonic()))
                    getattr(system, action)("sma")
                    print(f"operator: {action} sma", flush=True)
                time.sleep(max(0.0, started + args.seconds - time.monotonic()))
                system["informer"].send_summary()  # now; the daily one goes at 17:30 UTC
                deadline = time.monotonic() + 20  # (Apprise spaces two e-mails by 5.5 s)
                while time.monotonic() < deadline:
                    status = system["informer"].status()
                    if not status["queued"] and not status["sending"]:
                        break
                    time.sleep(0.2)
                print(system.operator_status()["brains"]["sma"])
                print("informer:", system["informer"].status())
            print(f"\nwebhook: {len(webhook.bodies)} posts")
            for line in webhook.messages()[-12:]:
                print("  ", line)
    finally:
        controller.stop()
    print(f"\ne-mail: {len(inbox.mails)} mails; the last one:")
    print("   " + (inbox.mails[-1].replace("\n", "\n   ") if inbox.mails else "(none)"))
    return 0


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
