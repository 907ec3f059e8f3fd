"""Market data: ticks, bars, bar series, time frames and resampling (numpy/pandas only)."""

from .series import BarSeries, frame_to_records, records_to_frame
from .timeframes import UNITS, Alignment, BarSeriesID, Timeframe, period_bounds, period_starts
from .types import BAR_DTYPE, BAR_FIELDS, TICK_DTYPE, TICK_FIELDS, Bar, Tick, to_ns, to_timestamp

__all__ = [
    "BAR_DTYPE",
    "BAR_FIELDS",
    "TICK_DTYPE",
    "TICK_FIELDS",
    "UNITS",
    "Alignment",
    "Bar",
    "BarSeries",
    "BarSeriesID",
    "Tick",
    "Timeframe",
    "frame_to_records",
    "period_bounds",
    "period_starts",
    "records_to_frame",
    "to_ns",
    "to_timestamp",
]
