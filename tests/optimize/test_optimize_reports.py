"""The optimiser's HTML reports: charts rendered to PNG with matplotlib's Agg, every section
present, date labels that do not overlap, gaps in time shown as gaps, tables that wrap and the
annualisation stated."""

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from helpers_optimize import Momentum, make_bars

from osmarkets.backtest.result import format_stat
from osmarkets.backtest.stats import infer_periods_per_year
from osmarkets.optimize import IntRange, explore, walk_forward
from osmarkets.optimize.results import annualisation_note

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _sessions(n=4000, seed=8):
    """Five-minute bars inside 08:00-16:00 only: a night between every two sessions."""
    bars = make_bars(n, seed=seed, freq="5min")
    return bars[(bars.index.hour >= 8) & (bars.index.hour < 16)]


@pytest.fixture(scope="module")
def exploration():
    return explore(Momentum, _sessions(), {"lag": IntRange(1, 60)}, samples=25, seed=1,
                   max_members=3, max_correlation=0.95)  # fmt: skip


@pytest.fixture(scope="module")
def walkforward():
    return walk_forward(Momentum, _sessions(), {"lag": IntRange(1, 60)}, train=500, test=250,
                        samples=12, max_members=2, max_correlation=0.95)  # fmt: skip


def _save(fig, path):
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000
    return data


def _date_labels_do_not_overlap(ax):
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 2
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert not a.overlaps(b), (a, b)


def test_charts_render_to_png_with_readable_date_axes(exploration, walkforward, tmp_path):
    assert matplotlib.get_backend().lower() == "agg"
    _save(exploration.plot(), tmp_path / "map.png")
    fig = exploration.portfolio.plot()
    ax_eq = fig.axes[1]
    assert isinstance(ax_eq.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    assert isinstance(ax_eq.xaxis.get_major_locator(), mdates.AutoDateLocator)
    _date_labels_do_not_overlap(ax_eq)
    portfolio_line = ax_eq.get_lines()[-1]
    assert np.isnan(np.asarray(portfolio_line.get_ydata(), dtype=float)).any()  # nights: gaps
    _save(fig, tmp_path / "portfolio.png")
    fig = walkforward.plot()
    ax_eq = fig.axes[0]
    assert isinstance(ax_eq.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    _date_labels_do_not_overlap(ax_eq)
    assert np.isnan(np.asarray(ax_eq.get_lines()[0].get_ydata(), dtype=float)).any()
    _save(fig, tmp_path / "walkforward.png")


def _sections(text):
    return re.findall(r"<h([23])>(.*?)</h\1>", text)


def _check_css(text):
    style = text[text.index("<style>") : text.index("</style>")]
    assert ".table-wrap{overflow-x:auto" in style
    assert "table-layout:fixed" in style and "word-break:break-word" in style
    assert "overflow-wrap:anywhere" in style
    # every table is inside a scrolling container
    assert text.count("<table") == text.count('<div class="table-wrap"><table')


def test_explore_report_has_every_section_the_stats_and_the_annualisation(exploration, tmp_path):
    path = exploration.to_html(tmp_path / "explore.html")
    text = Path(path).read_text(encoding="utf-8")
    members = len(exploration.portfolio.members)
    assert [title for _, title in _sections(text)] == [
        "Summary",
        "Exploration map",
        f"Portfolio ({members} members)",
        "Portfolio statistics",
        "Correlation and combined equity",
        "Overfitting",
        "Best configurations",
    ]
    assert text.count("data:image/png;base64,") == 3  # map, portfolio, PBO
    assert exploration.overfitting is not None  # computed for the report
    assert f"<th>PBO</th><td>{format_stat('pbo', exploration.overfitting.pbo)}" in text
    assert f"deflated by {len(exploration.table)} trials" in text
    ppy = exploration.evaluator.periods_per_year
    sentence = (f"Sharpe and Sortino ratios, annual return and Calmar are annualised with "
                f"{ppy:,.1f} periods per year, inferred from")  # fmt: skip
    assert sentence in text and "M5 bars" in text
    assert exploration.annualisation in exploration.summary()
    assert "<th>trades</th><td>0</td>" not in text
    trades = exploration.portfolio.stats["trades"]
    assert trades > 0 and f"<th>trades</th><td>{trades}</td>" in text
    _check_css(text)
    assert '<table class="dataframe wide">' in text  # the best configurations


def test_walkforward_report_has_every_section_and_a_wrapping_windows_table(walkforward, tmp_path):
    path = walkforward.to_html(tmp_path / "wf.html")
    text = Path(path).read_text(encoding="utf-8")
    windows = len(walkforward.windows)
    assert [title for _, title in _sections(text)] == [
        "Out-of-sample summary",
        "Stitched equity and in-sample vs out-of-sample",
        "Windows",
        *[f"Window {k}: exploration" for k in range(windows)],
    ]
    assert text.count("data:image/png;base64,") == 1 + windows
    assert f"{walkforward.periods_per_year:,.1f} periods per year" in text
    assert "annualised with" in text and walkforward.annualisation in walkforward.summary()
    windows_table = text[text.index("<h2>Windows</h2>") :]
    assert windows_table.split("\n", 1)[1].startswith(
        '<div class="table-wrap"><table class="dataframe wide">'
    )
    assert "+00:00" not in windows_table.split("</table>")[0]  # times to the minute, UTC
    assert "oos_trades" in windows_table
    _check_css(text)
    stats = walkforward.stats
    assert stats["trades"] > 0 and f"<th>trades</th><td>{stats['trades']}</td>" in text


def test_portfolio_report_sections(exploration, tmp_path):
    text = Path(exploration.portfolio.to_html(str(tmp_path / "p.html"))).read_text(
        encoding="utf-8"
    )
    assert [title for _, title in _sections(text)] == [
        "Members",
        "Statistics",
        "Correlation and combined equity",
        "Decisions",
    ]
    assert "periods per year" in text
    _check_css(text)


def test_annualisation_sentence_names_the_rule_used():
    short = pd.date_range("2024-01-02", periods=5000, freq="min", tz="UTC")  # 3.5 days
    note = annualisation_note(short, infer_periods_per_year(short), "M1")
    assert note.startswith(
        "Sharpe and Sortino ratios, annual return and Calmar are annualised with 525,960.0 "
        "periods per year, inferred from the median spacing of the M1 bars (1 min)"
    )
    assert "3.5 days" in note and "extrapolation" in note
    daily = pd.bdate_range("2020-01-01", "2022-12-31", tz="UTC")
    ppy = infer_periods_per_year(daily)
    note = annualisation_note(daily, ppy, "D")
    assert f"annualised with {ppy:,.1f} periods per year" in note
    assert f"{len(daily) - 1:,} bar-to-bar steps of the D bars over" in note
    assert "observed rate" in note and "extrapolation" not in note
    assert "not annualised" in annualisation_note(daily[:1], float("nan"))
