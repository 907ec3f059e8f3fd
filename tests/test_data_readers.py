"""Readers of the layouts people have: Yahoo, Stooq, MetaTrader (CSV exports and MT4 .hst),
NinjaTrader, TradeStation and Parquet, with the layout detected or named, and their refusals."""

import gzip
import importlib.util
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osmarkets.data import DataError, read_bars, read_csv, write_parquet
from osmarkets.data.io import LAYOUTS, detect_layout, read_mt4_hst

FILES = Path(__file__).parent / "data_files" / "readers"
OHLCV = ["open", "high", "low", "close", "volume"]


def bars(stamps, rows, columns=OHLCV, tz="UTC"):
    index = pd.DatetimeIndex(
        [pd.Timestamp(stamp, tz=tz).tz_convert("UTC") for stamp in stamps], name="time"
    ).as_unit("ns")
    return pd.DataFrame(np.array(rows, dtype=np.float64), index=index, columns=list(columns))


def same(actual, expected):
    pd.testing.assert_frame_equal(actual, expected, check_exact=True, check_freq=False)


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


EXPECTED = {
    "yahoo.csv": (
        "yahoo",
        bars(
            ["2019-03-13", "2019-03-14", "2019-03-15"],
            [[52.10, 52.75, 51.90, 52.60, 50.12, 9120300],
             [52.55, 53.05, 52.30, 52.95, 50.45, 8804100],
             [53.00, 53.40, 52.80, 53.20, 50.69, 15230000]],
            ["open", "high", "low", "close", "adj_close", "volume"],
        ),
    ),
    "stooq_daily.csv": (
        "stooq",
        bars(
            ["2023-12-27", "2023-12-28", "2023-12-29"],
            [[192.49, 193.50, 191.09, 193.15, 48087681],
             [194.14, 194.66, 193.17, 193.58, 34049898],
             [193.90, 194.40, 191.73, 192.53, 42672148]],
        ),
    ),
    "stooq_intraday.csv": (
        "stooq",
        bars(
            ["2024-01-02 15:35", "2024-01-02 15:40", "2024-01-02 15:45"],
            [[187.15, 187.70, 186.90, 187.42, 1540210],
             [187.43, 187.60, 186.75, 186.80, 980412],
             [186.81, 187.05, 186.40, 186.95, 774105]],
        ),
    ),
    "stooq_ticker.txt": (
        "stooq",
        bars(
            ["2024-01-02 09:00", "2024-01-02 09:05", "2024-01-02 09:10"],
            [[1.10412, 1.10450, 1.10390, 1.10433, 812],
             [1.10433, 1.10471, 1.10420, 1.10465, 640],
             [1.10465, 1.10480, 1.10402, 1.10410, 701]],
        ),
    ),
    "mt4_export.csv": (
        "metatrader",
        bars(
            ["2020-01-02 00:00", "2020-01-02 00:01", "2020-01-02 00:02"],
            [[1.12100, 1.12200, 1.12000, 1.12150, 1234],
             [1.12150, 1.12180, 1.12110, 1.12170, 987],
             [1.12170, 1.12240, 1.12160, 1.12230, 1502]],
        ),
    ),
    "mt5_export.csv": (  # <VOL> is all zero: the volume is <TICKVOL>, <SPREAD> is dropped
        "metatrader",
        bars(
            ["2020-01-02 00:00", "2020-01-02 01:00", "2020-01-02 02:00"],
            [[1.12124, 1.12197, 1.12106, 1.12173, 1049],
             [1.12173, 1.12210, 1.12150, 1.12201, 812],
             [1.12201, 1.12215, 1.12166, 1.12190, 655]],
        ),
    ),
    "ninjatrader_minute.txt": (
        "ninjatrader",
        bars(
            ["2006-10-23 00:44", "2006-10-23 00:45", "2006-10-23 00:46"],
            [[1377.25, 1377.50, 1377.00, 1377.25, 86],
             [1377.25, 1377.75, 1377.25, 1377.50, 27],
             [1377.50, 1377.50, 1377.00, 1377.00, 24]],
        ),
    ),
    "ninjatrader_daily.txt": (
        "ninjatrader",
        bars(
            ["2006-10-23", "2006-10-24", "2006-10-25"],
            [[1377.25, 1381.00, 1372.50, 1379.75, 184211],
             [1379.75, 1384.25, 1376.00, 1383.00, 201390],
             [1383.00, 1385.50, 1380.25, 1381.25, 176044]],
        ),
    ),
    "tradestation_vol.txt": (  # OI is dropped
        "tradestation",
        bars(
            ["2020-01-02 09:35", "2020-01-02 09:40", "2020-01-02 09:45"],
            [[3244.50, 3246.75, 3243.25, 3246.00, 15231],
             [3246.00, 3247.50, 3245.00, 3245.25, 11840],
             [3245.25, 3245.75, 3242.50, 3243.00, 13307]],
        ),
    ),
    "tradestation_updown.txt": (  # volume = Up + Down
        "tradestation",
        bars(
            ["2021-03-16 10:00", "2021-03-16 10:30", "2021-03-16 11:00"],
            [[132.10, 132.45, 131.95, 132.30, 5120 + 4210],
             [132.30, 132.80, 132.20, 132.75, 6033 + 2870],
             [132.75, 132.90, 132.35, 132.40, 3950 + 4488]],
        ),
    ),
}  # fmt: skip

# Stooq's Date,... files are the generic layout: 'auto' reads them with the generic reader.
DETECTED = {name: layout for name, (layout, _) in EXPECTED.items()}
DETECTED.update({"stooq_daily.csv": "csv", "stooq_intraday.csv": "csv"})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_layout_reads_the_same_detected_or_named(name):
    layout, expected = EXPECTED[name]
    path = FILES / name
    assert detect_layout(path) == DETECTED[name]
    same(read_bars(path), expected)
    same(read_bars(path, layout=layout), expected)
    same(read_csv(path, layout=layout), expected)


def test_mt5_real_volume_is_used_when_there_is_any_and_utf16_is_read(tmp_path):
    text = (FILES / "mt5_export.csv").read_text().replace("\t0\t", "\t3\t", 1)
    path = write(tmp_path, "mt5.csv", text, encoding="utf-16")  # with a byte order mark
    frame = read_bars(path)
    assert frame["volume"].tolist() == [3.0, 0.0, 0.0]
    same(read_bars(path, layout="metatrader"), frame)


def test_mt5_daily_export_without_a_time_column(tmp_path):
    path = write(
        tmp_path, "d1.csv",
        "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
        "2020.01.02\t1.1212\t1.1229\t1.1163\t1.1172\t59051\t0\t2\n"
        "2020.01.03\t1.1172\t1.1180\t1.1125\t1.1160\t62788\t0\t2\n",
    )  # fmt: skip
    expected = bars(
        ["2020-01-02", "2020-01-03"],
        [[1.1212, 1.1229, 1.1163, 1.1172, 59051], [1.1172, 1.1180, 1.1125, 1.1160, 62788]],
    )
    same(read_bars(path), expected)


def test_tradestation_hhmm_times_and_open_interest_kept(tmp_path):
    path = write(
        tmp_path, "ts.txt",
        "Date,Time,O,H,L,C,V,OI\n12/12/2003,930,53,55,48,49.2,10,7\n"
        "12/12/2003,1340,49,50,48,50,3,8\n",
    )  # fmt: skip
    frame = read_bars(path, keep_open_interest=True)
    expected = bars(
        ["2003-12-12 09:30", "2003-12-12 13:40"],
        [[53, 55, 48, 49.2, 10, 7], [49, 50, 48, 50, 3, 8]],
        [*OHLCV, "open_interest"],
    )
    same(frame, expected)


def test_local_times_are_converted_to_utc(tmp_path):
    path = write(
        tmp_path, "nt.txt", "20240708 093000;10;11;9;10.5;100\n20240108 093000;10;11;9;10.5;100\n"
    )
    with pytest.raises(DataError, match=r"nt.txt, line 2: bars: time goes backwards"):
        read_bars(path, tz="America/New_York")
    path.write_text("20240108 093000;10;11;9;10.5;100\n20240708 093000;10;11;9;10.5;100\n")
    frame = read_bars(path, layout="ninjatrader", tz="America/New_York")
    # EST (UTC-5) in January, EDT (UTC-4) in July.
    assert list(frame.index) == [
        pd.Timestamp("2024-01-08 14:30", tz="UTC"),
        pd.Timestamp("2024-07-08 13:30", tz="UTC"),
    ]
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        read_bars(path, tz="Mars/Olympus")


def test_compressed_exports_are_detected(tmp_path):
    path = tmp_path / "ES.txt.gz"
    with gzip.open(path, "wb") as out:
        out.write((FILES / "ninjatrader_minute.txt").read_bytes())
    same(read_bars(path), EXPECTED["ninjatrader_minute.txt"][1])


def test_yahoo_null_rows_are_refused_or_skipped(tmp_path):
    path = write(
        tmp_path, "nulls.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2019-03-13,52.10,52.75,51.90,52.60,50.12,9120300\n"
        "2019-03-14,null,null,null,null,null,null\n"
        "2019-03-15,53.00,53.40,52.80,53.20,50.69,15230000\n",
    )  # fmt: skip
    for layout in ("auto", "yahoo"):
        with pytest.raises(DataError) as caught:
            read_bars(path, layout=layout)
        assert str(caught.value).startswith(f"{path}, line 3: open: missing value ('null')")
        assert (caught.value.field, caught.value.row) == ("open", 1)
    expected = EXPECTED["yahoo.csv"][1].iloc[[0, 2]]
    same(read_bars(path, skip_missing_rows=True), expected)
    # A row missing only some prices is refused all the same.
    path.write_text(path.read_text().replace("null,null,null,null,null,null", "1,2,0.5,null,1,5"))
    with pytest.raises(DataError, match=r"nulls.csv, line 3: close: missing value \('null'\)"):
        read_bars(path, skip_missing_rows=True)


# --- refusals name the file, the line and the field ------------------------------------------

BAD_NUMBER = {  # layout, field separator, position of the high
    "yahoo.csv": ("yahoo", ",", 2),
    "stooq_daily.csv": ("stooq", ",", 2),
    "stooq_ticker.txt": ("stooq", ",", 5),
    "mt4_export.csv": ("metatrader", ",", 3),
    "mt5_export.csv": ("metatrader", "\t", 3),
    "ninjatrader_minute.txt": ("ninjatrader", ";", 2),
    "tradestation_updown.txt": ("tradestation", ",", 3),
}


@pytest.mark.parametrize("name", sorted(BAD_NUMBER))
def test_a_bad_number_names_file_line_and_field(tmp_path, name):
    layout, sep, position = BAD_NUMBER[name]
    lines = (FILES / name).read_text().splitlines()
    fields = lines[2].split(sep)
    fields[position] = "1O5.2"  # a letter O for a zero, on the third line of the file
    lines[2] = sep.join(fields)
    path = write(tmp_path, name, "\n".join(lines) + "\n")
    for given in ("auto", layout):
        with pytest.raises(DataError) as caught:
            read_bars(path, layout=given)
        assert str(caught.value) == f"{path}, line 3: high: cannot read '1O5.2' as a number"
        assert (caught.value.field, caught.value.row) == (
            "high",
            2 if name.startswith(("mt4", "ninja")) else 1,
        )


def test_line_numbers_count_the_header_and_blank_lines(tmp_path):
    path = write(
        tmp_path, "mt4.csv",
        "2020.01.02,00:00,1.1,1.2,1.0,1.15,5\n\n2020.01.02,00:01,1.1,1.2,1.0,1.15,5\n"
        "2020.01.02,00:02,1.1,1.0,1.05,1.15,5\n",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"mt4.csv, line 4: bars: high is below low at row 2"):
        read_bars(path)


@pytest.mark.parametrize(
    "name, text, message",
    [("mt4.csv", "2020.01.02,00:00,1.1,1.2,1.0,1.15,5\n2020.13.02,00:01,1.1,1.2,1.0,1.15,5\n",
      "line 2: date: cannot read '2020.13.02' as YYYY.MM.DD"),
     ("mt4.csv", "2020.01.02,00:00,1.1,1.2,1.0,1.15,5\n2020.01.02,24:01,1.1,1.2,1.0,1.15,5\n",
      "line 2: time: cannot read '24:01' as HH:MM"),
     ("nt.txt", "20200102 000000;1.1;1.2;1.0;1.15;5\n20200102 0001;1.1;1.2;1.0;1.15;5\n",
      "line 2: time: cannot read '20200102 0001' as YYYYMMDD HHMMSS"),
     ("mt4.csv", "2020.01.02,00:00,1.1,1.2,1.0,1.15,5\n2020.01.02,00:01,1.1,1.2,1.0,1.15\n",
      "line 2: volume: missing (the line has 6 fields, 7 expected)"),
     ("mt4.csv", "2020.01.02,00:00,1.1,1.2,1.0,1.15,5\n2020.01.02,00:01,1.1,1.2,1.0,1.15,5,9\n",
      "line 2: field 8: one field too many (the line has 8 fields, 7 expected)"),
     ("ts.txt", "Date,Time,Open,High,Low,Close,Up,Down\n01/02/2020,09:30,1,2,0.5,1.5,3,4\n"
      "01/02/2020,09:31,1,2,0.5,1.5,,4\n", "line 3: up: missing value ('')"),
     ("mt5.csv", "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
      "2020.01.02\t00:00:00\t1.1\t1.2\t1.0\t1.15\r\n",
      "line 2: tickvol: not a MetaTrader file: the line has 6 fields separated by '\\t', 9 "
      "expected"),
     ("y.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n2019-03-13,1,2,0.5,1.5,1.4,10\n"
      "2019-03-14,1,2,0.5,1.5,1.4,nan\n", "line 3: volume: missing value ('nan')")],
)  # fmt: skip
def test_bad_lines_name_the_line_and_the_field(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError) as caught:
        read_bars(path)
    assert str(caught.value).startswith(f"{path}, {message}")


@pytest.mark.parametrize(
    "name, layout, message",
    [("yahoo.csv", "ninjatrader",
      "line 1: open: not a NinjaTrader file: the line has 1 field separated by ';', 6 expected"),
     ("yahoo.csv", "metatrader", "line 1: date: not a MetaTrader file: 'Date' is not YYYY.MM.DD"),
     ("yahoo.csv", "tradestation", "line 1: adj_close: not a TradeStation file: unexpected column "
      "'Adj Close'"),
     ("stooq_daily.csv", "yahoo", "line 1: adj_close: not a Yahoo file: the header "),
     ("tradestation_vol.txt", "stooq", "line 1: vol: not a Stooq file: unexpected column 'Vol'"),
     ("mt4_export.csv", "yahoo",
      "line 1: header: not a Yahoo file: no header line: the file opens with '2020.01.02,00:00,"),
     ("mt5_export.csv", "stooq", "line 1: header: not a Stooq file: the header '<DATE>\\t"),
     ("ninjatrader_daily.txt", "tradestation",
      "line 1: header: not a TradeStation file: no header line: the file opens with '20061023;"),
     ("stooq_intraday.csv", "tradestation",
      "line 2: date: not a TradeStation file: '2024-01-02' is not MM/DD/YYYY")],
)  # fmt: skip
def test_a_named_layout_that_does_not_fit_is_refused(name, layout, message):
    path = FILES / name
    with pytest.raises(DataError) as caught:
        read_bars(path, layout=layout)
    assert str(caught.value).startswith(f"{path}, {message}")


def test_unknown_layout_and_binary_layouts_in_read_csv(tmp_path):
    path = FILES / "yahoo.csv"
    allowed = ", ".join(LAYOUTS)
    with pytest.raises(ValueError, match=re.escape(f"expected one of {allowed}, got 'excel'")):
        read_bars(path, layout="excel")
    with pytest.raises(ValueError, match="read_csv layout: expected one of"):
        read_csv(path, layout="amibroker")
    with pytest.raises(ValueError, match=r"'mt4-hst' is not a text layout"):
        read_csv(path, layout="mt4-hst")
    with pytest.raises(ValueError, match=r"dayfirst are for layout 'csv'; the 'yahoo' layout"):
        read_csv(path, layout="yahoo", dayfirst=True)


@pytest.mark.parametrize("layout", ["auto", "csv", "yahoo", "metatrader", "ninjatrader"])
def test_an_empty_file_is_refused(tmp_path, layout):
    path = write(tmp_path, "empty.csv", "\n\n")
    with pytest.raises(DataError, match=r"empty.csv: the file is empty"):
        read_bars(path, layout=layout)


def test_header_only(tmp_path):
    path = write(tmp_path, "h.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n")
    frame = read_bars(path, layout="yahoo")
    assert list(frame.columns) == ["open", "high", "low", "close", "adj_close", "volume"]
    assert len(frame) == 0 and str(frame.index.tz) == "UTC"


def test_text_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5 \xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv, line 2: not UTF-8 or UTF-16 text"):
        read_bars(path)


def test_binary_file_read_as_text_is_refused(tmp_path):
    path = tmp_path / "EURUSD60.csv"
    write_hst(path, 401, [(1577923200, 1.1, 1.2, 1.0, 1.15, 5, 1, 0)])
    with pytest.raises(DataError, match=r"EURUSD60.csv: not a text file .*layout='mt4-hst'"):
        read_bars(path)


# --- MT4 history files -----------------------------------------------------------------------


def write_hst(path, version, records, symbol=b"EURUSD", period=60, digits=5):
    """An MT4 history file written field by field (independent of the reader's dtypes)."""
    header = struct.pack(
        "<i64s12s4i52x", version, b"(C)opyright 2003, MetaQuotes Software Corp.", symbol,
        period, digits, 0, 0,
    )  # fmt: skip
    assert len(header) == 148
    body = b""
    for record in records:
        if version == 401:  # time, open, high, low, close, tick volume, spread, real volume
            body += struct.pack("<q4dqiq", *record)
        else:  # time, open, LOW, HIGH, close, volume
            time, open_, high, low, close, volume = record
            body += struct.pack("<i5d", time, open_, low, high, close, volume)
    path.write_bytes(header + body)
    return path


T0 = 1577923200  # 2020-01-02 00:00 UTC
HST_EXPECTED = bars(
    ["2020-01-02 00:00", "2020-01-02 01:00", "2020-01-02 02:00"],
    [[1.12124, 1.12197, 1.12106, 1.12173, 1049],
     [1.12173, 1.12210, 1.12150, 1.12201, 812],
     [1.12201, 1.12215, 1.12166, 1.12190, 655]],
)  # fmt: skip


def hst_rows(version):
    rows = []
    for i, (o, h, lo, c, v) in enumerate(HST_EXPECTED.itertuples(index=False)):
        time = T0 + 3600 * i
        rows.append(
            (time, o, h, lo, c, int(v), 7, 0) if version == 401 else (time, o, h, lo, c, v)
        )
    return rows


@pytest.mark.parametrize("version", [400, 401])
def test_mt4_history_files_both_versions(tmp_path, version):
    path = write_hst(tmp_path / "EURUSD60.hst", version, hst_rows(version))
    assert detect_layout(path) == "mt4-hst"
    frame = read_bars(path)
    same(frame, HST_EXPECTED)
    same(read_bars(path, layout="mt4-hst"), HST_EXPECTED)
    same(read_mt4_hst(path), HST_EXPECTED)
    assert frame.attrs == {"symbol": "EURUSD", "period": 60, "digits": 5}
    # A named layout reads any file name; server time in a zone is converted to UTC.
    other = shutil.copy(path, tmp_path / "history.bin")
    shifted = read_bars(other, layout="mt4-hst", tz="Europe/Athens")  # UTC+2 in January
    assert shifted.index[0] == pd.Timestamp("2020-01-01 22:00", tz="UTC")


def test_mt4_v401_real_volume_when_there_is_any(tmp_path):
    rows = [(t, o, h, lo, c, tick, 7, 100 + tick) for t, o, h, lo, c, tick, _, _ in hst_rows(401)]
    frame = read_bars(write_hst(tmp_path / "ES60.hst", 401, rows))
    assert frame["volume"].tolist() == [1149.0, 912.0, 755.0]


def test_mt4_history_refusals(tmp_path):
    path = write_hst(tmp_path / "X.hst", 401, hst_rows(401))
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # the third record loses 10 bytes
    with pytest.raises(DataError) as caught:
        read_bars(path)
    assert str(caught.value) == (
        f"{path}, record 3 (byte 268): truncated: 50 of 60 bytes (version 401)"
    )
    path.write_bytes(data[:100])
    with pytest.raises(DataError, match=r"X.hst, byte 100: header: truncated: the file has 100"):
        read_bars(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"X.hst, byte 0: header: truncated"):
        read_bars(path)
    path.write_bytes(struct.pack("<i", 500) + data[4:])
    with pytest.raises(DataError) as caught:
        read_bars(path)
    assert str(caught.value) == (
        f"{path}, byte 0: version: 500 is not an MT4 history file version (400 or 401)"
    )
    assert caught.value.field == "version"
    bad = hst_rows(400)
    bad[1] = (bad[1][0], 1.1, 1.0, 1.2, 1.1, 5.0)  # high below low
    write_hst(path, 400, bad)
    with pytest.raises(DataError) as caught:
        read_bars(path)
    assert str(caught.value).startswith(f"{path}, record 2 (byte 192): bars: high is below low")
    write_hst(path, 401, [])
    assert len(read_bars(path)) == 0


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_parquet_detected_or_named(tmp_path):
    path = tmp_path / "bars.parquet"
    write_parquet(HST_EXPECTED, path)
    assert detect_layout(path) == "parquet"
    same(read_bars(path), HST_EXPECTED)
    same(read_bars(path, layout="parquet"), HST_EXPECTED)
    other = shutil.copy(path, tmp_path / "bars.data")
    same(read_bars(other, layout="parquet"), HST_EXPECTED)


def test_header_or_dayfirst_leave_the_generic_reader_in_charge(tmp_path):
    path = write(
        tmp_path, "ts.csv",
        "Date,Time,Open,High,Low,Close,Vol,OI\n01/02/2020,09:35,1,2,0.5,1.5,10,0\n",
    )  # fmt: skip
    assert read_bars(path).index[0] == pd.Timestamp("2020-01-02 09:35", tz="UTC")
    assert read_bars(path, dayfirst=True).index[0] == pd.Timestamp("2020-02-01 09:35", tz="UTC")
