"""Backtest overfitting statistics: how much of a backtest's Sharpe ratio survives the search.

Pure numpy/scipy, no agents: the functions take the returns an optimisation produced (one
column per configuration) and say how likely the chosen configuration's performance is
skill rather than the luck of having tried many.

* :func:`probabilistic_sharpe` (PSR; Bailey and López de Prado, 2012): the probability that
  the true Sharpe ratio exceeds a benchmark, given the sample's length, skewness and
  kurtosis.
* :func:`deflated_sharpe` (DSR; Bailey and López de Prado, 2014): the PSR against the Sharpe
  ratio the best of the trials would reach by luck alone (:func:`expected_max_sharpe`).
* :func:`min_track_record_length` (MinTRL; Bailey and López de Prado, 2012): how many periods
  of these returns are needed before the Sharpe ratio beats the benchmark with a confidence.
* :func:`pbo` (Bailey, Borwein, López de Prado and Zhu, 2015): the probability of backtest
  overfitting by combinatorially symmetric cross-validation (CSCV).
* :func:`cpcv_splits` and :func:`cpcv_paths` (López de Prado, *Advances in Financial Machine
  Learning*, 2018, ch. 12): combinatorial purged cross-validation.

Conventions, for every function:

* returns are per period (one value per bar, day, ...), not annualised, and every Sharpe ratio
  (including ``benchmark`` and ``trial_sharpes``) is the per-period one: multiply by
  ``sqrt(periods per year)`` to annualise it, divide an annual one by it before passing it;
* the Sharpe ratio is ``mean / standard deviation`` with ``ddof=1`` (no risk-free rate:
  subtract it from the returns first if it matters);
* skewness ``γ3`` and kurtosis ``γ4`` are the biased sample estimators,
  ``scipy.stats.skew(x)`` and ``scipy.stats.kurtosis(x, fisher=False)`` (``γ4 = 3`` for normal
  returns, not 0);
* returns may be a list, a numpy array, a pandas Series or a DataFrame (one column for the
  single-series functions; T periods × N configurations for :func:`pbo`); they must hold at
  least 2 periods and no NaN or infinite value (a ``ValueError`` says which problem it is).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "PBOResult",
    "cpcv_paths",
    "cpcv_splits",
    "deflated_sharpe",
    "deflation_benchmark",
    "expected_max_sharpe",
    "min_track_record_length",
    "pbo",
    "probabilistic_sharpe",
    "psr_from_moments",
    "return_moments",
]

EULER_GAMMA = float(np.euler_gamma)

# Chunks of combinations are sized so that one (chunk × configurations) float array holds
# about this many elements (2 MiB): small enough to stay in cache, big enough to amortise numpy.
_CHUNK_ELEMENTS = 1 << 18
# Each table of subset sums covers at most this many groups (2**8 = 256 subsets per table).
_TABLE_BITS = 8
# C(partitions, partitions / 2) beyond this would not fit in memory or finish (partitions > 28).
_MAX_COMBINATIONS = 100_000_000


# -- input checks ----------------------------------------------------------------------------


def _to_float_array(data: Any, name: str) -> np.ndarray:
    try:
        if hasattr(data, "to_numpy"):  # pandas: nullable dtypes turn pd.NA into NaN
            array = data.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric: {error}") from None
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        where = np.unravel_index(int(np.argmin(finite)), array.shape)
        position = where[0] if array.ndim == 1 else tuple(int(i) for i in where)
        kind = "NaN" if np.isnan(array[where]) else "an infinite value"
        raise ValueError(
            f"{name} holds {kind} at position {position} (the first; NaN and infinite values "
            "are not allowed: drop or fill them first)"
        )


def _as_series(data: Any, name: str = "returns") -> np.ndarray:
    """A 1-D float array of at least 2 finite values (a one-column 2-D input is flattened)."""
    array = _to_float_array(data, name)
    if array.ndim == 2 and 1 in array.shape:
        array = array.ravel()
    if array.ndim != 1:
        raise ValueError(f"{name} must be one series, got an array of shape {array.shape}")
    if array.size < 2:
        raise ValueError(f"{name} must hold at least 2 values, got {array.size}")
    _check_finite(array, name)
    return array


def _as_matrix(data: Any) -> np.ndarray:
    """A (T periods × N configurations) float array, T >= 2, N >= 2, all finite."""
    array = _to_float_array(data, "returns_matrix")
    if array.ndim != 2:
        raise ValueError(
            f"returns_matrix must be 2-D (periods × configurations), got {array.ndim} dimension(s)"
        )
    periods, configurations = array.shape
    if periods < 2:
        raise ValueError(f"returns_matrix must hold at least 2 periods (rows), got {periods}")
    if configurations < 2:
        raise ValueError(
            f"returns_matrix must hold at least 2 configurations (columns), got {configurations}"
        )
    _check_finite(array, "returns_matrix")
    return array


def _as_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


# -- Sharpe ratio statistics -----------------------------------------------------------------


def _moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """(Sharpe ratio, skewness, kurtosis, T) of a checked series; constant series rejected."""
    if returns.max() == returns.min():
        raise ValueError("returns are constant: the Sharpe ratio is undefined (zero variance)")
    std = float(returns.std(ddof=1))
    if not std > 0:  # distinct values so close that the variance underflows
        raise ValueError("returns have zero variance: the Sharpe ratio is undefined")
    sharpe = float(returns.mean()) / std
    skew = float(stats.skew(returns))
    kurt = float(stats.kurtosis(returns, fisher=False))
    return sharpe, skew, kurt, int(returns.size)


def _sharpe_variance_term(sharpe: float, skew: float, kurt: float) -> float:
    """1 − γ3·SR + (γ4 − 1)/4·SR²: T − 1 times the variance of the estimated Sharpe ratio.

    Never negative in exact arithmetic (γ4 ≥ 1 + γ3² makes it ≥ (1 − γ3·SR/2)²); it is 0 only
    for two-valued returns at one Sharpe ratio, so rounding below 0 is clipped to 0.
    """
    return max(1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2, 0.0)


def _psr(sharpe: float, skew: float, kurt: float, periods: float, benchmark: float) -> float:
    """PSR from the statistics of the returns (the formula of probabilistic_sharpe)."""
    difference = sharpe - benchmark
    spread = math.sqrt(_sharpe_variance_term(sharpe, skew, kurt))
    if difference == 0.0:
        return 0.5
    if spread == 0.0:  # no estimation error left: certainly above or below
        return 1.0 if difference > 0 else 0.0
    return float(stats.norm.cdf(difference * math.sqrt(periods - 1.0) / spread))


def _expected_max(variance: float, trials: int) -> float:
    """E[max SR] of ``trials`` independent trials with true Sharpe 0 and this variance."""
    quantiles = (1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / trials) + EULER_GAMMA * (
        stats.norm.ppf(1.0 - 1.0 / (trials * math.e))
    )
    return float(math.sqrt(variance) * quantiles)


def _min_trl(
    sharpe: float, skew: float, kurt: float, benchmark: float, confidence: float
) -> float:
    """MinTRL from the statistics of the returns (the formula of min_track_record_length)."""
    if sharpe <= benchmark:
        return math.inf
    z = float(stats.norm.ppf(confidence))
    return 1.0 + _sharpe_variance_term(sharpe, skew, kurt) * (z / (sharpe - benchmark)) ** 2


def probabilistic_sharpe(returns: ArrayLike, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (PSR; Bailey and López de Prado, 2012).

    ``PSR = Φ((SR − SR*)·√(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²))``: the probability that the
    true per-period Sharpe ratio of the process that produced ``returns`` is above
    ``benchmark`` (SR*, per period), given the estimate SR from T periods. The denominator is
    the standard error of SR under non-normal returns (Mertens, 2002): negative skewness and fat
    tails widen it, so the same SR is less convincing. Read it as a one-sided confidence: 0.95
    means the estimate beats the benchmark at the 5 % level; 0.5 means SR equals the benchmark.

    Assumes the returns are independent and identically distributed (serial correlation makes
    the PSR optimistic). Raises ``ValueError`` for constant returns (no Sharpe ratio).
    """
    series = _as_series(returns)
    level = _as_real(benchmark, "benchmark")
    sharpe, skew, kurt, periods = _moments(series)
    return _psr(sharpe, skew, kurt, periods, level)


def expected_max_sharpe(trial_sharpes: ArrayLike) -> float:
    """Expected maximum Sharpe ratio of N unskilled trials (Bailey and López de Prado, 2014).

    ``SR* = √Var(trial_sharpes)·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))`` with γ the
    Euler–Mascheroni constant, N = ``len(trial_sharpes)`` and the variance taken with
    ``ddof=1``. It is the Sharpe ratio the best of N independent trials whose true Sharpe ratio
    is 0 reaches by luck alone, so it grows with N and with the
    dispersion of the trials. ``trial_sharpes`` are the per-period Sharpe ratios of every
    configuration tried (the chosen one included), at the frequency of the returns. Correlated
    trials count as fewer independent ones: N overstates the search and SR* then errs high.
    Needs at least 2 finite trials.
    """
    trials = _as_series(trial_sharpes, "trial_sharpes")
    return _expected_max(float(trials.var(ddof=1)), int(trials.size))


def deflated_sharpe(returns: ArrayLike, trial_sharpes: ArrayLike) -> float:
    """Deflated Sharpe ratio (DSR; Bailey and López de Prado, 2014).

    The PSR of ``returns`` against ``SR* = expected_max_sharpe(trial_sharpes)``: the
    probability that the chosen configuration's true Sharpe ratio beats what the best of the
    N trials would show with no skill at all. It corrects the Sharpe ratio for selection bias
    (many trials), non-normal returns (skewness, kurtosis) and a short sample at once. A DSR
    above 0.95 is the usual bar; a high Sharpe ratio found among many trials often falls far
    below it. ``trial_sharpes`` as in :func:`expected_max_sharpe` (per period, ``ddof=1``
    variance, N = their count).
    """
    series = _as_series(returns)
    benchmark = expected_max_sharpe(trial_sharpes)
    sharpe, skew, kurt, periods = _moments(series)
    return _psr(sharpe, skew, kurt, periods, benchmark)


def min_track_record_length(
    returns: ArrayLike, benchmark: float = 0.0, confidence: float = 0.95
) -> float:
    """Minimum track record length (MinTRL; Bailey and López de Prado, 2012), in periods.

    ``MinTRL = 1 + (1 − γ3·SR + (γ4 − 1)/4·SR²)·(Φ⁻¹(confidence) / (SR − SR*))²``: the number of
    periods of returns with this Sharpe ratio, skewness and kurtosis needed for the PSR against
    ``benchmark`` (SR*, per period) to reach ``confidence`` (0 < confidence < 1). Compare it
    with ``len(returns)``: a shorter track record is not yet evidence of beating the benchmark.
    A float (not rounded up); ``inf`` when SR ≤ benchmark, since no length then suffices.
    """
    series = _as_series(returns)
    level = _as_real(benchmark, "benchmark")
    probability = _as_real(confidence, "confidence")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {probability}")
    sharpe, skew, kurt, _ = _moments(series)
    return _min_trl(sharpe, skew, kurt, level, probability)


def return_moments(returns: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of ``returns`` (configurations × periods; a non-finite value marks an undefined
    return, left out): ``period_sharpe`` (mean / std, ``ddof=1``; NaN for fewer than 2
    returns or constant ones), ``skewness`` and ``kurtosis`` (biased, as
    :func:`scipy.stats.skew` and ``kurtosis(fisher=False)``) and ``periods`` (T): what the PSR
    and DSR of every configuration of an optimisation are computed from, without keeping its
    returns. Central moments from the centred values (no cancellation), summed with
    ``einsum`` (no temporary per power: this runs on every batch of the optimiser)."""
    values = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    valid = np.isfinite(values)
    if valid.all():
        count = np.full(values.shape[0], values.shape[1], dtype=np.float64)
        flat = values.max(axis=1) == values.min(axis=1)
    else:
        count = valid.sum(axis=1).astype(np.float64)
        low = np.where(valid, values, np.inf).min(axis=1)
        flat = np.where(valid, values, -np.inf).max(axis=1) == low
        values = np.where(valid, values, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (np.nansum(values, axis=1) if not valid.all() else values.sum(axis=1)) / count
        centred = values - mean[:, None]
        if not valid.all():
            centred[~valid] = 0.0
        square = np.square(centred)
        m2 = square.sum(axis=1) / count
        m3 = np.einsum("ij,ij->i", square, centred) / count
        m4 = np.einsum("ij,ij->i", square, square) / count
        std = np.sqrt(m2 * count / (count - 1.0))
        defined = (count >= 2) & ~flat & (std > 0)
        sharpe = np.where(defined, mean / std, np.nan)
        skewness = np.where(defined, m3 / m2**1.5, np.nan)
        kurtosis = np.where(defined, m4 / m2**2, np.nan)
    return {"period_sharpe": sharpe, "skewness": skewness, "kurtosis": kurtosis,
            "periods": count}  # fmt: skip


def psr_from_moments(
    sharpe: ArrayLike,
    periods: ArrayLike,
    skewness: ArrayLike,
    kurtosis: ArrayLike,
    benchmark: float | ArrayLike = 0.0,
) -> np.ndarray:
    """:func:`probabilistic_sharpe` of many return series at once, from their per-period
    Sharpe ratio, length, skewness and kurtosis (:func:`return_moments`): NaN where a Sharpe
    ratio is undefined or T < 2."""
    sr = np.asarray(sharpe, dtype=np.float64)
    t = np.asarray(periods, dtype=np.float64)
    g3 = np.asarray(skewness, dtype=np.float64)
    g4 = np.asarray(kurtosis, dtype=np.float64)
    level = np.asarray(benchmark, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.sqrt(np.maximum(1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2, 0.0))
        difference = sr - level
        z = difference * np.sqrt(t - 1.0) / spread
        out = stats.norm.cdf(z)
        out = np.where(difference == 0.0, 0.5, out)
        out = np.where((spread == 0.0) & (difference != 0.0), (difference > 0).astype(float), out)
    return np.where(np.isfinite(sr) & np.isfinite(g3) & np.isfinite(g4) & (t >= 2), out, np.nan)


def deflation_benchmark(trial_sharpes: ArrayLike, trials: int | None = None) -> float:
    """:func:`expected_max_sharpe` of the finite values of ``trial_sharpes``, counting
    ``trials`` trials (default: their number): configurations whose Sharpe ratio is undefined
    (no trade) were tried too, and N counts what was tried. 0 for a single trial (nothing was
    selected); NaN with fewer than 2 finite values among more trials."""
    values = np.asarray(trial_sharpes, dtype=np.float64)
    finite = values[np.isfinite(values)]
    n = int(trials) if trials is not None else int(finite.size)
    if n == 1:
        return 0.0  # one trial: nothing was selected, the DSR is the PSR
    if finite.size < 2:
        return math.nan
    return _expected_max(float(finite.var(ddof=1)), n)


# -- probability of backtest overfitting (CSCV) ----------------------------------------------


@dataclass(frozen=True, eq=False)
class PBOResult:
    """The outcome of :func:`pbo`; arrays are read-only, one entry per combination.

    Combination ``i`` is the ``i``-th of ``itertools.combinations(range(partitions),
    partitions // 2)``: the groups used in-sample.

    * ``pbo``: the fraction of combinations whose logit is ≤ 0, i.e. whose in-sample best
      configuration is at or below the out-of-sample median.
    * ``logits``: λ = ln(ω / (1 − ω)), ω = out-of-sample rank / (N + 1).
    * ``is_performance``, ``oos_performance``: the per-period Sharpe ratio of the chosen
      configuration in-sample and out-of-sample (NaN where undefined, see :func:`pbo`).
    * ``chosen``: the column of the configuration chosen in-sample.
    * ``degradation``: the least-squares slope of ``oos_performance`` on ``is_performance``
      (over combinations where both are defined; NaN if fewer than 2 or no spread in-sample).
      Negative: the better a configuration looked in-sample, the worse it did out of it.
    * ``prob_loss``: the fraction of combinations whose chosen configuration has a negative
      out-of-sample Sharpe ratio (an undefined one is not counted as a loss).
    * ``combinations``: C(partitions, partitions / 2); ``partitions``: S.
    """

    pbo: float
    logits: np.ndarray
    is_performance: np.ndarray
    oos_performance: np.ndarray
    chosen: np.ndarray
    degradation: float
    prob_loss: float
    combinations: int
    partitions: int


class _SubsetSharpe:
    """Sharpe ratios of every configuration on any union of the row groups, vectorised.

    Per group and configuration it keeps the sum and the sum of squares of the returns shifted
    by a per-configuration constant (which leaves the variance unchanged and avoids the
    cancellation of ``Σx² − (Σx)²/n`` when the mean is large against the deviation; the mean
    is the shifted one plus the constant), and the minimum and maximum of the raw returns.
    Tables of these over every subset of up to ``_TABLE_BITS`` consecutive groups turn the
    statistics of a union of groups into a few row lookups, added elementwise in a fixed order,
    so identical configurations always get bit-identical Sharpe ratios (and tie).
    """

    def __init__(self, matrix: np.ndarray, partitions: int, group_size: int) -> None:
        columns = matrix.shape[1]
        used = matrix[: partitions * group_size]
        # The shift: each configuration's mean over the rows used, rounded to 20 significant
        # bits. Close enough to the mean to remove the cancellation; coarse enough that returns
        # on a grid (multiples of a tick, of 1/8, ...) shift exactly, so configurations with
        # the same returns in another order within each group still tie exactly.
        mantissa, exponent = np.frexp(used.mean(axis=0))
        shift = np.ldexp(np.round(np.ldexp(mantissa, 20)), exponent - 20)
        self.shift = shift
        sums = np.empty((partitions, columns))
        squares = np.empty((partitions, columns))
        lows = np.empty((partitions, columns))
        highs = np.empty((partitions, columns))
        for group in range(partitions):
            raw = used[group * group_size : (group + 1) * group_size]
            lows[group] = raw.min(axis=0)
            highs[group] = raw.max(axis=0)
            shifted = raw - shift
            sums[group] = shifted.sum(axis=0)
            shifted *= shifted
            squares[group] = shifted.sum(axis=0)
        bits = _TABLE_BITS
        while bits > 1 and (4 << bits) * columns > 1 << 23:  # 4 tables per block, ≤ 64 MiB
            bits -= 1
        self.blocks: list[tuple[int, int, tuple[np.ndarray, ...]]] = []
        for start in range(0, partitions, bits):
            stop = min(start + bits, partitions)
            tables = (
                _subset_table(sums[start:stop], np.add, 0.0),
                _subset_table(squares[start:stop], np.add, 0.0),
                _subset_table(lows[start:stop], np.minimum, np.inf),
                _subset_table(highs[start:stop], np.maximum, -np.inf),
            )
            self.blocks.append((start, (1 << (stop - start)) - 1, tables))

    def scores(self, masks: np.ndarray, count: int) -> np.ndarray:
        """(len(masks) × N) Sharpe ratios of the unions of groups given as bit masks, with
        −inf where undefined (constant returns, or a variance that rounds to ≤ 0)."""
        (start, full, (t_sum, t_square, t_low, t_high)), *rest = self.blocks
        index = (masks >> start) & full
        total, squares = t_sum[index], t_square[index]
        low, high = t_low[index], t_high[index]
        for start, full, (t_sum, t_square, t_low, t_high) in rest:
            index = (masks >> start) & full
            total += t_sum[index]
            squares += t_square[index]
            np.minimum(low, t_low[index], out=low)
            np.maximum(high, t_high[index], out=high)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = total / count
            squares -= total * mean  # n·(biased variance), in place
            undefined = (low == high) | ~(squares > 0)
            squares /= count - 1
            np.sqrt(squares, out=squares)
            mean += self.shift
            mean /= squares
        undefined |= ~np.isfinite(mean)
        mean[undefined] = -np.inf
        return mean


def _subset_table(values: np.ndarray, op: Any, identity: float) -> np.ndarray:
    """Row ``mask`` = ``op`` over the rows of ``values`` whose bit is set in ``mask``, applied
    in ascending row order (the identity for the empty mask)."""
    size = values.shape[0]
    table = np.empty((1 << size, values.shape[1]))
    table[0] = identity
    for mask in range(1, 1 << size):
        top = mask.bit_length() - 1
        rest = mask ^ (1 << top)
        table[mask] = values[top] if rest == 0 else op(table[rest], values[top])
    return table


def _choose(is_scores: np.ndarray, oos_scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row: the in-sample best column (first of ties), its in- and out-of-sample Sharpe
    ratios (NaN where undefined) and twice its average out-of-sample rank among all columns."""
    rows = np.arange(is_scores.shape[0])
    chosen = is_scores.argmax(axis=1)
    is_value = is_scores[rows, chosen]
    oos_value = oos_scores[rows, chosen]
    below = (oos_scores < oos_value[:, None]).sum(axis=1)
    equal = (oos_scores == oos_value[:, None]).sum(axis=1)
    double_rank = 2 * below + equal + 1  # 2·(below + (equal + 1)/2), rankdata's average rank
    is_value = np.where(np.isneginf(is_value), np.nan, is_value)
    oos_value = np.where(np.isneginf(oos_value), np.nan, oos_value)
    return chosen, is_value, oos_value, double_rank


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return math.nan
    dx = x - x.mean()
    spread = float(dx @ dx)
    if spread == 0.0:
        return math.nan
    return float(dx @ (y - y.mean())) / spread


def pbo(returns_matrix: ArrayLike, partitions: int = 16) -> PBOResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation
    (CSCV; Bailey, Borwein, López de Prado and Zhu, 2015).

    ``returns_matrix`` holds the per-period returns of N configurations (columns) over T
    periods (rows), all from the same search. Its rows are split into ``partitions`` (S, even)
    contiguous groups of ``T // S`` rows each; the last ``T % S`` rows are dropped so the groups
    are equal. For each of the C(S, S/2) ways to pick half the groups as in-sample (the rest,
    in their time order, out-of-sample):

    1. the configuration with the best in-sample Sharpe ratio is chosen (the first column of
       equals);
    2. its out-of-sample rank among all N is found (``scipy.stats.rankdata``: ascending, ties
       at their average rank), ω = rank / (N + 1) and the logit λ = ln(ω / (1 − ω)).

    PBO is the fraction of combinations with λ ≤ 0: how often the in-sample winner does no
    better than the median configuration out of sample. Near 0: the selection carries over;
    near 0.5 (or above): the winner is a product of the search (pure noise gives 0.5 on
    average, though one sample of noise can land far from it: the combinations share data).
    It measures the selection procedure on this set of trials, not the chosen strategy alone,
    and assumes the periods are comparable (roughly stationary returns).

    Zero variance: a configuration whose returns are all equal in a subsample (typically one
    that did not trade there) has no Sharpe ratio there. It is recorded as NaN, never chosen
    in-sample (if no configuration has one, the first column is chosen) and ranked below every
    configuration that has one out-of-sample (such configurations tie with each other). The
    same holds if rounding leaves a non-positive variance (returns that vary in their last
    bits only).

    Cost: the groups' sums are computed once; each combination is then a few vectorised row
    lookups, and the out-of-sample half of combination ``i`` is the in-sample half of
    combination C − 1 − i, so every half is evaluated once (1,024 configurations × 30,889
    periods × 16 partitions: 12,870 combinations in well under 2 s). The number of combinations
    grows fast with S (20: 184,756; 24: 2,704,156); more than 100,000,000 is refused.

    Raises ``ValueError`` if ``partitions`` is not an even integer between 2 and T, if a half
    would hold fewer than 2 rows, if there are fewer than 2 configurations or periods, or if
    the matrix holds NaN or infinite values.
    """
    matrix = _as_matrix(returns_matrix)
    periods, configurations = matrix.shape
    groups = _as_int(partitions, "partitions")
    if groups < 2 or groups % 2:
        raise ValueError(f"partitions must be an even integer >= 2, got {groups}")
    if groups > periods:
        raise ValueError(
            f"partitions must be at most the number of periods {periods}, got {groups}"
        )
    group_size = periods // groups
    half = groups // 2
    count = half * group_size
    if count < 2:
        raise ValueError(
            f"partitions={groups} leaves {count} row per half of {periods} periods; "
            "each half needs at least 2 (use fewer partitions)"
        )
    combinations = math.comb(groups, half)
    if combinations > _MAX_COMBINATIONS:
        raise ValueError(
            f"partitions={groups} gives {combinations:,} combinations; at most "
            f"{_MAX_COMBINATIONS:,} are supported (use fewer partitions)"
        )

    subsets = _SubsetSharpe(matrix, groups, group_size)
    chosen = np.empty(combinations, dtype=np.intp)
    is_perf = np.empty(combinations)
    oos_perf = np.empty(combinations)
    double_rank = np.empty(combinations, dtype=np.int64)
    everything = (1 << groups) - 1
    step = max(1, _CHUNK_ELEMENTS // configurations)
    # itertools.combinations is lexicographic, and the complement reverses lexicographic
    # order, so combination C − 1 − i is the complement of combination i: walk the first half
    # and get the second from the same two subset evaluations.
    ordered = itertools.combinations(range(groups), half)
    for start in range(0, combinations // 2, step):
        stop = min(start + step, combinations // 2)
        chunk = np.fromiter(
            itertools.chain.from_iterable(itertools.islice(ordered, stop - start)),
            dtype=np.int64,
            count=(stop - start) * half,
        ).reshape(stop - start, half)
        masks = np.bitwise_or.reduce(np.left_shift(1, chunk), axis=1)
        first = subsets.scores(masks, count)
        second = subsets.scores(everything ^ masks, count)
        # C − 1 − stop >= C/2 − 1 >= 0: the reversed slice never wraps around
        mirror = slice(combinations - 1 - start, combinations - 1 - stop, -1)
        for target, (is_scores, oos_scores) in (
            (slice(start, stop), (first, second)),
            (mirror, (second, first)),
        ):
            picked, is_value, oos_value, ranks = _choose(is_scores, oos_scores)
            chosen[target] = picked
            is_perf[target] = is_value
            oos_perf[target] = oos_value
            double_rank[target] = ranks

    logits = np.log(double_rank / (2.0 * (configurations + 1) - double_rank))
    for array in (logits, is_perf, oos_perf, chosen):
        array.setflags(write=False)
    return PBOResult(
        pbo=float(np.mean(double_rank <= configurations + 1)),  # λ ≤ 0 ⇔ ω ≤ 1/2, exactly
        logits=logits,
        is_performance=is_perf,
        oos_performance=oos_perf,
        chosen=chosen,
        degradation=_slope(is_perf, oos_perf),
        prob_loss=float(np.mean(oos_perf < 0)),
        combinations=combinations,
        partitions=groups,
    )


# -- combinatorial purged cross-validation ---------------------------------------------------


def _check_cpcv(
    n: Any, groups: Any, test_groups: Any, purge: Any, embargo: Any
) -> tuple[int, int, int, int, int]:
    n = _as_int(n, "n")
    groups = _as_int(groups, "groups")
    test_groups = _as_int(test_groups, "test_groups")
    purge = _as_int(purge, "purge")
    embargo = _as_int(embargo, "embargo")
    if groups < 2:
        raise ValueError(f"groups must be at least 2, got {groups}")
    if not 1 <= test_groups < groups:
        raise ValueError(
            f"test_groups must be between 1 and groups - 1 = {groups - 1}, got {test_groups}"
        )
    if n < groups:
        raise ValueError(f"n must be at least groups = {groups}, got {n}")
    if purge < 0:
        raise ValueError(f"purge must be >= 0, got {purge}")
    if embargo < 0:
        raise ValueError(f"embargo must be >= 0, got {embargo}")
    return n, groups, test_groups, purge, embargo


def _group_bounds(n: int, groups: int) -> np.ndarray:
    """Start of each group and n: ``numpy.array_split`` sizes (the first ``n % groups`` groups
    one longer)."""
    size, extra = divmod(n, groups)
    sizes = [size + 1] * extra + [size] * (groups - extra)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)


def cpcv_splits(
    n: int, groups: int = 6, test_groups: int = 2, purge: int = 0, embargo: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Combinatorial purged cross-validation splits (López de Prado, *Advances in Financial
    Machine Learning*, 2018, ch. 12).

    The positions ``0 .. n - 1`` (bars, in time order) are cut into ``groups`` contiguous
    groups as ``numpy.array_split`` does (the first ``n % groups`` groups one bar longer). For
    each of the C(groups, test_groups) choices of test groups, in ``itertools.combinations``
    order, yields ``(train_index, test_index)``: sorted numpy integer arrays. A test block is a
    maximal run of adjacent test groups; at each block, the ``purge`` bars just before it and
    the ``embargo`` bars just after it (clipped to ``[0, n)``) are left out of training, so
    labels that look ahead into the test block, or features that remember it (serial
    correlation), do not leak. Training is every other bar (possibly empty if purge and embargo
    are larger than the training groups). Arguments are checked when called: integers,
    groups >= 2, 1 <= test_groups < groups, n >= groups, purge and embargo >= 0, else
    ``ValueError`` naming the argument.
    """
    n, groups, test_groups, purge, embargo = _check_cpcv(n, groups, test_groups, purge, embargo)
    bounds = _group_bounds(n, groups)

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for tested in itertools.combinations(range(groups), test_groups):
            in_test = np.zeros(n, dtype=bool)
            left_out = np.zeros(n, dtype=bool)
            blocks: list[list[int]] = []
            for group in tested:
                if blocks and blocks[-1][1] == group:
                    blocks[-1][1] = group + 1
                else:
                    blocks.append([group, group + 1])
            for first, last in blocks:
                start, stop = int(bounds[first]), int(bounds[last])
                in_test[start:stop] = True
                left_out[max(0, start - purge) : start] = True
                left_out[stop : min(n, stop + embargo)] = True
            yield np.flatnonzero(~(in_test | left_out)), np.flatnonzero(in_test)

    return generate()


def cpcv_paths(
    n: int, groups: int = 6, test_groups: int = 2, purge: int = 0, embargo: int = 0
) -> list[list[tuple[int, int]]]:
    """The φ backtest paths of combinatorial purged cross-validation (López de Prado, 2018).

    φ = test_groups / groups · C(groups, test_groups) = C(groups − 1, test_groups − 1): each
    group is tested by that many of the splits of :func:`cpcv_splits` (same arguments, same
    split order). Returns φ paths; path ``j`` is a list of ``groups`` pairs
    ``(split_index, group_index)``, in group order, saying which split's test prediction covers
    each group: for every group, the splits that test it are taken in split order and path
    ``j`` gets the ``j``-th. Stitching a path's predictions gives one full out-of-sample
    backtest of all ``n`` bars, so φ paths give a distribution of performance rather than one
    number. ``purge`` and ``embargo`` do not change the assignment; they are accepted (and
    checked) so the call mirrors :func:`cpcv_splits`.
    """
    n, groups, test_groups, purge, embargo = _check_cpcv(n, groups, test_groups, purge, embargo)
    testers: list[list[int]] = [[] for _ in range(groups)]
    for split, tested in enumerate(itertools.combinations(range(groups), test_groups)):
        for group in tested:
            testers[group].append(split)
    paths = math.comb(groups - 1, test_groups - 1)
    return [[(testers[group][j], group) for group in range(groups)] for j in range(paths)]
