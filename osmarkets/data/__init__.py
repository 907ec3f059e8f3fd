"""Market data: ticks, bars, bar series, time frames and resampling (numpy/pandas only)."""

from .aggregate import BarResampler, TickAggregator
from .conform import conform
from .io import (
    LAYOUTS,
    detect_layout,
    read_bars,
    read_csv,
    read_mt4_hst,
    read_parquet,
    write_csv,
    write_parquet,
)
from .resample import resample, ticks_to_bars
from .series import BarSeries, frame_to_records, records_to_frame
from .timeframes import (
    UNITS,
    Alignment,
    BarSeriesID,
    Timeframe,
    infer_timeframe,
    period_bounds,
    period_starts,
)
from .types import BAR_DTYPE, BAR_FIELDS, TICK_DTYPE, TICK_FIELDS, Bar, Tick, to_ns, to_timestamp
from .validate import DataError, validate_bars, validate_ticks

__all__ = [
    "LAYOUTS",
    "BAR_DTYPE",
    "BAR_FIELDS",
    "TICK_DTYPE",
    "TICK_FIELDS",
    "UNITS",
    "Alignment",
    "Bar",
    "BarResampler",
    "BarSeries",
    "BarSeriesID",
    "DataError",
    "Tick",
    "TickAggregator",
    "Timeframe",
    "conform",
    "detect_layout",
    "frame_to_records",
    "infer_timeframe",
    "period_bounds",
    "period_starts",
    "read_bars",
    "read_csv",
    "read_mt4_hst",
    "read_parquet",
    "records_to_frame",
    "resample",
    "ticks_to_bars",
    "to_ns",
    "to_timestamp",
    "validate_bars",
    "validate_ticks",
    "write_csv",
    "write_parquet",
]
