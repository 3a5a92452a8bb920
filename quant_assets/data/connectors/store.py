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
plus the last `overlap_days` stored days (vendors restate the latest bar after the close); the
cover stays one range (a gap between two requested spans is fetched too). Only complete days are
asked for: the day of the sync's clock is still trading. A symbol whose fetch fails is logged
`failed` with the error, its stored bars untouched, and the other symbols carry on; its cover did
not grow, so the next sync asks again (and logs `recovered`). One sync of a source runs at a
time (a file lock), and its log is written every `LOG_EVERY` symbols.

**Point in time.** Discovery on a rebalance date D lists a symbol only from its first stored bar
on, and (with `top_n`) ranks the listed symbols by their mean value traded (close x volume) over
the `adv_days` days up to D, so the members of D never depend on what traded after D. The
*candidate pool* is another matter: a venue answers "what do you list now", so the pool is the
markets listed (and, with a connector's `pool` or minimum volume, most traded) when a sync ran.
A market that faded or was delisted before the first sync is not in it: a backtest over years
before the first sync carries that survivorship bias, smaller the wider the pool (`pool: null`,
no minimum volume). The store keeps every listing it has ever seen, so a market delisted after
a sync keeps its history, and re-running a range every listing already covers asks the venue
nothing at all (the same bars, no network).

**Rescaled history.** An adjusted series (Yahoo's closes after a split or a dividend) changes
all the way back. The overlap day asked again shows it: when its close differs from the stored
one, the whole cover is fetched again and replaces the file (`rescaled` in the log).

Every file is written to a temporary name and renamed into place: a killed sync leaves the
previous files whole.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from quant_assets.data.atomic import write_parquet_atomic
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
    "rescaled": pl.Boolean,  # the vendor had rescaled its history: the whole cover fetched again
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


LOG_EVERY = 25  # symbols per log file while a sync runs: a killed sync leaves the log of what it stored
RESCALE_TOLERANCE = 1e-6  # a re-fetched close further than this from the stored one: history rescaled


def _write_atomic(frame: pl.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(frame, target)


def rescaled_history(stored: pl.DataFrame, fresh: pl.DataFrame) -> bool:
    """Whether a day fetched again (the overlap) now has another close than the stored one
    (relative difference above RESCALE_TOLERANCE): an adjusted series after a split or a dividend
    is rescaled all the way back, and appending to the old scale would fake a jump."""
    both = stored.select("date", "close").join(fresh.select("date", pl.col("close").alias("again")), on="date")
    if both.height == 0:
        return False
    change = (both["again"] / both["close"] - 1).abs().max()
    return bool(change is not None and change > RESCALE_TOLERANCE)  # type: ignore[operator]


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
    """The store as discovery reads it, built once per change of the store."""

    stamp: tuple
    bars: dict[str, pl.DataFrame] = field(default_factory=dict)
    listings: pl.DataFrame = field(default_factory=pl.DataFrame)
    info: dict[str, dict] = field(default_factory=dict)  # symbol -> listing row
    first: dict[str, dt.date] = field(default_factory=dict)  # symbol -> first stored bar
    days: dict[str, np.ndarray] = field(default_factory=dict)  # symbol -> bar dates (datetime64[D])
    value: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # cumulative value traded, count


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
        """The day ranges to ask the vendor for so that the cover holds [start, end] and stays one
        contiguous range (a gap between two requested spans is fetched too: the log must never
        claim a day nobody asked for); see "Incremental" above."""
        if start > end:
            return []
        if symbol not in cover or cover[symbol][0] is None:
            return [(start, end)]
        lo, hi, _ = cover[symbol]
        one = dt.timedelta(days=1)
        ranges = []
        if start < lo:
            ranges.append((start, lo - one))
        if end > hi:
            restate_from = max(lo, hi - (self.overlap_days - 1) * one) if self.overlap_days else hi + one
            ranges.append((restate_from, end))
        return ranges

    @contextmanager
    def _locked(self):
        """One sync of a source at a time, across processes (two would each rewrite a symbol's file
        from what they read, and the later one would drop the other's days)."""
        import fcntl

        folder = self._folder(LISTINGS_TABLE)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".sync.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _covered(self, start: dt.date, end: dt.date, cover) -> bool:
        """Every listing already seen holds [start, end] in its cover: nothing to ask anyone."""
        seen = self.listings()["symbol"].to_list()
        return bool(seen) and all(
            s in cover and cover[s][0] is not None and cover[s][0] <= start and end <= cover[s][1] for s in seen
        )

    def sync(self, start: dt.date, end: dt.date, symbols: list[str] | None = None) -> SyncReport:
        """Bring the store up to date for [start, end] (complete days only): the venue's listing
        (skipped when every listing seen already covers the range, so re-running history needs no
        network), then each symbol's missing days. The log is written every `LOG_EVERY` symbols, so
        a killed sync leaves a log of what it stored."""

        t0 = time.perf_counter()
        now = self.clock()
        last_complete = now.date() - dt.timedelta(days=1)
        end = min(end, last_complete)
        if self.history_start is not None:
            start = max(start, self.history_start)
        with self._locked():
            cover = self.cover()
            if start <= end and self._covered(start, end, cover):
                listed = self.listings()
            else:
                listed = self._merge_listings(self.connector.listings(), now)
            if symbols is not None:
                listed = listed.filter(pl.col("symbol").is_in(symbols))
            rows: list[dict] = []
            written = 0
            for row in listed.iter_rows(named=True):
                rows.append(self._sync_symbol(row, start, end, cover, now))
                if len(rows) - written >= LOG_EVERY:
                    self._write_log(rows[written:])
                    written = len(rows)
            self._write_log(rows[written:])
            self._cache = None
        log = pl.DataFrame(rows, schema=LOG_SCHEMA)
        return SyncReport(self.name, (start, end), log, time.perf_counter() - t0)

    def _write_log(self, rows: list[dict]) -> None:
        if rows:
            stamp = f"{time.time_ns()}-{os.getpid()}"  # file names sort in the order the syncs ran
            _write_atomic(pl.DataFrame(rows, schema=LOG_SCHEMA), self._folder(LOG_TABLE) / f"{stamp}.parquet")

    def _sync_symbol(self, row: dict, start: dt.date, end: dt.date, cover, now: dt.datetime) -> dict:
        """Fetch one symbol's missing days and store them; its log row (failures included)."""
        import json

        symbol = row["symbol"]
        listing = Listing(
            symbol,
            row["ticker"],
            row["exchange"],
            row["asset_type"],
            row["sector"],
            row["quote_volume"],
            json.loads(row["metadata"] or "{}"),
        )
        ranges = self._missing(symbol, start, end, cover)
        lo, hi, status = cover.get(symbol, (None, None, None))
        base = {
            "source": self.name,
            "synced_at": now,
            "symbol": symbol,
            "recovered": False,
            "rescaled": False,
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
            return base | {"status": "up_to_date", "seconds": 0.0}
        t = time.perf_counter()
        new_lo = min(d for d in (lo, ranges[0][0]) if d is not None)
        new_hi = max(d for d in (hi, ranges[-1][1]) if d is not None)
        try:
            fresh = pl.concat([self.connector.bars(listing, a, b) for a, b in ranges])
            path = self._bars_path(symbol)
            stored = (
                pl.read_parquet(path).select(list(BAR_SCHEMA)) if path.exists() else pl.DataFrame(schema=BAR_SCHEMA)
            )
            rescaled = rescaled_history(stored, fresh)
            if rescaled:  # the vendor rescaled its history (adjusted closes after a split or dividend)
                fresh = self.connector.bars(listing, new_lo, new_hi)
            self._store_bars(symbol, fresh, pl.DataFrame(schema=BAR_SCHEMA) if rescaled else stored)
        except Exception as e:  # noqa: BLE001 - one symbol's failure is logged; the others carry on
            message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return base | {"status": "failed", "error": message[:500], "seconds": time.perf_counter() - t}
        return base | {
            "status": "ok",
            "recovered": status == "failed",
            "rescaled": rescaled,
            "fetched_from": new_lo if rescaled else base["fetched_from"],
            "bars": fresh.height,
            "covered_from": new_lo,
            "covered_to": new_hi,
            "seconds": time.perf_counter() - t,
        }

    def _store_bars(self, symbol: str, fresh: pl.DataFrame, stored: pl.DataFrame) -> None:
        """Upsert `fresh` into the symbol's `stored` bars (a restated day replaces the stored one)
        and write the file, `fresh` checked before anything is written."""
        fresh = fresh.select(list(BAR_SCHEMA)).cast(BAR_SCHEMA)  # type: ignore[arg-type]
        bad = fresh.filter((~(pl.col("close").is_finite() & (pl.col("close") > 0))).fill_null(True))
        if bad.height:
            raise DataError(
                f"source {self.name!r}: {symbol} on {bad['date'][0]}: close {bad['close'][0]} is not a positive price"
            )
        merged = (
            pl.concat([stored.filter(~pl.col("date").is_in(fresh["date"].implode())), fresh])
            .unique("date", keep="last")
            .sort("date")
        )
        out = merged.with_columns(pl.lit(self.name).alias("source"), pl.lit(symbol).alias("symbol")).select(BAR_COLUMNS)
        _write_atomic(out, self._bars_path(symbol))

    # ---- the PriceSource questions (answered from the store only) ----------------------------

    def _state(self) -> _Cache:
        """The cached store, rebuilt when a sync (of any process) replaced a file: a replace renames
        into the folder, which moves the folder's modification time (one stat per question)."""

        def mtime(path: Path) -> int:
            return path.stat().st_mtime_ns if path.exists() else 0

        stamp = (mtime(self._folder(BARS_TABLE)), mtime(self._folder(LISTINGS_TABLE) / "seen.parquet"))
        if self._cache is not None and self._cache.stamp == stamp:
            return self._cache
        folder = self._folder(BARS_TABLE)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        cache = _Cache(stamp, {p.stem: pl.read_parquet(p).select(list(BAR_SCHEMA)) for p in files})
        cache.listings = self.listings()
        cache.info = {r["symbol"]: r for r in cache.listings.iter_rows(named=True)}
        for s, frame in cache.bars.items():
            if frame.height == 0:
                continue
            cache.first[s] = frame["date"][0]
            cache.days[s] = frame["date"].to_numpy().astype("datetime64[D]")
            traded = (frame["close"] * frame["volume"]).to_numpy().astype(float)
            known = np.isfinite(traded)
            cache.value[s] = (
                np.concatenate([[0.0], np.cumsum(np.where(known, traded, 0.0))]),
                np.concatenate([[0], np.cumsum(known)]),
            )
        self._cache = cache
        return cache

    def stored_bars(self) -> dict[str, pl.DataFrame]:
        """Every stored symbol's bars."""
        return self._state().bars

    def _value_traded_rank(self, state: _Cache, symbols: list[str], as_of: dt.date) -> list[str]:
        """`symbols`, most traded first: mean close x volume over the days in (as_of - adv_days, as_of]."""
        since, until = np.datetime64(as_of - dt.timedelta(days=self.adv_days), "D"), np.datetime64(as_of, "D")
        adv = {}
        for s in symbols:
            days, (total, count) = state.days[s], state.value[s]
            lo, hi = np.searchsorted(days, since, side="right"), np.searchsorted(days, until, side="right")
            n = count[hi] - count[lo]
            adv[s] = (total[hi] - total[lo]) / n if n else 0.0
        return sorted(symbols, key=lambda s: (-adv[s], s))

    def listed(self, as_of: dt.date, symbols: list[str] | None = None) -> list[Candidate]:
        return self.discover(as_of, symbols, rank=False)

    def discover(self, as_of: dt.date, symbols: list[str] | None = None, rank: bool = True) -> list[Candidate]:
        """Listed symbols with a first stored bar on or before `as_of`; with `top_n` (and `rank`),
        the `top_n` most traded up to `as_of`."""
        import json

        state = self._state()
        if symbols is None:
            wanted = list(state.info)
        else:
            by_ticker = {r["ticker"]: s for s, r in state.info.items()}
            wanted = [by_ticker.get(t, t) for t in symbols]
            unknown = [s for s in wanted if s not in state.info]
            if unknown:
                raise KeyError(f"source {self.name!r} has no listings {unknown}; sync it first, or check the names")
        live = [s for s in wanted if s in state.first and state.first[s] <= as_of]
        if rank and self.top_n is not None:
            live = self._value_traded_rank(state, live, as_of)[: self.top_n]
        out = []
        for s in sorted(live):
            r = state.info[s]
            out.append(
                Candidate(
                    symbol=s,
                    ticker=r["ticker"],
                    exchange=r["exchange"],
                    asset_type=r["asset_type"],
                    sector=r["sector"],
                    first_date=state.first[s],
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
