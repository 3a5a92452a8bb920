"""Rebalance dates and the period partitions that hold them come from one manifest entry and agree."""

import datetime as dt

import pytest

from quant_assets.assets.common import partitions_of
from quant_assets.config.manifest import Calendar, load_manifest
from quant_assets.data.calendars import Periods, previous_dates, rebalance_dates


def test_yearly_partitions_hold_every_weekly_rebalance_date():
    cal = load_manifest().calendar
    periods = Periods(cal)
    keys = partitions_of(Periods(cal)).get_partition_keys()
    assert keys == [str(y) for y in range(1992, 2023)] == list(periods.keys)
    dates = [d for k in keys for d in periods.dates(k)]
    assert dates == list(rebalance_dates(cal, dt.date(2030, 1, 1)))
    assert dates[0] == dt.date(1992, 1, 3) and dates[-1] == dt.date(2022, 12, 23) and len(dates) == 1617
    assert all(d.weekday() == 4 for d in dates)  # Fridays
    assert len(periods.dates("2019")) == 52 and periods.dates("2019")[0] == dt.date(2019, 1, 4)
    assert all(periods.key(d) == k for k in keys for d in periods.dates(k))


@pytest.mark.parametrize(
    "period, keys",
    [
        ("quarter", ["2020-01", "2020-04", "2020-07", "2020-10"]),
        ("month", [f"2020-{m:02d}" for m in range(1, 13)]),
    ],
)
def test_quarterly_and_monthly_partitions_agree_with_dagster(period, keys):
    cal = Calendar(frequency="weekly", partition=period, start=dt.date(2020, 1, 1), end=dt.date(2021, 1, 1))
    periods = Periods(cal)
    assert partitions_of(Periods(cal)).get_partition_keys() == keys == list(periods.keys)
    assert [d for k in keys for d in periods.dates(k)] == list(rebalance_dates(cal, dt.date(2021, 1, 1)))
    assert periods.window(keys[1])[0] == dt.date(2020, {"quarter": 4, "month": 2}[period], 1)


def test_a_calendar_ending_mid_year_has_its_unfinished_year_as_the_last_partition():
    cal = Calendar(start=dt.date(2021, 1, 1), end=dt.date(2022, 6, 18))
    periods = Periods(cal)
    assert partitions_of(Periods(cal)).get_partition_keys() == ["2021", "2022"]
    assert periods.dates("2022")[-1] == dt.date(2022, 6, 10)  # its holding window ends by the calendar's end


def test_previous_dates_periods_and_windows():
    cal = load_manifest().calendar
    periods = Periods(cal)
    assert previous_dates(cal, dt.date(2019, 1, 4), 2) == [dt.date(2018, 12, 21), dt.date(2018, 12, 28)]
    assert list(periods.dates_before(dt.date(2019, 1, 4), 2)) == [dt.date(2018, 12, 21), dt.date(2018, 12, 28)]
    assert previous_dates(cal, dt.date(1992, 1, 3), 2) == [] == list(periods.dates_before(dt.date(1992, 1, 3), 2))
    assert list(periods.dates_before(dt.date(1992, 1, 10), 2)) == [dt.date(1992, 1, 3)]
    assert periods.previous("2019") == "2018" and periods.previous("1992") is None and periods.next("2019") == "2020"
    assert periods.keys_between(dt.date(2019, 6, 1), dt.date(2020, 3, 1)) == ["2019", "2020"]


def test_a_range_starting_mid_history_names_the_market_data_its_windows_need(tmp_path):
    """500 sessions of prices before the first date of 2020 reach back into 2018; 1992 needs nothing."""
    from quant_assets.cli.runner import missing_warm_up
    from quant_assets.storage.lakehouse import Lakehouse

    m = load_manifest()
    lh = Lakehouse(tmp_path)
    assert missing_warm_up(m, lh, dt.date(2020, 3, 1), dt.date(2020, 6, 30)) == ["2018", "2019"]
    assert missing_warm_up(m, lh, dt.date(1992, 1, 1), dt.date(1992, 6, 30)) == []


def test_every_n_days_rebalances_from_the_start_weekends_included():
    """A crypto book rebalances every 10 days, whatever the weekday."""
    from quant_assets.data.calendars import rebalance_interval

    cal = Calendar(frequency="days", every_days=10, start=dt.date(2021, 1, 1), end=dt.date(2021, 3, 1))
    dates = rebalance_dates(cal, dt.date(2021, 12, 31))
    # the last kept date's holding window must end by `end`: 2021-02-20 + 10 days = 2021-03-02 is past it
    assert dates == tuple(dt.date(2021, 1, 1) + dt.timedelta(days=10 * i) for i in range(5))
    assert dt.date(2021, 1, 31).weekday() == 6 and dt.date(2021, 1, 31) in dates  # a Sunday
    assert rebalance_interval(cal) == dt.timedelta(days=10)
    assert [Periods(cal).key(d) for d in dates] == ["2021"] * 5


def test_monthly_partitions_need_a_rebalance_date_every_month():
    with pytest.raises(ValueError, match=r"every_days \(30\) must be <= 28 with monthly partitions"):
        Calendar(frequency="days", every_days=30, partition="month", start=dt.date(2021, 1, 1))
    Calendar(frequency="days", every_days=30, partition="quarter", start=dt.date(2021, 1, 1))
