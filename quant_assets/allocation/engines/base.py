"""The engine interface (request in, weights + diagnostics out) and the math every engine shares.

An engine gets an `EngineRequest` holding a *clean* returns array (finite, no zero-variance
column, no duplicated label: `optimise` guarantees it) and answers one profile with long-only
weights summing to 1 plus a diagnostics dict (variant, solver, ...). It raises on anything it
cannot do (`UnsupportedProfile` for a profile or option it lacks); `optimise` records the reason
and moves down the fallback chain, and checks every answer, because riskfolio and PyPortfolioOpt
return NaN or partial weights without raising.

Everything here is numpy: `optimise` sits inside walk-forward loops where pandas overhead per call
would cost more than the HRP kernel itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quant_assets.selection.rankers import average_ranks

if TYPE_CHECKING:  # pragma: no cover
    from quant_assets.allocation.optimise import RiskConfig


class UnsupportedProfile(NotImplementedError):
    """The engine lacks this profile or option; the fallback chain moves on and records why."""


class EngineRequest:
    """One optimisation problem. Covariance, means and CVaR are computed once and cached."""

    __slots__ = (
        "profile",
        "X",
        "columns",
        "config",
        "regime",
        "clusters",
        "antifragility",
        "momentum",
        "benchmark",
        "notes",
        "_cov",
        "_mu",
        "_cvar",
    )

    def __init__(
        self,
        profile: str,
        X: np.ndarray,
        columns: list,
        config: RiskConfig,
        regime: str = "NORMAL",
        clusters: np.ndarray | None = None,
        antifragility: np.ndarray | None = None,
        momentum: np.ndarray | None = None,
        benchmark: np.ndarray | None = None,
    ) -> None:
        self.profile, self.X, self.columns, self.config, self.regime = profile, X, columns, config, regime
        self.clusters, self.antifragility, self.momentum = clusters, antifragility, momentum
        self.benchmark = benchmark  # the universe's benchmark returns on the same rows (market neutral)
        self.notes: dict[str, Any] = {}  # how shared inputs were produced (shrinkage used, ...) -> provenance
        self._cov: np.ndarray | None = None
        self._mu: np.ndarray | None = None
        self._cvar: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.X.shape[1]

    def cov(self) -> np.ndarray:
        if self._cov is None:
            cfg = self.config
            if cfg.condition_number_max is not None:  # shrinks the unshrunk estimate itself
                self._cov, used, kappa = shrink_to_condition(
                    covariance(self.X, cfg.covariance), cfg.shrinkage, cfg.condition_number_max
                )
                self.notes.update(shrinkage_used=used, condition_number=round(kappa, 3))
            else:
                self._cov = covariance(self.X, cfg.covariance, cfg.shrinkage)
        return self._cov

    def betas(self) -> np.ndarray:
        """Each column's beta to the benchmark, cov / var; 1.0 with fewer than 10 observations (too few
        to estimate, and 1.0 keeps a market-neutral bound conservative)."""
        if self.benchmark is None:
            raise ValueError("market neutral needs the universe's benchmark returns (none given)")
        b = self.benchmark
        ok = np.isfinite(b)
        if ok.sum() < 10 or np.var(b[ok], ddof=1) <= 0:
            return np.ones(self.n)
        X, b = self.X[ok], b[ok]
        return ((X - X.mean(axis=0)).T @ (b - b.mean()) / (len(b) - 1)) / np.var(b, ddof=1)

    def beta_bound(self) -> float:
        bound = self.config.beta_bound
        return bound if bound is not None else (0.05 if self.n >= 15 else 0.15)

    def mu(self) -> np.ndarray:
        if self._mu is None:
            self._mu = self.X.mean(axis=0)
        return self._mu

    def cvar(self) -> np.ndarray:
        """|historical CVaR| per asset at config.cvar_alpha (mean of the worst (1 - alpha) tail)."""
        if self._cvar is None:
            T = self.X.shape[0]
            k = max(1, int(np.ceil((1.0 - self.config.cvar_alpha) * T)))
            self._cvar = np.abs(np.sort(self.X, axis=0)[:k].mean(axis=0))
        return self._cvar

    def labels(self) -> np.ndarray:
        """Cluster labels; without them every asset is its own cluster."""
        return np.arange(self.n) if self.clusters is None else self.clusters

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.X, columns=self.columns)

    def subset(self, idx: np.ndarray, profile: str) -> EngineRequest:
        sub = EngineRequest(
            profile,
            self.X[:, idx],
            [self.columns[i] for i in idx],
            self.config,
            self.regime,
            None if self.clusters is None else self.clusters[idx],
            None if self.antifragility is None else self.antifragility[idx],
            None if self.momentum is None else self.momentum[idx],
        )
        if self._cov is not None:
            sub._cov = self._cov[np.ix_(idx, idx)]
        sub.benchmark, sub.notes = self.benchmark, self.notes
        return sub


@dataclass
class EngineOutput:
    weights: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """An optimiser backend: `run` turns a request (profile, clean returns array, risk options) into
    weights and diagnostics, or raises `UnsupportedProfile` so the fallback chain moves on."""

    name: str
    profiles: frozenset[str] = frozenset()

    @abstractmethod
    def run(self, request: EngineRequest) -> EngineOutput: ...

    def unsupported(self, profile: str, why: str = "") -> UnsupportedProfile:
        return UnsupportedProfile(f"{self.name} engine has no profile {profile!r}" + (f" ({why})" if why else ""))


# --- shared math -----------------------------------------------------------------------------------


def covariance(X: np.ndarray, estimator: str = "sample", shrinkage: float = 0.0) -> np.ndarray:
    """Sample (ddof=1) or Ledoit-Wolf covariance, correlation optionally shrunk toward identity."""
    if X.shape[0] < 2:
        raise ValueError(f"need at least 2 observations for a covariance, got {X.shape[0]}")
    if estimator == "sample":
        cov = np.atleast_2d(np.cov(X, rowvar=False))
    elif estimator == "ledoit_wolf":
        from sklearn.covariance import ledoit_wolf

        cov = ledoit_wolf(X)[0]
    else:
        raise ValueError(f"unknown covariance estimator {estimator!r}")
    if shrinkage > 0:
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        corr = (1.0 - shrinkage) * corr + shrinkage * np.eye(len(sd))
        cov = corr * np.outer(sd, sd)
    return cov


# Shrinkage intensities tried, in order, until the correlation matrix is well conditioned (1.0 =
# identity, condition number 1, so the ladder always ends).
SHRINKAGE_LADDER = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def condition_number(cov: np.ndarray) -> float:
    """Condition number of the correlation matrix of `cov` (largest / smallest eigenvalue)."""
    sd = np.sqrt(np.diag(cov))
    lam = np.linalg.eigvalsh(cov / np.outer(sd, sd))
    return float(lam[-1] / lam[0]) if lam[0] > 0 else float("inf")


def shrink_to_condition(cov: np.ndarray, start: float, limit: float) -> tuple[np.ndarray, float, float]:
    """The unshrunk `cov` with its correlation shrunk toward identity by `start`, or by the first
    intensity of SHRINKAGE_LADDER above it whose condition number is <= `limit`.
    Returns the covariance, the shrinkage used and the condition number it has."""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    for s in (start, *(x for x in SHRINKAGE_LADDER if x > start)):
        shrunk = ((1.0 - s) * corr + s * np.eye(len(sd))) * np.outer(sd, sd)
        kappa = condition_number(shrunk)
        if kappa <= limit:
            return shrunk, s, kappa
    return shrunk, s, kappa  # pragma: no cover - s = 1.0 is the identity, kappa = 1


def equal_weight(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """The distinct labels in order of first appearance (what `pd.unique` gives, without pandas:
    called for every lens and rebalance date)."""
    _, first = np.unique(labels, return_index=True)
    return labels[np.sort(first)]


def hierarchical_equal_weight_array(
    var: np.ndarray, labels: np.ndarray | None, momentum: np.ndarray | None = None, momentum_share: float = 0.0
) -> np.ndarray:
    """Equal weight across clusters; inside each cluster inverse variance, optionally blended with a
    momentum-rank weight ((1 - share) * 1/var + share * rank / sum(rank), highest momentum = top rank).

    Never fails: unknown variances inside a cluster -> equal weight inside it; missing or NaN labels
    -> every asset is its own cluster.
    """
    n = len(var)
    if n == 0:
        return np.zeros(0)
    labels = np.arange(n) if labels is None or pd.isna(labels).any() else np.asarray(labels)
    inv = 1.0 / np.where(np.isfinite(var) & (var > 0), var, np.nan)
    weights = np.zeros(n)
    uniq = first_appearance(labels)
    for label in uniq:
        members = labels == label
        w = inv[members]
        w = np.ones(members.sum()) if not np.isfinite(w).all() else w
        w = w / w.sum()
        if momentum_share > 0 and momentum is not None:
            m = np.where(np.isfinite(momentum[members]), momentum[members], -np.inf)
            rank = average_ranks(m)
            w = (1.0 - momentum_share) * w + momentum_share * rank / rank.sum()
        weights[members] = w / len(uniq)
    return weights


def capped_simplex(t: np.ndarray, cap: float) -> np.ndarray:
    """Euclidean projection of t onto {x : sum x = 1, 0 <= x <= cap} (bisection on the shift).

    cap * len(t) must be >= 1 (callers pass the effective cap max(cap, 1/n)).
    """
    t = np.asarray(t, dtype=float)
    n = len(t)
    if cap * n < 1.0 - 1e-12:
        raise ValueError(f"cap {cap} infeasible for {n} groups")
    if (t <= cap + 1e-15).all() and abs(t.sum() - 1.0) <= 1e-15 and (t >= 0).all():
        return t.copy()
    lo, hi = t.min() - cap - 1.0, t.max() + 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.clip(t - mid, 0.0, cap).sum() > 1.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-16:
            break
    x = np.clip(t - 0.5 * (lo + hi), 0.0, cap)
    return x / x.sum()


def cap_cluster_weights(w: np.ndarray, labels: np.ndarray, cap: float) -> tuple[np.ndarray, float]:
    """Cap each cluster's total at max(cap, 1/n_clusters) by a capped-simplex projection of the cluster
    totals (sum stays 1); members keep their relative weights (equal split if a cluster had 0).
    Returns the weights and the effective cap."""
    uniq, inverse = np.unique(labels, return_inverse=True)
    k = len(uniq)
    eff = max(cap, 1.0 / k)
    totals = np.bincount(inverse, weights=w, minlength=k)
    if (totals <= eff + 1e-12).all():
        return w, eff
    target = capped_simplex(totals, eff)
    out = np.empty_like(w)
    for c in range(k):
        members = inverse == c
        if totals[c] > 0:
            out[members] = w[members] * (target[c] / totals[c])
        else:
            out[members] = target[c] / members.sum()
    return out / out.sum(), eff


def barbell(request: EngineRequest, core: Callable[[EngineRequest], EngineOutput]) -> EngineOutput:
    """HRP core + aggressor sleeve of cluster leaders.

    Aggressor clusters k = min(max_aggressor_clusters, max(1, n_clusters // 2), n_clusters - 1); the
    leader of a cluster is its best antifragility member (ties: first column); the k clusters with the
    best leaders are aggressors, sharing the regime's aggressor total equally. Every other asset is
    the core, weighted by `core` (the engine's HRP) and scaled by (1 - aggressor total).
    Raises (-> recorded fallback to HRP) without scores or with fewer than 2 clusters.
    """
    cfg = request.config
    if request.antifragility is None:
        raise ValueError("barbell needs antifragility scores (none given)")
    labels = request.labels()
    score = np.where(np.isfinite(request.antifragility), request.antifragility, -np.inf)
    uniq = first_appearance(labels)
    k = min(cfg.max_aggressor_clusters, max(1, len(uniq) // 2), len(uniq) - 1)
    if k <= 0:
        raise ValueError(f"barbell needs at least 2 clusters, got {len(uniq)}: no aggressor sleeve possible")
    leaders = []  # (score, first position, leader index)
    for label in uniq:
        members = np.flatnonzero(labels == label)
        best = members[np.argmax(score[members])]
        if np.isfinite(score[best]):
            leaders.append((-score[best], members[0], best))
    if not leaders:
        raise ValueError("barbell: no finite antifragility score")
    leaders.sort()
    aggressors = np.array(sorted(lead for _, _, lead in leaders[:k]), dtype=np.intp)
    total = getattr(cfg.aggressor_weights, request.regime)
    is_core = np.ones(request.n, dtype=bool)
    is_core[aggressors] = False
    core_idx = np.flatnonzero(is_core)
    w = np.zeros(request.n)
    w[aggressors] = total / len(aggressors)
    if len(core_idx) == 1:
        core_out = EngineOutput(np.ones(1), {"variant": "single core asset"})
    else:
        core_out = core(request.subset(core_idx, "hrp"))
    w[core_idx] = (1.0 - total) * np.asarray(core_out.weights, dtype=float)
    diag = {f"core_{key}": value for key, value in core_out.diagnostics.items()}
    diag.update(
        variant=f"barbell/hrp-core/{len(aggressors)}-aggressors",
        aggressor_total=total,
        aggressors=[request.columns[i] for i in aggressors],
        solver=core_out.diagnostics.get("solver"),
    )
    return EngineOutput(w, diag)


class LibraryEngine(Engine):
    """A third-party backend: its own HRP, the convex profiles it supports, barbell on its HRP core.

    Subclasses set `convex` and implement `hrp` and `solve_convex`; the dispatch and the refusals
    (a profile the library lacks, the custom-only CVaR penalty) are the same for every library."""

    convex: tuple[str, ...] = ()

    def hrp(self, request: EngineRequest) -> EngineOutput:
        raise NotImplementedError

    def solve_convex(self, request: EngineRequest) -> EngineOutput:
        raise NotImplementedError

    def run(self, request: EngineRequest) -> EngineOutput:
        p = request.profile
        if p == "hrp":
            return self.hrp(request)
        if p == "barbell":
            return barbell(request, self.hrp)
        if p not in self.convex:
            raise self.unsupported(p)
        if request.config.cvar_penalty > 0:
            raise self.unsupported(p, "CVaR penalty is custom-engine only")
        return self.solve_convex(request)
