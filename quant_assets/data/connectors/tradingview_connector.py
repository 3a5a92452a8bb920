"""Universe discovery through TradingView's stock screener (the `tradingview-screener` package).

The screener answers "which instruments of a market pass these filters, ranked by this column"
in one POST to `scanner.tradingview.com/<market>/scan`; each row is the instrument's
`EXCHANGE:TICKER` (TradingView's own names, the convention physical symbols follow) and the
values of the selected columns. It has no price history: `bars` refuses, and a universe
discovered here takes its bars from another source (yfinance for equities, ccxt for crypto).

**The query.** `tradingview_screener.Query` builds the body. Its defaults are a stock screener:
primary listings only (`is_primary`, so a company is not listed once per venue) and common,
preferred, depositary receipts and non-ETF funds (`filter2`). Those defaults are kept for the
country markets (the configured `filters` are added to `is_primary`, which `Query.where` would
otherwise replace) and dropped for the markets that are not stocks (crypto, forex ...), where
they would match nothing. Filters are `{left, operation, right}` dicts with the operations
greater, less, equal, in_range (`[low, high]` or a list of values) and match (substring).

**The request.** `Query.get_scanner_data` posts with the module-level `requests.post`, so no
session can be handed to it; the connector posts the library's body and headers itself through
`session` (a `requests.Session`, or `requests.post` when none), which lets the tests answer with a
recorded payload and lets 429 and 5xx be told apart from a refused query (an unknown column is a
400: a configuration error, not retried).

**A row.** symbol = ticker = the row's `s`; exchange from the `exchange` column (else the
symbol's prefix); asset type from the configuration, else the `type` column (stock and dr ->
equity), else equity; sector; quote_volume = `Value.Traded` (TradingView's close x volume of the
day, computed from those columns when it is not selected); every other column goes to metadata
under a snake_case key (`Recommend.All` -> recommend_all, `market_cap_basic` -> market_cap).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from quant_assets.data.connectors.base import Connector, ConnectorError, Listing, require, with_retries
from quant_assets.data.validation import DataError, validate_symbol

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = [
    "name",
    "exchange",
    "close",
    "volume",
    "Value.Traded",
    "market_cap_basic",
    "sector",
    "type",
    "Recommend.All",
    "Recommend.MA",
    "Recommend.Other",
    "ADX",
]
OPERATIONS: dict[str, Callable[[Any, Any], dict]] = {
    "greater": lambda column, right: column > right,
    "less": lambda column, right: column < right,
    "equal": lambda column, right: column == right,
    "in_range": lambda column, right: column.isin(right),  # same body as between(low, high)
    "match": lambda column, right: column.like(right),
}
# Markets whose instruments are not stocks: the library's stock defaults would filter out everything.
NON_STOCK_MARKETS = {"bond", "bonds", "cfd", "coin", "crypto", "economics2", "forex", "futures", "options"}
TYPES = {"stock": "equity", "dr": "equity"}  # TradingView's `type` -> our asset_type; others kept as is
CONSUMED = {"exchange", "sector", "type", "Value.Traded"}  # columns that become Listing fields
META_KEYS = {"market_cap_basic": "market_cap"}


class ScannerUnavailable(RuntimeError):
    """The scanner answered 429, a 5xx or not at all: worth asking again after a pause."""


def meta_key(column: str) -> str:
    """`Recommend.All` -> recommend_all, `ADX` -> adx, `market_cap_basic` -> market_cap."""
    return META_KEYS.get(column) or re.sub(r"[^0-9a-z]+", "_", column.lower()).strip("_")


class TradingViewConnector(Connector):
    """The `limit` instruments of a TradingView market passing `filters`, ranked by `sort_by`."""

    kind = "tradingview"

    def __init__(
        self,
        market: str = "america",
        columns: list[str] | None = None,
        filters: list[dict] | None = None,
        sort_by: str = "Value.Traded",
        ascending: bool = False,
        limit: int = 100,
        asset_type: str | None = None,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        base_delay: float = 1.0,
        timeout: float = 20.0,
    ):
        self._tv = require("tradingview_screener", "tradingview")
        self._requests = require("requests", "tradingview")
        if limit < 1 or attempts < 1:
            raise ConnectorError("tradingview connector: limit and attempts must be at least 1")
        self.market = market
        self.columns = list(dict.fromkeys(columns or DEFAULT_COLUMNS))
        self.asset_type = asset_type
        self.session = session
        self.sleep = sleep
        self.attempts = attempts
        self.base_delay = base_delay
        self.timeout = timeout
        self.query = self._build_query(list(filters or []), sort_by, ascending, limit)

    def _build_query(self, filters: list[dict], sort_by: str, ascending: bool, limit: int) -> Any:
        query = self._tv.Query().set_markets(self.market)
        kept = list(query.query.get("filter", []))
        if self.market in NON_STOCK_MARKETS:
            query.query.pop("filter2", None)
            kept = []
        expressions = [self._expression(f) for f in filters]
        return (
            query.select(*self.columns).where(*kept, *expressions).order_by(sort_by, ascending=ascending).limit(limit)
        )

    def _expression(self, spec: dict) -> dict:
        if not isinstance(spec, dict) or not {"left", "operation"} <= set(spec):
            raise ConnectorError(f"tradingview connector: a filter is {{left, operation, right}}, got {spec!r}")
        operation = spec["operation"]
        if operation not in OPERATIONS:
            raise ConnectorError(
                f"tradingview connector: unknown filter operation {operation!r} (in {spec!r}); "
                f"known: {', '.join(OPERATIONS)}"
            )
        right = spec.get("right")
        if operation == "in_range":
            if not isinstance(right, list | tuple):
                raise ConnectorError(
                    f"tradingview connector: in_range takes a list ([low, high] or values), got {right!r}"
                )
            right = list(right)
        return OPERATIONS[operation](self._tv.col(spec["left"]), right)

    # -- discovery -------------------------------------------------------------------------------

    def listings(self) -> list[Listing]:
        """The screener's rows in its order (by `sort_by`); rows whose symbol is not a valid
        physical symbol are skipped with a warning."""
        payload = with_retries(
            self._scan,
            what=f"tradingview {self.market} scan",
            retryable=(ScannerUnavailable,),
            attempts=self.attempts,
            base_delay=self.base_delay,
            sleep=self.sleep,
        )
        columns = list(self.query.query["columns"])
        listings: dict[str, Listing] = {}
        for row in payload.get("data") or []:
            symbol = row.get("s")
            try:
                validate_symbol(symbol, f"tradingview:{self.market}")
            except DataError as e:  # e.g. a continuous future "CME_MINI:ES1!"
                log.warning("skipping tradingview row %r: %s", symbol, e)
                continue
            if symbol not in listings:
                listings[symbol] = self._listing(symbol, dict(zip(columns, row.get("d") or [])))
        return list(listings.values())

    def _listing(self, symbol: str, values: dict[str, Any]) -> Listing:
        kind = values.get("type")
        asset_type = self.asset_type or (TYPES.get(kind, kind) if isinstance(kind, str) and kind else "equity")
        quote_volume = values.get("Value.Traded")
        if quote_volume is None and "Value.Traded" not in values:
            close, volume = values.get("close"), values.get("volume")
            quote_volume = close * volume if close is not None and volume is not None else None
        return Listing(
            symbol=symbol,
            ticker=symbol,
            exchange=str(values.get("exchange") or symbol.split(":", 1)[0]),
            asset_type=asset_type,
            sector=values.get("sector"),
            quote_volume=None if quote_volume is None else float(quote_volume),
            metadata={meta_key(c): v for c, v in values.items() if c not in CONSUMED and v is not None},
        )

    def _scan(self) -> dict:
        requests = self._requests
        post = self.session.post if self.session is not None else requests.post
        url = self.query.url
        headers = getattr(importlib.import_module("tradingview_screener.query"), "HEADERS", None)
        try:
            response = post(url, json=self.query.query, headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ScannerUnavailable(f"{url}: {type(e).__name__}: {e}") from e
        status = response.status_code
        if status == 429 or status >= 500:
            raise ScannerUnavailable(f"{url}: HTTP {status}: {response.text[:200]}")
        if status >= 400:
            raise ConnectorError(
                f"tradingview connector: the scanner refused the query (HTTP {status}: {response.text[:300]}); "
                "check the market, columns, filters and sort_by"
            )
        return response.json()

    def bars(self, listing: Listing, start: dt.date, end: dt.date) -> pl.DataFrame:
        raise ConnectorError(
            f"tradingview connector: the screener has no price history (asked for {listing.symbol} "
            f"{start}..{end}); a universe discovered with TradingView takes its bars from another source: "
            "a yfinance source for equities (NASDAQ:AAPL -> ticker AAPL) or a ccxt source for crypto"
        )
