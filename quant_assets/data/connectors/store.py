"""The ingest store: a local copy of what a connector fetched, and the `ConnectorSource` over it.

A live vendor is slow, rate limited and sometimes down; a backtest must not depend on it. So a
connector's bars are fetched once into the lakehouse and every question the graph asks (which
symbols were listed on D, their closes and bars up to D) is answered from that copy:

    <lakehouse>/bars/<source>/<SYMBOL>.parquet        one file per symbol: date, open .. volume
    <lakehouse>/ingest_log/<source>/<ns>-<pid>.parquet one file per sync: a row per symbol
    <lakehouse>/listings/<source>/seen.parquet        every listing the venue ever showed

(the same `table/asset/partition.parquet` layout as every lakehouse table, so DuckDB sees `bars`,
`ingest_log` and `listings` as views).

**Incremental ("selective sync").** The log records, per symbol, the range of days the vendor has
answered (`covered_from` .. `covered_to`; a day inside it without a bar is a real absence, not a
question to ask again). A sync asks only for the days of the requested range outside that cover,
plus the last `overlap_days` stored days (vendors restate the latest bar after the close). Only
complete days are asked for: the day of the sync's clock is still trading. A symbol whose fetch
fails is logged `failed` with the error, its stored bars untouched, and the other symbols carry
on; its cover did not grow, so the next sync asks again (and logs `recovered`).

**Point in time.** Discovery on a rebalance date D lists a symbol only from its first stored bar
on, and (with `top_n`) ranks the listed symbols by their mean value traded (close x volume) over
the `adv_days` calendar days up to D, so a universe never knows on D which markets will be big later.
The venue's listing is a snapshot taken when the sync ran; the store keeps every listing it has
seen, so a market delisted later still has its history (no survivorship filter).

Every file is written to a temporary name and renamed into place: a killed sync leaves the
previous files whole.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from quant_assets.data.connectors.base import BAR_SCHEMA, Connector, Listing
from quant_assets.data.sources import Candidate, PriceSource
from quant_assets.data.validation import DataError, validate_symbol

BARS_TABLE, LOG_TABLE, LISTINGS_TABLE = "bars", "ingest_log", "listings"
BAR_COLUMNS = ["source", "symbol", *BAR_SCHEMA]
LOG_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.Utf8,
    "synced_at": pl.Datetime("us", "UTC"),
    "symbol": pl.Utf8,
    "status": pl.Utf8,  # ok | up_to_date | failed
    "recovered": pl.Boolean,  # ok after the previous sync of this symbol failed
    "requested_from": pl.Date,
    "requested_to": pl.Date,
    "fetched_from": pl.Date,  # first day asked of the vendor (null: nothing asked)
    "fetched_to": pl.Date,
    "bars": pl.Int64,  # bars received
    "covered_from": pl.Date,  # days the vendor has answered for this symbol, after this sync
    "covered_to": pl.Date,
    "error": pl.Utf8,
    "seconds": pl.Float64,
}
LISTING_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.Utf8,
    "symbol": pl.Utf8,
    "ticker": pl.Utf8,
    "exchange": pl.Utf8,
    "asset_type": pl.Utf8,
    "sector": pl.Utf8,
    "quote_volume": pl.Float64,
    "metadata": pl.Utf8,
    "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
    "rank": pl.Int64,  # order in the last snapshot that showed it (1 = most traded)
}


def _write_atomic(frame: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SyncReport:
    """What one sync did, for the step's metadata (the rows are also in `ingest_log`)."""

    source: str
    requested: tuple[dt.date, dt.date]
    log: pl.DataFrame
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {s: int((self.log["status"] == s).sum()) for s in ("ok", "up_to_date", "failed")} | {
            "recovered": int(self.log["recovered"].sum()),
            "bars": int(self.log["bars"].sum()),
        }

    def failures(self) -> dict[str, str]:
        failed = self.log.filter(pl.col("status") == "failed")
        return dict(zip(failed["symbol"].to_list(), failed["error"].to_list()))


@dataclass
class _Cache:
    stamp: tuple
    bars: dict[str, pl.DataFrame] = field(default_factory=dict)


class ConnectorSource(PriceSource):
    """A `PriceSource` answered from the ingest store of one connector (see the module docstring)."""

    def __init__(
        self,
        name: str,
        connector: Connector,
        root: str | Path,
        *,
        top_n: int | None = None,
        adv_days: int = 30,
        overlap_days: int = 1,
        history_start: dt.date | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ):
        self.name, self.connector, self.root = name, connector, Path(root)
        self.top_n, self.adv_days, self.overlap_days = top_n, adv_days, overlap_days
        self.history_start, self.clock = history_start, clock
        self._cache: _Cache | None = None

    # ---- files -------------------------------------------------------------------------------

    def _folder(self, table: str) -> Path:
        return self.root / table / self.name

    def _bars_path(self, symbol: str) -> Path:
        return self._folder(BARS_TABLE) / f"{validate_symbol(symbol, self.name)}.parquet"

    def listings(self) -> pl.DataFrame:
        path = self._folder(LISTINGS_TABLE) / "seen.parquet"
        return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LISTING_SCHEMA)

    def ingest_log(self) -> pl.DataFrame:
        files = sorted(self._folder(LOG_TABLE).glob("*.parquet"))
        if not files:
            return pl.DataFrame(schema=LOG_SCHEMA)
        return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")  # in sync order

    def cover(self) -> dict[str, tuple[dt.date, dt.date, str]]:
        """symbol -> (covered_from, covered_to, last status) from the log (the latest row per symbol)."""
        log = self.ingest_log()
        if log.height == 0:
            return {}
        last = log.group_by("symbol", maintain_order=True).last()
        return {r["symbol"]: (r["covered_from"], r["covered_to"], r["status"]) for r in last.iter_rows(named=True)}

    # ---- sync --------------------------------------------------------------------------------

    def _merge_listings(self, found: list[Listing], now: dt.datetime) -> pl.DataFrame:
        import json

        seen = self.listings()
        fresh = pl.DataFrame(
            [
                {
                    "source": self.name,
                    "symbol": validate_symbol(x.symbol, self.name),
                    "ticker": x.ticker,
                    "exchange": x.exchange,
                    "asset_type": x.asset_type,
                    "sector": x.sector,
                    "quote_volume": x.quote_volume,
                    "metadata": json.dumps(x.metadata, sort_keys=True, default=str),
                    "first_seen": now,
                    "last_seen": now,
                    "rank": i,
                }
                for i, x in enumerate(found, start=1)
            ],
            schema=LISTING_SCHEMA,
        )
        kept = seen.filter(~pl.col("symbol").is_in(fresh["symbol"].implode()))
        first = dict(zip(seen["symbol"].to_list(), seen["first_seen"].to_list()))
        fresh = fresh.with_columns(
            pl.col("symbol")
            .replace_strict(first, default=pl.col("first_seen"), return_dtype=LISTING_SCHEMA["first_seen"])
            .alias("first_seen")
        )
        merged = pl.concat([kept, fresh]).sort("symbol")
        _write_atomic(merged, self._folder(LISTINGS_TABLE) / "seen.parquet")
        return merged

    def _missing(self, symbol: str, start: dt.date, end: dt.date, cover) -> list[tuple[dt.date, dt.date]]:
        """The day ranges of [start, end] to ask the vendor for (see "Incremental" above)."""
        if start > end:
            return []
        if symbol not in cover or cover[symbol][0] is None:
            return [(start, end)]
        lo, hi, _ = cover[symbol]
        ranges = []
        if start < lo:
            ranges.append((start, min(end, lo - dt.timedelta(days=1))))
        if end > hi:
            one = dt.timedelta(days=1)
            restate_from = hi - (self.overlap_days - 1) * one if self.overlap_days else hi + one
            ranges.append((max(start, lo, restate_from), end))
        return ranges

    def sync(self, start: dt.date, end: dt.date, symbols: list[str] | None = None) -> SyncReport:
        """Bring the store up to date for [start, end] (complete days only): the venue's listing,
        then each symbol's missing days. Returns the report; the log rows are written as one file."""
        import time

        t0 = time.perf_counter()
        now = self.clock()
        last_complete = now.date() - dt.timedelta(days=1)
        end = min(end, last_complete)
        if self.history_start is not None:
            start = max(start, self.history_start)
        listed = self._merge_listings(self.connector.listings(), now)
        if symbols is not None:
            listed = listed.filter(pl.col("symbol").is_in(symbols))
        cover = self.cover()
        rows = []
        for row in listed.iter_rows(named=True):
            symbol = row["symbol"]
            listing = Listing(
                symbol, row["ticker"], row["exchange"], row["asset_type"], row["sector"], row["quote_volume"]
            )
            ranges = self._missing(symbol, start, end, cover)
            lo, hi, status = cover.get(symbol, (None, None, None))
            base = {
                "source": self.name,
                "synced_at": now,
                "symbol": symbol,
                "recovered": False,
                "requested_from": start,
                "requested_to": end,
                "fetched_from": ranges[0][0] if ranges else None,
                "fetched_to": ranges[-1][1] if ranges else None,
                "bars": 0,
                "covered_from": lo,
                "covered_to": hi,
                "error": None,
            }
            if not ranges:
                rows.append(base | {"status": "up_to_date", "seconds": 0.0})
                continue
            t = time.perf_counter()
            try:
                got = [self.connector.bars(listing, a, b) for a, b in ranges]
                fresh = pl.concat(got) if got else pl.DataFrame(schema=BAR_SCHEMA)
                self._store_bars(symbol, fresh)
            except Exception as e:  # noqa: BLE001 - one symbol's failure is logged; the others carry on
                message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                rows.append(base | {"status": "failed", "error": message[:500], "seconds": time.perf_counter() - t})
                continue
            new_lo = min([d for d in (lo, ranges[0][0]) if d is not None])
            new_hi = max([d for d in (hi, ranges[-1][1]) if d is not None])
            rows.append(
                base
                | {
                    "status": "ok",
                    "recovered": status == "failed",
                    "bars": fresh.height,
                    "covered_from": new_lo,
                    "covered_to": new_hi,
                    "seconds": time.perf_counter() - t,
                }
            )
        log = pl.DataFrame(rows, schema=LOG_SCHEMA)
        stamp = f"{time.time_ns()}-{os.getpid()}"  # file names sort in the order the syncs ran
        if log.height:
            _write_atomic(log, self._folder(LOG_TABLE) / f"{stamp}.parquet")
        return SyncReport(self.name, (start, end), log, time.perf_counter() - t0)

    def _store_bars(self, symbol: str, fresh: pl.DataFrame) -> None:
        """Upsert `fresh` into the symbol's file (a restated day replaces the stored one), checked first."""
        fresh = fresh.select(list(BAR_SCHEMA)).cast(BAR_SCHEMA)  # type: ignore[arg-type]
        bad = fresh.filter(~(pl.col("close").is_finite() & (pl.col("close") > 0)))
        if bad.height:
            raise DataError(
                f"source {self.name!r}: {symbol} on {bad['date'][0]}: close {bad['close'][0]} is not a positive price"
            )
        path = self._bars_path(symbol)
        stored = pl.read_parquet(path).select(list(BAR_SCHEMA)) if path.exists() else pl.DataFrame(schema=BAR_SCHEMA)
        merged = (
            pl.concat([stored.filter(~pl.col("date").is_in(fresh["date"].implode())), fresh])
            .unique("date", keep="last")
            .sort("date")
        )
        out = merged.with_columns(pl.lit(self.name).alias("source"), pl.lit(symbol).alias("symbol")).select(BAR_COLUMNS)
        _write_atomic(out, path)

    # ---- the PriceSource questions (answered from the store only) ----------------------------

    def stored_bars(self) -> dict[str, pl.DataFrame]:
        """Every stored symbol's bars (read again only when a file changed)."""
        folder = self._folder(BARS_TABLE)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if self._cache is None or self._cache.stamp != stamp:
            self._cache = _Cache(stamp, {p.stem: pl.read_parquet(p).select(list(BAR_SCHEMA)) for p in files})
        return self._cache.bars

    def _value_traded_rank(self, symbols: list[str], as_of: dt.date) -> list[str]:
        bars = self.stored_bars()
        since = as_of - dt.timedelta(days=self.adv_days)
        adv = {}
        for s in symbols:
            window = bars[s].filter((pl.col("date") > since) & (pl.col("date") <= as_of))
            value = (window["close"] * window["volume"]).mean() if window.height else None
            adv[s] = float(value) if value is not None and np.isfinite(value) else 0.0  # type: ignore[arg-type]
        return sorted(symbols, key=lambda s: (-adv[s], s))

    def listed(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        return self.discover(as_of, symbols, rank=False)

    def discover(self, as_of: dt.date, symbols: list[str] | None = None, rank: bool = True) -> list[Candidate]:
        import json

        listed = self.listings()
        bars = self.stored_bars()
        by_ticker = dict(zip(listed["ticker"].to_list(), listed["symbol"].to_list()))
        wanted = listed["symbol"].to_list() if symbols is None else [by_ticker.get(t, t) for t in symbols]
        unknown = [s for s in wanted if s not in set(listed["symbol"].to_list())]
        if unknown:
            raise KeyError(f"source {self.name!r} has no listings {unknown}; sync it first, or check the names")
        first = {s: bars[s]["date"].min() for s in wanted if s in bars and bars[s].height}
        live = [s for s in wanted if s in first and first[s] <= as_of]  # type: ignore[operator]
        if rank and self.top_n is not None:
            live = self._value_traded_rank(live, as_of)[: self.top_n]
        info = {r["symbol"]: r for r in listed.iter_rows(named=True)}
        out = []
        for s in sorted(live):
            r = info[s]
            out.append(
                Candidate(
                    symbol=s,
                    ticker=r["ticker"],
                    exchange=r["exchange"],
                    asset_type=r["asset_type"],
                    sector=r["sector"],
                    first_date=first[s],  # type: ignore[arg-type]
                    metadata={"source": self.name, **json.loads(r["metadata"] or "{}")},
                )
            )
        return out

    def bars(self, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Long (date, symbol, open, high, low, close, volume) rows with start <= date <= end."""
        stored = self.stored_bars()
        missing = [s for s in symbols if s not in stored]
        if missing:
            raise KeyError(f"source {self.name!r} has no stored bars for {missing}; sync it first")
        frames = [
            stored[s].filter(pl.col("date").is_between(start, end)).with_columns(pl.lit(s).alias("symbol"))
            for s in symbols
        ]
        return pl.concat(frames).select("date", "symbol", "open", "high", "low", "close", "volume")

    def closes(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        long = self.bars(symbols, start, end)
        wide = long.pivot(on="symbol", index="date", values="close").sort("date").to_pandas().set_index("date")
        wide.index = pd.DatetimeIndex(wide.index)
        return wide.reindex(columns=list(symbols)).astype("float64")
