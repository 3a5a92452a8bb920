"""Inference (funnel stage 3): score every candidate so that rank 1 is the best name *for this sleeve*.

Direction and logic decide what "bullish" means, and every ranker orients its score so that higher is
better for the sleeve: a short trend sleeve puts the most bearish name first (domain-spec §10.2, the
reference's short-ranking inversion), a long reversion sleeve puts the biggest recent loser first.
Rankers live in a registry so a sleeve names its ranker and new ones can be added without editing the
funnel. Ties are broken by symbol name; a missing score ranks last.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.stats import norm

from quant_assets.clustering import check_regime

ProbMethod = Literal["rank", "rank_desc", "cdf", "zscore", "logistic", "minmax"]

NAN_PROB = 0.01  # an unknown feature counts as a very weak one, not as a veto (§3.3)
SURVIVAL_DAYS = 252
# Signed signals: their bullish direction depends on the sleeve (logic x direction). Quality features
# (stability, efficiency, entropy, ...) mean the same thing for every sleeve.
RANKERS: dict[str, Ranker] = {}  # filled at the bottom of this module; see register_ranker
DIRECTIONAL_FEATURES = ("momentum", "return_20d", "return_60d", "rating_ma", "rating_osc", "rating_all")


def sleeve_sign(logic: str, direction: str) -> int:
    """+1 when a rising signal is good news for the sleeve, -1 when a falling one is.

    trend/long +1, trend/short -1, reversion/long -1 (losers rebound), reversion/short +1.
    """
    d = direction.lower()
    if logic not in ("trend", "reversion"):
        raise ValueError(f"unknown logic {logic!r}; known: trend, reversion")
    if d not in ("long", "short"):
        raise ValueError(f"unknown direction {direction!r}; known: long, short")
    return (1 if logic == "trend" else -1) * (1 if d == "long" else -1)


def survival(n_obs: pd.Series) -> pd.Series:
    """min(1, n_obs / 252): a short history is a weaker claim (§2; v4 placeholder made concrete)."""
    return (n_obs.astype(float) / SURVIVAL_DAYS).clip(upper=1.0)


# --- probability maps (§3.3) -----------------------------------------------------------------------


def _z(x: pd.Series) -> pd.Series:
    sd = x.std(ddof=1)
    if not np.isfinite(sd) or sd <= 0:
        return x * 0.0
    return (x - x.mean()) / sd


def prob_map(values: pd.Series, method: str) -> pd.Series:
    """Map a feature onto [0, 1] (higher = better); NaN -> 0.01.

    rank 0.01 + 0.99 (rank - 1)/(n - 1) (average ranks; a single value -> 1.0); rank_desc its mirror;
    cdf identity clipped to [0.001, 1] when the values already lie in [0, 1], else Phi(z) clipped;
    zscore (clip(z, -3, 3) + 3)/6; logistic 1/(1 + e^-z); minmax (x - min)/(max - min) (flat -> 0.5).
    z uses the sample std (ddof 1): that is what reproduces the spec's verified (-1, 0, 1) -> cdf 0.159.
    """
    x = values.astype(float)
    ok = x.notna()
    v = x[ok]
    n = len(v)
    if n == 0:
        return pd.Series(NAN_PROB, index=x.index)
    if method in ("rank", "rank_desc"):
        r = v.rank(method="average")
        if n == 1:
            p = pd.Series(1.0, index=v.index)
        else:
            p = 0.01 + 0.99 * ((r - 1) if method == "rank" else (n - r)) / (n - 1)
    elif method == "cdf":
        if v.between(0.0, 1.0).all():
            p = v.clip(0.001, 1.0)
        else:
            p = pd.Series(norm.cdf(_z(v)), index=v.index).clip(0.001, 1.0)
    elif method == "zscore":
        p = (_z(v).clip(-3, 3) + 3) / 6
    elif method == "logistic":
        p = 1.0 / (1.0 + np.exp(-_z(v)))
    elif method == "minmax":
        span = v.max() - v.min()
        p = (v - v.min()) / span if span > 0 else v * 0.0 + 0.5
    else:
        raise ValueError(f"unknown probability map {method!r}")
    return p.clip(0.0, 1.0).reindex(x.index).fillna(NAN_PROB)


# --- settings ----------------------------------------------------------------------------------------

DEFAULT_MPS_WEIGHTS = {  # the v4 stage defaults (§3.3) for the features this platform computes
    "momentum": 1.5, "stability": 1.0, "liquidity": 0.5, "entropy": 1.0, "efficiency": 0.5,
    "hurst_clean": 0.5, "survival": 1.0, "antifragility": 0.5, "skew": 0.5, "kurtosis": 1.0, "cvar": 1.0,
}
# hurst_clean (= 1 - 2|H - 0.5|) is 1.0 for a random walk. The reference maps it with "rank", i.e. it
# rewards random walks while its predictability filter vetoes them; "rank_desc" rewards structure
# (persistent or mean-reverting paths), consistent with the filter.
DEFAULT_MPS_METHODS = {
    "survival": "cdf", "liquidity": "cdf", "momentum": "rank", "stability": "rank", "antifragility": "rank",
    "efficiency": "cdf", "entropy": "rank_desc", "hurst_clean": "rank_desc", "rating_all": "rank",
    "rating_ma": "rank", "rating_osc": "rank", "return_20d": "rank", "return_60d": "rank",
    "skew": "rank_desc", "kurtosis": "rank_desc", "cvar": "cdf",
}


class RankerSettings(BaseModel):
    """Which ranker scores the candidates, and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("signal", description="A key of rankers.RANKERS: mps | signal | regime_fit")
    signal_columns: dict[str, str] = Field(
        default_factory=lambda: {"trend": "momentum", "reversion": "return_20d"},
        description="signal ranker: the raw feature per logic, oriented by the sleeve's sign")
    mps_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MPS_WEIGHTS),
                                          description="MPS exponent per feature (0 = unused)")
    mps_methods: dict[str, ProbMethod] = Field(default_factory=lambda: dict(DEFAULT_MPS_METHODS),
                                               description="MPS probability map per feature")
    quadrant_trend: float = Field(0.05, ge=0, description="regime_fit: |momentum| above this is a trend")
    quadrant_stress_vol: float = Field(1.5, gt=0, description="regime_fit: volatility above this multiple "
                                                               "of the cross-sectional median is stressed")
    min_obs: int = Field(64, ge=0, description="regime_fit: fewer observations -> fit 0 (no opinion)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RANKERS:
            raise ValueError(f"unknown ranker {v!r}; known: {', '.join(sorted(RANKERS))}")
        return v

    @field_validator("mps_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not np.isfinite(w) or w < 0}
        if bad:
            raise ValueError(f"mps_weights must be finite and >= 0, got {bad}")
        return v

    def methods_cover_weights(self) -> None:
        missing = sorted(f for f, w in self.mps_weights.items() if w > 0 and f not in self.mps_methods)
        if missing:
            raise ValueError(f"mps_methods lacks a probability map for {missing}")


# --- rankers ---------------------------------------------------------------------------------------

RANKING_COLUMNS = ["symbol", "score", "rank"]


def finish_ranking(score: pd.Series, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sort by score (descending, NaN last), ties by symbol; rank 1 = best. Extra columns ride along."""
    frame = pd.DataFrame({"symbol": score.index.astype(str), "score": score.to_numpy(dtype=float)})
    frame["_nan"] = frame["score"].isna()
    frame = frame.sort_values(["_nan", "score", "symbol"], ascending=[True, False, True], kind="mergesort")
    frame = frame.drop(columns="_nan").reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    if extra is not None:
        frame = frame.join(extra, on="symbol")
    return frame


class Ranker:
    """A named scoring rule: `rank(...)` returns symbol, score, rank (1 = best) and its own columns."""

    name: str = ""

    def required_columns(self, settings: RankerSettings, logic: str) -> list[str]:
        """Feature columns whose absence makes a candidate unrankable (the darwinian filter vetoes it)."""
        return []

    def rank(self, features: pd.DataFrame, settings: RankerSettings, logic: str, direction: str,
             regime: str) -> pd.DataFrame:
        raise NotImplementedError


class SignalRanker(Ranker):
    """One raw feature, oriented by the sleeve: momentum for trend, -return_20d for long reversion."""

    name = "signal"

    def required_columns(self, settings, logic):
        return [settings.signal_columns[logic]]

    def rank(self, features, settings, logic, direction, regime):
        col = settings.signal_columns.get(logic)
        if col is None:
            raise ValueError(f"signal ranker has no column for logic {logic!r}")
        return finish_ranking(sleeve_sign(logic, direction) * features[col].astype(float))


class MPSRanker(Ranker):
    """Multiplicative probability score alpha = prod_i p_i^w_i (§3.3).

    Directional features (momentum, returns, ratings) are multiplied by the sleeve's sign before
    mapping, so a short sleeve's best momentum probability goes to the most bearish name; the quality
    features map the same way for every sleeve. Survival is derived from n_obs when absent.
    """

    name = "mps"

    def required_columns(self, settings, logic):
        return [f for f in DIRECTIONAL_FEATURES if settings.mps_weights.get(f, 0) > 0]

    def rank(self, features, settings, logic, direction, regime):
        settings.methods_cover_weights()
        sign = sleeve_sign(logic, direction)
        feats = features
        if "survival" not in feats.columns and "n_obs" in feats.columns:
            feats = feats.assign(survival=survival(feats["n_obs"]))
        probs = {}
        log_alpha = pd.Series(0.0, index=feats.index)
        for f, w in settings.mps_weights.items():
            if w <= 0:
                continue
            if f not in feats.columns:
                raise KeyError(f"MPS weight on {f!r} but the features have no such column")
            x = feats[f].astype(float) * (sign if f in DIRECTIONAL_FEATURES else 1)
            p = prob_map(x, settings.mps_methods[f])
            probs[f"{f}_prob"] = p
            log_alpha += w * np.log(p.clip(lower=1e-300))
        alpha = np.exp(log_alpha).where(log_alpha > -690, 0.0)
        return finish_ranking(alpha, pd.DataFrame(probs, index=feats.index.astype(str)))


def asset_quadrant(momentum: pd.Series, volatility: pd.Series, trend: float, stress_vol: float) -> pd.Series:
    """Per-asset quadrant from its own (sleeve-oriented) momentum and volatility.

    The reference's stress (0.7 vol_ratio + 0.6 turbulence > 1.1) tags plain noise as stressed
    (§10.24), so stress here is volatility above `stress_vol` x the cross-sectional median.
    """
    stressed = volatility > stress_vol * volatility.median()
    q = pd.Series("NORMAL", index=momentum.index, dtype=object)
    q[(momentum > trend) & stressed] = "INFLATIONARY_TREND"
    q[(momentum > trend) & ~stressed] = "EXPANSION"
    q[(momentum < -trend) & stressed] = "CRISIS"
    q[(momentum < -trend) & ~stressed] = "STAGNATION"
    q[momentum.isna()] = "NORMAL"
    return q


def regime_fit_scores(hurst: pd.Series, quadrant: pd.Series, vol_clustering: pd.Series, regime: str,
                      logic: str) -> pd.Series:
    """Strategy-fit score of §3.3: trend following likes persistent (H > 0.55) trending assets,
    mean reversion anti-persistent (H < 0.45) stagnating ones."""
    h = hurst.astype(float)
    fit = pd.Series(0.0, index=h.index)
    if logic == "trend":
        fit += quadrant.map({"INFLATIONARY_TREND": 0.6, "EXPANSION": 0.6, "STAGNATION": -0.3, "CRISIS": 0.2}).fillna(0.0)
        fit += np.where(h > 0.55, np.minimum(0.4, 2 * (h - 0.55)), 0.0)
        fit -= np.where(h < 0.45, 0.4, 0.0)
        fit += np.where(vol_clustering.astype(float) > 0.5, 0.1, 0.0)
    else:
        fit += quadrant.map({"STAGNATION": 0.6, "NORMAL": 0.6, "INFLATIONARY_TREND": -0.6, "CRISIS": 0.4}).fillna(0.0)
        fit += np.where(h < 0.45, np.minimum(0.4, 2 * (0.45 - h)), 0.0)
        fit -= np.where(h > 0.55, 0.4, 0.0)
        if regime == "QUIET":
            fit += 0.2
    return fit.round(12)


class RegimeFitRanker(Ranker):
    """Trend-following / mean-reversion fit (§3.3) of each asset in the current regime.

    The quadrant is computed on sleeve-oriented momentum (momentum x +1 long / -1 short), so for a
    short trend sleeve a falling stock is the "trending" one. Fewer than `min_obs` observations -> 0.
    """

    name = "regime_fit"

    def required_columns(self, settings, logic):
        return ["momentum", "volatility", "hurst"]

    def rank(self, features, settings, logic, direction, regime):
        check_regime(regime)
        sleeve_sign(logic, direction)
        dsign = 1 if direction.lower() == "long" else -1
        mom = dsign * features["momentum"].astype(float)
        quadrant = asset_quadrant(mom, features["volatility"].astype(float), settings.quadrant_trend,
                                  settings.quadrant_stress_vol)
        vc = features["vol_clustering"] if "vol_clustering" in features.columns else pd.Series(np.nan, index=features.index)
        fit = regime_fit_scores(features["hurst"], quadrant, vc, regime, logic)
        if "n_obs" in features.columns:
            fit[features["n_obs"].astype(float) < settings.min_obs] = 0.0
        fit[features["hurst"].isna() | mom.isna()] = np.nan
        return finish_ranking(fit, pd.DataFrame({"quadrant": quadrant}, index=features.index.astype(str)))


def register_ranker(ranker: Ranker) -> Ranker:
    """Add (or replace) a ranker under its name."""
    if not ranker.name:
        raise ValueError("a ranker needs a name")
    RANKERS[ranker.name] = ranker
    return ranker


for _r in (SignalRanker(), MPSRanker(), RegimeFitRanker()):
    register_ranker(_r)


def get_ranker(name: str) -> Ranker:
    try:
        return RANKERS[name]
    except KeyError:
        raise ValueError(f"unknown ranker {name!r}; known: {', '.join(sorted(RANKERS))}") from None


def rank_candidates(features: pd.DataFrame, settings: RankerSettings, logic: str, direction: str,
                    regime: str = "NORMAL") -> pd.DataFrame:
    """The rankings frame: symbol, score, rank (1 = best for this sleeve) and the ranker's own columns."""
    sleeve_sign(logic, direction)
    return get_ranker(settings.name).rank(features, settings, logic, direction, regime)

