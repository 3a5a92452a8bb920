"""Indicators and TradingView-style votes that need highs, lows and volume.

The close-only technical ratings in `quant_assets.selection.features` leave out the oscillator
items that need a bar's range; this module computes them from OHLCV. Pure numpy (plus the
Wilder smoothing shared with `features`).

Layout and conventions, shared by every function:

* inputs are dense float arrays ``H``, ``L``, ``C`` (and ``V``) of shape (symbols, sessions),
  oldest session first, without NaN (callers pass only dense windows);
* every function is vectorised over rows and returns arrays of length ``symbols`` read at the
  last session, NaN where a row has too little history;
* rows are independent: a stacked matrix gives, bit for bit, the numbers of each row alone.
  Every reduction runs along one contiguous row (``X[:, a:b].mean(axis=1)``) and the recursive
  smoothing filters each row on its own, which is what keeps the stacked and single-row
  results identical.

Degenerate ranges: a ratio whose denominator is a zero price range (the highest high equals
the lowest low over the window) is NaN rather than an invented number; the vote built on it is
then neutral (0), because the history exists and simply says nothing. The exceptions are CCI
(zero deviation means the typical price sits on its mean: CCI 0) and ADX (no true range means
no directional movement: DI+ = DI- = DX = 0), where the limit value is unambiguous.
"""

from __future__ import annotations

import numpy as np

from quant_assets.selection.features import _rma_rows, _vote

__all__ = [
    "OHLC_VOTE_KEYS",
    "adx_rows",
    "average_value_traded",
    "cci_rows",
    "donchian_rows",
    "ohlc_votes",
    "stochastic_rows",
    "williams_r_rows",
]

# Keys of the votes returned by `ohlc_votes` (it also returns the raw "adx").
OHLC_VOTE_KEYS: tuple[str, ...] = ("vote_stoch", "vote_cci", "vote_adx", "vote_williams_r", "vote_donchian")

_CCI_CONSTANT = 0.015
_ADX_TREND = 20.0  # ADX above this: the DI lines' order is a trend worth voting on
_DONCHIAN_NEAR = 0.005  # within 0.5 % of a channel edge counts as touching it


# --------------------------------------------------------------------------------------
# Input handling and window helpers
# --------------------------------------------------------------------------------------


def _rows(X, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (symbols x sessions), got shape {arr.shape}")
    return arr


def _dense(*arrays, names: str) -> tuple[np.ndarray, ...]:
    out = tuple(_rows(a, n) for a, n in zip(arrays, names.split(), strict=True))
    shape = out[0].shape
    for a, n in zip(out, names.split(), strict=True):
        if a.shape != shape:
            raise ValueError(f"{n} has shape {a.shape}, expected {shape}")
        if np.isnan(a).any():
            raise ValueError(f"{n} must be dense (no NaN)")
    return out


def _check_length(value: int, name: str) -> int:
    v = int(value)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return v


def _last_windows(X: np.ndarray, length: int, count: int, reduce) -> np.ndarray:
    """``reduce`` over each of the last ``count`` windows of ``length`` sessions -> (rows, count).

    Column j is the window ending at session ``n - count + j``; each window is reduced along its
    contiguous row, so the result of a row does not depend on the other rows.
    """
    m, n = X.shape
    out = np.empty((m, count))
    for j in range(count):
        end = n - count + 1 + j
        out[:, j] = reduce(X[:, end - length : end], axis=1)
    return out


def _state_vote(buy: np.ndarray, sell: np.ndarray) -> np.ndarray:
    return np.where(buy, 1.0, np.where(sell, -1.0, 0.0))


# --------------------------------------------------------------------------------------
# ADX / DMI
# --------------------------------------------------------------------------------------


def _dmi_series(H: np.ndarray, L: np.ndarray, C: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """DI+ and DI- series from session ``length`` on (``n - length`` values per row)."""
    up = H[:, 1:] - H[:, :-1]
    down = L[:, :-1] - L[:, 1:]
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    prev_close = C[:, :-1]
    tr = np.maximum(H[:, 1:] - L[:, 1:], np.maximum(np.abs(H[:, 1:] - prev_close), np.abs(L[:, 1:] - prev_close)))
    atr = _rma_rows(np.ascontiguousarray(tr), length)
    pdm = _rma_rows(np.ascontiguousarray(plus_dm), length)
    mdm = _rma_rows(np.ascontiguousarray(minus_dm), length)
    zero = np.zeros_like(atr)
    di_plus = np.divide(100.0 * pdm, atr, out=zero.copy(), where=atr > 0)
    di_minus = np.divide(100.0 * mdm, atr, out=zero, where=atr > 0)
    return di_plus, di_minus


def adx_rows(H, L, C, length: int = 14) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(adx, di_plus, di_minus) at the last session: Wilder's DMI as TradingView's ``ta.dmi(length, length)``.

    Per session t >= 1 (the first session has no predecessor and contributes nothing)::

        up = H[t] - H[t-1]                 down = L[t-1] - L[t]
        +DM = up   if up > down and up > 0     else 0
        -DM = down if down > up and down > 0   else 0
        TR  = max(H[t] - L[t], |H[t] - C[t-1]|, |L[t] - C[t-1]|)
        DI+ = 100 RMA(+DM) / RMA(TR)       DI- = 100 RMA(-DM) / RMA(TR)
        DX  = 100 |DI+ - DI-| / (DI+ + DI-)    (0 when DI+ + DI- = 0)
        ADX = RMA(DX)

    RMA is Wilder's average (alpha = 1 / length) seeded with the simple mean of its first
    ``length`` inputs, as TradingView seeds ``ta.rma``. The DIs first exist at session
    ``length``; ADX needs ``length`` DX values, i.e. ``2 * length`` sessions, and is NaN (as are
    the DIs) for shorter rows. A row without any true range so far (flat prices) gets
    DI+ = DI- = 0 and so DX = ADX = 0: no movement, no trend (TradingView leaves the DIs
    undefined there). All three lie in [0, 100] for consistent bars (L <= C <= H).
    """
    H, L, C = _dense(H, L, C, names="H L C")
    length = _check_length(length, "length")
    m, n = H.shape
    nan = np.full(m, np.nan)
    if n < 2 * length:
        return nan, nan.copy(), nan.copy()
    di_plus, di_minus = _dmi_series(H, L, C, length)
    total = di_plus + di_minus
    dx = 100.0 * np.abs(di_plus - di_minus) / np.where(total == 0, 1.0, total)
    adx = _rma_rows(dx, length)
    return adx[:, -1], di_plus[:, -1], di_minus[:, -1]


# --------------------------------------------------------------------------------------
# Stochastic, Williams %R, CCI, Donchian
# --------------------------------------------------------------------------------------


def _raw_stoch(H: np.ndarray, L: np.ndarray, C: np.ndarray, length: int, count: int) -> np.ndarray:
    """Last ``count`` values of 100 (C - LL) / (HH - LL) over ``length`` sessions; NaN on a flat range."""
    hh = _last_windows(H, length, count, np.max)
    ll = _last_windows(L, length, count, np.min)
    rng = hh - ll
    return np.divide(100.0 * (C[:, C.shape[1] - count :] - ll), rng, out=np.full_like(rng, np.nan), where=rng > 0)


def _stoch_kd(
    H: np.ndarray, L: np.ndarray, C: np.ndarray, k: int, smooth_k: int, d: int
) -> tuple[np.ndarray, np.ndarray]:
    m, n = H.shape
    nan = np.full(m, np.nan)
    if n < k + smooth_k - 1:
        return nan, nan.copy()
    if n < k + smooth_k + d - 2:  # %K exists, %D does not yet
        return _last_windows(_raw_stoch(H, L, C, k, smooth_k), smooth_k, 1, np.mean)[:, 0], nan
    raw = _raw_stoch(H, L, C, k, smooth_k + d - 1)
    k_line = _last_windows(raw, smooth_k, d, np.mean)  # the last d values of %K
    return k_line[:, -1], k_line.mean(axis=1)


def stochastic_rows(H, L, C, k: int = 14, smooth_k: int = 3, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(%K, %D) at the last session: TradingView's Stoch(k, smooth_k, d), default 14/3/3.

    raw = 100 (C - LL_k) / (HH_k - LL_k) with HH_k / LL_k the highest high / lowest low of the
    last ``k`` sessions (today included), %K = SMA(raw, smooth_k), %D = SMA(%K, d). %K needs
    ``k + smooth_k - 1`` sessions, %D ``k + smooth_k + d - 2`` (NaN below). A flat range (HH_k = LL_k) leaves raw
    undefined, so %K and %D are NaN whenever one of the windows they average is flat: there is
    no position inside a range of zero width, and 50 would be an invented midpoint. Values lie
    in [0, 100] for consistent bars (L <= C <= H).
    """
    H, L, C = _dense(H, L, C, names="H L C")
    return _stoch_kd(H, L, C, _check_length(k, "k"), _check_length(smooth_k, "smooth_k"), _check_length(d, "d"))


def williams_r_rows(H, L, C, length: int = 14) -> np.ndarray:
    """Williams %R at the last session: -100 (HH - C) / (HH - LL) over the last ``length`` sessions.

    HH / LL include today, as TradingView's ``ta.wpr``. In [-100, 0] for consistent bars; NaN
    for rows shorter than ``length`` and on a flat range (HH = LL, no position to report).
    """
    H, L, C = _dense(H, L, C, names="H L C")
    length = _check_length(length, "length")
    m, n = H.shape
    if n < length:
        return np.full(m, np.nan)
    hh, ll = H[:, n - length :].max(axis=1), L[:, n - length :].min(axis=1)
    rng = hh - ll
    return np.divide(-100.0 * (hh - C[:, -1]), rng, out=np.full(m, np.nan), where=rng > 0)


def _cci_last(H: np.ndarray, L: np.ndarray, C: np.ndarray, length: int, count: int) -> np.ndarray:
    """Last ``count`` CCI values -> (rows, count); needs ``length + count - 1`` sessions."""
    tp = (H + L + C) / 3.0
    m, n = tp.shape
    out = np.empty((m, count))
    for j in range(count):
        end = n - count + 1 + j
        win = tp[:, end - length : end]
        mean = win.mean(axis=1)
        mad = np.abs(win - mean[:, None]).mean(axis=1)
        flat = win.max(axis=1) == win.min(axis=1)
        denom = _CCI_CONSTANT * mad
        out[:, j] = np.divide(tp[:, end - 1] - mean, denom, out=np.zeros(m), where=~flat & (denom > 0))
    return out


def cci_rows(H, L, C, length: int = 20) -> np.ndarray:
    """Commodity Channel Index at the last session, as TradingView's ``ta.cci(hlc3, length)``.

    With the typical price TP = (H + L + C) / 3, its simple mean M and mean absolute deviation
    MAD = mean(|TP - M|) over the last ``length`` sessions: CCI = (TP - M) / (0.015 MAD).
    The 0.015 constant puts most values within +-100. A window whose typical prices are all
    equal (MAD = 0) gives CCI = 0: the price sits exactly on its mean. The test is on the
    window's range rather than on MAD, since the floating mean of equal values may miss them
    by a rounding error and leave a meaningless ratio of two tiny numbers. NaN below
    ``length`` sessions.
    """
    H, L, C = _dense(H, L, C, names="H L C")
    length = _check_length(length, "length")
    m, n = H.shape
    if n < length:
        return np.full(m, np.nan)
    return _cci_last(H, L, C, length, 1)[:, 0]


def donchian_rows(H, L, length: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) Donchian channel of the ``length`` sessions *before* the last one.

    upper = max(H[n-1-length : n-1]), lower = min(L[n-1-length : n-1]): the channel excludes
    the last session so that the last close can be compared with it as a breakout (a close at
    or beyond the prior range). Including today would make today's own high part of the bar
    to beat. Needs ``length + 1`` sessions (NaN below).
    """
    H, L = _dense(H, L, names="H L")
    length = _check_length(length, "length")
    m, n = H.shape
    if n < length + 1:
        return np.full(m, np.nan), np.full(m, np.nan)
    return H[:, n - 1 - length : n - 1].max(axis=1), L[:, n - 1 - length : n - 1].min(axis=1)


# --------------------------------------------------------------------------------------
# Votes
# --------------------------------------------------------------------------------------


def ohlc_votes(H, L, C) -> dict[str, np.ndarray]:
    """TradingView-style buy (+1) / neutral (0) / sell (-1) votes at the last session.

    Returns the votes under `OHLC_VOTE_KEYS` plus the raw ``"adx"``; each vote is NaN for rows
    with too little history for its indicator (sessions needed in brackets):

    * ``vote_stoch`` (18), Stoch 14/3/3: +1 when %K < 20, %D < 20 and %K > %D (oversold and
      turning up), -1 when %K > 80, %D > 80 and %K < %D. The state is used rather than the
      cross on this very session, as for the close-only Stoch RSI vote.
    * ``vote_cci`` (21), CCI 20 with TradingView's documented direction condition: +1 when
      CCI < -100 and rising (above the previous session's CCI), -1 when CCI > 100 and falling.
      The level alone would keep buying all along a falling market; requiring the turn makes it
      a reversal signal.
    * ``vote_adx`` (28), ADX 14: when ADX > 20 (a trend), +1 if DI+ > DI-, -1 if DI- > DI+;
      otherwise 0. The DI order is used rather than a DI cross on this session, so a persistent
      trend keeps its vote.
    * ``vote_williams_r`` (14), Williams %R 14: +1 below -80 (oversold), -1 above -20.
    * ``vote_donchian`` (21), Donchian 20 breakout against the previous 20 sessions' channel
      (`donchian_rows`): +1 when close >= 0.995 upper, -1 when close <= 1.005 lower, 0 when both
      hold (a channel narrower than about 1 %, where touching an edge says nothing).

    An undefined value on a flat range (Stoch, %R) gives a neutral vote, not NaN.
    """
    H, L, C = _dense(H, L, C, names="H L C")
    m, n = H.shape
    nan = np.full(m, np.nan)
    out: dict[str, np.ndarray] = {}

    k, d = _stoch_kd(H, L, C, 14, 3, 3)
    if n >= 18:
        with np.errstate(invalid="ignore"):
            out["vote_stoch"] = _state_vote((k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d))
    else:
        out["vote_stoch"] = nan.copy()

    if n >= 21:
        cci = _cci_last(H, L, C, 20, 2)
        prev, last = cci[:, 0], cci[:, 1]
        out["vote_cci"] = _state_vote((last < -100) & (last > prev), (last > 100) & (last < prev))
    else:
        out["vote_cci"] = nan.copy()

    adx, di_plus, di_minus = adx_rows(H, L, C, 14)
    with np.errstate(invalid="ignore"):
        trend = adx > _ADX_TREND
    out["vote_adx"] = np.where(np.isnan(adx), np.nan, np.where(trend, _vote(di_plus - di_minus), 0.0))

    wr = williams_r_rows(H, L, C, 14)
    if n >= 14:
        with np.errstate(invalid="ignore"):
            out["vote_williams_r"] = _state_vote(wr < -80, wr > -20)
    else:
        out["vote_williams_r"] = nan.copy()

    upper, lower = donchian_rows(H, L, 20)
    if n >= 21:
        close = C[:, -1]
        up = close >= (1.0 - _DONCHIAN_NEAR) * upper
        down = close <= (1.0 + _DONCHIAN_NEAR) * lower
        out["vote_donchian"] = _state_vote(up & ~down, down & ~up)
    else:
        out["vote_donchian"] = nan.copy()

    out["adx"] = adx
    return out


# --------------------------------------------------------------------------------------
# Value traded
# --------------------------------------------------------------------------------------


def average_value_traded(C, V, sessions: int = 20) -> np.ndarray:
    """Average daily value traded (ADV in quote currency): mean of C x V over the last ``min(sessions, n)`` sessions.

    NaN for a row whose volume is 0 on every session of that window (sources without volume
    report zeros, and "unknown" must not read as "illiquid"), or missing (NaN) on any of them
    (a partial average would be an estimate on fewer days than stated), and for rows without
    sessions. Closes must be dense.
    """
    (C,) = _dense(C, names="C")
    V = _rows(V, "V")
    if V.shape != C.shape:
        raise ValueError(f"V has shape {V.shape}, expected {C.shape}")
    sessions = _check_length(sessions, "sessions")
    m, n = C.shape
    if n == 0:
        return np.full(m, np.nan)
    w = min(sessions, n)
    vol = V[:, n - w :]
    adv = (C[:, n - w :] * vol).mean(axis=1)
    no_volume = np.all(vol == 0, axis=1) | np.isnan(vol).any(axis=1)
    return np.where(no_volume, np.nan, adv)
