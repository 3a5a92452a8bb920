"""Point-in-time per-symbol features of a trailing returns window.

Pure numpy/pandas (no Dagster); every feature sees only the rows it is given.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_COLUMNS",
    "adf_pvalue",
    "adf_pvalue_matrix",
    "antifragility_matrix",
    "antifragility_scores",
    "compute_features",
    "cvar_matrix",
    "efficiency_ratio",
    "efficiency_ratio_matrix",
    "haar_turbulence",
    "haar_turbulence_matrix",
    "hurst_rs",
    "hurst_rs_matrix",
    "permutation_entropy",
    "permutation_entropy_matrix",
    "technical_ratings_matrix",
    "vol_clustering_matrix",
]

# Other modules select columns by these names; order is the frame's column order.
FEATURE_COLUMNS: list[str] = [
    "momentum",  # mean daily return x annualisation (last `window` rows)
    "volatility",  # sample std x sqrt(annualisation) (last `window` rows)
    "stability",  # 1 / (volatility + 1e-9)
    "entropy",  # normalised permutation entropy (last `window` rows)
    "hurst",  # R/S Hurst exponent (whole column)
    "hurst_clean",  # clip(1 - 2|H - 0.5|, 0, 1); 1 = random walk, NaN H -> 0.5
    "efficiency",  # Kaufman efficiency ratio (last `window` rows)
    "skew",  # biased sample skewness, signed (whole column)
    "kurtosis",  # biased excess kurtosis (whole column)
    "cvar",  # mean of returns <= 5% quantile, negative (whole column)
    "liquidity",  # min(1, adv / baseline): 5e8 for exchange-traded universes, 1e7 for crypto; NaN without volume
    "adv",  # mean value traded (close x volume) of the last 20 sessions, quote currency; NaN without volume
    "adf_pvalue",  # ADF unit-root p-value (last `window` rows)
    "turbulence",  # Haar DWT detail-energy share (last `window` rows)
    "antifragility",  # cross-sectional [minmax(skew) + minmax(tail gain)] x min(1, N/252)
    "vol_clustering",  # lag-1 autocorrelation of |r| (last `window` rows)
    "return_20d",  # compounded return of the last 20 rows
    "return_60d",  # compounded return of the last 60 rows
    "rating_ma",  # moving-average vote consensus in [-1, 1]
    "rating_osc",  # oscillator vote consensus in [-1, 1] (with the OHLC votes when the source has bars)
    "rating_all",  # mean of rating_ma and rating_osc
    "adx",  # ADX(14) of the bars; NaN without highs and lows
    "n_obs",  # rows seen
]

_HURST_MIN_OBS = 32
_HURST_LAGS = (8, 16, 32, 64, 128, 256, 512)
_HURST_FALLBACK_LAGS = (10, 15, 20, 25)
_ER_MIN_OBS = 10
_TINY = 1e-12
_CVAR_MIN_OBS = 20  # cvar needs > 20 observations
_CVAR_DEFAULT = -0.1
_ADF_MIN_OBS = 20
_ADF_LAGS = 1
_DWT_MIN_OBS = 8
_SQRT2 = math.sqrt(2.0)
LIQUIDITY_BASELINE = 5e8  # value traded (quote currency) of a fully liquid exchange-traded name
LIQUIDITY_BASELINE_CRYPTO = 1e7  # a liquid crypto market trades about 50x less value than a liquid large cap
ADV_SESSIONS = 20
_RATING_MA_LENGTHS = (10, 20, 30, 50, 100, 200)
_MAX_PE_ORDER = 15  # order**order must fit in int64 for the pattern codes


# All matrix kernels work on the transposed, C-contiguous (symbols x dates) layout so
# that every per-symbol reduction runs over one contiguous row. numpy then uses the
# same (pairwise) summation for a column of a wide matrix as for a single 1-D series,
# which is what makes the 1-D and matrix versions agree bit for bit.


def _as_1d(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    return arr


def _rows_by_symbol(X) -> np.ndarray:
    """(n_obs, n_cols) -> C-contiguous float (n_cols, n_obs)."""
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array (dates x symbols), got shape {arr.shape}")
    return np.ascontiguousarray(arr.T)


def _require_no_nan(XT: np.ndarray, name: str) -> None:
    if np.isnan(XT).any():
        raise ValueError(f"{name} expects a matrix without NaN; use the 1-D version per column")


# --------------------------------------------------------------------------------------
# Permutation entropy
# --------------------------------------------------------------------------------------


def _check_pe_params(order: int, delay: int) -> None:
    if not 2 <= int(order) <= _MAX_PE_ORDER:
        raise ValueError(f"order must be in [2, {_MAX_PE_ORDER}], got {order}")
    if int(delay) < 1:
        raise ValueError(f"delay must be >= 1, got {delay}")


def permutation_entropy_matrix(X, order: int = 5, delay: int = 1) -> np.ndarray:
    """Normalised permutation entropy of every column of ``X`` (dates x symbols).

    Vectorised form of :func:`permutation_entropy` and bit-identical
    to it. Intended for NaN-free input, but follows the same rule if NaN is present:
    windows containing NaN are skipped.
    """
    _check_pe_params(order, delay)
    order, delay = int(order), int(delay)
    XT = _rows_by_symbol(X)
    m, n = XT.shape
    out = np.full(m, np.nan)
    if m == 0:
        return out

    nan_mask = np.isnan(XT)
    enough = (n - nan_mask.sum(axis=1)) >= order
    n_windows = n - (order - 1) * delay
    if n_windows <= 0:
        out[enough] = 0.0
        return out

    # Embedding (m, W, order): position k of window i is x[i + k*delay].
    emb = np.stack([XT[:, slice(k * delay, k * delay + n_windows)] for k in range(order)], axis=2)
    valid = ~np.stack([nan_mask[:, slice(k * delay, k * delay + n_windows)] for k in range(order)], axis=2).any(axis=2)

    perms = np.argsort(emb, axis=2, kind="stable")
    weights = order ** np.arange(order - 1, -1, -1, dtype=np.int64)
    codes = perms.astype(np.int64) @ weights  # (m, W) base-`order` pattern codes
    codes = np.where(valid, codes, -1)  # -1 marks skipped (NaN) windows

    n_valid = valid.sum(axis=1)
    # Distinct-pattern counts per row: sort each row, then run lengths of equal codes.
    s = np.sort(codes, axis=1)
    starts = np.ones_like(s, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    start_flat = np.flatnonzero(starts.ravel())
    run_len = np.diff(np.append(start_flat, s.size))
    run_row = start_flat // n_windows
    keep = s.ravel()[start_flat] >= 0
    run_len, run_row = run_len[keep], run_row[keep]

    p = run_len / n_valid[run_row]
    h = np.bincount(run_row, weights=-p * np.log(p), minlength=m)
    h = np.clip(h / math.log(math.factorial(order)), 0.0, 1.0)

    out[enough] = np.where(n_valid[enough] > 0, h[enough], 0.0)
    return out


def permutation_entropy(x, order: int = 5, delay: int = 1) -> float:
    """Normalised permutation entropy of a 1-D series, in [0, 1].

    A noise measure for the entropy veto: near 1 the ordinal patterns are
    uniformly mixed (no exploitable structure), near 0 the series is regular.
    Windows of ``order`` values spaced by ``delay`` that contain NaN are skipped;
    patterns are the stable argsort encoded base ``order``; H = -sum p ln p / ln(order!).
    NaN if fewer than ``order`` non-NaN values; 0.0 if no valid window remains.
    """
    x = _as_1d(x)
    return float(permutation_entropy_matrix(x[:, None], order=order, delay=delay)[0])


# --------------------------------------------------------------------------------------
# Hurst exponent, rescaled range
# --------------------------------------------------------------------------------------


def _hurst_lags(n: int) -> list[int]:
    lags = [lag for lag in _HURST_LAGS if lag <= n / 2]
    if len(lags) < 2:
        lags = [lag for lag in _HURST_FALLBACK_LAGS if lag <= n / 2]
    return lags


def hurst_rs_matrix(X) -> np.ndarray:
    """Hurst exponent (R/S) of every NaN-free column of ``X`` (dates x symbols).

    Vectorised form of :func:`hurst_rs`: each lag is one reshape of
    all symbols into (symbols, segments, lag). Bit-identical to the 1-D version.
    """
    XT = _rows_by_symbol(X)
    _require_no_nan(XT, "hurst_rs_matrix")
    m, n = XT.shape
    if m == 0 or n < _HURST_MIN_OBS:
        return np.full(m, np.nan)

    lags = _hurst_lags(n)
    if len(lags) < 2:
        return np.full(m, 0.5)

    mean_rs = []
    for lag in lags:
        k = n // lag
        seg = XT[:, : k * lag].reshape(m, k, lag)
        dev = seg - seg.mean(axis=2, keepdims=True)
        cs = np.cumsum(dev, axis=2)
        r = cs.max(axis=2) - cs.min(axis=2)
        s = np.sqrt(np.mean(dev * dev, axis=2))  # population std of the segment
        ok = s > _TINY
        rs = np.divide(r, s, out=np.zeros_like(r), where=ok)
        pos = rs > 0
        cnt = pos.sum(axis=1)
        total = np.where(pos, rs, 0.0).sum(axis=1)
        mean_rs.append(np.divide(total, cnt, out=np.zeros_like(total), where=cnt > 0))

    y_raw = np.stack(mean_rs, axis=1)  # (m, L), C-contiguous
    w = y_raw > 0
    y = np.log(np.where(w, y_raw, 1.0))
    x = np.broadcast_to(np.log(np.asarray(lags, dtype=float)), y.shape)
    wf = w.astype(float)
    cnt = wf.sum(axis=1)
    safe = np.maximum(cnt, 1.0)
    xbar = (wf * x).sum(axis=1) / safe
    ybar = (wf * y).sum(axis=1) / safe
    dx = (x - xbar[:, None]) * wf
    dy = (y - ybar[:, None]) * wf
    sxx = (dx * dx).sum(axis=1)
    sxy = (dx * dy).sum(axis=1)
    usable = (cnt >= 2) & (sxx > 0)
    slope = np.divide(sxy, sxx, out=np.full(m, 0.5), where=usable)
    return np.where(usable, np.clip(slope, 0.0, 1.0), 0.5)


def hurst_rs(x) -> float:
    """Hurst exponent by rescaled range, in [0, 1].

    Persistence measure: > 0.5 trending, < 0.5 mean-reverting, 0.5 random walk
    (also the neutral answer when no lag gives a usable R/S). NaN values are
    dropped; needs >= 32 observations, else NaN. Lags 8, 16, ..., 512 that are
    <= n/2; H is the least-squares slope of log mean(R/S) on log(lag).
    """
    x = _as_1d(x)
    x = x[~np.isnan(x)]
    return float(hurst_rs_matrix(x[:, None])[0])


# --------------------------------------------------------------------------------------
# Kaufman efficiency ratio
# --------------------------------------------------------------------------------------


def efficiency_ratio_matrix(R) -> np.ndarray:
    """Kaufman efficiency ratio of every NaN-free column of ``R`` (dates x symbols).

    Vectorised form of :func:`efficiency_ratio`; bit-identical to it.
    """
    RT = _rows_by_symbol(R)
    _require_no_nan(RT, "efficiency_ratio_matrix")
    m, n = RT.shape
    if m == 0 or n < _ER_MIN_OBS:
        return np.full(m, np.nan)
    net = np.abs(RT.sum(axis=1))
    path = np.abs(RT).sum(axis=1)
    ok = path > _TINY
    return np.divide(net, path, out=np.zeros(m), where=ok)


def efficiency_ratio(r) -> float:
    """Kaufman efficiency ratio on returns: |sum r| / sum |r|.

    How much of the distance travelled is net progress: 1 for a straight line,
    0 for pure back-and-forth. NaN dropped; needs >= 10 observations, else NaN;
    0.0 for a flat path (sum |r| <= 1e-12).
    """
    r = _as_1d(r)
    r = r[~np.isnan(r)]
    return float(efficiency_ratio_matrix(r[:, None])[0])


# --------------------------------------------------------------------------------------
# Distribution shape and tails, antifragility
# --------------------------------------------------------------------------------------


def _moments_rows(XT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Biased skew and excess kurtosis per row, as scipy.stats.skew / kurtosis (defaults).

    scipy answers NaN for a constant row; we answer 0.0 (a degenerate distribution has
    no asymmetry and no fat tail), and 0.0 for fewer than 3 rows as the reference does for
    kurtosis, so the features stay usable in scores.
    """
    m, n = XT.shape
    skew, kurt = np.zeros(m), np.zeros(m)
    if m == 0 or n < 3:
        return skew, kurt
    mu = XT.mean(axis=1)
    d = XT - mu[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = (d2 * d).mean(axis=1)
    m4 = (d2 * d2).mean(axis=1)
    # scipy's precision-loss test for "constant" input
    ok = m2 > (np.finfo(float).resolution * np.abs(mu)) ** 2
    ok &= m2 > 0
    safe = np.where(ok, m2, 1.0)
    skew = np.where(ok, m3 / safe**1.5, 0.0)
    kurt = np.where(ok, m4 / safe**2 - 3.0, 0.0)
    return skew, kurt


def _tail_mean_rows(XT: np.ndarray, q: float, upper: bool) -> np.ndarray:
    """Mean of each row's values <= its q-quantile (or > it when ``upper``); 0.0 if none."""
    qv = np.quantile(XT, q, axis=1)[:, None]
    mask = XT > qv if upper else XT <= qv
    cnt = mask.sum(axis=1)
    tot = np.where(mask, XT, 0.0).sum(axis=1)
    return np.divide(tot, cnt, out=np.zeros(len(XT)), where=cnt > 0)


def cvar_matrix(R, alpha: float = 0.05) -> np.ndarray:
    """Historical CVaR of every column: mean of returns at or below the ``alpha`` quantile.

    A negative number (an expected loss). Needs > 20 observations, else the reference's
    conservative default -0.1.
    """
    RT = _rows_by_symbol(R)
    _require_no_nan(RT, "cvar_matrix")
    m, n = RT.shape
    if n <= _CVAR_MIN_OBS:
        return np.full(m, _CVAR_DEFAULT)
    return _tail_mean_rows(RT, alpha, upper=False)


def _minmax(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min() + 1e-9) if len(x) else x


def antifragility_scores(skew: np.ndarray, tail_gain: np.ndarray, n_obs: int) -> np.ndarray:
    """[minmax(skew) + minmax(tail_gain)] x min(1, N/252), in [0, 2].

    Cross-sectional: rewards the symbols with the most right-skewed returns and the
    biggest good days relative to the others in the same universe; short histories
    are shrunk towards 0 because their tails are barely sampled.
    """
    skew = np.nan_to_num(np.asarray(skew, dtype=float))
    tail_gain = np.nan_to_num(np.asarray(tail_gain, dtype=float))
    conf = min(1.0, max(int(n_obs), 0) / 252.0)
    return np.clip((_minmax(skew) + _minmax(tail_gain)) * conf, 0.0, 2.0)


def antifragility_matrix(X) -> np.ndarray:
    """Antifragility of each column of a dense (dates x streams) matrix, scaled across its columns.

    For strategy atoms: a short atom's stream is -min(r, 1), whose right tail is the stock's left
    tail, so the score of the stream (not of the stock) is what a barbell's aggressor should use."""
    XT = _rows_by_symbol(X)
    n = XT.shape[1]
    if XT.shape[0] == 0:
        return np.zeros(0)
    skew, _ = _moments_rows(XT)
    tail_gain = _tail_mean_rows(XT, 0.95, upper=True) if n else np.zeros(XT.shape[0])
    return antifragility_scores(skew, tail_gain, n)


# --------------------------------------------------------------------------------------
# Haar wavelet turbulence
# --------------------------------------------------------------------------------------


def _haar_turbulence_rows(XT: np.ndarray) -> np.ndarray:
    m, n = XT.shape
    if n < _DWT_MIN_OBS:
        return np.full(m, 0.5)
    level = min(3, int(math.floor(math.log2(n))))  # == pywt.dwt_max_level(n, "haar")
    a = XT
    detail = np.zeros(m)
    for _ in range(level):
        if a.shape[1] % 2:  # pywt's default "symmetric" extension repeats the last sample
            a = np.concatenate([a, a[:, -1:]], axis=1)
        even, odd = a[:, 0::2], a[:, 1::2]
        d = (even - odd) / _SQRT2
        a = (even + odd) / _SQRT2
        detail += (d * d).sum(axis=1)
    total = detail + (a * a).sum(axis=1)
    ok = total > 0
    return np.where(ok, detail / np.where(ok, total, 1.0), 0.5)


def haar_turbulence_matrix(X) -> np.ndarray:
    """Share of signal energy in the Haar DWT detail coefficients, per column.

    High-frequency energy share, a roughness measure: white noise ~0.875 at level 3
    (only 1/8 of its energy is in the coarse approximation), smooth/trending paths
    near 0. Level min(3, max level), pywt "symmetric" padding reproduced without
    pywt. Needs >= 8 points; 0.5 (neutral) when shorter or when the energy is zero.
    """
    XT = _rows_by_symbol(X)
    _require_no_nan(XT, "haar_turbulence_matrix")
    return _haar_turbulence_rows(XT)


def haar_turbulence(x) -> float:
    """1-D :func:`haar_turbulence_matrix` (NaN dropped)."""
    x = _as_1d(x)
    x = x[~np.isnan(x)]
    return float(_haar_turbulence_rows(x[None, :])[0])


# --------------------------------------------------------------------------------------
# Augmented Dickey-Fuller p-value (stationarity)
# --------------------------------------------------------------------------------------


def _adf_tstat_rows(XT: np.ndarray, lags: int) -> np.ndarray:
    """ADF t-statistic of every row, constant only, fixed ``lags``; NaN where singular.

    Same regression as ``statsmodels.tsa.stattools.adfuller(x, maxlag=lags,
    regression="c", autolag=None)``: dy_t on y_{t-1}, dy_{t-1..t-lags} and a constant.
    The constant is removed by demeaning (Frisch-Waugh), leaving a (1+lags)-square
    normal-equation system solved for all rows at once.
    """
    m, n = XT.shape
    dy = np.diff(XT, axis=1)
    T = n - 1 - lags
    k = 1 + lags
    y = dy[:, lags:]
    regs = [XT[:, lags : n - 1]] + [dy[:, lags - i : n - 1 - i] for i in range(1, lags + 1)]
    Z = np.stack(regs, axis=2)  # (m, T, k)
    Z = Z - Z.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    G = np.einsum("mtk,mtj->mkj", Z, Z)
    b = np.einsum("mtk,mt->mk", Z, y)
    dof = T - k - 1
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(G) if m else np.zeros(0)
        ok = np.isfinite(cond) & (cond < 1e12) & (dof > 0)
        Gs = np.where(ok[:, None, None], G, np.eye(k))
        Ginv = np.linalg.inv(Gs)
        beta = np.einsum("mkj,mj->mk", Ginv, b)
        resid = y - np.einsum("mtk,mk->mt", Z, beta)
        s2 = (resid * resid).sum(axis=1) / max(dof, 1)
        t = beta[:, 0] / np.sqrt(s2 * Ginv[:, 0, 0])
    return np.where(ok & np.isfinite(t), t, np.nan)


def adf_pvalue_matrix(X, lags: int = 1) -> np.ndarray:
    """MacKinnon p-value of the ADF unit-root test of every column.

    Low = stationary (mean-reverting level), high = unit root. Returns themselves are
    almost always stationary, so on returns this mainly flags drifting or persistent
    windows. Fixed lag (default 1) instead of adfuller's AIC search: deterministic
    and vectorisable; matches ``adfuller(..., maxlag=lags, autolag=None)`` exactly.
    Needs >= 20 observations; 0.5 (neutral) when shorter, when std < 1e-12, or when
    the regression is singular (the reference's "failure -> 0.5").
    """
    XT = _rows_by_symbol(X)
    _require_no_nan(XT, "adf_pvalue_matrix")
    return _adf_pvalue_rows(XT, int(lags))


def preload() -> None:
    """Import what the features import on first use (scipy's normal CDF kernel) now: a step calls it
    before forking its workers, which inherit it."""
    import scipy.special  # noqa: F401


# MacKinnon's (1994) response-surface coefficients for the ADF test with a constant and one
# series (statsmodels' `tsa.adfvalues` tables "c", N=1, as it scales them): the p-value is the
# normal CDF of a polynomial in the statistic, the small-p one up to TAU_STAR, the large-p one
# above, 0 below TAU_MIN and 1 above TAU_MAX. Copied rather than imported: importing
# `statsmodels.tsa.adfvalues` imports `scipy.stats` with it, 1.2 s in every fresh process that
# computes features (a step of a UI run, the command line); `test_features.py` checks every
# constant against statsmodels' own.
TAU_SMALL_P = np.asarray([2.1659, 1.4412, 3.8269]) * np.array([1, 1, 1e-2])
TAU_LARGE_P = np.asarray([1.7339, 9.3202, -1.2745, -1.0368]) * np.array([1, 1e-1, 1e-1, 1e-2])
TAU_STAR, TAU_MIN, TAU_MAX = -1.61, -18.83, 2.74


def mackinnon_pvalues(t: np.ndarray) -> np.ndarray:
    """statsmodels' `mackinnonp(t, regression="c", N=1)` for an array of ADF statistics (NaN -> 0.5).

    The same tables and the same polynomial and normal-CDF evaluation (`scipy.special.ndtr`, the
    kernel of `scipy.stats.norm.cdf`), element-wise instead of one Python call per statistic
    (tested equal to statsmodels bit for bit)."""
    from scipy.special import ndtr

    t = np.asarray(t, dtype=float)
    small = np.polyval(TAU_SMALL_P[::-1], t)
    large = np.polyval(TAU_LARGE_P[::-1], t)
    p = ndtr(np.where(t <= TAU_STAR, small, large))
    p = np.where(t > TAU_MAX, 1.0, np.where(t < TAU_MIN, 0.0, p))
    return np.where(np.isnan(t), 0.5, p)


def _adf_pvalue_rows(XT: np.ndarray, lags: int) -> np.ndarray:
    m, n = XT.shape
    out = np.full(m, 0.5)
    if m == 0 or n < max(_ADF_MIN_OBS, lags + 5):
        return out
    live = XT.std(axis=1) >= _TINY
    if not live.any():
        return out
    t = _adf_tstat_rows(XT[live], lags)
    out[live] = mackinnon_pvalues(t)
    return out


def adf_pvalue(x, lags: int = 1) -> float:
    """1-D :func:`adf_pvalue_matrix` (NaN dropped)."""
    x = _as_1d(x)
    x = x[~np.isnan(x)]
    return float(_adf_pvalue_rows(x[None, :], int(lags))[0])


# --------------------------------------------------------------------------------------
# Volatility clustering
# --------------------------------------------------------------------------------------


def _lag1_autocorr_rows(XT: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row with itself shifted by one; 0.0 when undefined."""
    m, n = XT.shape
    if n < 3:
        return np.zeros(m)
    a, b = XT[:, :-1], XT[:, 1:]
    da = a - a.mean(axis=1, keepdims=True)
    db = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    ok = den > _TINY**2
    return np.divide((da * db).sum(axis=1), den, out=np.zeros(m), where=ok)


def vol_clustering_matrix(R) -> np.ndarray:
    """Lag-1 autocorrelation of |r| per column: > 0 when big moves follow big moves.

    The GARCH signature of a stressed market. 0.0 when |r| is constant (nothing to
    cluster) or with fewer than 3 observations.
    """
    RT = _rows_by_symbol(R)
    _require_no_nan(RT, "vol_clustering_matrix")
    return _lag1_autocorr_rows(np.abs(RT))


# --------------------------------------------------------------------------------------
# Technical ratings (TradingView-style "Recommend.MA / Recommend.Other / Recommend.All")
# --------------------------------------------------------------------------------------


LONG_SERIES = 1024  # days: above this, a row-by-row C loop beats a Python step per day


def _first_order_rows(x: np.ndarray, alpha: float, z0: np.ndarray) -> np.ndarray:
    """y[n] = alpha * x[n] + z, z = (1 - alpha) * y[n], along each row, starting from z = z0.

    The recursion scipy.signal.lfilter([alpha], [1, alpha - 1], x, zi=z0) runs, in the same
    floating-point operations in the same order (so the same bits for finite and missing values;
    lfilter's 0 * x term turns an infinite input into NaN), stepping all rows at once:
    importing scipy.signal costs 0.7 s in every process that computes features (a CLI run, each
    step the UI starts), more than the filter itself on the steps' windows (at most a few hundred
    days, many symbols and dates stacked). A long series of few symbols (a whole history, more
    days than rows and over LONG_SERIES days) goes to lfilter itself: there a Python step per day
    costs more than the import (6x on 20 symbols x 8,312 days, `benchmarks.features`)."""
    if x.shape[1] == 0:
        return np.array(x, dtype=float)
    if x.shape[1] > LONG_SERIES and x.shape[0] < x.shape[1]:
        from scipy.signal import lfilter

        y, _ = lfilter([alpha], [1.0, alpha - 1.0], x, axis=1, zi=np.asarray(z0, dtype=float).reshape(-1, 1))
        return y
    xt = np.ascontiguousarray(x.T, dtype=float)
    y = np.empty_like(xt)
    z = np.asarray(z0, dtype=float).reshape(-1).copy()
    keep = 1.0 - alpha
    for n in range(xt.shape[0]):
        yn = alpha * xt[n]
        yn += z
        y[n] = yn
        z = keep * yn
    return np.ascontiguousarray(y.T)


def _ema_rows(P: np.ndarray, span: int) -> np.ndarray:
    """EMA (pandas ewm(span, adjust=False)) of every row, seeded with the first value."""
    alpha = 2.0 / (span + 1.0)
    return _first_order_rows(P, alpha, (1.0 - alpha) * P[:, :1])


def _rma_rows(x: np.ndarray, length: int) -> np.ndarray:
    """Wilder's moving average (TradingView ta.rma): SMA seed, then alpha = 1/length."""
    alpha = 1.0 / length
    seed = x[:, :length].mean(axis=1, keepdims=True)
    rest = _first_order_rows(x[:, length:], alpha, (1.0 - alpha) * seed)
    return np.concatenate([seed, rest], axis=1)


def _rsi_rows(P: np.ndarray, length: int = 14) -> np.ndarray:
    """RSI series (values from price index ``length`` on); 100 when no losses, 50 when flat."""
    dp = np.diff(P, axis=1)
    ag = _rma_rows(np.maximum(dp, 0.0), length)
    al = _rma_rows(np.maximum(-dp, 0.0), length)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + ag / al)
    rsi = np.where(al > 0, rsi, np.where(ag > 0, 100.0, 50.0))
    return rsi


def _vote(diff: np.ndarray) -> np.ndarray:
    return np.sign(diff)


def technical_ratings_matrix(R, extra_osc_votes=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rating_ma, rating_osc, rating_all) in [-1, 1] for every column of returns ``R``.

    TradingView-style consensus of buy (+1) / neutral (0) / sell (-1) votes on the price
    index cumprod(1 + r) (starting at 1.0), read at the last date:

    * moving averages: close vs SMA and EMA of 10, 20, 30, 50, 100, 200 (a length
      votes only when the index has that many points);
    * oscillators: RSI(14) < 30 buy / > 70 sell; momentum(10) sign; MACD(12, 26) vs its
      signal(9); Stoch RSI(3, 3, 14, 14): K and D < 20 with K > D buy, > 80 with K < D
      sell (TradingView's extra trend condition dropped).

    The items that need a bar's range (Stochastic, CCI, ADX, Williams %R, Donchian) are
    never faked from closes: a universe whose source brings highs and lows passes their
    votes (`selection.ohlc.ohlc_votes`) as ``extra_osc_votes``, arrays in {-1, 0, 1} with
    NaN where a row has no vote; they join the oscillator mean. The others (Awesome
    Oscillator, Bull Bear Power, Ultimate Oscillator, Ichimoku, VWMA) are left out. RSI
    uses simple (non-directional) thresholds. rating_all is the mean of the two groups.
    NaN where no indicator of a group has enough history.
    """
    RT = _rows_by_symbol(R)
    _require_no_nan(RT, "technical_ratings_matrix")
    m, n = RT.shape
    P = np.empty((m, n + 1))
    P[:, 0] = 1.0
    np.cumprod(1.0 + RT, axis=1, out=P[:, 1:])
    n_p = n + 1
    close = P[:, -1]

    ma_votes: list[np.ndarray] = []
    for length in _RATING_MA_LENGTHS:
        if n_p < length:
            continue
        ma_votes.append(_vote(close - P[:, -length:].mean(axis=1)))
        ma_votes.append(_vote(close - _ema_rows(P, length)[:, -1]))

    osc_votes: list[np.ndarray] = []
    if n_p >= 15:
        rsi = _rsi_rows(P, 14)
        last = rsi[:, -1]
        osc_votes.append(np.where(last < 30, 1.0, np.where(last > 70, -1.0, 0.0)))
        if rsi.shape[1] >= 18:  # Stoch RSI needs 14 + 3 + 3 - 2 RSI values
            win = np.lib.stride_tricks.sliding_window_view(rsi[:, -18:], 14, axis=1)  # (m, 5, 14)
            lo, hi = win.min(axis=2), win.max(axis=2)
            rng = hi - lo
            stoch = np.divide(100.0 * (rsi[:, -5:] - lo), rng, out=np.full_like(lo, np.nan), where=rng > 0)
            k = (stoch[:, :-2] + stoch[:, 1:-1] + stoch[:, 2:]) / 3.0  # last 3 K values
            kk, d = k[:, -1], k.mean(axis=1)
            with np.errstate(invalid="ignore"):
                buy = (kk < 20) & (d < 20) & (kk > d)
                sell = (kk > 80) & (d > 80) & (kk < d)
            osc_votes.append(np.where(buy, 1.0, np.where(sell, -1.0, 0.0)))
    if n_p >= 11:
        osc_votes.append(_vote(close - P[:, -11]))
    if n_p >= 35:
        macd = _ema_rows(P, 12) - _ema_rows(P, 26)
        signal = _ema_rows(macd, 9)
        osc_votes.append(_vote(macd[:, -1] - signal[:, -1]))

    nan = np.full(m, np.nan)
    ma = np.mean(ma_votes, axis=0) if ma_votes else nan
    osc = np.mean(osc_votes, axis=0) if osc_votes else nan
    if len(extra_osc_votes):
        extra = np.stack(extra_osc_votes)
        has = ~np.isnan(extra)
        total = np.nansum(extra, axis=0) + (np.sum(osc_votes, axis=0) if osc_votes else 0.0)
        count = has.sum(axis=0) + len(osc_votes)
        osc = np.divide(total, count, out=nan.copy(), where=count > 0)
    both = np.stack([ma, osc])
    cnt = (~np.isnan(both)).sum(axis=0)
    allr = np.divide(np.nansum(both, axis=0), cnt, out=nan.copy(), where=cnt > 0)
    return ma, osc, allr


# --------------------------------------------------------------------------------------
# Feature frame
# --------------------------------------------------------------------------------------


def _compounded(XT: np.ndarray, rows: int) -> np.ndarray:
    m, n = XT.shape
    if n < rows:
        return np.full(m, np.nan)
    return np.prod(1.0 + XT[:, n - rows :], axis=1) - 1.0


def compute_features(
    returns: pd.DataFrame,
    window: int = 120,
    pe_order: int = 5,
    pe_delay: int = 1,
    annualisation: int = 252,
    value_traded: pd.Series | None = None,
) -> pd.DataFrame:
    """Per-symbol features of a dense returns matrix, indexed by ``symbol``.

    Point in time: uses only the rows it is given (callers slice to the as-of date).
    Two horizons, chosen by what each statistic needs:

    * the last ``window`` rows (current behaviour of the path): momentum, volatility,
      stability, entropy, efficiency, adf_pvalue, turbulence, vol_clustering;
    * the whole column (needs sample size / long history): hurst, hurst_clean, skew,
      kurtosis, cvar, antifragility (its N/252 factor counts the whole column), and the
      technical ratings (SMA/EMA 200 need 200 points);
    * return_20d / return_60d: the last 20 / 60 rows, compounded.

    ``value_traded`` (per symbol, e.g. average daily traded value) feeds ``adv`` and
    ``liquidity`` = min(1, adv / 5e8) (the TradFi baseline); both are NaN for
    symbols without it (or without positive finite volume data), so "unknown" is never
    mistaken for "illiquid". ``entropy`` NaN (too few rows) becomes 1.0 so the entropy
    veto treats unknown as noise; the other features use the reference's neutral defaults
    where it gives one (kurtosis 0, cvar -0.1, adf/turbulence 0.5, hurst_clean 0.5)
    and NaN otherwise. Nothing raises for short input.
    """
    if not isinstance(returns, pd.DataFrame):
        raise TypeError("returns must be a pandas DataFrame (dates x symbols)")
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if annualisation <= 0:
        raise ValueError(f"annualisation must be > 0, got {annualisation}")
    _check_pe_params(pe_order, pe_delay)
    if len(returns.index) > 1 and not returns.index.is_monotonic_increasing:
        raise ValueError("returns index must be ascending (oldest first)")
    if value_traded is not None and not isinstance(value_traded, pd.Series):
        raise TypeError("value_traded must be a pandas Series indexed by symbol")

    symbols = pd.Index(returns.columns, name="symbol")
    m = len(symbols)
    if m == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=float) for c in FEATURE_COLUMNS},
            index=symbols,
        )

    XT = np.ascontiguousarray(returns.to_numpy(dtype=float).T)  # (symbols, dates)
    if np.isnan(XT).any():
        raise ValueError("returns must be dense (no NaN)")
    data = feature_rows(XT, window, pe_order, pe_delay, annualisation)
    data["antifragility"] = antifragility_scores(data.pop("_skew_for_af"), data.pop("_tail_gain"), XT.shape[1])
    if value_traded is None:
        adv = data["adv"]
    else:
        adv = pd.to_numeric(value_traded.reindex(symbols), errors="coerce").to_numpy(dtype=float)
        adv = np.where(np.isfinite(adv) & (adv > 0), adv, np.nan)
    data["adv"] = adv
    data["liquidity"] = np.minimum(1.0, adv / LIQUIDITY_BASELINE)
    return pd.DataFrame({c: np.asarray(data[c], dtype=float) for c in FEATURE_COLUMNS}, index=symbols)


def feature_rows(
    XT: np.ndarray,
    window: int = 120,
    pe_order: int = 5,
    pe_delay: int = 1,
    annualisation: int = 252,
    bars: tuple[np.ndarray, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Every per-row feature of a dense (rows x dates) matrix, one row per (symbol, as-of date).

    The kernel of `compute_features`, without the cross-sectional antifragility (it returns the
    `_skew_for_af` and `_tail_gain` inputs instead) and without value traded. Rows are independent,
    so the rows of many rebalance dates (windows of equal length) can be stacked and computed in one
    call: `features_of_windows` does that, and each row's numbers are those of a one-date call.

    ``bars`` = (highs, lows, closes, volumes) on the same rows and sessions as ``XT`` (NaN where a
    symbol has none) adds the OHLC oscillator votes and ADX for the rows whose highs and lows are
    complete, and adv for the rows with volumes; without it those stay NaN.
    """
    XT = np.ascontiguousarray(XT, dtype=float)
    m, n = XT.shape
    nan_col = np.full(m, np.nan)
    tail = np.ascontiguousarray(XT[:, max(n - int(window), 0) :])
    nt = tail.shape[1]

    momentum = tail.mean(axis=1) * annualisation if nt >= 1 else nan_col.copy()
    if nt >= 2:
        volatility = tail.std(axis=1, ddof=1) * math.sqrt(annualisation)
    else:
        volatility = nan_col.copy()
    stability = 1.0 / (volatility + 1e-9)

    # The matrix kernels take (dates x symbols); pass transposed views of our rows.
    entropy = permutation_entropy_matrix(tail.T, order=pe_order, delay=pe_delay)
    entropy = np.clip(np.where(np.isnan(entropy), 1.0, entropy), 0.0, 1.0)
    hurst = hurst_rs_matrix(XT.T)
    hurst_clean = np.where(np.isnan(hurst), 0.5, np.clip(1.0 - 2.0 * np.abs(hurst - 0.5), 0.0, 1.0))
    efficiency = efficiency_ratio_matrix(tail.T)

    skew, kurtosis = _moments_rows(XT)
    if n > _CVAR_MIN_OBS:
        cvar = _tail_mean_rows(XT, 0.05, upper=False)
    else:
        cvar = np.full(m, _CVAR_DEFAULT)
    tail_gain = _tail_mean_rows(XT, 0.95, upper=True) if n else np.zeros(m)
    extra_votes: list[np.ndarray] = []
    adx, adv = nan_col.copy(), nan_col.copy()
    if bars is not None:
        from quant_assets.selection.ohlc import OHLC_VOTE_KEYS, average_value_traded, ohlc_votes

        H, L, C, V = (np.ascontiguousarray(b, dtype=float) for b in bars)
        full = np.isfinite(H).all(axis=1) & np.isfinite(L).all(axis=1) & np.isfinite(C).all(axis=1)
        if full.any():
            votes = ohlc_votes(H[full], L[full], C[full])
            for key in OHLC_VOTE_KEYS:
                vote = nan_col.copy()
                vote[full] = votes[key]
                extra_votes.append(vote)
            adx[full] = votes["adx"]
        priced = np.isfinite(C).all(axis=1)
        if priced.any() and C.shape[1]:
            adv[priced] = average_value_traded(C[priced], V[priced], ADV_SESSIONS)
    rating_ma, rating_osc, rating_all = technical_ratings_matrix(XT.T, extra_votes)
    return {
        "adx": adx,
        "adv": adv,
        "momentum": momentum,
        "volatility": volatility,
        "stability": stability,
        "entropy": entropy,
        "hurst": hurst,
        "hurst_clean": hurst_clean,
        "efficiency": efficiency,
        "skew": skew,
        "kurtosis": kurtosis,
        "cvar": cvar,
        "adf_pvalue": _adf_pvalue_rows(tail, _ADF_LAGS),
        "turbulence": _haar_turbulence_rows(tail),
        "vol_clustering": _lag1_autocorr_rows(np.abs(tail)),
        "return_20d": _compounded(XT, 20),
        "return_60d": _compounded(XT, 60),
        "rating_ma": rating_ma,
        "rating_osc": rating_osc,
        "rating_all": rating_all,
        "n_obs": np.full(m, float(n)),
        "_skew_for_af": skew,
        "_tail_gain": tail_gain,
    }


def _stack_bars(bars, windows: list[np.ndarray], members: list[int]) -> tuple[np.ndarray, ...] | None:
    """The (H, L, C, V) of the blocks `members`, stacked like their windows; a block without bars
    gets NaN rows (no OHLC votes, no adv). None when no member has bars."""
    if bars is None or all(bars[i] is None for i in members):
        return None
    nan = {i: np.full(windows[i].shape, np.nan) for i in members if bars[i] is None}
    return tuple(np.concatenate([nan[i] if i in nan else bars[i][k] for i in members], axis=0) for k in range(4))


def features_of_windows(
    windows: list[np.ndarray],
    window: int = 120,
    pe_order: int = 5,
    pe_delay: int = 1,
    annualisation: int = 252,
    bars: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] | None = None,
    liquidity_baseline: float = LIQUIDITY_BASELINE,
) -> list[np.ndarray]:
    """Features of many dense (symbols x dates) blocks, e.g. one per rebalance date and symbol group.

    Blocks of equal length are stacked and computed in one kernel call; antifragility is scaled
    within each block (its cross-section). ``bars`` (one (H, L, C, V) tuple per block, or None)
    feeds the OHLC votes, ADX and adv (`feature_rows`); liquidity = min(1, adv / baseline).
    Returns one (symbols x FEATURE_COLUMNS) array per block, equal to `compute_features` on each
    block when there are no bars.
    """
    out: list[np.ndarray | None] = [None] * len(windows)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_length.setdefault(w.shape[1], []).append(i)
    for n, members in by_length.items():
        sizes = [windows[i].shape[0] for i in members]
        stacked = np.concatenate([windows[i] for i in members], axis=0) if members else np.zeros((0, n))
        stacked_bars = _stack_bars(bars, windows, members)
        rows = feature_rows(stacked, window, pe_order, pe_delay, annualisation, stacked_bars) if len(stacked) else None
        offset = 0
        for i, size in zip(members, sizes):
            block = np.full((size, len(FEATURE_COLUMNS)), np.nan)
            if size:
                assert rows is not None  # size > 0: the block had rows
                part = {k: v[offset : offset + size] for k, v in rows.items()}
                part["antifragility"] = antifragility_scores(part["_skew_for_af"], part["_tail_gain"], n)
                part["liquidity"] = np.minimum(1.0, part["adv"] / liquidity_baseline)
                for j, c in enumerate(FEATURE_COLUMNS):
                    if c in part:
                        block[:, j] = part[c]
            out[i] = block
            offset += size
    return out  # type: ignore[return-value]
