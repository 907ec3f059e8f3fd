"""Bad ticks and bars are refused with the field and the first bad row named."""

import numpy as np
import pandas as pd
import pytest

from osmarkets.data import DataError, validate_bars, validate_ticks

START = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def ticks(n=6, overrides=None):
    index = pd.DatetimeIndex([START + pd.Timedelta(seconds=i) for i in range(n)], name="time")
    frame = pd.DataFrame(
        {"bid": np.linspace(1.1, 1.2, n), "ask": np.linspace(1.1, 1.2, n) + 1e-4}, index=index
    )
    for (column, row), value in (overrides or {}).items():
        frame.iloc[row, frame.columns.get_loc(column)] = value
    return frame


def bars(n=6):
    # Row 2: open 1.139, high 1.15, low 1.13, close 1.14; bid = mid - 1e-4, ask = mid + 1e-4.
    index = pd.DatetimeIndex([START + pd.Timedelta(minutes=i) for i in range(n)], name="time")
    close = np.linspace(1.1, 1.2, n)
    frame = pd.DataFrame(
        {"open": close - 0.001, "high": close + 0.01, "low": close - 0.01, "close": close,
         "volume": np.arange(n, dtype=float)},
        index=index,
    )  # fmt: skip
    for side, shift in (("bid", -1e-4), ("ask", 1e-4)):
        for name in ("open", "high", "low", "close"):
            frame[f"{side}_{name}"] = frame[name] + shift
    return frame


def test_good_ticks_pass_and_repeated_timestamps_are_accepted_in_order():
    frame = ticks()
    frame.index = frame.index[[0, 1, 1, 1, 2, 3]]
    data = validate_ticks(frame)
    assert data.quoted
    assert np.array_equal(data.bid, frame["bid"].to_numpy())


@pytest.mark.parametrize(
    "column, value, what",
    [("bid", np.nan, "NaN"), ("ask", np.nan, "NaN"), ("bid", 0.0, "positive"),
     ("ask", -1.0, "positive"), ("bid", np.inf, "positive"), ("bid", 1.5, "above ask")],
)  # fmt: skip
def test_bad_tick_prices_name_field_and_row(column, value, what):
    frame = ticks(overrides={(column, 3): value})
    with pytest.raises(DataError, match=what) as info:
        validate_ticks(frame)
    assert info.value.field == column
    assert info.value.row == 3
    assert f"row 3 (time {frame.index[3].isoformat()})" in str(info.value)


def test_ticks_going_backwards_are_refused():
    frame = ticks()
    frame.index = frame.index[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(DataError, match="time goes backwards at row 3") as info:
        validate_ticks(frame)
    assert info.value.field == "time"


def test_trade_ticks_use_price():
    frame = ticks().rename(columns={"bid": "price"}).drop(columns="ask")
    data = validate_ticks(frame)
    assert not data.quoted
    assert data.bid is data.ask
    frame.iloc[2, 0] = -3.0
    with pytest.raises(DataError, match="price"):
        validate_ticks(frame)


def test_tick_frame_shape_errors():
    with pytest.raises(DataError, match="'bid' and 'ask'"):
        validate_ticks(ticks().rename(columns={"bid": "b", "ask": "a"}))
    with pytest.raises(DataError, match="missing column 'ask'"):
        validate_ticks(ticks().drop(columns="ask"))
    with pytest.raises(DataError, match="DatetimeIndex"):
        validate_ticks(ticks().reset_index())
    with pytest.raises(DataError, match="DataFrame"):
        validate_ticks([1, 2, 3])  # type: ignore[arg-type]
    bad_index = ticks()
    bad_index.index = pd.DatetimeIndex([START, pd.NaT, START, START, START, START], name="time")
    with pytest.raises(DataError, match="time is missing at row 1"):
        validate_ticks(bad_index)
    text = ticks().astype({"bid": object})
    text.iloc[1, 0] = "abc"
    with pytest.raises(DataError, match="bid"):
        validate_ticks(text)
    negative = ticks().assign(bid_volume=[1.0, 2.0, -1.0, 0.0, 0.0, 0.0])
    with pytest.raises(DataError, match="bid_volume is negative at row 2"):
        validate_ticks(negative)


def test_naive_times_are_taken_as_utc():
    frame = ticks()
    frame.index = frame.index.tz_localize(None)
    assert validate_ticks(frame).time[0] == START.value


def test_good_bars_pass():
    data = validate_bars(bars())
    assert data.bid is not None and data.ask is not None
    plain = validate_bars(bars()[["open", "high", "low", "close"]])
    assert plain.bid is None
    assert not plain.volume.any()


@pytest.mark.parametrize(
    "column, value, field, what",
    [("open", np.nan, "open", "NaN"), ("close", 0.0, "close", "positive"),
     ("high", 1.0, "high", "below low"), ("high", 1.1395, "high", "below close"),
     ("low", 1.1395, "low", "above open"), ("volume", -1.0, "volume", "negative"),
     ("bid_low", 9.0, "bid_high", "below bid_low"), ("ask_close", np.nan, "ask_close", "NaN"),
     ("bid_open", 1.1392, "bid_open", "above ask_open"),
     ("volume", np.nan, "volume", "NaN")],
)  # fmt: skip
def test_bad_bars_name_field_and_row(column, value, field, what):
    frame = bars()
    frame.iloc[2, frame.columns.get_loc(column)] = value
    with pytest.raises(DataError, match=what) as info:
        validate_bars(frame)
    assert info.value.field == field
    assert info.value.row == 2


def test_two_bars_with_the_same_time_or_backwards():
    frame = bars()
    frame.index = frame.index[[0, 1, 1, 2, 3, 4]]
    with pytest.raises(DataError, match="repeats the previous bar's time at row 2"):
        validate_bars(frame)
    frame = bars()
    frame.index = frame.index[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(DataError, match="goes backwards at row 3"):
        validate_bars(frame)


def test_bars_with_only_some_side_columns_are_refused():
    with pytest.raises(DataError, match="missing column 'ask_open'"):
        validate_bars(bars().drop(columns="ask_open"))
    with pytest.raises(DataError, match="missing column 'close'"):
        validate_bars(bars().drop(columns="close"))
