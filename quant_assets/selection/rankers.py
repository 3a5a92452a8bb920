"""Inference (funnel stage 3): score every candidate so that rank 1 is the best name *for this sleeve*.

Direction and logic decide what "bullish" means, and every ranker orients its score so that higher is
better for the sleeve: a short trend sleeve puts the most bearish name first (ranking shorts by
bullish features would short the strongest names), a long reversion sleeve puts the biggest recent
loser first.
Rankers live in a registry so a sleeve names its ranker and new ones can be added without editing the
funnel. Ties are broken by symbol name; a missing score ranks last.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quant_assets.selection.clustering import check_regime

ProbMethod = Literal["rank", "rank_desc", "cdf", "zscore", "logistic", "minmax"]

NAN_PROB = 0.01  # an unknown feature counts as a very weak one, not as a veto
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
    """min(1, n_obs / 252): a short history is a weaker claim."""
    return (n_obs.astype(float) / SURVIVAL_DAYS).clip(upper=1.0)


class FeatureView:
    """One date's cross-section of features as arrays (one entry per symbol, in a fixed order).

    What the rankers and filters compute on: a funnel runs for every rebalance date of a backtest,
    and pandas' per-operation overhead on 20-row frames cost more than the arithmetic. `frame()`
    gives the DataFrame a custom ranker or filter written against the frame API receives.
    """

    __slots__ = ("symbols", "columns")

    def __init__(self, symbols: list[str], columns: dict[str, np.ndarray]):
        self.symbols = symbols
        self.columns = columns

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FeatureView:
        return cls([str(s) for s in frame.index], {str(c): frame[c].to_numpy() for c in frame.columns})

    def __contains__(self, column: str) -> bool:
        return column in self.columns

    def __len__(self) -> int:
        return len(self.symbols)

    def col(self, column: str) -> np.ndarray:
        return np.asarray(self.columns[column], dtype=float)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, index=pd.Index(self.symbols, name="symbol"))


def _std1(v: np.ndarray) -> float:
    """Sample standard deviation (ddof 1), NaN below two values, as pandas computes it."""
    n = len(v)
    if n < 2:
        return float("nan")
    avg = v.sum() / n
    return float(np.sqrt(((avg - v) ** 2).sum() / (n - 1)))


def _z_array(v: np.ndarray) -> np.ndarray:
    sd = _std1(v)
    if not np.isfinite(sd) or sd <= 0:
        return v * 0.0
    return (v - v.sum() / len(v)) / sd


def average_ranks(values: np.ndarray) -> np.ndarray:
    """`scipy.stats.rankdata(values, method="average")` for a 1-D array without NaN (infinities
    rank as the extremes): ranks from 1, ties sharing the mean of their ranks (of a tie group's
    first and last rank: exact in floats below 2**52 values, so the same floats as scipy's);
    written out because importing `scipy.stats` costs 0.5-0.8 s in every fresh process that ranks
    (a step of a UI run, the command line). `test_rankers.py` compares it with scipy."""
    v = np.asarray(values)
    order = np.argsort(v, kind="mergesort")
    ordered = v[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1  # tie group of each sorted position
    bounds = np.r_[np.flatnonzero(starts), len(v)]  # first sorted position of each group, then n
    ranks = np.empty(len(v))
    ranks[order] = 0.5 * (bounds[group] + bounds[group + 1] + 1)
    return ranks


def prob_map_array(values: np.ndarray, method: str) -> np.ndarray:
    """`prob_map` on an array (NaN = unknown): the arithmetic of the frame version, without pandas."""
    x = np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    v = x[ok]
    n = len(v)
    out = np.full(len(x), NAN_PROB)
    if n == 0:
        return out
    if method in ("rank", "rank_desc"):
        if n == 1:
            p = np.ones(1)
        else:
            r = average_ranks(v)
            p = 0.01 + 0.99 * ((r - 1) if method == "rank" else (n - r)) / (n - 1)
    elif method == "cdf":
        if ((v >= 0.0) & (v <= 1.0)).all():
            p = np.clip(v, 0.001, 1.0)
        else:
            from scipy.special import ndtr  # the standard normal CDF (norm.cdf's kernel); imported on use

            p = np.clip(ndtr(_z_array(v)), 0.001, 1.0)
    elif method == "zscore":
        p = (np.clip(_z_array(v), -3, 3) + 3) / 6
    elif method == "logistic":
        p = 1.0 / (1.0 + np.exp(-_z_array(v)))
    elif method == "minmax":
        span = v.max() - v.min()
        p = (v - v.min()) / span if span > 0 else v * 0.0 + 0.5
    else:
        raise ValueError(f"unknown probability map {method!r}")
    out[ok] = np.clip(p, 0.0, 1.0)
    return out


# --- probability maps -----------------------------------------------------------------------


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
    z uses the sample std (ddof 1): that is what reproduces the verified (-1, 0, 1) -> cdf 0.159.
    """
    return pd.Series(prob_map_array(values.to_numpy(dtype=float), method), index=values.index)


# --- settings ----------------------------------------------------------------------------------------

DEFAULT_MPS_WEIGHTS = {  # the v4 stage defaults for the features this platform computes
    "momentum": 1.5,
    "stability": 1.0,
    "liquidity": 0.5,
    "entropy": 1.0,
    "efficiency": 0.5,
    "hurst_clean": 0.5,
    "survival": 1.0,
    "antifragility": 0.5,
    "skew": 0.5,
    "kurtosis": 1.0,
    "cvar": 1.0,
}
# hurst_clean (= 1 - 2|H - 0.5|) is 1.0 for a random walk. The reference maps it with "rank", i.e. it
# rewards random walks while its predictability filter vetoes them; "rank_desc" rewards structure
# (persistent or mean-reverting paths), consistent with the filter.
DEFAULT_MPS_METHODS: dict[str, ProbMethod] = {
    "survival": "cdf",
    "liquidity": "cdf",
    "momentum": "rank",
    "stability": "rank",
    "antifragility": "rank",
    "efficiency": "cdf",
    "entropy": "rank_desc",
    "hurst_clean": "rank_desc",
    "rating_all": "rank",
    "rating_ma": "rank",
    "rating_osc": "rank",
    "return_20d": "rank",
    "return_60d": "rank",
    "skew": "rank_desc",
    "kurtosis": "rank_desc",
    "cvar": "cdf",
}


class RankerSettings(BaseModel):
    """Which ranker scores the candidates, and its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("signal", description="A key of rankers.RANKERS: mps | signal | regime_fit")
    signal_columns: dict[str, str] = Field(
        default_factory=lambda: {"trend": "momentum", "reversion": "return_20d"},
        description="signal ranker: the raw feature per logic, oriented by the sleeve's sign",
    )
    mps_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MPS_WEIGHTS), description="MPS exponent per feature (0 = unused)"
    )
    mps_methods: dict[str, ProbMethod] = Field(
        default_factory=lambda: dict(DEFAULT_MPS_METHODS), description="MPS probability map per feature"
    )
    quadrant_trend: float = Field(0.05, ge=0, description="regime_fit: |momentum| above this is a trend")
    quadrant_stress_vol: float = Field(
        1.5, gt=0, description="regime_fit: volatility above this multiple of the cross-sectional median is stressed"
    )
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


class Ranking:
    """A ranked cross-section: symbols best first, their scores, and the ranker's own columns."""

    __slots__ = ("symbols", "scores", "extra")

    def __init__(self, symbols: list[str], scores: np.ndarray, extra: dict[str, np.ndarray] | None = None):
        self.symbols, self.scores, self.extra = symbols, scores, extra or {}

    @classmethod
    def of(cls, symbols: list[str], score: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> Ranking:
        """Sort by score (descending, NaN last), ties by symbol."""
        score = np.asarray(score, dtype=float)
        nan = np.isnan(score)
        order = np.lexsort((np.array(symbols, dtype=object).astype(str), -np.where(nan, 0.0, score), nan))
        return cls(
            [symbols[i] for i in order], score[order], {k: np.asarray(v)[order] for k, v in (extra or {}).items()}
        )

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {"symbol": self.symbols, "score": self.scores, "rank": np.arange(1, len(self.symbols) + 1)}
        )
        for k, v in self.extra.items():
            frame[k] = v
        return frame


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
    """A named scoring rule: rank 1 = best for the sleeve.

    Implement `rank(features DataFrame, ...)` returning symbol, score, rank and any own columns; the
    built-in rankers implement `rank_view` on arrays (the funnel's hot path) and derive `rank` from it.
    """

    name: str = ""

    def required_columns(self, settings: RankerSettings, logic: str) -> list[str]:
        """Feature columns whose absence makes a candidate unrankable (the darwinian filter vetoes it)."""
        return []

    def rank(
        self, features: pd.DataFrame, settings: RankerSettings, logic: str, direction: str, regime: str
    ) -> pd.DataFrame:
        return self.rank_view(FeatureView.from_frame(features), settings, logic, direction, regime).frame()

    def rank_view(
        self, view: FeatureView, settings: RankerSettings, logic: str, direction: str, regime: str
    ) -> Ranking:
        if type(self).rank is Ranker.rank:
            raise NotImplementedError(f"ranker {self.name!r} implements neither rank nor rank_view")
        frame = self.rank(view.frame(), settings, logic, direction, regime)
        extra = {c: frame[c].to_numpy() for c in frame.columns if c not in RANKING_COLUMNS}
        return Ranking([str(x) for x in frame["symbol"]], frame["score"].to_numpy(dtype=float), extra)


class SignalRanker(Ranker):
    """One raw feature, oriented by the sleeve: momentum for trend, -return_20d for long reversion."""

    name = "signal"

    def required_columns(self, settings, logic):
        return [settings.signal_columns[logic]]

    def rank_view(self, view, settings, logic, direction, regime):
        col = settings.signal_columns.get(logic)
        if col is None:
            raise ValueError(f"signal ranker has no column for logic {logic!r}")
        return Ranking.of(view.symbols, sleeve_sign(logic, direction) * view.col(col))


class MPSRanker(Ranker):
    """Multiplicative probability score alpha = prod_i p_i^w_i.

    Directional features (momentum, returns, ratings) are multiplied by the sleeve's sign before
    mapping, so a short sleeve's best momentum probability goes to the most bearish name; the quality
    features map the same way for every sleeve. Survival is derived from n_obs when absent.
    """

    name = "mps"

    def required_columns(self, settings, logic):
        return [f for f in DIRECTIONAL_FEATURES if settings.mps_weights.get(f, 0) > 0]

    def rank_view(self, view, settings, logic, direction, regime):
        settings.methods_cover_weights()
        sign = sleeve_sign(logic, direction)
        columns = view.columns
        if "survival" not in columns and "n_obs" in columns:
            columns = {**columns, "survival": np.minimum(view.col("n_obs") / SURVIVAL_DAYS, 1.0)}
        probs = {}
        log_alpha = np.zeros(len(view))
        for f, w in settings.mps_weights.items():
            if w <= 0:
                continue
            if f not in columns:
                raise KeyError(f"MPS weight on {f!r} but the features have no such column")
            x = np.asarray(columns[f], dtype=float) * (sign if f in DIRECTIONAL_FEATURES else 1)
            p = prob_map_array(x, settings.mps_methods[f])
            probs[f"{f}_prob"] = p
            log_alpha += w * np.log(np.clip(p, 1e-300, None))
        alpha = np.where(log_alpha > -690, np.exp(log_alpha), 0.0)
        return Ranking.of(view.symbols, alpha, probs)


def quadrants(momentum: np.ndarray, volatility: np.ndarray, trend: float, stress_vol: float) -> np.ndarray:
    """Per-asset quadrant from its own (sleeve-oriented) momentum and volatility.

    The reference's stress (0.7 vol_ratio + 0.6 turbulence > 1.1) tags plain noise as stressed, so
    stress here is volatility above `stress_vol` x the cross-sectional median.
    """
    vol = np.asarray(volatility, dtype=float)
    mom = np.asarray(momentum, dtype=float)
    median = np.nanmedian(vol) if (~np.isnan(vol)).any() else np.nan
    with np.errstate(invalid="ignore"):
        stressed = vol > stress_vol * median
        up, down = mom > trend, mom < -trend
    q = np.full(len(mom), "NORMAL", dtype=object)
    q[up & stressed] = "INFLATIONARY_TREND"
    q[up & ~stressed] = "EXPANSION"
    q[down & stressed] = "CRISIS"
    q[down & ~stressed] = "STAGNATION"
    q[np.isnan(mom)] = "NORMAL"
    return q


def asset_quadrant(momentum: pd.Series, volatility: pd.Series, trend: float, stress_vol: float) -> pd.Series:
    """`quadrants` of a frame's columns."""
    return pd.Series(
        quadrants(momentum.to_numpy(dtype=float), volatility.to_numpy(dtype=float), trend, stress_vol),
        index=momentum.index,
        dtype=object,
    )


_TREND_FIT = {"INFLATIONARY_TREND": 0.6, "EXPANSION": 0.6, "STAGNATION": -0.3, "CRISIS": 0.2}
_REVERSION_FIT = {"STAGNATION": 0.6, "NORMAL": 0.6, "INFLATIONARY_TREND": -0.6, "CRISIS": 0.4}


def regime_fit_array(
    hurst: np.ndarray, quadrant: np.ndarray, vol_clustering: np.ndarray, regime: str, logic: str
) -> np.ndarray:
    """Strategy-fit score: trend following likes persistent (H > 0.55) trending assets, mean
    reversion anti-persistent (H < 0.45) stagnating ones."""
    h = np.asarray(hurst, dtype=float)
    fit = np.zeros(len(h))
    with np.errstate(invalid="ignore"):
        if logic == "trend":
            fit += np.array([_TREND_FIT.get(q, 0.0) for q in quadrant])
            fit += np.where(h > 0.55, np.minimum(0.4, 2 * (h - 0.55)), 0.0)
            fit -= np.where(h < 0.45, 0.4, 0.0)
            fit += np.where(np.asarray(vol_clustering, dtype=float) > 0.5, 0.1, 0.0)
        else:
            fit += np.array([_REVERSION_FIT.get(q, 0.0) for q in quadrant])
            fit += np.where(h < 0.45, np.minimum(0.4, 2 * (0.45 - h)), 0.0)
            fit -= np.where(h > 0.55, 0.4, 0.0)
            if regime == "QUIET":
                fit += 0.2
    return np.round(fit, 12)


def regime_fit_scores(
    hurst: pd.Series, quadrant: pd.Series, vol_clustering: pd.Series, regime: str, logic: str
) -> pd.Series:
    """`regime_fit_array` of a frame's columns."""
    return pd.Series(
        regime_fit_array(
            hurst.to_numpy(dtype=float), quadrant.to_numpy(), vol_clustering.to_numpy(dtype=float), regime, logic
        ),
        index=hurst.index,
    )


class RegimeFitRanker(Ranker):
    """Trend-following / mean-reversion fit of each asset in the current regime.

    The quadrant is computed on sleeve-oriented momentum (momentum x +1 long / -1 short), so for a
    short trend sleeve a falling stock is the "trending" one. Fewer than `min_obs` observations -> 0.
    """

    name = "regime_fit"

    def required_columns(self, settings, logic):
        return ["momentum", "volatility", "hurst"]

    def rank_view(self, view, settings, logic, direction, regime):
        check_regime(regime)
        sleeve_sign(logic, direction)
        dsign = 1 if direction.lower() == "long" else -1
        mom = dsign * view.col("momentum")
        quadrant = quadrants(mom, view.col("volatility"), settings.quadrant_trend, settings.quadrant_stress_vol)
        vc = view.col("vol_clustering") if "vol_clustering" in view else np.full(len(view), np.nan)
        hurst = view.col("hurst")
        fit = regime_fit_array(hurst, quadrant, vc, regime, logic)
        if "n_obs" in view:
            fit[view.col("n_obs") < settings.min_obs] = 0.0
        fit[np.isnan(hurst) | np.isnan(mom)] = np.nan
        return Ranking.of(view.symbols, fit, {"quadrant": quadrant})


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


def rank_candidates(
    features: pd.DataFrame, settings: RankerSettings, logic: str, direction: str, regime: str = "NORMAL"
) -> pd.DataFrame:
    """The rankings frame: symbol, score, rank (1 = best for this sleeve) and the ranker's own columns."""
    sleeve_sign(logic, direction)
    return get_ranker(settings.name).rank(features, settings, logic, direction, regime)


def rank_view(
    view: FeatureView, settings: RankerSettings, logic: str, direction: str, regime: str = "NORMAL"
) -> Ranking:
    """`rank_candidates` on a FeatureView (the funnel's hot path)."""
    sleeve_sign(logic, direction)
    return get_ranker(settings.name).rank_view(view, settings, logic, direction, regime)
