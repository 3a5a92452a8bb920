"""The selection funnel of one sleeve as one step: one asset per stage output, so every stage is a
partition you can open, query and trace in lineage.

  returns_<u> + regime_<u> -> clusters_<s> (+ cluster_sensitivity_<s>)      partitioning
  features_<u> -> rankings_<s> (inference), vetoes_<s> (policy)             per sleeve
  rankings + vetoes + clusters -> selection_<s>  (recruitment with relaxation + synthesis into atoms)

Benchmarks (universe `benchmarks:`) are priced and featured with the universe but are references:
they never enter the clusters, the rankings, the vetoes or the winners.
"""

import datetime as dt
import json

import numpy as np
import pandas as pd
import polars as pl
from dagster import AssetCheckSpec, AssetExecutionContext, AssetSpec, MetadataValue

from quant_assets.assets.common import (
    GraphContext,
    LakehouseResource,
    Rows,
    Run,
    candidates_name,
    check_result,
    cluster_sensitivity_name,
    clusters_name,
    date_runs,
    features_name,
    preview,
    rankings_name,
    regime_name,
    returns_name,
    selection_name,
    table_metadata,
    vetoes_name,
)
from quant_assets.assets.market_data import universe_view, window_start
from quant_assets.assets.parallel import Raised, in_order
from quant_assets.assets.progress import track
from quant_assets.meta.plots import heatmap_md
from quant_assets.selection import hierarchy
from quant_assets.selection.clustering import SENSITIVITY_THRESHOLDS, Dendrogram, check_regime
from quant_assets.selection.features import FEATURE_COLUMNS
from quant_assets.selection.filters import VETO_COLUMNS, run_filters, veto_frame
from quant_assets.selection.funnel import funnel_view
from quant_assets.selection.market import dense_matrix
from quant_assets.selection.rankers import FeatureView, Ranking, get_ranker


def features_by_date(frame: pl.DataFrame) -> dict[dt.date, FeatureView]:
    """Stored feature rows -> one FeatureView per rebalance date (symbols in stored order)."""
    frame, runs = date_runs(frame)
    symbols = frame["symbol"].to_list()
    columns = {c: frame[c].to_numpy(writable=True) for c in FEATURE_COLUMNS}  # a ranker may write into its view
    return {d: FeatureView(symbols[a:b], {c: v[a:b] for c, v in columns.items()}) for d, a, b in runs}


def subset(view: FeatureView | None, symbols: list[str]) -> FeatureView:
    """The view restricted to `symbols` (in that order)."""
    if view is None:
        return FeatureView([], {c: np.zeros(0) for c in FEATURE_COLUMNS})
    where = {s: i for i, s in enumerate(view.symbols)}
    idx = np.array([where[s] for s in symbols], dtype=np.intp)
    return FeatureView(list(symbols), {c: v[idx] for c, v in view.columns.items()})


def _json(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "null" if value != value else repr(float(value))
    return json.dumps(value if not isinstance(value, np.generic) else value.item())


def detail_json(extra: dict[str, np.ndarray], i: int) -> str:
    """One ranking row's own columns as JSON (json.dumps' format: NaN -> null)."""
    return "{" + ", ".join(f'"{k}": {_json(v[i])}' for k, v in extra.items()) + "}" if extra else ""


def regime_by_date(frame: pl.DataFrame) -> dict[dt.date, str]:
    return dict(zip(frame["rebalance_date"].to_list(), frame["label"].to_list()))


def stage_mismatch(
    stored_rank: pd.DataFrame, stored_veto: pd.DataFrame, res, d: dt.date, rankings_key: str, vetoes_key: str
) -> str | None:
    """Recruitment recomputed ranks and strict vetoes from the features: they must equal the stored stages."""
    ours = dict(zip(res.rankings["symbol"].astype(str), res.rankings["rank"].astype(int)))
    if dict(zip(stored_rank["symbol"], stored_rank["rank"].astype(int))) != ours:
        return f"ranks differ from {rankings_key}[{d}]: re-materialise the rankings"
    key = lambda f: set(zip(f["symbol"].astype(str), f["filter"], f["reason"]))  # noqa: E731
    if key(stored_veto) != key(res.vetoes):
        return f"strict vetoes differ from {vetoes_key}[{d}]: re-materialise the vetoes"
    return None


def by_date(frame: pl.DataFrame) -> dict[dt.date, pd.DataFrame]:
    return {d: g.to_pandas() for (d,), g in frame.group_by("rebalance_date")} if frame.height else {}


def funnel_step(ctx: GraphContext, sleeve: str):
    m = ctx.manifest
    cfg = m.sleeves[sleeve]
    s = cfg.selection
    universe = cfg.universe
    lookbacks = m.lookbacks
    features_key, returns_key, regime_key, candidates_key = (
        features_name(universe),
        returns_name(universe),
        regime_name(universe),
        candidates_name(universe),
    )
    clusters_key, sensitivity_key = clusters_name(sleeve), cluster_sensitivity_name(sleeve)
    rankings_key, vetoes_key, selection_key = rankings_name(sleeve), vetoes_name(sleeve), selection_name(sleeve)
    ranker = get_ranker(s.ranker.name)
    thresholds = ", ".join(f"{k} {v}" for k, v in s.clustering.thresholds.items())
    common = dict(ctx.spec_defaults, group_name="selection")
    specs = [
        AssetSpec(
            clusters_key,
            metadata=table_metadata("clusters"),
            kinds={"scipy", "parquet"},
            deps=[returns_key, regime_key, candidates_key],
            **common,
            description=f"Partitioning for `{sleeve}`: Ward clusters of `{universe}` on sqrt(0.5 (1 - rho)) "
            f"averaged over lookbacks {list(s.clustering.lookbacks)}, cut at the regime's threshold "
            f"({thresholds}), at most {s.clustering.max_clusters} clusters.",
        ),
        AssetSpec(
            sensitivity_key,
            metadata=table_metadata("cluster_sensitivity"),
            kinds={"scipy", "parquet"},
            deps=[returns_key, candidates_key],
            **common,
            description=f"How many clusters `{sleeve}`'s universe splits into as the distance threshold moves "
            f"0.10 -> 0.90: the evidence for choosing the regime thresholds ({thresholds}).",
        ),
        AssetSpec(
            rankings_key,
            metadata=table_metadata("rankings"),
            kinds={"numpy", "parquet"},
            deps=[features_key, regime_key, candidates_key],
            **common,
            description=f"Inference for `{sleeve}`: the `{s.ranker.name}` ranker over `{universe}`'s features, "
            f"oriented for {cfg.logic}/{cfg.direction} (rank 1 = best for this sleeve; a short ranks "
            f"the most bearish first).",
        ),
        AssetSpec(
            vetoes_key,
            metadata=table_metadata("vetoes"),
            kinds={"numpy", "parquet"},
            deps=[features_key, candidates_key],
            **common,
            description=f"Policy for `{sleeve}`: the filter chain {list(s.filters)} at strict thresholds, one "
            f"row per veto (symbol, filter, reason, value, threshold). Benchmarks are never vetoed.",
        ),
        AssetSpec(
            selection_key,
            metadata=table_metadata("selection"),
            kinds={"scipy", "parquet"},
            deps=[rankings_key, vetoes_key, clusters_key, features_key, returns_key, regime_key, candidates_key],
            **common,
            description=f"Recruitment and synthesis for `{sleeve}`: the best {s.top_n_per_cluster} non-vetoed "
            f"names per cluster (at most {s.max_winners}); below {s.min_winners} winners the "
            f"relaxation stages {list(s.relaxation.stages)} run in order and each winner records the "
            f"stage that picked it. Winners become atoms `SYMBOL|{cfg.logic}|{cfg.direction}` with "
            f"a sign.",
        ),
    ]
    checks = [
        AssetCheckSpec(
            "stages_consistent",
            asset=selection_key,
            blocking=True,
            description="Recruitment saw exactly the stored rankings, vetoes and clusters",
        )
    ]

    @ctx.step(f"funnel_{sleeve}", specs, checks)
    def funnel(context: AssetExecutionContext, lakehouse: LakehouseResource):
        run = Run.of(context, ctx, lakehouse.get())
        run.resume()  # the weekly update: only the dates whose inputs changed
        dates = run.dates
        panel, u = universe_view(run, universe, window_start(dates[0], lookbacks.prices_days))
        feats = features_by_date(run.read("features", features_key))
        regimes = regime_by_date(run.read("regime", regime_key))
        computed = {
            name: run.is_selected(name)
            for name in (clusters_key, sensitivity_key, rankings_key, vetoes_key, selection_key)
        }
        stored = {
            name: by_date(run.read(table, name))
            for name, table in ((clusters_key, "clusters"), (rankings_key, "rankings"), (vetoes_key, "vetoes"))
            if not computed[name] and computed[selection_key]
        }
        rows = {n: Rows() for n in (clusters_key, sensitivity_key, rankings_key, vetoes_key, selection_key)}

        def add(name: str, columns: dict[str, list]) -> None:
            rows[name].add(**columns)

        failures: dict[str, str] = {}
        winners: dict[dt.date, int] = {}
        stages: dict[str, int] = {}
        required = ranker.required_columns(s.ranker, cfg.logic)
        chain = s.build_filters()

        def decide(d: dt.date) -> tuple:
            """The pure part of a date (no IO, so it can run in a forked worker): clusters, sensitivity,
            ranking, strict filters and recruitment."""
            members = set(u.members[d])
            stored_view = feats.get(d)
            symbols = [x for x in (stored_view.symbols if stored_view else []) if x in members]
            view = subset(stored_view, symbols)
            X = dense_matrix(panel, u.rows[d], symbols)
            regime = check_regime(regimes[d])
            tree = (
                Dendrogram.of(X, s.clustering.lookbacks)
                if (
                    computed[clusters_key]
                    or computed[sensitivity_key]
                    or (computed[selection_key] and clusters_key not in stored)
                )
                else None
            )
            cut = None  # (labels, recut, lookbacks) when this date's clusters are computed
            if tree is not None and (computed[clusters_key] or clusters_key not in stored):
                labels, recut = tree.labels(s.clustering.thresholds[regime], s.clustering.max_clusters)
                cluster_of = dict(zip(symbols, labels.tolist()))
                cut = (labels.tolist(), recut, ",".join(map(str, tree.lookbacks)))
            else:
                frame = stored.get(clusters_key, {}).get(d, pd.DataFrame(columns=["symbol", "cluster"]))
                cluster_of = dict(zip(frame["symbol"], frame["cluster"].astype(int)))
            counts = (
                tree.counts(SENSITIVITY_THRESHOLDS).tolist() if tree is not None and computed[sensitivity_key] else None
            )
            n = len(symbols)
            ranking = (
                ranker.rank_view(view, s.ranker, cfg.logic, cfg.direction, regime) if n else Ranking([], np.zeros(0))
            )
            strict = run_filters(view, chain, cfg.direction, required=required) if n else []
            res = (
                funnel_view(view, cluster_of, regime, s, cfg.logic, cfg.direction, ranking=ranking, strict=strict)
                if computed[selection_key]
                else None
            )
            # the rankings' JSON detail column is text of this date's arrays alone: formatted here,
            # in the worker, rather than in the step's sequential part (about 1 s over the full history)
            details = [detail_json(ranking.extra, i) for i in range(n)] if computed[rankings_key] else None
            return symbols, regime, cut, counts, ranking, strict, res, details

        def record(d: dt.date, symbols, regime, cut, counts, ranking, strict, res, details) -> None:
            """The sequential part of a date: its rows and the stage consistency check."""
            n = len(symbols)
            if cut is not None and computed[clusters_key]:
                labels, recut, lookbacks_text = cut
                add(
                    clusters_key,
                    {
                        "rebalance_date": [d] * n,
                        "symbol": symbols,
                        "cluster": labels,
                        "threshold": [float(s.clustering.thresholds[regime])] * n,
                        "n_clusters": [len(set(labels))] * n,
                        "regime": [regime] * n,
                        "recut": [recut] * n,
                        "lookbacks": [lookbacks_text] * n,
                    },
                )
            if computed[sensitivity_key]:
                assert counts is not None  # computed with the tree whenever the sensitivity asset is selected
                add(
                    sensitivity_key,
                    {
                        "rebalance_date": [d] * len(SENSITIVITY_THRESHOLDS),
                        "threshold": list(SENSITIVITY_THRESHOLDS),
                        "n_clusters": counts,
                    },
                )
            if computed[rankings_key]:
                add(
                    rankings_key,
                    {
                        "rebalance_date": [d] * n,
                        "symbol": ranking.symbols,
                        "score": ranking.scores.tolist(),
                        "rank": list(range(1, n + 1)),
                        "ranker": [s.ranker.name] * n,
                        "detail": details,
                    },
                )
            if computed[vetoes_key]:
                add(
                    vetoes_key,
                    {
                        "rebalance_date": [d] * len(strict),
                        **{c: [r[j] for r in strict] for j, c in enumerate(VETO_COLUMNS)},
                    },
                )
            if computed[selection_key]:
                assert res is not None  # recruited whenever the selection is computed
                add(selection_key, {"rebalance_date": [d] * n, **res.selection_columns()})
                winners[d] = len(res.picked)
                for stage in res.picked.values():
                    stages[stage] = stages.get(stage, 0) + 1
                if stored:  # a stage read from storage must be what this recruitment would have computed
                    problem = stage_mismatch(
                        stored[rankings_key].get(d, pd.DataFrame(columns=["symbol", "rank"]))
                        if rankings_key in stored
                        else ranking.frame(),
                        stored[vetoes_key].get(d, pd.DataFrame(columns=VETO_COLUMNS))
                        if vetoes_key in stored
                        else veto_frame(strict),
                        res,
                        d,
                        rankings_key,
                        vetoes_key,
                    )
                    if problem:
                        failures[d.isoformat()] = problem

        with in_order(decide, dates, preload=[hierarchy.preload]) as decisions:
            for d, decided in zip(track(dates, f"funnel_{sleeve}"), decisions):
                if isinstance(decided, Raised):
                    raise decided.error
                record(d, *decided)

        def plain(k: str, p: pl.DataFrame) -> dict:
            return {"preview": preview(p)}

        def selection_facts(k: str, p: pl.DataFrame) -> dict:
            w = [winners[d] for d in run.periods.dates(k) if d in winners]
            return {
                "preview": preview(p.filter(pl.col("selected")) if p.height else p),
                "winners_mean": float(np.mean(w)) if w else 0.0,
                "winners_min": min(w, default=0),
                # a scarce universe: every stage ran and still fewer than min_winners were fit to pick
                "dates_below_min_winners": sum(1 for x in w if x < s.min_winners),
            }

        def sensitivity_facts(k: str, p: pl.DataFrame) -> dict:
            if not p.height:
                return plain(k, p)
            grid = p.pivot(on="rebalance_date", index="threshold", values="n_clusters").sort("threshold")
            cluster_counts = p["n_clusters"].to_list()  # ints (Series.min() is typed as any literal)
            caption = (
                f"Rows: thresholds {SENSITIVITY_THRESHOLDS[0]:.2f} (top) .. {SENSITIVITY_THRESHOLDS[-1]:.2f} "
                f"(bottom); columns: the {grid.width - 1} rebalance dates; colour: number of clusters "
                f"(min {min(cluster_counts)}, max {max(cluster_counts)})."
            )
            title = f"Clusters vs distance threshold, {sleeve}, {k}"
            return plain(k, p) | {
                "sensitivity": MetadataValue.md(heatmap_md(grid.drop("threshold").to_numpy(), title, caption))
            }

        def veto_facts(k: str, p: pl.DataFrame) -> dict:
            counts = dict(zip(*p.group_by("filter").len().get_columns())) if p.height else {}
            return plain(k, p) | {
                "vetoes_per_filter": MetadataValue.json({f_: int(counts.get(f_, 0)) for f_ in s.filters})
            }

        stages_check = check_result(
            "stages_consistent",
            selection_key,
            failures,
            len(dates),
            inputs="recomputed in this step" if not stored else "read from storage",
        )
        outputs = {
            clusters_key: ("clusters", plain, [], {}),
            sensitivity_key: ("cluster_sensitivity", sensitivity_facts, [], {}),
            rankings_key: ("rankings", plain, [], {}),
            vetoes_key: ("vetoes", veto_facts, [], {}),
            selection_key: (
                "selection",
                selection_facts,
                [stages_check],
                {"winners_by_stage": MetadataValue.json(stages)},
            ),
        }
        for name, (table, facts, checks, metadata) in outputs.items():
            if computed[name]:
                run.publish(
                    table,
                    name,
                    rows[name].frame(),
                    identity={"sleeve": sleeve},
                    per_partition=facts,
                    checks=checks,
                    metadata=metadata,
                )
        yield from run.results()

    return funnel
