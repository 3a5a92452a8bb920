"""What a live market-data connector answers, and the retry policy every connector shares.

A connector talks to one vendor (an exchange through ccxt, Yahoo Finance through yfinance, the
TradingView screener) and answers two questions in the product's own vocabulary:

* `listings()`: what the venue lists *now* (a live snapshot: discovery is not point in time; the
  ingest store records when each listing was seen and the universe lists a symbol on a rebalance
  date only from its first stored bar on);
* `bars(listing, start, end)`: daily OHLCV bars with start <= date <= end, in `BAR_SCHEMA`.

Vendors fail in two ways that must not be confused: transiently (a rate limit, a 5xx, a timeout),
which `with_retries` retries with exponential backoff, and for good (an unknown symbol, a
delisting), which is raised at once. A symbol that still fails after the retries is a
`FetchFailed` naming it; the ingest records it in `ingest_log` and carries on with the others.

The vendor libraries are optional extras (`pip install "quant_assets[ccxt]"`, `[yfinance]`,
`[tradingview]`); each connector imports its library when it is built, and says which extra to
install when it is missing.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TypeVar

import polars as pl

BAR_SCHEMA: dict[str, type[pl.DataType]] = {
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,  # in units of the instrument (shares, coins); value traded = close x volume
}

T = TypeVar("T")


@dataclass(frozen=True)
class Listing:
    """One instrument a venue lists, in the standard candidate vocabulary."""

    symbol: str  # physical EXCHANGE:TICKER (validated: no '/', '..', '|')
    ticker: str  # the vendor's own id, what `bars` asks for (ccxt "BTC/USDT", Yahoo "AAPL")
    exchange: str
    asset_type: str  # spot | perp | equity | etf | index ...
    sector: str | None = None
    quote_volume: float | None = None  # last 24 h value traded in the quote currency, when the venue says
    metadata: dict = field(default_factory=dict)


class ConnectorError(RuntimeError):
    """A connector cannot run at all (its library is missing, its configuration is wrong)."""


class FetchFailed(RuntimeError):
    """A request still failed after its retries; names what was asked and the last error."""

    def __init__(self, what: str, attempts: int, cause: BaseException):
        self.what, self.attempts, self.cause = what, attempts, cause
        super().__init__(f"{what}: failed after {attempts} attempt(s): {type(cause).__name__}: {cause}")


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    retryable: tuple[type[BaseException], ...],
    attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried on `retryable` errors with delays base, 2 base, 4 base ... (capped at
    `max_delay`); FetchFailed after `attempts` tries. Any other error is raised at once: retrying
    an unknown symbol only wastes the venue's rate limit."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retryable as e:
            if attempt == attempts:
                raise FetchFailed(what, attempts, e) from e
            sleep(min(max_delay, base_delay * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # the loop returns or raises


def require(module: str, extra: str) -> ModuleType:
    """Import a connector's vendor library, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConnectorError(
            f'the {extra} connector needs the `{module}` package: pip install "quant_assets[{extra}]" ({e})'
        ) from None


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def day_of(ms: int | float) -> dt.date:
    """The UTC calendar day of a millisecond epoch timestamp (the day a daily candle opens)."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()


def ms_of(day: dt.date) -> int:
    """Midnight UTC of `day` as a millisecond epoch timestamp."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


class Connector(ABC):
    """A vendor behind the two questions above (see the module docstring)."""

    kind: str  # the registry name a manifest's `sources.<name>.kind` uses

    @abstractmethod
    def listings(self) -> list[Listing]:
        """What the venue lists now, ranked (most traded first) when the venue says how much trades."""

    @abstractmethod
    def bars(self, listing: Listing, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Daily bars with start <= date <= end (BAR_SCHEMA, ascending, unique dates; empty when the
        venue has none). Pages through the venue's limit; transient errors retried (`with_retries`);
        FetchFailed when they persist."""
