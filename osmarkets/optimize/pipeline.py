"""``explore`` and ``build_portfolio``: the Generator -> Backtester -> Portfolio pipeline.

With ``workers=0`` everything runs in this process (notebooks, tests); with ``workers=N`` the
configurations travel to N Backtester agent processes over osBrain
(:mod:`osmarkets.optimize.agents`). Either way every evaluated configuration ends up as one
row of :attr:`ExploreResult.table`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..backtest.engine import backtest
from ..backtest.stats import round_trips
from ..brain import Brain
from ..data.validate import validate_bars
from .evaluate import STAT_KEYS, Evaluator, Filters, smooth_scores
from .overfit import deflation_benchmark, psr_from_moments
from .portfolio import Activity, Portfolio, select_portfolio
from .results import ExploreResult, annualisation_note
from .search import SEARCHES, distributions, model_search
from .space import Config, Space, config_id

Progress = Callable[[int, int], None]


class Runner(Protocol):
    """Evaluates configurations somewhere and returns their rows (any order)."""

    def run(self, configs: Sequence[Config], progress: Progress | None = None) -> list[dict]: ...

    def set_evaluator(self, evaluator: Evaluator) -> None: ...

    def close(self) -> None: ...


class InProcessRunner:
    """``workers=0``: evaluate in batches in this process."""

    def __init__(self, evaluator: Evaluator, batch: int = 64) -> None:
        self.evaluator = evaluator
        self.batch = max(1, int(batch))

    def run(self, configs: Sequence[Config], progress: Progress | None = None) -> list[dict]:
        rows: list[dict] = []
        for start in range(0, len(configs), self.batch):
            rows.extend(self.evaluator.evaluate(configs[start : start + self.batch]))
            if progress is not None:
                progress(len(rows), len(configs))
        return rows

    def set_evaluator(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def close(self) -> None:
        pass


def _rows_to_table(
    rows: list[dict], names: list[str], round_of: Mapping[str, int]
) -> pd.DataFrame:
    records = []
    for row in rows:
        record: dict[str, Any] = {"id": row["id"]}
        record.update({name: row["params"].get(name) for name in names})
        record.update({key: row["stats"].get(key, math.nan) for key in STAT_KEYS})
        record["score"] = row["score"]
        record["passed"] = row["reason"] == ""
        record["reason"] = row["reason"]
        record["round"] = round_of.get(row["id"], 0)
        record["worker"] = row.get("worker", "local")
        records.append(record)
    columns = ["id", *names, *STAT_KEYS, "score", "passed", "reason", "round", "worker"]
    return pd.DataFrame(records, columns=columns)


def explore(
    brain_class: type[Brain],
    data: Any,
    space: Space | Mapping[str, Any],
    *,
    bsid: Any = None,
    samples: int = 200,
    grid: bool = False,
    search: str | None = None,
    points: int = 5,
    refine: int = 0,
    refine_samples: int | None = None,
    seed: int | None = 0,
    constraints: Iterable[str] | None = None,
    filters: Filters | Mapping[str, Any] | None = None,
    score: str = "sharpe",
    smooth: int = 0,
    portfolio: bool = True,
    max_correlation: float = 0.7,
    max_members: int = 10,
    candidates: int = 50,
    measure: str = "sharpe",
    workers: int = 0,
    batch: int | None = None,
    host: str = "127.0.0.1",
    requeue_after: float | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
    **settings: Any,
) -> ExploreResult:
    """Evaluate configurations of ``space`` for ``brain_class`` on ``data``, filter them and
    build a portfolio.

    Generation (``search``): ``'random'`` (default), ``samples`` random configurations
    (``seed``); ``'grid'`` (or ``grid=True``), the full grid (floats on ``points`` values);
    then ``refine`` rounds of ``refine_samples`` (default ``samples // 2``) new configurations
    proposed by Optuna's TPE sampler from every score so far. ``'tpe'`` or ``'nsga2'``: ``samples``
    distinct configurations proposed by Optuna's TPE or NSGA-II sampler (score up, maximum
    drawdown down), ``batch`` at a time, from the scores so far (see
    :mod:`osmarkets.optimize.search`; no ``refine``). ``constraints``: conditions between
    parameters as text, e.g. ``['fast < slow']`` (see
    :class:`~osmarkets.optimize.space.Constraint`), added to the space's own: no configuration
    violating one is generated or evaluated. ``filters``: :class:`Filters` or a mapping of its
    fields.
    ``score``: the statistic to rank by; ``smooth=k`` ranks by the mean score of each
    configuration's k nearest neighbours instead (column ``score_smooth``). Portfolio: the
    ``candidates`` best surviving configurations are offered to :func:`select_portfolio`.
    ``workers``: 0 in-process, N starts N Backtester agent processes (``batch``
    configurations per message, ``requeue_after`` seconds before unfinished work is sent
    again). Other keyword arguments (``cash``, ``fill``, ``spread``, ``slippage``,
    ``commission``, ``history``, ``engine``, ``params``) go to :class:`Evaluator`.
    """
    space = Space.coerce(space)
    if constraints:
        space = space.with_constraints(constraints)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers: expected an integer >= 0, got {workers!r}")
    if refine < 0:
        raise ValueError(f"refine: expected >= 0 rounds, got {refine}")
    evaluator = Evaluator(brain_class, data, bsid, filters=filters, score=score, **settings)
    evaluator.check(dict.fromkeys(space.names))
    if grid and search not in (None, "grid"):
        raise ValueError(f"grid: True conflicts with search={search!r}")
    search = search or ("grid" if grid else "random")
    if search not in SEARCHES:
        raise ValueError(f"search: expected one of {', '.join(SEARCHES)}, got {search!r}")
    model = search in ("tpe", "nsga2")
    if model and refine:
        raise ValueError(f"refine: not with search={search!r} (the model search replaces it)")
    configs: list[Config] = []
    if model or refine:
        distributions(space)  # Optuna present, every dimension mapped: fail before any work
    if not model:
        configs = space.grid(points) if search == "grid" else space.sample(samples, seed)
        if not configs:
            raise ValueError(
                "space: no configuration to evaluate (do the constraints reject all?)"
            )
    started = time.perf_counter()
    own_runner = runner is None
    if runner is not None:
        runner.set_evaluator(evaluator)
    else:
        if workers == 0:
            runner = InProcessRunner(evaluator, batch or 64)
        else:
            from .agents import AgentRunner

            runner = AgentRunner(evaluator, workers=workers, batch=batch or 16, host=host,
                                 requeue_after=requeue_after)  # fmt: skip
    rows: list[dict] = []
    round_of: dict[str, int] = {}
    per_round = refine_samples or max(1, samples // 2)
    expected = samples if model else len(configs) + refine * per_round

    def evaluate(batch_configs: list[Config]) -> list[dict]:
        done = len(rows)

        def report(n: int, _total: int) -> None:
            if progress is not None:
                progress(done + n, max(expected, done + n))

        report(0, len(batch_configs))
        wanted = {config_id(c) for c in batch_configs}
        # a late copy of an earlier row (work sent again to another Backtester) is not new
        out = [r for r in runner.run(batch_configs, report)
               if r["id"] in wanted and r["id"] not in evaluated]  # fmt: skip
        evaluated.update(r["id"] for r in out)
        rows.extend(out)
        return out

    evaluated: set[str] = set()
    # a model search asks for enough trials at once to keep every Backtester busy
    asked = (batch or 16) * max(1, workers)

    try:
        if model:
            _, round_of = model_search(space, evaluate, method=search, trials=samples,
                                       batch=asked, seed=seed)  # fmt: skip
        else:
            round_of.update((row["id"], 0) for row in evaluate(configs))
        for number in range(1, refine + 1):
            # a refinement round: configurations proposed by Optuna's TPE from every score so
            # far (the search engine, not a hand-written genetic step)
            new, _ = model_search(space, evaluate, method="tpe", trials=per_round,
                                  batch=asked, known=list(rows),
                                  seed=None if seed is None else seed + number)  # fmt: skip
            if not new:
                break
            round_of.update((row["id"], number) for row in new)
    finally:
        if own_runner:
            runner.close()
    elapsed = time.perf_counter() - started
    table = _rows_to_table(rows, space.names, round_of)
    benchmark = deflate(table)
    min_dsr = evaluator.filters.min_dsr
    if min_dsr is not None:
        low = table["passed"] & ~(table["dsr"] >= min_dsr)
        table.loc[low, "reason"] = [
            "dsr undefined" if math.isnan(v) else f"dsr {v:.4g} < {min_dsr:g}"
            for v in table.loc[low, "dsr"]
        ]
        table.loc[low, "passed"] = False
    score_column = "score"
    if smooth:
        table["score_smooth"] = smooth_scores(table, space, smooth)
        score_column = "score_smooth"
    table["included"] = False
    result = ExploreResult(
        table=table,
        space=space,
        score_column=score_column,
        evaluator=evaluator,
        meta={
            "brain": brain_class.__name__, "configurations": len(table), "seconds": elapsed,
            "workers": workers, "engine": "vectorized" if evaluator.vectorized else "event",
            "score": score, "smooth": smooth, "filters": evaluator.filters, "search": search,
            "trials": len(table), "expected_max_sharpe": benchmark,
            "periods_per_year": evaluator.periods_per_year,
            "annualisation": _annualisation(evaluator),
            **({"constraints": [c.text for c in space.constraints]} if space.constraints else {}),
        },
    )  # fmt: skip
    if portfolio:
        build_portfolio(result, max_correlation=max_correlation, max_members=max_members,
                        candidates=candidates, measure=measure)  # fmt: skip
    return result


def deflate(table: pd.DataFrame, trials: int | None = None) -> float:
    """Add each configuration's probabilistic Sharpe ratio (``psr``, against 0) and deflated
    Sharpe ratio (``dsr``: against the Sharpe ratio the best of ``trials`` unskilled trials
    would reach, ``trials`` = every configuration of the table by default) to ``table``, from
    its :data:`~osmarkets.optimize.evaluate.MOMENT_KEYS` columns. Returns that benchmark (per
    period; NaN with fewer than two defined Sharpe ratios)."""
    moments = [table[key].to_numpy(dtype=float)
               for key in ("period_sharpe", "periods", "skewness", "kurtosis")]  # fmt: skip
    benchmark = deflation_benchmark(moments[0], len(table) if trials is None else trials)
    sharpe, periods, skewness, kurtosis = moments
    table["psr"] = psr_from_moments(sharpe, periods, skewness, kurtosis)
    table["dsr"] = psr_from_moments(sharpe, periods, skewness, kurtosis, benchmark)
    return benchmark


def build_portfolio(
    result: ExploreResult,
    *,
    max_correlation: float = 0.7,
    max_members: int = 10,
    candidates: int = 50,
    measure: str = "sharpe",
    evaluator: Evaluator | None = None,
) -> Portfolio:
    """Build the portfolio from an exploration: the ``candidates`` best configurations that
    passed the filters (by the result's score column), their equity curves recomputed on the
    in-sample data, offered to :func:`select_portfolio`; the members' fills, holdings and round
    trips (:func:`member_run`) go into the portfolio's statistics. Sets ``result.portfolio``
    and the table's ``included`` column, and returns the portfolio."""
    evaluator = evaluator or result.evaluator
    if evaluator is None:
        raise ValueError("build_portfolio: the result has no evaluator; pass evaluator=")
    table = result.table
    column = result.score_column
    pool = table[table["passed"] & np.isfinite(table[column].to_numpy(dtype=float))]
    pool = pool.sort_values(column, ascending=False, kind="stable").head(max(0, candidates))
    curves: dict[str, pd.Series] = {}
    params: dict[str, dict[str, Any]] = {}
    scores: dict[str, float] = {}
    done: dict[str, Activity] = {}
    for row in pool.to_dict("records"):
        config = result.space.config_of(row)
        if evaluator.vectorized:  # fast; the fills of the few members are rebuilt afterwards
            curves[row["id"]] = evaluator.equity(config)
        else:  # the event-driven run gives the fills with the curve: keep them
            curves[row["id"]], done[row["id"]] = member_run(evaluator, config)
        params[row["id"]] = config
        scores[row["id"]] = float(row[column])

    def activity(key: str) -> Activity:
        if key in done:
            return done[key]
        return vectorized_activity(evaluator, {**evaluator.fixed, **params[key]})

    chosen = select_portfolio(
        curves, scores=scores, params=params, max_correlation=max_correlation,
        max_members=max_members, measure=measure, periods_per_year=evaluator.periods_per_year,
        cash=evaluator.cash, initial=dict.fromkeys(curves, evaluator.cash), activity=activity,
    )  # fmt: skip
    if not curves:  # nothing survived: a flat portfolio on the data's time index
        index = evaluator.frame.index
        chosen.equity = pd.Series(evaluator.cash, index=index, name="equity", dtype=float)
    chosen.annualisation = _annualisation(evaluator)
    table["included"] = table["id"].isin(chosen.members)
    result.portfolio = chosen
    return chosen


def member_run(evaluator: Evaluator, config: Mapping[str, Any]) -> tuple[pd.Series, Activity]:
    """The equity curve of one configuration (as :meth:`Evaluator.equity` gives it) and its
    :class:`~osmarkets.optimize.portfolio.Activity`: fills, holdings and round trips.

    Event-driven: the backtest's own fills. Vectorised: the fills of the vectorised model
    (:func:`~osmarkets.backtest.vectorized.vectorized`: a fill wherever the target changes, at
    the next bar's open or at the close, buys at the ask or open plus half the spread plus
    slippage, sells at the bid minus slippage, the same commission), stamped with the time of
    the bar they fill on, as the optimiser's table counts them."""
    full = {**evaluator.fixed, **config}
    if not evaluator.vectorized:
        result = backtest(evaluator.brain_class, evaluator.frame, evaluator.bsid, params=full,
                          history=evaluator.history, cash=evaluator.cash, **evaluator.options,
                          **evaluator.data_options)  # fmt: skip
        return result.equity, Activity.of(result)
    equity = evaluator.equity(config)
    return equity, vectorized_activity(evaluator, full)


def vectorized_activity(evaluator: Evaluator, params: Mapping[str, Any]) -> Activity:
    """The fills, holdings and round trips of the vectorised model for ``params`` (every
    parameter the Brain needs beyond its defaults, fixed ones included)."""
    cls = evaluator.brain_class
    frame = evaluator.frame
    full = {**cls.parameters(), **params}
    hook = getattr(cls, "signals_batch", None)
    if hook is not None:
        target = np.asarray(hook(frame, [full]), dtype=float).reshape(-1)
    else:
        target = np.asarray(cls.signals(frame, **full), dtype=float)  # type: ignore[attr-defined]
    bars = validate_bars(frame)
    n = len(bars.time)
    if target.shape != (n,):
        raise ValueError(f"{cls.__name__}.signals: expected {n} targets, got {target.shape}")
    options = evaluator.options
    at = 0 if options["fill"] == "next_open" else 3  # open or close
    half, slip = float(options["spread"]) / 2.0, float(options["slippage"])
    if bars.bid is not None and bars.ask is not None:
        buy, sell = bars.ask[at] + slip, bars.bid[at] - slip
    else:
        buy, sell = bars.ohlc[at] + half + slip, bars.ohlc[at] - half - slip
    before = np.r_[0.0, target[:-1]]
    cols = np.flatnonzero(target != before)
    delta = target[cols] - before[cols]
    if options["fill"] == "next_open":  # decided at bar t's close, traded at bar t+1's open
        keep = cols < n - 1
        cols, delta = cols[keep] + 1, delta[keep]
    price = np.where(delta > 0, buy[cols], sell[cols])
    units = np.abs(delta)
    commission = options.get("commission")
    fee = np.zeros(len(cols))
    if commission is not None and len(cols):
        fee = commission.per_unit * units + commission.fraction * units * price
        fee = np.maximum(fee, commission.minimum)
    index = pd.DatetimeIndex(frame.index)
    index = index if index.tz is not None else index.tz_localize("UTC")
    time = index[cols]
    symbol = evaluator.bsid.symbol
    trades = pd.DataFrame({
        "time": time, "symbol": pd.Series([symbol] * len(cols), dtype=object),
        "side": np.where(delta > 0, "buy", "sell").astype(object), "size": units,
        "price": price, "commission": fee,
    })  # fmt: skip
    held = np.zeros(n)
    np.add.at(held, cols, delta)
    holdings = pd.DataFrame({symbol: np.cumsum(held)}, index=index)
    return Activity(trades.reset_index(drop=True), holdings, round_trips(trades))


def _annualisation(evaluator: Evaluator) -> str:
    frame = evaluator.bsid.timeframe.code
    calendar = evaluator.data_options.get("calendar")
    if calendar:
        frame = f"{frame} ({calendar} calendar)"
    index = pd.DatetimeIndex(evaluator.frame.index)
    return annualisation_note(index, evaluator.periods_per_year, frame)


__all__ = [
    "InProcessRunner", "Runner", "build_portfolio", "explore", "member_run", "vectorized_activity",
]  # fmt: skip
