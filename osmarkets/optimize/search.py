"""Model-based searches for :func:`~osmarkets.optimize.explore`, driven by Optuna.

Random sampling and the grid spend their budget blindly. Optuna's TPE sampler (a tree-structured
Parzen estimator) proposes the next configurations from the scores of the last ones, and its
NSGA-II sampler evolves a population towards the front of two objectives (here: the score, up,
and the maximum drawdown, down). Optuna is a well-kept library with both samplers, reproducible
with a seed, and its ask-and-tell interface lets the optimiser's own runner (in-process or
Backtester agents) evaluate each batch of trials. Every configuration tried is a row of the
result table, so the deflated Sharpe ratio counts what was really tried.

Optuna is a dependency of osMarkets (imported only when a search or a refinement runs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .space import Choice, Config, FloatRange, IntRange, LogFloatRange, Space, config_id

#: the values of ``explore(search=...)``
SEARCHES = ("random", "grid", "tpe", "nsga2")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError(
            "search: the model searches and refinement need Optuna: python -m pip install optuna"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial otherwise
    return optuna


def distributions(space: Space) -> dict[str, Any]:
    """Each dimension of ``space`` as an Optuna distribution (same values, same scale)."""
    optuna = _optuna()
    dist = optuna.distributions
    out: dict[str, Any] = {}
    for name, dim in space.dimensions.items():
        if isinstance(dim, IntRange):
            high = dim.low + (dim.high - dim.low) // dim.step * dim.step
            out[name] = dist.IntDistribution(int(dim.low), int(high), step=int(dim.step))
        elif isinstance(dim, LogFloatRange):
            out[name] = dist.FloatDistribution(float(dim.low), float(dim.high), log=True)
        elif isinstance(dim, FloatRange):
            if dim.step is None:
                out[name] = dist.FloatDistribution(float(dim.low), float(dim.high))
            else:
                values = dim.values()
                with warnings.catch_warnings():  # (low + k * step rounds past its grid: Optuna
                    warnings.simplefilter("ignore", UserWarning)  # snaps it, and so do we)
                    out[name] = dist.FloatDistribution(values[0], values[-1], step=float(dim.step))
        elif isinstance(dim, Choice):
            out[name] = dist.CategoricalDistribution(list(dim.values()))
        else:
            raise ValueError(f"space[{name!r}]: no Optuna distribution for {dim!r}")
    return out


Evaluate = Callable[[list[Config]], list[dict[str, Any]]]


def model_search(
    space: Space,
    evaluate: Evaluate,
    *,
    method: str,
    trials: int,
    batch: int,
    seed: int | None,
    known: Sequence[Mapping[str, Any]] = (),
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Run ``trials`` new distinct configurations proposed by Optuna's ``method`` sampler
    (``'tpe'`` or ``'nsga2'``), ``batch`` at a time through ``evaluate`` (a runner's rows),
    after telling it the ``known`` rows (configurations evaluated before: the refinement
    rounds of a random or grid search). Returns the new rows and each one's batch number. A
    proposal that breaks a constraint is told failed and never evaluated; one already
    evaluated is told its score again (one configuration, one row). It stops early when the
    space has no unseen configuration left."""
    optuna = _optuna()
    directions = ["maximize"] if method == "tpe" else ["maximize", "minimize"]
    if method == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif method == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, batch))
    else:
        raise ValueError(f"search: expected one of {', '.join(SEARCHES)}, got {method!r}")
    study = optuna.create_study(directions=directions, sampler=sampler)
    fixed = distributions(space)
    rows: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    for row in known:
        done[row["id"]] = dict(row)
        values = _values(row, method)
        if values is None:
            continue
        params = {name: _inside(fixed[name], row["params"].get(name)) for name in space.names}
        try:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=fixed, values=values))  # fmt: skip
        except ValueError:  # a value outside this space (fixed parameters): not a guide
            continue
    wanted = len(done) + trials
    round_of: dict[str, int] = {}
    attempts = 0
    number = 0
    stale = 0  # proposals in a row that were not new: the sampler is stuck on known ground
    fresh = _random_configs(space, seed)
    exhausted = False
    while len(done) < wanted and attempts < 100 * trials and not exhausted:
        asked: list[tuple[Any, Config]] = []
        pending: dict[str, Config] = {}
        while len(asked) < batch and len(done) + len(pending) < wanted:
            attempts += 1
            if attempts > 100 * trials:
                break
            if stale >= 5:  # a random new configuration for the next proposal, told as usual
                stale = 0
                tried = done.keys() | pending.keys()
                unseen = next((c for c in fresh if config_id(c) not in tried), None)
                if unseen is None:  # every configuration of the space was tried
                    exhausted = True
                    break
                study.enqueue_trial(unseen)
            trial = study.ask(fixed)
            config = _snap(space, trial.params)
            key = config_id(config)
            if not space._ok(config):
                stale += 1
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            if key in done or key in pending:
                stale += 1
                if key in done:
                    _tell(study, trial, _values(done[key], method))
                else:  # proposed twice in one batch: told once the first is evaluated
                    asked.append((trial, config))
                continue
            stale = 0
            pending[key] = config
            asked.append((trial, config))
        if not pending:
            continue
        for row in evaluate(list(pending.values())):
            if row["id"] in pending and row["id"] not in done:  # (a late copy is not a row)
                done[row["id"]] = row
                round_of[row["id"]] = number
                rows.append(row)
        for trial, config in asked:
            result = done.get(config_id(config))  # None: its evaluation never came back
            _tell(study, trial, None if result is None else _values(result, method))
        number += 1
    return rows, round_of


def _snap(space: Space, params: Mapping[str, Any]) -> Config:
    """Optuna's values as the space's own (a stepped float as ``low + k * step`` exactly,
    so that the same configuration always has the same id)."""
    config = {}
    for name, dim in space.dimensions.items():
        value = params[name]
        if isinstance(dim, IntRange):
            value = dim.clip(value)
        elif isinstance(dim, FloatRange) and not isinstance(dim, LogFloatRange) and dim.step:
            values = dim.values()  # low + k * step, as the grid and the sampler give them
            k = round((float(value) - dim.low) / dim.step)
            value = values[min(max(k, 0), len(values) - 1)]
        config[name] = value
    return config


def _inside(distribution: Any, value: Any) -> Any:
    """A value of the space as Optuna's distribution holds it (a stepped float's last grid
    value may lie a rounding above its ``high``)."""
    high = getattr(distribution, "high", None)
    if isinstance(value, float) and isinstance(high, float) and value > high:
        return high if math.isclose(value, high) else value
    return value


def _tell(study: Any, trial: Any, values: list[float] | None) -> None:
    """Tell Optuna a trial's values, or that it failed (no score)."""
    if values is None:
        study.tell(trial, state=_optuna().trial.TrialState.FAIL)
    else:
        study.tell(trial, values)


def _random_configs(space: Space, seed: int | None, chunks: int = 1000) -> Iterator[Config]:
    """Distinct valid random configurations of ``space``, drawn 64 at a time; it ends when a
    draw brings nothing new (a small space is exhausted) or after ``chunks`` draws."""
    seen: set[str] = set()
    for k in range(chunks):
        drawn = space.sample(64, None if seed is None else seed + 7919 * (k + 1))
        new = [c for c in drawn if config_id(c) not in seen]
        if not new:
            return
        for config in new:
            seen.add(config_id(config))
            yield config


def _values(row: Mapping[str, Any], method: str) -> list[float] | None:
    """What Optuna is told of an evaluated configuration (None: failed, a NaN score)."""
    score = float(row["score"])
    if method == "tpe":
        return None if math.isnan(score) else [score]
    drawdown = float(row["stats"].get("max_drawdown", math.nan))
    return None if math.isnan(score) or math.isnan(drawdown) else [score, drawdown]


__all__ = ["SEARCHES", "distributions", "model_search"]
