"""Daily bars from Yahoo Finance's chart API through yfinance, for a configured list of tickers.

Yahoo has no exchange-wide listing API, so `listings()` is the configured tickers (no network call);
a universe discovered elsewhere (the TradingView screener) can take its bars from here.

**Symbols.** A Yahoo ticker becomes the physical symbol `EXCHANGE:TICKER`; `Listing.ticker` keeps
Yahoo's spelling, which is what `bars` asks for, so the mapping never has to be reversed by parsing:

    Yahoo ticker   physical symbol   asset_type    rule
    AAPL           NASDAQ:AAPL       equity        `exchanges[ticker]`, else `exchange`
    BRK-B          NASDAQ:BRK-B      equity        '-' and '.' are kept (7974.T -> TSE:7974.T)
    ^GSPC          INDEX:GSPC        index         '^' (Yahoo's index prefix) dropped, exchange INDEX
    EURUSD=X       FX:EURUSD         fx            '=X' (currency pair) dropped, exchange FX
    ES=F           FUTURES:ES        future        '=F' (continuous future) dropped, exchange FUTURES

Any other character outside letters, digits, '.', '_', '-' becomes '_' (M&M.NS -> NSE:M_M.NS);
tickers are upper-cased (Yahoo and yfinance are case-insensitive). Two tickers of one connector
that map to the same symbol are refused.

**Prices.** `auto_adjust=True`: yfinance scales open, high and low by Yahoo's adjclose / close, so
the whole bar is split- and dividend-adjusted (returns are total returns; an ex-dividend day does
not show the dividend as a loss). Volume is Yahoo's (split-adjusted by Yahoo, not by dividends).
Yahoo stamps a daily bar with its session's open (13:30 UTC for New York, 00:00 UTC for Tokyo) and
yfinance re-labels it midnight in the exchange's time zone: the bar's date is that local date
(the Tokyo bar of 28 August is 27 August 15:00 in UTC).

**Errors.** yfinance reports what went wrong unevenly: a connection error in its time-zone lookup
comes back as "possibly delisted; no timezone found", an unknown ticker as a 404 of a *different*
endpoint (its timezone fallback), and with its default settings a failed download is logged and
returned as an empty frame. So the connector watches the session it hands yfinance: an attempt
that saw 429, a 5xx or a transport error on the chart API is retried (`YahooUnavailable`); one
whose chart answer was 404 raises `TickerNotFound` at once (retrying an unknown ticker only spends
the rate limit). yfinance also memoises chart responses of past ranges for the process, error
responses included, so the memo is cleared before each attempt.

yfinance keeps process-wide state: one session (the last one a `Ticker` was given), one
cookie/crumb, and `config.debug.hide_exceptions`, which this connector sets to False (the empty
frame of a failure would otherwise look like a range without sessions).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from quant_assets.data.connectors.base import (
    BAR_SCHEMA,
    Connector,
    ConnectorError,
    Listing,
    empty_bars,
    require,
    with_retries,
)
from quant_assets.data.validation import DataError, validate_symbol

CHART_PATH = "/v8/finance/chart/"
# Yahoo's special ticker forms: (how the ticker is written, the exchange and asset type it implies).
PREFIXES = {"^": ("INDEX", "index")}
SUFFIXES = {"=X": ("FX", "fx"), "=F": ("FUTURES", "future")}
UNSAFE = re.compile(r"[^A-Z0-9._-]")


class YahooUnavailable(RuntimeError):
    """Yahoo answered 429, a 5xx or not at all: worth asking again after a pause."""


class TickerNotFound(LookupError):
    """Yahoo's chart API does not know the ticker (HTTP 404): asking again will not help."""


def symbol_parts(ticker: str) -> tuple[str, str | None, str | None]:
    """(the ticker part of the physical symbol, the exchange and asset type Yahoo's form implies)."""
    t = ticker.strip().upper()
    for prefix, (exchange, asset_type) in PREFIXES.items():
        if t.startswith(prefix):
            return UNSAFE.sub("_", t[len(prefix) :]), exchange, asset_type
    for suffix, (exchange, asset_type) in SUFFIXES.items():
        if t.endswith(suffix):
            return UNSAFE.sub("_", t[: -len(suffix)]), exchange, asset_type
    return UNSAFE.sub("_", t), None, None


def physical_symbol(ticker: str, exchange: str | None = None) -> str:
    """`EXCHANGE:TICKER` for a Yahoo ticker (see the module docstring); `exchange` overrides the
    one the ticker's form implies, NASDAQ when it implies none."""
    core, implied, _ = symbol_parts(ticker)
    return f"{(exchange or implied or 'NASDAQ').upper()}:{core}"


# -- watching what Yahoo answered ----------------------------------------------------------------

_local = threading.local()


@dataclass
class _Seen:
    """The chart API's answers during one attempt on this thread."""

    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def transient(self) -> bool:
        return bool(self.errors) or any(s == 429 or s >= 500 for s in self.statuses)

    @property
    def not_found(self) -> bool:
        return 404 in self.statuses

    def describe(self) -> str:
        bad = [f"HTTP {s}" for s in self.statuses if s == 429 or s >= 500]
        return ", ".join(dict.fromkeys(bad + self.errors)) or "no answer"

    def record(self, response: Any) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        self.statuses.append(status)
        if 400 <= status < 500:
            with contextlib.suppress(Exception):  # Yahoo's reason when it gives one, e.g. "No data found ..."
                self.reasons.append(str(json.loads(response.text)["chart"]["error"]["description"]))


@contextlib.contextmanager
def _watching() -> Iterator[_Seen]:
    seen, previous = _Seen(), getattr(_local, "seen", None)
    _local.seen = seen
    try:
        yield seen
    finally:
        _local.seen = previous


def _watched(session: Any) -> Any:
    """`session` with its `request` (which `get` and `post` call, in requests and curl_cffi alike)
    wrapped to record the chart API's answers in the calling thread's current `_watching`."""
    if getattr(session, "_quant_assets_watched", False):
        return session
    inner = session.request

    def request(method, url, *args, **kwargs):
        seen = getattr(_local, "seen", None)
        chart = seen is not None and CHART_PATH in str(url)
        try:
            response = inner(method, url, *args, **kwargs)
        except Exception as e:
            if chart:
                seen.errors.append(f"{type(e).__name__}: {e}")
            raise
        if chart:
            seen.record(response)
        return response

    session.request = request
    session._quant_assets_watched = True
    return session


class YFinanceConnector(Connector):
    """Daily adjusted bars of the configured Yahoo tickers."""

    kind = "yfinance"

    def __init__(
        self,
        tickers: list[str],
        exchange: str = "NASDAQ",
        exchanges: dict[str, str] | None = None,
        asset_type: str = "equity",
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        base_delay: float = 1.0,
    ):
        self._yf = require("yfinance", "yfinance")
        if not tickers:
            raise ConnectorError("yfinance connector: no tickers configured (Yahoo cannot list an exchange)")
        if attempts < 1:
            raise ConnectorError("yfinance connector: attempts must be at least 1")
        self.exchange = exchange.upper()
        self.asset_type = asset_type
        self.sleep = sleep
        self.attempts = attempts
        self.base_delay = base_delay
        self._history_kwargs = self._raise_on_failure()
        if session is None:  # yfinance's own choice: curl_cffi impersonating Chrome, else requests
            session = importlib.import_module("yfinance._http").new_session()
        self.session = _watched(session)
        self._listings = self._build_listings([str(t) for t in tickers], exchanges or {})

    def _raise_on_failure(self) -> dict[str, Any]:
        config = getattr(self._yf, "config", None)
        if config is None:  # an older yfinance, before `yf.config`: the per-call switch, not yet deprecated
            return {"raise_errors": True}
        config.debug.hide_exceptions = False
        return {}

    def _build_listings(self, tickers: list[str], exchanges: dict[str, str]) -> list[Listing]:
        overrides = {k.strip().upper(): v for k, v in exchanges.items()}
        unknown = sorted(set(overrides) - {t.strip().upper() for t in tickers})
        if unknown:
            raise ConnectorError(f"yfinance connector: exchanges given for tickers not configured: {unknown}")
        listings: dict[str, Listing] = {}
        owner: dict[str, str] = {}
        for raw in tickers:
            ticker = raw.strip().upper()
            if ticker in owner.values():
                continue  # listed twice
            _, implied_exchange, implied_type = symbol_parts(ticker)
            exchange = (overrides.get(ticker) or implied_exchange or self.exchange).upper()
            symbol = physical_symbol(ticker, exchange)
            try:
                validate_symbol(symbol, "yfinance")
            except DataError as e:
                raise ConnectorError(f"yfinance connector: ticker {raw!r} maps to an invalid symbol: {e}") from None
            if symbol in owner:
                raise ConnectorError(
                    f"yfinance connector: tickers {owner[symbol]!r} and {ticker!r} both map to {symbol}; "
                    "give one of them another exchange in `exchanges`"
                )
            owner[symbol] = ticker
            listings[symbol] = Listing(
                symbol=symbol, ticker=ticker, exchange=exchange, asset_type=implied_type or self.asset_type
            )
        return list(listings.values())

    def listings(self) -> list[Listing]:
        """The configured tickers, in the configured order (Yahoo reports no listing-wide volume)."""
        return list(self._listings)

    def bars(self, listing: Listing, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Adjusted daily bars with start <= date <= end (exchange-local dates)."""
        if end < start:
            return empty_bars()
        frame = with_retries(
            lambda: self._history(listing.ticker, start, end),
            what=f"yfinance {listing.ticker} ({listing.symbol}) {start}..{end}",
            retryable=(YahooUnavailable,),
            attempts=self.attempts,
            base_delay=self.base_delay,
            sleep=self.sleep,
        )
        return _to_bars(frame, start, end)

    def _history(self, ticker: str, start: dt.date, end: dt.date) -> Any:
        """One attempt; None when Yahoo knows the ticker but has no session in the range."""
        _forget_memoised_responses()
        errors = self._yf.exceptions
        with _watching() as seen:
            try:
                return self._yf.Ticker(ticker, session=self.session).history(
                    start=start,
                    end=end + dt.timedelta(days=1),  # yfinance's end is exclusive
                    interval="1d",
                    auto_adjust=True,
                    actions=False,
                    **self._history_kwargs,
                )
            except errors.YFRateLimitError as e:
                raise YahooUnavailable(f"{ticker}: rate limited by Yahoo (HTTP 429)") from e
            except Exception as e:
                if seen.transient:
                    raise YahooUnavailable(f"{ticker}: {seen.describe()} from Yahoo's chart API") from e
                if seen.not_found:
                    reason = "; ".join(dict.fromkeys(seen.reasons)) or "HTTP 404"
                    raise TickerNotFound(
                        f"Yahoo has no chart for ticker {ticker!r} ({reason}); Yahoo spells tickers like "
                        "BRK-B, 7974.T, ^GSPC, EURUSD=X"
                    ) from e
                if isinstance(e, OSError):  # requests' and curl_cffi's errors outside the chart API
                    raise YahooUnavailable(f"{ticker}: {type(e).__name__}: {e}") from e
                if isinstance(e, errors.YFPricesMissingError) and getattr(e, "yahoo_reason", None) is None:
                    return None  # Yahoo answered 200 with no quotes: no session in the range
                raise


def _forget_memoised_responses() -> None:
    """yfinance memoises chart responses of past ranges (`YfData.cache_get`), failures included."""
    with contextlib.suppress(Exception):
        importlib.import_module("yfinance.data").YfData.cache_get.cache_clear()


def _to_bars(frame: Any, start: dt.date, end: dt.date) -> pl.DataFrame:
    if frame is None or len(frame) == 0:
        return empty_bars()
    bars = pl.DataFrame(
        {
            "date": list(frame.index.date),  # the exchange-local session date (see the module docstring)
            "open": np.asarray(frame["Open"], dtype=float),
            "high": np.asarray(frame["High"], dtype=float),
            "low": np.asarray(frame["Low"], dtype=float),
            "close": np.asarray(frame["Close"], dtype=float),
            "volume": np.asarray(frame["Volume"], dtype=float),
        },
        schema=BAR_SCHEMA,
    )
    return (
        bars.filter(
            pl.col("date").is_between(start, end) & pl.col("close").is_not_null() & pl.col("close").is_not_nan()
        )
        .unique(subset="date", keep="first", maintain_order=True)
        .sort("date")
    )
