"""Ingestion checks on what a source returns, before anything is stored.

A source is outside our control (a vendor file, an exchange API, a CSV drop). What it returns is
checked once, at the door, and a problem is an error naming the source, the symbol and the date,
so nothing downstream has to guess: a negative close would become a -200 % return that tops a
short sleeve's ranking; duplicated dates break the reshape into a panel far from their cause;
unsorted dates silently shift every trailing window; a bar on a day that is not a session of the
universe's trading calendar (a weekend or a holiday of an exchange: a padded calendar) adds zero
returns that dilute volatility and make annualisation look like a 7-day week.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from quant_assets.data.sessions import TradingCalendar


class DataError(ValueError):
    """A source returned data that cannot be stored; the message names source, symbol and date."""


# A physical symbol is EXCHANGE:TICKER: letters, digits and . _ - : only, at most 64 characters.
# No "/" or ".." (a symbol must never be able to name a path outside the lakehouse), no "|" (it
# separates the parts of an atom id, SYMBOL|logic|direction), no spaces or control characters.
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def validate_symbol(symbol: str, source: str) -> str:
    """The symbol if a source may use it; DataError naming it and the rule otherwise."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol) or ".." in symbol:
        shown = symbol if len(str(symbol)) <= 80 else f"{str(symbol)[:77]}..."
        raise DataError(
            f"source {source!r}: symbol {shown!r} refused: symbols are EXCHANGE:TICKER of letters, digits and "
            "'.', '_', '-', ':' (no '/', '..', '|' or spaces), at most 64 characters; map the vendor's name "
            "(e.g. BTC/USDT -> BINANCE:BTCUSDT) in the connector"
        )
    return symbol


def validate_closes(closes: pd.DataFrame, source: str, calendar: TradingCalendar) -> None:
    """Check a wide (date x symbol) frame of closes as a source returned it against the universe's
    trading calendar; raise DataError on the first problem."""
    for symbol in closes.columns:
        validate_symbol(symbol, source)
    index = pd.DatetimeIndex(closes.index)
    duplicated = index[index.duplicated()]
    if len(duplicated):
        days = sorted({d.date().isoformat() for d in duplicated})
        raise DataError(
            f"source {source!r}: duplicate dates {days[:5]} for symbols {list(closes.columns)[:5]}; "
            "a source must return one row per date"
        )
    if not index.is_monotonic_increasing:
        i = int(np.flatnonzero(np.diff(index.asi8) < 0)[0])
        raise DataError(
            f"source {source!r}: dates out of order, {index[i + 1].date()} comes after {index[i].date()} "
            f"(row {i + 2}); a source must return dates ascending"
        )
    values = closes.to_numpy(dtype=float)
    present = ~np.isnan(values)
    bad = present & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        r, c = (int(x[0]) for x in np.nonzero(bad))
        raise DataError(
            f"source {source!r}: close of {closes.columns[c]} on {index[r].date()} is {float(values[r, c])}; "
            "a close must be a finite positive price"
        )
    if calendar.always_open or not present.any():
        return
    traded = present.any(axis=1)
    days = index.values.astype("datetime64[D]")
    off = traded & ~calendar.is_session(days)
    if off.any():
        r = int(np.flatnonzero(off)[0])
        c = int(np.flatnonzero(present[r])[0])
        day = index[r]
        what = f"a {day.day_name()}" if day.dayofweek >= 5 else "a holiday or closure"
        n_off = int(off.sum())
        raise DataError(
            f"source {source!r}: {closes.columns[c]} has a close on {day.date()}, {what}, which is not a "
            f"session of the {calendar.name} calendar"
            + (f" ({n_off} such days in all)" if n_off > 1 else "")
            + "; a padded calendar adds zero returns: drop non-session rows at the source, or set the "
            "universe's `calendar` if it trades on another exchange"
        )
