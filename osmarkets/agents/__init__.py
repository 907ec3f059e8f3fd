"""osBrain agents: thin adapters that move messages between sockets and the pure core.

Feeder -> Router (PUSH/PULL), Router -> Brains (PUB/SUB, topic = bar-series key, sequence
numbers), Brain -> Router history (REQ/REP), Brain -> Trader orders (PUSH/PULL), Trader ->
Brain order events (PUSH/PULL), Logger, and the Overmind that supervises them all.
"""

from .base import OsmAgent
from .brain import BrainAgent, make_brain_class
from .feeder import FeederAgent
from .logger import LoggerAgent
from .overmind import Overmind
from .risk import RiskLimits
from .router import RouterAgent
from .trader import TraderAgent

__all__ = [
    "BrainAgent",
    "FeederAgent",
    "LoggerAgent",
    "OsmAgent",
    "Overmind",
    "RiskLimits",
    "RouterAgent",
    "TraderAgent",
    "make_brain_class",
]
