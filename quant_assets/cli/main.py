"""Command line: `quant-assets demo | backfill | sql | summary | explain | report | audit | accept`.

Runs go through the persistent Dagster instance ($DAGSTER_HOME, default `.dagster/` in the repo),
so everything done here shows up in `make ui` with its runs, partitions and metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
import warnings

from quant_assets.storage.lakehouse import REPO_ROOT, Lakehouse, default_root

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ensure_dagster_home() -> str:
    """Use $DAGSTER_HOME, else `.dagster/` in the repo seeded with the repo's dagster.yaml."""
    home = os.environ.get("DAGSTER_HOME") or str(REPO_ROOT / ".dagster")
    os.makedirs(home, exist_ok=True)
    target = os.path.join(home, "dagster.yaml")
    if not os.path.exists(target) and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", target)
    os.environ["DAGSTER_HOME"] = home
    return home


def _defs_and_manifest():
    from quant_assets.config.manifest import load_manifest
    from quant_assets.definitions import build_definitions

    manifest = load_manifest()
    return build_definitions(manifest), manifest


def _run(start: dt.date, end: dt.date, selection: str | None, verbose: bool) -> bool:
    from dagster import DagsterInstance

    from quant_assets.assets.progress import ENV_VAR as PROGRESS
    from quant_assets.cli.runner import (
        dates_kept,
        materialize_range,
        missing_warm_up,
        partition_range,
        resolve_selection,
        warm_up_market_data,
    )

    defs, manifest = _defs_and_manifest()
    first, last = partition_range(manifest, start, end)
    if selection is not None:
        resolve_selection(defs, selection)  # a malformed selection fails here, before anything runs
    ensure_dagster_home()
    os.environ.setdefault(PROGRESS, "1")  # each step shows its dates done and an ETA
    print(
        f"materialising partitions {first} .. {last} ({selection or 'all assets'}); one bar per asset step:", flush=True
    )
    with DagsterInstance.get() as instance:
        t0 = time.perf_counter()
        lh = Lakehouse(default_root())
        warm_up = missing_warm_up(manifest, lh, start, end)
        if warm_up and (selection is None or selection != "group:market_data"):
            # The funnel and the sleeves read a ~2-year window of returns: store those periods first.
            print(
                f"first, the market data of {warm_up[0]} .. {warm_up[-1]} (the trailing windows of "
                f"{first} reach back there and it is not stored yet)",
                flush=True,
            )
            _, pre = warm_up_market_data(
                defs,
                manifest,
                lh,
                start,
                end,
                instance,
                raise_on_error=False,
                run_config=None if verbose else QUIET_LOGS,
            )
            # None when nothing is missing any more (another run filled those periods meanwhile)
            if pre is not None and not pre.success:
                print(f"run {pre.run_id[:8]} FAILED: market data of {warm_up[0]} .. {warm_up[-1]}")
                _print_failures(pre)
                return False
        result = materialize_range(
            defs,
            manifest,
            start,
            end,
            instance,
            selection=selection,
            raise_on_error=False,
            run_config=None if verbose else QUIET_LOGS,
        )
        took = time.perf_counter() - t0
    status = "succeeded" if result.success else "FAILED"
    print(
        f"run {result.run_id[:8]} {status}: partitions {first} .. {last} ({selection or 'all assets'}) in {took:.1f} s"
    )
    if kept := dates_kept(result):
        print(
            "  kept as stored (their inputs did not change): "
            + ", ".join(f"{n} dates of {assets} assets" for n, assets in kept.items())
        )
    if not result.success:
        _print_failures(result)
    return result.success


def _print_failures(result) -> None:
    """Each failed step with its innermost error (the one naming the culprit), each failed check."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            print(f"  step {event.step_key} failed: {error.message.strip()[:400]}")
    for c in [e for e in result.get_asset_check_evaluations() if not e.passed]:
        print(f"  check {c.asset_key.to_user_string()}:{c.check_name} failed: {dict(c.metadata).get('failures')}")


def cmd_backfill(args) -> int:
    return 0 if _run(args.start, args.end, args.select, args.verbose) else 1


def cmd_demo(args) -> int:
    _, manifest = _defs_and_manifest()
    cal = manifest.calendar
    start = args.start or cal.demo_start or cal.start
    end = args.end or cal.demo_end or (cal.end - dt.timedelta(days=1) if cal.end else dt.date(2022, 12, 31))
    print(
        f"quant_assets demo: every asset, every weekly rebalance {start} .. {end}, on the real S&P 500 data "
        f"bundled in skfolio. Lakehouse: {default_root()}"
    )
    t0 = time.perf_counter()
    if not _run(start, end, None, args.verbose):
        return 1
    from quant_assets.data.calendars import Periods

    last = [d for d in Periods(cal).all_dates if d <= end][-1]
    print(f"demo wall time {time.perf_counter() - t0:.1f} s\n")
    print_summary(manifest, Lakehouse(default_root()), last)
    return 0


def print_summary(manifest, lh: Lakehouse, date: dt.date, risk: str | None = None) -> None:
    from quant_assets.simulation.metrics import performance

    for root in manifest.roots:
        if risk is not None and risk not in manifest.meta_risks(root):
            lenses = manifest.meta_risks(root)
            raise ValueError(f"unknown risk lens {risk!r} for root meta {root}; its lenses: {lenses}")
        lens = risk or ("hrp" if "hrp" in manifest.meta_risks(root) else manifest.meta_risks(root)[0])
        w = lh.sql(
            "SELECT child, weight, status FROM meta_weights WHERE meta = ? AND risk = ? AND rebalance_date = ? "
            "ORDER BY weight DESC",
            [root, lens, date],
        ).to_pandas()
        flat = lh.sql(
            "SELECT symbol, net_weight, long_weight, short_weight, contributors FROM flattened_weights "
            "WHERE meta = ? AND risk = ? AND rebalance_date = ? ORDER BY abs(net_weight) DESC",
            [root, lens, date],
        ).to_pandas()
        print(f"== root meta `{root}` under the `{lens}` lens, as of {date} ==")
        print(
            "allocation: "
            + ", ".join(f"{r.child} {r.weight:.1%}" for r in w.itertuples())
            + (f"  [{w['status'].iloc[0]}]" if len(w) else "")
        )
        print(
            f"top flattened weights ({len(flat)} physical symbols, gross {flat['net_weight'].abs().sum():.3f}, "
            f"net {flat['net_weight'].sum():+.3f}):"
        )
        for r in flat.head(8).itertuples():
            print(f"  {r.symbol:<12} {r.net_weight:+.4f}   via {r.contributors}")
        netted = flat[(flat["long_weight"] > 0) & (flat["short_weight"] > 0)]
        if len(netted):
            print(
                f"  ({len(netted)} symbols held long in one sleeve and short in another: their paths net out, "
                f"so gross is below the paths' sum)"
            )
        print("out-of-sample performance of each lens over the run (stitched daily returns):")
        for lens_ in manifest.meta_risks(root):
            rets = lh.sql(
                "SELECT date, ret FROM meta_portfolio_returns WHERE meta = ? AND risk = ? AND rebalance_date <= ? "
                "ORDER BY date",
                [root, lens_, date],
            ).to_pandas()
            p = performance(rets["ret"])
            print(
                f"  {lens_:<13} {p['days']:>5} days  CAGR {p['cagr']:+.2%}  vol {p['ann_vol']:.2%}  "
                f"Sharpe {p['sharpe']:.2f}  max drawdown {p['max_drawdown']:.2%}"
            )
    print(
        "\nNext: `make ui` (http://127.0.0.1:3000, or QUANT_ASSETS_UI_PORT) for the graph, partitions, checks and the "
        'meta_report_* assets; `make sql Q="SELECT * FROM meta_weights LIMIT 5"` to query the lakehouse.'
    )


def cmd_sql(args) -> int:
    import polars as pl

    with pl.Config(tbl_rows=args.rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
        print(Lakehouse(default_root()).sql(args.query))
    return 0


def cmd_summary(args) -> int:
    from quant_assets.config.manifest import load_manifest

    manifest = load_manifest()
    lh = Lakehouse(default_root())
    date = args.date or lh.sql("SELECT max(rebalance_date) AS d FROM flattened_weights")["d"][0]
    print_summary(manifest, lh, date, args.risk)
    return 0


def cmd_explain(args) -> int:
    from dagster import DagsterInstance

    from quant_assets.assets.common import instance_lookup
    from quant_assets.audit.explain import ExplainError, explain
    from quant_assets.config.manifest import load_manifest

    ensure_dagster_home()
    try:
        with DagsterInstance.get() as instance:
            print(
                explain(
                    Lakehouse(default_root()),
                    load_manifest(),
                    args.meta,
                    args.risk,
                    args.date,
                    args.symbol,
                    instance_lookup(instance),
                ).render()
            )
    except ExplainError as err:
        print(f"cannot explain: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_audit(args) -> int:
    from quant_assets.audit.ledger import AuditLedger

    ledger = AuditLedger.in_lakehouse(default_root())
    result = ledger.verify()
    print(
        f"{ledger.path}: {result.records} records, chain {'intact' if result.ok else 'BROKEN'}"
        + (f" at line {result.first_broken}: {result.reason}" if not result.ok else "")
    )
    if not result.ok:
        return 1
    dangling = ledger.dangling_intents()
    print(f"intents without an outcome (latest per asset partition): {len(dangling)}")
    for rec in dangling[:20]:
        print(f"  {rec['asset']}[{rec['partition']}] run {rec['run_id'][:8]} at {rec['ts']}")
    return 0 if result.ok and not dangling else 1


def cmd_accept(args) -> int:
    """Record a date's flattened target as the implemented weights (the next orders start from it)."""
    from quant_assets.assets.common import flattened_name
    from quant_assets.config.manifest import load_manifest
    from quant_assets.data.calendars import Periods
    from quant_assets.execution.state import record_implemented, state_path

    lh = Lakehouse(default_root())
    name = flattened_name(args.meta, args.risk)
    stored = lh.read_partition("flattened_weights", name, Periods(load_manifest().calendar).key(args.date))
    flat = None if stored is None else stored.filter(stored["rebalance_date"] == args.date)
    if flat is None or flat.height == 0:
        print(
            f"cannot accept: {name} has no weights for {args.date} (materialise its partition first)", file=sys.stderr
        )
        return 2
    import pandas as pd

    path = state_path(lh, args.meta, args.risk)
    record_implemented(path, args.date, pd.Series(flat["net_weight"].to_numpy(), index=flat["symbol"].to_list()))
    print(f"recorded {flat.height} weights of {args.meta} / {args.risk} as implemented on {args.date} in {path}")
    return 0


def cmd_report(args) -> int:
    """Print the markdown report of a meta lens as of any rebalance date (from the stored tables)."""
    from quant_assets.config.manifest import load_manifest
    from quant_assets.data.calendars import Periods
    from quant_assets.meta.report import report_at

    manifest = load_manifest()
    if args.meta not in manifest.metas or args.risk not in manifest.meta_risks(args.meta):
        print(
            f"cannot report: no meta lens {args.meta} / {args.risk}; metas: "
            f"{ {m: manifest.meta_risks(m) for m in manifest.metas} }",
            file=sys.stderr,
        )
        return 2
    periods = Periods(manifest.calendar)
    if args.date not in set(periods.all_dates):
        print(f"cannot report: {args.date} is not a rebalance date of the calendar", file=sys.stderr)
        return 2
    try:
        print(report_at(Lakehouse(default_root()), args.meta, args.risk, args.date, periods, manifest.lookbacks))
    except (KeyError, IndexError):
        print(
            f"cannot report: {args.meta} / {args.risk} has nothing stored for {args.date} "
            f"(materialise partition {periods.key(args.date)} first)",
            file=sys.stderr,
        )
        return 2
    return 0


def _date(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def main(argv: list[str] | None = None) -> int:
    from dagster import BetaWarning, PreviewWarning

    for category in (BetaWarning, PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    parser = argparse.ArgumentParser(prog="quant-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="materialise the default graph over its whole history and summarise it")
    p.add_argument("--start", type=_date)
    p.add_argument("--end", type=_date)
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("backfill", help="materialise the partitions holding a date range, in one run (in process)")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--select", help="Dagster asset selection, e.g. 'group:meta' or '+flattened_weights_x_hrp'")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_backfill)
    p = sub.add_parser("sql", help="run DuckDB SQL over the lakehouse tables")
    p.add_argument("query")
    p.add_argument("--rows", type=int, default=40)
    p.set_defaults(func=cmd_sql)
    p = sub.add_parser("summary", help="print the root metas' allocation and holdings at a date")
    p.add_argument("--date", type=_date)
    p.add_argument("--risk")
    p.set_defaults(func=cmd_summary)
    p = sub.add_parser("explain", help="decompose one symbol's weight in a meta, with the runs that produced it")
    p.add_argument("meta")
    p.add_argument("risk")
    p.add_argument("date", type=_date)
    p.add_argument("symbol", help="physical symbol, e.g. NYSE:XOM")
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("accept", help="record a date's target weights as implemented (orders start from them)")
    p.add_argument("meta")
    p.add_argument("risk")
    p.add_argument("date", type=_date)
    p.set_defaults(func=cmd_accept)
    p = sub.add_parser("report", help="print a meta lens's markdown report as of a rebalance date")
    p.add_argument("meta")
    p.add_argument("risk")
    p.add_argument("date", type=_date)
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("audit", help="verify the audit ledger's hash chain and completeness")
    p.set_defaults(func=cmd_audit)
    args = parser.parse_args(argv)
    import duckdb

    from quant_assets.audit.ledger import AuditLedgerError
    from quant_assets.config.manifest import ManifestError
    from quant_assets.storage.lakehouse import LakehouseError

    try:
        return args.func(args)
    except (
        ManifestError,
        ValueError,
        LakehouseError,
        AuditLedgerError,
        duckdb.Error,
    ) as err:  # bad input: say what, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
