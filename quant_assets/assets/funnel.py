"""The selection funnel as assets: one asset per stage, so every stage's output is a partition
you can open, query and trace in lineage.

  returns_<u> -> regime_<u>                                                   per universe
  returns_<u> + regime_<u> -> clusters_<s> (+ cluster_sensitivity_<s>)         per sleeve
  features_<u> -> rankings_<s> (inference), vetoes_<s> (policy) -> selection_<s>
                  (recruitment with relaxation + synthesis into strategy atoms)   per sleeve

Benchmarks (universe `benchmarks:`) are priced and featured with the universe but are references:
they never enter the regime mean, the clusters, the vetoes or the winners.
"""


import datetime as dt
import json

import pandas as pd
from dagster import AssetCheckSpec, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from quant_assets.assets.common import (
    OWNER,
    SINGLE_RUN,
    GraphContext,
    candidates_name,
    check_result,
    cluster_sensitivity_name,
    clusters_name,
    features_name,
    rankings_name,
    regime_name,
    require,
    returns_name,
    run_dates,
    selection_name,
    table_metadata,
    vetoes_name,
    with_keys,
)
from quant_assets.clustering import ClusterResult, cluster, threshold_sensitivity
from quant_assets.features import FEATURE_COLUMNS
from quant_assets.filters import apply_filters
from quant_assets.lakehouse import Lakehouse, LakehouseResource
from quant_assets.plots import line_plot_md, timeline_md
from quant_assets.rankers import get_ranker, rank_candidates
from quant_assets.regime import COMPONENTS, detect_regime
from quant_assets.selection import run_funnel


def benchmark_symbols(lh: Lakehouse, universe: str, d: dt.date) -> set[str]:
    """The universe's reference series on `d`, as flagged by its candidates partition."""
    n_cand = candidates_name(universe)
    cands = require(lh.read_partition("candidates", n_cand, d), n_cand, d)
    if "is_benchmark" not in cands.columns:
        return set()
    return set(cands.filter(cands["is_benchmark"])["symbol"].to_list())


def regime_asset(ctx: GraphContext, universe: str):
    m = ctx.manifest
    cfg = m.universes[universe]
    n_reg, n_rets = regime_name(universe), returns_name(universe)
    s = cfg.regime

    @asset(name=n_reg, group_name="selection", kinds={"numpy", "parquet"}, deps=[n_rets, candidates_name(universe)],
           partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER],
           description=f"Regime of `{universe}` on the trailing {s.lookback_days} sessions of its cross-sectional "
                       f"mean return (benchmarks excluded): QUIET < {s.quiet_below} <= NORMAL < {s.turbulent_at} "
                       f"<= TURBULENT < {s.crisis_at} <= CRISIS. Drives cluster thresholds, cluster caps and "
                       f"the barbell's aggressor share.")
    def regime(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        readings = []
        for d in dates:
            rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d)
            members = [c for c in rets.columns if c not in benchmark_symbols(lh, universe, d)]
            reading = detect_regime(rets[members].mean(axis=1) if members else pd.Series(dtype=float), s)
            row = pd.DataFrame([{"score": reading.score, "label": reading.label,
                                 **{c: getattr(reading, c) for c in COMPONENTS}, "n_obs": reading.n_obs}])
            lh.write_partition("regime", n_reg, d, with_keys(row, d, universe=universe))
            readings.append((d, reading.label, reading.score))
        labels = pd.Series([r[1] for r in readings], index=pd.DatetimeIndex([r[0] for r in readings]))
        extra = {"label_last_date": readings[-1][1], "score_last_date": float(readings[-1][2]),
                 "label_counts": MetadataValue.json(labels.value_counts().to_dict())}
        if len(dates) > 1:
            extra["timeline"] = MetadataValue.md(timeline_md(labels, f"Regime of {universe}, {dates[0]} .. {dates[-1]}"))
        return MaterializeResult(metadata=table_metadata(lh, "regime", n_reg, dates, len(dates), None, **extra))

    return regime


def regime_label(lh: Lakehouse, universe: str, d: dt.date) -> str:
    n_reg = regime_name(universe)
    return str(require(lh.read_partition("regime", n_reg, d), n_reg, d)["label"][0])


def _member_returns(lh: Lakehouse, universe: str, d: dt.date) -> pd.DataFrame:
    """Returns of the universe's recruitable symbols on `d` (benchmarks left out)."""
    n_rets = returns_name(universe)
    rets = require(lh.read_wide("returns", n_rets, d, "ret"), n_rets, d)
    bench = benchmark_symbols(lh, universe, d)
    return rets[[c for c in rets.columns if c not in bench]]


def _members(lh: Lakehouse, universe: str, d: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and returns of the universe's recruitable symbols on `d`, aligned."""
    n_feats = features_name(universe)
    feats = require(lh.read_partition("features", n_feats, d), n_feats, d).to_pandas().set_index("symbol")
    rets = _member_returns(lh, universe, d)
    symbols = [s for s in feats.index if s in rets.columns]
    return feats.loc[symbols, FEATURE_COLUMNS], rets[symbols]


def _stored_clusters(lh: Lakehouse, name: str, d: dt.date) -> ClusterResult:
    frame = require(lh.read_partition("clusters", name, d), name, d).to_pandas()
    if frame.empty:
        return ClusterResult(pd.Series(dtype=int), float("nan"), 0, ())
    return ClusterResult(pd.Series(frame["cluster"].to_numpy(int), index=frame["symbol"].to_numpy()),
                         float(frame["threshold"].iloc[0]), int(frame["n_clusters"].iloc[0]),
                         tuple(int(x) for x in str(frame["lookbacks"].iloc[0]).split(",") if x),
                         bool(frame["recut"].iloc[0]))


def sleeve_funnel_assets(ctx: GraphContext, sleeve: str) -> list:
    """Stages 3-6 for one sleeve: clusters, sensitivity, rankings, vetoes, selection."""
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    s = cfg.selection
    universe = cfg.universe
    n_feats, n_rets, n_reg = features_name(universe), returns_name(universe), regime_name(universe)
    n_clu, n_sens = clusters_name(sleeve), cluster_sensitivity_name(sleeve)
    n_rank, n_veto, n_sel = rankings_name(sleeve), vetoes_name(sleeve), selection_name(sleeve)
    n_cand = candidates_name(universe)
    common = dict(partitions_def=ctx.partitions, backfill_policy=SINGLE_RUN, owners=[OWNER], group_name="selection")
    ranker = get_ranker(s.ranker.name)
    thresholds = ", ".join(f"{k} {v}" for k, v in s.clustering.thresholds.items())

    @asset(name=n_clu, kinds={"scipy", "parquet"}, deps=[n_rets, n_reg, n_cand],
           description=f"Partitioning for `{sleeve}`: Ward clusters of `{universe}` on sqrt(0.5 (1 - rho)) averaged "
                       f"over lookbacks {list(s.clustering.lookbacks)}, cut at the regime's threshold ({thresholds}), "
                       f"at most {s.clustering.max_clusters} clusters.", **common)
    def clusters(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        counts, rows = [], 0
        for d in dates:
            rets = _member_returns(lh, universe, d)
            regime = regime_label(lh, universe, d)
            res = cluster(rets, s.clustering, regime)
            frame = pd.DataFrame({"symbol": res.labels.index.astype(str), "cluster": res.labels.to_numpy(int),
                                  "threshold": res.threshold, "n_clusters": res.n_clusters, "regime": regime,
                                  "recut": res.recut, "lookbacks": ",".join(map(str, res.lookbacks))})
            lh.write_partition("clusters", n_clu, d, with_keys(frame, d, sleeve=sleeve))
            counts.append(res.n_clusters)
            rows += len(frame)
        return MaterializeResult(metadata=table_metadata(
            lh, "clusters", n_clu, dates, rows, None, n_clusters_last_date=counts[-1],
            n_clusters_mean=float(pd.Series(counts).mean())))

    @asset(name=n_sens, kinds={"scipy", "parquet"}, deps=[n_rets, n_cand],
           description=f"How many clusters `{sleeve}`'s universe splits into as the distance threshold moves "
                       f"0.10 -> 0.90: the evidence for choosing the regime thresholds ({thresholds}).", **common)
    def cluster_sensitivity(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        frames = []
        for d in dates:
            rets = _member_returns(lh, universe, d)
            frame = threshold_sensitivity(rets, s.clustering)
            lh.write_partition("cluster_sensitivity", n_sens, d, with_keys(frame, d, sleeve=sleeve))
            frames.append(frame.set_index("threshold")["n_clusters"].rename(d.isoformat()))
        grid = pd.concat(frames, axis=1)
        ys = {f"last date {dates[-1]}": grid.iloc[:, -1].to_numpy(float)}
        if len(dates) > 1:
            ys = {"min over run": grid.min(axis=1).to_numpy(float), "median over run": grid.median(axis=1).to_numpy(float),
                  "max over run": grid.max(axis=1).to_numpy(float), **ys}
        plot = line_plot_md(grid.index.to_numpy(float), ys, f"Clusters vs threshold, {sleeve}", "distance threshold",
                            "clusters")
        return MaterializeResult(metadata=table_metadata(
            lh, "cluster_sensitivity", n_sens, dates, len(dates) * len(grid), None,
            sensitivity=MetadataValue.md(plot)))

    @asset(name=n_rank, kinds={"numpy", "parquet"}, deps=[n_feats, n_reg, n_cand],
           description=f"Inference for `{sleeve}`: the `{s.ranker.name}` ranker over `{universe}`'s features, "
                       f"oriented for {cfg.logic}/{cfg.direction} (rank 1 = best for this sleeve; a short ranks "
                       f"the most bearish first).", **common)
    def rankings(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last = 0, None
        for d in dates:
            feats, _ = _members(lh, universe, d)
            ranked = rank_candidates(feats, s.ranker, cfg.logic, cfg.direction, regime_label(lh, universe, d))
            last = with_keys(_ranking_rows(ranked, s.ranker.name), d, sleeve=sleeve)
            lh.write_partition("rankings", n_rank, d, last)
            rows += len(last)
        return MaterializeResult(metadata=table_metadata(lh, "rankings", n_rank, dates, rows, last,
                                                         ranker=s.ranker.name))

    @asset(name=n_veto, kinds={"numpy", "parquet"}, deps=[n_feats, n_cand],
           description=f"Policy for `{sleeve}`: the filter chain {list(s.filters)} at strict thresholds, one row "
                       f"per veto (symbol, filter, reason, value, threshold). Benchmarks are never vetoed.",
           **common)
    def vetoes(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, per_filter = 0, None, {}
        chain, required = s.build_filters(), ranker.required_columns(s.ranker, cfg.logic)
        for d in dates:
            feats, _ = _members(lh, universe, d)
            table = apply_filters(feats, chain, cfg.direction, required=required)
            last = with_keys(table, d, sleeve=sleeve)
            lh.write_partition("vetoes", n_veto, d, last)
            rows += len(last)
            for name, count in table["filter"].value_counts().items():
                per_filter[name] = per_filter.get(name, 0) + int(count)
        return MaterializeResult(metadata=table_metadata(
            lh, "vetoes", n_veto, dates, rows, last,
            vetoes_per_filter=MetadataValue.json({f: per_filter.get(f, 0) for f in s.filters}),
            vetoes_per_date=float(rows / len(dates))))

    @asset(name=n_sel, kinds={"scipy", "parquet"}, deps=[n_rank, n_veto, n_clu, n_feats, n_rets, n_reg, n_cand],
           check_specs=[AssetCheckSpec("stages_consistent", asset=n_sel, blocking=True,
                                       description="Recruitment saw exactly the stored rankings, vetoes and clusters")],
           description=f"Recruitment and synthesis for `{sleeve}`: the best {s.top_n_per_cluster} non-vetoed names "
                       f"per cluster (at most {s.max_winners}); below {s.min_winners} winners the relaxation "
                       f"stages {list(s.relaxation.stages)} run in order and each winner records the stage that "
                       f"picked it. Winners become atoms `SYMBOL|{cfg.logic}|{cfg.direction}` with a sign.",
           **common)
    def selection(context: AssetExecutionContext, lakehouse: LakehouseResource) -> MaterializeResult:
        lh, dates = lakehouse.get(), run_dates(context)
        rows, last, winners, stages, failures = 0, None, [], {}, {}
        for d in dates:
            feats, rets = _members(lh, universe, d)
            stored = _stored_clusters(lh, n_clu, d)
            res = run_funnel(feats, rets, stored, regime_label(lh, universe, d), s, cfg.logic, cfg.direction)
            last = with_keys(res.selection, d, sleeve=sleeve)
            lh.write_partition("selection", n_sel, d, last)
            rows += len(last)
            winners.append(int(res.selection["selected"].sum()))
            for stage, k in zip(res.stage_counts["stage"], res.stage_counts["winners"]):
                stages[stage] = stages.get(stage, 0) + int(k)
            problem = _stage_mismatch(lh, n_rank, n_veto, d, res)
            if problem:
                failures[d.isoformat()] = problem
        return MaterializeResult(
            metadata=table_metadata(lh, "selection", n_sel, dates, rows,
                                    last[last["selected"]] if last is not None else None,
                                    winners_mean=float(pd.Series(winners).mean()), winners_min=min(winners),
                                    winners_last_date=winners[-1], winners_by_stage=MetadataValue.json(stages)),
            check_results=[check_result("stages_consistent", failures, len(dates))])

    return [clusters, cluster_sensitivity, rankings, vetoes, selection]


def _ranking_rows(ranked: pd.DataFrame, ranker: str) -> pd.DataFrame:
    """symbol, score, rank, ranker + the ranker's own columns folded into one JSON `detail`."""
    extra = [c for c in ranked.columns if c not in ("symbol", "score", "rank")]
    detail = [json.dumps({c: (None if pd.isna(v) else v) for c, v in zip(extra, row)}, default=float)
              for row in ranked[extra].itertuples(index=False)] if extra else [""] * len(ranked)
    return pd.DataFrame({"symbol": ranked["symbol"].astype(str), "score": ranked["score"].astype(float),
                         "rank": ranked["rank"].astype(int), "ranker": ranker, "detail": detail})


def _stage_mismatch(lh: Lakehouse, n_rank: str, n_veto: str, d: dt.date, res) -> str | None:
    """Recruitment recomputes ranks and strict vetoes: they must equal the stored stage outputs."""
    stored_rank = require(lh.read_partition("rankings", n_rank, d), n_rank, d).to_pandas()
    ours = dict(zip(res.rankings["symbol"].astype(str), res.rankings["rank"].astype(int)))
    if dict(zip(stored_rank["symbol"], stored_rank["rank"].astype(int))) != ours:
        return f"ranks differ from {n_rank}[{d}]: re-materialise the rankings"
    stored_veto = require(lh.read_partition("vetoes", n_veto, d), n_veto, d).to_pandas()
    key = lambda f: set(zip(f["symbol"].astype(str), f["filter"], f["reason"]))  # noqa: E731
    if key(stored_veto) != key(res.vetoes):
        return f"strict vetoes differ from {n_veto}[{d}]: re-materialise the vetoes"
    return None
