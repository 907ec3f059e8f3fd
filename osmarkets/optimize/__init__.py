"""Portfolio optimisation and walk-forward simulation.

Generator (:mod:`.space`: grid, random, refinement) -> Backtester (:mod:`.evaluate`:
vectorised or event-driven evaluation, filters, smoothing) -> Portfolio (:mod:`.portfolio`:
greedy, correlation-aware), in-process or distributed over osBrain agents (:mod:`.agents`,
imported only when ``workers > 0``); :mod:`.walkforward` repeats it window after window.
"""

from .evaluate import Evaluator, Filters, smooth_scores
from .pipeline import build_portfolio, explore
from .portfolio import Portfolio, select_portfolio
from .results import ExploreResult, WalkForwardResult, load_table
from .space import Choice, FloatRange, IntRange, LogFloatRange, Space, config_id
from .walkforward import make_windows, walk_forward

__all__ = [
    "Choice", "Evaluator", "ExploreResult", "Filters", "FloatRange", "IntRange",
    "LogFloatRange", "Portfolio", "Space", "WalkForwardResult", "build_portfolio", "config_id",
    "explore", "load_table", "make_windows", "select_portfolio", "smooth_scores",
    "walk_forward",
]  # fmt: skip
