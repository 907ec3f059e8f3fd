"""examples/notebooks/backtest.ipynb runs: its code cells, converted to a script, run in a
subprocess (no Jupyter needed) and write the HTML report."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebooks" / "backtest.ipynb"


def load_notebook():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def to_script(notebook):
    """The code cells in order; IPython magics and shell escapes are left out."""
    chunks = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"


def test_notebook_is_valid_nbformat_4():
    notebook = load_notebook()
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 5
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert "markdown" in kinds and kinds.count("code") >= 4
    ids = [cell["id"] for cell in notebook["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in notebook["cells"]:
        assert isinstance(cell["source"], list) and isinstance(cell["metadata"], dict)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None  # stored clean
    try:
        import nbformat
    except ImportError:
        return
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4))


def test_notebook_runs_and_writes_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    script = tmp_path / "backtest_notebook.py"
    script.write_text(to_script(load_notebook()), encoding="utf-8")
    env = {**os.environ, "OSMARKETS_REPORT_DIR": str(tmp_path), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "final_value" in out and "max_drawdown" in out and "sharpe" in out
    fills = re.search(r"fills: (\d+) vs (\d+)", out)
    values = re.search(r"final value: ([\d,.]+) vs ([\d,.]+)", out)
    assert fills and values, out
    assert int(fills[1]) == int(fills[2]) > 0  # vectorised and event-driven agree
    assert values[1] == values[2]
    report = tmp_path / "sma_cross.html"
    assert f"report: {report}" in out
    text = report.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text and "max_drawdown" in text
