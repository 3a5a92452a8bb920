"""Point-in-time per-symbol features of a trailing returns window.

Pure numpy/pandas (no Dagster); every feature sees only the rows it is given.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_COLUMNS",
    "compute_features",
    "efficiency_ratio",
    "efficiency_ratio_matrix",
    "hurst_rs",
    "hurst_rs_matrix",
    "permutation_entropy",
    "permutation_entropy_matrix",
]

FEATURE_COLUMNS: list[str] = [
    "momentum",
    "volatility",
    "stability",
    "entropy",
    "hurst",
    "efficiency",
    "return_20d",
    "n_obs",
]

_HURST_MIN_OBS = 32
_HURST_LAGS = (8, 16, 32, 64, 128, 256, 512)
_HURST_FALLBACK_LAGS = (10, 15, 20, 25)
_ER_MIN_OBS = 10
_TINY = 1e-12
_RETURN_20D_ROWS = 20
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
# Permutation entropy (domain-spec §2)
# --------------------------------------------------------------------------------------


def _check_pe_params(order: int, delay: int) -> None:
    if not 2 <= int(order) <= _MAX_PE_ORDER:
        raise ValueError(f"order must be in [2, {_MAX_PE_ORDER}], got {order}")
    if int(delay) < 1:
        raise ValueError(f"delay must be >= 1, got {delay}")


def permutation_entropy_matrix(X, order: int = 5, delay: int = 1) -> np.ndarray:
    """Normalised permutation entropy of every column of ``X`` (dates x symbols).

    Vectorised form of :func:`permutation_entropy` (domain-spec §2) and bit-identical
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
    emb = np.stack(
        [XT[:, slice(k * delay, k * delay + n_windows)] for k in range(order)], axis=2
    )
    valid = ~np.stack(
        [nan_mask[:, slice(k * delay, k * delay + n_windows)] for k in range(order)], axis=2
    ).any(axis=2)

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
    """Normalised permutation entropy of a 1-D series, in [0, 1] (domain-spec §2).

    A noise measure for the entropy veto: near 1 the ordinal patterns are
    uniformly mixed (no exploitable structure), near 0 the series is regular.
    Windows of ``order`` values spaced by ``delay`` that contain NaN are skipped;
    patterns are the stable argsort encoded base ``order``; H = -sum p ln p / ln(order!).
    NaN if fewer than ``order`` non-NaN values; 0.0 if no valid window remains.
    """
    x = _as_1d(x)
    return float(permutation_entropy_matrix(x[:, None], order=order, delay=delay)[0])


# --------------------------------------------------------------------------------------
# Hurst exponent, rescaled range (domain-spec §2)
# --------------------------------------------------------------------------------------


def _hurst_lags(n: int) -> list[int]:
    lags = [lag for lag in _HURST_LAGS if lag <= n / 2]
    if len(lags) < 2:
        lags = [lag for lag in _HURST_FALLBACK_LAGS if lag <= n / 2]
    return lags


def hurst_rs_matrix(X) -> np.ndarray:
    """Hurst exponent (R/S) of every NaN-free column of ``X`` (dates x symbols).

    Vectorised form of :func:`hurst_rs` (domain-spec §2): each lag is one reshape of
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
    """Hurst exponent by rescaled range, in [0, 1] (domain-spec §2).

    Persistence measure: > 0.5 trending, < 0.5 mean-reverting, 0.5 random walk
    (also the neutral answer when no lag gives a usable R/S). NaN values are
    dropped; needs >= 32 observations, else NaN. Lags 8, 16, ..., 512 that are
    <= n/2; H is the least-squares slope of log mean(R/S) on log(lag).
    """
    x = _as_1d(x)
    x = x[~np.isnan(x)]
    return float(hurst_rs_matrix(x[:, None])[0])


# --------------------------------------------------------------------------------------
# Kaufman efficiency ratio (domain-spec §2)
# --------------------------------------------------------------------------------------


def efficiency_ratio_matrix(R) -> np.ndarray:
    """Kaufman efficiency ratio of every NaN-free column of ``R`` (dates x symbols).

    Vectorised form of :func:`efficiency_ratio` (domain-spec §2); bit-identical to it.
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
    """Kaufman efficiency ratio on returns: |sum r| / sum |r| (domain-spec §2).

    How much of the distance travelled is net progress: 1 for a straight line,
    0 for pure back-and-forth. NaN dropped; needs >= 10 observations, else NaN;
    0.0 for a flat path (sum |r| <= 1e-12).
    """
    r = _as_1d(r)
    r = r[~np.isnan(r)]
    return float(efficiency_ratio_matrix(r[:, None])[0])


# --------------------------------------------------------------------------------------
# Feature frame
# --------------------------------------------------------------------------------------


def compute_features(
    returns: pd.DataFrame,
    window: int = 120,
    pe_order: int = 5,
    pe_delay: int = 1,
    annualisation: int = 252,
) -> pd.DataFrame:
    """Per-symbol features of a dense returns matrix, indexed by ``symbol`` (domain-spec §2).

    Point in time: uses only the rows it is given (callers slice to the as-of date).
    ``momentum``/``volatility``/``entropy``/``efficiency`` use the last ``window``
    rows, ``return_20d`` the last 20, ``hurst`` the whole column (R/S needs length).
    ``entropy`` NaN (too few rows) becomes 1.0 so the entropy veto treats unknown as
    noise. Undefined values (e.g. volatility with < 2 rows) are NaN; nothing raises
    for short input.
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
    n = XT.shape[1]
    tail = XT[:, max(n - int(window), 0):]
    nt = tail.shape[1]
    nan_col = np.full(m, np.nan)

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
    efficiency = efficiency_ratio_matrix(tail.T)

    if n >= _RETURN_20D_ROWS:
        return_20d = np.prod(1.0 + XT[:, n - _RETURN_20D_ROWS:], axis=1) - 1.0
    else:
        return_20d = nan_col.copy()

    data = {
        "momentum": momentum,
        "volatility": volatility,
        "stability": stability,
        "entropy": entropy,
        "hurst": hurst,
        "efficiency": efficiency,
        "return_20d": return_20d,
        "n_obs": np.full(m, float(n)),
    }
    return pd.DataFrame(
        {c: np.asarray(data[c], dtype=float) for c in FEATURE_COLUMNS}, index=symbols
    )
