"""Trading calendars: which days a universe trades, from a kept calendar library.

An exchange-traded universe (equities, ETFs, indices) trades on its exchange's sessions: weekdays
minus holidays and unscheduled closures (XNYS was shut 2001-09-11 .. 2001-09-14 and 2012-10-29 ..
30). A crypto universe trades every day ("24/7"). The calendar decides three things:

* what a source may return: a bar on a day that is not a session (a Saturday, Christmas, a padded
  calendar) is a data error naming the symbol and the date, because its zero return dilutes
  volatility and every trailing window silently shifts (`data.validation.validate_closes`);
* what counts as missing: the panel of a universe has one row per session, so a session a symbol
  did not trade is a gap in the health verdicts, never a forward-filled price;
* annualisation: 252 sessions a year on an exchange calendar (the convention for daily equity
  data; XNYS has 250-253), 365 on a 24/7 one, for metrics and annualised features alike.

Sessions come from `exchange_calendars` (imported on first use: definition loading never pays
for it), cached per calendar and widened when a request reaches outside what was built.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ALWAYS_OPEN = "24/7"
# The calendar a universe trades on when its manifest entry names none.
DEFAULT_CALENDAR = {"equity": "XNYS", "etf": "XNYS", "index": "XNYS", "crypto": ALWAYS_OPEN}
SESSIONS_PER_YEAR_EXCHANGE = 252
DAYS_PER_YEAR = 365


class UnknownCalendar(ValueError):
    """A calendar name that is neither 24/7 nor one of exchange_calendars' exchanges."""


def calendar_names() -> list[str]:
    import exchange_calendars

    return sorted(exchange_calendars.get_calendar_names(include_aliases=True))


def check_calendar_name(name: str) -> str:
    """`name` if it names a calendar; UnknownCalendar listing what exists otherwise."""
    if name == ALWAYS_OPEN:
        return name
    names = calendar_names()
    if name not in names:
        raise UnknownCalendar(
            f"unknown trading calendar {name!r}: use {ALWAYS_OPEN!r} (every day) or an exchange_calendars "
            f"code such as XNYS, XLON, XTKS, XHKG ({len(names)} known: {', '.join(names[:12])}, ...)"
        )
    return name


# Sessions built so far, per calendar: (first year, last year, sessions). Building is the slow part
# (XNYS over 1990-2022 takes about 1 s, a two-year span 0.6 s, whatever the span a fixed cost), and
# a walk-forward asks year after year: so a miss builds AHEAD_YEARS beyond what was asked (a year-by-
# year walk over 1990-2022 builds 3 times, not 33).
_built: dict[str, tuple[int, int, np.ndarray]] = {}
AHEAD_YEARS = 10


def _exchange_sessions(name: str, first_year: int, last_year: int) -> np.ndarray:
    import exchange_calendars

    cached = _built.get(name)
    if cached is not None and cached[0] <= first_year and last_year <= cached[1]:
        return cached[2]
    lo = min(first_year, cached[0]) if cached else first_year
    hi = max(last_year, cached[1]) if cached else last_year
    try:
        cal = exchange_calendars.get_calendar(name, start=f"{lo}-01-01", end=f"{hi + AHEAD_YEARS}-12-31")
        hi += AHEAD_YEARS
    except ValueError:  # the calendar's rules may end sooner: just what was asked
        try:
            cal = exchange_calendars.get_calendar(name, start=f"{lo}-01-01", end=f"{hi}-12-31")
        except ValueError as err:  # a calendar whose recorded history is shorter than the data
            raise UnknownCalendar(
                f"trading calendar {name!r} cannot cover {lo} .. {hi}: {str(err).splitlines()[0]}"
            ) from err
    days = cal.sessions.values.astype("datetime64[D]")
    _built[name] = (lo, hi, days)
    return days


@dataclass(frozen=True)
class TradingCalendar:
    """The sessions of one universe: `XNYS`-style exchange codes, or `24/7`."""

    name: str

    @property
    def always_open(self) -> bool:
        return self.name == ALWAYS_OPEN

    @property
    def annualisation(self) -> int:
        """Periods per year for annualised figures: 365 every day, else 252 sessions."""
        return DAYS_PER_YEAR if self.always_open else SESSIONS_PER_YEAR_EXCHANGE

    def sessions(self, start: dt.date, end: dt.date) -> np.ndarray:
        """The sessions in [start, end] as datetime64[D], ascending."""
        lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
        if hi < lo:
            return np.array([], dtype="datetime64[D]")
        if self.always_open:
            return np.arange(lo, hi + 1, dtype="datetime64[D]")
        days = _exchange_sessions(self.name, start.year, end.year)
        return days[np.searchsorted(days, lo) : np.searchsorted(days, hi, side="right")]

    def is_session(self, days: np.ndarray) -> np.ndarray:
        """Per day (datetime64[D] array), whether it is a session."""
        days = np.asarray(days, dtype="datetime64[D]")
        if self.always_open or days.size == 0:
            return np.ones(days.shape, dtype=bool)
        start, end = days.min().astype(dt.date), days.max().astype(dt.date)
        return np.isin(days, self.sessions(start, end))


@lru_cache(maxsize=32)
def trading_calendar(name: str) -> TradingCalendar:
    """The calendar named `name` (checked: UnknownCalendar names the alternatives)."""
    return TradingCalendar(check_calendar_name(name))
