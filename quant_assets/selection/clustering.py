"""Partitioning (funnel stage 4): Ward clusters on the correlation distance d = sqrt(0.5 (1 - rho)).

The distance is averaged over every lookback that fits the window, so a cluster reflects co-movement
that holds at several horizons rather than one noisy estimate. The cut threshold
depends on the market regime: in a crisis correlations rise, so a tighter cut keeps more groups apart.
Pearson correlation is used (the reference's "robust" zero-as-missing variant is an option of the reference);
undefined correlations (flat columns, too few overlapping rows) count as 0, i.e. unrelated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quant_assets.selection.hierarchy import condensed, fcluster
from quant_assets.selection.hierarchy import linkage as ward_linkage
from quant_assets.selection.regime import REGIME_LABELS as REGIMES  # the detector owns the labels


def check_regime(regime: str) -> str:
    """The regime label, validated: an unknown label is a wiring bug, not a reason to guess."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIMES)}")
    return regime


class ClusteringSettings(BaseModel):
    """Ward clustering parameters (defaults: Ward on the correlation distance, lookbacks 60/120/200)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookbacks: tuple[int, ...] = Field(
        (60, 120, 200), min_length=1, description="Correlation windows (rows); those longer than the data are skipped"
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"CRISIS": 0.3, "TURBULENT": 0.35, "NORMAL": 0.4, "QUIET": 0.5},
        description="Ward distance cut per regime; tighter in stress, when correlations converge",
    )
    max_clusters: int = Field(25, ge=1, description="More flat clusters than this -> re-cut with maxclust")

    @field_validator("lookbacks")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(lb < 2 for lb in v):
            raise ValueError(f"lookbacks must be >= 2 rows, got {list(v)}")
        return tuple(sorted(set(v)))

    @field_validator("thresholds")
    @classmethod
    def _all_regimes(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != set(REGIMES):
            raise ValueError(f"thresholds needs exactly the regimes {list(REGIMES)}, got {sorted(v)}")
        if any(not 0 < t for t in v.values()):
            raise ValueError(f"thresholds must be > 0, got {v}")
        return v


@dataclass(frozen=True)
class ClusterResult:
    labels: pd.Series  # symbol -> 1-based cluster id, numbered by first appearance in column order
    threshold: float
    n_clusters: int
    lookbacks: tuple[int, ...]  # the windows actually averaged (the full window if none fit)
    recut: bool = False  # True when the max_clusters ceiling forced a maxclust cut


def pearson(X: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns of a dense (rows x columns) array; NaN where a column is flat."""
    X = np.asarray(X, dtype=float)
    Xc = X - X.mean(axis=0)
    ss = (Xc * Xc).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (Xc.T @ Xc) / np.sqrt(np.outer(ss, ss))
    return corr


def distance_matrix(X: np.ndarray, lookbacks: tuple[int, ...] | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Mean of sqrt(0.5 (1 - rho)) over the lookbacks that fit the rows of a dense (dates x symbols) array;
    symmetric, zero diagonal, undefined rho (a flat column, fewer than 2 rows) -> 0 (unrelated)."""
    n_rows = X.shape[0]
    used = tuple(lb for lb in (lookbacks or ()) if lb <= n_rows) or (n_rows,)
    dists = []
    for lb in used:
        corr = pearson(X[n_rows - lb :]) if lb >= 2 else np.full((X.shape[1], X.shape[1]), np.nan)
        corr = np.nan_to_num(corr, nan=0.0)
        dists.append(np.sqrt(np.clip(0.5 * (1.0 - corr), 0.0, 1.0)))
    dist = np.mean(dists, axis=0)
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return dist, used


def correlation_distance(
    returns: pd.DataFrame, lookbacks: tuple[int, ...] | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """`distance_matrix` of a returns frame (columns = symbols)."""
    return distance_matrix(returns.to_numpy(dtype=float), lookbacks)


def _renumber(raw: np.ndarray) -> np.ndarray:
    """1-based labels in order of first appearance, so equal partitions always get equal labels."""
    seen: dict[int, int] = {}
    return np.array([seen.setdefault(int(v), len(seen) + 1) for v in raw], dtype=int)


@dataclass(frozen=True)
class Dendrogram:
    """The Ward tree of one window: cut it at any threshold without re-linking."""

    link: np.ndarray | None  # scipy linkage (None with fewer than 2 columns)
    n: int
    lookbacks: tuple[int, ...]

    @classmethod
    def of(cls, X: np.ndarray, lookbacks: tuple[int, ...] | None = None) -> Dendrogram:
        n = X.shape[1]
        if n < 2:
            return cls(None, n, tuple(lookbacks or ()))
        dist, used = distance_matrix(X, lookbacks)
        return cls(ward_linkage(condensed(dist), "ward"), n, used)

    def labels(self, threshold: float, max_clusters: int | None = None) -> tuple[np.ndarray, bool]:
        """1-based labels by first appearance, and whether the max_clusters ceiling forced a re-cut."""
        if self.link is None:
            return np.ones(self.n, dtype=int), False
        raw = fcluster(self.link, t=threshold, criterion="distance")
        recut = max_clusters is not None and len(set(raw)) > max_clusters
        if max_clusters is not None and recut:
            raw = fcluster(self.link, t=max_clusters, criterion="maxclust")
        return _renumber(raw), bool(recut)

    def counts(self, thresholds) -> np.ndarray:
        """Clusters at each distance cut: n minus the merges at or below it (Ward heights are monotone)."""
        t = np.asarray(thresholds, dtype=float)
        if self.link is None:
            return np.full(len(t), self.n, dtype=int)
        heights = np.sort(self.link[:, 2])
        return self.n - np.searchsorted(heights, t, side="right")


def cut(
    returns: pd.DataFrame, threshold: float, lookbacks: tuple[int, ...] | None = None, max_clusters: int | None = None
) -> ClusterResult:
    """Ward clusters of the columns cut at `threshold`; re-cut with maxclust above `max_clusters`."""
    cols = list(returns.columns)
    tree = Dendrogram.of(returns.to_numpy(dtype=float), lookbacks)
    labels, recut = tree.labels(threshold, max_clusters)
    series = pd.Series(labels, index=cols)
    return ClusterResult(series, float(threshold), int(series.nunique()), tree.lookbacks, recut)


def cluster(returns: pd.DataFrame, settings: ClusteringSettings, regime: str) -> ClusterResult:
    """The regime's Ward partition of the returns' columns."""
    threshold = settings.thresholds[check_regime(regime)]
    return cut(returns, threshold, settings.lookbacks, settings.max_clusters)


SENSITIVITY_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.10, 0.9001, 0.05), 2))


def threshold_sensitivity(returns: pd.DataFrame, settings: ClusteringSettings, thresholds=None) -> pd.DataFrame:
    """How many clusters each distance cut gives (no max_clusters ceiling): to choose thresholds."""
    thresholds = [float(t) for t in (SENSITIVITY_THRESHOLDS if thresholds is None else thresholds)]
    tree = Dendrogram.of(returns.to_numpy(dtype=float), settings.lookbacks)
    return pd.DataFrame({"threshold": thresholds, "n_clusters": tree.counts(thresholds)})


def correlation_clusters(returns: pd.DataFrame, threshold: float) -> pd.Series:
    """Flat Ward clusters of the whole window cut at `threshold` (single lookback)."""
    return cut(returns, threshold).labels
