"""The meta layer's maths: aggregate children's streams, build the cluster tree, flatten to symbols.

Pure functions over pandas objects; the Dagster assets in `assets/meta.py` only read, call these
and write. Flattening works on *contribution rows* (one per root-to-atom path) so that nesting is
just "scale the child's rows by the child's weight and prefix the path", at any depth, and every
physical weight stays traceable to the paths that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quant_assets.optimise import optimise, project_bounded_simplex
from quant_assets.selection import correlation_clusters

FLAT_STD = 1e-12

CONTRIBUTION_COLUMNS = ["symbol", "path", "sleeve", "atom_id", "direction", "path_weight",
                        "sleeve_weight", "contribution"]


def _utc_index(s: pd.Series) -> pd.Series:
    idx = pd.DatetimeIndex(s.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return pd.Series(s.to_numpy(), index=idx.normalize(), name=s.name)


def aggregate(streams: dict[str, pd.Series], join: str = "inner") -> tuple[pd.DataFrame, dict]:
    """Children's daily returns side by side. Inner join keeps the dates every child has.

    Indexes are normalised to UTC first: joining tz-naive with tz-aware dates silently empties an
    inner join (domain-spec §10.11). Returns the matrix and the join's bookkeeping.
    """
    if join not in ("inner", "outer"):
        raise ValueError(f"join must be 'inner' or 'outer', got {join!r}")
    cols = {name: _utc_index(s) for name, s in streams.items()}
    for name, s in cols.items():
        if s.index.duplicated().any():
            raise ValueError(f"stream {name!r} has duplicated dates: {s.index[s.index.duplicated()][:3].tolist()}")
    if not cols:
        return pd.DataFrame(), {"union_days": 0, "kept_days": 0, "lost_share": 0.0}
    frame = pd.concat(cols, axis=1, join=join).sort_index()
    union = len(pd.concat(cols, axis=1, join="outer"))
    info = {"union_days": union, "kept_days": len(frame),
            "lost_share": (1 - len(frame) / union) if union else 0.0}
    return frame, info


def sleeve_contributions(sleeve: str, weights: pd.DataFrame) -> pd.DataFrame:
    """A sleeve's own contribution rows: path = sleeve, path weight 1, signed by direction."""
    if weights.empty:
        return pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    sign = np.where(weights["direction"].str.upper() == "SHORT", -1.0, 1.0)
    return pd.DataFrame({
        "symbol": weights["symbol"].to_numpy(),
        "path": sleeve,
        "sleeve": sleeve,
        "atom_id": weights["atom_id"].to_numpy(),
        "direction": weights["direction"].str.upper().to_numpy(),
        "path_weight": 1.0,
        "sleeve_weight": weights["weight"].to_numpy(dtype=float),
        "contribution": sign * weights["weight"].to_numpy(dtype=float),
    })


def flatten(meta: str, child_weights: pd.Series, child_rows: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Contribution rows of `meta`: each child's rows scaled by the child's weight, path prefixed.

    `child_rows[c]` are the child's contribution rows (a sleeve's from `sleeve_contributions`, a
    child meta's from its own `flatten`). path_weight is the product of meta weights along the
    path; contribution = path_weight x sleeve_weight x sign.
    """
    parts = []
    for child, w in child_weights.items():
        rows = child_rows.get(child)
        if rows is None or rows.empty or w == 0:
            continue
        scaled = rows.copy()
        scaled["path"] = meta + "/" + scaled["path"]
        scaled["path_weight"] = scaled["path_weight"] * w
        scaled["contribution"] = scaled["contribution"] * w
        parts.append(scaled)
    if not parts:
        return pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONTRIBUTION_COLUMNS]


def net_by_symbol(contributions: pd.DataFrame, min_abs: float = 0.0) -> pd.DataFrame:
    """Physical view: signed net weight per symbol, long and short gross kept apart."""
    cols = ["symbol", "net_weight", "long_weight", "short_weight", "n_paths", "contributors"]
    if contributions.empty:
        return pd.DataFrame(columns=cols)
    c = contributions
    grouped = c.groupby("symbol", sort=False)
    out = pd.DataFrame({
        "net_weight": grouped["contribution"].sum(),
        "long_weight": c["contribution"].clip(lower=0).groupby(c["symbol"], sort=False).sum(),
        "short_weight": (-c["contribution"].clip(upper=0)).groupby(c["symbol"], sort=False).sum(),
        "n_paths": grouped.size(),
        "contributors": grouped[["path", "contribution"]].apply(
            lambda g: "; ".join(f"{p} {v:+.4f}" for p, v in
                                sorted(zip(g["path"], g["contribution"]), key=lambda t: -abs(t[1])))),
    }).reset_index()
    out = out[out["net_weight"].abs() >= min_abs] if min_abs > 0 else out
    return out.reindex(out["net_weight"].abs().sort_values(ascending=False).index).reset_index(drop=True)[cols]


def child_clusters(weights: pd.Series, returns: pd.DataFrame, threshold: float = 0.5) -> pd.Series:
    """Correlation cluster (1-based) of each child; children without enough data get their own."""
    usable = [c for c in weights.index if c in returns.columns]
    clean = returns[usable].dropna() if usable else returns.iloc[0:0]
    if len(usable) >= 2 and len(clean) >= 3:
        labels = correlation_clusters(clean, threshold).reindex(weights.index)
        free = iter(range(int(labels.max()) + 1, int(labels.max()) + 1 + len(weights)))
        return labels.apply(lambda v: int(v) if pd.notna(v) else next(free)).astype(int)
    return pd.Series(np.arange(1, len(weights) + 1), index=weights.index)


def cluster_tree(meta: str, weights: pd.Series, returns: pd.DataFrame, threshold: float,
                 refs: dict[str, str]) -> pd.DataFrame:
    """The uncollapsed tree at one level: meta -> correlation clusters of children -> children.

    Child rows carry their intra-cluster weight and a `ref` to the child's own artefact (a child
    meta's tree, a sleeve's weights), so nested levels are linked by reference, not copied.
    """
    labels = child_clusters(weights, returns, threshold)
    rows = [{"node": meta, "parent": "", "level": 0, "kind": "meta", "weight": float(weights.sum()),
             "intra_weight": 1.0, "ref": ""}]
    for label in sorted(labels.unique()):
        members = labels.index[labels == label]
        cw = float(weights[members].sum())
        node = f"{meta}/cluster_{label}"
        rows.append({"node": node, "parent": meta, "level": 1, "kind": "cluster", "weight": cw,
                     "intra_weight": 1.0, "ref": ""})
        for child in members:
            rows.append({"node": child, "parent": node, "level": 2, "kind": "child",
                         "weight": float(weights[child]),
                         "intra_weight": float(weights[child] / cw) if cw > 0 else 0.0,
                         "ref": refs.get(child, "")})
    return pd.DataFrame(rows)


def success_share(outcomes: list[bool]) -> float:
    """Share of successful optimisations (NaN when there is nothing to judge)."""
    return float(np.mean(outcomes)) if outcomes else float("nan")


def health_vetoes(matrix: pd.DataFrame, shares: dict[str, float], threshold: float) -> dict[str, str]:
    """Children to veto at this date, with the reason (domain-spec §6.3).

    A child is vetoed when its share of successful optimisations over the window is below
    `threshold`, when its stream is flat (no investable data: a sleeve sitting in cash), or when it
    has no stream in the window while other children do.
    """
    vetoed: dict[str, str] = {}
    has_data = [c for c in matrix.columns if matrix[c].notna().any()]
    for child in matrix.columns:
        col = matrix[child].dropna()
        share = shares.get(child, float("nan"))
        if col.empty and has_data:  # nobody has data yet is a history question, not a health one
            vetoed[child] = "no stream in the window"
        elif len(col) >= 2 and col.std(ddof=0) <= FLAT_STD:
            vetoed[child] = "flat stream: no investable data in the window"
        elif not np.isnan(share) and share < threshold:
            vetoed[child] = f"optimisation success {share:.0%} < {threshold:.0%} over the window"
    return vetoed


@dataclass
class MetaAllocation:
    """A meta's weights at one date and how they were produced."""

    weights: pd.Series
    raw: pd.Series
    engine: str
    profile_used: str
    status: str
    vetoed: dict[str, str] = field(default_factory=dict)
    bounds: tuple[float, float] = (0.0, 1.0)


def allocate(matrix: pd.DataFrame, *, profile: str, engine: str, chain: tuple[str, ...], lower: float,
             upper: float, min_history: int, vetoed: dict[str, str]) -> MetaAllocation:
    """Optimise across the healthy children, then project onto the manifest's bounds.

    Vetoed children get exactly 0 and the rest are re-normalised. If the survivors cannot reach
    1 under `upper` (2 children, max 0.9, one vetoed), the cap is relaxed to 1/n and said so.
    With every child vetoed the meta falls back to equal weight, flagged in the status.
    """
    names = list(matrix.columns)
    live = [c for c in names if c not in vetoed]
    notes = [f"vetoed {c} ({r})" for c, r in vetoed.items()]
    if not live:
        w = pd.Series(1.0 / len(names), index=names)
        return MetaAllocation(w, w.copy(), "platform", "equal_weight",
                              "equal_weight: every child vetoed; " + "; ".join(notes), dict(vetoed), (0.0, 1.0))
    if len(matrix) < min_history:
        raw = pd.Series(1.0 / len(live), index=live)
        eng, used, status = "platform", "equal_weight", f"equal_weight: {len(matrix)} < {min_history} days of history"
    else:
        result = optimise(matrix[live], profile, engine=engine, chain=chain)
        raw, eng, used = result.weights.reindex(live).fillna(0.0), result.engine, result.profile_used
        status = "optimised" if not result.fallback_used else f"fallback: {result.chain_text()}"
    lo, hi = lower, max(upper, 1.0 / len(live))
    if hi != upper:
        notes.append(f"max weight relaxed to {hi:.4f} for {len(live)} healthy children")
    weights = pd.Series(0.0, index=names)
    weights[live] = project_bounded_simplex(raw.to_numpy(), lo, hi)
    full_raw = raw.reindex(names).fillna(0.0)
    return MetaAllocation(weights, full_raw, eng, used, "; ".join([status, *notes]), dict(vetoed), (lo, hi))
