"""CSV and Parquet readers/writers, on files generated in tmp_path."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from osmarkets.data import DataError, read_bars, read_csv, read_parquet, write_csv, write_parquet
from osmarkets.data import io as data_io


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def utc(*stamps):
    return pd.DatetimeIndex([pd.Timestamp(s, tz="UTC") for s in stamps], name="time").as_unit("ns")


def test_date_and_time_columns_with_a_header_one_name_short(tmp_path):
    # The layout of a common 1-minute file: the header names Date only, rows carry date, time.
    path = write(
        tmp_path, "min.txt",
        "Date,Open,High,Low,Close,Volume,OpenInterest\n"
        "2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0\n"
        "2006-01-02,09:02:00,3600.00,3601.00,3598.00,3599.00,894,0\n",
    )  # fmt: skip
    frame = read_csv(path)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    pd.testing.assert_index_equal(frame.index, utc("2006-01-02 09:01", "2006-01-02 09:02"))
    assert frame["volume"].tolist() == [5699.0, 894.0]
    kept = read_csv(path, keep_open_interest=True)
    assert kept["open_interest"].tolist() == [0.0, 0.0]


def test_separate_date_and_time_headers_and_a_timezone(tmp_path):
    path = write(
        tmp_path, "five.csv",
        "Date,Time,Open,High,Low,Close,Volume\n"
        "2024-03-10,01:55:00,1,2,0.5,1.5,10\n"
        "2024-03-10,03:00:00,1,2,0.5,1.5,10\n",
    )  # fmt: skip
    frame = read_csv(path, tz="America/New_York")
    # 01:55 EST is 06:55 UTC; 03:00 EDT (after the spring change) is 07:00 UTC.
    pd.testing.assert_index_equal(frame.index, utc("2024-03-10 06:55", "2024-03-10 07:00"))


def test_daily_yahoo_layout_keeps_adj_close(tmp_path):
    path = write(
        tmp_path, "daily.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2014-01-02,37.78,38.03,37.55,37.84,35.17,18162100\n"
        "2014-01-03,37.65,37.86,37.56,37.62,35.07,11693900\n",
    )  # fmt: skip
    frame = read_bars(path)
    assert list(frame.columns) == ["open", "high", "low", "close", "adj_close", "volume"]
    assert frame.index[1] == pd.Timestamp("2014-01-03", tz="UTC")


@pytest.mark.parametrize(
    "body, columns",
    [("2024-01-02 10:00:00,1,2,0.5,1.5\n", ["open", "high", "low", "close"]),
     ("2024-01-02 10:00:00,1,2,0.5,1.5,7\n", ["open", "high", "low", "close", "volume"]),
     ("2024-01-02,10:00:00,1,2,0.5,1.5,7,3\n", ["open", "high", "low", "close", "volume"]),
     ("2024-01-02T10:00:00.125,1.1,1.2\n", ["bid", "ask"]),
     ("2024-01-02T10:00:00.125,1.1\n", ["price"])],
)  # fmt: skip
def test_headerless_layouts_by_column_count(tmp_path, body, columns):
    frame = read_csv(write(tmp_path, "x.csv", body))
    assert list(frame.columns) == columns
    assert frame.index[0].floor("s") == pd.Timestamp("2024-01-02 10:00", tz="UTC")


def test_tick_files_with_bid_ask_and_day_first_dates(tmp_path):
    path = write(
        tmp_path, "quotes.csv",
        "TIMESTAMP,BID,ASK\n02/03/2010 16:53:50,0.5346,0.5347\n02/03/2010 16:53:50,0.5343,0.5347\n"
        "02/03/2010 16:53:52,0.5543,0.5545\n",
    )  # fmt: skip
    frame = read_csv(path, dayfirst=True)
    assert list(frame.columns) == ["bid", "ask"]
    assert frame.index[0] == pd.Timestamp("2010-03-02 16:53:50", tz="UTC")
    assert frame.index[0] == frame.index[1]  # equal tick timestamps are fine


def test_trade_ticks_in_an_ohlc_layout(tmp_path):
    path = write(
        tmp_path, "trades.csv",
        "Datetime,Open,High,Low,Close,Volume,OpenInterest\n"
        "2015-09-23T20:57:42.146,3067,3067,3067,3067,180,0\n"
        "2015-09-23T20:57:42.146,3066,3066,3066,3066,2,0\n",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"trades.csv, line 3: .*repeats"):
        read_csv(path)  # as bars, two rows share a time
    ticks = read_csv(path, kind="ticks")
    assert list(ticks.columns) == ["price", "volume"]
    assert ticks["price"].tolist() == [3067.0, 3066.0]


def test_rename_and_drop_columns(tmp_path):
    path = write(
        tmp_path, "deals.csv",
        "TimeStamp,cross,status,bid, offer, vol bid, vol offer\n"
        "01/03/16,23:43:11,EUR/JPY,D,,130.520,,1000000\n",
    )  # fmt: skip
    frame = read_csv(path, dayfirst=True, rename={"ask": "price", "bid": None})
    assert frame["price"].tolist() == [130.52]
    assert "bid" not in frame.columns
    assert frame.index[0] == pd.Timestamp("2016-03-01 23:43:11", tz="UTC")


@pytest.mark.parametrize(
    "text, match",
    [("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-0x,1,2,0.5,1.5\n",
      r"bad.csv, line 3: time: cannot read '2024-01-0x'"),
     ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,abc,0.5,1.5\n",
      r"bad.csv, line 3: high: cannot read 'abc' as a number"),
     ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,0.2,0.5,1.5\n",
      r"bad.csv, line 3: bars: high is below low at row 1"),
     ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-01,1,2,0.5,1.5\n",
      r"bad.csv, line 3: bars: time goes backwards"),
     ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n2024-01-03,1,2,0.5\n",
      r"bad.csv, line 3: bars: close is NaN at row 1"),
     ("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5,9,9\n", r"bad.csv: the header has 5"),
     ("Open,High,Low,Close\n1,2,0.5,1.5\n", r"bad.csv: the first column 'Open' is not a date"),
     ("2024-01-02,1,2,0.5\n", r"bad.csv: no header and 3 value columns"),
     ("", r"bad.csv: the file is empty"),
     ("TIMESTAMP,BID,ASK\n2024-01-02 10:00:00,1.2,1.1\n", r"bad.csv, line 2: ticks: bid is above"),
     ("TIMESTAMP,BID,ASK\n2024-01-02 10:00:00,nan,1.1\n", r"bad.csv, line 2: ticks: bid is NaN")],
)  # fmt: skip
def test_bad_files_name_file_and_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_csv(write(tmp_path, "bad.csv", text))


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown file type '.xlsx'"):
        read_bars(tmp_path / "data.xlsx")
    with pytest.raises(ValueError, match="kind"):
        read_csv(write(tmp_path, "a.csv", "2024-01-02,1\n"), kind="candles")


def test_ambiguous_local_time_is_refused(tmp_path):
    path = write(tmp_path, "fall.csv", "Date,Open,High,Low,Close\n2024-11-03 01:30,1,1,1,1\n")
    with pytest.raises(DataError, match=r"fall.csv, line 2: time: .*ambiguous"):
        read_csv(path, tz="America/New_York")


def sample_bars(n=50, seed=3):
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2024-01-02", tz="UTC").value + np.cumsum(rng.integers(1, 10**12, n))
    close = 1 + rng.random(n)
    frame = pd.DataFrame(
        {"open": close, "high": close + rng.random(n) / 10, "low": close - rng.random(n) / 10,
         "close": close, "volume": rng.integers(0, 100, n).astype(float)},
        index=pd.DatetimeIndex(times.view("M8[ns]"), name="time").tz_localize("UTC"),
    )  # fmt: skip
    return frame


def test_csv_round_trip_is_exact_to_the_nanosecond(tmp_path):
    frame = sample_bars()
    path = tmp_path / "bars.csv"
    write_csv(frame, path)
    pd.testing.assert_frame_equal(read_bars(path), frame, check_exact=True, check_freq=False)


def test_quoted_bars_keep_their_bid_and_ask_columns(tmp_path):
    frame = sample_bars()
    half_spread = 0.0001
    for side, shift in (("bid", -half_spread), ("ask", half_spread)):
        for field in ("open", "high", "low", "close"):
            frame[f"{side}_{field}"] = frame[field] + shift
    path = tmp_path / "quoted.csv"
    write_csv(frame, path)
    pd.testing.assert_frame_equal(read_bars(path), frame, check_exact=True, check_freq=False)


def test_compressed_csv(tmp_path):
    frame = sample_bars()
    path = tmp_path / "bars.csv.gz"
    write_csv(frame, path)
    pd.testing.assert_frame_equal(read_bars(path), frame, check_exact=True, check_freq=False)


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_parquet_round_trip(tmp_path):
    frame = sample_bars()
    path = tmp_path / "bars.parquet"
    write_parquet(frame, path)
    pd.testing.assert_frame_equal(read_bars(path), frame, check_exact=True, check_freq=False)
    bad = frame.copy()
    bad.iloc[4, 1] = -1.0
    write_parquet(bad, path)
    with pytest.raises(
        DataError,
        match=r"bars.parquet: bars: high is not a positive finite price \(-1.0\) at row 4",
    ):
        read_parquet(path)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec

    def no_pyarrow(name, *args):
        return None if name == "pyarrow" else real(name, *args)

    monkeypatch.setattr(data_io.importlib.util, "find_spec", no_pyarrow)
    with pytest.raises(ImportError, match=r"pip install .*parquet"):
        write_parquet(sample_bars(), tmp_path / "x.parquet")
    with pytest.raises(ImportError, match="pyarrow"):
        read_parquet(tmp_path / "x.parquet")
