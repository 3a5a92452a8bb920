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


def _lower(frame: pl.DataFrame) -> set[str]:
    return {c.lower().strip() for c in frame.columns}


def _read(path: Path) -> pl.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=0)  # every column as text: parsed and checked below
    except Exception as e:  # noqa: BLE001 - a file that cannot be read at all
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {str(e).splitlines()[0]}") from None


PART = "__part"  # which file (or long-table group) a row came from, while all are checked at once


def _normalised(frame: pl.DataFrame, path: Path, symbol: str, part: int) -> pl.DataFrame:
    """One file's rows in a shape every file shares, so all are checked in one pass: the part and
    row number, the date as text (`date_raw`), and each price column as a number when the file
    stored numbers (`<c>`) or as text to parse (`<c>_raw`)."""
    columns = {c.lower().strip(): c for c in frame.columns}
    for required in ("date", "close"):
        if required not in columns:
            raise DataError(f"{path}: no `{required}` column (columns: {frame.columns})")
    if frame.height == 0:
        raise DataError(f"{path}: no rows for {symbol}")
    date = pl.col(columns["date"])
    dtype = frame.schema[columns["date"]]
    if isinstance(dtype, pl.Datetime):  # Parquet written from pandas: timestamps at midnight
        date = date.dt.date()
    rows = pl.col(ROW) if ROW in frame.columns else pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
    out = [pl.lit(part, dtype=pl.Int32).alias(PART), rows.cast(pl.Int64).alias(ROW)]
    typed = dtype == pl.Date or isinstance(dtype, pl.Datetime)  # else text, parsed with the others
    out.append(date.cast(pl.Date).alias("date") if typed else pl.lit(None, dtype=pl.Date).alias("date"))
    out.append(date.cast(pl.Utf8).alias("date_raw"))
    for c in PRICE_COLUMNS:
        if c not in columns:
            continue
        values = pl.col(columns[c])
        if frame.schema[columns[c]].is_numeric():
            out.append(values.cast(pl.Float64).alias(c))
        else:
            out.append(values.cast(pl.Utf8).alias(f"{c}_raw"))
    return frame.select(out)


def _checked_all(parts: list[tuple[Path, str, pl.DataFrame]]) -> pl.DataFrame:
    """Every part's bars checked in one vectorised pass: (part, date, the price columns present),
    sorted as the files were. The first problem (in file and row order, by kind of check) is an
    error naming the file, the row (1-based, header excluded) or date and the column."""
    long = pl.concat([_normalised(f, p, s, i) for i, (p, s, f) in enumerate(parts)], how="diagonal_relaxed")

    def where(mask: pl.Expr) -> dict | None:
        hit = long.filter(mask)
        return hit.row(0, named=True) if hit.height else None

    def name(row: dict) -> tuple[Path, str]:
        path, symbol, _ = parts[row[PART]]
        return path, symbol

    parsed = pl.coalesce(pl.col("date"), pl.col("date_raw").str.strip_chars().str.to_date("%Y-%m-%d", strict=False))
    long = long.with_columns(parsed.alias("date"))
    if bad := where(pl.col("date").is_null()):
        path, _ = name(bad)
        raise DataError(f"{path}: row {bad[ROW]}, column date: {bad['date_raw']!r} is not a date (YYYY-MM-DD)")
    for c in PRICE_COLUMNS:
        raw = f"{c}_raw"
        if raw not in long.columns:
            continue
        number = pl.col(raw).str.strip_chars().cast(pl.Float64, strict=False)
        unparsed = number.is_null() & pl.col(raw).is_not_null() & (pl.col(raw).str.strip_chars() != "")
        if bad := where(unparsed):
            path, _ = name(bad)
            raise DataError(f"{path}: row {bad[ROW]} ({bad['date']}), column {c}: {bad[raw]!r} is not a number")
        long = long.with_columns((pl.coalesce(pl.col(c), number) if c in long.columns else number).alias(c))
    if bad := where(pl.col("close").is_null()):
        path, symbol = name(bad)
        raise DataError(f"{path}: row {bad[ROW]} ({bad['date']}), column close: missing close for {symbol}")
    if bad := where(~(pl.col("close").is_finite() & (pl.col("close") > 0))):
        path, symbol = name(bad)
        raise DataError(
            f"{path}: row {bad[ROW]} ({bad['date']}), column close: {bad['close']} for {symbol} is not a positive price"
        )
    if bad := where(~pl.col("date").is_first_distinct().over(PART)):
        path, symbol = name(bad)
        raise DataError(f"{path}: row {bad[ROW]}, column date: {bad['date']} appears more than once for {symbol}")
    long = long.with_columns(pl.col("date").shift(1).over(PART).alias("previous"))
    if bad := where(pl.col("date") < pl.col("previous")):
        path, symbol = name(bad)
        raise DataError(
            f"{path}: row {bad[ROW]}, column date: {bad['date']} comes after {bad['previous']} for {symbol}; "
            "dates must be ascending"
        )
    return long.select(PART, "date", *[c for c in PRICE_COLUMNS if c in long.columns])


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
        parts: list[tuple[Path, str, pl.DataFrame]] = []
        first, reference, ohlcv = {}, {}, {}
        origin: dict[str, Path] = {}
        for raw, (path, frame) in per_symbol.items():
            ticker = raw.split(":", 1)[1] if ":" in raw else raw
            info = meta.get(ticker, {})
            exchange = raw.split(":", 1)[0] if ":" in raw else str(info.get("exchange") or self.exchange)
            symbol = validate_symbol(f"{exchange}:{ticker}", self.name)
            if symbol in origin:
                raise DataError(f"{path}: {symbol} is also read from {origin[symbol]}; keep one file per symbol")
            origin[symbol] = path
            parts.append((path, symbol, frame))
            reference[symbol] = (ticker, str(info.get("asset_type") or self.asset_type), info.get("sector"))
        checked = _checked_all(parts)
        symbols = [s for _, s, _ in parts]
        for (part,), bars in checked.group_by(PART, maintain_order=True):
            symbol = symbols[int(part)]
            present = [c for c in PRICE_COLUMNS if c in _lower(parts[int(part)][2])]
            ohlcv[symbol] = bars.select("date", *present)
            first[symbol] = bars["date"][0]
        wide = (
            checked.with_columns(
                pl.col(PART).replace_strict(dict(enumerate(symbols)), return_dtype=pl.Utf8).alias("symbol")
            )
            .pivot(on="symbol", index="date", values="close")
            .sort("date")
        )
        closes = wide.to_pandas().set_index("date")
        closes.index = pd.DatetimeIndex(closes.index)
        closes = closes.reindex(columns=symbols)
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
