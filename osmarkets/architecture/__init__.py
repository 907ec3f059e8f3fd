"""Deployments: an :class:`Architecture` owns the name server and every agent process.

One module per deployment:

- :mod:`osmarkets.architecture.base`: :class:`Architecture` (the name server, Router, Trader,
  Logger and Overmind; Brains and Feeders on request; supervision, restarts, shutdown) and
  :class:`AgentDiedError`;
- :mod:`osmarkets.architecture.simulated`: :class:`SimulatedArchitecture`, the embedded
  simulated broker replaying data in lock-step;
- :mod:`osmarkets.architecture.live`: :class:`LiveArchitecture`, the deployment on any live
  broker through its adapter (a :class:`~osmarkets.brokers.live.LiveBroker`);
- :mod:`osmarkets.architecture.oanda`: :class:`OandaArchitecture`, a LiveArchitecture on an
  OANDA v20 account (or the bundled sandbox);
- :mod:`osmarkets.architecture.ccxt`: :class:`CcxtArchitecture`, a LiveArchitecture on a
  crypto exchange through ccxt (or the bundled exchange sandbox).

Every name is importable from here (``from osmarkets.architecture import OandaArchitecture``).
"""

from __future__ import annotations

from .base import AgentDiedError, Architecture
from .base import _visible as _visible  # (tests wrap their own calls with it)
from .ccxt import CcxtArchitecture
from .live import LiveArchitecture
from .oanda import OandaArchitecture
from .simulated import SimulatedArchitecture

__all__ = [
    "AgentDiedError",
    "Architecture",
    "CcxtArchitecture",
    "LiveArchitecture",
    "OandaArchitecture",
    "SimulatedArchitecture",
]
