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
for it), cached per calendar and widened when a request reaches outside what was built. The cache
is also kept on disk, per version of the library and of pandas, whose holiday rules XNYS uses
(`QUANT_ASSETS_CACHE`, default `~/.cache/quant_assets`): importing the library and building XNYS
took 0.9 s in every fresh process (each run the UI launches, the command line's weekly update),
and reading the file takes a millisecond. The files hold exactly what the library built; an
unreadable one is built again, and a widening build covers the span on disk too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from quant_assets.data.atomic import replace_atomic

CACHE_ENV_VAR = "QUANT_ASSETS_CACHE"  # a folder; empty: no disk cache

ALWAYS_OPEN = "24/7"
# The calendar a universe trades on when its manifest entry names none.
DEFAULT_CALENDAR = {"equity": "XNYS", "etf": "XNYS", "index": "XNYS", "crypto": ALWAYS_OPEN}
SESSIONS_PER_YEAR_EXCHANGE = 252
DAYS_PER_YEAR = 365


class UnknownCalendar(ValueError):
    """A calendar name that is neither 24/7 nor one of exchange_calendars' exchanges."""


# Bumped when what the files hold or how they are laid out changes.
CACHE_FORMAT = 1


@lru_cache(maxsize=1)
def _cache_dir() -> Path | None:
    """The disk cache of these versions of exchange_calendars and pandas (XNYS takes Good Friday
    and Labor Day from pandas' holiday rules), or None when disabled."""
    from importlib.metadata import version

    root = os.environ.get(CACHE_ENV_VAR)
    if root is None:
        try:
            root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quant_assets")
        except RuntimeError:  # no home directory to put it in
            return None
    if not root:
        return None
    versions = f"exchange_calendars-{version('exchange_calendars')}-pandas-{version('pandas')}"
    return Path(root) / f"sessions-v{CACHE_FORMAT}-{versions}"


def _write_cache(name: str, write) -> None:
    """Write a cache file through `write(path)`, atomically; a cache that cannot be written (a
    read-only home) only costs the next process the build."""
    folder = _cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replace_atomic(folder / name, write)
    except OSError:
        pass


@lru_cache(maxsize=1)
def calendar_names() -> list[str]:
    folder = _cache_dir()
    if folder is not None:
        try:
            return json.loads((folder / "names.json").read_text())
        except Exception:  # missing, cut short, not JSON: built again
            pass
    import exchange_calendars

    names = sorted(exchange_calendars.get_calendar_names(include_aliases=True))
    _write_cache("names.json", lambda path: path.write_text(json.dumps(names)))
    return names


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


Span = tuple[int, int, np.ndarray]  # first year, last year, the sessions of those years


def _cache_file(name: str) -> str:
    return name.replace("/", "_") + ".npz"  # exchange_calendars has names such as "24/5"


def _stored_sessions(name: str) -> Span | None:
    folder = _cache_dir()
    if folder is None:
        return None
    try:
        with np.load(folder / _cache_file(name)) as f:
            return int(f["first_year"]), int(f["last_year"]), f["sessions"].astype("datetime64[D]")
    except Exception:  # missing, empty, cut short, another layout: built again
        return None


def _store_sessions(name: str, built: Span) -> None:
    def write(path: Path) -> None:
        with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, first_year=built[0], last_year=built[1], sessions=built[2])

    _write_cache(_cache_file(name), write)


def _exchange_sessions(name: str, first_year: int, last_year: int) -> np.ndarray:
    spans = [_built.get(name)]
    if spans[0] is None or not (spans[0][0] <= first_year and last_year <= spans[0][1]):
        spans.append(_stored_sessions(name))  # another process may have widened the file since
    for span in spans:
        if span is not None and span[0] <= first_year and last_year <= span[1]:
            _built[name] = span
            return span[2]
    # A build covers what was asked and every span known here, so the file it writes never holds
    # less than the one it replaces (two processes widening it at once both write a superset).
    lo = min([first_year] + [span[0] for span in spans if span is not None])
    hi = max([last_year] + [span[1] for span in spans if span is not None])
    import exchange_calendars

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
    _store_sessions(name, _built[name])
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
