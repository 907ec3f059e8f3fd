"""A deployment's launcher, for the chaos tests of its owner process: an OandaArchitecture on
``--state-dir`` with one :class:`~chaos_support.ChaosBrain` (``chaos``) on EUR_USD M1, run until
killed (SIGTERM or SIGINT: a clean shutdown; SIGKILL: the orphan guards clean up, the next run
resumes). The token comes from ``OANDA_ACCESS_TOKEN``.

Prints one JSON line once the Brain handled ``--first-bars`` bars: ``ready``, the owner's ``pid``,
the deployment's ``run_id``, ``resumed_from`` (the pid of a dead owner this run takes over),
``pids`` (the agents' and the name server's), ``agents`` (name -> pid), the private token
directory ``private``.

Run: ``PYTHONPATH=tests/oanda_arch python tests/oanda_arch/chaos_launcher.py --rest-url ...``
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest-url", required=True)
    parser.add_argument("--stream-url", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--log", required=True, help="the ChaosBrain's log file")
    parser.add_argument("--stop-file", default="", help="see ChaosBrain.stop_file")
    parser.add_argument("--size", type=float, default=10)
    parser.add_argument("--history", type=int, default=10)
    parser.add_argument(
        "--first-bars",
        type=int,
        default=1,
        help="bars the Brain handles before the ready line (0: at once)",
    )
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    from chaos_support import M1, ChaosBrain, bars_seen

    from osmarkets.architecture import OandaArchitecture

    with OandaArchitecture(
        logging=False, account_id=args.account, rest_url=args.rest_url,
        stream_url=args.stream_url, state_dir=args.state_dir, poll_interval=0.2,
        heartbeat=0.2, client_options={"backoff": 0.01, "max_backoff": 0.05,
                                       "timeout": (2.0, 5.0)},
    ) as system:  # fmt: skip
        system.add_brain("chaos", base=ChaosBrain, log_path=args.log, stop_file=args.stop_file,
                         size=args.size)  # fmt: skip
        system["chaos"].subscribe(M1, args.history)
        before = bars_seen(args.log)
        system.stream(["EUR_USD"])
        deadline = time.monotonic() + args.ready_timeout
        while bars_seen(args.log) < before + args.first_bars:
            if time.monotonic() > deadline:
                print(json.dumps({"ready": False, "error": "no bar"}), flush=True)
                return 1
            time.sleep(0.05)
        info = {
            "ready": True, "pid": system._owner, "run_id": system.run_id,
            "resumed_from": system.resumed_from, "pids": system.pids(),
            "agents": {name: h.process.pid for name, h in system._agents.items()},
            "private": str(system._private), "state_dir": str(system.state_dir),
        }  # fmt: skip
        print(json.dumps(info), flush=True)
        while True:  # until a signal; the Overmind restarts the agents that die
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
