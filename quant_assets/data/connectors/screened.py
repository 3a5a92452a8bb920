"""A universe discovered by one vendor and priced by another.

A screener (TradingView) knows which instruments pass today's filters but has no price history;
a price vendor (Yahoo through yfinance, an exchange through ccxt) has the history but no screen.
`Screened` asks the first for listings and the second for bars, translating the screener's
`EXCHANGE:TICKER` into the price vendor's own id:

* Yahoo: US venues keep the ticker with a share class dot as a dash (`NYSE:BRK.B` -> `BRK-B`);
  other venues get Yahoo's suffix (`LSE:VOD` -> `VOD.L`, `TSE:7203` -> `7203.T`); a venue with no
  known suffix is an error naming the symbol (add it to `YAHOO_SUFFIX`);
* an exchange through ccxt: the market id after the colon (`BINANCE:BTCUSDT` -> `BTC/USDT`,
  looked up in the exchange's markets).

The stored symbol stays the screener's, so the universe's names are those its users screened.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from quant_assets.data.connectors.base import Connector, ConnectorError, Listing

US_VENUES = {"NASDAQ", "NYSE", "AMEX", "NYSEARCA", "NYSE ARCA", "ARCA", "BATS", "CBOE", "OTC"}
YAHOO_SUFFIX = {
    "LSE": ".L",
    "TSE": ".T",
    "TSX": ".TO",
    "ASX": ".AX",
    "HKEX": ".HK",
    "XETR": ".DE",
    "FWB": ".F",
    "EURONEXT": ".PA",
    "SIX": ".SW",
    "NSE": ".NS",
    "BSE": ".BO",
    "KRX": ".KS",
    "SSE": ".SS",
    "SZSE": ".SZ",
    "BME": ".MC",
    "MIL": ".MI",
    "OMXSTO": ".ST",
}


def yahoo_ticker(symbol: str) -> str:
    """The Yahoo ticker of a screener's `EXCHANGE:TICKER` (see the module docstring)."""
    exchange, _, ticker = symbol.partition(":")
    if exchange.upper() in US_VENUES:
        return ticker.replace(".", "-")
    suffix = YAHOO_SUFFIX.get(exchange.upper())
    if suffix is None:
        raise ConnectorError(
            f"{symbol}: no Yahoo suffix known for venue {exchange!r}; add it to "
            "quant_assets.data.connectors.screened.YAHOO_SUFFIX"
        )
    return ticker + suffix


class Screened(Connector):
    """Listings from `screener`, bars from `prices` (see the module docstring)."""

    def __init__(self, screener: Connector, prices: Connector):
        self.screener, self.prices = screener, prices
        self.kind = f"{screener.kind}+{prices.kind}"

    def listings(self) -> list[Listing]:
        return self.screener.listings()

    def vendor_ticker(self, listing: Listing) -> str:
        if self.prices.kind == "yfinance":
            return yahoo_ticker(listing.symbol)
        if self.prices.kind == "ccxt":
            return self.prices.unified_symbol(listing.symbol.partition(":")[2])  # type: ignore[attr-defined]
        raise ConnectorError(f"no ticker translation from {self.screener.kind} to {self.prices.kind}")

    def bars(self, listing: Listing, start: dt.date, end: dt.date) -> pl.DataFrame:
        vendor = Listing(listing.symbol, self.vendor_ticker(listing), listing.exchange, listing.asset_type)
        return self.prices.bars(vendor, start, end)
