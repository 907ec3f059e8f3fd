"""Data of any market: time frames inferred, daily bars as they come, longer frames derived on
demand, exchange calendars, and the one-line refusals."""

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backtest import Recorder, make_bars

from osmarkets.backtest import backtest
from osmarkets.data import Alignment, Timeframe, infer_timeframe, resample
from osmarkets.data.calendars import bar_dates, period_bounds, sessions
from osmarkets.data.conform import DATE_ALIGNMENT, conform
from osmarkets.strategies import SmaCross

XNYS = xcals.get_calendar("XNYS", start="2019-01-01", end="2021-12-31")


def ns(index):
    return pd.DatetimeIndex(index).as_unit("ns").asi8


def daily(dates, seed=3):
    """Bars on ``dates`` (a DatetimeIndex of session dates), stamped at 00:00 UTC."""
    rng = np.random.default_rng(seed)
    n = len(dates)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    close = np.round(close, 2)  # prices in cents: exact ties between averages happen
    open_ = np.round(np.r_[50.0, close[:-1]] * (1 + rng.normal(0, 0.003, n)), 2)
    high = np.round(np.maximum(open_, close) * 1.01, 2)
    low = np.round(np.minimum(open_, close) * 0.99, 2)
    index = pd.DatetimeIndex(np.asarray(ns(dates)).view("M8[ns]"), name="time").tz_localize("UTC")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1e6}, index=index
    )


SESSIONS = XNYS.sessions_in_range("2020-01-02", "2020-12-31")


def stamped(frame, how):
    """The same daily bars under another stamping convention."""
    out = frame.copy()
    dates = frame.index.tz_localize(None)
    if how == "exchange close in UTC":
        out.index = pd.DatetimeIndex(XNYS.schedule.loc[dates, "close"])
    elif how == "local midnight":
        out.index = dates.tz_localize("America/New_York")
    elif how == "oanda 17:00 new york the day before":
        out.index = (dates - pd.Timedelta(hours=7)).tz_localize("America/New_York")
    out.index = pd.DatetimeIndex(out.index).tz_convert("UTC").rename("time")
    return out


# -- inference ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (pd.DatetimeIndex(SESSIONS), Timeframe(1, "Days")),  # weekends and holidays missing
        (pd.date_range("2020-03-02", periods=30, freq="D", tz="America/New_York"), "D"),
        (pd.date_range("2020-01-06", periods=20, freq="W-MON"), "W"),
        (pd.date_range("2020-01-01", periods=14, freq="MS"), "M"),
        (pd.date_range("2020-01-01", periods=8, freq="QS"), "MN3"),
        (pd.date_range("2020-01-01", periods=50, freq="5min").delete([3, 4, 9]), "M5"),
        (pd.date_range("2020-01-01", periods=50, freq="4h"), "H4"),
        (pd.date_range("2020-01-01", periods=50, freq="90s"), "S90"),
    ],
)
def test_the_time_frame_is_the_smallest_gap_between_bars(index, expected):
    assert infer_timeframe(ns(index)) == Timeframe.parse(expected)


def test_a_day_across_daylight_saving_is_still_a_day():
    # local midnights in New York: 23 and 25 hour gaps around the changes
    index = pd.date_range("2020-03-06", "2020-11-06", freq="D", tz="America/New_York")
    assert set(np.diff(ns(index)) // 3_600_000_000_000) == {23, 24, 25}
    assert infer_timeframe(ns(index)) == Timeframe(1, "Days")


@pytest.mark.parametrize(
    ("times", "message"),
    [
        ([0], "fewer than two bars"),
        ([0, 0, 60_000_000_000], "share a time"),
        ([0, 36 * 3_600_000_000_000], "gap of 1 days 12:00:00"),
        ([0, 1_500_000], "gap of 0 days 00:00:00.001500"),
    ],
)
def test_a_frame_that_cannot_be_inferred_is_refused(times, message):
    with pytest.raises(ValueError, match=message):
        infer_timeframe(np.array(times, dtype=np.int64))


# -- daily bars as they come -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["exchange close in UTC", "local midnight"])
def test_daily_conventions_give_the_same_bars_stamped_with_their_date(how):
    frame = daily(SESSIONS)
    bars, alignment = conform(stamped(frame, how), "D")
    pd.testing.assert_frame_equal(bars, frame)
    assert alignment == DATE_ALIGNMENT


def test_daily_bars_on_the_alignment_are_kept_as_they_are():
    frame = stamped(daily(SESSIONS), "oanda 17:00 new york the day before")
    bars, alignment = conform(frame, "D")
    pd.testing.assert_frame_equal(bars, frame)
    assert alignment == Alignment()


@pytest.mark.parametrize(
    "how",
    [
        "midnight UTC",
        "exchange close in UTC",
        "local midnight",
        "oanda 17:00 new york the day before",
    ],
)
def test_every_convention_trades_the_same(how):
    frame = daily(SESSIONS)
    source = frame if how == "midnight UTC" else stamped(frame, how)
    expected = backtest(SmaCross, frame, "X:D", params={"fast": 5, "slow": 20, "size": 100})
    result = backtest(SmaCross, source, "X:D", params={"fast": 5, "slow": 20, "size": 100})
    assert len(expected.trades) > 6
    columns = ["side", "size", "price"]
    pd.testing.assert_frame_equal(
        result.trades[columns].reset_index(drop=True),
        expected.trades[columns].reset_index(drop=True),
    )
    assert result.final_value == expected.final_value


def test_with_a_calendar_every_convention_gives_bars_stamped_at_the_session_open():
    frame = daily(SESSIONS)
    nyse = Alignment.of(calendar="XNYS")
    opens = pd.DatetimeIndex(XNYS.schedule.loc[SESSIONS, "open"])
    for how in ("exchange close in UTC", "local midnight"):
        bars, alignment = conform(stamped(frame, how), "D", nyse)
        assert list(ns(bars.index)) == list(ns(opens))
        np.testing.assert_array_equal(bars["close"], frame["close"])
        assert alignment == nyse


def test_a_daily_bar_on_a_holiday_is_refused_with_its_date():
    frame = daily(pd.DatetimeIndex(["2020-07-02", "2020-07-03", "2020-07-06"]))
    with pytest.raises(ValueError, match=r"bar 1: 2020-07-03 \(Friday\) is not in a XNYS session"):
        conform(frame, "D", Alignment.of(calendar="XNYS"))


def test_two_bars_of_one_date_are_refused():
    frame = daily(pd.DatetimeIndex(["2020-07-01", "2020-07-02", "2020-07-06"]))
    frame.index = pd.DatetimeIndex(
        ["2020-07-01 00:00", "2020-07-01 22:00", "2020-07-06 00:00"], tz="UTC", name="time"
    )
    with pytest.raises(ValueError, match="bars 0 and 1 fall on the same date"):
        conform(frame, "D", data_timeframe="D")


def test_bar_dates_take_midnight_utc_as_a_date_and_other_times_in_the_zone():
    times = ns(pd.DatetimeIndex(["2020-01-06 00:00", "2020-01-06 21:00", "2020-01-06 15:00"],
                                tz="UTC"))  # fmt: skip
    tokyo = bar_dates(times, "Asia/Tokyo")  # 15:00 UTC is Tokyo's midnight of the 7th
    assert list(pd.DatetimeIndex(tokyo).strftime("%d")) == ["06", "07", "07"]
    assert list(pd.DatetimeIndex(bar_dates(times, "America/New_York")).strftime("%d")) == [
        "06", "06", "06",
    ]  # fmt: skip


# -- longer frames on demand -------------------------------------------------------------------
def test_weeks_of_dated_daily_bars_run_monday_to_sunday():
    frame = daily(SESSIONS)
    weeks, _ = conform(frame, "W")
    expected = frame.groupby(frame.index.tz_localize(None).to_period("W-SUN")).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    np.testing.assert_array_equal(weeks[["open", "high", "low", "close"]], expected.iloc[:, :4])
    assert (weeks.index.day_of_week == 0).all() and (weeks.index.hour == 0).all()


def test_a_longer_frame_is_resampled_and_a_shorter_one_refused():
    minutes = make_bars(600)
    bars, _ = conform(minutes, "M5")
    pd.testing.assert_frame_equal(bars, resample(minutes, "M5"))
    with pytest.raises(ValueError, match=r"^data has M5 bars \(inferred.*M1 is shorter"):
        conform(bars, "M1")
    with pytest.raises(ValueError, match=r"^data: its M5 bars do not fit in M7 periods"):
        conform(bars, "M7")
    with pytest.raises(ValueError, match="its H4 bars do not fit in D periods"):
        conform(resample(make_bars(3000), "H4"), "D")  # 17:00 New York is not on the 4 h grid


def test_data_timeframe_overrides_the_inference():
    minutes = make_bars(600).iloc[::2]  # every other minute: inferred M2
    with pytest.raises(ValueError, match="has M2 bars"):
        conform(minutes, "M1")
    bars, _ = conform(minutes, "M1", data_timeframe="M1")
    pd.testing.assert_frame_equal(bars, minutes)


# -- calendars ---------------------------------------------------------------------------------
def session_minutes(dates, extended=False, seed=5):
    """One-minute bars over XNYS sessions (and 4:00-20:00 New York with ``extended``)."""
    stamps = []
    for day in dates:
        if extended:
            local = pd.date_range(f"{day.date()} 04:00", f"{day.date()} 19:59", freq="min",
                                  tz="America/New_York")  # fmt: skip
            stamps.append(local.tz_convert("UTC"))
        else:
            row = XNYS.schedule.loc[day]
            stamps.append(pd.date_range(row["open"], row["close"], freq="min", inclusive="left"))
    index = pd.DatetimeIndex(np.concatenate([ns(s) for s in stamps])).tz_localize("UTC")
    frame = make_bars(len(index), seed=seed)
    frame.index = index.rename("time")
    return frame


def test_session_daily_bars_from_minutes_agree_with_the_calendar_and_pandas():
    dates = SESSIONS[120:130]  # includes the 3 July 2020 holiday gap
    minutes = session_minutes(dates)
    bars, _ = conform(minutes, "D", Alignment.of(calendar="XNYS"))
    label = XNYS.minutes_to_sessions(minutes.index)
    expected = minutes.groupby(label).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    assert list(ns(bars.index)) == list(ns(XNYS.schedule.loc[expected.index, "open"]))
    np.testing.assert_array_equal(bars.to_numpy(), expected.to_numpy())


def test_regular_hours_drop_pre_and_after_market_bars():
    dates = SESSIONS[40:43]
    minutes = session_minutes(dates, extended=True)
    nyse = Alignment.of(calendar="XNYS", regular_hours=True)
    kept, _ = conform(minutes, "M1", nyse)
    assert len(kept) == 3 * 390
    local = kept.index.tz_convert("America/New_York")
    assert local.min().time() == pd.Timestamp("09:30").time()
    assert local.max().time() == pd.Timestamp("15:59").time()
    hours, _ = conform(minutes, "H1", nyse)  # counted from the open: 9:30, 10:30 ... 15:30
    local_hours = hours.index.tz_convert("America/New_York")
    assert list(local_hours[:7].strftime("%H:%M")) == [
        "09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30",
    ]  # fmt: skip
    all_day, _ = conform(minutes, "D", Alignment.of(calendar="XNYS"))
    assert all_day["volume"].sum() == minutes["volume"].sum()  # extended hours join their day


def test_a_futures_session_opening_the_evening_before_makes_one_daily_bar():
    cme = xcals.get_calendar("CMES", start="2020-01-01", end="2020-12-31")
    row = cme.schedule.loc["2020-06-10"]
    index = pd.date_range(row["open"], row["close"], freq="h", inclusive="left")
    frame = make_bars(len(index), seed=2)
    frame.index = index.rename("time")
    bars, _ = conform(frame, "D", Alignment.of(calendar="CMES"))
    assert len(bars) == 1 and bars.index[0] == row["open"]
    assert bars.index[0].tz_convert("America/Chicago").day == 9  # opens the evening before
    assert bars["volume"].iloc[0] == len(frame)


def test_calendar_weeks_are_trading_weeks_and_bounds_end_at_the_last_close():
    minutes = session_minutes(SESSIONS[:15])
    nyse = Alignment.of(calendar="XNYS")
    weeks, _ = conform(minutes, "W", nyse)
    week_of = pd.DatetimeIndex(XNYS.minutes_to_sessions(minutes.index)).to_period("W-SUN")
    expected = minutes.groupby(week_of)["close"].last()
    np.testing.assert_array_equal(weeks["close"], expected)
    cal = sessions("XNYS", int(ns(minutes.index)[0]), int(ns(minutes.index)[-1]))
    start, end = period_bounds(int(ns(minutes.index)[0]), Timeframe(1, "Weeks"), cal)
    assert pd.Timestamp(end, tz="UTC") == XNYS.schedule.loc["2020-01-03", "close"]


def test_unknown_calendar_and_regular_hours_without_one_are_refused():
    with pytest.raises(ValueError, match="calendar: unknown exchange calendar 'NOPE'"):
        Alignment.of(calendar="NOPE")
    with pytest.raises(ValueError, match="regular_hours: needs an exchange calendar"):
        Alignment.of(regular_hours=True)
    with pytest.raises(ValueError, match="unknown option 'session'"):
        Alignment.of({"session": "XNYS"})


@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(SESSIONS) - 1), min_size=2, max_size=8, unique=True),
    step=st.sampled_from([1, 5, 15, 30]),
    frame_code=st.sampled_from(["D", "W", "M"]),
)
def test_inferred_frame_and_calendar_resampling_agree_with_pandas(picks, step, frame_code):
    dates = SESSIONS[sorted(picks)]
    minutes = session_minutes(dates, seed=len(picks)).iloc[::step]
    assert infer_timeframe(ns(minutes.index)) == Timeframe(step, "Minutes")
    bars, _ = conform(minutes, frame_code, Alignment.of(calendar="XNYS"))
    session = pd.DatetimeIndex(XNYS.minutes_to_sessions(minutes.index))
    key = {"D": session, "W": session.to_period("W-SUN"), "M": session.to_period("M")}[frame_code]
    expected = minutes.groupby(key).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    np.testing.assert_array_equal(bars.to_numpy(), expected.to_numpy())
    # each bar opens at its period's first session of the calendar (which the data may lack)
    every = pd.DatetimeIndex(XNYS.sessions)
    every_key = {"D": every, "W": every.to_period("W-SUN"), "M": every.to_period("M")}[frame_code]
    first = pd.Series(every, index=every).groupby(every_key).first()
    opens = XNYS.schedule.loc[pd.DatetimeIndex(first.loc[expected.index].to_numpy()), "open"]
    assert list(ns(bars.index)) == list(ns(opens))


# -- the backtest ------------------------------------------------------------------------------
def watch(frame, **options):
    seen = []

    class Watch(Recorder):
        def on_new_bar(self, series):
            seen.append((str(series.bsid), pd.Timestamp(int(series.time[0]), tz="UTC")))

    backtest(Watch, frame, ["X:D", "X:W"], **options)
    return seen


def test_with_a_calendar_a_week_reaches_the_brain_right_after_its_last_session():
    frame = daily(SESSIONS[:30])  # 2 January to Thursday 13 February 2020
    seen = watch(frame, calendar="XNYS")
    weekly = [(i, t) for i, (b, t) in enumerate(seen) if b == "X:W"]
    weeks = SESSIONS[:30].to_period("W-SUN")
    assert len(weekly) == weeks.nunique() - 1  # Friday 14 February is missing: still forming
    sessions_of = pd.Series(XNYS.sessions, index=XNYS.sessions.to_period("W-SUN"))
    for i, week in weekly:
        bsid, day = seen[i - 1]
        session = pd.Timestamp(XNYS.minute_to_session(day))
        assert bsid == "X:D" and session == sessions_of.loc[session.to_period("W-SUN")].max()
        assert week.tz_convert("America/New_York").strftime("%H:%M") == "09:30"
        first = sessions_of.loc[session.to_period("W-SUN")].min()
        assert week == XNYS.schedule.loc[first, "open"]


def test_without_a_calendar_a_week_is_complete_at_the_next_weeks_first_bar():
    frame = daily(SESSIONS[:30])
    seen = watch(frame)
    weekly = [(i, t) for i, (b, t) in enumerate(seen) if b == "X:W"]
    assert len(weekly) == SESSIONS[:30].to_period("W-SUN").nunique() - 1
    for i, week in weekly:
        bsid, day = seen[i - 1]  # a Saturday bar could still have come: wait for Monday's
        naive = week.tz_localize(None)
        assert (
            bsid == "X:D"
            and day.tz_localize(None).to_period("W-SUN") == naive.to_period("W-SUN") + 1
        )
        assert week.day_of_week == 0 and week.hour == 0  # Monday 00:00 UTC: the week's date


def test_shorter_frame_than_the_data_is_one_clear_error():
    with pytest.raises(ValueError, match=r"^data for 'X' has D bars .*M1 is shorter; ask for D"):
        backtest(SmaCross, daily(SESSIONS), "X:M1")


def test_weekly_and_monthly_data_stamped_at_either_end_give_the_same_bars():
    weeks = daily(pd.date_range("2020-01-06", periods=30, freq="W-MON"))  # Yahoo: Mondays
    fridays = weeks.copy()
    fridays.index = (weeks.index + pd.Timedelta(days=4, hours=21)).rename("time")  # closes
    months = daily(pd.date_range("2020-01-01", periods=12, freq="MS"))  # 1 January: a holiday
    month_ends = months.copy()
    month_ends.index = pd.DatetimeIndex(
        [XNYS.sessions_in_range(d, d + pd.offsets.MonthEnd(0))[-1] for d in
         months.index.tz_localize(None)], name="time").tz_localize("UTC")  # fmt: skip
    for first, second, code in ((weeks, fridays, "W"), (months, month_ends, "M")):
        a, _ = conform(first, code)
        b, _ = conform(second, code)
        pd.testing.assert_frame_equal(a, b)
        assert list(a.index) == list(first.index)  # Mondays, first days: the period's date
        nyse = Alignment.of(calendar="XNYS")
        a, _ = conform(first, code, nyse)
        b, _ = conform(second, code, nyse)
        pd.testing.assert_frame_equal(a, b)
        assert (a.index.tz_convert("America/New_York").strftime("%H:%M") == "09:30").all()
    # 2 January 2020 is the year's first session: the January bar opens there
    assert conform(months, "M", nyse)[0].index[0] == XNYS.schedule.loc["2020-01-02", "open"]


def test_the_any_market_example_runs(capsys, monkeypatch):
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "any_market.py"
    monkeypatch.setattr("sys.argv", [str(example)])
    with pytest.raises(SystemExit) as done:  # run_script exits with main()'s status
        runpy.run_path(str(example), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "time frame D (inferred)" in out
    assert "19,200 from 4:00 to 20:00, 7,800 in regular hours" in out  # 20 sessions x 390
    assert "ES:M5, 1 contract x 50" in out


def test_ticks_to_bars_follows_the_calendar_and_its_regular_hours():
    from osmarkets.data import ticks_to_bars

    day = SESSIONS[50]
    local = pd.date_range(f"{day.date()} 08:00", f"{day.date()} 18:00", freq="7s",
                          tz="America/New_York", inclusive="left")  # fmt: skip
    bid = 100 + np.sin(np.arange(len(local)) / 50)
    ticks = pd.DataFrame({"bid": bid, "ask": bid + 0.01},
                         index=local.tz_convert("UTC").rename("time"))  # fmt: skip
    hours = ticks_to_bars(ticks, "H1", calendar="XNYS", regular_hours=True)
    assert list(hours.index.tz_convert("America/New_York").strftime("%H:%M")) == [
        "09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30",
    ]  # fmt: skip
    assert hours["volume"].sum() == ((local.hour * 60 + local.minute >= 570)
                                     & (local.hour < 16)).sum()  # fmt: skip
    whole = ticks_to_bars(ticks, "D", calendar="XNYS")
    assert len(whole) == 1 and whole["volume"].iloc[0] == len(ticks)


def test_calendars_that_model_a_few_years_only_still_serve_their_years():
    xshg = xcals.get_calendar("XSHG")
    inside = int(pd.Timestamp("2024-03-05 02:00", tz="UTC").value)
    cal = sessions("XSHG", inside, inside)
    assert len(cal) and str(type(xshg).bound_max().date()) >= "2024-12-31"
    with pytest.raises(ValueError, match=r"calendar XSHG: sessions are known from .* to "):
        sessions("XSHG", int(pd.Timestamp("2090-01-02", tz="UTC").value),
                 int(pd.Timestamp("2090-01-03", tz="UTC").value))  # fmt: skip


def test_streaming_and_batch_agree_around_the_open_and_the_close():
    from osmarkets.data import Bar, BarResampler

    day = SESSIONS[60]
    local = pd.date_range(f"{day.date()} 08:00", f"{day.date()} 17:59", freq="min",
                          tz="America/New_York")  # fmt: skip
    minutes = make_bars(len(local), seed=9)
    minutes.index = local.tz_convert("UTC").rename("time")
    nyse = Alignment.of(calendar="XNYS")
    batch = resample(minutes, "H1", calendar="XNYS")
    streamer = BarResampler("H1", nyse)
    out = []
    for record in minutes.itertuples():
        time = int(record.Index.value)
        out += streamer.close_until(time)
        out += streamer.update(Bar(time, record.open, record.high, record.low, record.close,
                                   record.volume))  # fmt: skip
    out.append(streamer.flush())
    starts = [pd.Timestamp(b.time, tz="UTC") for b in out]
    assert starts == list(batch.index)
    assert [b.volume for b in out] == list(batch["volume"])
    local_starts = batch.index.tz_convert("America/New_York").strftime("%H:%M")
    assert list(local_starts[:3]) == ["08:00", "09:00", "09:30"]  # pre-market cut at the open
    assert "16:00" in list(local_starts)  # after-hours start at the close


def test_with_a_calendar_the_last_hour_of_a_session_reaches_the_brain_at_the_close():
    minutes = session_minutes(SESSIONS[10:12])
    seen = []

    class Watch(Recorder):
        def on_new_bar(self, series):
            seen.append((str(series.bsid), pd.Timestamp(int(series.time[0]), tz="UTC")))

    backtest(Watch, minutes, ["X:M5", "X:H1"], calendar="XNYS")
    hours = [i for i, (b, _) in enumerate(seen) if b == "X:H1"]
    first_day_last_hour = [i for i in hours if seen[i][1].tz_convert("America/New_York")
                           .strftime("%H:%M") == "15:30"][0]  # fmt: skip
    previous = seen[first_day_last_hour - 1][1].tz_convert("America/New_York")
    assert previous.strftime("%H:%M") == "15:55"  # right after the session's last M5 bar
    assert previous.date() == seen[first_day_last_hour][1].tz_convert("America/New_York").date()


def test_local_time_stamps_in_their_own_zone_give_their_local_dates():
    dates = pd.DatetimeIndex(["2024-03-07", "2024-03-08", "2024-03-11"])
    frame = daily(dates)
    tokyo = frame.copy()
    tokyo.index = dates.tz_localize("Asia/Tokyo").rename("time")  # midnight in Tokyo
    bars, _ = conform(tokyo, "D")
    pd.testing.assert_frame_equal(bars, frame)


def test_dated_weeks_follow_a_weekly_alignment_that_is_given():
    frame = daily(SESSIONS[:20])
    wednesday, alignment = conform(frame, "W", Alignment.of(weekly_alignment="Wednesday"))
    assert (wednesday.index.day_of_week == 2).all()
    assert alignment.weekly_alignment == "Wednesday"
    monday, _ = conform(frame, "W")  # OANDA's Friday default: trading weeks from Monday
    assert (monday.index.day_of_week == 0).all()


def test_weeks_do_not_make_months_and_the_frame_given_is_named():
    weeks = daily(pd.date_range("2020-01-06", periods=30, freq="W-MON"))
    with pytest.raises(ValueError, match="its W bars do not fit in M periods"):
        conform(weeks, "M")
    with pytest.raises(ValueError, match=r"has D bars \(as given\): M1 is shorter"):
        conform(weeks, "M1", data_timeframe="D")
