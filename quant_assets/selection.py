"""The selection funnel, thin but honest: rank, cluster, veto, pick winners.

Ranking is direction-aware (a short sleeve ranks the most bearish first: domain-spec §10.2).
Clustering is Ward linkage on the correlation distance sqrt(0.5 (1 - rho)). Vetoes are the
predictability filters (entropy ceiling, efficiency floor). Winners are the top names per
cluster; when too few survive, the cluster cap and then the vetoes are relaxed, and every winner
records which stage picked it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from quant_assets.manifest import Sleeve

SELECTION_COLUMNS = ["symbol", "direction", "score", "rank", "cluster", "vetoed", "veto_reason",
                     "selected", "selected_by"]


def correlation_clusters(returns: pd.DataFrame, threshold: float) -> pd.Series:
    """Flat Ward clusters (1-based labels) cut at `threshold` on d = sqrt(0.5 (1 - rho))."""
    n = returns.shape[1]
    if n < 2:
        return pd.Series(np.ones(n, dtype=int), index=returns.columns)
    corr = np.corrcoef(returns.to_numpy(), rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)
    dist = np.sqrt(np.clip(0.5 * (1.0 - corr), 0.0, 1.0))
    np.fill_diagonal(dist, 0.0)
    link = linkage(squareform(dist, checks=False), method="ward")
    return pd.Series(fcluster(link, t=threshold, criterion="distance"), index=returns.columns)


def sleeve_score(features: pd.DataFrame, sleeve: Sleeve) -> pd.Series:
    """Higher is better for this sleeve's logic *and* direction."""
    if sleeve.logic == "trend":
        raw = features["momentum"]
    elif sleeve.logic == "reversion":
        raw = -features["return_20d"]  # the biggest recent losers revert up
    else:  # pragma: no cover - the manifest only admits the logics above
        raise ValueError(f"unknown logic {sleeve.logic!r}")
    return raw if sleeve.direction == "long" else -raw


def select(features: pd.DataFrame, returns: pd.DataFrame, sleeve: Sleeve) -> pd.DataFrame:
    """One row per symbol with a feature row: its score, rank, cluster, veto and whether it won."""
    params = sleeve.selection
    direction = sleeve.direction.upper()
    symbols = [s for s in features.index if s in returns.columns]
    if not symbols:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    feats = features.loc[symbols]
    score = sleeve_score(feats, sleeve)
    order = score.sort_values(ascending=False, kind="mergesort").index  # NaN scores rank last
    rank = pd.Series(np.arange(1, len(order) + 1), index=order)
    clusters = correlation_clusters(returns[symbols], params.cluster_threshold)

    veto = pd.Series("", index=symbols, dtype=object)
    veto[feats[["momentum", "entropy", "efficiency", "return_20d"]].isna().any(axis=1)] = "missing_features"
    veto[(veto == "") & (feats["entropy"] > params.entropy_max)] = "entropy_above_max"
    veto[(veto == "") & (feats["efficiency"] < params.efficiency_min)] = "efficiency_below_min"
    vetoed = veto != ""

    picked: dict[str, str] = {}
    eligible = [s for s in order if not vetoed[s]]
    per_cluster: dict[int, int] = {}
    for s in eligible:  # stage 1: best names per cluster
        c = int(clusters[s])
        if per_cluster.get(c, 0) < params.top_n_per_cluster and len(picked) < params.max_winners:
            picked[s] = "cluster_top_n"
            per_cluster[c] = per_cluster.get(c, 0) + 1
    for stage, pool in (("relaxed_cluster_cap", eligible), ("relaxed_veto", list(order))):
        for s in pool:  # stages 2-3: fill up to min_winners from the global ranking
            if len(picked) >= min(params.min_winners, len(order)):
                break
            if s not in picked and not pd.isna(score[s]):
                picked[s] = stage

    out = pd.DataFrame({
        "symbol": symbols,
        "direction": direction,
        "score": score.reindex(symbols).to_numpy(dtype=float),
        "rank": rank.reindex(symbols).to_numpy(dtype=int),
        "cluster": clusters.reindex(symbols).to_numpy(dtype=int),
        "vetoed": vetoed.to_numpy(dtype=bool),
        "veto_reason": veto.to_numpy(dtype=object),
        "selected": [s in picked for s in symbols],
        "selected_by": [picked.get(s, "") for s in symbols],
    })
    return out.sort_values("rank").reset_index(drop=True)


def atom_id(symbol: str, logic: str, direction: str) -> str:
    """Strategy atom id. Never parsed back: the symbol travels in its own column (§10.27)."""
    return f"{symbol}|{logic}|{direction.lower()}"


def synthetic_long(returns: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The stream an optimiser sees: r for longs, -min(r, 1) for shorts (loss capped at -100%)."""
    if direction.lower() == "long":
        return returns
    return -returns.clip(upper=1.0)
