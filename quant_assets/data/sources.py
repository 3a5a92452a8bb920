"""Market-data sources: where candidates and prices come from.

A source answers two point-in-time questions: which symbols exist as of a date (`discover`) and
what their daily closes were up to a date (`closes`). The bundled sources read the real data
shipped inside skfolio, so the default graph runs offline. A live connector (ccxt, yfinance,
tradingview-screener, CSV/Parquet drops) implements the same two methods and registers a name in
`SOURCES`; the manifest then refers to it by that name.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
import polars as pl


@dataclass(frozen=True)
class Candidate:
    """Standard candidate record. `symbol` is the physical "EXCHANGE:TICKER"."""

    symbol: str
    ticker: str
    exchange: str
    asset_type: str
    sector: str | None
    first_date: dt.date
    direction: str = "LONG"
    metadata: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {
            "symbol": self.symbol,
            "ticker": self.ticker,
            "exchange": self.exchange,
            "asset_type": self.asset_type,
            "sector": self.sector,
            "first_date": self.first_date,
            "direction": self.direction,
            "metadata": json.dumps(self.metadata, sort_keys=True),
        }


class PriceSource(ABC):
    """Point-in-time access to one family of instruments."""

    name: str

    @abstractmethod
    def discover(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        """Candidates listed on or before `as_of` (optionally restricted to `symbols`, by ticker)."""

    def listed(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        """Every symbol with prices by `as_of`, before any ranking a source's `discover` applies
        (what a period's prices must cover: each of its dates may pick different members)."""
        return self.discover(as_of, symbols)

    @abstractmethod
    def closes(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Daily closes with start <= date <= end, wide (DatetimeIndex x physical symbol), NaN when absent."""

    def bars(self, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Long (date, symbol, open, high, low, close, volume) rows with start <= date <= end. A source
        of closes only (the bundled skfolio data) has null open, high, low and volume."""
        wide = self.closes(symbols, start, end)
        long = wide.rename_axis("date").reset_index().melt(id_vars="date", var_name="symbol", value_name="close")
        frame = pl.from_pandas(long.dropna()).with_columns(pl.col("date").cast(pl.Date))
        return frame.select(
            "date",
            "symbol",
            *(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("open", "high", "low")),
            "close",
            pl.lit(None, dtype=pl.Float64).alias("volume"),
        )


class _SkfolioFrameSource(PriceSource):
    """Adapter for a skfolio dataset: a wide frame of closes plus static reference data."""

    reference: dict[str, tuple[str, str, str | None]]  # ticker -> (exchange, asset_type, sector)

    @staticmethod
    @abstractmethod
    def _load() -> pd.DataFrame: ...

    def frame(self) -> pd.DataFrame:
        return _cached_frame(type(self))

    def _symbol(self, ticker: str) -> str:
        return f"{self.reference[ticker][0]}:{ticker}"

    def discover(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        frame = self.frame()
        tickers = list(frame.columns) if symbols is None else symbols
        unknown = [t for t in tickers if t not in frame.columns]
        if unknown:
            raise KeyError(f"source {self.name!r} has no symbols {unknown}; it has {list(frame.columns)}")
        listed = _first_dates(type(self))
        out = []
        for ticker in tickers:
            first = listed[ticker]
            if first is None or first.date() > as_of:
                continue  # not listed yet: invisible to a point-in-time discovery
            exchange, asset_type, sector = self.reference[ticker]
            out.append(
                Candidate(
                    symbol=self._symbol(ticker),
                    ticker=ticker,
                    exchange=exchange,
                    asset_type=asset_type,
                    sector=sector,
                    first_date=first.date(),
                    metadata={"source": self.name},
                )
            )
        return out

    def closes(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frame = self.frame()
        by_symbol = {self._symbol(t): t for t in frame.columns}
        missing = [s for s in symbols if s not in by_symbol]
        if missing:
            raise KeyError(f"source {self.name!r} has no prices for {missing}")
        window = frame.loc[pd.Timestamp(start) : pd.Timestamp(end), [by_symbol[s] for s in symbols]]
        window.columns = list(symbols)
        return window


@cache
def _first_dates(cls: type[_SkfolioFrameSource]) -> dict[str, pd.Timestamp | None]:
    """Each symbol's first close: when it became listed (the frame never changes within a process)."""
    frame = _cached_frame(cls)
    return {t: frame[t].first_valid_index() for t in frame.columns}


def skfolio_dataset(filename: str) -> pd.DataFrame:
    """One of the CSV files skfolio ships in `skfolio/datasets/data/`, read as its `load_*` functions
    read it (a date index, one column per ticker), without importing skfolio: `import skfolio` pulls
    in scikit-learn and takes 2-3 s, which every command and every UI step process would pay for a
    0.05 s read. A test checks the frames equal skfolio's loaders'."""
    spec = importlib.util.find_spec("skfolio")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the bundled data needs skfolio installed (`make env` installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / filename
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        frame = pd.read_csv(f, sep=",", index_col=0)
    frame.index = pd.to_datetime(frame.index, format="%Y-%m-%d")
    return frame


@cache
def _cached_frame(cls: type[_SkfolioFrameSource]) -> pd.DataFrame:
    frame = cls._load().astype("float64")
    frame.index = pd.DatetimeIndex(frame.index).astype("datetime64[ns]").normalize()
    return frame.sort_index()


class SkfolioSP500Source(_SkfolioFrameSource):
    """20 US large caps, daily adjusted closes 1990-01-02 .. 2022-12-28 (skfolio, BSD-3)."""

    name = "skfolio_sp500"
    reference = {
        "AAPL": ("NASDAQ", "equity", "Information Technology"),
        "AMD": ("NASDAQ", "equity", "Information Technology"),
        "BAC": ("NYSE", "equity", "Financials"),
        "BBY": ("NYSE", "equity", "Consumer Discretionary"),
        "CVX": ("NYSE", "equity", "Energy"),
        "GE": ("NYSE", "equity", "Industrials"),
        "HD": ("NYSE", "equity", "Consumer Discretionary"),
        "JNJ": ("NYSE", "equity", "Health Care"),
        "JPM": ("NYSE", "equity", "Financials"),
        "KO": ("NYSE", "equity", "Consumer Staples"),
        "LLY": ("NYSE", "equity", "Health Care"),
        "MRK": ("NYSE", "equity", "Health Care"),
        "MSFT": ("NASDAQ", "equity", "Information Technology"),
        "PEP": ("NASDAQ", "equity", "Consumer Staples"),
        "PFE": ("NYSE", "equity", "Health Care"),
        "PG": ("NYSE", "equity", "Consumer Staples"),
        "RRC": ("NYSE", "equity", "Energy"),
        "UNH": ("NYSE", "equity", "Health Care"),
        "WMT": ("NYSE", "equity", "Consumer Staples"),
        "XOM": ("NYSE", "equity", "Energy"),
    }

    @staticmethod
    def _load() -> pd.DataFrame:
        return skfolio_dataset("sp500_dataset.csv.gz")


class SkfolioFactorsSource(_SkfolioFrameSource):
    """Five iShares MSCI USA factor ETFs, daily closes 2014-01-02 .. 2022-12-28 (skfolio, BSD-3)."""

    name = "skfolio_factors"
    reference = {
        t: ("BATS", "etf", f"Factor: {s}")
        for t, s in {
            "MTUM": "momentum",
            "QUAL": "quality",
            "SIZE": "size",
            "USMV": "min volatility",
            "VLUE": "value",
        }.items()
    }

    @staticmethod
    def _load() -> pd.DataFrame:
        return skfolio_dataset("factors_dataset.csv.gz")


class SkfolioIndexSource(_SkfolioFrameSource):
    """The S&P 500 index level 1990-2022, a benchmark (not tradable)."""

    name = "skfolio_sp500_index"
    reference = {"SP500": ("INDEX", "index", None)}

    @staticmethod
    def _load() -> pd.DataFrame:
        return skfolio_dataset("sp500_index.csv.gz")


SOURCES: dict[str, type[PriceSource]] = {
    cls.name: cls for cls in (SkfolioSP500Source, SkfolioFactorsSource, SkfolioIndexSource)
}


def get_source(name: str) -> PriceSource:
    try:
        return SOURCES[name]()
    except KeyError:
        raise KeyError(f"unknown source {name!r}; registered: {sorted(SOURCES)}") from None
