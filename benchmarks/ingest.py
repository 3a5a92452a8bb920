"""Ingest throughput: symbols x days per second.

* files: a folder of per-symbol CSV files with OHLCV read, checked (dates, prices, order) and
  turned into the source's panel by `FilesSource.load` (the `files` source of a manifest);
* store: a connector's incremental sync into the lakehouse (`ConnectorSource.sync`) from an
  in-process venue, first the whole range, then one new day (what a daily run asks).

    python -m benchmarks.ingest [--symbols 200] [--days 2520]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.data.connectors.base import BAR_SCHEMA, Connector, Listing
from quant_assets.data.connectors.store import ConnectorSource
from quant_assets.data.files import FilesSource


def synthetic_bars(symbols: int, days: int, seed: int = 0) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = [dt.date(2015, 1, 1) + dt.timedelta(days=i) for i in range(days)]
    out = {}
    for i in range(symbols):
        close = 50 * np.cumprod(1 + rng.normal(0, 0.02, days))
        out[f"S{i:04d}"] = pl.DataFrame(
            {
                "date": dates,
                "open": close,
                "high": close * 1.01,
                "low": close * 0.99,
                "close": close,
                "volume": rng.uniform(1e4, 1e6, days),
            },
            schema=BAR_SCHEMA,
        )
    return out


class MemoryVenue(Connector):
    kind = "memory"

    def __init__(self, bars: dict[str, pl.DataFrame]):
        self.data = bars

    def listings(self):
        return [Listing(f"BENCH:{t}", t, "BENCH", "spot") for t in self.data]

    def bars(self, listing, start, end):
        return self.data[listing.ticker].filter(pl.col("date").is_between(start, end))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--days", type=int, default=2520)
    a = ap.parse_args()
    bars = synthetic_bars(a.symbols, a.days)
    cells = a.symbols * a.days
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        for t, frame in bars.items():
            frame.write_csv(folder / f"{t}.csv")
        t0 = time.perf_counter()
        loaded = FilesSource("bench", folder).load()
        took = time.perf_counter() - t0
        assert loaded.closes.shape == (a.days, a.symbols)
        print(
            f"files: {a.symbols} symbols x {a.days} days of CSV OHLCV read and checked in {took:.2f} s "
            f"= {cells / took:,.0f} symbol-days/s"
        )

        last = max(f["date"].max() for f in bars.values())
        first = min(f["date"].min() for f in bars.values())
        now = dt.datetime.combine(last, dt.time(12), tzinfo=dt.UTC)
        venue = MemoryVenue(bars)
        source = ConnectorSource("bench", venue, Path(tmp) / "lh", clock=lambda: now)
        t0 = time.perf_counter()
        source.sync(first, last - dt.timedelta(days=1))
        took = time.perf_counter() - t0
        print(
            f"store, first sync: {a.symbols} symbols x {a.days - 1} days in {took:.2f} s "
            f"= {a.symbols * (a.days - 1) / took:,.0f} symbol-days/s"
        )
        later = now + dt.timedelta(days=1)
        source.clock = lambda: later
        t0 = time.perf_counter()
        report = source.sync(first, last)
        took = time.perf_counter() - t0
        print(
            f"store, next day: {report.counts()['bars']} bars for {a.symbols} symbols in {took:.2f} s "
            f"({took / a.symbols * 1000:.1f} ms per symbol; each rewrites its file)"
        )


if __name__ == "__main__":
    main()
