"""Rebalance calendar: the single time dimension every asset is partitioned by.

A partition key is a rebalance date D (ISO). Its meaning everywhere: "as of the close of D", so a
partition may read data dated <= D and nothing later. Dagster's partitions and our own date
arithmetic come from the same manifest entry (tested to agree).
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache

import pandas as pd
from dagster import TimeWindowPartitionsDefinition

from quant_assets.manifest import Calendar

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
TRADING_DAYS_PER_PERIOD = {"daily": 1, "weekly": 5, "monthly": 21}


def _cron(cal: Calendar) -> str:
    if cal.frequency == "daily":
        return "0 0 * * 1-5"
    if cal.frequency == "weekly":
        return f"0 0 * * {WEEKDAYS.index(cal.weekday) + 1}"
    return "0 0 1 * *"


def _pandas_freq(cal: Calendar) -> str:
    return {"daily": "B", "weekly": f"W-{cal.weekday[:3].upper()}", "monthly": "MS"}[cal.frequency]


def partitions_def(cal: Calendar) -> TimeWindowPartitionsDefinition:
    return TimeWindowPartitionsDefinition(
        cron_schedule=_cron(cal),
        start=cal.start.isoformat(),
        end=cal.end.isoformat() if cal.end else None,
        fmt="%Y-%m-%d",
    )


@lru_cache(maxsize=64)
def _dates(cal: Calendar, until: dt.date) -> tuple[dt.date, ...]:
    # Like Dagster, a date is a partition only if its whole window (up to the next tick) ends by `end`.
    horizon = until + dt.timedelta(days=40)
    ticks = [d.date() for d in pd.date_range(cal.start, horizon, freq=_pandas_freq(cal))]
    keep = [d for d, nxt in zip(ticks, ticks[1:]) if d <= until and (cal.end is None or nxt <= cal.end)]
    return tuple(keep)


def rebalance_dates(cal: Calendar, until: dt.date) -> tuple[dt.date, ...]:
    """Every rebalance date from the calendar start up to and including `until`."""
    return _dates(cal, until)


def previous_dates(cal: Calendar, date: dt.date, n: int) -> list[dt.date]:
    """The `n` rebalance dates strictly before `date`, oldest first (fewer near the start)."""
    before = [d for d in rebalance_dates(cal, date) if d < date]
    return before[-n:] if n else []


def periods_covering(cal: Calendar, trading_days: int) -> int:
    """How many partitions back a trailing window of `trading_days` reaches (for lineage offsets)."""
    return math.ceil(trading_days / TRADING_DAYS_PER_PERIOD[cal.frequency]) + 1


def calendar_days_covering(trading_days: int) -> int:
    """A generous calendar span holding `trading_days` sessions (holidays included)."""
    return math.ceil(trading_days * 7 / 5) + 15
