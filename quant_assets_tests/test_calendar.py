"""The rebalance calendar and Dagster's partitions come from one manifest entry and agree."""

import datetime as dt

from quant_assets.calendar import partitions_def, periods_covering, previous_dates, rebalance_dates
from quant_assets.manifest import Calendar, load_manifest


def test_our_dates_equal_dagster_partition_keys():
    cal = load_manifest().calendar
    keys = partitions_def(cal).get_partition_keys()
    ours = [d.isoformat() for d in rebalance_dates(cal, dt.date(2030, 1, 1))]
    assert ours == keys
    assert keys[0] == "1992-01-03" and keys[-1] == "2022-12-23" and len(keys) == 1617
    assert all(dt.date.fromisoformat(k).weekday() == 4 for k in keys)  # Fridays


def test_monthly_and_daily_calendars_agree_too():
    for freq in ("monthly", "daily"):
        cal = Calendar(frequency=freq, start=dt.date(2020, 1, 1), end=dt.date(2020, 4, 1))
        assert [d.isoformat() for d in rebalance_dates(cal, dt.date(2021, 1, 1))] == \
            partitions_def(cal).get_partition_keys()


def test_previous_dates_and_windows():
    cal = load_manifest().calendar
    assert previous_dates(cal, dt.date(2019, 1, 4), 2) == [dt.date(2018, 12, 21), dt.date(2018, 12, 28)]
    assert previous_dates(cal, dt.date(1992, 1, 3), 2) == []
    assert previous_dates(cal, dt.date(1992, 1, 10), 2) == [dt.date(1992, 1, 3)]
    assert periods_covering(cal, 252) == 52
