"""Lakehouse writes: idempotent, atomic, safe with two writer processes, schema-checked."""

import datetime as dt
import multiprocessing as mp

import duckdb
import polars as pl
import pytest

from quant_assets.storage.lakehouse import Lakehouse, LakehouseError
from quant_assets.storage.schemas import TABLES


def frame(day: dt.date, n: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "universe": ["u"] * n,
            "date": [day - dt.timedelta(days=i) for i in range(n)],
            "symbol": [f"S{i}" for i in range(n)],
            "close": [float(i + 1) for i in range(n)],
        }
    )


def test_rewrite_replaces_never_duplicates(tmp_path):
    lh = Lakehouse(tmp_path)
    for _ in range(3):
        lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    lh.write_partition("prices", "prices_u", "2021", frame(dt.date(2021, 1, 10), 2))
    assert lh.read("prices", "prices_u").height == 5
    assert lh.sql("SELECT count(*) AS n FROM prices")["n"][0] == 5
    assert lh.partitions("prices", "prices_u") == ["2020", "2021"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_reads_by_partition_keys(tmp_path):
    lh = Lakehouse(tmp_path)
    years = ["2019", "2020", "2021", "2022"]
    for y in years:
        lh.write_partition("prices", "prices_u", y, frame(dt.date(int(y), 6, 30), 1))
    assert lh.read("prices", "prices_u", ["2020", "2021"])["date"].to_list() == [
        dt.date(2020, 6, 30),
        dt.date(2021, 6, 30),
    ]
    assert lh.read("prices", "prices_u", ["2019", "1999"]).height == 1  # a partition never written: no rows
    assert lh.read("prices", "prices_u", ["2030"]).columns == list(TABLES["prices"].schema)
    assert lh.read_partition("prices", "prices_u", "1999") is None


def test_schema_errors_name_the_table_and_column(tmp_path):
    lh = Lakehouse(tmp_path)
    with pytest.raises(LakehouseError, match=r"table 'prices': frame lacks columns \['close'\]"):
        lh.write_partition("prices", "prices_u", "2020-01-03", frame(dt.date(2020, 1, 3)).drop("close"))
    with pytest.raises(LakehouseError, match="unknown lakehouse table 'pricez'"):
        lh.write_partition("pricez", "x", "2020-01-03", frame(dt.date(2020, 1, 3)))
    # A failed write loses nothing already stored.
    lh.write_partition("prices", "prices_u", "2020-01-03", frame(dt.date(2020, 1, 3)))
    with pytest.raises(pl.exceptions.PolarsError):
        lh.write_partition(
            "prices", "prices_u", "2020-01-03", frame(dt.date(2020, 1, 3)).with_columns(close=pl.lit("x"))
        )
    assert lh.read("prices", "prices_u")["close"].to_list() == [1.0, 2.0, 3.0]


def _writer(root: str, worker: int, n: int) -> int:
    lh = Lakehouse(root)
    errors = 0
    for i in range(n):
        day = dt.date(2020, 1, 3) + dt.timedelta(weeks=i)
        try:  # both workers write the same partitions: last writer wins, atomically
            lh.write_partition("prices", "prices_u", day.isoformat(), frame(day, 50))
        except Exception:
            errors += 1
    return errors


def test_two_processes_write_at_once_without_errors(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        # with a timeout: a Pool waits forever for a task whose worker vanished (fail, never hang CI)
        errors = pool.starmap_async(_writer, [(str(tmp_path), 0, 40), (str(tmp_path), 1, 40)]).get(timeout=120)
    assert errors == [0, 0]
    lh = Lakehouse(tmp_path)
    assert len(lh.partitions("prices", "prices_u")) == 40
    assert lh.sql("SELECT count(*) AS n FROM prices")["n"][0] == 40 * 50


def test_a_partition_written_before_a_column_existed_reads_it_as_null(tmp_path):
    """Schemas evolve by adding columns: an old partition still concatenates with new ones."""
    from quant_assets.assets.meta import optimisation_history
    from quant_assets.config.manifest import ChildRef
    from quant_assets.storage.schemas import TABLES

    lh = Lakehouse(tmp_path)
    schema = TABLES["meta_weights"].schema
    row = {c: [None] for c in schema} | {
        "rebalance_date": [dt.date(2020, 1, 3)],
        "meta": ["m"],
        "risk": ["hrp"],
        "child": ["a"],
        "child_kind": ["meta"],
        "weight": [1.0],
        "raw_weight": [1.0],
        "cluster": [1],
        "engine": ["custom"],
        "profile_used": ["hrp"],
        "outcome": ["optimised"],
        "status": ["optimised"],
        "vetoed": [""],
        "success_share": [1.0],
    }
    lh.write_partition("meta_weights", "mw", "2020", pl.DataFrame(row, schema=schema))
    old = pl.DataFrame(row, schema=schema).drop("outcome")
    old = old.with_columns(rebalance_date=pl.lit(dt.date(2019, 1, 4)), status=pl.lit("fallback: hrp -> min_variance"))
    old.write_parquet(lh.path("meta_weights", "mw", "2019"))  # as an older version wrote it
    both = lh.read("meta_weights", "mw")
    assert both.columns == list(schema)
    assert both["outcome"].to_list() == [None, "optimised"]
    # the meta health gate reads the old partition's outcome off its status text
    history = optimisation_history(both, ChildRef(meta="m"), "hrp")
    assert history == [(dt.date(2019, 1, 4), False), (dt.date(2020, 1, 3), True)]


# ---- faults and the read-only SQL surface ------------------------------------------------


def test_sql_is_read_only(tmp_path):
    """COPY ... TO once overwrote a lakehouse partition; ATTACH and read_csv reached any file."""
    lh = Lakehouse(tmp_path)
    lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    target = lh.path("prices", "prices_u", "2020")
    before = target.read_bytes()
    outside = tmp_path.parent / f"{tmp_path.name}_outside.csv"
    outside.write_text("a\n1\n")
    for query, culprit in [
        (f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet)", "COPY"),
        (f"ATTACH '{tmp_path / 'x.db'}' AS x", "ATTACH"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("SET enable_external_access = true", "SET"),
        ("SELECT 1; DROP VIEW prices", "DROP"),
    ]:
        with pytest.raises(LakehouseError, match=f"read-only: {culprit}"):
            lh.sql(query)
    with pytest.raises(duckdb.PermissionException, match="disabled by config"):
        lh.sql(f"SELECT * FROM read_csv('{outside}')")
    assert target.read_bytes() == before
    assert not (tmp_path / "x.db").exists()
    assert lh.sql("SELECT sum(close) AS s FROM prices")["s"][0] == 6.0
    assert lh.sql("DESCRIBE prices")["column_name"].to_list() == list(TABLES["prices"].schema)
    with pytest.raises(LakehouseError, match="read-only: EXPLAIN"):  # EXPLAIN ANALYZE would run a COPY
        lh.sql(f"EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{target}' (FORMAT parquet)")
    assert target.read_bytes() == before


def test_sql_parameters_are_values_not_sql(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    assert lh.sql("SELECT count(*) AS n FROM prices WHERE symbol = ?", ["S1"])["n"][0] == 1
    assert lh.sql("SELECT count(*) AS n FROM prices WHERE symbol = ?", ["S1' OR '1'='1"])["n"][0] == 0


def test_a_corrupt_partition_is_named_and_other_tables_stay_queryable(tmp_path):
    lh = Lakehouse(tmp_path)
    lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    lh.write_partition("prices", "prices_u", "2021", frame(dt.date(2021, 1, 3)))
    returns = pl.DataFrame({"universe": ["u"], "date": [dt.date(2020, 1, 3)], "symbol": ["S0"], "ret": [0.01]})
    lh.write_partition("returns", "returns_u", "2020", returns)
    bad = lh.path("prices", "prices_u", "2021")
    bad.write_bytes(bad.read_bytes()[:40])  # truncated mid-file, as a killed copy would leave it
    with pytest.raises(
        LakehouseError, match=r"corrupt lakehouse file .*2021\.parquet \(table prices, asset prices_u, partition 2021\)"
    ):
        lh.read("prices", "prices_u")
    assert lh.read_partition("prices", "prices_u", "2020").height == 3  # nothing else damaged
    assert lh.sql("SELECT count(*) AS n FROM returns")["n"][0] == 1  # unrelated tables answer
    with pytest.raises(
        LakehouseError, match=r"table prices is unreadable: corrupt file .*prices_u/2021\.parquet.*partition 2021"
    ):
        lh.sql("SELECT * FROM prices")
    lh.write_partition("prices", "prices_u", "2021", frame(dt.date(2021, 1, 3)))  # re-materialising repairs it
    assert lh.sql("SELECT count(*) AS n FROM prices")["n"][0] == 6


def test_the_next_write_clears_temp_files_a_killed_writer_left(tmp_path):
    """SIGKILL during a write skips its cleanup; the partition stays whole, and the temp file of the
    dead writer (pid in its name) goes at the next write of that partition. A live writer's stays."""
    import os
    import subprocess
    import sys

    lh = Lakehouse(tmp_path)
    target = lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    orphan = target.with_name(f".{target.name}.{dead_pid}.0123abcd.tmp")
    live = target.with_name(f".{target.name}.{os.getppid()}.4567ef01.tmp")
    other = target.with_name(f".2021.parquet.{dead_pid}.89ab.tmp")  # another partition's: not ours to judge
    for p in (orphan, live, other):
        p.write_bytes(b"PAR1 half")
    lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    assert not orphan.exists() and live.exists() and other.exists()
    assert lh.read("prices", "prices_u").height == 3


def test_what_was_written_is_read_back_from_memory_equal_to_the_file(tmp_path, monkeypatch):
    """Write-through: the next step reads its upstream's partition without decoding the file, and
    gets exactly what decoding it gives; a file replaced behind the cache's back is read afresh."""
    lh = Lakehouse(tmp_path)
    path = lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    decoded = pl.read_parquet(path)
    monkeypatch.setattr(pl, "read_parquet", lambda *a, **k: pytest.fail("decoded a file it had just written"))
    cached = lh.read_partition("prices", "prices_u", "2020")
    assert cached.equals(decoded) and cached.schema == decoded.schema
    monkeypatch.undo()
    replaced = lh.conform("prices", frame(dt.date(2020, 1, 10), 5))
    replaced.write_parquet(path)  # another writer (another process): new file identity
    assert lh.read_partition("prices", "prices_u", "2020").equals(replaced)


def test_the_read_cache_keeps_within_its_byte_bound_least_recently_used_out_first(tmp_path):
    """A 500-symbol universe's partitions are tens of MB each: the cache is bounded by bytes as well
    as entries, drops the least recently used frame first, and never keeps one larger than its bound."""
    from quant_assets.storage.lakehouse import _ReadCache

    small = frame(dt.date(2020, 1, 3))
    size = int(small.estimated_size())
    cache = _ReadCache(max_entries=100, max_bytes=2 * size)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.parquet"
        small.write_parquet(path)
        paths.append(path)
        cache.get(path, "frame", pl.read_parquet)
        if i == 1:
            cache.get(paths[0], "frame", pl.read_parquet)  # touched: the 2nd file is now the oldest
    kept = {key[0] for key in cache.entries}
    assert kept == {str(paths[0]), str(paths[2])} and cache.bytes == 2 * size
    big = pl.concat([small] * 10)
    big_path = tmp_path / "big.parquet"
    big.write_parquet(big_path)
    assert cache.get(big_path, "frame", pl.read_parquet).equals(big)  # served, not kept
    assert str(big_path) not in {key[0] for key in cache.entries} and cache.bytes == 2 * size


def test_the_written_frame_is_cached_under_the_identity_of_the_file_it_wrote(tmp_path, monkeypatch):
    """Another writer replacing the partition right after our rename must not be served our frame:
    the cache key is the status of the file we wrote (taken before the rename, which keeps it)."""
    import os

    lh = Lakehouse(tmp_path)
    real_replace = os.replace

    def replace_then_overwritten(src, dst):
        real_replace(src, dst)
        lh.conform("prices", frame(dt.date(2020, 2, 7), 5)).write_parquet(dst)  # the other writer

    monkeypatch.setattr(os, "replace", replace_then_overwritten)
    path = lh.write_partition("prices", "prices_u", "2020", frame(dt.date(2020, 1, 3)))
    monkeypatch.undo()
    assert lh.read_partition("prices", "prices_u", "2020").equals(pl.read_parquet(path))
    assert lh.read_partition("prices", "prices_u", "2020").height == 5
