"""Rebalance dates and the partitions that hold them.

Two time scales, both from the manifest's `calendar`:

* **rebalance dates** (`frequency`, default weekly on Fridays): the dates a decision is made. A
  rebalance date D means "as of the close of D": anything computed for D reads data dated <= D and
  nothing later.
* **partitions** (`partition`, default a calendar year): what Dagster materialises, backfills and
  shows. A partition holds every rebalance date inside its period as rows with a `rebalance_date`
  column, and every daily row (prices, returns, streams) dated inside it. A backfill of a range of
  periods is a walk-forward backtest computed in one pass per asset.

Why periods and not one partition per rebalance date: Dagster costs several milliseconds per asset
partition (events, planning, storage), so 1,617 weekly partitions x 135 assets spent 20+ minutes
in Dagster alone. Yearly partitions cut the asset partitions 52-fold; `benchmarks/dagster_floor.py`
measures the alternatives and `docs/architecture.md` records the decision.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Calendar(BaseModel):
    """Rebalance dates (`frequency`) and the partitions that hold them (`partition`: one per period)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency: Literal["daily", "weekly", "monthly", "days"] = Field(
        "weekly", description="daily (weekdays), weekly on `weekday`, monthly (first day), or every `every_days` days"
    )
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday"] = "friday"
    every_days: int = Field(
        10, ge=1, le=31, description="with frequency `days`: a rebalance every N calendar days from `start` (crypto)"
    )
    partition: Literal["year", "quarter", "month"] = Field(
        "year", description="Dagster partition = one calendar period holding its rebalance dates as rows"
    )
    start: dt.date
    end: dt.date | None = Field(default=None, description="exclusive; None = open-ended")
    demo_start: dt.date | None = Field(default=None, description="`make demo` range; default: the whole calendar")
    demo_end: dt.date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Calendar:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"calendar.end ({self.end}) must be after calendar.start ({self.start})")
        if self.frequency == "days" and self.partition == "month" and self.every_days > 28:
            # a February could hold no rebalance date: a partition without dates
            raise ValueError(
                f"calendar.every_days ({self.every_days}) must be <= 28 with monthly partitions (every month "
                "must hold a rebalance date)"
            )
        return self


PERIOD_CRON = {"year": "0 0 1 1 *", "quarter": "0 0 1 1,4,7,10 *", "month": "0 0 1 * *"}
PERIOD_FORMAT = {"year": "%Y", "quarter": "%Y-%m", "month": "%Y-%m"}


def _pandas_freq(cal: Calendar) -> str:
    if cal.frequency == "days":
        return f"{cal.every_days}D"  # from `start`, weekends included (a 24/7 market trades them)
    return {"daily": "B", "weekly": f"W-{cal.weekday[:3].upper()}", "monthly": "MS"}[cal.frequency]


def rebalance_interval(cal: Calendar) -> dt.timedelta:
    """The calendar time between two rebalance dates (the longest, for monthly)."""
    days = {"daily": 1, "weekly": 7, "monthly": 31, "days": cal.every_days}[cal.frequency]
    return dt.timedelta(days=days)


@lru_cache(maxsize=64)
def _dates(cal: Calendar, until: dt.date) -> tuple[dt.date, ...]:
    # A date is a rebalance date only if its whole holding window (up to the next tick) ends by `end`.
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


# No lookback may exceed this many sessions (40 years of trading days): longer than any daily
# history, and far below the ~2.7 M days at which a date window overflows.
MAX_SESSIONS = 10_080


def calendar_days_covering(trading_days: int) -> int:
    """A generous calendar span holding `trading_days` sessions (holidays included)."""
    return math.ceil(trading_days * 7 / 5) + 15


def period_start(d: dt.date, period: str) -> dt.date:
    if period == "year":
        return dt.date(d.year, 1, 1)
    if period == "quarter":
        return dt.date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
    return dt.date(d.year, d.month, 1)


def next_period_start(d: dt.date, period: str) -> dt.date:
    start = period_start(d, period)
    months = {"year": 12, "quarter": 3, "month": 1}[period]
    month = start.month - 1 + months
    return dt.date(start.year + month // 12, month % 12 + 1, 1)


@lru_cache(maxsize=1 << 16)
def period_key(d: dt.date, period: str) -> str:
    """The key of the period holding `d`; cached, as every stored row is assigned to its partition
    by it (about 300,000 calls in a full-history run)."""
    return period_start(d, period).strftime(PERIOD_FORMAT[period])


@dataclass(frozen=True)
class Periods:
    """The partition scheme: calendar periods, each holding the rebalance dates inside it.

    A finite calendar (`end` set) has exactly the periods that contain a rebalance date; an
    open-ended one also has the current, unfinished period.
    """

    calendar: Calendar

    @property
    def period(self) -> str:
        return self.calendar.partition

    def key(self, d: dt.date) -> str:
        """The partition key of the period holding date `d` ("2019", "2019-04")."""
        return period_key(d, self.period)

    def window(self, key: str) -> tuple[dt.date, dt.date]:
        """[start, end) of a period."""
        start = dt.datetime.strptime(key, PERIOD_FORMAT[self.period]).date()
        return start, next_period_start(start, self.period)

    @cached_property
    def all_dates(self) -> tuple[dt.date, ...]:
        """Every rebalance date of a finite calendar (an open one: up to 40 years from its start)."""
        until = self.calendar.end or self.calendar.start.replace(year=self.calendar.start.year + 40)
        return rebalance_dates(self.calendar, until)

    @cached_property
    def _ordinals(self) -> np.ndarray:
        return np.array([d.toordinal() for d in self.all_dates], dtype=np.int64)

    def dates(self, key: str) -> tuple[dt.date, ...]:
        """The rebalance dates inside a period, ascending."""
        start, end = self.window(key)
        lo, hi = np.searchsorted(self._ordinals, [start.toordinal(), end.toordinal()])
        return self.all_dates[lo:hi]

    def dates_before(self, d: dt.date, n: int) -> tuple[dt.date, ...]:
        """The `n` rebalance dates strictly before `d`, oldest first (fewer near the start)."""
        i = int(np.searchsorted(self._ordinals, d.toordinal()))
        return self.all_dates[max(0, i - n) : i]

    @cached_property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.key(d) for d in self.all_dates))

    def previous(self, key: str) -> str | None:
        """The period before `key` (None before the calendar's first period)."""
        start, _ = self.window(key)
        prev = self.key(start - dt.timedelta(days=1))
        return prev if self.keys and prev >= self.keys[0] else None

    def next(self, key: str) -> str:
        """The period after `key`."""
        return self.key(self.window(key)[1])

    def keys_between(self, start: dt.date, end: dt.date) -> list[str]:
        """Periods holding a rebalance date in [start, end]."""
        return list(dict.fromkeys(self.key(d) for d in self.all_dates if start <= d <= end))
