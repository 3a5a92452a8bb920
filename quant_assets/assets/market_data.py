"""Per-universe assets: candidates -> prices -> returns (health policy) -> features.

Prices are a point-in-time snapshot of the lookback window as known at the rebalance date, so
any single partition can be materialised (and audited) on its own, with no hidden dependency on
other dates.
"""


import datetime as dt
import json

import pandas as pd
from dagster import AssetCheckSpec, AssetExecutionContext, MaterializeResult, asset

from quant_assets.assets.common import (
    OWNER,
    SINGLE_RUN,
    GraphContext,
    candidates_name,
    check_result,
    features_name,
    prices_name,
    require,
    returns_name,
    run_dates,
    table_metadata,
    with_keys,
)
from quant_assets.calendar import calendar_days_covering
from quant_assets.checks import coverage_problem
from quant_assets.assets.funnel import benchmark_symbols, regime_asset
from quant_assets.features import FEATURE_COLUMNS, compute_features
from quant_assets.health import apply_health_policy
from quant_assets.lakehouse import LakehouseResource
from quant_assets.sources import get_source

CANDIDATE_COLUMNS = ["symbol", "ticker", "exchange", "asset_type", "sector", "first_date", "direction",
                     "metadata", "is_benchmark"]


def universe_assets(ctx: GraphContext, universe: str) -> list:
    m = ctx.manifest
    cfg = m.universes[universe]
    source_name = cfg.source
    lb = m.lookbacks
    n_cand, n_prices, n_rets, n_feats = (candidates_name(universe), prices_name(universe),
                                         returns_name(universe), features_name(universe))
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER])

    @asset(name=n_cand, group_name="market_data", kinds={"python", "parquet"},
           description=f"Symbols listed in universe `{universe}` (source `{source_name}`) as of the "
                       f"rebalance date, in the standard candidate schema.", **common)
    def candidates(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, source, dates = lakehouse.get(), get_source(source_name), run_dates(context)
        rows, last = 0, None
        for d in dates:
            found = [c.row() | {"is_benchmark": False} for c in source.discover(d, cfg.symbols)]
            for ref in cfg.benchmarks:  # reference series: same schema, flagged, priced from their own source
                bench_source, _, ticker = ref.partition(":")
                found += [c.row() | {"is_benchmark": True} for c in get_source(bench_source).discover(d, [ticker])]
            df = pd.DataFrame(found, columns=CANDIDATE_COLUMNS)
            df["first_date"] = pd.to_datetime(df["first_date"]).dt.date
            last = with_keys(df, d, universe=universe)
            lh.write_partition("candidates", n_cand, d, last)
            rows += len(last)
        return MaterializeResult(metadata=table_metadata(lh, "candidates", n_cand, dates, rows, last,
                                                         n_candidates_last_date=len(last),
                                                         benchmarks=", ".join(cfg.benchmarks) or "none"))

    @asset(name=n_prices, group_name="market_data", kinds={"python", "parquet"}, deps=[n_cand],
           description=f"Daily closes of `{universe}` over the last {lb.prices_days} sessions up to and "
                       f"including the rebalance date: a point-in-time snapshot.", **common)
    def prices(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, source, dates = lakehouse.get(), get_source(source_name), run_dates(context)
        rows, last = 0, None
        for d in dates:
            cands = require(lh.read_partition("candidates", n_cand, d), n_cand, d).to_pandas()
            start = d - dt.timedelta(days=calendar_days_covering(lb.prices_days + 1))
            by_source = cands.groupby(cands["metadata"].map(lambda m: json.loads(m)["source"]), sort=False)["symbol"]
            frames = [(source if name == source_name else get_source(name)).closes(list(symbols), start, d)
                      for name, symbols in by_source]
            closes = pd.concat(frames, axis=1).tail(lb.prices_days + 1) if frames else pd.DataFrame()
            if len(closes) and closes.index.max().date() > d:
                raise RuntimeError(f"{n_prices}[{d}]: source returned prices after the partition date")
            long = (closes.rename_axis("date").reset_index().melt(id_vars="date", var_name="symbol",
                                                                   value_name="close").dropna()
                    if len(closes) else pd.DataFrame(columns=["date", "symbol", "close"]))
            long["date"] = pd.to_datetime(long["date"]).dt.date
            last = with_keys(long, d, universe=universe)
            lh.write_partition("prices", n_prices, d, last)
            rows += len(last)
        return MaterializeResult(metadata=table_metadata(lh, "prices", n_prices, dates, rows, last))

    @asset(name=n_rets, group_name="market_data", kinds={"python", "parquet"}, deps=[n_prices],
           check_specs=[AssetCheckSpec("health_coverage", asset=n_rets, blocking=True,
                                       description=f"Share of eligible symbols kept >= {m.health.min_coverage}")],
           description=f"Health-checked simple daily returns of `{universe}` (floor {lb.min_history_days} "
                       f"obs, |r| <= {m.health.toxic_abs_return}, no zero variance, no forward fill); "
                       f"every exclusion recorded in `returns_health`.", **common)
    def returns(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, failures, excluded = 0, None, {}, {}
        for d in dates:
            closes = require(lh.read_wide("prices", n_prices, d, "close"), n_prices, d)
            result = apply_health_policy(closes, m.health, lb.min_history_days)
            long = result.returns.rename_axis("date").reset_index().melt(id_vars="date", var_name="symbol",
                                                                          value_name="ret")
            long["date"] = pd.to_datetime(long["date"]).dt.date
            last = with_keys(long, d, universe=universe)
            lh.write_partition("returns", n_rets, d, last)
            lh.write_partition("returns_health", n_rets, d, with_keys(result.verdicts, d, universe=universe))
            rows += len(last)
            for r in result.verdicts[result.verdicts["status"] == "excluded"].itertuples():
                excluded[r.reason] = excluded.get(r.reason, 0) + 1
            problem = coverage_problem(result.coverage, m.health.min_coverage)
            if problem:
                failures[d.isoformat()] = problem
        md = table_metadata(lh, "returns", n_rets, dates, rows, None,
                            symbols_kept_last_date=int(result.returns.shape[1]),
                            coverage_last_date=float(result.coverage),
                            exclusions_by_reason=excluded)
        return MaterializeResult(metadata=md, check_results=[
            check_result("health_coverage", failures, len(dates), threshold=m.health.min_coverage)])

    @asset(name=n_feats, group_name="selection", kinds={"numpy", "parquet"}, deps=[n_rets, n_cand],
           description=f"Per-symbol features of `{universe}` over the trailing {lb.features_days} sessions "
                       f"for path features (momentum, volatility, entropy, efficiency, ADF, wavelet turbulence) and "
                       f"the whole snapshot for sample-hungry ones (Hurst, skew, kurtosis, CVaR, antifragility, "
                       f"technical ratings). Closes only: liquidity is NaN until a source brings volume.", **common)
    def features(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last = 0, None
        for d in dates:
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d)
            bench = benchmark_symbols(lh, universe, d)
            # Cross-sectional features (antifragility) are scaled among members only: a benchmark
            # is a reference, it must not move the members' scores.
            groups = [[c for c in rets.columns if c not in bench], [c for c in rets.columns if c in bench]]
            feats = pd.concat([compute_features(rets[g], window=lb.features_days) for g in groups if g]) \
                if rets.shape[1] else pd.DataFrame(columns=FEATURE_COLUMNS).rename_axis("symbol")
            last = with_keys(feats.reset_index(), d, universe=universe)
            lh.write_partition("features", n_feats, d, last)
            rows += len(last)
        return MaterializeResult(metadata=table_metadata(lh, "features", n_feats, dates, rows, last))

    return [candidates, prices, returns, features, regime_asset(ctx, universe)]
