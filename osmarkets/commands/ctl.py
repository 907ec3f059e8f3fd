"""``osmarkets ctl``: the operator's controls on a running deployment, from another terminal.

It attaches as ``osmarkets gui`` does (the registry entry of the deployment, or
``--nameserver`` and ``--key-file``): every call carries the deployment's key, so only its
owner's user (who can read the entry) can pause, flatten or kill.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli import UsageError, examples, first_line

ACTIONS = ("pause", "resume", "flatten", "cancel", "kill", "status")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ctl",
        help="pause, resume or flatten a Brain, cancel orders, the kill switch, status",
        description="Operator controls on a running deployment. pause NAME: the Brain's new "
        "orders are refused (reason 'paused'), it keeps receiving bars; resume NAME; flatten "
        "[NAME]: close the Brain's positions (none: every Brain's; --account: also what the "
        "account holds that no Brain does); cancel "
        "[NAME]: cancel pending orders; kill: refuse every order, cancel every pending order, "
        "flatten every Brain and stop it; status: each Brain's state, positions, P&L.",
        **examples(
            "osmarkets ctl status",
            "osmarkets ctl pause sma",
            "osmarkets ctl --nameserver 127.0.0.1:9090 --key-file deployment.key kill",
        ),
    )
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("brain", nargs="?", help="the Brain (pause, resume; flatten, cancel)")
    parser.add_argument("--nameserver", metavar="HOST:PORT",
                        help="name server of the deployment (default: $OSMARKETS_NAMESERVER, "
                        "else the one running on this machine for this user)")  # fmt: skip
    parser.add_argument(
        "--key-file", metavar="PATH", help="the deployment's key file (default: registry entry)"
    )
    parser.add_argument(
        "--account", action="store_true", help="flatten: also what no Brain holds in the account"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.action in ("pause", "resume") and not args.brain:
        raise UsageError(f"{args.action}: name the Brain (osmarkets ctl {args.action} NAME)")
    if args.action in ("kill", "status") and args.brain:
        raise UsageError(f"{args.action}: takes no Brain name, got {args.brain!r}")
    if args.account and args.action != "flatten":
        raise UsageError(f"--account: only with flatten, not {args.action}")
    from .gui import find_deployment

    address, keys = find_deployment(args.nameserver, args.key_file)
    from ..agents.auth import install_pyro_key
    from ..agents.proxy import AgentProxy
    from ..operator import Controls

    install_pyro_key(keys.pyro)
    proxies: dict[str, Any] = {}

    def proxy(name: str) -> Any:
        if name not in proxies:
            proxies[name] = AgentProxy(name, address, timeout=5.0, call_timeout=10.0)
        return proxies[name]

    controls = Controls(proxy)
    call: Any = {"pause": controls.pause, "resume": controls.resume, "flatten": controls.flatten,
            "cancel": controls.cancel_all, "kill": controls.kill,
            "status": controls.status}[args.action]  # fmt: skip
    try:
        if args.action == "flatten":
            answer = controls.flatten(args.brain, args.account)
        else:
            answer = call(args.brain) if args.action not in ("kill", "status") else call()
    except ValueError as exc:  # an unknown Brain, said by the Trader
        raise UsageError(first_line(exc)) from None
    except Exception as exc:  # the deployment is gone, or does not take this key
        raise UsageError(
            f"the deployment at {address} did not answer: {first_line(exc)}"
        ) from None
    finally:
        for made in proxies.values():
            made._pyroRelease()
    print(json.dumps(answer, indent=2, sort_keys=True) if args.json else _text(args, answer))
    return 0


def _text(args: argparse.Namespace, answer: dict[str, Any]) -> str:
    """The answer for a person: a status (pause, resume and status answer with one) as one
    line per Brain, else what was done."""
    if "kill_switch" not in answer:
        return f"{args.action}: " + ", ".join(
            f"{k} {_short(v)}" for k, v in sorted(answer.items())
        )
    lines = [f"kill switch: {'on' if answer.get('kill_switch') else 'off'}"]
    for brain, row in sorted((answer.get("brains") or {}).items()):
        held = ", ".join(f"{s} {u:g}" for s, u in sorted(row["positions"].items())) or "flat"
        lines.append(f"{brain}: {row['state']}, P&L {row['pnl']:+,.2f}, {row['fills']} fills, "
                     f"{row['pending']} pending, {held}")  # fmt: skip
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return f"[{len(value)}] " + " ".join(map(str, value[:10])) + (" ..." * (len(value) > 10))
    return str(value)
