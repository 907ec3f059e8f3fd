"""The tutorial runs: its code blocks, in order, in one namespace, from the checkout's folder
(as a newcomer pastes them)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_every_block_of_the_tutorial_runs(monkeypatch, capsys) -> None:
    text = (ROOT / "docs" / "tutorial.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    assert len(blocks) >= 6
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "tutorial"}
    for number, block in enumerate(blocks, 1):
        code = textwrap.dedent(block)
        exec(compile(code, f"tutorial block {number}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "final_value" in out and "sharpe" in out  # the backtest's table
    assert "window" in out  # the optimiser's summary
    columns = ["side", "size", "price"]
    assert (namespace["simulated"].trades[columns].values.tolist()
            == namespace["result"].trades[columns].values.tolist())  # fmt: skip
    assert len(namespace["result"].trades) > 2
    assert "'bars_out'" in out or "'orders'" in out  # the sandbox deployment's Trader stats
