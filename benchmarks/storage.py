"""Why the lakehouse stores one Parquet file per (asset, partition) instead of one DuckDB database.

Question: Dagster's multiprocess executor materialises several partitions at the same time. Does a
"Parquet file per partition, written to a temp file then ``os.replace``d" layout
(``quant_assets.storage.lakehouse.Lakehouse``) cost us anything against a single DuckDB database file
written with delete-then-insert per partition (what dagster-duckdb's IO manager does), and what does
the DuckDB file cost once two processes write at once (DuckDB allows one read-write process; a
second one gets ``IOException: Could not set lock on file``)?

Everything is measured in one run on a temporary directory, so the ratios are comparable:

1. sequential writes: N partitions through ``Lakehouse.write_partition`` vs N delete-then-insert
   transactions into one DuckDB table (one long-lived connection, the DuckDB best case, and one
   connection per write, as the IO manager opens them);
2. idempotency: 10 partitions rewritten twice in each design, the row count must not grow;
3. concurrency: two spawned processes each writing N/2 different partitions at the same time:
   Parquet; DuckDB with a connection per write and no retry (lock errors counted); DuckDB with
   retry/backoff (0.05 s sleep, up to 200 tries) to show the cost of serialised writers;
4. reads: a trailing window of 52 partitions, and a cross-partition SQL aggregate;
5. bytes on disk.

The data is a ``meta_returns`` table (a daily long table keyed by ``rebalance_date``, the shape the
old per-date price snapshots had): 20 children x (R/20) days of returns built once with a fixed
numpy seed; only ``rebalance_date`` changes between partitions.

Run (from the repository root)::

    .venv/bin/python benchmarks/storage.py                  # N=200 partitions, R=10000 rows each
    .venv/bin/python benchmarks/storage.py --partitions 40 --rows 2000

The results table is printed and written to ``benchmarks/results/storage.md`` (gitignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from quant_assets.storage.lakehouse import _CACHE, Lakehouse  # noqa: E402
from quant_assets.storage.schemas import TABLES  # noqa: E402

TABLE = "meta_returns"
ASSET = "bench_meta_returns"
META, RISK = "bench", "hrp"
N_SYMBOLS = 20
SEED = 20240101
FIRST_REBALANCE = dt.date(2016, 1, 8)  # a Friday; partitions are weekly
WINDOW = 52  # trailing partitions read back
IDEMPOTENT_PARTITIONS = 10
RETRY_SLEEP_S = 0.05
RETRY_MAX_TRIES = 200
READ_REPEATS = 5
LOCK_MESSAGE = "Could not set lock"

DUCKDB_DDL = (
    "CREATE TABLE IF NOT EXISTS meta_returns "
    "(rebalance_date DATE, meta VARCHAR, risk VARCHAR, date DATE, child VARCHAR, ret DOUBLE)"
)
AGG_SQL = "SELECT child, avg(ret) AS avg_ret FROM meta_returns GROUP BY child"
WINDOW_SQL = "SELECT * FROM meta_returns WHERE rebalance_date BETWEEN ? AND ?"


# ---- data ------------------------------------------------------------------------------------


def make_base(rows: int) -> pl.DataFrame:
    """A ``meta_returns`` partition of ``rows`` rows (20 children x business days), rebalance_date unset."""
    n_days = -(-rows // N_SYMBOLS)
    days = np.busday_offset(np.datetime64("2014-01-01"), np.arange(n_days), roll="forward")
    rng = np.random.default_rng(SEED)
    log_ret = rng.normal(0.0003, 0.015, size=(N_SYMBOLS, n_days))
    ret = np.expm1(log_ret)
    children = [f"child{i:02d}" for i in range(N_SYMBOLS)]
    frame = pl.DataFrame(
        {
            "rebalance_date": pl.Series([None] * (N_SYMBOLS * n_days), dtype=pl.Date),
            "meta": [META] * (N_SYMBOLS * n_days),
            "risk": [RISK] * (N_SYMBOLS * n_days),
            "date": np.tile(days, N_SYMBOLS).astype("datetime64[D]"),
            "child": np.repeat(children, n_days),
            "ret": ret.ravel(),
        }
    ).head(rows)
    return frame.select([pl.col(c).cast(t) for c, t in TABLES[TABLE].schema.items()])


def rebalance_dates(n: int) -> list[dt.date]:
    return [FIRST_REBALANCE + dt.timedelta(weeks=i) for i in range(n)]


def partition(base: pl.DataFrame, date: dt.date) -> pl.DataFrame:
    return base.with_columns(pl.lit(date, dtype=pl.Date).alias("rebalance_date"))


# ---- DuckDB-file design ----------------------------------------------------------------------


def duck_write(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """Delete-then-insert one partition in one transaction (the dagster-duckdb IO manager way)."""
    date = frame["rebalance_date"][0]
    con.register("df", frame.to_arrow())
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        con.execute("DELETE FROM meta_returns WHERE rebalance_date = ?", [date]).fetchall()
        con.execute("INSERT INTO meta_returns SELECT * FROM df").fetchall()
        con.execute("COMMIT").fetchall()
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    finally:
        con.unregister("df")


def duck_create(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(DUCKDB_DDL).fetchall()
    finally:
        con.close()


def duck_count(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM meta_returns").fetchall()[0][0]
    finally:
        con.close()


def lake_count(lh: Lakehouse) -> int:
    return int(lh.sql("SELECT count(*) AS n FROM meta_returns")["n"][0])


# ---- concurrency worker (top level: importable by "spawn" children) -------------------------


def _writer(design: str, target: str, dates: list[dt.date], rows: int, barrier, queue) -> None:
    base = make_base(rows)
    frames = [partition(base, d) for d in dates]  # built before the start line, as in section 1
    lh = Lakehouse(target)
    ok = lock_errors = other_errors = gave_up = 0
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    for frame in frames:
        if design == "parquet":
            try:
                lh.write_partition(TABLE, ASSET, frame["rebalance_date"][0], frame)
                ok += 1
            except Exception:
                other_errors += 1
            continue
        retry = design == "duckdb_retry"
        tries = 0
        while True:
            tries += 1
            try:
                con = duckdb.connect(target)
            except duckdb.IOException as exc:
                if LOCK_MESSAGE not in str(exc):
                    other_errors += 1
                    break
                lock_errors += 1
                if retry and tries < RETRY_MAX_TRIES:
                    time.sleep(RETRY_SLEEP_S)
                    continue
                gave_up += 1
                break
            try:
                duck_write(con, frame)
                ok += 1
            except Exception:
                other_errors += 1
            finally:
                con.close()
            break
    t1 = time.perf_counter()
    queue.put(
        {
            "pid": os.getpid(),
            "ok": ok,
            "lock_errors": lock_errors,
            "gave_up": gave_up,
            "other_errors": other_errors,
            "seconds": t1 - t0,
        }
    )


def run_concurrent(design: str, target: Path, dates: list[dt.date], rows: int) -> dict:
    """Two spawned processes write alternate partitions; the clock starts when both are ready."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    queue = ctx.Queue()
    shares = [dates[0::2], dates[1::2]]
    procs = [ctx.Process(target=_writer, args=(design, str(target), share, rows, barrier, queue)) for share in shares]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    t0 = time.perf_counter()
    results = [queue.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"{design} writer pid {p.pid} exited with {p.exitcode}")
    return {
        "wall": wall,
        "ok": sum(r["ok"] for r in results),
        "attempted": len(dates),
        "lock_errors": sum(r["lock_errors"] for r in results),
        "gave_up": sum(r["gave_up"] for r in results),
        "other_errors": sum(r["other_errors"] for r in results),
    }


# ---- helpers -----------------------------------------------------------------------------------


def timed_median(fn, repeats: int = READ_REPEATS):
    fn()  # warm-up: both designs read from the OS page cache afterwards
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def disk_bytes(*paths: Path) -> int:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total


def markdown(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows + [("design", "metric", "value")]) for i in range(3)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [line(("design", "metric", "value")), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=200, help="partitions N (default 200)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per partition R (default 10000)")
    args = parser.parse_args()
    n, rows = args.partitions, args.rows
    if n < 2 or rows < N_SYMBOLS:
        parser.error(f"need --partitions >= 2 and --rows >= {N_SYMBOLS}")

    t_script = time.perf_counter()
    res: list[tuple[str, str, str]] = []
    add = lambda design, metric, value: res.append((design, metric, value))  # noqa: E731
    pq, ddb, ddb_pw = "parquet-per-partition", "duckdb-file", "duckdb-file (conn/write)"

    base = make_base(rows)
    dates = rebalance_dates(n)
    frames = [partition(base, d) for d in dates]
    print(f"storage benchmark: N={n} partitions x R={base.height} rows, cpu_count={os.cpu_count()}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="qa_storage_bench_"))
    try:
        lh = Lakehouse(tmp / "lakehouse")
        db = tmp / "single.duckdb"
        db_pw = tmp / "per_write.duckdb"

        # 1. sequential writes ---------------------------------------------------------------
        t0 = time.perf_counter()
        for d, f in zip(dates, frames):
            lh.write_partition(TABLE, ASSET, d, f)
        s_pq = time.perf_counter() - t0

        duck_create(db)
        t0 = time.perf_counter()
        con = duckdb.connect(str(db))
        for f in frames:
            duck_write(con, f)
        con.close()
        s_ddb = time.perf_counter() - t0

        duck_create(db_pw)
        t0 = time.perf_counter()
        for f in frames:
            con = duckdb.connect(str(db_pw))
            duck_write(con, f)
            con.close()
        s_ddb_pw = time.perf_counter() - t0

        add(pq, "sequential write (partitions/s)", f"{n / s_pq:.1f}")
        add(ddb, "sequential write (partitions/s)", f"{n / s_ddb:.1f}")
        add(ddb_pw, "sequential write (partitions/s)", f"{n / s_ddb_pw:.1f}")
        print(f"1. sequential: parquet {s_pq:.2f}s, duckdb {s_ddb:.2f}s, duckdb conn/write {s_ddb_pw:.2f}s", flush=True)

        # 2. idempotency ---------------------------------------------------------------------
        expected = n * base.height
        again = list(zip(dates, frames))[:IDEMPOTENT_PARTITIONS]
        before_pq, before_ddb = lake_count(lh), duck_count(db)
        for _ in range(2):
            for d, f in again:
                lh.write_partition(TABLE, ASSET, d, f)
        con = duckdb.connect(str(db))
        for _ in range(2):
            for _d, f in again:
                duck_write(con, f)
        con.close()
        after_pq, after_ddb = lake_count(lh), duck_count(db)
        assert before_pq == after_pq == expected, (before_pq, after_pq, expected)
        assert before_ddb == after_ddb == expected, (before_ddb, after_ddb, expected)
        k = len(again)
        add(pq, f"rows after rewriting {k} partitions x2", f"{after_pq} (before {before_pq}) ok")
        add(ddb, f"rows after rewriting {k} partitions x2", f"{after_ddb} (before {before_ddb}) ok")
        print(f"2. idempotency: parquet {before_pq} -> {after_pq}, duckdb {before_ddb} -> {after_ddb}", flush=True)

        # 3. concurrency ---------------------------------------------------------------------
        c_pq = run_concurrent("parquet", tmp / "conc_lakehouse", dates, rows)
        written = len(Lakehouse(tmp / "conc_lakehouse").partitions(TABLE, ASSET))
        add(pq, "2 procs x N/2 writes: wall (s)", f"{c_pq['wall']:.2f}")
        add(
            pq,
            "2 procs x N/2 writes: errors",
            f"{c_pq['other_errors'] + c_pq['lock_errors']} ({c_pq['ok']}/{c_pq['attempted']} written, {written} files)",
        )
        print(f"3a. parquet concurrent: {c_pq}", flush=True)

        db_c = tmp / "conc_noretry.duckdb"
        duck_create(db_c)
        c_nr = run_concurrent("duckdb_noretry", db_c, dates, rows)
        add(ddb, "2 procs, no retry: wall (s)", f"{c_nr['wall']:.2f}")
        add(
            ddb,
            "2 procs, no retry: lock errors",
            f"{c_nr['lock_errors']} ({c_nr['ok']}/{c_nr['attempted']} written, other errors {c_nr['other_errors']})",
        )
        print(f"3b. duckdb concurrent, no retry: {c_nr}", flush=True)

        db_r = tmp / "conc_retry.duckdb"
        duck_create(db_r)
        c_r = run_concurrent("duckdb_retry", db_r, dates, rows)
        add(ddb, f"2 procs, retry {RETRY_SLEEP_S}s x<={RETRY_MAX_TRIES}: wall (s)", f"{c_r['wall']:.2f}")
        add(
            ddb,
            "2 procs, retry: lock collisions",
            f"{c_r['lock_errors']} ({c_r['ok']}/{c_r['attempted']} written, gave up {c_r['gave_up']})",
        )
        print(f"3c. duckdb concurrent, retry: {c_r}", flush=True)

        # 4. reads ---------------------------------------------------------------------------
        w = min(WINDOW, n)
        start, end = dates[-w], dates[-1]

        def duck_window() -> pl.DataFrame:
            con = duckdb.connect(str(db), read_only=True)
            try:
                return con.sql(WINDOW_SQL, params=[start, end]).pl()
            finally:
                con.close()

        def duck_agg() -> pl.DataFrame:
            con = duckdb.connect(str(db), read_only=True)
            try:
                return con.sql(AGG_SQL).pl()
            finally:
                con.close()

        window_keys = [k for k in lh.partitions(TABLE, ASSET) if start.isoformat() <= k <= end.isoformat()]

        def parquet_window() -> pl.DataFrame:
            _CACHE.clear()  # decoded from the files, as DuckDB reads its file (not the frames this process wrote)
            return lh.read(TABLE, ASSET, window_keys)

        r_pq, win_pq = timed_median(parquet_window)
        r_ddb, win_ddb = timed_median(duck_window)
        assert win_pq.height == win_ddb.height == w * base.height, (win_pq.height, win_ddb.height)
        a_pq, agg_pq = timed_median(lambda: lh.sql(AGG_SQL))
        a_ddb, agg_ddb = timed_median(duck_agg)
        joined = agg_pq.join(agg_ddb, on="child", suffix="_ddb")
        assert joined.height == N_SYMBOLS
        assert np.allclose(joined["avg_ret"].to_numpy(), joined["avg_ret_ddb"].to_numpy())
        add(pq, f"read {w}-partition window (ms, median of {READ_REPEATS})", f"{r_pq * 1e3:.1f}")
        add(ddb, f"read {w}-partition window (ms, median of {READ_REPEATS})", f"{r_ddb * 1e3:.1f}")
        add(pq, f"SQL GROUP BY child, all partitions (ms, median of {READ_REPEATS})", f"{a_pq * 1e3:.1f}")
        add(ddb, f"SQL GROUP BY child, all partitions (ms, median of {READ_REPEATS})", f"{a_ddb * 1e3:.1f}")
        print(
            f"4. reads: window parquet {r_pq * 1e3:.1f}ms / duckdb {r_ddb * 1e3:.1f}ms; "
            f"agg parquet {a_pq * 1e3:.1f}ms / duckdb {a_ddb * 1e3:.1f}ms",
            flush=True,
        )

        # 5. storage -------------------------------------------------------------------------
        b_pq = disk_bytes(tmp / "lakehouse")
        b_ddb = disk_bytes(db, Path(f"{db}.wal"))
        add(pq, f"on disk, {n} partitions (MB)", f"{b_pq / 1e6:.1f}")
        add(ddb, f"on disk, {n} partitions (MB)", f"{b_ddb / 1e6:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    total = time.perf_counter() - t_script
    table = markdown(res)
    header = (
        f"Storage benchmark: N={n} partitions x R={base.height} rows, os.cpu_count()={os.cpu_count()}, "
        f"Python {platform.python_version()}, polars {pl.__version__}, duckdb {duckdb.__version__}, "
        f"total {total:.1f} s"
    )
    print()
    print(header)
    print()
    print(table)
    out = Path(__file__).resolve().parent / "results" / "storage.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{header}\n\n{table}\n")
    print(f"\nwritten to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
