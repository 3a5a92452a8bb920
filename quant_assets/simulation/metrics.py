"""Performance metrics on a stitched daily return series (never an average of
per-window annualisations: averaging them turns -40 % in ten days into an absurd annual figure).

Conventions (checked against skfolio in the tests):
* Sharpe = mean / std(ddof 1) x sqrt(AF), rf = 0 (skfolio `annualized_sharpe_ratio`).
* Sortino = mean / downside deviation x sqrt(AF), target 0, downside = sqrt(sum min(r, 0)^2 / (n - 1))
  (skfolio `annualized_sortino_ratio` with `min_acceptable_return=0`).
* max_drawdown is compounded on the wealth index from 1.0 and reported *negative* (-0.2 = 20% down).
* calmar = CAGR / |max_drawdown| (the usual fund definition; skfolio's `calmar_ratio` is the per-period
  mean / MDD, a different number).
* var95 / cvar95 are daily, *positive loss* numbers (0.02 = lose 2%) as in skfolio: VaR is the
  (floor(0.05 n) + 1)-th worst day, CVaR the mean of the worst 5% probability mass (fractional day).
* af_dist / stress_alpha follow the reference's definitions (below), with NaN and a reason when the sample
  is short.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from quant_assets.data.sessions import DAYS_PER_YEAR, SESSIONS_PER_YEAR_EXCHANGE

NAN = float("nan")


def annualisation_factor(index, default: int = SESSIONS_PER_YEAR_EXCHANGE) -> int:
    """365 when the dates include a Saturday/Sunday (24/7 assets), else 252 (exchange calendars).

    A non-date index (e.g. a RangeIndex) gives `default`, so callers without dates keep 252.
    """
    if index is None or len(index) == 0:
        return default
    if not isinstance(index, pd.DatetimeIndex) and pd.api.types.is_numeric_dtype(getattr(index, "dtype", None)):
        return default  # integers would parse as nanoseconds since 1970: not dates
    try:
        idx = index if isinstance(index, pd.DatetimeIndex) else pd.DatetimeIndex(pd.to_datetime(index))
    except (TypeError, ValueError):
        return default
    return DAYS_PER_YEAR if bool((idx.dayofweek >= 5).any()) else SESSIONS_PER_YEAR_EXCHANGE


def _clean(returns) -> pd.Series:
    r = pd.Series(returns, dtype=float) if not isinstance(returns, pd.Series) else returns.astype(float)
    return r[np.isfinite(r.to_numpy())]


def value_at_risk(returns, beta: float = 0.95) -> float:
    """Daily empirical VaR as a positive loss: the (floor((1 - beta) n) + 1)-th worst return, negated."""
    return _var_sorted(np.sort(_clean(returns).to_numpy()), beta)


def cvar(returns, beta: float = 0.95) -> float:
    """Daily CVaR as a positive loss: mean of the worst (1 - beta) probability mass (last day fractional)."""
    return _cvar_sorted(np.sort(_clean(returns).to_numpy()), beta)


def annualisation_of_days(days: np.ndarray, default: int = SESSIONS_PER_YEAR_EXCHANGE) -> int:
    """`annualisation_factor` of datetime64 days: 365 when a Saturday or Sunday is among them."""
    d = np.asarray(days).astype("datetime64[D]").astype(np.int64)
    if len(d) == 0:
        return default
    weekend = bool((((d + 3) % 7) >= 5).any())  # 1970-01-01 was a Thursday (weekday 3)
    return DAYS_PER_YEAR if weekend else SESSIONS_PER_YEAR_EXCHANGE


def drawdowns(returns) -> pd.Series:
    """Compounded drawdown series (<= 0) from a wealth index starting at 1.0 (a first-day loss counts)."""
    r = _clean(returns)
    wealth = np.cumprod(1.0 + r.to_numpy())
    peak = np.maximum(np.maximum.accumulate(wealth), 1.0) if len(wealth) else wealth
    return pd.Series(wealth / np.where(peak > 0, peak, 1.0) - 1.0, index=r.index)


def concentration(weights) -> tuple[float, float]:
    """(HHI, effective N) of gross-normalised |w|; for a frame (rows = rebalances) the means over rows."""
    if weights is None:
        return NAN, NAN
    frame = weights.to_frame().T if isinstance(weights, pd.Series) else pd.DataFrame(weights)
    a = frame.fillna(0.0).abs().to_numpy(dtype=float)
    gross = a.sum(axis=1)
    a = a[gross > 0] / gross[gross > 0, None]
    if len(a) == 0:
        return NAN, NAN
    hhi = (a**2).sum(axis=1)
    return float(hhi.mean()), float((1.0 / hhi).mean())


def beta(returns, market) -> float:
    """cov(r, m) / var(m) on the common dates (ddof 1); NaN with < 3 common days or a flat market."""
    r, m = _clean(returns), _clean(market)
    idx = r.index.intersection(m.index)
    if len(idx) < 3:
        return NAN
    r, m = r.loc[idx].to_numpy(), m.loc[idx].to_numpy()
    var = float(np.var(m, ddof=1))
    return float(np.cov(r, m, ddof=1)[0, 1] / var) if var > 0 else NAN


def af_dist(returns, q: float = 0.95, min_obs: int = 100, min_tail: int = 10, eps: float = 1e-12) -> dict:
    """Distributional antifragility: skew + ln(tail_gain / tail_loss). >= 0.25 strong, < 0 fragile.

    Tails are picked on a copy jittered by linspace(0, 1e-12) so ties cannot empty them, but the
    statistics use the original returns. Needs n >= 100 and min(10, max(1, floor(0.05 n))) days per tail.
    """
    r = _clean(returns).reset_index(drop=True)
    n = len(r)
    out = {"af_dist": NAN, "skew": NAN, "tail_gain": NAN, "tail_loss": NAN, "tail_asym": NAN, "n": n, "reason": ""}
    if n < min_obs:
        out["reason"] = f"insufficient: {n} observations < {min_obs}"
        return out
    jit = r + np.linspace(0.0, eps, n)
    right, left = r[jit >= jit.quantile(q)], r[jit <= jit.quantile(1.0 - q)]
    need = min(min_tail, max(1, int(math.floor((1.0 - q) * n))))
    if len(right) < need or len(left) < need:
        out["reason"] = f"insufficient tails: {len(left)} left / {len(right)} right < {need}"
        return out
    skew = float(r.skew())  # pandas: bias-corrected sample skewness
    gain, loss = float(right.mean()), abs(float(left.mean()))
    asym = gain / (loss + eps) if gain > 0 else 0.0
    out.update(af_dist=skew + math.log(asym + eps), skew=skew, tail_gain=gain, tail_loss=loss, tail_asym=asym)
    return out


def stress_alpha(strategy, reference, q_stress: float = 0.10, min_obs: int = 100, min_stress: int = 10) -> dict:
    """Excess return on the reference's worst-decile days: does the book hold up in a crash?

    Stress days = reference <= its q_stress quantile on the common dates; needs n >= 100 common days
    and >= 10 stress days. stress_delta = stress_alpha - calm_alpha; hit rate = share of stress days won.
    """
    s, ref = _clean(strategy), _clean(reference)
    idx = s.index.intersection(ref.index)
    n = len(idx)
    out = {
        "stress_alpha": NAN,
        "calm_alpha": NAN,
        "stress_delta": NAN,
        "stress_hit_rate": NAN,
        "stress_days": 0,
        "n": n,
        "reason": "",
    }
    if n < min_obs:
        out["reason"] = f"insufficient: {n} common observations < {min_obs}"
        return out
    s, ref = s.loc[idx], ref.loc[idx]
    stress = (ref <= ref.quantile(q_stress)).to_numpy()
    out["stress_days"] = int(stress.sum())
    if stress.sum() < min_stress:
        out["reason"] = f"insufficient: {int(stress.sum())} stress days < {min_stress}"
        return out
    diff = (s - ref).to_numpy()
    sa = float(diff[stress].mean())
    ca = float(diff[~stress].mean()) if (~stress).any() else NAN
    out.update(
        stress_alpha=sa,
        calm_alpha=ca,
        stress_delta=sa - ca,
        stress_hit_rate=float((s.to_numpy()[stress] > ref.to_numpy()[stress]).mean()),
    )
    return out


HEADLINE = [
    "total_return",
    "cagr",
    "ann_return",
    "ann_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "var95",
    "cvar95",
]


def headline(x: np.ndarray, annualisation: int = SESSIONS_PER_YEAR_EXCHANGE) -> dict:
    """The return and risk metrics of a stitched daily series given as an array of finite returns.

    What `performance` reports first, without the distribution and benchmark statistics: cheap enough
    to describe every partition of a backtest."""
    x = np.asarray(x, dtype=float)
    n, af = len(x), int(annualisation)
    out: dict = {"days": n, "annualisation": af, **{k: NAN for k in HEADLINE}}
    if n:
        wealth = np.cumprod(1.0 + x)
        end = float(wealth[-1])
        peak = np.maximum(np.maximum.accumulate(wealth), 1.0)
        dd = float((wealth / np.where(peak > 0, peak, 1.0) - 1.0).min())
        out.update(total_return=end - 1.0, max_drawdown=dd)
        if n > 1:
            cagr = float(end ** (af / n) - 1.0) if end > 0 else -1.0
            sd = float(x.std(ddof=1))
            down = float(np.sqrt((np.minimum(x, 0.0) ** 2).sum() / (n - 1)))
            srt = np.sort(x)
            out.update(
                cagr=cagr,
                ann_return=float(x.mean() * af),
                ann_vol=sd * math.sqrt(af),
                sharpe=float(x.mean() / sd * math.sqrt(af)) if sd > 0 else NAN,
                sortino=float(x.mean() / down * math.sqrt(af)) if down > 0 else NAN,
                calmar=cagr / abs(dd) if dd < 0 else NAN,
                var95=_var_sorted(srt),
                cvar95=_cvar_sorted(srt),
            )
    return out


def _var_sorted(x: np.ndarray, beta: float = 0.95) -> float:
    n = len(x)
    if n < 2:
        return NAN
    k = (1.0 - beta) * n
    i = min(n - 1, int(np.floor(k + 4 * np.finfo(float).eps * n)))
    return float(-x[i])


def _cvar_sorted(x: np.ndarray, beta: float = 0.95) -> float:
    n = len(x)
    if n < 2:
        return NAN
    k = (1.0 - beta) * n
    i = max(0, int(np.ceil(k) - 1))
    return float(-(x[:i].sum() + x[i] * (k - i)) / k)


def performance(
    returns: pd.Series,
    annualisation: int | None = None,
    benchmark: pd.Series | None = None,
    weights_history=None,
    turnover: pd.Series | None = None,
) -> dict:
    """All summary metrics of one stitched daily net-return series.

    annualisation: None infers 252/365 from the index (`annualisation_factor`).
    benchmark: market series for beta and stress_alpha (aligned on dates).
    weights_history: a weight vector, or a frame with one row per rebalance (HHI / effective N).
    turnover: traded notional per rebalance (one value per rebalance, e.g. the first-day `turnover`
    of each holding period); its mean is reported.
    Empty input gives days 0 and NaN everywhere; dispersion metrics need >= 2 days. Never raises.
    """
    r = _clean(returns)
    af = int(annualisation) if annualisation else annualisation_factor(r.index)
    out: dict = headline(r.to_numpy(), af)
    t = None if turnover is None else _clean(turnover)
    out["turnover"] = float(t.mean()) if t is not None and len(t) else NAN
    out["hhi"], out["effective_n"] = concentration(weights_history)
    out["beta"] = beta(r, benchmark) if benchmark is not None else NAN
    a = af_dist(r)
    out["af_dist"], out["af_dist_reason"] = a["af_dist"], a["reason"]
    if benchmark is not None:
        s = stress_alpha(r, benchmark)
    else:
        s = {
            "stress_alpha": NAN,
            "calm_alpha": NAN,
            "stress_delta": NAN,
            "stress_hit_rate": NAN,
            "reason": "no benchmark",
        }
    out.update({k: s[k] for k in ("stress_alpha", "calm_alpha", "stress_delta", "stress_hit_rate")})
    out["stress_alpha_reason"] = s["reason"]
    return out
