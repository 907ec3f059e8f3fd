"""Constraints between parameters: a safe expression language over parameter names, applied by
grid, sampling and refinement, from Python (Space, explore, walk_forward) and the CLI."""

import ast
import builtins
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_optimize import make_bars

from osmarkets.cli import main
from osmarkets.optimize import Choice, FloatRange, IntRange, Space, explore, walk_forward
from osmarkets.optimize.space import MAX_CONSTRAINT_LENGTH, Constraint
from osmarkets.strategies import SmaCross

DIMS = {"fast": IntRange(1, 40), "slow": IntRange(2, 80), "x": FloatRange(0.0, 2.0)}
CONFIGS = [
    {"fast": f, "slow": s, "x": x}
    for f in (1, 5, 10, 39)
    for s in (2, 10, 20, 80)
    for x in (0.0, 0.5, 2.0)
]


@pytest.mark.parametrize(
    "text, truth",
    [
        ("fast < slow", lambda c: c["fast"] < c["slow"]),
        ("fast<slow", lambda c: c["fast"] < c["slow"]),
        ("slow - fast >= 10", lambda c: c["slow"] - c["fast"] >= 10),
        ("fast < slow <= 4 * fast", lambda c: c["fast"] < c["slow"] <= 4 * c["fast"]),
        ("fast % 5 == 0 or x != 0.5", lambda c: c["fast"] % 5 == 0 or c["x"] != 0.5),
        ("not (fast >= slow) and x > 0", lambda c: not (c["fast"] >= c["slow"]) and c["x"] > 0),
        ("slow // fast > 2", lambda c: c["slow"] // c["fast"] > 2),
        ("slow / fast >= 2.5", lambda c: c["slow"] / c["fast"] >= 2.5),
        ("-fast > -slow", lambda c: -c["fast"] > -c["slow"]),
        ("fast * 1e-3 < x + 1", lambda c: c["fast"] * 1e-3 < c["x"] + 1),
        ("(fast + 1) * 2 > slow", lambda c: (c["fast"] + 1) * 2 > c["slow"]),
        ("  fast < slow  ", lambda c: c["fast"] < c["slow"]),
    ],
)
def test_valid_constraints_evaluate_like_python(text, truth):
    constraint = Constraint(text, DIMS)
    for config in CONFIGS:
        assert constraint(config) == truth(config), (text, config)


@pytest.mark.parametrize(
    "text, named",
    [
        ("__import__('os').system('x')", "a function call"),
        ("fast.__class__", "attribute access (.__class__)"),
        ("(lambda: 1)()", "a function call"),
        ("(lambda: 1) == 1", "a lambda"),
        ("fst < slow", "unknown name 'fst' (parameters: fast, slow, x)"),
        ("os < 1", "unknown name 'os'"),
        ("__builtins__ < 1", "unknown name '__builtins__'"),
        ("fast < 'a'", "a string"),
        ("fast < f'{slow}'", "a string"),
        ("fast < b'1'", "a string"),
        ("open('/etc/passwd') < 1", "a function call (open(...))"),
        ("().__class__.__bases__[0] == 1", "indexing"),
        ("fast.real < 3", "attribute access (.real)"),
        ("[1][0] < fast", "indexing"),
        ("fast < [1, 2]", "a list"),
        ("fast in (1, 2)", "the comparison 'in'"),
        ("fast is slow", "the comparison 'is'"),
        ("fast ** 2 < slow", "the operator '**'"),
        ("fast ** 99999999 < slow", "the operator '**'"),
        ("fast & 1 == 0", "the operator '&'"),
        ("~fast < slow", "'~'"),
        ("+fast < slow", "unary '+'"),
        ("fast < slow if x else 0", "an if-expression"),
        ("(y := 3) < fast", "an assignment (:=)"),
        ("[c for c in ()] == 1", "a comprehension"),
        ("fast < True", "the constant True"),
        ("fast < None", "the constant None"),
        ("fast < 1j", "the constant 1j"),
        ("(fast < slow) + 1 > 0", "a condition used as a number"),
        ("fast", "expected a condition"),
        ("fast + slow", "expected a condition"),
        ("fast < slow and x", "expected a condition"),
        ("fast <", "not a valid expression"),
        ("import os", "not a valid expression"),
        ("fast < slow; import os", "not a valid expression"),
        ("", "empty expression"),
        ("fast < slow\nor 1 < 2", "expected one line"),
        ("(" * 300 + "fast < slow" + ")" * 300, "longer than"),
    ],
)
def test_hostile_or_malformed_constraints_are_refused_in_one_line(text, named):
    with pytest.raises(ValueError) as info:
        Constraint(text, DIMS)
    message = str(info.value)
    assert named in message
    assert len(message.splitlines()) == 1
    assert message.startswith("constraint")


def test_nothing_is_ever_evaluated_as_python(monkeypatch, tmp_path):
    """Parsing and evaluating never call eval or exec, and compile only to an AST (that is how
    ast.parse works), never to code; a hostile expression has no effect (the file it would
    create never appears)."""
    real_compile = builtins.compile

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called on a constraint")

    def ast_only(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            raise AssertionError("a constraint compiled to code")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", ast_only)
    ok = Constraint("fast < slow and slow - fast >= 3", DIMS)
    assert ok({"fast": 1, "slow": 5, "x": 0.0}) and not ok({"fast": 4, "slow": 5, "x": 0.0})
    target = tmp_path / "pwned"
    for text in (
        f"__import__('pathlib').Path({str(target)!r}).touch()",
        f"open({str(target)!r}, 'w').write('x') > 0",
        "fast.__class__.__subclasses__()[0] == 1",
    ):
        with pytest.raises(ValueError, match="not allowed"):
            Constraint(text, DIMS)
    assert not target.exists()


def test_choice_of_strings_cannot_be_constrained_but_numeric_choices_can():
    dims = {"fast": IntRange(1, 5), "kind": Choice(["a", "b"]), "k": Choice([1, 2.5])}
    with pytest.raises(ValueError, match="'kind' is a choice of non-numbers"):
        Constraint("kind == 1", dims)
    assert Constraint("k * 2 > fast", dims)({"fast": 4, "kind": "a", "k": 2.5})


def test_division_by_zero_means_violated_and_numpy_values_work():
    constraint = Constraint("slow / (fast - 5) > 1", DIMS)
    assert constraint({"fast": 5, "slow": 10, "x": 0.0}) is False
    assert constraint({"fast": np.int64(6), "slow": np.int64(10), "x": np.float64(0.0)}) is True
    assert Constraint("slow % (fast - fast) == 0", DIMS)({"fast": 1, "slow": 2}) is False


def test_grid_sampling_and_refinement_never_generate_a_violation():
    space = Space(
        {"fast": IntRange(1, 30), "slow": IntRange(1, 30)},
        constraints=["fast < slow", "slow - fast >= 3"],
    )

    def ok(c):
        return c["fast"] < c["slow"] and c["slow"] - c["fast"] >= 3

    grid = space.grid()
    assert grid and all(ok(c) for c in grid)
    assert len(grid) == sum(1 for f in range(1, 31) for s in range(1, 31) if s - f >= 3)
    sample = space.sample(150, seed=4)
    assert len(sample) == 150 and all(ok(c) for c in sample)
    scored = [(c, float(c["slow"] - c["fast"])) for c in sample]
    children = space.refine(scored, 100, seed=5, scale=0.5)
    assert children and all(ok(c) for c in children)


def test_python_constraint_and_expressions_combine_and_spaces_stay_unchanged():
    base = Space(
        {"fast": IntRange(1, 20), "slow": IntRange(1, 20)}, constraint=lambda c: c["fast"] % 2 == 0
    )
    narrowed = base.with_constraints("fast < slow")
    assert base.constraints == [] and len(narrowed.constraints) == 1
    assert all(c["fast"] % 2 == 0 and c["fast"] < c["slow"] for c in narrowed.grid())
    assert "constraints=['fast < slow']" in repr(narrowed)
    again = pickle.loads(pickle.dumps(narrowed.constraints[0]))
    assert again == narrowed.constraints[0] and again({"fast": 1, "slow": 2})
    with pytest.raises(ValueError, match="unknown name 'x'"):
        Space({"fast": IntRange(1, 5)}, constraints=["x < fast"])
    assert len("f" * MAX_CONSTRAINT_LENGTH) == MAX_CONSTRAINT_LENGTH


def test_explore_and_walk_forward_pass_constraints_through():
    bars = make_bars(1800, seed=11)
    space = {"fast": IntRange(2, 40), "slow": IntRange(5, 60)}
    result = explore(SmaCross, bars, space, samples=40, seed=2, refine=1, refine_samples=20,
                     constraints=["fast < slow", "slow >= 2 * fast"])  # fmt: skip
    table = result.table
    assert len(table) > 40 and (table["round"] == 1).any()
    assert (table["fast"] < table["slow"]).all() and (table["slow"] >= 2 * table["fast"]).all()
    assert result.meta["constraints"] == ["fast < slow", "slow >= 2 * fast"]
    grid = explore(SmaCross, bars, {"fast": IntRange(2, 10), "slow": IntRange(5, 12)},
                   grid=True, constraints=["fast < slow"], portfolio=False)  # fmt: skip
    assert len(grid.table) == sum(1 for f in range(2, 11) for s in range(5, 13) if f < s)
    wf = walk_forward(SmaCross, bars, space, train=900, test=400, samples=15,
                      constraints=["fast < slow"])  # fmt: skip
    configurations = wf.configurations()
    assert len(configurations) == 15 * len(wf.windows)
    assert (configurations["fast"] < configurations["slow"]).all()
    with pytest.raises(ValueError, match="unknown name 'slw'"):
        walk_forward(SmaCross, bars, space, train=900, test=400, constraints=["fast < slw"])
    with pytest.raises(ValueError, match="constraints reject all"):
        explore(SmaCross, bars, space, samples=5, constraints=["fast > slow + 100"])


# -- command line -------------------------------------------------------------------------------


@pytest.fixture
def bars_csv(tmp_path):
    path = tmp_path / "bars.csv"
    make_bars(1500, seed=8).to_csv(path)
    return str(path)


EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sma_cross.py") + ":SmaCross"


def _args(command, bars_csv, *extra):
    args = [command, EXAMPLE, "--data", bars_csv, "--bsid", "X:M1", "--space", "fast=2:40",
            "--space", "slow=5:60", "--quiet", *extra]  # fmt: skip
    if command == "walkforward":
        args += ["--train", "800", "--test", "350", "--samples", "10"]
    return args


def test_cli_constraints_keep_every_configuration_valid(bars_csv, tmp_path, capsys):
    out = tmp_path / "r.csv"
    code = main(_args("optimize", bars_csv, "--samples", "50", "--constraint", "fast < slow",
                      "--constraint", "slow - fast >= 5", "-o", str(out)))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out)
    assert len(table) == 50
    assert (table["fast"] < table["slow"]).all() and (table["slow"] - table["fast"] >= 5).all()
    wf_out = tmp_path / "wf.csv"
    code = main(_args("walkforward", bars_csv, "--constraint", "fast < slow", "-o", str(wf_out)))
    assert code == 0, capsys.readouterr().err
    wf = pd.read_csv(wf_out)
    assert len(wf) and (wf["fast"] < wf["slow"]).all()


@pytest.mark.parametrize("command", ["optimize", "walkforward"])
@pytest.mark.parametrize(
    "expression, message",
    [
        ("__import__('os').system('x')", "a function call is not allowed"),
        ("fast.__class__", "attribute access (.__class__) is not allowed"),
        ("(lambda: 1)()", "a function call is not allowed"),
        ("fast < sloww", "unknown name 'sloww' (parameters: fast, slow)"),
        ("fast < 'slow'", "a string is not allowed"),
        ("fast <", "not a valid expression"),
    ],
)
def test_cli_bad_constraint_is_one_line_and_exit_2(bars_csv, capsys, command, expression, message):
    assert main(_args(command, bars_csv, "--constraint", expression)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--constraint" in err and message in err
