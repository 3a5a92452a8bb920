"""Portfolio optimisation behind one small interface, with a guarded, recorded fallback chain.

`optimise(returns, profile, engine)` validates the input (optimisers fail or return NaN silently
on NaN/inf, zero-variance or duplicated columns), asks the engine for the
requested profile, checks the answer, and on any failure walks the profile's fallback chain down
to equal weight. The result records every attempt with its reason, like skfolio's
``fallback_chain_``, and a `provenance` dict says how the weights were produced.

Profiles (`PROFILES`):
  market, benchmark, raw_pool_ew  plain 1/n over the columns the *caller* passes (benchmark symbols,
                                  selected universe, raw pool); zero-variance columns are kept
                                  (no covariance needed), non-finite ones dropped.
  equal_weight                    equal across clusters, inverse variance inside (optional hybrid
                                  0.5 inverse variance + 0.5 momentum rank).
  min_variance, max_sharpe        long-only, fully invested, risk-free rate 0, no regularisation
                                  (an L2 penalty on annualised covariance swamped the answer).
  hrp                             named variant: linkage x Pearson distance x leaf ordering.
  risk_parity                     equal risk contribution (ERC).
  barbell                         HRP core + aggressor sleeve of cluster leaders (engines/base.py).

Engines (`ENGINES`): custom (numpy/scipy, every profile and option), skfolio, riskfolio,
pyportfolioopt (CLARABEL forced). A library engine that lacks a profile or option raises
`UnsupportedProfile`; the chain records it and moves on (no silent re-mapping to something else).
The four 1/n-type profiles (market, benchmark, raw_pool_ew, equal_weight) never need a solver and
are computed by the platform whatever the engine, so every chain ends somewhere deterministic.

Default engine and variant, per profile (engine="custom" for all):
  hrp          custom, ward + Pearson + optimal leaf ordering = skfolio's default variant, so the
               product's weights equal skfolio's HierarchicalRiskParity() to ~1e-16 while the numpy
               kernel runs >= 10x faster in walk-forward (benchmarks/walk_forward.py). Ward rather
               than riskfolio/pypfopt's "single": single linkage chains and concentrates.
  min_variance custom, CLARABEL + exact KKT polish (same optimum as skfolio/riskfolio/pypfopt to
  max_sharpe  ~1e-5/1e-4; reproducible golden values; the only engine with the CVaR penalty).
  risk_parity  custom, coordinate descent (no solver to fail; agrees with skfolio RiskBudgeting).
  barbell      custom (only the custom engine has it), HRP core with the hrp variant above.
  equal_weight, market, benchmark, raw_pool_ew: platform (no solver).

Fallback chains (`FALLBACK_CHAINS`) end at equal_weight; a caller's chain without it still ends there
("chain exhausted"). Duplicated column labels are an error naming them (a label is an identity: two
streams under one name cannot both get a weight); NaN/inf columns and zero-variance columns are
dropped, recorded in `.dropped` and re-enter with weight exactly 0; one survivor gets weight 1.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quant_assets.allocation.engines.base import (
    Engine,
    EngineOutput,
    EngineRequest,
    UnsupportedProfile,
    cap_cluster_weights,
    capped_simplex,
    hierarchical_equal_weight_array,
)
from quant_assets.allocation.engines.custom import CustomEngine
from quant_assets.allocation.engines.pyportfolioopt import PyPortfolioOptEngine
from quant_assets.allocation.engines.riskfolio import RiskfolioEngine
from quant_assets.allocation.engines.skfolio import SkfolioEngine
from quant_assets.selection.regime import REGIME_LABELS as REGIMES  # the detector owns the labels

__all__ = [
    "Attempt",
    "DEFAULT_CONFIG",
    "ENGINES",
    "Engine",
    "EngineOutput",
    "EngineRequest",
    "FALLBACK_CHAINS",
    "OptimisationResult",
    "PROFILES",
    "REGIMES",
    "RiskConfig",
    "UnsupportedProfile",
    "cap_cluster_weights",
    "capped_simplex",
    "hierarchical_equal_weight",
    "optimise",
    "optimise_array",
    "project_bounded_simplex",
    "register_engine",
]

Regime = Literal["QUIET", "NORMAL", "TURBULENT", "CRISIS"]
PLAIN_EW_PROFILES = ("market", "benchmark", "raw_pool_ew")
PLATFORM_PROFILES = (*PLAIN_EW_PROFILES, "equal_weight")
CAPPED_PROFILES = ("equal_weight", "min_variance", "hrp", "max_sharpe", "risk_parity")
FALLBACK_CHAINS: dict[str, tuple[str, ...]] = {
    "market": ("market",),
    "benchmark": ("benchmark",),
    "raw_pool_ew": ("raw_pool_ew",),
    "equal_weight": ("equal_weight",),
    "min_variance": ("min_variance", "hrp", "equal_weight"),
    "hrp": ("hrp", "min_variance", "max_sharpe", "equal_weight"),
    "max_sharpe": ("max_sharpe", "min_variance", "hrp", "equal_weight"),
    "risk_parity": ("risk_parity", "hrp", "min_variance", "equal_weight"),
    "barbell": ("barbell", "hrp", "equal_weight"),
}
PROFILES: tuple[str, ...] = tuple(FALLBACK_CHAINS)
ZERO_VARIANCE_STD = 1e-9
SUM_TOLERANCE = 1e-6


class PerRegime(BaseModel):
    """One number per market regime (hashable, so RiskConfig stays hashable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    QUIET: float = Field(ge=0, le=1)
    NORMAL: float = Field(ge=0, le=1)
    TURBULENT: float = Field(ge=0, le=1)
    CRISIS: float = Field(ge=0, le=1)


class RiskConfig(BaseModel):
    """Every risk-engine option in one frozen model (wired into the manifest by the lead).

    Defaults reproduce the plain textbook profiles (no regularisation, no caps, no penalty) so the
    analytic cases hold exactly and the engines agree with each other; the stress options are opt-in.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hrp_linkage: Literal["ward", "single", "average", "complete"] = Field(
        "ward", description="scipy linkage; ward = skfolio's default (riskfolio/pypfopt default to single)"
    )
    hrp_distance: Literal["pearson", "pearson_rows"] = Field(
        "pearson",
        description="pearson: the tree clusters sqrt(0.5 (1 - rho)) (skfolio, riskfolio, pypfopt); "
        "pearson_rows: it clusters Euclidean distances between the rows of that matrix, as López de "
        "Prado's published 2016 code does (custom engine only; with single linkage and plain leaf "
        "order it is the named variant `lopez_de_prado_2016`)",
    )
    hrp_leaf_order: Literal["optimal", "plain"] = Field(
        "optimal",
        description="optimal leaf ordering (skfolio/riskfolio default) or plain; moves weights by "
        "up to 4.5 pp, so it is part of the variant. pyportfolioopt supports plain only",
    )
    covariance: Literal["sample", "ledoit_wolf"] = Field("sample", description="sample = ddof 1")
    shrinkage: float = Field(
        0.0,
        ge=0,
        le=1,
        description="correlation shrunk toward identity by this intensity "
        "(spec default 0.01; 0 keeps engines comparable)",
    )
    cluster_caps_enabled: bool = Field(
        False, description="cap each cluster's total weight (off: keeps outputs identical to the uncapped profiles)"
    )
    cluster_caps: PerRegime = Field(
        PerRegime(QUIET=0.25, NORMAL=0.25, TURBULENT=0.20, CRISIS=0.15),
        description="largest total weight of one correlation cluster, per regime: 25 % in calm markets (QUIET, "
        "NORMAL), 20 % when TURBULENT, 15 % in a CRISIS, when correlations rise and clusters move "
        "together. Effective cap max(cap, 1/n_clusters)",
    )
    aggressor_weights: PerRegime = Field(
        PerRegime(QUIET=0.15, NORMAL=0.10, TURBULENT=0.05, CRISIS=0.03),
        description="barbell aggressor sleeve total per regime (code/benchmark spec values, not the doc's 8%/5%)",
    )
    max_aggressor_clusters: int = Field(5, ge=0)
    cvar_penalty: float = Field(
        0.0,
        ge=0,
        description="lambda of the CVaR fragility penalty (custom engine; "
        "min_variance, max_sharpe, risk_parity); 0 = off",
    )
    cvar_alpha: float = Field(0.95, gt=0.5, lt=1)
    hybrid_intra_weighting: bool = Field(
        False, description="equal_weight inside clusters: (1 - share) inverse variance + share momentum rank"
    )
    hybrid_momentum_share: float = Field(0.5, ge=0, le=1)
    condition_number_max: float | None = Field(
        None,
        gt=1,
        description="when the correlation matrix's condition number exceeds this, its shrinkage toward "
        "identity is raised along SHRINKAGE_LADDER until it does not (custom engine; None = off; "
        "the reference system used 5000); the final shrinkage and condition number are recorded",
    )
    market_neutral: bool = Field(
        False,
        description="min_variance / max_sharpe: bound |w . beta| of the sleeve's streams to the universe's "
        "benchmark (custom engine; needs benchmarks in the universe). Weights are long-only, so it needs "
        "assets on both sides of the bound (a short sleeve's streams have negative betas); otherwise the "
        "profile fails and the fallback chain records why",
    )
    beta_bound: float | None = Field(
        None, gt=0, description="the market-neutral bound; None = 0.05 with >= 15 assets, else 0.15"
    )

    @model_validator(mode="after")
    def _caps_positive(self) -> RiskConfig:
        if min(self.cluster_caps.model_dump().values()) <= 0:
            raise ValueError("cluster caps must be > 0")
        if max(self.aggressor_weights.model_dump().values()) >= 1:
            raise ValueError("aggressor weights must be < 1")
        return self

    @property
    def hrp_variant(self) -> str:
        """linkage/distance/leaf order, or the variant's name when it has one."""
        text = f"{self.hrp_linkage}/{self.hrp_distance}/{self.hrp_leaf_order}"
        return NAMED_HRP_VARIANTS.get(text, text)


DEFAULT_CONFIG = RiskConfig()

# HRP variants with a name. lopez_de_prado_2016 = the published code of "Building Diversified
# Portfolios that Outperform Out of Sample": single linkage on the rows of the distance matrix,
# the tree's own leaf order. Select it with hrp_linkage: single, hrp_distance: pearson_rows,
# hrp_leaf_order: plain (or RiskConfig(**LOPEZ_DE_PRADO_2016)).
LOPEZ_DE_PRADO_2016 = {"hrp_linkage": "single", "hrp_distance": "pearson_rows", "hrp_leaf_order": "plain"}
NAMED_HRP_VARIANTS = {"single/pearson_rows/plain": "lopez_de_prado_2016"}


@dataclass(frozen=True)
class Attempt:
    engine: str
    profile: str
    status: str  # "success" | "failed"
    reason: str = ""


@dataclass
class OptimisationResult:
    """Weights (>= 0, summing to 1 over `weights.index`) and how they were produced.

    `values` are the weights in the order of `columns` (what a walk-forward loop keeps); `weights`
    is the same as a Series, built on first access."""

    values: np.ndarray
    columns: list
    requested: str
    profile_used: str
    engine: str
    attempts: list[Attempt] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    requested_engine: str = ""
    config: RiskConfig = DEFAULT_CONFIG
    regime: str = "NORMAL"
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> pd.Series:
        return pd.Series(self.values, index=pd.Index(self.columns), dtype=float)

    @property
    def fallback_used(self) -> bool:
        return self.profile_used != self.requested

    def chain_text(self) -> str:
        return " -> ".join(
            f"{a.engine}/{a.profile}:{a.status}" + (f" ({a.reason})" if a.reason else "") for a in self.attempts
        )

    @property
    def provenance(self) -> dict[str, Any]:
        """JSON-able record of how the weights were produced (built on access: free in hot loops)."""
        cfg = self.config
        return {
            "engine": self.engine,
            "requested_engine": self.requested_engine,
            "profile_requested": self.requested,
            "profile_used": self.profile_used,
            "fallback_used": self.fallback_used,
            "variant": self.diagnostics.get("variant"),
            "solver": self.diagnostics.get("solver"),
            "covariance": cfg.covariance,
            "shrinkage": self.diagnostics.get("shrinkage_used", cfg.shrinkage),  # raised by the condition ladder
            "hrp_variant": cfg.hrp_variant,
            "regime": self.regime,
            "cluster_cap": self.diagnostics.get("cluster_cap"),
            "cluster_cap_method": self.diagnostics.get("cluster_cap_method"),  # constraint | projection
            "cvar_penalty": cfg.cvar_penalty,
            "hybrid_intra_weighting": cfg.hybrid_intra_weighting,
            "fallback_chain": [
                {"engine": a.engine, "profile": a.profile, "status": a.status, "reason": a.reason}
                for a in self.attempts
            ],
            "dropped": dict(self.dropped),
            "diagnostics": {k: v for k, v in self.diagnostics.items() if k not in ("variant", "solver")},
        }


ENGINES: dict[str, Engine] = {
    e.name: e for e in (CustomEngine(), SkfolioEngine(), RiskfolioEngine(), PyPortfolioOptEngine())
}
BUILTIN_ENGINES: tuple[str, ...] = tuple(ENGINES)
_PLATFORM = CustomEngine()  # computes the 1/n-type profiles whatever engine was asked for


def register_engine(engine: Engine) -> None:
    """Add an engine (a live one, or a deliberately failing stub in tests)."""
    ENGINES[engine.name] = engine


def hierarchical_equal_weight(returns: pd.DataFrame, clusters: pd.Series | None = None) -> np.ndarray:
    """Equal weight across clusters, inverse variance inside each cluster (no solver, never fails)."""
    n = returns.shape[1]
    if n == 0:
        return np.zeros(0)
    labels = None if clusters is None else clusters.reindex(returns.columns).to_numpy()
    var = returns.var(ddof=1).to_numpy() if len(returns) > 1 else np.ones(n)
    return hierarchical_equal_weight_array(var, labels)


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


def _by_label(series: pd.Series | np.ndarray | None, columns: list) -> np.ndarray | None:
    """Per-column values aligned with `columns`: a Series by label, an array as given."""
    if series is None:
        return None
    if isinstance(series, pd.Series):
        if list(series.index) == columns:
            return series.to_numpy()
        return series.reindex(columns).to_numpy()
    return np.asarray(series)


def optimise(
    returns: pd.DataFrame,
    profile: str,
    engine: str = "custom",
    clusters: pd.Series | np.ndarray | None = None,
    chain: tuple[str, ...] | None = None,
    *,
    config: RiskConfig | None = None,
    regime: str = "NORMAL",
    antifragility: pd.Series | np.ndarray | None = None,
    momentum: pd.Series | np.ndarray | None = None,
) -> OptimisationResult:
    """Weights for `profile` over the columns of `returns` (rows = dates), falling back along `chain`.

    clusters: label per column (None = each asset its own cluster) for equal_weight, barbell and the
    cluster caps. antifragility: score per column for barbell leaders (missing -> fallback to hrp).
    momentum: per column for the hybrid equal_weight (missing -> window cumulative return).
    Each is a Series aligned by label or an array in column order.
    regime: one of REGIMES; selects the cluster cap and the barbell aggressor total.
    """
    columns = list(returns.columns)
    return optimise_array(
        returns.to_numpy(dtype=float),
        columns,
        profile,
        engine,
        _by_label(clusters, columns),
        chain,
        config=config,
        regime=regime,
        antifragility=_by_label(antifragility, columns),
        momentum=_by_label(momentum, columns),
    )


def optimise_array(
    X: np.ndarray,
    columns: list,
    profile: str,
    engine: str = "custom",
    clusters: np.ndarray | None = None,
    chain: tuple[str, ...] | None = None,
    *,
    config: RiskConfig | None = None,
    regime: str = "NORMAL",
    antifragility: np.ndarray | None = None,
    momentum: np.ndarray | None = None,
    benchmark: np.ndarray | None = None,
) -> OptimisationResult:
    """`optimise` on a (dates x assets) array whose columns are named `columns`; per-column inputs
    are arrays in column order. What the walk-forward loops call: no pandas on the way."""
    if profile not in FALLBACK_CHAINS:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(FALLBACK_CHAINS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; registered: {sorted(ENGINES)}")
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {REGIMES}")
    cfg = DEFAULT_CONFIG if config is None else config
    chain = chain or FALLBACK_CHAINS[profile]
    if len(set(columns)) != len(columns):
        dup = [c for c, n in Counter(columns).items() if n > 1]
        raise ValueError(f"duplicated asset labels in returns: {dup}")

    # Validation in numpy: this runs once per fold in walk-forward loops.
    X = np.asarray(X, dtype=float)
    T = X.shape[0]
    finite = np.isfinite(X).all(axis=0)
    bad = ~finite
    if T > 1 and profile not in PLAIN_EW_PROFILES:
        with np.errstate(invalid="ignore"):
            flat = X.std(axis=0) <= ZERO_VARIANCE_STD
        bad = bad | (flat & finite)
    dropped: dict[str, str] = {}
    if bad.any():
        for i in np.flatnonzero(bad):
            dropped[columns[i]] = "non-finite returns" if not finite[i] else "zero variance"
        keep = np.flatnonzero(~bad)
        X = X[:, keep]
    else:
        keep = None
    n = X.shape[1]
    attempts: list[Attempt] = []

    def finish(w: np.ndarray, used: str, used_engine: str, diagnostics: dict | None = None) -> OptimisationResult:
        if keep is None:
            full = np.asarray(w, dtype=float)
        else:
            full = np.zeros(len(columns))
            full[keep] = w
        return OptimisationResult(
            full, columns, profile, used, used_engine, attempts, dropped, engine, cfg, regime, diagnostics or {}
        )

    if n == 0:
        attempts.append(Attempt("platform", profile, "failed", "no investable assets"))
        return OptimisationResult(
            np.zeros(len(columns)), columns, profile, "none", "platform", attempts, dropped, engine, cfg, regime
        )
    if n == 1:
        attempts.append(Attempt("platform", profile, "success", "single asset"))
        return finish(np.ones(1), profile, "platform")

    idx = np.arange(len(columns)) if keep is None else keep
    labels = None if clusters is None else np.asarray(clusters)[idx]
    if labels is not None and pd.isna(labels).any():
        labels = None  # partial cluster information: every asset is its own cluster (documented fallback)
    request = EngineRequest(
        profile,
        X,
        [columns[i] for i in idx],
        cfg,
        regime,
        labels,
        None if antifragility is None else np.asarray(antifragility, dtype=float)[idx],
        None if momentum is None else np.asarray(momentum, dtype=float)[idx],
        None if benchmark is None else np.asarray(benchmark, dtype=float),
    )
    backend = ENGINES[engine]
    for step in chain:
        request.profile = step
        platform = step in PLATFORM_PROFILES  # 1/n-type: deterministic, never needs a solver
        used_engine = "platform" if platform else engine
        try:
            if cfg.market_neutral and step in ("min_variance", "max_sharpe") and engine != "custom":
                raise UnsupportedProfile(f"{engine} engine: the market-neutral bound is custom-engine only")
            out = (_PLATFORM if platform else backend).run(request)
            w = _validated(out.weights, n)
            diagnostics = {**out.diagnostics, **request.notes}
            if cfg.cluster_caps_enabled and step in CAPPED_PROFILES and "cluster_cap" not in diagnostics:
                # no solver to hold the caps as constraints (or an engine without them): project
                w, eff = cap_cluster_weights(w, request.labels(), getattr(cfg.cluster_caps, regime))
                diagnostics.update(cluster_cap=eff, cluster_cap_method="projection")
        except Exception as err:  # noqa: BLE001 - every failure is recorded and the chain moves on
            attempts.append(Attempt(used_engine, step, "failed", f"{type(err).__name__}: {err}"[:300]))
            continue
        attempts.append(Attempt(used_engine, step, "success"))
        return finish(w, step, used_engine, diagnostics)
    # A chain without equal_weight at its end still ends somewhere deterministic.
    attempts.append(Attempt("platform", "equal_weight", "success", "chain exhausted"))
    request.profile = "equal_weight"
    return finish(_PLATFORM.run(request).weights, "equal_weight", "platform")


def project_bounded_simplex(w: np.ndarray, lower: float, upper: float, iterations: int = 200) -> np.ndarray:
    """Closest-in-spirit redistribution onto {sum = 1, lower <= w <= upper}.

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
