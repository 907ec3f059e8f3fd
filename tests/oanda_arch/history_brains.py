"""Brains of the history-on-subscribe tests (a module, so agent processes import it)."""

from __future__ import annotations

from typing import Any

from osmarkets import BarSeries, Brain
from osmarkets.data.timeframes import BarSeriesID


class Recorder(Brain):
    """Records the open time of every live bar it is given, per series."""

    def on_start(self) -> None:
        self.live: dict[str, list[int]] = {}

    def on_new_bar(self, series: BarSeries) -> None:
        self.live.setdefault(series.bsid.key, []).append(int(series[0].time))

    def snapshot(self, bsid: Any) -> tuple[list[int], int, Any]:
        """(live bar times so far, last sequence number, the series as a DataFrame), read in
        one call on the agent's loop, so the three agree."""
        key = BarSeriesID.parse(bsid)
        live = list(getattr(self, "live", {}).get(key.key, []))
        return live, int(self.osm_seq.get(key, 0)), self.osm_series_frame(key)  # type: ignore[attr-defined]
