"""Your own market data from a folder of CSV or Parquet files: the `files` source.

Two layouts, chosen by what the folder holds:

* one file per symbol, `<TICKER>.csv` or `<TICKER>.parquet`, columns `date, close` and optionally
  `open, high, low, volume`; the symbol is `<EXCHANGE>:<TICKER>`;
* one long table, `prices.csv` or `prices.parquet`, the same columns plus `symbol` (the physical
  `EXCHANGE:TICKER`, or a bare ticker that gets the folder's exchange).

An optional `symbols.csv` describes the instruments: `ticker, exchange, asset_type, sector` (any
subset after `ticker`); without it every ticker trades on the source's `exchange`.

Everything is checked when the folder is first read, and a problem is an error naming the file,
the row (1-based, header excluded) or date and the column: an unparseable date, a missing or
non-positive close, a duplicated date, dates out of order, a ticker that could escape the lakehouse
folder or break an atom id. Nothing is stored before the check passes. A symbol is listed from its
first close on (point in time: `discover(as_of)` never shows a symbol before its data starts).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from quant_assets.data.sources import Candidate, PriceSource
from quant_assets.data.validation import DataError, validate_symbol

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
LONG_TABLE = "prices"
ROW = "__row"  # a long table's row numbers, kept through the split by symbol for the error messages
METADATA_FILE = "symbols.csv"


@dataclass
class _Loaded:
    closes: pd.DataFrame  # dates x symbols
    first: dict[str, dt.date]
    reference: dict[str, tuple[str, str, str | None]]  # symbol -> (ticker, asset_type, sector)
    ohlcv: dict[str, pl.DataFrame] = field(default_factory=dict)  # symbol -> date, open, high, low, close, volume


def _read(path: Path) -> pl.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=0)  # every column as text: parsed and checked below
    except Exception as e:  # noqa: BLE001 - a file that cannot be read at all
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {str(e).splitlines()[0]}") from None


def _checked(frame: pl.DataFrame, path: Path, symbol: str) -> pl.DataFrame:
    """date (Date) + the price columns present (Float64), sorted check included; errors name the row."""
    columns = {c.lower().strip(): c for c in frame.columns}
    for required in ("date", "close"):
        if required not in columns:
            raise DataError(f"{path}: no `{required}` column (columns: {frame.columns})")
    numbers = frame[ROW].to_list() if ROW in frame.columns else None  # the file's rows (a long table's group)

    def row(i: int) -> int:
        return numbers[i] if numbers else i + 1

    out = frame.select(
        pl.col(columns["date"]).alias("date"), *[pl.col(columns[c]).alias(c) for c in PRICE_COLUMNS if c in columns]
    )
    if out.height == 0:
        raise DataError(f"{path}: no rows for {symbol}")
    if isinstance(out.schema["date"], pl.Datetime):  # Parquet written from pandas: timestamps at midnight
        out = out.with_columns(pl.col("date").dt.date())
    if out.schema["date"] != pl.Date:
        parsed = out["date"].cast(pl.Utf8).str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        bad = parsed.is_null() & out["date"].is_not_null() | out["date"].is_null()
        if bad.any():
            i = int(bad.arg_max() or 0)
            raise DataError(f"{path}: row {row(i)}, column date: {out['date'][i]!r} is not a date (YYYY-MM-DD)")
        out = out.with_columns(parsed.alias("date"))
    for c in [c for c in PRICE_COLUMNS if c in out.columns]:
        values = out[c].cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
        raw = out[c].cast(pl.Utf8)
        unparsed = values.is_null() & raw.is_not_null() & (raw.str.strip_chars() != "")
        if unparsed.any():
            i = int(unparsed.arg_max() or 0)
            raise DataError(f"{path}: row {row(i)} ({out['date'][i]}), column {c}: {raw[i]!r} is not a number")
        out = out.with_columns(values.alias(c))
    close = out["close"]
    if close.is_null().any():
        i = int(close.is_null().arg_max() or 0)
        raise DataError(f"{path}: row {row(i)} ({out['date'][i]}), column close: missing close for {symbol}")
    bad = ~(close.is_finite() & (close > 0))
    if bad.any():
        i = int(bad.arg_max() or 0)
        raise DataError(
            f"{path}: row {row(i)} ({out['date'][i]}), column close: {close[i]} for {symbol} is not a positive price"
        )
    dates = out["date"]
    dup = ~dates.is_first_distinct()  # the repeat, not the first occurrence
    if dup.any():
        i = int(dup.arg_max() or 0)
        raise DataError(f"{path}: row {row(i)}, column date: {dates[i]} appears more than once for {symbol}")
    step = dates.diff().dt.total_days()
    if (step < 0).any():
        i = int((step < 0).arg_max() or 0)
        raise DataError(
            f"{path}: row {row(i)}, column date: {dates[i]} comes after {dates[i - 1]} for {symbol}; "
            "dates must be ascending"
        )
    return out


class FilesSource(PriceSource):
    """Daily bars from a folder (see the module docstring for the layouts and the checks)."""

    def __init__(self, name: str, path: str | Path, exchange: str = "FILE", asset_type: str = "equity"):
        self.name, self.path, self.exchange, self.asset_type = name, Path(path), exchange, asset_type
        self._loaded: tuple[tuple, _Loaded] | None = None

    # ---- loading ---------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            raise DataError(f"source {self.name!r}: folder {self.path} does not exist")
        return sorted(p for p in self.path.iterdir() if p.suffix in (".csv", ".parquet") and p.name != METADATA_FILE)

    def _metadata(self) -> dict[str, dict]:
        path = self.path / METADATA_FILE
        if not path.exists():
            return {}
        frame = _read(path)
        if "ticker" not in frame.columns:
            raise DataError(f"{path}: no `ticker` column (columns: {frame.columns})")
        out = {}
        for i, row in enumerate(frame.iter_rows(named=True), start=1):
            ticker = str(row["ticker"]).strip()
            if ticker in out:
                raise DataError(f"{path}: row {i}, column ticker: {ticker!r} listed twice")
            out[ticker] = row
        return out

    def load(self) -> _Loaded:
        """The folder, read and checked once (again only when a file changes)."""
        files = self._files()
        meta_file = self.path / METADATA_FILE
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in [*files, meta_file] if p.exists())
        if self._loaded is not None and self._loaded[0] == stamp:
            return self._loaded[1]
        meta = self._metadata()
        per_symbol: dict[str, tuple[Path, pl.DataFrame]] = {}
        long = [p for p in files if p.stem == LONG_TABLE]
        if long:
            table = _read(long[0]).with_row_index(ROW, offset=1)
            symbol_col = next((c for c in table.columns if c.lower().strip() == "symbol"), None)
            if symbol_col is None:
                raise DataError(f"{long[0]}: a long table needs a `symbol` column (columns: {table.columns})")
            for (raw,), group in table.group_by(symbol_col, maintain_order=True):
                per_symbol[str(raw).strip()] = (long[0], group.drop(symbol_col))
        else:
            for p in files:
                if p.stem in per_symbol:
                    raise DataError(
                        f"{p}: {p.stem} is also read from {per_symbol[p.stem][0]}; keep one file per symbol"
                    )
                per_symbol[p.stem] = (p, _read(p))
        if not per_symbol:
            raise DataError(f"source {self.name!r}: no .csv or .parquet files in {self.path}")
        series, first, reference, ohlcv = {}, {}, {}, {}
        origin: dict[str, Path] = {}
        for raw, (path, frame) in per_symbol.items():
            ticker = raw.split(":", 1)[1] if ":" in raw else raw
            info = meta.get(ticker, {})
            exchange = raw.split(":", 1)[0] if ":" in raw else str(info.get("exchange") or self.exchange)
            symbol = validate_symbol(f"{exchange}:{ticker}", self.name)
            if symbol in origin:
                raise DataError(f"{path}: {symbol} is also read from {origin[symbol]}; keep one file per symbol")
            origin[symbol] = path
            bars = _checked(frame, path, symbol)
            ohlcv[symbol] = bars
            series[symbol] = pd.Series(
                bars["close"].to_numpy(), index=pd.DatetimeIndex(bars["date"].to_numpy()), name=symbol
            )
            first[symbol] = bars["date"][0]
            reference[symbol] = (ticker, str(info.get("asset_type") or self.asset_type), info.get("sector"))
        closes = pd.concat(series.values(), axis=1).sort_index() if series else pd.DataFrame()
        loaded = _Loaded(closes.astype("float64"), first, reference, ohlcv)
        self._loaded = (stamp, loaded)
        return loaded

    # ---- the PriceSource questions -----------------------------------------------------------

    def discover(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        data = self.load()
        by_ticker = {data.reference[s][0]: s for s in data.first}
        wanted = list(data.first) if symbols is None else [by_ticker.get(t, t) for t in symbols]
        unknown = [s for s in wanted if s not in data.first]
        if unknown:
            raise KeyError(f"source {self.name!r} has no symbols {unknown}; it has {sorted(by_ticker)}")
        out = []
        for symbol in wanted:
            if data.first[symbol] > as_of:
                continue  # no data yet: not listed as of this date
            ticker, asset_type, sector = data.reference[symbol]
            out.append(
                Candidate(
                    symbol=symbol,
                    ticker=ticker,
                    exchange=symbol.split(":", 1)[0],
                    asset_type=asset_type,
                    sector=sector,
                    first_date=data.first[symbol],
                    metadata={"source": self.name},
                )
            )
        return out

    def closes(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        data = self.load()
        missing = [s for s in symbols if s not in data.closes.columns]
        if missing:
            raise KeyError(f"source {self.name!r} has no prices for {missing}")
        return data.closes.loc[pd.Timestamp(start) : pd.Timestamp(end), list(symbols)]

    def bars(self, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """The files' bars; a column a file does not have (open, high, low, volume) is null."""
        data = self.load()
        missing = [s for s in symbols if s not in data.ohlcv]
        if missing:
            raise KeyError(f"source {self.name!r} has no prices for {missing}")
        frames = []
        for s in symbols:
            bars = data.ohlcv[s].filter(pl.col("date").is_between(start, end))
            frames.append(
                bars.select(
                    "date",
                    pl.lit(s).alias("symbol"),
                    *(
                        pl.col(c) if c in bars.columns else pl.lit(None, dtype=pl.Float64).alias(c)
                        for c in PRICE_COLUMNS
                    ),
                )
            )
        return pl.concat(frames) if frames else pl.DataFrame()


@functools.lru_cache(maxsize=64)
def files_source(name: str, path: str, exchange: str = "FILE", asset_type: str = "equity") -> FilesSource:
    """One FilesSource per configuration and process: the folder is read and checked once."""
    return FilesSource(name, path, exchange, asset_type)


def write_example_folder(path: str | Path, years: tuple[int, int] = (2015, 2022), tickers: int = 10) -> Path:
    """A folder of per-symbol CSV files cut from the bundled data (no data files in git): the
    example the `files.yaml` manifest reads. Idempotent."""
    from quant_assets.data.sources import SkfolioSP500Source

    source = SkfolioSP500Source()
    frame = source.frame().loc[f"{years[0]}-01-01" : f"{years[1]}-12-31"].iloc[:, :tickers]
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for ticker in frame.columns:
        series = frame[ticker].dropna()
        pl.DataFrame({"date": list(series.index.date), "close": np.round(series.to_numpy(), 6)}).write_csv(
            out / f"{ticker}.csv"
        )
    rows = [(t, *source.reference[t]) for t in frame.columns]
    pl.DataFrame(rows, schema=["ticker", "exchange", "asset_type", "sector"], orient="row").write_csv(
        out / METADATA_FILE
    )
    return out
