"""Parameter spaces: grid, random sampling, refinement, parsing."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from osmarkets.optimize.space import (
    Choice,
    FloatRange,
    IntRange,
    LogFloatRange,
    Space,
    config_id,
    parse_dimension,
)


def test_grid_covers_int_steps_and_bounds():
    space = Space({"fast": IntRange(5, 20, 5), "kind": Choice(["a", "b"])})
    grid = space.grid()
    assert sorted({c["fast"] for c in grid}) == [5, 10, 15, 20]
    assert {c["kind"] for c in grid} == {"a", "b"}
    assert len(grid) == 8 == space.size()
    assert len({config_id(c) for c in grid}) == 8


def test_float_grid_points_and_step_and_log():
    assert FloatRange(0.0, 1.0).values(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert FloatRange(0.0, 1.0, 0.5).values() == [0.0, 0.5, 1.0]
    values = LogFloatRange(0.1, 10.0).values(3)
    assert values == pytest.approx([0.1, 1.0, 10.0])


def test_constraint_applies_to_grid_and_sample():
    space = Space(
        {"fast": IntRange(1, 30), "slow": IntRange(1, 30)},
        constraint=lambda c: c["fast"] < c["slow"],
    )
    assert all(c["fast"] < c["slow"] for c in space.grid())
    assert all(c["fast"] < c["slow"] for c in space.sample(100, seed=3))


def test_sample_is_reproducible_distinct_and_in_bounds():
    space = Space({"a": IntRange(0, 100, 4), "x": FloatRange(-1.0, 2.0), "k": Choice([1, 2, 3])})
    first = space.sample(300, seed=7)
    assert first == space.sample(300, seed=7)
    assert first != space.sample(300, seed=8)
    assert len({config_id(c) for c in first}) == 300
    for c in first:
        assert 0 <= c["a"] <= 100 and c["a"] % 4 == 0
        assert -1.0 <= c["x"] <= 2.0
        assert c["k"] in (1, 2, 3)


def test_sample_of_small_space_returns_what_exists():
    space = Space({"a": IntRange(1, 3)})
    assert sorted(c["a"] for c in space.sample(10, seed=0)) == [1, 2, 3]


def test_log_sampling_is_uniform_in_log():
    space = Space({"x": LogFloatRange(0.01, 100.0)})
    xs = np.array([c["x"] for c in space.sample(4000, seed=1)])
    assert xs.min() >= 0.01 and xs.max() <= 100.0
    # half the mass below the geometric middle (1.0); a linear sampler would put ~1 % there
    assert 0.45 < np.mean(xs < 1.0) < 0.55


@settings(max_examples=40, deadline=None)
@given(
    low=hs.integers(-50, 50),
    span=hs.integers(0, 60),
    step=hs.integers(1, 7),
    seed=hs.integers(0, 2**31),
)
def test_int_samples_are_on_the_declared_steps(low, span, step, seed):
    dim = IntRange(low, low + span, step)
    values = dim.sample(np.random.default_rng(seed), 50)
    allowed = set(dim.values())
    assert set(values) <= allowed
    assert all(dim.clip(v + 0.4) in allowed for v in values)
    assert dim.clip(low - 100) == low and dim.clip(low + span + 100) == max(allowed)


def test_refine_breeds_near_the_elite_within_bounds():
    space = Space({"a": IntRange(0, 1000), "x": LogFloatRange(0.001, 1000.0)})
    scored = [(c, -abs(c["a"] - 700)) for c in space.sample(200, seed=2)]
    children = space.refine(scored, 100, seed=5, exclude={config_id(c) for c, _ in scored})
    assert children == space.refine(scored, 100, seed=5, exclude={config_id(c) for c, _ in scored})
    assert len(children) == 100
    assert not {config_id(c) for c in children} & {config_id(c) for c, _ in scored}
    for c in children:
        space.validate(c)
    random_distance = np.mean([abs(c["a"] - 700) for c, _ in scored])
    child_distance = np.mean([abs(c["a"] - 700) for c in children])
    assert child_distance < random_distance / 2


def test_refine_ignores_nan_scores_and_falls_back_to_sampling():
    space = Space({"a": IntRange(0, 10)})
    assert len(space.refine([({"a": 1}, math.nan)], 3, seed=0)) == 3


def test_config_id_ignores_key_order_and_numpy_types():
    assert config_id({"a": 1, "b": 2.5}) == config_id({"b": 2.5, "a": np.int64(1)})
    assert config_id({"a": 1}) != config_id({"a": 2})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fast=5:50", IntRange(5, 50)),
        ("fast=5:50:5", IntRange(5, 50, 5)),
        ("x=0.1:10", FloatRange(0.1, 10.0)),
        ("x=0.1:10:log", LogFloatRange(0.1, 10.0)),
        ("kind=a,b,c", Choice(["a", "b", "c"])),
    ],
)
def test_parse_dimension(text, expected):
    assert parse_dimension(text)[1] == expected


def test_parse_dimension_converts_choices_to_the_default_type():
    assert parse_dimension("n=1,2", default=3)[1] == Choice([1, 2])
    assert parse_dimension("x=1:5", default=1.5)[1] == FloatRange(1.0, 5.0)


@pytest.mark.parametrize(
    "text, field",
    [
        ("fast", "NAME="),
        ("fast=", "NAME="),
        ("1x=1:2", "1x"),
        ("fast=9:1", "fast"),
        ("fast=a:b", "fast"),
        ("x=0:1:log", "x"),
        ("k=a,,b", "k"),
        ("k=a,a", "k"),
        ("fast=1:2:3:4", "fast"),
    ],
)
def test_parse_dimension_rejects_bad_input_naming_it(text, field):
    with pytest.raises(ValueError, match=field):
        parse_dimension(text)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: IntRange(5, 1), "high"),
        (lambda: IntRange(1, 5, 0), "step"),
        (lambda: IntRange(1.5, 5), "low"),
        (lambda: FloatRange(0.0, math.nan), "high"),
        (lambda: LogFloatRange(0.0, 1.0), "low"),
        (lambda: Choice([]), "options"),
        (lambda: Choice("abc"), "options"),
        (lambda: Space({}), "dimension"),
        (lambda: Space({"a": (1, 2, 3)}), "a"),
        (lambda: Space({"not a name": IntRange(1, 2)}), "name"),
    ],
)
def test_bad_dimensions_raise_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_space_coerce_from_tuples_and_lists():
    space = Space.coerce({"a": (1, 5), "x": (0.5, 2.0), "k": ["p", "q"]})
    assert space.dimensions == {
        "a": IntRange(1, 5),
        "x": FloatRange(0.5, 2.0),
        "k": Choice(["p", "q"]),
    }
