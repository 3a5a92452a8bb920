"""Portfolio optimisation behind one small interface, with a guarded, recorded fallback chain.

`optimise(returns, profile)` validates the input (optimisers fail or return NaN silently on
NaN/inf, zero-variance or duplicated columns: portfolio-libs-notes §3), asks the engine for the
requested profile, checks the answer, and on any failure walks the profile's fallback chain down
to equal weight. The result records every attempt with its reason, like skfolio's
``fallback_chain_``, so a weight can always say how it was produced.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FALLBACK_CHAINS: dict[str, tuple[str, ...]] = {
    "max_sharpe": ("max_sharpe", "min_variance", "hrp", "equal_weight"),
    "min_variance": ("min_variance", "hrp", "equal_weight"),
    "hrp": ("hrp", "min_variance", "max_sharpe", "equal_weight"),
    "equal_weight": ("equal_weight",),
}
ZERO_VARIANCE_STD = 1e-9
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Attempt:
    engine: str
    profile: str
    status: str  # "success" | "failed"
    reason: str = ""


@dataclass
class OptimisationResult:
    """Weights (>= 0, summing to 1 over `weights.index`) and how they were produced."""

    weights: pd.Series
    requested: str
    profile_used: str
    engine: str
    attempts: list[Attempt] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def fallback_used(self) -> bool:
        return self.profile_used != self.requested

    def chain_text(self) -> str:
        return " -> ".join(f"{a.engine}/{a.profile}:{a.status}" + (f" ({a.reason})" if a.reason else "")
                           for a in self.attempts)


class Engine(ABC):
    name: str

    @abstractmethod
    def solve(self, profile: str, returns: pd.DataFrame) -> np.ndarray:
        """Long-only weights summing to 1 for a clean (finite, non-degenerate) returns matrix."""


class SkfolioEngine(Engine):
    """skfolio estimators: MeanRisk (CLARABEL) for min-variance / max-Sharpe, HRP with Ward linkage."""

    name = "skfolio"

    def solve(self, profile: str, returns: pd.DataFrame) -> np.ndarray:
        from skfolio import RiskMeasure
        from skfolio.cluster import HierarchicalClustering, LinkageMethod
        from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction

        if profile == "min_variance":
            model = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.VARIANCE)
        elif profile == "max_sharpe":
            model = MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_RATIO, risk_measure=RiskMeasure.VARIANCE)
        elif profile == "hrp":
            model = HierarchicalRiskParity(
                risk_measure=RiskMeasure.VARIANCE,
                hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.WARD),
            )
        else:
            raise ValueError(f"skfolio engine has no profile {profile!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Solve in percent: Clarabel's tolerances are absolute and daily variances (~1e-4) sit
            # right at them (min-variance came out 0.80018 instead of 0.8). Every profile here is
            # scale-invariant with a zero risk-free rate, so the weights are unchanged.
            model.fit(returns.to_numpy() * 100.0)
        return np.asarray(model.weights_, dtype=float)


ENGINES: dict[str, Engine] = {"skfolio": SkfolioEngine()}


def register_engine(engine: Engine) -> None:
    """Add an engine (a live one, or a deliberately failing stub in tests)."""
    ENGINES[engine.name] = engine


def hierarchical_equal_weight(returns: pd.DataFrame, clusters: pd.Series | None = None) -> np.ndarray:
    """Equal weight across clusters, inverse variance inside each cluster (no solver, never fails)."""
    n = returns.shape[1]
    if n == 0:
        return np.zeros(0)
    labels = np.zeros(n, dtype=int) - 1 if clusters is None else clusters.reindex(returns.columns).to_numpy()
    if clusters is None or pd.isna(labels).any():
        labels = np.arange(n)  # no cluster information: every asset is its own cluster
    var = returns.var(ddof=1).to_numpy() if len(returns) > 1 else np.ones(n)
    inv = 1.0 / np.where(np.isfinite(var) & (var > 0), var, np.nan)
    weights = np.zeros(n)
    uniq = pd.unique(labels)
    for label in uniq:
        members = labels == label
        w = inv[members]
        w = np.ones(members.sum()) if not np.isfinite(w).all() else w
        weights[members] = w / w.sum() / len(uniq)
    return weights


def _clean(returns: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop columns no optimiser can take; they re-enter the result with weight 0."""
    dupes = returns.columns[returns.columns.duplicated()].unique().tolist()
    if dupes:
        raise ValueError(f"duplicated asset labels in returns: {dupes}")
    dropped: dict[str, str] = {}
    for col in returns.columns:
        values = returns[col].to_numpy(dtype=float)
        if not np.isfinite(values).all():
            dropped[col] = "non-finite returns"
        elif len(values) > 1 and values.std(ddof=0) <= ZERO_VARIANCE_STD:
            dropped[col] = "zero variance"
    return returns.drop(columns=list(dropped)), dropped


def _validated(w: np.ndarray, n: int) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"engine returned {w.shape} weights for {n} assets")
    if not np.isfinite(w).all():
        raise ValueError("engine returned non-finite weights")
    if (w < -1e-8).any():
        raise ValueError(f"engine returned negative weights (min {w.min():.3g})")
    total = w.sum()
    if abs(total - 1) > SUM_TOLERANCE:
        raise ValueError(f"engine weights sum to {total:.6g}, not 1")
    w = np.clip(w, 0, None)
    return w / w.sum()


def optimise(returns: pd.DataFrame, profile: str, engine: str = "skfolio",
             clusters: pd.Series | None = None, chain: tuple[str, ...] | None = None) -> OptimisationResult:
    """Weights for `profile` over the columns of `returns` (rows = dates), falling back along `chain`."""
    if profile not in FALLBACK_CHAINS:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(FALLBACK_CHAINS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; registered: {sorted(ENGINES)}")
    chain = chain or FALLBACK_CHAINS[profile]
    clean, dropped = _clean(returns)
    attempts: list[Attempt] = []
    n = clean.shape[1]

    def finish(w: np.ndarray, used: str, used_engine: str) -> OptimisationResult:
        full = pd.Series(0.0, index=returns.columns)
        full[clean.columns] = w
        return OptimisationResult(full, profile, used, used_engine, attempts, dropped)

    if n == 0:
        attempts.append(Attempt("platform", profile, "failed", "no investable assets"))
        return OptimisationResult(pd.Series(0.0, index=returns.columns), profile, "none", "platform",
                                  attempts, dropped)
    if n == 1:
        attempts.append(Attempt("platform", profile, "success", "single asset"))
        return finish(np.ones(1), profile, "platform")
    for step in chain:
        if step == "equal_weight":
            w = hierarchical_equal_weight(clean, clusters)
            attempts.append(Attempt("platform", step, "success"))
            return finish(w, step, "platform")
        try:
            w = _validated(ENGINES[engine].solve(step, clean), n)
        except Exception as err:  # noqa: BLE001 - every failure is recorded and the chain moves on
            attempts.append(Attempt(engine, step, "failed", f"{type(err).__name__}: {err}"[:300]))
            continue
        attempts.append(Attempt(engine, step, "success"))
        return finish(w, step, engine)
    # A chain without equal_weight at its end still ends somewhere deterministic.
    attempts.append(Attempt("platform", "equal_weight", "success", "chain exhausted"))
    return finish(hierarchical_equal_weight(clean, clusters), "equal_weight", "platform")


def project_bounded_simplex(w: np.ndarray, lower: float, upper: float, iterations: int = 200) -> np.ndarray:
    """Closest-in-spirit redistribution onto {sum = 1, lower <= w <= upper} (domain-spec §6.4).

    Excess above `upper` (or deficit below `lower`) is moved to the other entries in proportion to
    their room, repeatedly, until every bound holds. (0.9, 0.1) on [0.05, 0.5] -> (0.5, 0.5).
    """
    w = np.asarray(w, dtype=float).copy()
    n = len(w)
    if n == 0:
        return w
    if n * lower > 1 + 1e-12 or n * upper < 1 - 1e-12 or lower > upper:
        raise ValueError(f"infeasible bounds [{lower}, {upper}] for {n} weights")
    w = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / n)
    for _ in range(iterations):
        w = np.clip(w, lower, upper)
        gap = 1.0 - w.sum()
        if abs(gap) <= 1e-12:
            break
        room = (upper - w) if gap > 0 else (w - lower)
        if room.sum() <= 1e-15:
            break
        w = w + gap * room / room.sum()
    return w
