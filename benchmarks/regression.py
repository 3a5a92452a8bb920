"""Numbers do not change: the period design against the per-date design's outputs.

`benchmarks/fixtures/regression_*.parquet` hold what the per-date design (every asset partitioned by
rebalance date, commit b2d9fec) computed in one backfill started on 2019-01-01, for the rebalance
dates of 2020-2022 (where every sleeve and meta has a year of history): sleeve weights, sleeve period
returns, meta weights and flattened weights. This script backfills the same range with the current
code (market data from the calendar's start, everything else from 2019 as before), then compares
every number on its keys:

    .venv/bin/python -m benchmarks.regression [--lakehouse DIR]   # DIR: reuse a lakehouse already run

Prints, per table, the rows on each side, the largest absolute difference, and how many values
differ by more than 1e-12 (with the worst keys), so a deliberate change can be named.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import warnings
from pathlib import Path

import duckdb

warnings.filterwarnings("ignore")

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = 1e-12
TABLES = {  # table: (key columns, value column)
    "sleeve_weights": (["rebalance_date", "sleeve", "risk", "atom_id"], "weight"),
    "sleeve_returns": (["rebalance_date", "sleeve", "risk", "date"], "net_return"),
    "meta_weights": (["rebalance_date", "meta", "risk", "child"], "weight"),
    "flattened_weights": (["rebalance_date", "meta", "risk", "symbol"], "net_weight"),
}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def backfill(root: str) -> None:
    from quant_assets.assets.event_log import ephemeral_instance
    from quant_assets.cli.runner import materialize_range
    from quant_assets.config.manifest import load_manifest
    from quant_assets.definitions import build_definitions

    manifest = load_manifest()
    defs = build_definitions(manifest, root)
    instance = ephemeral_instance()
    t0 = time.perf_counter()
    first = materialize_range(
        defs,
        manifest,
        manifest.calendar.start,
        dt.date(2018, 12, 31),
        instance,
        selection="group:market_data",
        run_config=QUIET,
    )
    second = materialize_range(defs, manifest, dt.date(2019, 1, 1), dt.date(2022, 12, 31), instance, run_config=QUIET)
    assert first.success and second.success
    print(f"backfilled market data 1992-2018 and the graph 2019-2022 in {time.perf_counter() - t0:.1f} s")


def compare(root: str) -> dict[str, dict]:
    con = duckdb.connect()
    out = {}
    for table, (keys, value) in TABLES.items():
        ours = (
            f"SELECT {', '.join(keys)}, {value} FROM read_parquet('{root}/{table}/*/*.parquet', "
            f"union_by_name=true) WHERE rebalance_date >= DATE '2020-01-01'"
        )
        theirs = f"SELECT * FROM read_parquet('{FIXTURES}/regression_{table}.parquet')"
        on = " AND ".join(f"a.{k} = b.{k}" for k in keys)
        rows = con.execute(
            f"SELECT count(a.{value}) AS fixture, count(b.{value}) AS ours, "
            f"max(abs(a.{value} - b.{value})) AS max_diff, "
            f"count(*) FILTER (WHERE abs(a.{value} - b.{value}) > {TOLERANCE}) AS over, "
            f"count(*) FILTER (WHERE a.{value} IS NULL OR b.{value} IS NULL) AS unmatched "
            f"FROM ({theirs}) a FULL OUTER JOIN ({ours}) b ON {on}"
        ).fetchall()[0]
        worst = con.execute(
            f"SELECT a.{', a.'.join(keys)}, a.{value} AS fixture, b.{value} AS ours FROM ({theirs}) a JOIN ({ours}) b "
            f"ON {on} ORDER BY abs(a.{value} - b.{value}) DESC LIMIT 3"
        ).fetchall()
        by_risk = con.execute(
            f"SELECT coalesce(a.risk, b.risk) AS risk, max(abs(a.{value} - b.{value})) AS max_diff, "
            f"count(*) FILTER (WHERE abs(a.{value} - b.{value}) > {TOLERANCE}) AS over, "
            f"count(*) FILTER (WHERE a.{value} IS NULL OR b.{value} IS NULL) AS unmatched "
            f"FROM ({theirs}) a FULL OUTER JOIN ({ours}) b ON {on} GROUP BY ALL ORDER BY 1"
        ).fetchall()
        out[table] = {
            "by_risk": by_risk,
            "fixture_rows": rows[0],
            "our_rows": rows[1],
            "max_abs_diff": rows[2],
            "over_tolerance": rows[3],
            "unmatched": rows[4],
            "worst": worst,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lakehouse", help="compare this lakehouse instead of backfilling a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.lakehouse or tmp
        if not args.lakehouse:
            backfill(root)
        for table, r in compare(root).items():
            print(
                f"{table:<18} fixture {r['fixture_rows']:>6} rows, ours {r['our_rows']:>6}, unmatched "
                f"{r['unmatched']}, max |diff| {r['max_abs_diff']:.2e}, > {TOLERANCE:g}: {r['over_tolerance']}"
            )
            print(
                "    per lens: "
                + "; ".join(
                    f"{risk} max |diff| {d or 0:.1e}, > tol {o}, unmatched {u}" for risk, d, o, u in r["by_risk"]
                )
            )
            if r["over_tolerance"]:
                for w in r["worst"]:
                    print(f"    {w}")


if __name__ == "__main__":
    main()
