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

Constraints between parameters (:class:`Constraint`, ``Space(..., constraints=['fast <
slow'])``, ``--constraint`` on the command line) are small expressions over the space's
parameter names. They are parsed with :mod:`ast` and checked against a short grammar (names of
the space's parameters, numbers, comparisons, arithmetic, ``and``/``or``/``not``, parentheses),
then evaluated by walking the checked tree: user text is never given to ``eval`` or ``exec``.
A configuration violating a constraint is never generated (grid, sampling and refinement).

Pure Python and numpy: no osBrain here.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import numbers
import operator
import warnings
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


#: Longest constraint text accepted (a guard against pathological input).
MAX_CONSTRAINT_LENGTH = 500
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}  # fmt: skip
_REFUSED: dict[type[ast.AST], str] = {
    ast.Call: "a function call", ast.Attribute: "attribute access", ast.Subscript: "indexing",
    ast.Lambda: "a lambda", ast.NamedExpr: "an assignment (:=)", ast.IfExp: "an if-expression",
    ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dict",
    ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
    ast.JoinedStr: "a string", ast.Starred: "unpacking (*)", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "a slice",
}  # fmt: skip
_OPERATORS: dict[type[ast.operator], str] = {
    ast.Pow: "'**'", ast.BitAnd: "'&'", ast.BitOr: "'|'", ast.BitXor: "'^'", ast.LShift: "'<<'",
    ast.RShift: "'>>'", ast.MatMult: "'@'",
}  # fmt: skip
_GRAMMAR = (
    "allowed: parameter names, numbers, < <= > >= == !=, + - * / // %, unary -, and, or, not, "
    "parentheses"
)


class Constraint:
    """A condition between parameters, e.g. ``'fast < slow'`` or ``'slow - fast >= 5 and
    fast % 5 == 0'``: true for the configurations that may be generated.

    Grammar: names of the space's parameters (``names``), integer and float constants,
    comparisons and comparison chains (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``),
    arithmetic (``+``, ``-``, ``*``, ``/``, ``//``, ``%``, unary ``-``), ``and``, ``or``,
    ``not`` and parentheses. The whole expression, and each operand of ``and``/``or``/``not``,
    must be a condition (a comparison or a combination of comparisons). Anything else (calls,
    attributes, indexing, lambdas, strings, other names) raises ``ValueError`` with one line
    naming it. Parameters must hold numbers (a choice of strings cannot appear). A division or
    modulo by zero (or an overflow) makes the condition false: the configuration is not
    generated.

    The text is parsed with :func:`ast.parse` and checked node by node; evaluation walks the
    checked tree (no ``eval``, no ``exec``, no ``compile`` to code)."""

    def __init__(self, text: str, names: Iterable[str] | Mapping[str, Any]) -> None:
        if not isinstance(text, str):
            raise ValueError(f"constraint: expected an expression as text, got {text!r:.60}")
        self.text = text.strip()
        dims = names if isinstance(names, Mapping) else dict.fromkeys(names)
        self.names = tuple(dims)
        if not self.text:
            raise ValueError("constraint: empty expression")
        if len(self.text) > MAX_CONSTRAINT_LENGTH:
            raise ValueError(
                f"constraint: longer than {MAX_CONSTRAINT_LENGTH} characters ({len(self.text)})"
            )
        if "\n" in self.text or "\r" in self.text:
            raise ValueError(f"constraint {self._shown}: expected one line")
        try:
            with warnings.catch_warnings():  # e.g. a SyntaxWarning on an escape in a string
                warnings.simplefilter("ignore")
                tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ValueError(
                f"constraint {self._shown}: not a valid expression ({exc.msg})"
            ) from None
        except (RecursionError, MemoryError, ValueError):
            raise ValueError(f"constraint {self._shown}: not a valid expression") from None
        self._tree = tree.body
        self._check(self._tree, condition=True)
        for name in self.uses:
            dim = dims.get(name)
            if isinstance(dim, Choice) and not all(_is_number(o) for o in dim.options):
                raise ValueError(f"constraint {self._shown}: parameter {name!r} is a choice of "
                                 "non-numbers; constraints compare numbers only")  # fmt: skip

    @property
    def _shown(self) -> str:
        return repr(self.text if len(self.text) <= 80 else self.text[:77] + "...")

    @property
    def uses(self) -> list[str]:
        """The parameter names the expression uses, in order of first use."""
        found = [n.id for n in ast.walk(self._tree) if isinstance(n, ast.Name)]
        return list(dict.fromkeys(found))

    def __repr__(self) -> str:
        return f"Constraint({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constraint) and (self.text, self.names) == (
            other.text,
            other.names,
        )

    def __hash__(self) -> int:
        return hash((self.text, self.names))

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as its text: re-parsed and re-checked
        return (Constraint, (self.text, self.names))

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"constraint {self._shown}: {what} is not allowed ({_GRAMMAR})")

    def _check(self, node: ast.AST, condition: bool) -> None:
        """Refuse every node outside the grammar; ``condition``: whether a condition (rather
        than a number) is expected here."""
        is_condition = isinstance(node, ast.BoolOp | ast.Compare) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        )
        if is_condition and not condition:  # no arithmetic on truth values
            raise self._fail("a condition used as a number")
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, condition=True)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check(node.operand, condition=True)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    word = {ast.In: "'in'", ast.NotIn: "'not in'", ast.Is: "'is'",
                            ast.IsNot: "'is not'"}.get(type(op), type(op).__name__)  # fmt: skip
                    raise self._fail(f"the comparison {word}")
            for operand in (node.left, *node.comparators):
                self._check(operand, condition=False)
        elif condition:
            # check the parts first, so that forbidden content is named as such
            self._check(node, condition=False)
            raise ValueError(
                f"constraint {self._shown}: expected a condition such as 'fast < slow', got a "
                "number (add a comparison)"
            )
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                symbol = _OPERATORS.get(type(node.op), type(node.op).__name__)
                raise self._fail(f"the operator {symbol}")
            self._check(node.left, condition=False)
            self._check(node.right, condition=False)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                symbol = {ast.UAdd: "unary '+'", ast.Invert: "'~'"}.get(type(node.op), "it")
                raise self._fail(symbol)
            self._check(node.operand, condition=False)
        elif isinstance(node, ast.Name):
            if node.id not in self.names:
                known = ", ".join(self.names) or "none"
                raise ValueError(f"constraint {self._shown}: unknown name {node.id!r} "
                                 f"(parameters: {known})")  # fmt: skip
        elif isinstance(node, ast.Constant):
            constant = node.value
            if isinstance(constant, bool) or not isinstance(constant, int | float):
                text = isinstance(constant, str | bytes)
                raise self._fail("a string" if text else f"the constant {constant!r}")
        elif isinstance(node, ast.Call):
            func = node.func
            called = f" ({func.id}(...))" if isinstance(func, ast.Name) else ""
            raise self._fail(f"a function call{called}")
        elif isinstance(node, ast.Attribute):
            raise self._fail(f"attribute access (.{node.attr})")
        else:
            raise self._fail(_REFUSED.get(type(node), f"the construct {type(node).__name__}"))

    def __call__(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` satisfies the constraint (False when it is undefined: a
        division or modulo by zero, a number too large for a float)."""
        try:
            return bool(self._value(self._tree, config))
        except (ZeroDivisionError, OverflowError):
            return False

    def _value(self, node: ast.AST, config: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                return all(self._value(v, config) for v in node.values)
            return any(self._value(v, config) for v in node.values)
        if isinstance(node, ast.UnaryOp):
            operand = self._value(node.operand, config)
            return (not operand) if isinstance(node.op, ast.Not) else -operand
        if isinstance(node, ast.Compare):
            left = self._value(node.left, config)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._value(right_node, config)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.BinOp):
            left = self._value(node.left, config)
            right = self._value(node.right, config)
            return _ARITHMETIC[type(node.op)](left, right)
        if isinstance(node, ast.Name):
            if node.id not in config:
                raise ValueError(f"constraint {self._shown}: configuration has no {node.id!r}")
            value = _plain(config[node.id])
            if not _is_number(value):
                raise ValueError(f"constraint {self._shown}: {node.id}={value!r} is not a number")
            return value
        if isinstance(node, ast.Constant):
            return node.value
        raise self._fail(type(node).__name__)  # unreachable after _check


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


class Space:
    """Named dimensions, optionally with constraints that reject configurations: a Python
    ``constraint(config) -> bool`` (e.g. ``lambda c: c['fast'] < c['slow']``) and/or
    ``constraints``, expressions as text (``['fast < slow']``, see :class:`Constraint`). A
    configuration is generated only if it satisfies all of them."""

    def __init__(
        self,
        dimensions: Mapping[str, Dimension],
        constraint: Callable[[Config], bool] | None = None,
        constraints: Iterable[str | Constraint] = (),
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
        if isinstance(constraints, str):
            constraints = [constraints]
        self.constraints: list[Constraint] = [
            Constraint(c.text if isinstance(c, Constraint) else c, self.dimensions)
            for c in constraints
        ]

    def with_constraints(self, constraints: Iterable[str | Constraint]) -> Space:
        """A copy of this space with ``constraints`` added (this one is left as it is)."""
        if isinstance(constraints, str):
            constraints = [constraints]
        return Space(self.dimensions, self.constraint, [*self.constraints, *constraints])

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

    def config_of(self, row: Mapping[str, Any]) -> Config:
        """This space's parameters of ``row`` (a table row), as plain Python values."""
        return {name: _plain(row[name]) for name in self.names}

    def __repr__(self) -> str:
        if self.constraints:
            texts = [c.text for c in self.constraints]
            return f"Space({self.dimensions!r}, constraints={texts!r})"
        return f"Space({self.dimensions!r})"

    def _ok(self, config: Config) -> bool:
        if self.constraint is not None and not self.constraint(config):
            return False
        return all(c(config) for c in self.constraints)

    def grid(self, points: int = 5) -> list[Config]:
        """Every combination, in a fixed order (floats without a step on ``points`` values)."""
        if points < 1:
            raise ValueError(f"points: expected >= 1, got {points}")
        axes = [dim.values(points) for dim in self.dimensions.values()]
        configs = (dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes))
        return [c for c in configs if self._ok(c)]

    def size(self, points: int = 5) -> int:
        """Number of grid points before the constraints."""
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
    "Choice", "Config", "Constraint", "Dimension", "FloatRange", "IntRange", "LogFloatRange",
    "Space", "config_id", "parse_dimension",
]  # fmt: skip
