"""Lakehouse table schemas: one declaration per table, used to write, to read and to show in the UI.

Two kinds of rows, both carrying the identifying columns of the asset that wrote them (universe /
sleeve / meta / risk), so a view over a whole table can be filtered like any other relation:

* decisions and their inputs per rebalance date carry ``rebalance_date`` (weights, selections,
  features, health verdicts, ...);
* daily data carries ``date`` only and is stored once per day (prices, returns, the children's
  streams of a meta); a stream that belongs to a holding period also says which rebalance date it
  belongs to (``rebalance_date``: the period (previous date, rebalance_date]).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from quant_assets.data.connectors.store import LISTING_SCHEMA, LOG_SCHEMA
from quant_assets.selection.features import FEATURE_COLUMNS

D, S, F, I, B = pl.Date, pl.Utf8, pl.Float64, pl.Int64, pl.Boolean  # noqa: E741  (a column-type shorthand)


@dataclass(frozen=True)
class Table:
    description: str
    schema: dict[str, pl.DataType | type[pl.DataType]]  # a dtype class (pl.Date) or instance
    optional: tuple[str, ...] = ()  # columns a writer may leave out (stored as nulls)


TABLES: dict[str, Table] = {
    "candidates": Table(
        "Symbols a universe's source lists as of the rebalance date (standard candidate schema).",
        {
            "rebalance_date": D,
            "universe": S,
            "symbol": S,
            "ticker": S,
            "exchange": S,
            "asset_type": S,
            "sector": S,
            "direction": S,
            "first_date": D,
            "metadata": S,
            "is_benchmark": B,
        },
    ),
    "prices": Table(
        "Daily bars, one row per symbol and session, stored once in the partition of its date "
        "(the calendar's first partition also holds the warm-up history its first window needs). "
        "open, high, low and volume are null when the source has closes only.",
        {"universe": S, "date": D, "symbol": S, "open": F, "high": F, "low": F, "close": F, "volume": F},
        optional=("open", "high", "low", "volume"),
    ),
    "bars": Table(
        "A connector's ingest store: every bar fetched from the vendor, one file per symbol (partition = "
        "symbol). The universes read their prices from here, never from the network.",
        {"source": S, "symbol": S, "date": D, "open": F, "high": F, "low": F, "close": F, "volume": F},
    ),
    "ingest_log": Table(
        "One row per symbol and sync of a connector source: what was asked of the vendor, what came back, "
        "the days covered since, and the error of a failed symbol (retried by the next sync).",
        LOG_SCHEMA,
    ),
    "listings": Table(
        "Every listing a connector's venue has shown (a snapshot per sync, merged): the symbol, the vendor's "
        "ticker, the 24 h value traded and rank of the last snapshot, first and last seen.",
        LISTING_SCHEMA,
    ),
    "returns": Table(
        "Simple close-to-close daily returns (no forward fill: a missing close voids two returns), one row "
        "per symbol and session. What an optimiser saw on D: these rows over the window, for the symbols "
        "`returns_health` kept on D, on the dates every kept symbol traded.",
        {"universe": S, "date": D, "symbol": S, "ret": F},
    ),
    "returns_health": Table(
        "One row per candidate: kept or excluded by the health policy, with the reason and the value.",
        {
            "rebalance_date": D,
            "universe": S,
            "symbol": S,
            "status": S,
            "reason": S,
            "value": F,
            "threshold": F,
            "n_obs": I,
        },
    ),
    "features": Table(
        "Per-symbol features of the trailing returns window (definitions in features.py).",
        {"rebalance_date": D, "universe": S, "symbol": S, **{c: F for c in FEATURE_COLUMNS}},
    ),
    "regime": Table(
        "The universe's regime reading: score, label (QUIET / NORMAL / TURBULENT / CRISIS) and its components.",
        {
            "rebalance_date": D,
            "universe": S,
            "score": F,
            "label": S,
            "vol_ratio": F,
            "vol_level": F,
            "turbulence": F,
            "vol_clustering": F,
            "entropy": F,
            "hurst": F,
            "adf_pvalue": F,
            "kurtosis": F,
            "n_obs": I,
        },
    ),
    "clusters": Table(
        "Partitioning: each recruitable symbol's Ward cluster, the regime threshold used and the lookbacks.",
        {
            "rebalance_date": D,
            "sleeve": S,
            "symbol": S,
            "cluster": I,
            "threshold": F,
            "n_clusters": I,
            "regime": S,
            "recut": B,
            "lookbacks": S,
        },
    ),
    "cluster_sensitivity": Table(
        "Number of clusters per distance threshold 0.10 .. 0.90 (no ceiling).",
        {"rebalance_date": D, "sleeve": S, "threshold": F, "n_clusters": I},
    ),
    "rankings": Table(
        "Inference: every recruitable symbol's score and rank for the sleeve (1 = best); `detail` holds the "
        "ranker's own columns as JSON (per-feature probabilities for mps, quadrant for regime_fit).",
        {"rebalance_date": D, "sleeve": S, "symbol": S, "score": F, "rank": I, "ranker": S, "detail": S},
    ),
    "vetoes": Table(
        "Policy: one row per veto of the strict filter chain.",
        {"rebalance_date": D, "sleeve": S, "symbol": S, "filter": S, "reason": S, "value": F, "threshold": F},
    ),
    "selection": Table(
        "Recruitment and synthesis: every candidate with its rank, cluster, first strict veto, whether it won, "
        "the stage that picked it, and its strategy atom (id and sign).",
        {
            "rebalance_date": D,
            "sleeve": S,
            "symbol": S,
            "direction": S,
            "score": F,
            "rank": I,
            "cluster": I,
            "vetoed": B,
            "veto_reason": S,
            "selected": B,
            "selected_by": S,
            "atom_id": S,
            "sign": I,
        },
    ),
    "tournament_weights": Table(
        "Every contender's weights (engine x profile) of a sleeve per rebalance date, with the profile used.",
        {
            "rebalance_date": D,
            "sleeve": S,
            "engine": S,
            "profile": S,
            "atom_id": S,
            "symbol": S,
            "weight": F,
            "profile_used": S,
        },
    ),
    "tournament_returns": Table(
        "Every contender's out-of-sample daily returns, wealth carried across dates.",
        {
            "rebalance_date": D,
            "sleeve": S,
            "engine": S,
            "profile": S,
            "date": D,
            "net_return": F,
            "turnover": F,
            "wealth": F,
            "bankrupt": B,
        },
    ),
    "sleeve_weights": Table(
        "Optimised atom weights (long-only on synthetic-long streams) and signed physical net weights.",
        {
            "rebalance_date": D,
            "sleeve": S,
            "risk": S,
            "atom_id": S,
            "symbol": S,
            "direction": S,
            "weight": F,
            "net_weight": F,
            "cluster": I,
            "engine": S,
            "profile_used": S,
        },
    ),
    "sleeve_returns": Table(
        "Out-of-sample daily returns earned by the previous rebalance's weights, net of friction.",
        {
            "rebalance_date": D,
            "sleeve": S,
            "risk": S,
            "date": D,
            "gross_return": F,
            "cost": F,
            "net_return": F,
            "turnover": F,
            "wealth": F,
            "bankrupt": B,
            "weights_date": D,
        },
    ),
    "meta_returns": Table(
        "Each child's daily out-of-sample stream, side by side, one row per child and day (stored once, with the "
        "rebalance date whose holding period the day belongs to). The matrix a meta optimises on D is the rows "
        "of the periods in its trailing window, inner-joined on dates.",
        {"rebalance_date": D, "meta": S, "risk": S, "date": D, "child": S, "ret": F},
    ),
    "meta_weights": Table(
        "Allocation across a meta's children after fallback and bounded-simplex projection.",
        {
            "rebalance_date": D,
            "meta": S,
            "risk": S,
            "child": S,
            "child_kind": S,
            "weight": F,
            "raw_weight": F,
            "cluster": I,
            "engine": S,
            "profile_used": S,
            "outcome": S,
            "status": S,
            "vetoed": S,
            "success_share": F,
        },
    ),
    "meta_cluster_tree": Table(
        "The uncollapsed tree at one meta level: clusters, their weights, children and intra weights.",
        {
            "rebalance_date": D,
            "meta": S,
            "risk": S,
            "node": S,
            "parent": S,
            "level": I,
            "kind": S,
            "weight": F,
            "intra_weight": F,
            "ref": S,
        },
    ),
    "meta_portfolio_returns": Table(
        "The meta's own out-of-sample daily returns: previous weights x children's realised streams.",
        {"rebalance_date": D, "meta": S, "risk": S, "date": D, "ret": F, "weights_date": D},
    ),
    "flattened_weights": Table(
        "Physical symbols only: signed net weight, long and short gross kept apart, path count.",
        {
            "rebalance_date": D,
            "meta": S,
            "risk": S,
            "symbol": S,
            "net_weight": F,
            "long_weight": F,
            "short_weight": F,
            "n_paths": I,
            "contributors": S,
        },
    ),
    "flattened_contributions": Table(
        "Every root-to-atom path: the product of weights along it and its signed contribution.",
        {
            "rebalance_date": D,
            "meta": S,
            "risk": S,
            "symbol": S,
            "path": S,
            "sleeve": S,
            "atom_id": S,
            "direction": S,
            "path_weight": F,
            "sleeve_weight": F,
            "contribution": F,
        },
    ),
    "rebalance_orders": Table(
        "Orders from the last implemented weights to the flattened target: side-aware legs, dust skipped.",
        {
            "rebalance_date": D,
            "meta": S,
            "risk": S,
            "symbol": S,
            "implemented": F,
            "target": F,
            "drift": F,
            "action": S,
            "size": F,
            "status": S,
            "implemented_as_of": D,
        },
    ),
    "meta_report": Table(
        "The markdown report of a meta lens as of the last rebalance date of each partition (any other "
        "date: `quant-assets report META RISK DATE`).",
        {"rebalance_date": D, "meta": S, "risk": S, "markdown": S},
    ),
}
