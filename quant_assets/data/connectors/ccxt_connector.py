"""Crypto venues through ccxt: what an exchange lists (ranked by 24 h value traded) and daily candles.

One unified API for a hundred exchanges is ccxt's job; this connector only maps its vocabulary to
ours. A ccxt market "BTC/USDT" becomes the physical symbol `BINANCE:BTCUSDT` (TradingView's
convention, so a symbol reads the same in a chart and in a manifest) and a USDT-margined perpetual
"BTC/USDT:USDT" becomes `BINANCE:BTCUSDT.P`; `Listing.ticker` keeps ccxt's unified symbol, which
is what `bars` asks ccxt for.

Errors: ccxt's own hierarchy decides what is transient. `OperationFailed` covers NetworkError
(RateLimitExceeded, DDoSProtection: Binance answers 418/429 with it, ExchangeNotAvailable: 5xx and
maintenance, RequestTimeout) and an exchange's own "internal error, try again" (Binance -1001),
and those are retried; everything else (BadSymbol, ExchangeError ...) is raised at once. ccxt's
rate limiter stays on for a client this connector builds.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from quant_assets.data.connectors.base import (
    BAR_SCHEMA,
    Connector,
    ConnectorError,
    Listing,
    day_of,
    empty_bars,
    ms_of,
    require,
    with_retries,
)
from quant_assets.data.validation import DataError, validate_symbol

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
ASSET_TYPES = {"spot": "spot", "swap": "perp"}
# Several ccxt exchanges load every market family by default (binance: spot, USD-M and COIN-M, three
# requests, and load_markets fails outright where one of those APIs is geo-blocked). Their
# `options["fetchMarkets"]["types"]` names the families, in one of two vocabularies for swaps.
MARKET_FAMILIES = {"spot": ("spot",), "swap": ("swap", "linear", "inverse")}


def physical_symbol(exchange_id: str, market: dict) -> str:
    """EXCHANGE:BASEQUOTE for a spot market, with `.P` for a perpetual swap (TradingView's names)."""
    suffix = ".P" if market.get("type") == "swap" else ""
    return f"{exchange_id.upper()}:{market['base']}{market['quote']}{suffix}"


class CcxtConnector(Connector):
    """One ccxt exchange's spot markets (and, with `market_types=("spot", "swap")`, perpetuals) in
    one quote currency, the `pool` most traded of them."""

    kind = "ccxt"

    def __init__(
        self,
        exchange: str = "binance",
        quote: str = "USDT",
        min_quote_volume: float = 0.0,
        pool: int | None = None,
        market_types: tuple[str, ...] = ("spot",),
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        page_limit: int = 1000,
        attempts: int = 4,
        base_delay: float = 1.0,
    ):
        self._ccxt = require("ccxt", "ccxt")
        unknown = [t for t in market_types if t not in ASSET_TYPES]
        if unknown or not market_types:
            raise ConnectorError(f"ccxt connector: market_types {list(market_types)} must be among {list(ASSET_TYPES)}")
        if page_limit < 1 or attempts < 1 or (pool is not None and pool < 1):
            raise ConnectorError("ccxt connector: page_limit, attempts and pool must be at least 1")
        if client is None:
            client = self._build(exchange)
        self.client = client
        self.exchange = str(client.id)
        self.quote = quote
        self.min_quote_volume = min_quote_volume
        self.pool = pool
        self.market_types = tuple(market_types)
        self.sleep = sleep
        self.page_limit = page_limit
        self.attempts = attempts
        self.base_delay = base_delay
        self._load_only_kept_types()

    def _build(self, exchange: str) -> Any:
        ids = list(self._ccxt.exchanges)
        if exchange not in ids:
            close = difflib.get_close_matches(exchange, ids, n=5) or ids[:5]
            raise ConnectorError(
                f"ccxt connector: unknown exchange id {exchange!r}; did you mean one of {close}? "
                f"({len(ids)} ids in ccxt.exchanges, e.g. binance, bybit, okx, kraken, coinbase)"
            )
        return getattr(self._ccxt, exchange)({"enableRateLimit": True})

    def _load_only_kept_types(self) -> None:
        """Ask `load_markets` only for the kept market families, where the exchange lets one choose
        (`options["fetchMarkets"]["types"]`) and names them in a vocabulary known here."""
        options = getattr(self.client, "options", None)
        fetch_markets = options.get("fetchMarkets") if isinstance(options, dict) else None
        if not isinstance(fetch_markets, dict) or not isinstance(fetch_markets.get("types"), list):
            return
        loaded = fetch_markets["types"]
        wanted = []
        for market_type in self.market_types:
            names = [name for name in MARKET_FAMILIES[market_type] if name in loaded]
            if not names:
                return  # a family this exchange does not name: leave ccxt's default alone
            wanted += names
        fetch_markets["types"] = list(dict.fromkeys(wanted))

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        # OperationFailed is ccxt's "may succeed if retried" family: network errors, rate limits,
        # maintenance, and an exchange's own "internal error, try again" (Binance -1001).
        return with_retries(
            call,
            what=what,
            retryable=(self._ccxt.OperationFailed,),
            attempts=self.attempts,
            base_delay=self.base_delay,
            sleep=self.sleep,
        )

    def unified_symbol(self, ticker: str) -> str:
        """ccxt's symbol of a physical ticker: BTCUSDT -> BTC/USDT (spot), BTCUSDT.P -> the
        perpetual swap (TradingView's names, as `physical_symbol` writes them)."""
        market_id, kind = (ticker[:-2], "swap") if ticker.endswith(".P") else (ticker, "spot")
        self._call(self.client.load_markets, f"{self.exchange}: load_markets")
        found = [m["symbol"] for m in (self.client.markets_by_id or {}).get(market_id, []) if m.get("type") == kind]
        if not found:
            raise ConnectorError(f"{self.exchange}: no {kind} market with id {market_id!r} (from {ticker!r})")
        return found[0]

    # -- discovery -------------------------------------------------------------------------------

    def listings(self) -> list[Listing]:
        """Active `quote` markets of the kept types, most traded (24 h quote volume) first; markets
        whose volume the venue does not report come last, in the venue's order."""
        markets = self._call(self.client.load_markets, f"{self.exchange} markets")
        volumes = self._quote_volumes()
        listings: dict[str, Listing] = {}
        for market in markets.values():
            if market.get("active") is False or market.get("quote") != self.quote:
                continue
            if market.get("type") not in self.market_types:
                continue
            symbol = physical_symbol(self.exchange, market)
            try:
                validate_symbol(symbol, f"ccxt:{self.exchange}")
            except DataError as e:  # e.g. a base asset named in CJK characters: not addressable
                log.warning("skipping %s market %s: %s", self.exchange, market.get("symbol"), e)
                continue
            volume = volumes.get(market["symbol"])
            if volume is None and self.min_quote_volume > 0:
                continue
            if volume is not None and volume < self.min_quote_volume:
                continue
            listing = Listing(
                symbol=symbol,
                ticker=market["symbol"],
                exchange=self.exchange.upper(),
                asset_type=ASSET_TYPES[market["type"]],
                quote_volume=volume,
                metadata=self._metadata(market),
            )
            previous = listings.get(symbol)
            if previous is None or (volume or 0.0) > (previous.quote_volume or 0.0):
                listings[symbol] = listing
        # sorted() is stable: equal volumes, and markets without one, keep the venue's order
        ranked = sorted(listings.values(), key=lambda x: (x.quote_volume is None, -(x.quote_volume or 0.0)))
        return ranked if self.pool is None else ranked[: self.pool]

    def _quote_volumes(self) -> dict[str, float]:
        """24 h quote volume per unified symbol, one `fetch_tickers` per kept market type."""
        if not self.client.has.get("fetchTickers"):
            return {}
        volumes: dict[str, float] = {}
        for market_type in self.market_types:
            call = functools.partial(self.client.fetch_tickers, None, {"type": market_type})
            tickers = self._call(call, f"{self.exchange} {market_type} tickers")
            for symbol, ticker in tickers.items():
                value = ticker.get("quoteVolume")
                if value is None and ticker.get("baseVolume") is not None and ticker.get("last") is not None:
                    value = ticker["baseVolume"] * ticker["last"]  # some venues report base volume only
                if value is not None:
                    volumes[symbol] = float(value)
        return volumes

    def _metadata(self, market: dict) -> dict:
        """What the venue says about trading the market: ids, tick and lot size, minimum notional,
        the listing date when known."""
        out: dict[str, Any] = {
            "base": market.get("base"),
            "quote": market.get("quote"),
            "market_id": market.get("id"),
            "ccxt_type": market.get("type"),
        }
        if market.get("settle"):
            out["settle"] = market["settle"]
        precision = market.get("precision") or {}
        for key, name in (("price", "tick_size"), ("amount", "lot_size")):
            step = self._step(precision.get(key))
            if step is not None:
                out[name] = step
        min_cost = ((market.get("limits") or {}).get("cost") or {}).get("min")
        if min_cost is not None:
            out["min_notional"] = float(min_cost)
        if market.get("created"):
            out["listed"] = day_of(market["created"]).isoformat()
        return out

    def _step(self, value: Any) -> float | None:
        """A price or amount increment: ccxt reports it as the step itself (TICK_SIZE mode) or as a
        number of decimals (DECIMAL_PLACES mode); significant digits give no fixed step."""
        if value is None:
            return None
        mode = getattr(self.client, "precisionMode", self._ccxt.TICK_SIZE)
        if mode == self._ccxt.TICK_SIZE:
            return float(value)
        if mode == self._ccxt.DECIMAL_PLACES:
            return 10.0 ** -int(value)
        return None

    # -- bars ------------------------------------------------------------------------------------

    def bars(self, listing: Listing, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Daily candles with start <= day <= end, paged forward until a page is empty, shorter than
        asked, or reaches `end`."""
        if end < start:
            return empty_bars()
        limit = self._page_size(listing)
        stop = ms_of(end)
        since = ms_of(start)
        candles: list[list] = []
        while True:
            call = functools.partial(self.client.fetch_ohlcv, listing.ticker, "1d", since=since, limit=limit)
            page = self._call(call, f"{listing.symbol} ({listing.ticker}) daily bars from {day_of(since)}")
            fresh = [c for c in page or [] if c[0] >= since]  # a venue ignoring `since` must not loop
            if not fresh:
                break
            candles.extend(fresh)
            last = fresh[-1][0]
            if len(page) < limit or last >= stop:
                break
            since = last + DAY_MS
        return self._frame(candles, start, end)

    def _page_size(self, listing: Listing) -> int:
        """`page_limit`, capped at the venue's own page size (ccxt's `features`: 1000 candles on
        Binance, 300 on Coinbase and OKX): a page shorter than asked then really means the end."""
        features = getattr(self.client, "features", None) or {}
        kind = listing.metadata.get("ccxt_type", "spot")
        section = features.get(kind) or {}
        if kind == "swap":
            section = section.get("linear") or {}
        venue = (section.get("fetchOHLCV") or {}).get("limit")
        return min(self.page_limit, int(venue)) if venue else self.page_limit

    @staticmethod
    def _frame(candles: list[list], start: dt.date, end: dt.date) -> pl.DataFrame:
        if not candles:
            return empty_bars()
        columns = list(BAR_SCHEMA)
        rows = [(day_of(c[0]), *(None if v is None else float(v) for v in c[1:6])) for c in candles]
        frame = pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")
        return (
            frame.filter(pl.col("date").is_between(start, end))
            .unique(subset="date", keep="last", maintain_order=True)
            .sort("date")
            .select(columns)
        )
