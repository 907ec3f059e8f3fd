"""Parameter spaces: what the Generator draws configurations from.

A space maps parameter names to dimensions: :class:`IntRange`, :class:`FloatRange`,
:class:`LogFloatRange` and :class:`Choice`. Configurations come from

- :meth:`Space.grid`: every combination (floats on ``points`` evenly spaced values);
- :meth:`Space.sample`: random sampling, the default (with the same number of runs it tries
  more distinct values of each parameter than a grid, so it finds the parameters that matter);
- :meth:`Space.refine`: one *genetic step* around the best results so far (truncation
  selection of the top ``elite`` fraction, uniform crossover of two elites, Gaussian mutation
  of each numeric parameter with a standard deviation of ``scale`` times its range, measured in
  log space for :class:`LogFloatRange`; a choice mutates to another option with probability
  ``scale``). Children are clipped to the bounds and snapped to the steps.

Every generator takes a ``seed``: the same seed gives the same configurations. Each
configuration has a stable id (:func:`config_id`), used to de-duplicate results.

Pure Python and numpy: no osBrain here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Config = dict[str, Any]


def config_id(params: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit id of a configuration (independent of key order and process)."""
    text = json.dumps({k: _plain(v) for k, v in sorted(params.items())}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` inclusive, every ``step``."""

    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"IntRange.{name}: expected an integer, got {value!r}")
        if self.step < 1:
            raise ValueError(f"IntRange.step: expected >= 1, got {self.step}")
        if self.high < self.low:
            raise ValueError(f"IntRange: high ({self.high}) is below low ({self.low})")

    def values(self, points: int | None = None) -> list[int]:
        return list(range(int(self.low), int(self.high) + 1, int(self.step)))

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        count = (self.high - self.low) // self.step + 1
        return [int(self.low + self.step * k) for k in rng.integers(0, count, n)]

    def clip(self, value: float) -> int:
        k = round((min(max(value, self.low), self.high) - self.low) / self.step)
        return int(self.low + min(k, (self.high - self.low) // self.step) * self.step)

    def unit(self, value: Any) -> float:
        """Position of ``value`` in [0, 1] (for distances between configurations)."""
        span = self.high - self.low
        return (float(value) - self.low) / span if span else 0.0

    def mutate(self, rng: np.random.Generator, value: Any, scale: float) -> int:
        return self.clip(float(value) + rng.normal(0.0, scale * max(self.high - self.low, 1)))


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[low, high]``; a grid has ``points`` evenly spaced values, or every
    ``step`` when a step is given."""

    low: float
    high: float
    step: float | None = None

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(f"{type(self).__name__}.{name}: expected a number, got {value!r}")
        if self.high < self.low:
            raise ValueError(
                f"{type(self).__name__}: high ({self.high}) is below low ({self.low})"
            )
        if self.step is not None and not float(self.step) > 0:
            raise ValueError(f"FloatRange.step: expected > 0, got {self.step!r}")

    def values(self, points: int | None = None) -> list[float]:
        if self.step is not None:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [float(self.low + k * self.step) for k in range(count)]
        return [float(v) for v in np.linspace(self.low, self.high, points or 5)]

    def sample(self, rng: np.random.Generator, n: int) -> list[float]:
        return [self.clip(v) for v in rng.uniform(self.low, self.high, n)]

    def clip(self, value: float) -> float:
        value = min(max(float(value), self.low), self.high)
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
            value = min(value, self.high)
        return float(value)

    def unit(self, value: Any) -> float:
        span = self.high - self.low
        return (float(value) - self.low) / span if span else 0.0

    def mutate(self, rng: np.random.Generator, value: Any, scale: float) -> float:
        return self.clip(float(value) + rng.normal(0.0, scale * (self.high - self.low)))


@dataclass(frozen=True)
class LogFloatRange(FloatRange):
    """Positive floats in ``[low, high]`` on a log scale: sampling is uniform in
    ``log(value)`` and a grid is geometric (use it for scales spanning decades)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.low > 0:
            raise ValueError(f"LogFloatRange.low: expected > 0, got {self.low!r}")
        if self.step is not None:
            raise ValueError("LogFloatRange.step: a log range has no step")

    def values(self, points: int | None = None) -> list[float]:
        return [float(v) for v in np.geomspace(self.low, self.high, points or 5)]

    def sample(self, rng: np.random.Generator, n: int) -> list[float]:
        logs = rng.uniform(math.log(self.low), math.log(self.high), n)
        return [self.clip(math.exp(v)) for v in logs]

    def unit(self, value: Any) -> float:
        span = math.log(self.high) - math.log(self.low)
        return (math.log(float(value)) - math.log(self.low)) / span if span else 0.0

    def mutate(self, rng: np.random.Generator, value: Any, scale: float) -> float:
        span = math.log(self.high) - math.log(self.low)
        return self.clip(math.exp(math.log(float(value)) + rng.normal(0.0, scale * span)))


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of options (any hashable values)."""

    options: tuple[Any, ...]

    def __init__(self, options: Iterable[Any]) -> None:
        if isinstance(options, str):
            raise ValueError("Choice.options: expected a list of options, got a string")
        values = tuple(options)
        if not values:
            raise ValueError("Choice.options: expected at least one option")
        if len(set(values)) != len(values):
            raise ValueError(f"Choice.options: repeated option in {list(values)}")
        object.__setattr__(self, "options", values)

    def values(self, points: int | None = None) -> list[Any]:
        return list(self.options)

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return [self.options[k] for k in rng.integers(0, len(self.options), n)]

    def clip(self, value: Any) -> Any:
        return value

    def unit(self, value: Any) -> float:
        return self.options.index(value) / max(len(self.options) - 1, 1)

    def mutate(self, rng: np.random.Generator, value: Any, scale: float) -> Any:
        if len(self.options) > 1 and rng.random() < scale:
            others = [o for o in self.options if o != value]
            return others[int(rng.integers(0, len(others)))]
        return value


Dimension = IntRange | FloatRange | LogFloatRange | Choice


class Space:
    """Named dimensions, optionally with a ``constraint(config) -> bool`` that rejects
    configurations (e.g. ``lambda c: c['fast'] < c['slow']``)."""

    def __init__(
        self,
        dimensions: Mapping[str, Dimension],
        constraint: Callable[[Config], bool] | None = None,
    ) -> None:
        if not dimensions:
            raise ValueError("space: expected at least one dimension")
        for name, dim in dimensions.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"space: parameter name {name!r} is not an identifier")
            if not isinstance(dim, IntRange | FloatRange | Choice):
                raise ValueError(
                    f"space[{name!r}]: expected IntRange, FloatRange, LogFloatRange or Choice, "
                    f"got {type(dim).__name__}"
                )
        self.dimensions: dict[str, Dimension] = dict(dimensions)
        self.constraint = constraint

    @classmethod
    def coerce(cls, space: Space | Mapping[str, Any]) -> Space:
        """A :class:`Space`, or a mapping of name to dimension, ``(low, high)`` (int or float
        range) or a list (choice)."""
        if isinstance(space, Space):
            return space
        if not isinstance(space, Mapping):
            raise ValueError(f"space: expected a Space or a mapping, got {type(space).__name__}")
        dims: dict[str, Dimension] = {}
        for name, spec in space.items():
            if isinstance(spec, IntRange | FloatRange | Choice):
                dims[name] = spec
            elif isinstance(spec, tuple) and len(spec) == 2:
                low, high = spec
                if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
                    dims[name] = IntRange(low, high)
                else:
                    dims[name] = FloatRange(float(low), float(high))
            elif isinstance(spec, list):
                dims[name] = Choice(spec)
            else:
                raise ValueError(f"space[{name!r}]: cannot make a dimension of {spec!r}")
        return cls(dims)

    @property
    def names(self) -> list[str]:
        return list(self.dimensions)

    def __repr__(self) -> str:
        return f"Space({self.dimensions!r})"

    def _ok(self, config: Config) -> bool:
        return self.constraint is None or bool(self.constraint(config))

    def grid(self, points: int = 5) -> list[Config]:
        """Every combination, in a fixed order (floats without a step on ``points`` values)."""
        if points < 1:
            raise ValueError(f"points: expected >= 1, got {points}")
        axes = [dim.values(points) for dim in self.dimensions.values()]
        configs = (dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes))
        return [c for c in configs if self._ok(c)]

    def size(self, points: int = 5) -> int:
        """Number of grid points before the constraint."""
        return math.prod(len(dim.values(points)) for dim in self.dimensions.values())

    def sample(self, n: int, seed: int | None = 0) -> list[Config]:
        """``n`` distinct random configurations (fewer if the space has fewer); the same seed
        gives the same list."""
        if n < 0:
            raise ValueError(f"samples: expected >= 0, got {n}")
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        out: list[Config] = []
        for _ in range(50):  # rounds: duplicates and rejected configurations are redrawn
            want = n - len(out)
            if want <= 0:
                break
            columns = {name: dim.sample(rng, 2 * want) for name, dim in self.dimensions.items()}
            for k in range(2 * want):
                config = {name: columns[name][k] for name in self.names}
                key = config_id(config)
                if key in seen or not self._ok(config):
                    continue
                seen.add(key)
                out.append(config)
                if len(out) == n:
                    break
        return out

    def refine(
        self,
        scored: Sequence[tuple[Mapping[str, Any], float]],
        n: int,
        seed: int | None = 0,
        *,
        elite: float = 0.2,
        scale: float = 0.1,
        exclude: Iterable[str] = (),
    ) -> list[Config]:
        """One genetic step: ``n`` new configurations bred from the top ``elite`` fraction of
        ``scored`` (configuration, score) pairs, higher is better, NaN scores ignored.
        Configurations whose id is in ``exclude`` (already evaluated) are not repeated."""
        if not 0 < elite <= 1:
            raise ValueError(f"elite: expected a fraction in (0, 1], got {elite}")
        ranked = sorted(
            ((dict(c), float(s)) for c, s in scored if s is not None and not math.isnan(s)),
            key=lambda item: -item[1],
        )
        if not ranked:
            return self.sample(n, seed)
        parents = [c for c, _ in ranked[: max(2, math.ceil(elite * len(ranked)))]]
        rng = np.random.default_rng(seed)
        seen = set(exclude)
        out: list[Config] = []
        for _ in range(50 * max(n, 1)):
            if len(out) >= n:
                break
            a, b = (parents[int(i)] for i in rng.integers(0, len(parents), 2))
            child = {}
            for name, dim in self.dimensions.items():
                gene = a[name] if rng.random() < 0.5 else b[name]
                child[name] = dim.mutate(rng, gene, scale)
            key = config_id(child)
            if key in seen or not self._ok(child):
                continue
            seen.add(key)
            out.append(child)
        return out

    def unit(self, config: Mapping[str, Any]) -> np.ndarray:
        """The configuration as a point of the unit cube (for neighbourhoods)."""
        return np.array([dim.unit(config[name]) for name, dim in self.dimensions.items()])

    def validate(self, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming a parameter of ``params`` outside its dimension."""
        for name, dim in self.dimensions.items():
            if name not in params:
                raise ValueError(f"config: missing parameter {name!r}")
            value = params[name]
            if isinstance(dim, Choice):
                if value not in dim.options:
                    raise ValueError(f"config: {name}={value!r} is not one of {dim.options}")
            elif not dim.low <= value <= dim.high:
                raise ValueError(f"config: {name}={value!r} is outside [{dim.low}, {dim.high}]")


def parse_dimension(text: str, default: Any = None) -> tuple[str, Dimension]:
    """``'fast=5:50'`` (ints), ``'fast=5:50:5'`` (ints every 5), ``'x=0.1:10'`` (floats),
    ``'x=0.1:10:log'`` (log floats), ``'kind=a,b,c'`` (choice; converted to the type of
    ``default`` when given). Raises ``ValueError`` naming the parameter."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ValueError(f"expected NAME=LOW:HIGH[:STEP|:log] or NAME=A,B,C, got {text!r}")
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a parameter name")
    try:
        if ":" in spec:
            parts = [p.strip() for p in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError("expected LOW:HIGH[:STEP|:log]")
            if len(parts) == 3 and parts[2].lower() == "log":
                return name, LogFloatRange(float(parts[0]), float(parts[1]))
            if all(_is_int(p) for p in parts) and not isinstance(default, float):
                step = int(parts[2]) if len(parts) == 3 else 1
                return name, IntRange(int(parts[0]), int(parts[1]), step)
            step_f = float(parts[2]) if len(parts) == 3 else None
            return name, FloatRange(float(parts[0]), float(parts[1]), step_f)
        options = [o.strip() for o in spec.split(",")]
        if any(not o for o in options):
            raise ValueError("empty option")
        return name, Choice([_convert(o, default) for o in options])
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _convert(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


__all__ = [
    "Choice", "Config", "Dimension", "FloatRange", "IntRange", "LogFloatRange", "Space",
    "config_id", "parse_dimension",
]  # fmt: skip
